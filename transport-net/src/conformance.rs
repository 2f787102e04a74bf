//! The `tcp` and `unix` backends described for the conformance suite (feature `conformance`).

use crate::{NetConfig, NetListener, NetTransport};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use transport_api::Result;
use transport_conformance::{Backend, Capabilities, PairOptions};

/// Keep-alive timeout of cross-process sessions under test: short, so that the silent-peer
/// scenario is quick, and long enough that a loaded machine does not starve a live peer's
/// keep-alives past it. In-process pairs keep the default.
pub const TEST_KEEPALIVE: Duration = Duration::from_secs(2);

/// The configuration of a pair made with `opts`: small windows and payloads for
/// [`PairOptions::SMALL`].
pub fn config(opts: PairOptions) -> NetConfig {
    let base = NetConfig::default();
    if opts.small {
        NetConfig {
            max_payload: 16 << 10,
            window: 16 << 10,
            ..base
        }
    } else {
        base
    }
}

/// The configuration of a cross-process endpoint: as [`config`], with [`TEST_KEEPALIVE`].
pub fn xproc_config(opts: PairOptions) -> NetConfig {
    NetConfig {
        keepalive: TEST_KEEPALIVE,
        ..config(opts)
    }
}

fn socket_path() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "transport-net-conformance-{}-{}.sock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

fn capabilities() -> Capabilities {
    let small = config(PairOptions::SMALL);
    // One endpoint's queue and the peer's received frames are each bounded by the window or
    // one frame, whichever is larger.
    let per_side = u64::from(small.window).max(crate::wire::cost(small.max_payload));
    Capabilities {
        boundaries: vec![transport_api::TxBuf::INLINE_CAPACITY, 64 << 10],
        zero_copy: true,
        copies_up_to: 0,
        cross_process: true,
        small_memory_bound: 2 * per_side,
        liveness: Some(TEST_KEEPALIVE),
    }
}

/// The `tcp` backend under test (loopback, port 0).
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpBackend;

impl Backend for TcpBackend {
    type T = NetTransport;
    type Listener = NetListener;

    fn name(&self) -> &'static str {
        "tcp"
    }

    fn capabilities(&self) -> Capabilities {
        capabilities()
    }
    async fn pair(&self, opts: PairOptions) -> Result<(NetTransport, NetTransport)> {
        crate::tcp_pair(&config(opts)).await
    }
    async fn listen(&self, opts: PairOptions) -> Result<(NetListener, String)> {
        let l = NetListener::bind_tcp("127.0.0.1:0", xproc_config(opts)).await?;
        let a = l.local_address();
        Ok((l, a))
    }
    async fn accept(&self, listener: &NetListener) -> Result<NetTransport> {
        listener.accept().await
    }
    async fn connect(&self, address: &str) -> Result<NetTransport> {
        crate::connect_tcp(address, &xproc_config(PairOptions::DEFAULT)).await
    }
}

/// The `unix` backend under test (socket pairs in process, a temporary path across).
#[derive(Clone, Copy, Debug, Default)]
pub struct UnixBackend;

impl Backend for UnixBackend {
    type T = NetTransport;
    type Listener = NetListener;

    fn name(&self) -> &'static str {
        "unix"
    }

    fn capabilities(&self) -> Capabilities {
        capabilities()
    }
    async fn pair(&self, opts: PairOptions) -> Result<(NetTransport, NetTransport)> {
        crate::unix_pair(&config(opts)).await
    }
    async fn listen(&self, opts: PairOptions) -> Result<(NetListener, String)> {
        let path = socket_path();
        let l = NetListener::bind_unix(&path, xproc_config(opts))?;
        Ok((l, path.display().to_string()))
    }
    async fn accept(&self, listener: &NetListener) -> Result<NetTransport> {
        listener.accept().await
    }
    async fn connect(&self, address: &str) -> Result<NetTransport> {
        crate::connect_unix(address, &xproc_config(PairOptions::DEFAULT)).await
    }
}
