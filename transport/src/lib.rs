//! # transport
//!
//! One dependency for applications: the whole [`transport_api`] surface (the [`Transport`]
//! trait, frames, errors, stats, configuration) re-exported at the root, plus [`registry()`],
//! which knows every backend compiled into this build. Each backend is a cargo feature, on by
//! default:
//!
//! | feature | URL forms | crate |
//! | --- | --- | --- |
//! | `mem` | `mem://NAME` (in-process) | [`mem`] (`transport-mem`) |
//! | `shm` | `shm:///PATH`, `hub:///PATH` | [`shm`] (`transport-shm`) |
//!
//! Optional features: `toml` (default; [`TransportConfig::from_toml_file`]), `futures`
//! ([`FrameStream`](transport_api::FrameStream) and [`FrameSink`](transport_api::FrameSink)),
//! `metrics` ([`export_stats`](transport_api::export_stats)).
//!
//! Service code names no backend; the configuration does:
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use transport::{Frame, Transport, TransportConfig};
//!
//! let config: TransportConfig = "mem://orders".parse()?;
//! let listener = transport::registry().listen(&config).await?;
//! let client = transport::registry().connect(&listener.connect_config()).await?;
//! let server = listener.accept().await?;
//!
//! client.send(Frame::new("order #1").msg_id(1)).await?;
//! let frame = server.recv().await?;
//! assert_eq!((frame.header.msg_id, frame.bytes()), (1, &b"order #1"[..]));
//! # Ok::<(), transport::TransportError>(())
//! # }).unwrap();
//! ```
//!
//! Across processes, only the URL changes: a listener at `shm:///run/app.sock` (one peer per
//! session) or `hub:///run/app.sock?max_peers=64` (one host, many peers) and a peer connecting to
//! the same URL:
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use transport::{Frame, Transport, TransportConfig};
//!
//! let path = std::env::temp_dir().join(format!("facade-doc-{}.sock", std::process::id()));
//! let config: TransportConfig = format!("hub://{}?max_peers=4", path.display()).parse()?;
//! let registry = transport::registry();
//! let host = registry.listen(&config).await?;
//! let peer_config = host.connect_config();
//! let (peer, session) = tokio::join!(registry.connect(&peer_config), host.accept());
//! let (peer, session) = (peer?, session?);
//! peer.send(Frame::new("hello hub")).await?;
//! assert_eq!(session.recv().await?.bytes(), b"hello hub");
//! assert_eq!(session.backend(), "hub");
//! # Ok::<(), transport::TransportError>(())
//! # }).unwrap();
//! ```

pub use transport_api::*;

/// The in-process backend (feature `mem`).
#[cfg(feature = "mem")]
pub use transport_mem as mem;

/// The shared-memory backends, pairs and the hub (feature `shm`).
#[cfg(feature = "shm")]
pub use transport_shm as shm;

// net: `#[cfg(feature = "net")] pub use transport_net as net;` goes here.

/// A [`Registry`] with every backend compiled into this build, by name: `mem` (feature `mem`),
/// `shm` and `hub` (feature `shm`).
///
/// # Examples
///
/// ```
/// let registry = transport::registry();
/// for name in ["mem", "shm", "hub"] {
///     assert!(registry.backends().any(|b| b == name), "{name} missing from {registry:?}");
/// }
/// ```
pub fn registry() -> Registry {
    #[allow(unused_mut)]
    let mut registry = Registry::new();
    #[cfg(feature = "mem")]
    registry.register(transport_mem::MemFactory);
    #[cfg(feature = "shm")]
    {
        registry.register(transport_shm::ShmFactory);
        registry.register(transport_shm::HubFactory);
    }
    // net: `registry.register(transport_net::TcpFactory)` and the unix factory go here.
    registry
}
