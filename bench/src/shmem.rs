//! The only `unsafe` code of the benchmark: a shared memory mapping (memfd), adopting file
//! descriptors inherited from the parent, and registering a descriptor with tokio's reactor.
//!
//! [`SharedRegion`] offers safe, bounds-checked accessors (atomic words, byte copies, a
//! checksum) over a mapping shared with the peer process, which runs this same binary. Plain
//! (non-atomic) payload bytes are only touched while the spin protocol of
//! [`spin`](super::spin) gives this side ownership of that range: ownership moves with a
//! release store and an acquire load of an atomic word, so the two processes never access the
//! same payload bytes at once. The peer is trusted to follow the protocol (it is this binary);
//! a misbehaving peer could only make us read garbage bytes, never outside the mapping, since
//! every offset is checked against the mapping's length here.

use rustix::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::fs::File;
use std::io;
use std::sync::atomic::AtomicU64;

/// A mapping shared with the peer process.
pub struct SharedRegion {
    _map: memmap2::MmapMut,
    ptr: *mut u8,
    len: usize,
}

impl SharedRegion {
    /// Creates a memfd of `len` bytes (inheritable by children: no close-on-exec) and maps it.
    /// Returns the mapping and the descriptor to pass to the child.
    pub fn create(len: usize) -> io::Result<(SharedRegion, OwnedFd)> {
        let fd = rustix::fs::memfd_create("transport-bench", rustix::fs::MemfdFlags::empty())?;
        rustix::fs::ftruncate(&fd, len as u64)?;
        let region = Self::map(File::from(fd.try_clone()?), len)?;
        Ok((region, fd))
    }

    /// Maps the memfd inherited as descriptor number `fd`, which must be `len` bytes long.
    pub fn attach_inherited(fd: RawFd, len: usize) -> io::Result<SharedRegion> {
        let file = File::from(take_inherited_fd(fd)?);
        let actual = file.metadata()?.len();
        if actual != len as u64 {
            return Err(io::Error::other(format!(
                "inherited mapping has {actual} bytes, expected {len}"
            )));
        }
        Self::map(file, len)
    }

    fn map(file: File, len: usize) -> io::Result<SharedRegion> {
        // SAFETY: the file is a memfd that only this benchmark's two processes can reach; its
        // length is fixed at `len` and never truncated while mapped, so the mapping stays valid.
        // Concurrent modification by the peer is expected and handled as described in the
        // module documentation (we never create references to shared payload bytes that the
        // peer may write at the same time).
        let mut map = unsafe { memmap2::MmapOptions::new().len(len).map_mut(&file)? };
        let ptr = map.as_mut_ptr();
        Ok(SharedRegion {
            _map: map,
            ptr,
            len,
        })
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the mapping is empty (never, in practice).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, off: usize, len: usize) {
        assert!(
            off.checked_add(len).is_some_and(|end| end <= self.len),
            "range {off}+{len} outside the {}-byte shared mapping",
            self.len
        );
    }

    /// The 8-byte aligned atomic word at byte offset `off`.
    ///
    /// # Panics
    /// If `off` is misaligned or out of bounds (offsets are compile-time constants).
    pub fn atomic(&self, off: usize) -> &AtomicU64 {
        self.check(off, 8);
        assert!(off % 8 == 0, "misaligned atomic offset {off}");
        // SAFETY: in bounds and 8-byte aligned (the mapping is page-aligned); the memory lives
        // as long as `self`, and both processes access this word only atomically.
        unsafe { &*self.ptr.add(off).cast::<AtomicU64>() }
    }

    /// Copies `src` to offset `off`. The caller must own that range under the spin protocol.
    pub fn write(&self, off: usize, src: &[u8]) {
        self.check(off, src.len());
        // SAFETY: in bounds; `src` is private memory so the ranges do not overlap; the protocol
        // gives this side exclusive use of the destination range (module documentation).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.add(off), src.len()) }
    }

    /// Copies `len` bytes from offset `from` to offset `to` inside the mapping (the ranges must
    /// not overlap). The caller must own both ranges under the spin protocol.
    pub fn copy_within(&self, from: usize, to: usize, len: usize) {
        self.check(from, len);
        self.check(to, len);
        assert!(
            from + len <= to || to + len <= from,
            "overlapping copy {from}->{to} of {len} bytes"
        );
        // SAFETY: both ranges are in bounds and disjoint (checked); the protocol gives this
        // side exclusive use of them (module documentation).
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(from), self.ptr.add(to), len) }
    }

    /// Runs `f` on the `len` bytes at `off`. The caller must own that range under the spin
    /// protocol (the peer does not write it meanwhile).
    pub fn with_bytes<R>(&self, off: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> R {
        self.check(off, len);
        // SAFETY: in bounds and alive for the call; the protocol guarantees the peer does not
        // write this range while this side holds it (module documentation).
        f(unsafe { std::slice::from_raw_parts(self.ptr.add(off), len) })
    }
}

/// Adopts descriptor number `fd`, inherited from the parent process (created for this child and
/// passed on its command line). Fails if the number is a standard stream or not open.
pub fn take_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    if fd <= 2 {
        return Err(io::Error::other(format!(
            "refusing to adopt descriptor {fd} (standard stream or invalid)"
        )));
    }
    // SAFETY: borrowed only for the duration of the `fcntl` probe below; the call reports
    // EBADF instead of misbehaving if the number is not open.
    let probe = unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::io::fcntl_getfd(probe.as_fd())?;
    // SAFETY: the descriptor is open (probed above) and was created by the parent for this
    // child alone; nothing else in this process owns it, and the child adopts each number once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Registers an owned descriptor with the current tokio runtime's reactor for readability
/// (must be called inside a runtime).
pub fn async_readable(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is an open descriptor nobody else can close; the `AsyncFd` owns it
    // from here on, so it stays open and names the same file description, and `as_raw_fd`
    // returns that same number, for the `AsyncFd`'s whole life.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}
