//! The only `unsafe` code of the crate: typed views into a shared mapping.
//!
//! A [`Mapping`] owns a `MAP_SHARED` read-write mapping (kept alive by an `Arc` in every view),
//! of which one range, the peer's payload memory, may be made read-only
//! ([`Mapping::protect_read_only`]).
//! [`SharedWords`] is a `&[AtomicU64]` over a range of it — every control word of the segment is
//! accessed through these atomics only, so a hostile peer writing any byte at any time cannot
//! cause a data race on them. [`SharedBytes`] is a range of payload bytes, accessed only by raw
//! copies (never through a Rust reference, so a concurrent write by the peer can at worst garble
//! the bytes copied, which the protocol tolerates: they are the peer's own payload).
//!
//! Every view is bounds- and alignment-checked when it is created; the checks use only
//! process-local values (the mapping length and offsets from the local [`crate::core::layout::Layout`]).

use std::ops::{Deref, Range};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use memmap2::MmapRaw;

/// A view was asked for outside the mapping or at a misaligned offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The range does not fit in the mapping.
    #[error("range of {len} bytes at offset {offset} exceeds the {mapping_len}-byte mapping")]
    OutOfBounds {
        /// Start of the range.
        offset: usize,
        /// Length of the range in bytes.
        len: usize,
        /// Length of the mapping.
        mapping_len: usize,
    },
    /// A word view must start at a multiple of 8 bytes.
    #[error("word view at offset {offset} is not 8-byte aligned")]
    Misaligned {
        /// The offset asked for.
        offset: usize,
    },
    /// A write into bytes this process mapped read-only (the peer's payload memory).
    #[error("{len} bytes at offset {offset} overlap the read-only range {read_only:?}")]
    ReadOnly {
        /// Start of the write.
        offset: usize,
        /// Length of the write.
        len: usize,
        /// The read-only range of the mapping.
        read_only: std::ops::Range<usize>,
    },
    /// `mprotect` refused to make a range read-only.
    #[error("mprotect of {len} bytes at offset {offset} read-only failed: {errno}")]
    Protect {
        /// Start of the range.
        offset: usize,
        /// Length of the range.
        len: usize,
        /// The system's answer.
        errno: rustix::io::Errno,
    },
}

/// A shared read-write mapping of a segment, or a sub-range (a *region*) of one.
///
/// Offsets given to [`words`](Self::words) and [`bytes`](Self::bytes) are relative to the start
/// of this mapping or region, so a [`crate::os::segment::Segment`] laid over a hub region works
/// exactly as over a whole pair segment.
pub struct Mapping {
    raw: Arc<MmapRaw>,
    /// Start of this view inside `raw` (0 for a whole mapping; a multiple of
    /// [`REGION_ALIGN`] for a region).
    base: usize,
    len: usize,
    /// The range of this view made read-only by [`Mapping::protect_read_only`] (set once).
    read_only: OnceLock<Range<usize>>,
    /// Dropped with the last reference into this view (a region's "no host reference left"
    /// signal, see [`Mapping::region`]).
    _guard: Option<Box<dyn Send + Sync>>,
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("base", &self.base)
            .field("len", &self.len)
            .field("region", &self._guard.is_some())
            .finish()
    }
}

/// Alignment required of a region's start inside its mapping (one cache line; the hub uses
/// page-aligned regions).
pub(crate) const REGION_ALIGN: usize = 64;

impl Mapping {
    /// Takes ownership of a mapping (it must be a shared, read-write mapping, as made by
    /// [`crate::os::sys`]).
    pub fn new(raw: MmapRaw) -> Arc<Mapping> {
        let len = raw.len();
        Arc::new(Mapping {
            raw: Arc::new(raw),
            base: 0,
            len,
            read_only: OnceLock::new(),
            _guard: None,
        })
    }

    /// A view of `len` bytes at `offset` of this mapping, sharing the same pages; offsets into
    /// the view start at 0. `guard` is dropped when the last reference into the view (the view
    /// itself and every [`SharedWords`]/[`SharedBytes`] made from it) is gone, which is how the
    /// hub learns that nothing in this process touches a region any more.
    pub fn region(
        self: &Arc<Self>,
        offset: usize,
        len: usize,
        guard: Box<dyn Send + Sync>,
    ) -> Result<Arc<Mapping>, MappingError> {
        if offset % REGION_ALIGN != 0 {
            return Err(MappingError::Misaligned { offset });
        }
        self.check(offset, len)?;
        Ok(Arc::new(Mapping {
            raw: Arc::clone(&self.raw),
            base: self.base + offset,
            len,
            read_only: OnceLock::new(),
            _guard: Some(guard),
        }))
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty mapping.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Pointer to byte `offset` of this view.
    ///
    /// Callers pass an `offset` that was bounds-checked against [`len`](Self::len) (at most
    /// `len`), so the result lies inside (or one past the end of) the underlying mapping.
    fn at(&self, offset: usize) -> *mut u8 {
        debug_assert!(offset <= self.len);
        // SAFETY: `base + len <= raw.len()` holds by construction (`new` uses the whole
        // mapping, `region` checks its range against the parent view, which is itself inside
        // `raw`), and callers keep `offset <= len`, so the addition stays within the mapping
        // (or one past its end) and does not overflow.
        unsafe { self.raw.as_mut_ptr().add(self.base + offset) }
    }

    fn check(&self, offset: usize, len: usize) -> Result<(), MappingError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(MappingError::OutOfBounds {
                offset,
                len,
                mapping_len: self.len(),
            }),
        }
    }

    /// Makes `len` bytes at `offset` of this view read-only in this process (`mprotect`), for
    /// memory only the peer writes: a stray write here then faults at once instead of
    /// corrupting what the peer sent. `Ok(false)` when the range is not made of whole pages
    /// of this system (its pages are larger than the layout's alignment) and stays writable.
    /// At most one range per view; a second call fails.
    pub fn protect_read_only(&self, offset: usize, len: usize) -> Result<bool, MappingError> {
        self.check(offset, len)?;
        let page = rustix::param::page_size();
        let addr = self.at(offset);
        if len == 0 || (addr as usize) % page != 0 || len % page != 0 {
            return Ok(false);
        }
        if self.read_only.get().is_some() {
            return Err(MappingError::ReadOnly {
                offset,
                len,
                read_only: self.read_only.get().cloned().unwrap_or_default(),
            });
        }
        // SAFETY: `addr..addr + len` is whole pages inside this mapping (`check` above; both
        // page-aligned), which `self.raw` keeps mapped. Taking write permission away cannot
        // invalidate anything Rust relies on: no `&mut` to these bytes exists, and the views
        // handed out for them are read through raw copies or `&[u8]` of received payloads.
        // Writes into the range go through `SharedBytes::write`, which refuses it below, or
        // through word views that this crate lays only over header and rings.
        unsafe { rustix::mm::mprotect(addr.cast(), len, rustix::mm::MprotectFlags::READ) }
            .map_err(|errno| MappingError::Protect { offset, len, errno })?;
        let _ = self.read_only.set(offset..offset + len);
        Ok(true)
    }

    /// The range of this view that [`protect_read_only`](Self::protect_read_only) made
    /// read-only, if any.
    pub fn read_only(&self) -> Option<Range<usize>> {
        self.read_only.get().cloned()
    }

    /// `count` atomic words starting at byte `offset`.
    pub fn words(
        self: &Arc<Self>,
        offset: usize,
        count: usize,
    ) -> Result<SharedWords, MappingError> {
        if offset % 8 != 0 {
            return Err(MappingError::Misaligned { offset });
        }
        let len = count.checked_mul(8).ok_or(MappingError::OutOfBounds {
            offset,
            len: usize::MAX,
            mapping_len: self.len(),
        })?;
        self.check(offset, len)?;
        // `check` passed: `offset` is within the mapping, whose base pointer is non-null, so
        // this error cannot occur (it only keeps the conversion free of a panic).
        let start =
            NonNull::new(self.at(offset).cast::<AtomicU64>()).ok_or(MappingError::OutOfBounds {
                offset,
                len,
                mapping_len: self.len(),
            })?;
        Ok(SharedWords {
            map: Arc::clone(self),
            start,
            count,
        })
    }

    /// The first byte and length of `len` payload bytes starting at byte `offset`, checked
    /// like [`bytes`](Self::bytes) but without a reference to the mapping: for a caller that
    /// keeps the mapping alive by other means (a slot lease holds its session).
    pub fn span(&self, offset: usize, len: usize) -> Result<(NonNull<u8>, usize), MappingError> {
        self.check(offset, len)?;
        // `check` passed: the pointer lies inside the mapping, whose base is non-null; the
        // error only keeps the conversion free of a panic.
        let start = NonNull::new(self.at(offset)).ok_or(MappingError::OutOfBounds {
            offset,
            len,
            mapping_len: self.len(),
        })?;
        Ok((start, len))
    }

    /// `len` payload bytes starting at byte `offset`.
    pub fn bytes(self: &Arc<Self>, offset: usize, len: usize) -> Result<SharedBytes, MappingError> {
        self.check(offset, len)?;
        Ok(SharedBytes {
            map: Arc::clone(self),
            offset,
            len,
        })
    }
}

/// A checked `[AtomicU64]` view into a [`Mapping`]; keeps the mapping alive.
///
/// The start of the view is computed once, when it is created: the hot paths index rings
/// through it on every access, and re-deriving it from the mapping each time cost three
/// dependent loads per access.
#[derive(Clone)]
pub struct SharedWords {
    #[expect(
        dead_code,
        reason = "held, not read: keeps the mapping under `start` alive"
    )]
    map: Arc<Mapping>,
    /// First word of the view: `map`'s base plus the checked offset.
    start: NonNull<AtomicU64>,
    count: usize,
}

// SAFETY: a `SharedWords` is a shared view of `count` `AtomicU64`s (as a `&[AtomicU64]` is,
// which is `Send` and `Sync`) plus the `Arc` that keeps their mapping alive (`Mapping` is
// `Send + Sync`: an `Arc<MmapRaw>`, two integers and an optional `Send + Sync` guard; checked
// below). The raw `start` pointer is only ever turned into that shared slice, so moving or
// sharing the view across threads allows nothing a `&[AtomicU64]` would not.
unsafe impl Send for SharedWords {}
// SAFETY: as for `Send` above.
unsafe impl Sync for SharedWords {}

/// The claim above that `Mapping` is `Send + Sync`, checked by the compiler.
const _: () = {
    fn send_and_sync<T: Send + Sync>() {}
    let _ = send_and_sync::<Mapping>;
};

/// Shows the length only: the address of the view says nothing useful and would put the
/// process layout into logs.
impl std::fmt::Debug for SharedWords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedWords")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl Deref for SharedWords {
    type Target = [AtomicU64];

    #[inline]
    fn deref(&self) -> &[AtomicU64] {
        // SAFETY: `Mapping::words` checked that `offset..offset + 8 * count` lies inside the
        // mapping (or region) and that `offset` is a multiple of 8, and set `start` to the
        // mapping's address at `offset`; the mapping base is page-aligned and a region starts
        // at a multiple of `REGION_ALIGN` (64), so the pointer is aligned for `AtomicU64` (size
        // and alignment 8). The mapping does not move and is alive as long as `self.map`, hence
        // as long as the returned borrow of `self`. `AtomicU64` has interior mutability and
        // every bit pattern is valid, so concurrent writes by this or another process (through
        // atomics, or arbitrary bytes from a hostile peer) are allowed through a shared
        // reference.
        unsafe { std::slice::from_raw_parts(self.start.as_ptr().cast_const(), self.count) }
    }
}

/// A checked range of payload bytes in a mapping (one slot); keeps the mapping alive.
#[derive(Debug, Clone)]
pub struct SharedBytes {
    map: Arc<Mapping>,
    offset: usize,
    len: usize,
}

impl SharedBytes {
    /// Length of the range.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty range.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Start of the range, valid for reads and writes of [`len`](Self::len) bytes while the
    /// mapping lives (for building a zero-copy lease; the caller must then own the slot).
    pub fn as_ptr(&self) -> NonNull<u8> {
        // `offset <= mapping length` was checked at creation, so the result is within (or one
        // past the end of) the mapping, whose base pointer is non-null.
        NonNull::new(self.map.at(self.offset)).unwrap_or(NonNull::dangling())
    }

    /// The mapping this range belongs to (to keep it alive alongside [`as_ptr`](Self::as_ptr)).
    pub fn mapping(&self) -> &Arc<Mapping> {
        &self.map
    }

    fn range(&self, at: usize, n: usize) -> Result<usize, MappingError> {
        match at.checked_add(n) {
            Some(end) if end <= self.len => Ok(self.offset + at),
            _ => Err(MappingError::OutOfBounds {
                offset: at,
                len: n,
                mapping_len: self.len,
            }),
        }
    }

    /// Copies `src` into the range at `at`; refused where the mapping is read-only.
    pub fn write(&self, at: usize, src: &[u8]) -> Result<(), MappingError> {
        let off = self.range(at, src.len())?;
        if let Some(ro) = self.map.read_only() {
            if off < ro.end && ro.start < off + src.len() {
                return Err(MappingError::ReadOnly {
                    offset: off,
                    len: src.len(),
                    read_only: ro,
                });
            }
        }
        // SAFETY: `range` checked `at + src.len() <= self.len`, and `offset + len` lies inside
        // the mapping (checked at creation), which `self.map` keeps alive. `src` is ordinary
        // process memory, so it cannot overlap the shared mapping's bytes we write. No Rust
        // reference to the shared bytes is created.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.map.at(off), src.len());
        }
        Ok(())
    }

    /// Copies bytes from the range at `at` into `dst`.
    pub fn read(&self, at: usize, dst: &mut [u8]) -> Result<(), MappingError> {
        let off = self.range(at, dst.len())?;
        // SAFETY: as in `write`; `dst` is exclusively borrowed process memory.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map.at(off).cast_const(),
                dst.as_mut_ptr(),
                dst.len(),
            );
        }
        Ok(())
    }

    /// The first `n` bytes of the range, copied into a vector.
    pub fn to_vec(&self, n: usize) -> Result<Vec<u8>, MappingError> {
        let mut v = vec![0u8; n];
        self.read(0, &mut v)?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests;
