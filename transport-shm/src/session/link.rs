//! What a session holds for its whole life: the mapped segment, its side, the socket that keeps
//! the peer informed, the peer's doorbell and the counters.

use crate::core::layout::Side;
use crate::os::segment::Segment;
use crate::os::sys;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
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
}

impl Link {
    /// Rings the peer's doorbell (one system call); only when the endpoint said it sleeps.
    pub(crate) fn ring_peer(&self) {
        self.counters.wake_syscalls.fetch_add(1, Ordering::Relaxed);
        let _ = sys::eventfd_signal(self.peer_bell.as_fd());
    }
}
