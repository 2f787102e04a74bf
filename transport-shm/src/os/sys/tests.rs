//! Unit tests of `sys`.

#[test]
fn only_eventfds_pass_as_doorbells() {
    let e = eventfd().unwrap();
    check_eventfd(e.as_fd()).unwrap();
    let (r, _w) = rustix::pipe::pipe().unwrap();
    let err = check_eventfd(r.as_fd()).unwrap_err();
    assert!(err.to_string().contains("not an eventfd"), "{err}");
}

use super::*;
use std::os::unix::net::UnixStream;

#[test]
fn segment_is_sealed_against_truncation() {
    let (fd, a) = create_segment(8192).unwrap();
    let seals = rustix::fs::fcntl_get_seals(&fd).unwrap();
    assert!(seals.contains(SEGMENT_SEALS));
    // Shrinking is refused by the kernel.
    assert!(rustix::fs::ftruncate(&fd, 100).is_err());
    let b = map_segment(fd.as_fd()).unwrap();
    assert_eq!(b.len(), 8192);
    // SAFETY: test-only: both mappings are valid for 8192 bytes and nothing else touches
    // them; byte writes and reads through raw pointers are not references.
    unsafe {
        a.as_mut_ptr().add(100).write_volatile(42);
        assert_eq!(b.as_ptr().add(100).read_volatile(), 42);
    }
    assert!(matches!(
        create_segment(10),
        Err(OsError::BadSegmentSize { len: 10, .. })
    ));
}

#[test]
fn unsealed_file_is_refused() {
    let fd = rustix::fs::memfd_create("plain", MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&fd, 4096).unwrap();
    assert!(matches!(
        map_segment(fd.as_fd()),
        Err(OsError::NotSealed { .. })
    ));
    let fd =
        rustix::fs::memfd_create("small", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING).unwrap();
    rustix::fs::ftruncate(&fd, 8).unwrap();
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK).unwrap();
    assert!(matches!(
        map_segment(fd.as_fd()),
        Err(OsError::BadSegmentSize { len: 8, .. })
    ));
}

#[test]
fn region_mapping_is_checked() {
    let page = page_size();
    let (fd, _map) = create_segment(4 * page).unwrap();
    let r = map_segment_range(fd.as_fd(), page as u64, 2 * page as u64).unwrap();
    assert_eq!(r.len(), 2 * page);
    for (offset, len) in [
        (1u64, page as u64),                // not page-aligned
        (3 * page as u64, 2 * page as u64), // past the end
        (u64::MAX - 10, 100),               // overflow
        (page as u64, 8),                   // smaller than a header
    ] {
        assert!(
            map_segment_range(fd.as_fd(), offset, len).is_err(),
            "{offset} {len}"
        );
    }
    let plain = rustix::fs::memfd_create("plain", MemfdFlags::CLOEXEC).unwrap();
    rustix::fs::ftruncate(&plain, 4 * page as u64).unwrap();
    assert!(matches!(
        map_segment_range(plain.as_fd(), 0, page as u64),
        Err(OsError::NotSealed { .. })
    ));
}

#[test]
fn eventfd_signal_and_drain() {
    let e = eventfd().unwrap();
    let err = eventfd_drain(e.as_fd()).unwrap_err();
    assert!(err.is_would_block());
    assert_eq!(io::Error::from(err).kind(), io::ErrorKind::WouldBlock);
    eventfd_signal(e.as_fd()).unwrap();
    eventfd_signal(e.as_fd()).unwrap();
    assert_eq!(eventfd_drain(e.as_fd()).unwrap(), 2);
    assert!(eventfd_drain(e.as_fd()).unwrap_err().is_would_block());
    let flags = rustix::io::fcntl_getfd(&e).unwrap();
    assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
}

#[test]
fn fds_travel_close_on_exec() {
    let (a, b) = UnixStream::pair().unwrap();
    let (seg, map) = create_segment(4096).unwrap();
    let ev = eventfd().unwrap();
    assert_eq!(
        send_fds(&a, b"hello", &[seg.as_fd(), ev.as_fd()]).unwrap(),
        5
    );
    let mut buf = [0u8; 16];
    let (n, fds) = recv_fds(&b, &mut buf, 2).unwrap();
    assert_eq!(&buf[..n], b"hello");
    assert_eq!(fds.len(), 2);
    for fd in &fds {
        let flags = rustix::io::fcntl_getfd(fd).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
    }
    // The received segment maps the same memory.
    let other = map_segment(fds[0].as_fd()).unwrap();
    // SAFETY: test-only raw byte accesses within both 4096-byte mappings.
    unsafe {
        map.as_mut_ptr().write_volatile(7);
        assert_eq!(other.as_ptr().read_volatile(), 7);
    }
    // The received eventfd is the same counter.
    eventfd_signal(fds[1].as_fd()).unwrap();
    assert_eq!(eventfd_drain(ev.as_fd()).unwrap(), 1);

    // Limits are enforced.
    let many: Vec<_> = (0..MAX_FDS + 1).map(|_| ev.as_fd()).collect();
    assert!(matches!(
        send_fds(&a, b"x", &many),
        Err(OsError::TooManyFds { got: 9, max: 8 })
    ));
    assert!(matches!(
        send_fds(&a, b"", &[ev.as_fd()]),
        Err(OsError::EmptyMessage)
    ));
    send_fds(&a, b"y", &[ev.as_fd(), ev.as_fd(), ev.as_fd()]).unwrap();
    assert!(matches!(
        recv_fds(&b, &mut buf, 2),
        Err(OsError::TooManyFds { got: 3, max: 2 })
    ));
    // Hang-up is seen as a 0-byte read.
    drop(a);
    let (n, fds) = recv_fds(&b, &mut buf, 2).unwrap();
    assert_eq!((n, fds.len()), (0, 0));
}

#[test]
fn pidfd_of_self() {
    let fd = pidfd_open(current_pid()).unwrap();
    assert!(
        rustix::io::fcntl_getfd(&fd)
            .unwrap()
            .contains(rustix::io::FdFlags::CLOEXEC)
    );
    assert!(pidfd_open(0).is_err());
}
