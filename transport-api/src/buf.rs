//! Writable send buffers handed out by [`Transport::alloc`](crate::Transport::alloc).
//!
//! A [`TxBuf`] is either process memory (held inside the value itself up to
//! [`TxBuf::INLINE_CAPACITY`] bytes, on the heap beyond) or a *lease* on memory that a backend
//! owns (a slot in a shared-memory segment, for instance). Sending a leased buffer through the transport that
//! leased it moves the lease without copying a byte; dropping an unsent buffer gives the memory
//! back to its owner.
//!
//! This module holds the only `unsafe` code of the crate: a lease is a raw pointer and length that
//! the backend vouches for when it creates it.

use bytes::{Bytes, BytesMut};
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

/// The owner of leased buffer memory: a backend's pool.
///
/// A backend implements this to be told when a leased buffer is dropped without being sent.
pub trait LeaseOwner: Send + Sync + 'static {
    /// Gives back the memory identified by `token`; called once, when a [`TxBuf`] created by
    /// [`TxBuf::from_lease`] is dropped without being reclaimed by [`TxBuf::take_lease`].
    fn release(&self, token: u64);
}

/// A lease taken back from a [`TxBuf`] by the backend that created it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseParts {
    /// The backend's token given to [`TxBuf::from_lease`].
    pub token: u64,
    /// Number of bytes the user kept (after any [`TxBuf::truncate`]).
    pub len: usize,
}

struct Lease {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
    token: u64,
    owner: Option<Arc<dyn LeaseOwner>>,
}

// SAFETY: the creator of a lease promises (see `TxBuf::from_lease`) that the memory is exclusively
// ours until released and may be written from any thread; the owner is `Send + Sync`.
unsafe impl Send for Lease {}
// SAFETY: shared access only hands out `&[u8]`, which is fine from many threads for the same reason.
unsafe impl Sync for Lease {}

impl Lease {
    fn as_slice(&self) -> &[u8] {
        // SAFETY: `from_lease` guarantees `ptr` is valid for reads and writes of `cap >= len`
        // bytes and is not accessed by anyone else until the lease is released or taken.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; `&mut self` makes this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.take() {
            owner.release(self.token);
        }
    }
}

enum Repr {
    Heap(BytesMut),
    /// Up to `INLINE_CAPACITY` bytes held in the value: no allocation to make or free.
    Inline {
        len: u8,
        data: [u8; TxBuf::INLINE_CAPACITY],
    },
    Lease(Lease),
}

/// A writable buffer to fill and then send, obtained from
/// [`Transport::alloc`](crate::Transport::alloc) (or built from heap memory with
/// [`TxBuf::heap`]).
///
/// It dereferences to `[u8]` of exactly the length asked for; [`TxBuf::truncate`] shortens it.
/// Put it in a [`Frame`](crate::Frame) to send it: on the transport that allocated it, this moves
/// the memory without a copy.
pub struct TxBuf {
    repr: Repr,
}

impl TxBuf {
    /// Buffers of at most this many bytes made by [`TxBuf::heap`] are held inside the `TxBuf`
    /// itself: small frames cost no allocation (and no free) on either side of a backend that
    /// copies them.
    pub const INLINE_CAPACITY: usize = 64;

    /// A zero-filled buffer of `len` bytes in process memory: held inline up to
    /// [`TxBuf::INLINE_CAPACITY`] bytes (its capacity is then that), on the heap beyond. Sending
    /// it copies once on backends with their own memory; a heap buffer is not copied by
    /// in-process backends.
    #[inline]
    pub fn heap(len: usize) -> TxBuf {
        if len <= Self::INLINE_CAPACITY {
            return TxBuf {
                repr: Repr::Inline {
                    // `len <= INLINE_CAPACITY < 256`.
                    len: len as u8,
                    data: [0; Self::INLINE_CAPACITY],
                },
            };
        }
        // Not `BytesMut::zeroed`: glibc's `calloc` bypasses its per-thread cache, and a
        // `malloc` plus a fill costs about half as much for the sizes sent most.
        let mut b = BytesMut::with_capacity(len);
        b.resize(len, 0);
        TxBuf {
            repr: Repr::Heap(b),
        }
    }

    /// A buffer of the first `len` bytes of `data`, held inline (no allocation, no zero fill):
    /// for a backend that received a small payload as whole words. `None` when `len` is above
    /// [`TxBuf::INLINE_CAPACITY`]. The bytes of `data` past `len` are never visible: reading
    /// stops at `len`, and [`TxBuf::set_len`] zeroes what it adds.
    #[inline]
    pub fn inline_from_array(data: [u8; Self::INLINE_CAPACITY], len: usize) -> Option<TxBuf> {
        (len <= Self::INLINE_CAPACITY).then_some(TxBuf {
            repr: Repr::Inline {
                // `len <= INLINE_CAPACITY < 256`.
                len: len as u8,
                data,
            },
        })
    }

    /// Wraps memory owned by a backend.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `cap` bytes, must be properly initialised
    /// (any byte values), and nothing else may access those bytes until `owner.release(token)`
    /// is called or the backend takes the lease back with [`TxBuf::take_lease`]. The memory must
    /// stay mapped at least that long. `len <= cap`.
    pub unsafe fn from_lease(
        ptr: NonNull<u8>,
        len: usize,
        cap: usize,
        token: u64,
        owner: Arc<dyn LeaseOwner>,
    ) -> TxBuf {
        assert!(len <= cap, "lease length {len} exceeds its capacity {cap}");
        TxBuf {
            repr: Repr::Lease(Lease {
                ptr,
                len,
                cap,
                token,
                owner: Some(owner),
            }),
        }
    }

    /// Number of bytes the buffer holds.
    #[inline]
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Heap(b) => b.len(),
            Repr::Inline { len, .. } => usize::from(*len),
            Repr::Lease(l) => l.len,
        }
    }

    /// True when the buffer holds no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Largest length this buffer can hold (what `alloc` reserved).
    #[inline]
    pub fn capacity(&self) -> usize {
        match &self.repr {
            Repr::Heap(b) => b.capacity(),
            Repr::Inline { .. } => Self::INLINE_CAPACITY,
            Repr::Lease(l) => l.cap,
        }
    }

    /// Shortens the buffer to `len` bytes; does nothing if it is already shorter.
    pub fn truncate(&mut self, len: usize) {
        match &mut self.repr {
            Repr::Heap(b) => b.truncate(len),
            Repr::Inline { len: l, .. } => *l = (*l).min(len.min(Self::INLINE_CAPACITY) as u8),
            Repr::Lease(l) => l.len = l.len.min(len),
        }
    }

    /// Sets the length to `len` bytes, up to [`capacity`](Self::capacity). Bytes between the
    /// old and new length keep whatever the memory held (zero in process memory).
    ///
    /// Returns the length actually set.
    pub fn set_len(&mut self, len: usize) -> usize {
        match &mut self.repr {
            Repr::Heap(b) => {
                let len = len.min(b.capacity());
                b.resize(len, 0);
                len
            }
            Repr::Inline { len: l, data } => {
                let len = len.min(Self::INLINE_CAPACITY);
                let old = usize::from(*l);
                if len > old {
                    data[old..len].fill(0);
                }
                *l = len as u8;
                len
            }
            Repr::Lease(l) => {
                l.len = len.min(l.cap);
                l.len
            }
        }
    }

    /// True when this buffer is a lease from `owner`.
    #[inline]
    pub fn is_leased_from(&self, owner: &Arc<dyn LeaseOwner>) -> bool {
        match &self.repr {
            Repr::Lease(Lease { owner: Some(o), .. }) => {
                std::ptr::addr_eq(Arc::as_ptr(o), Arc::as_ptr(owner))
            }
            _ => false,
        }
    }

    /// The lease token, if `owner` created this buffer (the buffer keeps its lease).
    pub fn lease_token(&self, owner: &Arc<dyn LeaseOwner>) -> Option<u64> {
        match &self.repr {
            Repr::Lease(l) if self.is_leased_from(owner) => Some(l.token),
            _ => None,
        }
    }

    /// Takes the lease back if `owner` created it: the backend then owns the memory again and
    /// nothing is released on drop. Otherwise the buffer is handed back unchanged.
    pub fn take_lease(mut self, owner: &Arc<dyn LeaseOwner>) -> Result<LeaseParts, TxBuf> {
        if !self.is_leased_from(owner) {
            return Err(self);
        }
        match &mut self.repr {
            Repr::Lease(l) => {
                l.owner = None;
                Ok(LeaseParts {
                    token: l.token,
                    len: l.len,
                })
            }
            Repr::Heap(_) | Repr::Inline { .. } => Err(self),
        }
    }

    /// Turns the buffer into `Bytes`: free for heap buffers, one copy for inline and leased ones
    /// (the lease is released).
    pub fn into_bytes(self) -> Bytes {
        match self.repr {
            Repr::Heap(b) => b.freeze(),
            Repr::Inline { len, data } => Bytes::copy_from_slice(&data[..usize::from(len)]),
            Repr::Lease(l) => Bytes::copy_from_slice(l.as_slice()),
        }
    }

    /// True when the buffer is process memory (on the heap or inline), not a lease.
    #[inline]
    pub fn is_heap(&self) -> bool {
        !matches!(self.repr, Repr::Lease(_))
    }

    /// True when the bytes are held inside the `TxBuf` (see [`TxBuf::INLINE_CAPACITY`]):
    /// turning it into `Bytes` copies them.
    #[inline]
    pub fn is_inline(&self) -> bool {
        matches!(self.repr, Repr::Inline { .. })
    }
}

impl std::ops::Deref for TxBuf {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        match &self.repr {
            Repr::Heap(b) => b,
            Repr::Inline { len, data } => &data[..usize::from(*len)],
            Repr::Lease(l) => l.as_slice(),
        }
    }
}

impl std::ops::DerefMut for TxBuf {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.repr {
            Repr::Heap(b) => b,
            Repr::Inline { len, data } => &mut data[..usize::from(*len)],
            Repr::Lease(l) => l.as_mut_slice(),
        }
    }
}

impl fmt::Debug for TxBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxBuf")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .field("leased", &!self.is_heap())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Owner {
        released: Mutex<Vec<u64>>,
    }
    impl LeaseOwner for Owner {
        fn release(&self, token: u64) {
            self.released.lock().unwrap().push(token);
        }
    }

    fn leased(mem: &mut [u8], token: u64, owner: &Arc<Owner>) -> TxBuf {
        let o: Arc<dyn LeaseOwner> = owner.clone();
        // SAFETY: `mem` outlives the buffer in every test below and is not touched meanwhile.
        unsafe {
            TxBuf::from_lease(
                NonNull::new(mem.as_mut_ptr()).unwrap(),
                4,
                mem.len(),
                token,
                o,
            )
        }
    }

    #[test]
    fn dropping_an_unsent_lease_releases_it_once() {
        let owner = Arc::new(Owner::default());
        let mut mem = [0u8; 16];
        {
            let mut b = leased(&mut mem, 7, &owner);
            b.copy_from_slice(b"abcd");
            assert_eq!(&*b, b"abcd");
        }
        assert_eq!(*owner.released.lock().unwrap(), vec![7]);
        assert_eq!(&mem[..4], b"abcd");
    }

    #[test]
    fn take_lease_only_by_its_owner_and_then_no_release() {
        let owner = Arc::new(Owner::default());
        let other: Arc<dyn LeaseOwner> = Arc::new(Owner::default());
        let mine: Arc<dyn LeaseOwner> = owner.clone();
        let mut mem = [0u8; 16];
        let mut b = leased(&mut mem, 9, &owner);
        assert_eq!(b.set_len(100), 16);
        b.truncate(10);
        let b = b
            .take_lease(&other)
            .expect_err("a stranger cannot take the lease");
        let parts = b.take_lease(&mine).expect("the owner takes it back");
        assert_eq!(parts, LeaseParts { token: 9, len: 10 });
        assert!(owner.released.lock().unwrap().is_empty());
    }

    #[test]
    fn heap_buffers_freeze_and_resize() {
        for len in [8, TxBuf::INLINE_CAPACITY, TxBuf::INLINE_CAPACITY + 1, 1000] {
            let mut b = TxBuf::heap(len);
            assert_eq!(b.is_inline(), len <= TxBuf::INLINE_CAPACITY, "len {len}");
            assert!(b.is_heap());
            assert_eq!(&*b, &vec![0u8; len][..]);
            assert!(b.capacity() >= len);
            b[0] = 5;
            b[len - 1] = 6;
            b.truncate(3);
            assert_eq!(b.len(), 3);
            // Growing again up to the capacity shows zeros, not the bytes truncated away.
            let cap = b.capacity();
            assert_eq!(b.set_len(cap + 10), cap);
            assert_eq!(b[len - 1], 0, "len {len}");
            b.truncate(3);
            assert_eq!(b.into_bytes().as_ref(), &[5, 0, 0]);
        }
    }

    #[test]
    fn inline_from_array_shows_only_its_length() {
        let data = [0xAB; TxBuf::INLINE_CAPACITY];
        let mut b = TxBuf::inline_from_array(data, 5).unwrap();
        assert!(b.is_inline());
        assert_eq!(&*b, &[0xAB; 5]);
        // The bytes of the array past the length never show, even when the buffer grows.
        assert_eq!(b.set_len(9), 9);
        assert_eq!(&*b, &[0xAB, 0xAB, 0xAB, 0xAB, 0xAB, 0, 0, 0, 0]);
        let full = TxBuf::inline_from_array(data, TxBuf::INLINE_CAPACITY).unwrap();
        assert_eq!(full.len(), TxBuf::INLINE_CAPACITY);
        assert!(TxBuf::inline_from_array(data, TxBuf::INLINE_CAPACITY + 1).is_none());
    }

    #[test]
    fn inline_buffers_hold_exactly_their_length() {
        let mut b = TxBuf::heap(10);
        b.copy_from_slice(b"0123456789");
        assert_eq!(&*b, b"0123456789");
        b.truncate(100);
        assert_eq!(b.len(), 10);
        assert_eq!(b.set_len(4), 4);
        assert_eq!(&*b, b"0123");
        assert_eq!(
            format!("{b:?}"),
            "TxBuf { len: 4, capacity: 64, leased: false }"
        );
    }

    #[test]
    fn leased_into_bytes_copies_and_releases() {
        let owner = Arc::new(Owner::default());
        let mut mem = *b"wxyz____________";
        let b = leased(&mut mem, 3, &owner);
        assert_eq!(b.into_bytes().as_ref(), b"wxyz");
        assert_eq!(*owner.released.lock().unwrap(), vec![3]);
    }
}
