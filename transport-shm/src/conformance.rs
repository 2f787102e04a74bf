//! This backend described for the conformance suite (feature `conformance`).

use crate::core::codec::{INLINE_HEAD, INLINE_MAX};
use crate::core::layout::{Geometry, SlotClass};
use crate::hub::{HubConfig, HubHost, HubPeer};
use crate::{ShmConfig, ShmListener, ShmTransport};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use transport_api::{Frame, Result, Stats, Transport, TrySendError, TxBuf};
use transport_conformance::{Backend, Capabilities, PairOptions};

/// The `shm` backend under test.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShmBackend;

/// Geometry of a [`PairOptions::SMALL`] session: few descriptors and few slots per class.
pub fn small_geometry() -> Geometry {
    Geometry {
        ring_capacity: 8,
        classes: vec![
            SlotClass {
                slot_size: 256,
                slot_count: 8,
            },
            SlotClass {
                slot_size: 4096,
                slot_count: 4,
            },
            SlotClass {
                slot_size: 64 << 10,
                slot_count: 2,
            },
            SlotClass {
                slot_size: 1 << 20,
                slot_count: 1,
            },
        ],
    }
}

/// A socket path unique to this process and call (parallel tests never share one).
fn socket_path(kind: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "transport-{kind}-conformance-{}-{}.sock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

fn config(opts: PairOptions) -> ShmConfig {
    if opts.small {
        ShmConfig {
            geometry: small_geometry(),
            ..ShmConfig::default()
        }
    } else {
        ShmConfig::default()
    }
}

impl Backend for ShmBackend {
    type T = ShmTransport;
    type Listener = ShmListener;

    fn name(&self) -> &'static str {
        "shm"
    }

    fn capabilities(&self) -> Capabilities {
        let g = Geometry::default();
        let mut boundaries = vec![INLINE_HEAD, INLINE_MAX];
        boundaries.extend(g.classes.iter().map(|c| c.slot_size as usize));
        let small = small_geometry();
        Capabilities {
            boundaries,
            zero_copy: true,
            // Small payloads travel inline in the ring (`alloc` hands out heap buffers for them).
            copies_up_to: INLINE_MAX,
            cross_process: true,
            // Each endpoint holds at most its own pool (every slot of its direction) plus the
            // peer's slots it received; both are bounded by one direction's payload memory.
            small_memory_bound: 2 * small
                .classes
                .iter()
                .map(|c| u64::from(c.slot_size) * u64::from(c.slot_count))
                .sum::<u64>(),
            liveness: None,
        }
    }

    async fn pair(&self, opts: PairOptions) -> Result<(ShmTransport, ShmTransport)> {
        crate::pair(config(opts)).await
    }

    async fn listen(&self, opts: PairOptions) -> Result<(ShmListener, String)> {
        let path = socket_path("shm");
        let l = ShmListener::bind(&path, config(opts))?;
        Ok((l, path.display().to_string()))
    }

    async fn accept(&self, listener: &ShmListener) -> Result<ShmTransport> {
        listener.accept().await
    }

    async fn connect(&self, address: &str) -> Result<ShmTransport> {
        crate::connect(address).await
    }
}

/// The `hub` backend under test: every session is a hub host ↔ hub peer session.
///
/// `pair` starts a small hub (two regions) and connects one in-process peer; `listen` starts a
/// hub with a **single** region, so every cross-process scenario that accepts again (reconnect
/// after death) also proves that a dead peer's region is reclaimed and reused.
#[derive(Clone, Copy, Debug, Default)]
pub struct HubBackend;

/// One end of a hub session as the suite sees it.
pub enum HubEnd {
    /// The host side (owning handle; the hub is kept alive with it when it was made by `pair`).
    Host {
        /// The session; dropping it closes the session.
        peer: HubPeer,
        /// The hub of an in-process pair (dropped after the session: fields drop in order).
        hub: Option<Arc<HubHost>>,
    },
    /// The peer side: an ordinary pair side B over the peer's region.
    Peer(ShmTransport),
}

impl HubEnd {
    fn t(&self) -> &dyn transport_api::DynTransport {
        match self {
            HubEnd::Host { peer, .. } => peer,
            HubEnd::Peer(t) => t,
        }
    }
}

impl Transport for HubEnd {
    async fn send(&self, frame: Frame) -> Result<()> {
        match self {
            HubEnd::Host { peer, .. } => peer.send(frame).await,
            HubEnd::Peer(t) => t.send(frame).await,
        }
    }
    fn try_send(&self, frame: Frame) -> Result<(), TrySendError> {
        self.t().dyn_try_send(frame)
    }
    async fn recv(&self) -> Result<Frame> {
        match self {
            HubEnd::Host { peer, .. } => peer.recv().await,
            HubEnd::Peer(t) => t.recv().await,
        }
    }
    fn try_recv(&self) -> Result<Option<Frame>> {
        self.t().dyn_try_recv()
    }
    async fn alloc(&self, len: usize) -> Result<TxBuf> {
        match self {
            HubEnd::Host { peer, .. } => peer.alloc(len).await,
            HubEnd::Peer(t) => t.alloc(len).await,
        }
    }
    fn close(&self) {
        self.t().dyn_close()
    }
    fn max_payload(&self) -> usize {
        self.t().dyn_max_payload()
    }
    fn stats(&self) -> Stats {
        self.t().dyn_stats()
    }
    fn backend(&self) -> &'static str {
        "hub"
    }
}

fn hub_config(opts: PairOptions, max_peers: usize) -> HubConfig {
    let c = config(opts);
    HubConfig {
        max_peers,
        geometry: c.geometry,
        spin: c.spin,
        ..HubConfig::default()
    }
}

impl Backend for HubBackend {
    type T = HubEnd;
    type Listener = HubHost;

    fn name(&self) -> &'static str {
        "hub"
    }

    fn capabilities(&self) -> Capabilities {
        ShmBackend.capabilities()
    }

    async fn pair(&self, opts: PairOptions) -> Result<(HubEnd, HubEnd)> {
        let path = socket_path("hub");
        let hub = Arc::new(HubHost::bind(&path, hub_config(opts, 2))?);
        let (host, peer) = tokio::try_join!(hub.accept_owned(), crate::connect(&path))?;
        Ok((
            HubEnd::Host {
                peer: host.1,
                hub: Some(hub),
            },
            HubEnd::Peer(peer),
        ))
    }

    async fn listen(&self, opts: PairOptions) -> Result<(HubHost, String)> {
        let path = socket_path("hub");
        let hub = HubHost::bind(&path, hub_config(opts, 1))?;
        Ok((hub, path.display().to_string()))
    }

    async fn accept(&self, listener: &HubHost) -> Result<HubEnd> {
        let (_, peer) = listener.accept_owned().await?;
        Ok(HubEnd::Host { peer, hub: None })
    }

    async fn connect(&self, address: &str) -> Result<HubEnd> {
        Ok(HubEnd::Peer(crate::connect(address).await?))
    }
}
