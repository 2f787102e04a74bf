//! The hub: one host, many peers, one segment.
//!
//! # Segment
//!
//! A hub segment is one sealed memfd: a one-page hub header ([`HUB_MAGIC`], version, number of
//! regions, region length, offset of the first region) followed by `max_peers` page-aligned
//! *regions*. Each region is laid out exactly like a pair segment (its own pair header, both
//! directions' rings and slot classes), so a hub session is a pair session in every respect:
//! the host's side of it is a [`Segment`] over a sub-range view of the hub mapping
//! ([`Mapping::region`]), and the peer maps **only its own region**
//! ([`Segment::attach_region`]) and runs an ordinary pair side B. The ring, pool and session
//! code is shared unchanged with pair sessions.
//!
//! # Isolation
//!
//! Each peer has its own rings and its own payload memory (both directions), so a slow, dead or
//! misbehaving peer cannot exhaust what the others need, and a peer scribbling over its own
//! region can only break its own session (the host validates every value it reads, as for a
//! pair). Isolation is against crashes and bugs, not malice: a peer holding the memfd could
//! still `mmap` other regions itself; our code never does.
//!
//! # Region life cycle
//!
//! [`HubHost::accept`] reserves a free region (waiting while every region is busy: a
//! connecting peer then waits in the listen backlog and gives up after its own handshake
//! timeout), writes a fresh pair header into it and hands it to the peer. A region becomes
//! reusable only when **both**
//!
//! 1. the peer's end of the session socket is closed: its process released the session or
//!    died (the pair session keeps that socket open as long as it can touch the segment), and
//! 2. nothing in the host process refers to the region any more: every `Arc<ShmTransport>` of
//!    the session (the hub's and the application's), every received payload still borrowing a
//!    slot, every unsent leased buffer. The region's [`Mapping`] view carries a guard that is
//!    dropped with the last such reference.
//!
//! A small task per session watches both; then the region's pages are released (`fallocate`
//! punching a hole, so they read as zeros and the memory returns to the system) and the region
//! is free for the next peer. When the host's references are gone first, the task shuts the
//! socket down so that the peer sees the same end-of-file a pair peer would.
//!
//! # Receiving from any peer
//!
//! The hub keeps an `Arc` of every live session (so [`HubHost::recv_any`] and
//! [`HubHost::send_to`] work without the application keeping handles). [`HubHost::recv_any`]
//! first sweeps all live peers with `try_recv`, starting after the peer it served last
//! (round-robin, so a flooding peer cannot starve the others), for up to [`HubConfig::spin`]
//! (each sweep one pass over the peer table under the hub's lock, with no allocation); then it
//! waits on all live peers' [`ShmTransport::readable`] futures at once (they park on
//! the peers' eventfds without spinning or taking a frame), plus a "peers changed"
//! notification — no polling loop, no task per peer — and serves the peer that woke it.
//!
//! The hub drops its own reference to a session when the session ended (the peer hung up, or
//! `recv`/`recv_any` reported `Closed`, `PeerDied` or `Corrupt`) and everything the peer
//! published has been received, so a peer's last frames are never lost.

use crate::layout::{Geometry, HEADER_WORDS, Layout, STATE_CLOSED, Side};
use crate::listener::{ShmConfig, connect_with, hub_hello, is_stale_socket, serve_segment};
use crate::mapping::{Mapping, SharedBytes};
use crate::os;
use crate::segment::Segment;
use crate::session::ShmTransport;
use crate::sync::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::UnixListener;
use tokio::sync::{Notify, oneshot};
use transport_api::{
    BackendFactory, BoxTransport, DynListener, Frame, Result, Stats, Transport, TransportConfig,
    TransportError, TrySendError, TxBuf,
};

/// Magic at word 0 of a hub segment.
pub const HUB_MAGIC: u64 = u64::from_le_bytes(*b"TSHMHUB1");
/// Hub header version.
pub const HUB_VERSION: u64 = 1;
/// Default number of regions (peers attached at once).
pub const DEFAULT_MAX_PEERS: usize = 64;
/// Largest number of regions a hub accepts.
pub const MAX_HUB_PEERS: usize = 4096;

/// Word indices of the hub header (page 0 of a hub segment).
pub mod hub_hdr {
    /// [`super::HUB_MAGIC`], written last.
    pub const MAGIC: usize = 0;
    /// [`super::HUB_VERSION`].
    pub const VERSION: usize = 1;
    /// Number of regions.
    pub const MAX_PEERS: usize = 2;
    /// Length of one region in bytes (a multiple of the page size).
    pub const REGION_LEN: usize = 3;
    /// Offset of region 0 in bytes (one page).
    pub const FIRST_REGION: usize = 4;
    /// Number of header words.
    pub const WORDS: usize = 8;
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections only move bookkeeping that is consistent at every statement boundary.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Identifies one attachment of a peer: the region it uses and a generation unique within the
/// hub, so an id is never reused even when its region is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId {
    generation: u64,
    region: u32,
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

/// Hub parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubConfig {
    /// Number of regions, i.e. peers attached at once (1..=[`MAX_HUB_PEERS`]; default 64).
    pub max_peers: usize,
    /// Ring capacity and slot classes of every region (both directions).
    pub geometry: Geometry,
    /// How long [`HubHost::recv_any`] sweeps all peers before parking.
    pub spin: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            max_peers: DEFAULT_MAX_PEERS,
            geometry: Geometry::default(),
            spin: ShmConfig::default().spin,
        }
    }
}

impl HubConfig {
    /// Option names understood in a `hub://` configuration.
    pub const OPTIONS: &'static [&'static str] = &["max_peers", "ring", "spin_us", "classes"];

    /// Reads `max_peers` and the `shm` options (`ring`, `spin_us`, `classes`, see
    /// [`ShmConfig::from_config`]) from a configuration.
    pub fn from_config(cfg: &TransportConfig) -> Result<HubConfig> {
        cfg.check_known(Self::OPTIONS)?;
        let mut shm_cfg = cfg.clone();
        shm_cfg.options.remove("max_peers");
        let shm = ShmConfig::from_config(&shm_cfg)?;
        let max_peers = cfg
            .get::<u64>("max_peers")?
            .map_or(Ok(DEFAULT_MAX_PEERS), |n| {
                usize::try_from(n).map_err(|_| bad_max_peers(n))
            })?;
        let c = HubConfig {
            max_peers,
            geometry: shm.geometry,
            spin: shm.spin,
        };
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<()> {
        if self.max_peers == 0 || self.max_peers > MAX_HUB_PEERS {
            return Err(bad_max_peers(self.max_peers as u64));
        }
        self.geometry
            .validate()
            .map_err(|e| TransportError::Config(format!("hub region geometry: {e}")))
    }
}

fn bad_max_peers(n: u64) -> TransportError {
    TransportError::Config(format!(
        "hub max_peers = {n} is outside 1..={MAX_HUB_PEERS}"
    ))
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
}

/// A snapshot of one peer, from [`HubHost::peers`].
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

/// What the hub knows about one attached (or ending) peer.
struct Entry {
    /// The hub's reference to the session; `None` once released.
    transport: Option<Arc<ShmTransport>>,
    state: PeerState,
    /// The peer's end of the socket is closed.
    hung_up: bool,
    last_stats: Stats,
    /// The peer's credentials as the kernel reported them for the connection (`SO_PEERCRED`).
    creds: Option<crate::PeerCredentials>,
}

enum Region {
    Free,
    /// Taken by an `accept` that has not handed the region to a peer yet.
    Reserved,
    /// Offered to (or used by) a peer; freed by its monitor task.
    Busy {
        id: PeerId,
        /// The host's view of the region (alive while anything here refers to the region).
        view: Weak<Mapping>,
    },
}

/// What one pass of [`Shared::take_ready`] found.
enum Ready {
    /// A frame, from this peer.
    Frame(PeerId, Frame),
    /// No peer had a frame; this many were tried.
    Empty(usize),
    /// A session has ended (the pass stopped there).
    SessionEnded,
}

struct State {
    regions: Vec<Region>,
    peers: BTreeMap<PeerId, Entry>,
    next_generation: u64,
    /// The peer `recv_any` served last (the next sweep starts after it).
    last_served: Option<PeerId>,
    closed: bool,
}

struct Shared {
    config: HubConfig,
    layout: Layout,
    region_len: usize,
    first_region: usize,
    memfd: OwnedFd,
    map: Arc<Mapping>,
    state: Mutex<State>,
    region_freed: Notify,
    peers_changed: Notify,
    path: PathBuf,
}

/// The host of a hub: listens at a Unix socket path and serves up to
/// [`HubConfig::max_peers`] peers over one shared segment. See the [module documentation](self).
///
/// Peers connect with [`crate::connect`] (or the `hub` / `shm` factory): the same handshake as
/// a pair, extended to name the region to map. The socket path is removed when the host is
/// dropped; dropping the host closes every session the application does not hold.
pub struct HubHost {
    shared: Arc<Shared>,
    listener: UnixListener,
    /// The task answering the admin socket ([`crate::hub_admin`]); aborted on drop.
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
    /// Creates the hub segment (sized for `config.max_peers` regions of `config.geometry`) and
    /// binds `path` (replacing a stale socket file nobody listens on). Must run inside a tokio
    /// runtime.
    pub fn bind(path: impl AsRef<Path>, config: HubConfig) -> Result<HubHost> {
        config.validate()?;
        let layout = Layout::new(config.geometry.clone())
            .map_err(|e| TransportError::Config(format!("hub region geometry: {e}")))?;
        let page = os::page_size();
        let region_len = layout
            .total_len()
            .checked_next_multiple_of(page)
            .ok_or_else(|| TransportError::Config("hub region too large".into()))?;
        let total = region_len
            .checked_mul(config.max_peers)
            .and_then(|r| r.checked_add(page))
            .ok_or_else(|| {
                TransportError::Config(format!(
                    "hub segment of {} regions of {region_len} bytes is too large",
                    config.max_peers
                ))
            })?;
        let (memfd, raw) = os::create_segment(total).map_err(|e| {
            TransportError::Config(format!(
                "hub segment of {total} bytes ({} regions of {region_len}): {e}",
                config.max_peers
            ))
        })?;
        let map = Mapping::new(raw);
        let h = map
            .words(0, hub_hdr::WORDS)
            .map_err(|e| TransportError::Config(format!("hub header: {e}")))?;
        h[hub_hdr::VERSION].store(HUB_VERSION, Ordering::Relaxed);
        h[hub_hdr::MAX_PEERS].store(config.max_peers as u64, Ordering::Relaxed);
        h[hub_hdr::REGION_LEN].store(region_len as u64, Ordering::Relaxed);
        h[hub_hdr::FIRST_REGION].store(page as u64, Ordering::Relaxed);
        h[hub_hdr::MAGIC].store(HUB_MAGIC, Ordering::Release);

        let path = path.as_ref().to_path_buf();
        let listener = match UnixListener::bind(&path) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && is_stale_socket(&path) => {
                std::fs::remove_file(&path)?;
                UnixListener::bind(&path)?
            }
            Err(e) => {
                return Err(TransportError::Io(std::io::Error::new(
                    e.kind(),
                    format!("hub: binding {}: {e}", path.display()),
                )));
            }
        };
        tracing::debug!(backend = "hub", path = %path.display(), max_peers = config.max_peers,
            region_len, "hub listening");
        let admin_listener = crate::AccessPolicy::default()
            .with_shared_dir(true)
            .bind("hub admin", &crate::hub_admin::admin_path(&path))?;
        let regions = (0..config.max_peers).map(|_| Region::Free).collect();
        let shared = Arc::new(Shared {
            config,
            layout,
            region_len,
            first_region: page,
            memfd,
            map,
            state: Mutex::new(State {
                regions,
                peers: BTreeMap::new(),
                next_generation: 1,
                last_served: None,
                closed: false,
            }),
            region_freed: Notify::new(),
            peers_changed: Notify::new(),
            path,
        });
        let weak = Arc::downgrade(&shared);
        let admin = tokio::spawn(crate::hub_admin::serve(admin_listener, move || {
            weak.upgrade().map(|sh| sh.report())
        }));
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
    /// While every region is busy this waits for one to be reclaimed before taking the next
    /// connection from the socket (the connecting peer waits in the listen backlog, and fails
    /// after its own handshake timeout if no region frees up). Reclaims are notified, including
    /// a departed peer whose last frames the application drains through its own handle (the
    /// waiting `accept` waits on [`ShmTransport::drained`]); nothing is polled on a timer. A
    /// connection whose handshake fails is logged and skipped. Cancel-safe: a dropped `accept`
    /// gives its region back (after the peer it was offered to, if any, hung up).
    pub async fn accept(&self) -> Result<(PeerId, Arc<ShmTransport>)> {
        let sh = &self.shared;
        loop {
            let mut reservation = self.reserve_region().await?;
            let region = reservation.region;
            let (stream, _) = self.listener.accept().await?;
            let sock: OwnedFd = stream.into_std()?.into();
            let creds = crate::PeerCredentials::of(&sock).ok();
            let id = {
                let mut st = lock(&sh.state);
                let id = PeerId {
                    generation: st.next_generation,
                    region: region as u32,
                };
                st.next_generation += 1;
                id
            };
            let (seg, refs_gone) = sh.init_region(region).map_err(|e| {
                TransportError::Config(format!("hub: initialising region {region}: {e}"))
            })?;
            let dup = sock.try_clone()?;
            let watch = os::async_readable(dup)?;
            lock(&sh.state).regions[region] = Region::Busy {
                id,
                view: Arc::downgrade(seg.mapping()),
            };
            // From here on the monitor owns the region's return to the free list.
            reservation.armed = false;
            tokio::spawn(monitor(Arc::downgrade(sh), id, region, watch, refs_gone));
            let offset = sh.region_offset(region);
            let hello = hub_hello(offset as u64, sh.region_len as u64);
            match serve_segment(sock, seg, sh.memfd.as_fd(), &hello, sh.config.spin).await {
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
                                    creds,
                                },
                            );
                        }
                        st.closed
                    };
                    if closed {
                        t.close();
                        return Err(TransportError::Closed);
                    }
                    sh.peers_changed.notify_waiters();
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
                    return Err(TransportError::Closed);
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

    /// Receives the next frame from any peer, fairly (round-robin over the peers that have
    /// frames), waiting without polling until one arrives.
    ///
    /// Peers whose session ends are dropped from the rotation (with a `tracing` event) once
    /// their last frames were delivered; they never make `recv_any` fail. Returns `Closed` once
    /// the hub is closed. With no peer attached it waits for one. Cancel-safe: a dropped
    /// `recv_any` consumes no frame.
    pub async fn recv_any(&self) -> Result<(PeerId, Frame)> {
        let sh = &self.shared;
        // Frames that are waiting, or arrive within the spin time, are taken by cheap passes
        // over the rotation (no waiter registration, no snapshot), yielding the thread every
        // few dozen tries as a session's own `recv` does. A session found ended hands over to
        // the full loop below, which records it.
        let start = Instant::now();
        let (mut probes, mut next_check) = (0usize, 32usize);
        loop {
            match sh.take_ready()? {
                Ready::Frame(id, f) => return Ok((id, f)),
                Ready::SessionEnded => break,
                Ready::Empty(_) if sh.config.spin.is_zero() => break,
                Ready::Empty(tried) => probes += tried.max(1),
            }
            // The clock is read (and the thread yielded) every few dozen `try_recv`s, not
            // every pass: a pass tries every peer, so with many peers this is every pass.
            if probes >= next_check {
                next_check = probes + 32;
                if start.elapsed() >= sh.config.spin {
                    break;
                }
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        let mut tries = 0u32;
        loop {
            let changed = sh.peers_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let live = sh.rotation()?;
            let mut ended = false;
            for (id, t) in &live {
                match t.try_recv() {
                    Ok(Some(f)) => {
                        sh.served(*id);
                        return Ok((*id, f));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        sh.session_ended(*id, &e);
                        ended = true;
                    }
                }
            }
            if ended {
                continue;
            }
            if start.elapsed() < sh.config.spin {
                tries = tries.wrapping_add(1);
                if tries % 32 == 0 {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
            // Park on every live peer at once (`readable` neither spins nor takes a frame),
            // plus membership changes; then take the frame with `try_recv` above.
            let mut futs: Vec<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = live
                .iter()
                .map(|(_, t)| Box::pin(t.readable()) as _)
                .collect();
            let woke = std::future::poll_fn(|cx| {
                for (i, f) in futs.iter_mut().enumerate() {
                    if let Poll::Ready(r) = f.as_mut().poll(cx) {
                        return Poll::Ready(Some((i, r)));
                    }
                }
                if changed.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                Poll::Pending
            })
            .await;
            drop(futs);
            if let Some((i, ())) = woke {
                // Serve the peer that woke us first, then the rotation continues as usual.
                let (id, t) = &live[i];
                match t.try_recv() {
                    Ok(Some(f)) => {
                        sh.served(*id);
                        return Ok((*id, f));
                    }
                    Ok(None) => {}
                    Err(e) => sh.session_ended(*id, &e),
                }
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
        self.shared.peers_changed.notify_waiters();
        self.shared.region_freed.notify_waiters();
    }

    /// The bytes of a peer's region as this process sees them, while the region still belongs
    /// to that peer. For diagnostics and for tests that play a hostile peer scribbling over
    /// its own region. Holding the view keeps the region from being reclaimed.
    pub fn region_bytes(&self, id: PeerId) -> Option<SharedBytes> {
        let st = lock(&self.shared.state);
        match st.regions.get(id.region())? {
            Region::Busy { id: owner, view } if *owner == id => {
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

impl Drop for HubHost {
    fn drop(&mut self) {
        self.close();
        self.admin.abort();
        let _ = std::fs::remove_file(&self.shared.path);
        let _ = std::fs::remove_file(crate::hub_admin::admin_path(&self.shared.path));
    }
}

/// A region taken by an `accept` in progress; given back if the `accept` ends before the
/// region was offered to a peer.
struct Reservation<'a> {
    shared: &'a Shared,
    region: usize,
    armed: bool,
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

    /// Regions no peer uses (free, or held untouched by an `accept`).
    fn free_regions(&self) -> usize {
        lock(&self.state)
            .regions
            .iter()
            .filter(|r| matches!(r, Region::Free | Region::Reserved))
            .count()
    }

    /// What the admin socket reports ([`crate::hub_admin`]).
    fn report(&self) -> crate::hub_admin::HubReport {
        let peers = self
            .peer_infos()
            .into_iter()
            .map(|p| crate::hub_admin::PeerReport {
                generation: p.id.generation(),
                region: p.id.region(),
                pid: p.pid,
                uid: p.uid,
                state: p.state,
                stats: p.stats,
            })
            .collect();
        let free_regions = self.free_regions();
        crate::hub_admin::HubReport {
            path: self.path.clone(),
            host_pid: std::process::id(),
            max_peers: self.config.max_peers,
            free_regions,
            peers,
        }
    }

    fn region_offset(&self, region: usize) -> usize {
        self.first_region + region * self.region_len
    }

    /// Lays a fresh pair header over a (zero) region and returns the host's segment over it,
    /// with the receiver that fires once no host reference into the region is left.
    fn init_region(
        &self,
        region: usize,
    ) -> std::result::Result<(Segment, oneshot::Receiver<()>), crate::SegmentError> {
        let (tx, rx) = oneshot::channel::<()>();
        let view = self
            .map
            .region(self.region_offset(region), self.region_len, Box::new(tx))?;
        Ok((Segment::init(view, self.layout.clone())?, rx))
    }

    /// The live peers, starting after the one served last.
    fn rotation(&self) -> Result<Vec<(PeerId, Arc<ShmTransport>)>> {
        let st = lock(&self.state);
        if st.closed {
            return Err(TransportError::Closed);
        }
        let live = |(id, e): (&PeerId, &Entry)| e.transport.clone().map(|t| (*id, t));
        Ok(match st.last_served {
            Some(last) => st
                .peers
                .range((std::ops::Bound::Excluded(last), std::ops::Bound::Unbounded))
                .chain(st.peers.range(..=last))
                .filter_map(live)
                .collect(),
            None => st.peers.iter().filter_map(live).collect(),
        })
    }

    /// One pass over the rotation under the hub's lock, in the same order as [`Self::rotation`]:
    /// the first frame found (its peer recorded as served). A session found ended stops the
    /// pass: [`HubHost::recv_any`]'s full loop records the end (outside this lock) and goes on
    /// with the others.
    fn take_ready(&self) -> Result<Ready> {
        let mut st = lock(&self.state);
        if st.closed {
            return Err(TransportError::Closed);
        }
        let (after, up_to) = match st.last_served {
            Some(last) => (
                st.peers
                    .range((std::ops::Bound::Excluded(last), std::ops::Bound::Unbounded)),
                Some(st.peers.range(..=last)),
            ),
            None => (st.peers.range::<PeerId, _>(..), None),
        };
        let (mut found, mut tried) = (None, 0);
        for (id, e) in after.chain(up_to.into_iter().flatten()) {
            let Some(t) = &e.transport else {
                continue;
            };
            tried += 1;
            match t.try_recv() {
                Ok(Some(f)) => {
                    found = Some((*id, f));
                    break;
                }
                Ok(None) => {}
                Err(_) => return Ok(Ready::SessionEnded),
            }
        }
        Ok(match found {
            Some((id, f)) => {
                st.last_served = Some(id);
                Ready::Frame(id, f)
            }
            None => Ready::Empty(tried),
        })
    }

    fn served(&self, id: PeerId) {
        lock(&self.state).last_served = Some(id);
    }

    /// A `recv` on the session reported its end (after delivering everything): record the
    /// outcome and drop the hub's reference.
    fn session_ended(&self, id: PeerId, e: &TransportError) {
        let released = {
            let mut st = lock(&self.state);
            let Some(entry) = st.peers.get_mut(&id) else {
                return;
            };
            if entry.state == PeerState::Attached {
                entry.state = match e {
                    TransportError::Closed => PeerState::Closed,
                    TransportError::PeerDied => PeerState::Dead,
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
        self.peers_changed.notify_waiters();
    }

    /// The peer's socket hung up.
    fn on_hangup(&self, id: PeerId, region: usize) {
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
        self.peers_changed.notify_waiters();
    }

    /// Drops the hub's reference to every session whose peer hung up and whose frames were all
    /// received.
    fn sweep(&self) {
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
            drop(released);
        }
    }

    /// Gives a region whose peer hung up and whose host references are all gone back to the
    /// free list, with its pages released (they read as zeros afterwards).
    fn reclaim(&self, region: usize, id: PeerId) {
        let offset = self.region_offset(region);
        if let Err(e) = os::punch_hole(self.memfd.as_fd(), offset as u64, self.region_len as u64) {
            tracing::debug!(backend = "hub", error = %e, "punching a hole failed; zeroing");
            if let Ok(b) = self.map.bytes(offset, self.region_len) {
                let zeros = vec![0u8; 64 << 10];
                let mut at = 0;
                while at < b.len() {
                    let n = zeros.len().min(b.len() - at);
                    let _ = b.write(at, &zeros[..n]);
                    at += n;
                }
            }
        }
        {
            let mut st = lock(&self.state);
            st.peers.remove(&id);
            st.regions[region] = Region::Free;
        }
        tracing::debug!(backend = "hub", peer = %id, region, "region reclaimed");
        self.region_freed.notify_waiters();
    }

    /// A word of a region's pair header, read through the hub mapping (peer-written values are
    /// untrusted: for state reports and diagnostics only).
    fn peer_header_word(&self, region: usize, word: usize) -> u64 {
        self.map
            .words(self.region_offset(region), HEADER_WORDS)
            .map_or(0, |h| h[word].load(Ordering::Acquire))
    }
}

/// Watches one region's session socket (a duplicate of the host's end, never read from) and
/// the region's host references; frees the region once both are gone.
async fn monitor(
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
                let _ = os::shutdown_write(sock.get_ref());
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

/// The `hub` backend for [`transport_api::Registry`]:
/// `hub:///path/to/socket?max_peers=64&ring=256&spin_us=20&classes=256x256,4096x64`.
///
/// `listen` starts a [`HubHost`] whose `accept` yields each peer's session (an owning
/// [`HubPeer`]); `connect` joins a hub as a peer (the same as `shm` connect, which also
/// accepts a hub).
#[derive(Clone, Copy, Debug, Default)]
pub struct HubFactory;

struct HubDynListener {
    hub: HubHost,
    config: TransportConfig,
}

#[async_trait::async_trait]
impl DynListener for HubDynListener {
    async fn accept(&self) -> Result<BoxTransport> {
        let (_, p) = self.hub.accept_owned().await?;
        Ok(Box::new(p))
    }
    fn connect_config(&self) -> TransportConfig {
        crate::listener::peer_config(&self.config)
    }
}

#[async_trait::async_trait]
impl BackendFactory for HubFactory {
    fn name(&self) -> &'static str {
        "hub"
    }
    async fn listen(&self, config: &TransportConfig) -> Result<Box<dyn DynListener>> {
        let c = HubConfig::from_config(config)?;
        Ok(Box::new(HubDynListener {
            hub: HubHost::bind(&config.address, c)?,
            config: config.clone(),
        }))
    }
    async fn connect(&self, config: &TransportConfig) -> Result<BoxTransport> {
        let c = HubConfig::from_config(config)?;
        Ok(Box::new(connect_with(&config.address, c.spin).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn peer_maps_only_its_region_and_host_segment_is_relative() {
        let path = std::env::temp_dir().join(format!(
            "transport-shm-hub-unit-{}.sock",
            std::process::id()
        ));
        let geometry = Geometry {
            ring_capacity: 8,
            classes: vec![crate::SlotClass {
                slot_size: 256,
                slot_count: 8,
            }],
        };
        let hub = HubHost::bind(
            &path,
            HubConfig {
                max_peers: 3,
                geometry,
                ..HubConfig::default()
            },
        )
        .unwrap();
        let h = hub.shared.map.words(0, hub_hdr::WORDS).unwrap();
        assert_eq!(h[hub_hdr::MAGIC].load(Ordering::Relaxed), HUB_MAGIC);
        assert_eq!(h[hub_hdr::MAX_PEERS].load(Ordering::Relaxed), 3);
        let mut peers = Vec::new();
        for i in 0..3 {
            let (accepted, peer) = tokio::join!(hub.accept(), crate::connect(&path));
            let ((id, host), peer) = (accepted.unwrap(), peer.unwrap());
            assert_eq!(id.region(), i);
            // The peer's mapping is exactly its region, page-aligned in the file.
            assert_eq!(peer.segment().mapping().len(), hub.region_len());
            assert_eq!(hub.region_len() % os::page_size(), 0);
            assert_eq!(host.segment().layout(), peer.segment().layout());
            // The host's view of the region is the peer's mapping: same bytes.
            peer.segment().header()[Side::B.pid_word()].store(4242 + i as u64, Ordering::Relaxed);
            assert_eq!(
                hub.shared.peer_header_word(i, Side::B.pid_word()),
                4242 + i as u64
            );
            assert_eq!(
                host.segment().side_state(Side::B).pid,
                Some(4242 + i as i32)
            );
            peers.push((host, peer));
        }
        // The pid the hub reports comes from the kernel (the peers are this process here).
        assert!(hub.peers().iter().all(|p| p.pid == Some(os::current_pid())));
    }

    #[test]
    fn handles_are_send_and_sync() {
        fn is<T: Send + Sync>() {}
        is::<HubHost>();
        is::<HubPeer>();
    }
}
