//! The handshake over the session socket, both sides (the bytes are in
//! [`crate::core::wire`]):
//!
//! 1. the listener creates (or, for the hub, lays out) the segment and two eventfds (one
//!    doorbell per side), and sends the hello with the three descriptors (`SCM_RIGHTS`, all
//!    `CLOEXEC`);
//! 2. the connector maps the segment, validates the header against the mapping (geometry read
//!    once, kept locally), and answers `R` (ready);
//! 3. both start their endpoint. Afterwards the socket carries only `C` (graceful close); its
//!    hang-up tells the survivor that the peer's process released the session or died.

use super::config::ShmConfig;
use crate::core::layout::Side;
use crate::core::wire::{
    HELLO, HUB_HELLO, HelloKind, MAX_HELLO_LEN, MSG_READY, hello_len, parse_hello, refusal,
};
use crate::os::segment::Segment;
use crate::os::sys;
use crate::session::{SessionOptions, SessionParts, ShmTransport};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;
use transport_api::{Refusal, Result, TransportError};

pub(super) fn io(e: impl Into<std::io::Error>) -> TransportError {
    TransportError::Io(e.into())
}

fn handshake_err(what: String) -> TransportError {
    TransportError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, what))
}

async fn with_timeout<T>(
    what: &str,
    limit: Duration,
    f: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(limit, f).await.map_err(|_| {
        TransportError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "shm handshake: {what} timed out after {limit:?} (option handshake_ms={})",
                limit.as_millis()
            ),
        ))
    })?
}

/// Tells a connector it is refused (best effort: the socket is closed right after, and a
/// connector that went away needs no answer).
pub(crate) fn refuse(sock: &OwnedFd, why: &Refusal) {
    let _ = rustix::io::write(sock, &refusal(why));
}

/// Creates the segment and doorbells, sends them over `sock` and waits for the peer's ready.
pub(super) async fn serve_handshake(
    sock: OwnedFd,
    config: &ShmConfig,
    local: String,
) -> Result<ShmTransport> {
    let (memfd, seg) = Segment::create(config.geometry.clone())
        .map_err(|e| TransportError::Config(format!("shm segment: {e}")))?;
    serve_segment(
        sock,
        seg,
        memfd.as_fd(),
        HELLO,
        config.session_options(),
        config.handshake_timeout,
        ("shm", local),
    )
    .await
}

/// Side A of a handshake over an already laid out segment: sends `hello` with the segment's
/// memfd and two new doorbells, waits for the peer's ready and starts the session.
///
/// `hello` is [`HELLO`] for a pair (the peer maps the whole file) or a
/// [`hub_hello`](crate::core::wire::hub_hello) naming
/// the region the peer must map (the hub).
pub(crate) async fn serve_segment(
    sock: OwnedFd,
    seg: Segment,
    memfd: BorrowedFd<'_>,
    hello: &[u8],
    opts: SessionOptions,
    handshake_timeout: Duration,
    (backend, local): (&'static str, String),
) -> Result<ShmTransport> {
    let bell_a = sys::eventfd().map_err(io)?;
    let bell_b = sys::eventfd().map_err(io)?;
    let sock = sys::async_readable(sock)?;
    let sent = sys::send_fds(
        sock.get_ref(),
        hello,
        &[memfd, bell_a.as_fd(), bell_b.as_fd()],
    )
    .map_err(io)?;
    if sent != hello.len() {
        return Err(handshake_err(format!(
            "the hello was cut short: {sent} of {} bytes sent",
            hello.len()
        )));
    }
    with_timeout("waiting for the peer to attach", handshake_timeout, async {
        loop {
            let mut g = sock.readable().await?;
            let mut b = [0u8; 1];
            match g
                .try_io(|fd| rustix::io::read(fd.get_ref(), &mut b).map_err(std::io::Error::from))
            {
                Err(_) => continue,
                Ok(Ok(1)) if b[0] == MSG_READY => return Ok(()),
                Ok(Ok(0)) => {
                    return Err(handshake_err(
                        "the peer hung up during the handshake".into(),
                    ));
                }
                Ok(Ok(_)) => {
                    return Err(handshake_err(format!(
                        "unexpected handshake byte {:#04x}",
                        b[0]
                    )));
                }
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    })
    .await?;
    let sock = sock.into_inner();
    ShmTransport::start(SessionParts {
        seg,
        side: Side::A,
        sock,
        my_bell: bell_a,
        peer_bell: bell_b,
        opts,
        backend,
        local,
    })
}

/// Receives the segment and doorbells over `sock`, validates and maps them, answers ready.
///
/// Works against a pair listener (maps the whole segment) and against a hub (maps only the
/// region the hello names; the session is then exactly a pair's side B). A refusal from the
/// listener is [`TransportError::Refused`] naming `listener`.
pub(super) async fn join_handshake(
    sock: OwnedFd,
    listener: &str,
    opts: SessionOptions,
    handshake_timeout: Duration,
) -> Result<ShmTransport> {
    let sock = sys::async_readable(sock)?;
    let (hello, fds) = with_timeout("waiting for the segment", handshake_timeout, async {
        let mut hello = Vec::new();
        let mut fds = Vec::new();
        loop {
            let mut g = sock.readable().await?;
            let mut buf = [0u8; MAX_HELLO_LEN];
            // A stream socket may split the hello: read until it is complete (descriptors
            // come with the first byte); a pair hello is complete after 8 bytes.
            let want = hello_len(&hello);
            let room = want.saturating_sub(hello.len()).max(1);
            let max_fds = if fds.is_empty() { 3 } else { 0 };
            match g.try_io(|fd| {
                sys::recv_fds(fd.get_ref(), &mut buf[..room], max_fds).map_err(std::io::Error::from)
            }) {
                Err(_) => continue,
                Ok(Ok((0, _))) => {
                    return Err(handshake_err(format!(
                        "the listener hung up after {} hello bytes",
                        hello.len()
                    )));
                }
                Ok(Ok((n, got))) => {
                    hello.extend_from_slice(&buf[..n]);
                    fds.extend(got);
                    if hello.len() >= hello_len(&hello) {
                        return Ok((hello, fds));
                    }
                }
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    })
    .await?;
    let kind = parse_hello(&hello);
    if let Some(HelloKind::Refused(reason)) = kind {
        return Err(TransportError::Refused {
            listener: listener.to_string(),
            reason,
        });
    }
    let (Some(kind), 3) = (kind, fds.len()) else {
        return Err(handshake_err(format!(
            "bad hello from the listener: {} bytes {:?} with {} descriptors (want {:?} or \
             {:?}+offset+length, with 3)",
            hello.len(),
            hello,
            fds.len(),
            HELLO,
            HUB_HELLO
        )));
    };
    let mut fds = fds.into_iter();
    let (memfd, bell_a, bell_b) = match (fds.next(), fds.next(), fds.next()) {
        (Some(m), Some(a), Some(b)) => (m, a, b),
        _ => return Err(handshake_err("missing descriptors".into())),
    };
    for bell in [&bell_a, &bell_b] {
        sys::check_eventfd(bell.as_fd())
            .map_err(|e| TransportError::corrupt(format!("the listener's doorbell: {e}")))?;
    }
    let backend = match kind {
        HelloKind::Region { .. } => "hub",
        _ => "shm",
    };
    let seg = match kind {
        HelloKind::Pair => Segment::attach(memfd.as_fd()),
        HelloKind::Region { offset, len } => Segment::attach_region(memfd.as_fd(), offset, len),
        // Answered above, before any descriptor was looked at.
        HelloKind::Refused(reason) => {
            return Err(TransportError::Refused {
                listener: listener.to_string(),
                reason,
            });
        }
    }
    .map_err(|e| TransportError::corrupt(format!("the listener's segment is invalid: {e}")))?;
    drop(memfd);
    let sock = sock.into_inner();
    rustix::io::write(&sock, &[MSG_READY]).map_err(io)?;
    ShmTransport::start(SessionParts {
        seg,
        side: Side::B,
        sock,
        my_bell: bell_b,
        peer_bell: bell_a,
        opts,
        backend,
        local: listener.to_string(),
    })
}
