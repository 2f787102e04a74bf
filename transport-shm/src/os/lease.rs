//! Slot memory handed to safe owners: a received payload that reads the sender's slot until it
//! is dropped, and a send buffer leased from this endpoint's own pool. The raw pointers of both
//! come from [`SlotView`], which only a validated slot of a [`Segment`] produces.

use crate::core::codec::SlotRef;
use crate::core::layout::Direction;
use crate::os::segment::Segment;
use std::ptr::NonNull;
use std::sync::Arc;
use transport_api::{LeaseOwner, TxBuf};

/// Where one slot's bytes are in this process: inside the mapping, at a slot the local layout
/// places (never a value read from shared memory).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlotView {
    ptr: NonNull<u8>,
    size: usize,
}

impl SlotView {
    /// The view of `slot` of direction `d`; `None` when the layout has no such slot.
    #[inline]
    pub(crate) fn of(seg: &Segment, d: Direction, slot: SlotRef) -> Option<SlotView> {
        let (ptr, size) = seg.slot_span(d, slot).ok()?;
        Some(SlotView { ptr, size })
    }

    /// The slot's first byte.
    pub(crate) fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// The slot's size in bytes.
    pub(crate) fn size(&self) -> usize {
        self.size
    }
}

/// Hands `cap` bytes of the slot in `view`, `len` of them in use, to a send buffer that
/// releases it through `owner.release(token)` unless it is sent. `None` unless
/// `len <= cap <= view.size()`.
///
/// The caller's pool has leased this slot to the buffer alone (state `Leased` in its
/// `SenderPool`); that is this function's contract with its two callers (the session's `alloc`
/// and the allocator's `into_buf`), which is why it is crate-internal.
#[inline]
pub(crate) fn lease(
    view: SlotView,
    len: usize,
    cap: usize,
    token: u64,
    owner: Arc<dyn LeaseOwner>,
) -> Option<TxBuf> {
    if len > cap || cap > view.size {
        return None;
    }
    // SAFETY: `view.ptr` addresses `view.size >= cap` bytes of this endpoint's own payload
    // memory inside the mapping (from the validated, process-local layout); the caller's pool
    // leased this slot to this buffer alone, and it stays leased until `release(token)` or
    // `take_lease`. The mapping lives as long as `owner` (which holds the segment). Payload
    // bytes are plain bytes: any value is initialised. `len <= cap` was checked above.
    Some(unsafe { TxBuf::from_lease(view.ptr, len, cap, token, owner) })
}

/// Takes a received slot back when the payload reading it is dropped.
pub(crate) trait SlotReturn: Send + Sync + 'static {
    /// The payload that read `slot` (of `size` bytes) was dropped.
    fn return_slot(&self, slot: SlotRef, size: usize);
}

/// A received payload living in the sender's slot; returns the slot when dropped.
pub(crate) struct ReceivedSlot<R: SlotReturn> {
    owner: Arc<R>,
    slot: SlotRef,
    view: SlotView,
    len: usize,
}

impl<R: SlotReturn> ReceivedSlot<R> {
    /// The first `len` bytes (at most the slot's size) of the slot in `view`, reserved for this
    /// value by the receiver's held set until it is dropped.
    #[inline]
    pub(crate) fn new(owner: Arc<R>, slot: SlotRef, view: SlotView, len: usize) -> Self {
        ReceivedSlot {
            owner,
            slot,
            view,
            len: len.min(view.size),
        }
    }
}

// SAFETY: the pointer refers to shared memory kept mapped by `owner` (which holds the segment),
// and the slot is reserved for this value until it is dropped; reading it from any thread is
// fine.
unsafe impl<R: SlotReturn> Send for ReceivedSlot<R> {}
// SAFETY: as above; only shared reads are exposed.
unsafe impl<R: SlotReturn> Sync for ReceivedSlot<R> {}

impl<R: SlotReturn> AsRef<[u8]> for ReceivedSlot<R> {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` lies inside a validated slot of the mapping (`len <= slot
        // size`), the mapping outlives `self` through `owner`, and the sender does not reuse the
        // slot before we return it on drop. A hostile sender may still scribble over these
        // bytes: they are plain bytes with no invariant.
        unsafe { std::slice::from_raw_parts(self.view.ptr.as_ptr(), self.len) }
    }
}

impl<R: SlotReturn> Drop for ReceivedSlot<R> {
    fn drop(&mut self) {
        self.owner.return_slot(self.slot, self.view.size);
    }
}
