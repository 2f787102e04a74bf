//! [`ShmAllocator`]: an `allocator-api2` allocator over a session's send slots.
//!
//! Build a `allocator_api2::vec::Vec<u8, ShmAllocator>` in place (push, extend, write), then turn
//! it into a [`TxBuf`] with [`ShmAllocator::into_buf`] and send it: the bytes never move.
//!
//! Each allocation takes one slot of the smallest class that holds it (the block handed out is
//! the whole slot, so a `Vec` grows within its slot without reallocating). Allocation never
//! waits: when that class is exhausted it fails with `AllocError` (use
//! [`Transport::alloc`](transport_api::Transport::alloc) to wait for room instead). Alignment up
//! to 64 bytes is supported.

use super::tx::TxShared;
use crate::core::codec::SlotRef;
use crate::os::lease::{self, SlotView};
use allocator_api2::alloc::{AllocError, Allocator, Layout};
use std::ptr::NonNull;
use std::sync::Arc;
use transport_api::{LeaseOwner, TxBuf};

/// Slots start on 64-byte boundaries (the geometry requires slot sizes to be multiples of 64 and
/// the payload areas are cache-line aligned).
const SLOT_ALIGN: usize = 64;

/// Allocates from a session's send slots. Cheap to clone; allocations keep the segment mapped.
#[derive(Clone)]
pub struct ShmAllocator {
    tx: Arc<TxShared>,
    owner: Arc<dyn LeaseOwner>,
}

impl std::fmt::Debug for ShmAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmAllocator").finish_non_exhaustive()
    }
}

impl ShmAllocator {
    pub(crate) fn new(tx: Arc<TxShared>, owner: Arc<dyn LeaseOwner>) -> Self {
        ShmAllocator { tx, owner }
    }

    /// The slot whose first byte is `ptr`, in this endpoint's send direction, with its current
    /// generation; `None` if `ptr` is not the start of one of our slots.
    fn slot_at(&self, ptr: NonNull<u8>) -> Option<SlotRef> {
        let link = &self.tx.link;
        let dir = link.side.tx();
        let layout = link.seg.layout();
        let st = self.tx.lock();
        for (class, c) in layout.dir(dir).classes.iter().enumerate() {
            let class = u8::try_from(class).ok()?;
            let first = SlotRef {
                class,
                index: 0,
                generation: 0,
            };
            let base = SlotView::of(&link.seg, dir, first)?.ptr();
            let off = (ptr.as_ptr() as usize).checked_sub(base.as_ptr() as usize)?;
            let size = c.slot_size as usize;
            let span = size.checked_mul(c.slot_count as usize)?;
            if off < span {
                if off % size != 0 {
                    return None;
                }
                let index = u32::try_from(off / size).ok()?;
                let (_, generation) = st.pool.state(class, index).ok()?;
                return Some(SlotRef {
                    class,
                    index,
                    generation,
                });
            }
        }
        None
    }

    /// Turns a vector built with this allocator into a send buffer that owns the same slot:
    /// no byte is copied. A vector from another allocator instance (or an empty one) is copied
    /// into a heap buffer instead.
    pub fn into_buf(&self, v: allocator_api2::vec::Vec<u8, ShmAllocator>) -> TxBuf {
        let same = Arc::ptr_eq(&v.allocator().tx, &self.tx);
        if !same || v.capacity() == 0 {
            let mut b = TxBuf::heap(v.len());
            b.copy_from_slice(&v);
            return b;
        }
        // The vector's memory is the start of one of our slots, which the pool leased to it
        // (`slot_at` finds it in the local layout), and fits in it: checked before the vector
        // is taken apart, so a vector that fails a check is copied and dropped normally.
        let found = NonNull::new(v.as_ptr().cast_mut()).and_then(|ptr| {
            let slot = self.slot_at(ptr)?;
            let view = SlotView::of(&self.tx.link.seg, self.tx.link.side.tx(), slot)?;
            (view.ptr() == ptr && v.capacity() <= view.size()).then_some((slot, view))
        });
        let Some((slot, view)) = found else {
            let mut b = TxBuf::heap(v.len());
            b.copy_from_slice(&v);
            return b;
        };
        // The lease passes to the buffer, which releases it through `owner` (the same pool)
        // unless it is sent; the vector's allocator handle is dropped without deallocating.
        let (_, len, cap, _alloc) = v.into_raw_parts_with_alloc();
        match lease::lease(view, len, cap, slot.to_entry(), self.owner.clone()) {
            Some(buf) => buf,
            // `len <= cap <= view.size()` was checked above.
            None => TxBuf::heap(0),
        }
    }
}

// SAFETY: blocks handed out are whole slots of this endpoint's send direction, leased in the
// private pool to the caller alone until `deallocate`; they stay valid while any clone of the
// allocator lives (each holds the `TxShared`, which keeps the mapping), are at least
// `layout.size()` bytes and 64-byte aligned. Zero-sized requests get a dangling, aligned pointer
// that `deallocate` recognises by the zero size.
unsafe impl Allocator for ShmAllocator {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.align() > SLOT_ALIGN {
            return Err(AllocError);
        }
        if layout.size() == 0 {
            let dangling = NonNull::new(layout.align() as *mut u8).ok_or(AllocError)?;
            return Ok(NonNull::slice_from_raw_parts(dangling, 0));
        }
        let slot = {
            let mut st = self.tx.lock();
            match st.pool.alloc(layout.size()) {
                Ok(Some(s)) => s,
                Ok(None) => {
                    self.tx.drain(&mut st).map_err(|_| AllocError)?;
                    st.pool
                        .alloc(layout.size())
                        .ok()
                        .flatten()
                        .ok_or(AllocError)?
                }
                Err(_) => return Err(AllocError),
            }
        };
        let view =
            SlotView::of(&self.tx.link.seg, self.tx.link.side.tx(), slot).ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(view.ptr(), view.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() == 0 {
            return;
        }
        if let Some(slot) = self.slot_at(ptr) {
            self.owner.release(slot.to_entry());
        }
    }
}

#[cfg(test)]
mod tests;
