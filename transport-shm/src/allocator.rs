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

use crate::descriptor::SlotRef;
use crate::session::{TxShared, lock};
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
        let st = lock(&self.tx.state);
        for (class, c) in layout.dir(dir).classes.iter().enumerate() {
            let class = u8::try_from(class).ok()?;
            let first = SlotRef {
                class,
                index: 0,
                generation: 0,
            };
            let (base, _) = link.slot_ptr(dir, first)?;
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
        let (ptr, len, cap, alloc) = v.into_raw_parts_with_alloc();
        let Some(ptr) = NonNull::new(ptr) else {
            return TxBuf::heap(0);
        };
        match self.slot_at(ptr) {
            Some(slot) => {
                // SAFETY: `ptr` is the start of slot `slot` of our own send direction (found in
                // the local layout), whose `cap` bytes the pool leased to this vector alone; the
                // vector was taken apart above, so the lease passes to the buffer, which releases
                // it through `owner` (the same pool) unless it is sent. `len <= cap`.
                unsafe { TxBuf::from_lease(ptr, len, cap, slot.to_entry(), self.owner.clone()) }
            }
            None => {
                // Not one of our slots (cannot happen for memory from this allocator): rebuild
                // the vector so its memory is returned normally, and copy.
                // SAFETY: the parts come from `into_raw_parts_with_alloc` just above, unchanged.
                let v = unsafe {
                    allocator_api2::vec::Vec::from_raw_parts_in(ptr.as_ptr(), len, cap, alloc)
                };
                let mut b = TxBuf::heap(v.len());
                b.copy_from_slice(&v);
                b
            }
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
            let mut st = lock(&self.tx.state);
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
        let (ptr, size) = self
            .tx
            .link
            .slot_ptr(self.tx.link.side.tx(), slot)
            .ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(ptr, size))
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
mod tests {
    use crate::conformance::small_geometry;
    use crate::{ShmConfig, pair};
    use allocator_api2::vec::Vec;
    use std::time::Duration;
    use transport_api::{Frame, Transport};

    fn cfg() -> ShmConfig {
        ShmConfig {
            geometry: small_geometry(),
            spin: Duration::ZERO,
        }
    }

    #[tokio::test]
    async fn vec_built_in_place_is_sent_without_copy() {
        let (a, b) = pair(cfg()).await.unwrap();
        let alloc = a.allocator();
        let mut v: Vec<u8, _> = Vec::with_capacity_in(10, alloc.clone());
        for i in 0..3000u32 {
            v.push(i as u8); // grows across classes: 256 B slot → 4 KiB slot
        }
        let before = a.stats();
        a.send(Frame::new(alloc.into_buf(v)).msg_id(5))
            .await
            .unwrap();
        let after = a.stats();
        assert_eq!(after.zero_copy_sends - before.zero_copy_sends, 1);
        let f = b.recv().await.unwrap();
        assert_eq!(f.header.msg_id, 5);
        assert!(f.bytes().iter().enumerate().all(|(i, &x)| x == i as u8));
        assert_eq!(f.bytes().len(), 3000);
        drop(f);
        assert!(a.stats().is_idle(), "{:?}", a.stats());
    }

    #[tokio::test]
    async fn dropped_vectors_return_their_slots_and_exhaustion_is_an_error() {
        let (a, _b) = pair(cfg()).await.unwrap();
        let alloc = a.allocator();
        // The small geometry has 8 slots of 256 B.
        let held: std::vec::Vec<Vec<u8, _>> = (0..8)
            .map(|_| Vec::with_capacity_in(200, alloc.clone()))
            .collect();
        assert!(a.stats().buffer_bytes_in_use >= 8 * 256);
        assert_eq!(a.stats().slots_in_use, 8);
        let mut extra: Vec<u8, _> = Vec::new_in(alloc.clone());
        assert!(
            extra.try_reserve(200).is_err(),
            "a ninth 256-B slot cannot exist"
        );
        drop(held);
        assert!(extra.try_reserve(200).is_ok());
        drop(extra);
        assert!(a.stats().is_idle(), "{:?}", a.stats());
        let zero: Vec<u8, _> = Vec::new_in(alloc);
        drop(zero);
    }

    #[tokio::test]
    async fn a_foreign_vector_is_copied() {
        let (a, b) = pair(cfg()).await.unwrap();
        let (c, _d) = pair(cfg()).await.unwrap();
        let mut v: Vec<u8, _> = Vec::new_in(c.allocator());
        v.extend_from_slice(&[7u8; 100]);
        let buf = a.allocator().into_buf(v);
        a.send(Frame::new(buf)).await.unwrap();
        assert_eq!(b.recv().await.unwrap().bytes(), &[7u8; 100][..]);
        assert!(c.stats().is_idle(), "the foreign vector's slot came back");
    }
}
