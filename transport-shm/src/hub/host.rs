//! The host API: binding the hub, accepting peers into regions, sending to one peer, the peer
//! table's snapshots, and the owning handle of one session ([`HubPeer`]).

use super::admin::{self, HubReport, PeerReport};
use super::config::HubConfig;
use super::monitor::monitor;
use super::peer::{PeerId, PeerInfo, PeerState};
use super::table::Entry;
use super::table::lock;
use super::table::{NewRegion, Region, Reservation, RuntimeGuard, Shared, State};
use crate::core::layout::Layout;
use crate::core::wire::hub_hello;
use crate::os::mapping::SharedBytes;
use crate::os::sys;
use crate::rendezvous::{PeerCredentials, refuse, serve_segment};
use crate::session::{SessionOptions, ShmTransport};
use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use tokio::net::UnixListener;
use tokio::sync::Notify;
use transport_api::{
    Frame, Refusal, Result, Stats, Transport, TransportError, TrySendError, TxBuf,
};

/// The host of a hub: listens at a Unix socket path and serves up to
/// [`HubConfig::max_peers`] peers, each in a region of its own (a sealed memfd that holds
/// nothing of any other peer) laid out and run exactly like a pair segment.
/// [`HubHost::accept`] describes a region's life cycle, [`HubHost::recv_any`] the fair receive
/// from all peers.
///
/// A hub at `PATH` also answers inspection requests at `PATH.admin` (see
/// [`hub_admin`](crate::hub_admin)), for processes of its own uid only.
///
/// Peers connect with [`crate::connect`] (or the `hub` / `shm` factory): the same handshake as
/// a pair, extended to name the region to map. The socket path is removed when the host is
/// dropped; dropping the host closes every session the application does not hold.
pub struct HubHost {
    pub(super) shared: Arc<Shared>,
    listener: UnixListener,
    /// The task answering the admin socket; aborted on drop.
    admin: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for HubHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubHost")
            .field("path", &self.shared.path)
            .field("max_peers", &self.shared.config.max_peers)
            .field("region_len", &self.shared.region_len)
            .finish()
    }
}

impl HubHost {
    /// Checks the configuration and binds `path` under the configured
    /// [`AccessPolicy`](crate::AccessPolicy) (a stale socket file nobody listens on is
    /// replaced), and `PATH.admin` beside it. Region memory is created per peer, at `accept`.
    /// Must run inside a tokio runtime.
    pub fn bind(path: impl AsRef<Path>, config: HubConfig) -> Result<HubHost> {
        config.validate()?;
        let layout = Layout::new(config.geometry.clone())
            .map_err(|e| TransportError::Config(format!("hub region geometry: {e}")))?;
        let region_len = layout
            .total_len()
            .checked_next_multiple_of(sys::page_size())
            .ok_or_else(|| TransportError::Config("hub region too large".into()))?;
        let path = path.as_ref().to_path_buf();
        if path.as_os_str().is_empty() {
            return Err(TransportError::Config(
                "hub: the socket path is empty".into(),
            ));
        }
        let listener = config.access.bind("hub", &path)?;
        let admin_listener = config
            .access
            .clone()
            .with_shared_dir(true)
            .bind("hub admin", &admin::admin_path(&path))?;
        tracing::debug!(backend = "hub", path = %path.display(), max_peers = config.max_peers,
            region_len, "hub listening");
        let regions = (0..config.max_peers).map(|_| Region::Free).collect();
        let shared = Arc::new(Shared {
            config,
            layout,
            region_len,
            state: Mutex::new(State {
                regions,
                peers: BTreeMap::new(),
                next_generation: 1,
                closed: false,
                runtime_gone: false,
            }),
            region_freed: Notify::new(),
            peers_changed: Notify::new(),
            members: AtomicU64::new(0),
            last_served: AtomicU64::new(0),
            spin_history: Default::default(),
            answers: Default::default(),
            path,
        });
        let weak = Arc::downgrade(&shared);
        let guard = RuntimeGuard {
            shared: weak.clone(),
            finished: false,
        };
        let admin = tokio::spawn(async move {
            admin::serve(admin_listener, move || weak.upgrade().map(|sh| sh.report())).await;
            guard.done();
        });
        Ok(HubHost {
            shared,
            listener,
            admin,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.shared.config
    }

    /// Length of one region in bytes.
    pub fn region_len(&self) -> usize {
        self.shared.region_len
    }

    /// Waits for the next peer and completes the handshake with it; returns its id and the
    /// host side of its session (the hub keeps its own reference too, see the module docs).
    ///
    /// Each connecting process is first checked against the access policy
    /// ([`HubConfig::access`]): a refused one is told why ([`Refusal::NotAllowed`]) and logged
    /// with its pid and uid, and nothing is created, mapped or sent for it. While every region
    /// is busy, a connecting peer waits up to [`HubConfig::wait`] for one to be reclaimed and is
    /// then refused with [`Refusal::Full`] (at once with the default of no wait). Reclaims are
    /// notified, including a departed peer whose last frames the application drains through
    /// its own handle (the waiting `accept` waits on [`ShmTransport::drained`]); nothing is
    /// polled on a timer. A connection whose handshake fails is logged and skipped.
    /// Cancel-safe: a dropped `accept` gives its region back (after the peer it was offered to,
    /// if any, hung up).
    pub async fn accept(&self) -> Result<(PeerId, Arc<ShmTransport>)> {
        let sh = &self.shared;
        loop {
            let changed = sh.peers_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let st = lock(&sh.state);
                if st.closed {
                    return Err(st.closed_error());
                }
            }
            // `close` wakes `peers_changed`; any other wake-up only re-checks `closed`.
            let stream = tokio::select! {
                r = self.listener.accept() => r?.0,
                () = &mut changed => continue,
            };
            let sock: OwnedFd = stream.into_std()?.into();
            let creds = match PeerCredentials::of(&sock) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(backend = "hub", path = %sh.path.display(), error = %e,
                        "connection without credentials dropped");
                    continue;
                }
            };
            if !sh.config.access.admits(&creds) {
                tracing::warn!(backend = "hub", path = %sh.path.display(), pid = creds.pid,
                    uid = creds.uid, gid = creds.gid, "peer refused by the access policy");
                refuse(
                    &sock,
                    &Refusal::NotAllowed {
                        uid: creds.uid,
                        gid: creds.gid,
                    },
                );
                continue;
            }
            let mut reservation =
                match tokio::time::timeout(sh.config.wait, self.reserve_region()).await {
                    Ok(r) => r?,
                    Err(_) => {
                        tracing::warn!(backend = "hub", path = %sh.path.display(),
                            pid = creds.pid, uid = creds.uid, max_peers = sh.config.max_peers,
                            "peer refused: every region is busy");
                        refuse(
                            &sock,
                            &Refusal::Full {
                                max_peers: sh.config.max_peers as u64,
                            },
                        );
                        continue;
                    }
                };
            let region = reservation.region;
            let id = {
                let mut st = lock(&sh.state);
                let id = PeerId {
                    generation: st.next_generation,
                    region: region as u32,
                };
                st.next_generation += 1;
                id
            };
            let NewRegion {
                memfd,
                seg,
                root,
                refs_gone,
            } = sh.new_region().map_err(|e| {
                TransportError::Config(format!("hub: creating region {region}: {e}"))
            })?;
            let dup = sock.try_clone()?;
            let watch = sys::async_readable(dup)?;
            lock(&sh.state).regions[region] = Region::Busy {
                id,
                view: Arc::downgrade(seg.mapping()),
                root,
            };
            // From here on the monitor owns the region's return to the free list.
            reservation.armed = false;
            tokio::spawn(monitor(Arc::downgrade(sh), id, region, watch, refs_gone));
            let hello = hub_hello(0, sh.region_len as u64);
            let served = serve_segment(
                sock,
                seg,
                memfd.as_fd(),
                &hello,
                SessionOptions {
                    shared_answers: Some(sh.answers.clone()),
                    ..sh.config.session_options()
                },
                sh.config.handshake_timeout,
                ("hub", format!("{} region {region}", sh.path.display())),
            )
            .await;
            // The peer has its own descriptor (or the handshake failed): the host keeps only
            // its mapping.
            drop(memfd);
            match served {
                Ok(t) => {
                    let t = Arc::new(t);
                    let closed = {
                        let mut st = lock(&sh.state);
                        if !st.closed {
                            st.peers.insert(
                                id,
                                Entry {
                                    transport: Some(t.clone()),
                                    state: PeerState::Attached,
                                    hung_up: false,
                                    last_stats: Stats::default(),
                                    creds: Some(creds),
                                },
                            );
                        }
                        st.closed
                    };
                    if closed {
                        t.close();
                        return Err(TransportError::Closed);
                    }
                    sh.members_changed();
                    tracing::info!(backend = "hub", peer = %id, path = %sh.path.display(),
                        "peer attached");
                    return Ok((id, t));
                }
                Err(e @ (TransportError::Config(_) | TransportError::Unsupported { .. })) => {
                    return Err(e);
                }
                Err(e) => {
                    tracing::warn!(backend = "hub", peer = %id, error = %e,
                        "handshake with a connecting peer failed; waiting for the next one");
                }
            }
        }
    }

    /// Like [`accept`](Self::accept), but returns an owning [`HubPeer`] handle whose drop
    /// closes the session, exactly like dropping a pair endpoint.
    pub async fn accept_owned(&self) -> Result<(PeerId, HubPeer)> {
        let (id, transport) = self.accept().await?;
        Ok((id, HubPeer { id, transport }))
    }

    async fn reserve_region(&self) -> Result<Reservation<'_>> {
        let sh = &self.shared;
        loop {
            let freed = sh.region_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            sh.sweep();
            let draining: Vec<Arc<ShmTransport>> = {
                let mut st = lock(&sh.state);
                if st.closed {
                    return Err(st.closed_error());
                }
                if let Some(r) = st.regions.iter().position(|r| matches!(r, Region::Free)) {
                    st.regions[r] = Region::Reserved;
                    return Ok(Reservation {
                        shared: sh,
                        region: r,
                        armed: true,
                    });
                }
                st.peers
                    .values()
                    .filter(|e| e.hung_up)
                    .filter_map(|e| e.transport.clone())
                    .collect()
            };
            tracing::debug!(
                backend = "hub",
                "every region is busy; accept waits for one"
            );
            if draining.is_empty() {
                freed.await;
            } else {
                // A departed peer's last frames may be received through the application's own
                // handle: wait until one such session is drained, then sweep again.
                let mut drained: Vec<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = draining
                    .iter()
                    .map(|t| Box::pin(t.drained()) as _)
                    .collect();
                std::future::poll_fn(|cx| {
                    if freed.as_mut().poll(cx).is_ready()
                        || drained.iter_mut().any(|f| f.as_mut().poll(cx).is_ready())
                    {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                })
                .await;
            }
        }
    }

    /// Sends a frame to one peer (waiting for room like [`Transport::send`]). A peer whose
    /// session has ended (or an unknown id) gives `Closed`.
    pub async fn send_to(&self, id: PeerId, frame: Frame) -> Result<()> {
        let t = self.peer(id).ok_or(TransportError::Closed)?;
        t.send(frame).await
    }

    /// The host side of a peer's session, while the hub holds it.
    pub fn peer(&self, id: PeerId) -> Option<Arc<ShmTransport>> {
        lock(&self.shared.state)
            .peers
            .get(&id)
            .and_then(|e| e.transport.clone())
    }

    /// Every peer the hub knows: attached ones, and ended ones whose region is not reclaimed
    /// yet. In attach order.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.shared.peer_infos()
    }

    /// Closes one peer's session gracefully (the peer receives what was sent, then `Closed`).
    pub fn disconnect(&self, id: PeerId) {
        if let Some(t) = self.peer(id) {
            t.close();
            self.shared.session_ended(id, &TransportError::Closed);
        }
    }

    /// Stops accepting and closes every session. `accept` and `recv_any` return `Closed`
    /// afterwards. Sessions still held by the application are closed too. Idempotent.
    pub fn close(&self) {
        let released: Vec<_> = {
            let mut st = lock(&self.shared.state);
            st.closed = true;
            st.peers
                .iter_mut()
                .filter_map(|(_, e)| {
                    if e.state == PeerState::Attached {
                        e.state = PeerState::Closed;
                    }
                    e.transport.take().inspect(|t| e.last_stats = t.stats())
                })
                .collect()
        };
        for t in &released {
            t.close();
        }
        drop(released);
        self.shared.members_changed();
        self.shared.region_freed.notify_waiters();
    }

    /// The bytes of a peer's region as this process sees them, while the region still belongs
    /// to that peer. For diagnostics and for tests that play a hostile peer scribbling over
    /// its own region. Holding the view keeps the region from being reclaimed.
    pub fn region_bytes(&self, id: PeerId) -> Option<SharedBytes> {
        let st = lock(&self.shared.state);
        match st.regions.get(id.region())? {
            Region::Busy {
                id: owner, view, ..
            } if *owner == id => {
                let m = view.upgrade()?;
                m.bytes(0, m.len()).ok()
            }
            _ => None,
        }
    }

    /// Number of regions no peer uses: free ones, and one an `accept` holds untouched for the
    /// next connection.
    pub fn free_regions(&self) -> usize {
        self.shared.sweep();
        self.shared.free_regions()
    }
}

impl Shared {
    /// What [`HubHost::peers`] reports.
    fn peer_infos(&self) -> Vec<PeerInfo> {
        self.sweep();
        let snapshot: Vec<_> = {
            let st = lock(&self.state);
            st.peers
                .iter()
                .map(|(id, e)| (*id, e.state, e.transport.clone(), e.last_stats, e.creds))
                .collect()
        };
        snapshot
            .into_iter()
            .map(|(id, state, t, last, creds)| PeerInfo {
                id,
                state,
                pid: creds.map(|c| c.pid),
                uid: creds.map(|c| c.uid),
                stats: t.map_or(last, |t| t.stats()),
            })
            .collect()
    }

    /// What the admin socket reports.
    fn report(&self) -> HubReport {
        let peers = self
            .peer_infos()
            .into_iter()
            .map(|p| PeerReport {
                generation: p.id.generation(),
                region: p.id.region(),
                pid: p.pid,
                uid: p.uid,
                state: p.state,
                stats: p.stats,
            })
            .collect();
        HubReport {
            path: self.path.clone(),
            host_pid: std::process::id(),
            max_peers: self.config.max_peers,
            free_regions: self.free_regions(),
            peers,
        }
    }
}

impl Drop for HubHost {
    fn drop(&mut self) {
        self.close();
        self.admin.abort();
        let _ = std::fs::remove_file(&self.shared.path);
        let _ = std::fs::remove_file(admin::admin_path(&self.shared.path));
    }
}

/// An owning handle on the host side of a hub session: a [`Transport`] that closes the session
/// when dropped, like a pair endpoint. From [`HubHost::accept_owned`] (and the `hub` factory).
pub struct HubPeer {
    id: PeerId,
    transport: Arc<ShmTransport>,
}

impl HubPeer {
    /// The peer's id.
    pub fn id(&self) -> PeerId {
        self.id
    }

    /// The shared session (the hub holds another reference).
    pub fn transport(&self) -> &Arc<ShmTransport> {
        &self.transport
    }
}

impl fmt::Debug for HubPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubPeer").field("id", &self.id).finish()
    }
}

impl Drop for HubPeer {
    fn drop(&mut self) {
        self.transport.close();
    }
}

impl Transport for HubPeer {
    fn send(&self, frame: Frame) -> impl Future<Output = Result<()>> + Send {
        self.transport.send(frame)
    }
    fn try_send(&self, frame: Frame) -> Result<(), TrySendError> {
        self.transport.try_send(frame)
    }
    fn recv(&self) -> impl Future<Output = Result<Frame>> + Send {
        self.transport.recv()
    }
    fn try_recv(&self) -> Result<Option<Frame>> {
        self.transport.try_recv()
    }
    fn alloc(&self, len: usize) -> impl Future<Output = Result<TxBuf>> + Send {
        self.transport.alloc(len)
    }
    fn close(&self) {
        self.transport.close()
    }
    fn max_payload(&self) -> usize {
        self.transport.max_payload()
    }
    fn stats(&self) -> Stats {
        self.transport.stats()
    }
    fn backend(&self) -> &'static str {
        "hub"
    }
}

#[cfg(test)]
mod tests;
