//! What identifies a peer of the hub and what the host can learn about it.

use std::fmt;
use transport_api::Stats;

/// Identifies one attachment of a peer: the region it uses and a generation unique within the
/// hub, so an id is never reused even when its region is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId {
    pub(super) generation: u64,
    pub(super) region: u32,
}

impl PeerId {
    /// The attachment number (1, 2, … in accept order).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The region of the segment this peer uses.
    pub fn region(&self) -> usize {
        self.region as usize
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer#{}@region{}", self.generation, self.region)
    }
}

/// Where a hub session stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PeerState {
    /// The session is running.
    Attached,
    /// The session ended gracefully (either side closed it).
    Closed,
    /// The peer went away without closing (killed, crashed).
    Dead,
    /// The peer broke the protocol; the session was closed.
    Corrupt,
    /// This side could no longer serve the session (its receive reported an I/O error, for
    /// example because the tokio runtime that created it shut down); the hub let it go.
    Failed,
}

/// A snapshot of one peer, from [`HubHost::peers`](crate::HubHost::peers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer.
    pub id: PeerId,
    /// Its session's state.
    pub state: PeerState,
    /// The peer's process id as the kernel reported it for the connection (`SO_PEERCRED`), so
    /// it can be trusted (e.g. to signal or wait for the peer).
    pub pid: Option<i32>,
    /// The peer's effective user id, from the same source.
    pub uid: Option<u32>,
    /// The host side's counters and occupancy for this peer (queued frames both ways, slots
    /// and buffer bytes in use, frames and bytes sent and received). Frozen at its last value once the hub
    /// released the session.
    pub stats: Stats,
}
