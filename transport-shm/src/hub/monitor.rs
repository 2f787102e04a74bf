//! The region life cycle: one task per session watches the peer's end of the socket and the
//! host's references into the region, and gives the region back once both are gone.

use super::peer::{PeerId, PeerState};
use super::table::lock;
use super::table::{Region, Shared};
use crate::core::layout::{STATE_CLOSED, Side};
use crate::os::sys;
use std::os::fd::OwnedFd;
use std::sync::Weak;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;
use transport_api::Transport;

/// Watches one region's session socket (a duplicate of the host's end, never read from) and
/// the region's host references; frees the region once both are gone.
pub(super) async fn monitor(
    shared: Weak<Shared>,
    id: PeerId,
    region: usize,
    sock: AsyncFd<OwnedFd>,
    mut refs_gone: oneshot::Receiver<()>,
) {
    let mut host_gone = false;
    loop {
        tokio::select! {
            r = sock.ready(Interest::READABLE) => match r {
                Ok(mut g) => {
                    if g.ready().is_read_closed() {
                        break;
                    }
                    // Data for the session's own watcher: wait for the next edge.
                    g.clear_ready();
                }
                Err(_) => break,
            },
            _ = &mut refs_gone, if !host_gone => {
                host_gone = true;
                // Nothing here touches the region any more: let the peer see end-of-file, as
                // it would when the last descriptor of a pair's socket closes.
                let _ = sys::shutdown_write(sock.get_ref());
            }
        }
    }
    if let Some(sh) = shared.upgrade() {
        sh.on_hangup(id, region);
    }
    if !host_gone {
        let _ = refs_gone.await;
    }
    drop(sock);
    if let Some(sh) = shared.upgrade() {
        sh.reclaim(region, id);
    }
}

impl Shared {
    /// The peer's socket hung up.
    pub(super) fn on_hangup(&self, id: PeerId, region: usize) {
        let graceful = self.peer_header_word(region, Side::B.state_word()) & STATE_CLOSED != 0;
        {
            let mut st = lock(&self.state);
            if let Some(entry) = st.peers.get_mut(&id) {
                entry.hung_up = true;
                if entry.state == PeerState::Attached {
                    if graceful {
                        entry.state = PeerState::Closed;
                        tracing::info!(backend = "hub", peer = %id, "peer detached");
                    } else {
                        entry.state = PeerState::Dead;
                        tracing::warn!(backend = "hub", peer = %id, "peer died");
                    }
                }
            }
        }
        self.sweep();
        self.members_changed();
    }

    /// Drops the hub's reference to every session whose peer hung up and whose frames were all
    /// received.
    pub(super) fn sweep(&self) {
        let candidates: Vec<_> = {
            let st = lock(&self.state);
            st.peers
                .iter()
                .filter(|(_, e)| e.hung_up)
                .filter_map(|(id, e)| e.transport.clone().map(|t| (*id, t)))
                .collect()
        };
        for (id, t) in candidates {
            let stats = t.stats();
            if stats.rx_queued_frames != 0 {
                continue;
            }
            let released = {
                let mut st = lock(&self.state);
                st.peers.get_mut(&id).and_then(|e| {
                    e.last_stats = stats;
                    e.transport.take()
                })
            };
            if released.is_some() {
                self.members
                    .fetch_add(1, crate::core::sync::Ordering::Release);
            }
            drop(released);
        }
    }

    /// Gives a region whose peer hung up and whose host references are all gone back to the
    /// free list. Its memory goes with it: the host's last mapping of the region's memfd is
    /// dropped here (the peer's descriptor and mapping went with its process or session), and
    /// the next peer gets a new memfd.
    pub(super) fn reclaim(&self, region: usize, id: PeerId) {
        let released = {
            let mut st = lock(&self.state);
            st.peers.remove(&id);
            std::mem::replace(&mut st.regions[region], Region::Free)
        };
        drop(released);
        self.members_changed();
        tracing::debug!(backend = "hub", peer = %id, region, "region reclaimed");
        self.region_freed.notify_waiters();
    }
}
