//! Liveness: the peer's end comes from the kernel. The session socket hangs up when the peer's
//! process releases the session or dies, and carries one byte when it closes gracefully; the
//! peer process's pidfd, where the kernel names it, is a second signal. One small task per
//! session watches them; the end is handled once ([`Inner::on_peer_gone`]).

use super::inner::Inner;
use crate::core::endpoint::gate::{PEER_CLOSED, PEER_GONE};
use crate::core::wire::MSG_CLOSE;
use crate::os::sys;
use std::os::fd::OwnedFd;
use std::sync::Weak;
use tokio::io::unix::AsyncFd;
use transport_api::Result;

/// Watches the session socket: `C` means the peer closed gracefully, end-of-file or an error
/// means the peer's process released the session (exited, was killed, or dropped it).
pub(crate) async fn watch(sock: OwnedFd, pidfd: Option<AsyncFd<OwnedFd>>, inner: Weak<Inner>) {
    let Ok(sock) = sys::async_readable(sock) else {
        if let Some(inner) = inner.upgrade() {
            inner.on_peer_gone();
        }
        return;
    };
    let exited = async {
        match &pidfd {
            // A pidfd becomes readable when its process exits.
            Some(p) => drop(p.readable().await),
            None => std::future::pending().await,
        }
    };
    tokio::pin!(exited);
    let mut buf = [0u8; 64];
    loop {
        let readable = tokio::select! {
            r = sock.readable() => r,
            () = &mut exited => {
                tracing::debug!(backend = "shm", "the peer's process exited (pidfd)");
                break;
            }
        };
        let Ok(mut guard) = readable else {
            break;
        };
        match guard
            .try_io(|fd| rustix::io::read(fd.get_ref(), &mut buf).map_err(std::io::Error::from))
        {
            Err(_would_block) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                let Some(inner) = inner.upgrade() else { return };
                for &b in &buf[..n] {
                    match b {
                        MSG_CLOSE => {
                            inner.status.set(PEER_CLOSED);
                            tracing::debug!(backend = "shm", "peer closed the session");
                        }
                        other => inner.fail(format!(
                            "unexpected byte {other:#04x} on the session socket"
                        )),
                    }
                }
                inner.local.notify_waiters();
            }
        }
    }
    if let Some(inner) = inner.upgrade() {
        inner.on_peer_gone();
    }
}

impl Inner {
    /// The peer released the session: takes back every slot it held, then publishes its end
    /// (closed or died) and wakes every local waiter. Reported by the socket and by the pidfd:
    /// handled once.
    pub(crate) fn on_peer_gone(&self) {
        if self.status.is(PEER_GONE) {
            return;
        }
        let graceful =
            self.link.seg.side_state(self.link.side.peer()).closed || self.status.is(PEER_CLOSED);
        if graceful {
            self.status.set(PEER_CLOSED);
        }
        {
            let mut st = self.tx.lock();
            let _ = self.tx.drain(&mut st);
            let n = st.reclaim();
            tracing::debug!(
                backend = "shm",
                reclaimed = n,
                graceful,
                "peer released the session"
            );
        }
        if !graceful {
            tracing::warn!(backend = "shm", "peer died");
        }
        self.status.set(PEER_GONE);
        self.wake_all_waiters();
    }
}

/// Also treats the exit of process `pid` as the peer's death: a task that waits on its pidfd.
pub(crate) fn watch_process(pid: i32, inner: Weak<Inner>) -> Result<tokio::task::AbortHandle> {
    let pidfd = sys::async_readable(sys::pidfd_open(pid).map_err(std::io::Error::from)?)?;
    let task = tokio::spawn(async move {
        let _ = pidfd.readable().await;
        if let Some(inner) = inner.upgrade() {
            tracing::debug!(backend = "shm", pid, "the peer's process exited (pidfd)");
            inner.on_peer_gone();
        }
    });
    Ok(task.abort_handle())
}
