//! What a session holds for its whole life: the mapped segment, its side, the socket that keeps
//! the peer informed, the peer's doorbell and the counters.

use super::spin::AnswerWait;
use crate::core::layout::Side;
use crate::os::segment::Segment;
use crate::os::sys;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use transport_api::Counters;

/// The mapped segment and what is fixed for the session's life.
pub(crate) struct Link {
    pub(crate) seg: Segment,
    pub(crate) side: Side,
    /// A duplicate of the session socket: kept open as long as any slot of this segment may be
    /// in use here (received payloads, leased buffers), so the peer sees our hang-up only when
    /// nothing here can touch its memory any more.
    pub(crate) sock: OwnedFd,
    /// The peer's eventfd.
    pub(crate) peer_bell: OwnedFd,
    pub(crate) counters: Counters,
    /// The rings of the peer's doorbell, timed until their answers (see [`AnswerWait`]).
    pub(crate) answers: AnswerWait,
    /// A record the rings are also stamped in: a hub's, shared by its host sessions and read
    /// by `recv_any` only.
    pub(crate) shared_answers: Option<Arc<AnswerWait>>,
}

impl Link {
    /// Rings the peer's doorbell (one system call); only when the endpoint said it sleeps.
    /// Out of line: a busy sender never rings, and its publish path stays short.
    #[cold]
    #[inline(never)]
    pub(crate) fn ring_peer(&self) {
        self.counters.wake_syscalls.fetch_add(1, Ordering::Relaxed);
        let _ = sys::eventfd_signal(self.peer_bell.as_fd());
        let (now, frames) = (Instant::now(), self.frames_received());
        self.answers.rang(now, frames);
        if let Some(shared) = &self.shared_answers {
            shared.rang(now, frames);
        }
    }

    /// Frames this end has received so far.
    pub(crate) fn frames_received(&self) -> u64 {
        self.counters.frames_received.load(Ordering::Relaxed)
    }
}
