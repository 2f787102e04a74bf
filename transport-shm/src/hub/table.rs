//! The table of regions and peers: which region is free, reserved or busy, what the hub knows
//! of each peer, and the state every part of the hub shares ([`Shared`]).

use super::config::HubConfig;
use super::peer::{PeerId, PeerState};
use crate::core::layout::{HEADER_WORDS, Layout};
use crate::core::sync::Ordering;
use crate::os::mapping::Mapping;
use crate::os::segment::{Segment, SegmentError};
use crate::os::sys;
use crate::rendezvous::PeerCredentials;
use crate::session::ShmTransport;
use crate::session::spin::{AnswerWait, SpinHistory};
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use tokio::sync::{Notify, oneshot};
use transport_api::{Stats, Transport, TransportError};

/// What the hub knows about one attached (or ending) peer.
pub(super) struct Entry {
    /// The hub's reference to the session; `None` once released.
    pub(super) transport: Option<Arc<ShmTransport>>,
    pub(super) state: PeerState,
    /// The peer's end of the socket is closed.
    pub(super) hung_up: bool,
    pub(super) last_stats: Stats,
    /// The peer's credentials as the kernel reported them for the connection (`SO_PEERCRED`).
    pub(super) creds: Option<PeerCredentials>,
}

pub(super) enum Region {
    Free,
    /// Taken by an `accept` that has not handed the region to a peer yet.
    Reserved,
    /// Offered to (or used by) a peer; freed by its monitor task.
    Busy {
        id: PeerId,
        /// The host's view of the region (alive while anything here refers to the region).
        view: Weak<Mapping>,
        /// The whole mapping of the region's memfd, without the guard: for reading the peer's
        /// state word after the host's references are gone. Dropped when the region is freed,
        /// which unmaps the region's memory in this process.
        root: Arc<Mapping>,
    },
}

pub(super) struct State {
    pub(super) regions: Vec<Region>,
    pub(super) peers: BTreeMap<PeerId, Entry>,
    pub(super) next_generation: u64,
    pub(super) closed: bool,
    /// The hub closed because the tokio runtime that bound it shut down (see
    /// [`RuntimeGuard`]), not by [`HubHost::close`](super::HubHost::close).
    pub(super) runtime_gone: bool,
}

impl State {
    /// What `accept` and `recv_any` report once the hub is closed.
    pub(super) fn closed_error(&self) -> TransportError {
        if self.runtime_gone {
            TransportError::Io(std::io::Error::other(
                "the tokio runtime that bound this hub has shut down (its listener, admin and \
                 monitor tasks are gone)",
            ))
        } else {
            TransportError::Closed
        }
    }
}

/// Made before the hub's admin task is spawned and moved into it, holding no strong reference
/// to the hub. Dropped before [`RuntimeGuard::done`], that is with the task when the runtime
/// that bound the hub shuts down (whether or not the task ever ran), it closes a hub that is
/// still open, so that `accept` and `recv_any` called from another runtime fail instead of
/// waiting for peers that can no longer be admitted. [`HubHost`](super::HubHost)'s own drop
/// closes the hub before it aborts the task, so the guard then finds it closed.
pub(super) struct RuntimeGuard {
    pub(super) shared: Weak<Shared>,
    pub(super) finished: bool,
}

impl RuntimeGuard {
    /// The task ended on its own.
    pub(super) fn done(mut self) {
        self.finished = true;
    }
}

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        let Some(sh) = self.shared.upgrade() else {
            return;
        };
        if self.finished {
            return;
        }
        {
            let mut st = lock(&sh.state);
            if st.closed {
                return;
            }
            st.closed = true;
            st.runtime_gone = true;
        }
        tracing::warn!(backend = "hub", path = %sh.path.display(),
            "the runtime that bound the hub shut down; the hub is closed");
        sh.members_changed();
        sh.region_freed.notify_waiters();
    }
}

pub(super) struct Shared {
    pub(super) config: HubConfig,
    pub(super) layout: Layout,
    pub(super) region_len: usize,
    pub(super) state: Mutex<State>,
    pub(super) region_freed: Notify,
    pub(super) peers_changed: Notify,
    /// Counts changes of `state.peers` (and of their transports, and `closed`): `recv_any`
    /// sweeps a snapshot of the peers without the lock while this stays the same.
    pub(super) members: AtomicU64,
    /// Generation of the peer `recv_any` served last, 0 for none (the next sweep starts after
    /// it; generations start at 1 and order the peers).
    pub(super) last_served: AtomicU64,
    /// How `recv_any`'s spins have been going: eager when the peers answer only once this
    /// thread gives up its CPU (see [`SpinHistory`]).
    pub(super) spin_history: SpinHistory,
    /// The rings of every host session's peer, timed until their answers: each host session
    /// stamps its rings here as well as in its own record, and only `recv_any` reads this one
    /// (see [`AnswerWait`]).
    pub(super) answers: Arc<AnswerWait>,
    pub(super) path: PathBuf,
}

/// A region taken by an `accept` in progress; given back if the `accept` ends before the
/// region was offered to a peer.
pub(super) struct Reservation<'a> {
    pub(super) shared: &'a Shared,
    pub(super) region: usize,
    pub(super) armed: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.armed {
            lock(&self.shared.state).regions[self.region] = Region::Free;
            self.shared.region_freed.notify_waiters();
        }
    }
}

impl Shared {
    /// Creates a region in a sealed memfd of its own, with a fresh pair header, and returns the
    /// memfd (to send to the peer: it holds nothing of any other peer), the host's segment over
    /// it, the unguarded mapping (see [`Region::Busy`]) and the receiver that fires once no host
    /// reference into the region is left.
    pub(super) fn new_region(&self) -> std::result::Result<NewRegion, SegmentError> {
        let (memfd, raw) = sys::create_segment(self.region_len)?;
        let root = Mapping::new(raw);
        let (tx, rx) = oneshot::channel::<()>();
        let view = root.region(0, self.region_len, Box::new(tx))?;
        Ok(NewRegion {
            memfd,
            seg: Segment::init(view, self.layout.clone())?,
            root,
            refs_gone: rx,
        })
    }

    pub(super) fn served(&self, id: PeerId) {
        self.last_served.store(id.generation, Ordering::Relaxed);
    }

    /// Records a change of the peers (see [`Shared::members`]) and wakes whoever waits on it.
    pub(super) fn members_changed(&self) {
        self.members.fetch_add(1, Ordering::Release);
        self.peers_changed.notify_waiters();
    }

    /// A `recv` on the session reported its end (after delivering everything): record the
    /// outcome and drop the hub's reference.
    pub(super) fn session_ended(&self, id: PeerId, e: &TransportError) {
        let released = {
            let mut st = lock(&self.state);
            let Some(entry) = st.peers.get_mut(&id) else {
                return;
            };
            if entry.state == PeerState::Attached {
                entry.state = match e {
                    TransportError::Closed => PeerState::Closed,
                    TransportError::PeerDied => PeerState::Dead,
                    TransportError::Io(_) => PeerState::Failed,
                    _ => PeerState::Corrupt,
                };
                match entry.state {
                    PeerState::Closed => {
                        tracing::info!(backend = "hub", peer = %id, "peer detached")
                    }
                    PeerState::Dead => tracing::warn!(backend = "hub", peer = %id, "peer died"),
                    _ => tracing::warn!(backend = "hub", peer = %id, error = %e,
                        "peer session failed"),
                }
            }
            entry
                .transport
                .take()
                .inspect(|t| entry.last_stats = t.stats())
        };
        drop(released);
        self.members_changed();
    }

    /// A word of a region's pair header (peer-written values are untrusted: for state reports
    /// and diagnostics only); 0 when the region is not busy.
    pub(super) fn peer_header_word(&self, region: usize, word: usize) -> u64 {
        let root = match lock(&self.state).regions.get(region) {
            Some(Region::Busy { root, .. }) => root.clone(),
            _ => return 0,
        };
        root.words(0, HEADER_WORDS)
            .map_or(0, |h| h[word].load(Ordering::Acquire))
    }

    /// Regions no peer uses (free, or held untouched by an `accept`).
    pub(super) fn free_regions(&self) -> usize {
        lock(&self.state)
            .regions
            .iter()
            .filter(|r| matches!(r, Region::Free | Region::Reserved))
            .count()
    }
}

/// A region just created by [`Shared::new_region`].
pub(super) struct NewRegion {
    pub(super) memfd: OwnedFd,
    pub(super) seg: Segment,
    pub(super) root: Arc<Mapping>,
    pub(super) refs_gone: oneshot::Receiver<()>,
}

/// Takes the hub's lock.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections only move bookkeeping that is consistent at every statement boundary.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
