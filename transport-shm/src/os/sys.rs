//! The operating-system layer: memfd segments, mappings, eventfds, pidfds and file-descriptor
//! passing over Unix sockets. Every descriptor is created close-on-exec (INVARIANTS 20).
//!
//! These are plain blocking-or-nonblocking system call wrappers; the async layer calls the
//! socket functions inside tokio's `AsyncFd::try_io` (convert with `io::Error::from(OsError)`,
//! which keeps `WouldBlock`).

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use memmap2::{MmapOptions, MmapRaw};
use rustix::event::{EventfdFlags, eventfd as rustix_eventfd};
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::core::layout::{HEADER_LEN, MAX_SEGMENT_LEN};

/// Most file descriptors sent or accepted in one message.
pub(crate) const MAX_FDS: usize = 8;

/// Seals the creator puts on a segment: it can never shrink or grow (so a peer cannot make our
/// mapping SIGBUS), and no further seal can be added.
pub(crate) const SEGMENT_SEALS: SealFlags = SealFlags::SHRINK
    .union(SealFlags::GROW)
    .union(SealFlags::SEAL);

/// Why an OS-layer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OsError {
    /// A descriptor received or inherited from the peer is unusable.
    #[error("descriptor {fd} from the peer is unusable: {why}")]
    BadInheritedFd {
        /// The descriptor number.
        fd: i32,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A system call failed.
    #[error("{op} failed: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The segment is smaller than a header or larger than [`MAX_SEGMENT_LEN`].
    #[error("segment size {len} is outside {min}..={MAX_SEGMENT_LEN}")]
    BadSegmentSize {
        /// Size found by `fstat` (or asked for).
        len: u64,
        /// Smallest acceptable size.
        min: usize,
    },
    /// The segment is not sealed against shrinking: the peer could truncate it under our
    /// mapping (SIGBUS, INVARIANTS 22).
    #[error("segment is not sealed against shrinking (seals {seals:#x})")]
    NotSealed {
        /// The seals found.
        seals: u32,
    },
    /// A hub region does not lie page-aligned inside its segment.
    #[error(
        "region of {len} bytes at offset {offset} is not a page-aligned range of the {size}-byte segment"
    )]
    BadRegion {
        /// Offset asked for.
        offset: u64,
        /// Length asked for.
        len: u64,
        /// Size of the segment (`fstat`).
        size: u64,
    },
    /// More descriptors than [`MAX_FDS`] were given or received.
    #[error("{got} file descriptors exceed the limit of {max}")]
    TooManyFds {
        /// Number given or received.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// The kernel truncated the control message: descriptors were lost.
    #[error("file descriptors were truncated in transit")]
    FdsTruncated,
    /// Descriptors can only travel with at least one data byte.
    #[error("file descriptors must be sent with at least one byte of data")]
    EmptyMessage,
}

impl OsError {
    fn io(op: &'static str) -> impl FnOnce(rustix::io::Errno) -> OsError {
        move |e| OsError::Io {
            op,
            source: e.into(),
        }
    }

    /// True when the operation would block (non-blocking descriptor not ready).
    pub fn is_would_block(&self) -> bool {
        matches!(self, OsError::Io { source, .. } if source.kind() == io::ErrorKind::WouldBlock)
    }
}

impl From<OsError> for io::Error {
    /// `Io` errors become their source (keeping `WouldBlock` for `try_io`); the others become
    /// `InvalidData` errors wrapping the `OsError`.
    fn from(e: OsError) -> io::Error {
        match e {
            OsError::Io { source, .. } => source,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

/// Creates a sealed memfd segment of `len` bytes and maps it shared, read-write.
///
/// The memfd is `CLOEXEC`, zero-filled, and sealed with [`SEGMENT_SEALS`] before it is mapped.
pub(crate) fn create_segment(len: usize) -> Result<(OwnedFd, MmapRaw), OsError> {
    if len < HEADER_LEN || len as u64 > MAX_SEGMENT_LEN {
        return Err(OsError::BadSegmentSize {
            len: len as u64,
            min: HEADER_LEN,
        });
    }
    let fd = rustix::fs::memfd_create(
        "transport-shm",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .map_err(OsError::io("memfd_create"))?;
    rustix::fs::ftruncate(&fd, len as u64).map_err(OsError::io("ftruncate"))?;
    rustix::fs::fcntl_add_seals(&fd, SEGMENT_SEALS).map_err(OsError::io("fcntl(F_ADD_SEALS)"))?;
    let map = MmapOptions::new()
        .len(len)
        .map_raw(&fd)
        .map_err(|source| OsError::Io { op: "mmap", source })?;
    Ok((fd, map))
}

/// The size of a segment received from the peer, once it is known to be sealed against
/// shrinking (so the size cannot drop under a mapping).
fn sealed_size(fd: BorrowedFd<'_>) -> Result<u64, OsError> {
    let seals = rustix::fs::fcntl_get_seals(fd).map_err(OsError::io("fcntl(F_GET_SEALS)"))?;
    if !seals.contains(SealFlags::SHRINK) {
        return Err(OsError::NotSealed {
            seals: seals.bits(),
        });
    }
    let st = rustix::fs::fstat(fd).map_err(OsError::io("fstat"))?;
    let size = u64::try_from(st.st_size).unwrap_or(0);
    Ok(size)
}

/// Maps a segment received from the peer: checks that it is sealed against shrinking and that
/// its size (from `fstat`) is within bounds, then maps all of it shared, read-write.
pub(crate) fn map_segment(fd: BorrowedFd<'_>) -> Result<MmapRaw, OsError> {
    let size = sealed_size(fd)?;
    if size < HEADER_LEN as u64 || size > MAX_SEGMENT_LEN {
        return Err(OsError::BadSegmentSize {
            len: size,
            min: HEADER_LEN,
        });
    }
    let len = usize::try_from(size).map_err(|_| OsError::BadSegmentSize {
        len: size,
        min: HEADER_LEN,
    })?;
    MmapOptions::new()
        .len(len)
        .map_raw(&fd)
        .map_err(|source| OsError::Io { op: "mmap", source })
}

/// The system page size (region offsets of a hub segment are multiples of it).
pub(crate) fn page_size() -> usize {
    rustix::param::page_size()
}

/// Maps only `len` bytes at `offset` of a segment received from the peer (a hub region):
/// checks the seals and that `offset..offset + len` lies inside the file (`fstat`), that
/// `offset` is a multiple of the page size (so not one byte before the region is mapped) and
/// that `len` is within `HEADER_LEN..=MAX_SEGMENT_LEN`.
pub(crate) fn map_segment_range(
    fd: BorrowedFd<'_>,
    offset: u64,
    len: u64,
) -> Result<MmapRaw, OsError> {
    let size = sealed_size(fd)?;
    let page = page_size() as u64;
    let end = offset.checked_add(len);
    if offset % page != 0 || end.is_none_or(|e| e > size) {
        return Err(OsError::BadRegion { offset, len, size });
    }
    if len < HEADER_LEN as u64 || len > MAX_SEGMENT_LEN {
        return Err(OsError::BadSegmentSize {
            len,
            min: HEADER_LEN,
        });
    }
    let ulen = usize::try_from(len).map_err(|_| OsError::BadRegion { offset, len, size })?;
    MmapOptions::new()
        .offset(offset)
        .len(ulen)
        .map_raw(&fd)
        .map_err(|source| OsError::Io { op: "mmap", source })
}

/// Shuts down the sending direction of a stream socket: the peer reads end-of-file, as if
/// every descriptor of our end had been closed, while we can still see its own hang-up.
pub(crate) fn shutdown_write(sock: impl AsFd) -> Result<(), OsError> {
    rustix::net::shutdown(sock, rustix::net::Shutdown::Write).map_err(OsError::io("shutdown"))
}

/// A new eventfd (`EFD_CLOEXEC | EFD_NONBLOCK`, counter 0) to register with tokio's `AsyncFd`.
pub(crate) fn eventfd() -> Result<OwnedFd, OsError> {
    rustix_eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
        .map_err(OsError::io("eventfd"))
}

/// Adds 1 to an eventfd's counter (wakes its waiter). A saturated counter (`EAGAIN`) already
/// means "wake", so it is not an error.
pub(crate) fn eventfd_signal(fd: BorrowedFd<'_>) -> Result<(), OsError> {
    match rustix::io::write(fd, &1u64.to_ne_bytes()) {
        Ok(_) | Err(rustix::io::Errno::AGAIN) => Ok(()),
        Err(e) => Err(OsError::io("eventfd write")(e)),
    }
}

/// Reads and resets a non-blocking eventfd's counter; `Err` with `WouldBlock` when it was 0.
/// The sessions never read their doorbells (INVARIANTS 17); tests read them to check writes.
#[cfg(test)]
pub(crate) fn eventfd_drain(fd: BorrowedFd<'_>) -> Result<u64, OsError> {
    let mut b = [0u8; 8];
    rustix::io::read(fd, &mut b).map_err(OsError::io("eventfd read"))?;
    Ok(u64::from_ne_bytes(b))
}

/// A pidfd for `pid` (close-on-exec); it becomes readable when the process exits.
pub(crate) fn pidfd_open(pid: i32) -> Result<OwnedFd, OsError> {
    let pid = rustix::process::Pid::from_raw(pid).ok_or(OsError::Io {
        op: "pidfd_open",
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .map_err(OsError::io("pidfd_open"))
}

/// This process's id.
pub(crate) fn current_pid() -> i32 {
    rustix::process::getpid().as_raw_nonzero().get()
}

/// Sends `bytes` (at least one) with `fds` attached (`SCM_RIGHTS`, at most [`MAX_FDS`]).
/// Returns how many bytes the kernel took; on a stream socket the caller sends any rest
/// without descriptors.
pub(crate) fn send_fds(
    sock: impl AsFd,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<usize, OsError> {
    if fds.len() > MAX_FDS {
        return Err(OsError::TooManyFds {
            got: fds.len(),
            max: MAX_FDS,
        });
    }
    if bytes.is_empty() {
        return Err(OsError::EmptyMessage);
    }
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !cmsg.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(OsError::TooManyFds {
            got: fds.len(),
            max: MAX_FDS,
        });
    }
    rustix::net::sendmsg(sock, &[IoSlice::new(bytes)], &mut cmsg, SendFlags::NOSIGNAL)
        .map_err(OsError::io("sendmsg"))
}

/// Receives bytes into `buf` and up to `max_fds` (≤ [`MAX_FDS`]) descriptors, close-on-exec.
/// `Ok((0, _))` means the peer closed the socket. Descriptors beyond `max_fds`, or a truncated
/// control message, are an error (the received descriptors are closed).
pub(crate) fn recv_fds(
    sock: impl AsFd,
    buf: &mut [u8],
    max_fds: usize,
) -> Result<(usize, Vec<OwnedFd>), OsError> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let r = rustix::net::recvmsg(
        sock,
        &mut [IoSliceMut::new(buf)],
        &mut cmsg,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(OsError::io("recvmsg"))?;
    let mut fds = Vec::new();
    for msg in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(iter) = msg {
            fds.extend(iter);
        }
    }
    if r.flags.contains(ReturnFlags::CTRUNC) {
        return Err(OsError::FdsTruncated);
    }
    if fds.len() > max_fds.min(MAX_FDS) {
        return Err(OsError::TooManyFds {
            got: fds.len(),
            max: max_fds.min(MAX_FDS),
        });
    }
    Ok((r.bytes, fds))
}

/// Arranges for `fd` (close-on-exec here) to be inherited by the program `cmd` runs next, under
/// the same descriptor number: close-on-exec is cleared in the forked child only, just before
/// exec, so no other child spawned meanwhile by this process inherits it (INVARIANTS 20).
///
/// `Command` keeps its hooks, so the hook is disarmed through the returned guard once the spawn
/// is done: a later spawn from the same `Command` (when the number may name something else by
/// then) does not clear close-on-exec on anything.
pub(crate) fn inherit_in_child(
    cmd: &mut std::process::Command,
    fd: BorrowedFd<'_>,
) -> InheritGuard {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    use std::sync::atomic::{AtomicI32, Ordering};
    let target = std::sync::Arc::new(AtomicI32::new(fd.as_raw_fd()));
    let hook = target.clone();
    // SAFETY: the closure runs in the forked child before exec and only does an atomic load and
    // `fcntl`, both async-signal-safe; it allocates nothing and takes no lock. While armed, the
    // number stays open in the parent until `spawn` returns (the caller holds `fd` and disarms
    // the guard afterwards), so in the child it is the same descriptor.
    unsafe {
        cmd.pre_exec(move || {
            let raw = hook.load(Ordering::Acquire);
            if raw >= 0 {
                let fd = BorrowedFd::borrow_raw(raw);
                rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
            }
            Ok(())
        });
    }
    InheritGuard(target)
}

/// Disarms the hook of [`inherit_in_child`] when dropped.
#[derive(Debug)]
pub(crate) struct InheritGuard(std::sync::Arc<std::sync::atomic::AtomicI32>);

impl Drop for InheritGuard {
    fn drop(&mut self) {
        self.0.store(-1, std::sync::atomic::Ordering::Release);
    }
}

/// Takes ownership of descriptor number `raw` that this process inherited from its parent
/// (see [`inherit_in_child`]), after checking that it is an open Unix stream socket; sets
/// close-on-exec on it again so it is not passed further.
///
/// Call it once, early: the number must not be owned by anything else in this process.
pub(crate) fn adopt_inherited_socket(raw: i32) -> Result<OwnedFd, OsError> {
    use std::os::fd::FromRawFd;
    if raw < 3 {
        return Err(OsError::BadInheritedFd {
            fd: raw,
            why: "not above the standard streams",
        });
    }
    // SAFETY: `raw` is only borrowed for the checks below; `fcntl_getfd` fails cleanly if it is
    // not open.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    rustix::io::fcntl_getfd(borrowed).map_err(|_| OsError::BadInheritedFd {
        fd: raw,
        why: "not open",
    })?;
    let st = rustix::fs::fstat(borrowed).map_err(OsError::io("fstat"))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Socket {
        return Err(OsError::BadInheritedFd {
            fd: raw,
            why: "not a socket",
        });
    }
    let ty =
        rustix::net::sockopt::socket_type(borrowed).map_err(OsError::io("getsockopt(SO_TYPE)"))?;
    if ty != rustix::net::SocketType::STREAM {
        return Err(OsError::BadInheritedFd {
            fd: raw,
            why: "not a stream socket",
        });
    }
    rustix::io::fcntl_setfd(borrowed, rustix::io::FdFlags::CLOEXEC)
        .map_err(OsError::io("fcntl(F_SETFD)"))?;
    // SAFETY: the descriptor is open (checked above) and was handed to this process by its
    // parent for this purpose; the caller guarantees nothing else here owns the number.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Checks that a descriptor received from the peer is an eventfd and makes it non-blocking, so
/// that signalling it can never block this process (a hostile peer could send a pipe).
pub(crate) fn check_eventfd(fd: BorrowedFd<'_>) -> Result<(), OsError> {
    use std::os::fd::AsRawFd;
    let link =
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(|source| {
            OsError::Io {
                op: "readlink(/proc/self/fd)",
                source,
            }
        })?;
    if link.as_os_str() != "anon_inode:[eventfd]" {
        return Err(OsError::BadInheritedFd {
            fd: fd.as_raw_fd(),
            why: "a doorbell is not an eventfd",
        });
    }
    rustix::io::ioctl_fionbio(fd, true).map_err(OsError::io("ioctl(FIONBIO)"))
}

/// Registers an owned descriptor with the current tokio reactor for readability.
///
/// Must be called inside a tokio runtime.
pub(crate) fn async_readable(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is a valid open descriptor that nobody else can close; the `AsyncFd`
    // owns it from here on, so it stays open and refers to the same file description, and
    // `as_raw_fd` always returns that same number, for the `AsyncFd`'s whole life.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

#[cfg(test)]
mod tests;
