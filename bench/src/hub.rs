//! The hub rows: one [`HubHost`] and peers in other processes.
//!
//! - `hub`, `hub-any`: host ↔ one peer through the generic benchmark ([`HubSide`] over an
//!   owning [`HubPeer`] from [`HubHost::accept_owned`]; the peer is an ordinary
//!   [`transport_shm::connect`]). `hub` receives through the peer's own session
//!   ([`HubPeer`]'s `recv`), `hub-any` through [`HubHost::recv_any`] (what an application
//!   serving many peers does); everything else is the generic code of the `shm` row.
//! - `hub-fanin-N` ([`FaninSession`]): N peer processes each stream stamped frames to the host
//!   for the stream budget; the host drains all of them with `recv_any`, reading and checking
//!   every byte per peer. The rate is the total over all peers, from the start command until
//!   the last peer's end mark. All N peers run on the peer CPU of the placement (with
//!   `split`: N peer processes share CPU 1, the host has CPU 0).
//! - `hub-attach` ([`AttachSession`]): the cost of an attach (one peer process connecting and
//!   closing repeatedly: its wall-clock time just before `connect` to the host's `accept`
//!   returning), and of a death (a fresh peer process per sample, SIGKILLed: until the host's
//!   `recv` reports the end, and until [`HubHost::free_regions`] shows its region free again
//!   after the host dropped its handle).

use super::cli::ChildArgs;
use super::cross::{self, CONNECT_TIMEOUT, TransportSession, runtime};
use super::generic::{StreamOutcome, send_stamped};
use super::procs::{ChildProc, PlaceCtx, RendezvousDir, retry};
use super::proto::{
    Budget, Deadline, F_CMD_FANIN, F_DATA, F_END, F_GO, F_PING, F_QUIT, F_STAMP, Pattern, Tally,
    nanos, read_seq,
};
use super::report::Mode;
use super::session::Session;
use super::{BenchError, BenchResult};
use bytes::Bytes;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use transport_api::{
    Frame, Result as TResult, Stats, Transport, TransportError, TrySendError, TxBuf,
};
use transport_shm::{HubConfig, HubHost, HubPeer, PeerId};

/// Regions of the hub of the `hub` / `hub-any` rows (only one is used).
pub const HUB_MAX_PEERS: usize = 16;
/// Largest payload of the fan-in rows.
const FANIN_MAX_SIZE: usize = 64 << 10;
/// How long one hub operation (accept, reclaim) may take before the step fails.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Name of the hidden child role SIGKILLed by the death measurement.
pub const VICTIM: &str = "hub-victim";

fn control(flags: u32) -> Frame {
    Frame::new(Bytes::new()).flags(flags)
}

fn config(max_peers: usize) -> HubConfig {
    HubConfig {
        max_peers,
        ..HubConfig::default()
    }
}

async fn timed<T>(what: &str, f: impl Future<Output = TResult<T>>) -> BenchResult<T> {
    tokio::time::timeout(OP_TIMEOUT, f)
        .await
        .map_err(|_| BenchError::new(format!("{what}: timed out after {OP_TIMEOUT:?}")))?
        .map_err(|e| BenchError::new(format!("{what}: {e}")))
}

/// Nanoseconds since the Unix epoch (CLOCK_REALTIME, the clock both processes share and can
/// exchange; steps of the clock during a sample would show as outliers).
fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, nanos)
}

/// The host side of the `hub` and `hub-any` rows: the owning handle of the one peer's session,
/// and the hub (dropped after the handle).
pub struct HubSide {
    peer: HubPeer,
    hub: HubHost,
    any: bool,
}

impl HubSide {
    /// Binds a hub at `path` ([`HUB_MAX_PEERS`] regions, default geometry and spin) and accepts
    /// one peer. With `any`, `recv` goes through [`HubHost::recv_any`].
    pub async fn accept_one(path: &Path, any: bool) -> TResult<HubSide> {
        let hub = HubHost::bind(path, config(HUB_MAX_PEERS))?;
        let (_, peer) = hub.accept_owned().await?;
        Ok(HubSide { peer, hub, any })
    }
}

impl Transport for HubSide {
    fn send(&self, frame: Frame) -> impl Future<Output = TResult<()>> + Send {
        self.peer.send(frame)
    }
    fn try_send(&self, frame: Frame) -> Result<(), TrySendError> {
        self.peer.try_send(frame)
    }
    async fn recv(&self) -> TResult<Frame> {
        if self.any {
            self.hub.recv_any().await.map(|(_, f)| f)
        } else {
            self.peer.recv().await
        }
    }
    fn try_recv(&self) -> TResult<Option<Frame>> {
        self.peer.try_recv()
    }
    fn alloc(&self, len: usize) -> impl Future<Output = TResult<TxBuf>> + Send {
        self.peer.alloc(len)
    }
    fn close(&self) {
        self.peer.close()
    }
    fn max_payload(&self) -> usize {
        self.peer.max_payload()
    }
    fn stats(&self) -> Stats {
        self.peer.stats()
    }
    fn backend(&self) -> &'static str {
        "hub"
    }
}

/// Parent side of the `hub` / `hub-any` rows.
pub fn start_pair(
    place: &PlaceCtx,
    name: &str,
    any: bool,
) -> BenchResult<TransportSession<HubSide>> {
    cross::parent(place, name, |path| async move {
        HubSide::accept_one(&path, any).await
    })
}

/// Peer side of the `hub` / `hub-any` rows: an ordinary `transport_shm::connect`.
pub fn pair_child(a: &ChildArgs) -> BenchResult<()> {
    cross::child(a, |path| async move { transport_shm::connect(&path).await })
}

fn rendezvous(a: &ChildArgs) -> BenchResult<PathBuf> {
    a.rendezvous
        .clone()
        .ok_or_else(|| BenchError::new("missing --rendezvous"))
}

/// Starts `n` children playing `role` and accepts them all as owning handles.
fn spawn_and_accept(
    rt: &tokio::runtime::Runtime,
    place: &PlaceCtx,
    hub: &HubHost,
    role: &str,
    path: &Path,
    n: usize,
) -> BenchResult<(Vec<ChildProc>, Vec<HubPeer>)> {
    let mut children = Vec::with_capacity(n);
    for _ in 0..n {
        children.push(ChildProc::spawn(place, role, &[], Some(path))?);
    }
    let mut peers = Vec::with_capacity(n);
    for _ in 0..n {
        let (_, p) = rt.block_on(timed("accepting a peer", hub.accept_owned()))?;
        peers.push(p);
    }
    Ok((children, peers))
}

/// The parent side of a `hub-fanin-N` row.
pub struct FaninSession {
    peers: Vec<HubPeer>,
    hub: HubHost,
    children: Vec<ChildProc>,
    rt: tokio::runtime::Runtime,
    _dir: RendezvousDir,
}

impl FaninSession {
    /// Binds a hub of `n` regions and starts `n` peers, each a process playing `name`.
    pub fn start(place: &PlaceCtx, name: &str, n: usize) -> BenchResult<FaninSession> {
        let rt = runtime()?;
        let dir = RendezvousDir::new(name)?;
        let path = dir.join("hub");
        let hub = rt.block_on(async { HubHost::bind(&path, config(n)) })?;
        let (children, peers) = spawn_and_accept(&rt, place, &hub, name, &path, n)?;
        Ok(FaninSession {
            peers,
            hub,
            children,
            rt,
            _dir: dir,
        })
    }
}

/// Encodes a fan-in command: payload size and measuring time.
fn fanin_command(size: usize, measure: Duration) -> Frame {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(size as u64).to_le_bytes());
    b[8..].copy_from_slice(&nanos(measure).to_le_bytes());
    Frame::new(Bytes::copy_from_slice(&b)).flags(F_CMD_FANIN)
}

impl Session for FaninSession {
    fn rtt(&mut self, _size: usize, _budget: &Budget) -> BenchResult<Vec<u64>> {
        Err(BenchError::new("fan-in rows measure streams only"))
    }

    fn stream(&mut self, size: usize, budget: &Budget) -> BenchResult<StreamOutcome> {
        if size > FANIN_MAX_SIZE {
            return Err(BenchError::new("fan-in payloads are at most 64 KiB"));
        }
        let (hub, peers) = (&self.hub, &self.peers);
        self.rt.block_on(async {
            let ids: Vec<PeerId> = peers.iter().map(HubPeer::id).collect();
            let mut tallies: HashMap<PeerId, Tally> = HashMap::new();
            let mut ends: HashMap<PeerId, u64> = HashMap::new();
            let start = Instant::now();
            for &id in &ids {
                hub.send_to(id, fanin_command(size, budget.measure)).await?;
            }
            while ends.len() < ids.len() {
                let (id, f) = hub.recv_any().await?;
                match f.header.flags {
                    F_DATA => tallies.entry(id).or_default().take(f.bytes()),
                    F_END => {
                        ends.insert(id, f.header.msg_id);
                    }
                    other => {
                        return Err(BenchError::new(format!(
                            "fan-in: unexpected flags {other:#x} from {id}"
                        )));
                    }
                }
            }
            let elapsed = start.elapsed();
            let (mut msgs, mut bytes) = (0, 0);
            for id in &ids {
                let sent = ends[id];
                let tally = tallies.get(id).copied().unwrap_or_default();
                tally.verify(sent, size).map_err(|e| e.context(id))?;
                msgs += tally.count;
                bytes += tally.bytes;
            }
            Ok(StreamOutcome {
                msgs,
                bytes,
                elapsed,
            })
        })
    }

    fn finish(&mut self) -> BenchResult<()> {
        let (hub, peers) = (&self.hub, &self.peers);
        self.rt.block_on(async {
            for p in peers {
                let _ = hub.send_to(p.id(), control(F_QUIT)).await;
            }
        });
        self.peers.clear();
        self.hub.close();
        let mut first_err = Ok(());
        for c in self.children.drain(..) {
            let r = c.wait(Duration::from_secs(10));
            if first_err.is_ok() {
                first_err = r;
            }
        }
        first_err
    }
}

/// Peer side of the `hub-fanin-N` rows: on each command, streams stamped frames of the given
/// size for the given time, then an `F_END` whose `msg_id` is the number sent.
pub fn fanin_child(a: &ChildArgs) -> BenchResult<()> {
    let path = rendezvous(a)?;
    runtime()?.block_on(async {
        let t = retry(CONNECT_TIMEOUT, || transport_shm::connect(&path)).await?;
        let pattern = Pattern::new(FANIN_MAX_SIZE);
        loop {
            let f = match t.recv().await {
                Ok(f) => f,
                Err(TransportError::Closed | TransportError::PeerDied) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            match f.header.flags {
                F_CMD_FANIN => {
                    let b = f.bytes();
                    let (Some(size), Some(measure)) = (read_seq(b), b.get(8..).and_then(read_seq))
                    else {
                        return Err(BenchError::new("fan-in: malformed command"));
                    };
                    let size = usize::try_from(size)
                        .ok()
                        .filter(|&s| s <= FANIN_MAX_SIZE)
                        .ok_or_else(|| BenchError::new("fan-in: payload too large"))?;
                    let budget = Budget {
                        warmup: Duration::ZERO,
                        measure: Duration::from_nanos(measure),
                        min_iters: 20,
                        max_iters: u64::MAX,
                        gap: Duration::ZERO,
                    };
                    let deadline = Deadline::new(&budget, size);
                    let mut sent = 0u64;
                    while !deadline.reached(sent) {
                        sent += 1;
                        send_stamped(&t, &pattern, size, sent, F_DATA).await?;
                    }
                    t.send(control(F_END).msg_id(sent)).await?;
                }
                F_QUIT => {
                    t.close();
                    return Ok(());
                }
                other => {
                    return Err(BenchError::new(format!(
                        "fan-in peer: unexpected flags {other:#x}"
                    )));
                }
            }
        }
    })
}

/// Number of samples of the `hub-attach` row's measurements.
fn samples(mode: Mode, quick: bool) -> usize {
    match (mode, quick) {
        (Mode::Attach, true) => 20,
        (Mode::Attach, false) => 200,
        (_, true) => 10,
        (_, false) => 50,
    }
}

/// The parent side of the `hub-attach` row: a hub of a few regions, a control peer that
/// attaches on command, and fresh victim peers for the death measurements.
pub struct AttachSession {
    control: Option<HubPeer>,
    hub: HubHost,
    child: Option<ChildProc>,
    rt: tokio::runtime::Runtime,
    place: PlaceCtx,
    path: PathBuf,
    /// Reclaim samples of the last death measurement (both come from the same kills).
    reclaim: Option<Vec<u64>>,
    _dir: RendezvousDir,
}

impl AttachSession {
    /// Binds the hub and accepts the control peer (a process playing `name`).
    pub fn start(place: &PlaceCtx, name: &str) -> BenchResult<AttachSession> {
        let rt = runtime()?;
        let dir = RendezvousDir::new(name)?;
        let path = dir.join("hub");
        let hub = rt.block_on(async { HubHost::bind(&path, config(4)) })?;
        let (mut children, mut peers) = spawn_and_accept(&rt, place, &hub, name, &path, 1)?;
        Ok(AttachSession {
            control: peers.pop(),
            hub,
            child: children.pop(),
            rt,
            place: place.clone(),
            path,
            reclaim: None,
            _dir: dir,
        })
    }

    /// Waits (yielding to the hub's tasks) until more than `base` regions are free.
    async fn until_free(hub: &HubHost, base: usize) -> BenchResult<Instant> {
        let end = Instant::now() + OP_TIMEOUT;
        loop {
            if hub.free_regions() > base {
                return Ok(Instant::now());
            }
            if Instant::now() > end {
                return Err(BenchError::new(format!(
                    "no region was reclaimed within {OP_TIMEOUT:?}"
                )));
            }
            tokio::task::yield_now().await;
        }
    }

    fn attach(&mut self, n: usize) -> BenchResult<Vec<u64>> {
        let ctl = self
            .control
            .as_ref()
            .ok_or_else(|| BenchError::new("no control peer"))?;
        let hub = &self.hub;
        self.rt.block_on(async {
            let mut out = Vec::with_capacity(n);
            for _ in 0..n {
                let base = hub.free_regions();
                ctl.send(control(F_GO)).await?;
                let (_, p) = timed("accepting an attach", hub.accept_owned()).await?;
                let t1 = wall_ns();
                let f = timed("the attach stamp", p.recv()).await?;
                let t0 = match (f.header.flags, read_seq(f.bytes())) {
                    (F_STAMP, Some(t0)) => t0,
                    _ => return Err(BenchError::new("attach: malformed stamp")),
                };
                out.push(t1.saturating_sub(t0));
                // Close the session; the peer then drops its end and the region comes back.
                drop(p);
                Self::until_free(hub, base.saturating_sub(1)).await?;
            }
            Ok(out)
        })
    }

    /// SIGKILLs `n` fresh peers: (kill → host's `recv` ends, kill → region free again).
    fn deaths(&mut self, n: usize) -> BenchResult<(Vec<u64>, Vec<u64>)> {
        let (mut died, mut freed) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            let mut child = ChildProc::spawn(&self.place, VICTIM, &[], Some(&self.path))?;
            let hub = &self.hub;
            let (d, f) = self.rt.block_on(async {
                let (_, p) = timed("accepting a victim", hub.accept_owned()).await?;
                // One round trip, so the victim is fully up and parked in `recv`.
                p.send(control(F_PING)).await?;
                let echo = timed("the victim's echo", p.recv()).await?;
                if echo.header.flags != F_PING {
                    return Err(BenchError::new("victim: bad echo"));
                }
                drop(echo);
                let base = hub.free_regions();
                let t0 = Instant::now();
                child.sigkill()?;
                match timed("waiting for the victim's end", p.recv()).await {
                    Err(_) => {}
                    Ok(_) => return Err(BenchError::new("victim: frame after SIGKILL")),
                }
                let t_died = Instant::now();
                drop(p);
                let t_free = Self::until_free(hub, base).await?;
                Ok::<_, BenchError>((nanos(t_died - t0), nanos(t_free - t0)))
            })?;
            died.push(d);
            freed.push(f);
            drop(child);
        }
        Ok((died, freed))
    }
}

impl Session for AttachSession {
    fn rtt(&mut self, _size: usize, _budget: &Budget) -> BenchResult<Vec<u64>> {
        Err(BenchError::new("the attach row measures costs only"))
    }

    fn stream(&mut self, _size: usize, _budget: &Budget) -> BenchResult<StreamOutcome> {
        Err(BenchError::new("the attach row measures costs only"))
    }

    fn cost(&mut self, mode: Mode, quick: bool) -> BenchResult<Vec<u64>> {
        let n = samples(mode, quick);
        match mode {
            Mode::Attach => self.attach(n),
            Mode::Death => {
                let (died, freed) = self.deaths(n)?;
                self.reclaim = Some(freed);
                Ok(died)
            }
            Mode::Reclaim => match self.reclaim.take() {
                Some(v) => Ok(v),
                None => Ok(self.deaths(n)?.1),
            },
            other => Err(BenchError::new(format!(
                "the attach row does not measure {}",
                other.name()
            ))),
        }
    }

    fn finish(&mut self) -> BenchResult<()> {
        if let Some(c) = self.control.take() {
            let _ = self.rt.block_on(c.send(control(F_QUIT)));
        }
        self.hub.close();
        match self.child.take() {
            Some(c) => c.wait(Duration::from_secs(10)),
            None => Ok(()),
        }
    }
}

/// Peer side of the `hub-attach` row (the control peer): on each `F_GO`, takes the wall time,
/// connects to the hub again, sends the time on the new session and waits for the host to
/// close it.
pub fn attach_child(a: &ChildArgs) -> BenchResult<()> {
    let path = rendezvous(a)?;
    runtime()?.block_on(async {
        let t = retry(CONNECT_TIMEOUT, || transport_shm::connect(&path)).await?;
        loop {
            let f = match t.recv().await {
                Ok(f) => f,
                Err(TransportError::Closed | TransportError::PeerDied) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            match f.header.flags {
                F_GO => {
                    let t0 = wall_ns();
                    let s = transport_shm::connect(&path).await?;
                    s.send(Frame::new(Bytes::copy_from_slice(&t0.to_le_bytes())).flags(F_STAMP))
                        .await?;
                    match s.recv().await {
                        Err(TransportError::Closed | TransportError::PeerDied) => {}
                        Err(e) => return Err(e.into()),
                        Ok(_) => return Err(BenchError::new("attach peer: unexpected frame")),
                    }
                }
                F_QUIT => {
                    t.close();
                    return Ok(());
                }
                other => {
                    return Err(BenchError::new(format!(
                        "attach peer: unexpected flags {other:#x}"
                    )));
                }
            }
        }
    })
}

/// The victim of the death measurement: connects, echoes every frame until it is killed (or
/// the session ends).
pub fn victim_child(a: &ChildArgs) -> BenchResult<()> {
    let path = rendezvous(a)?;
    runtime()?.block_on(async {
        let t = retry(CONNECT_TIMEOUT, || transport_shm::connect(&path)).await?;
        loop {
            match t.recv().await {
                Ok(f) => t.send(Frame::with_header(f.header, f.payload)).await?,
                Err(TransportError::Closed | TransportError::PeerDied) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    })
}
