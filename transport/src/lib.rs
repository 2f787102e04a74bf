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
//! | `net` | `tcp://HOST:PORT`, `unix:///PATH` | [`net`] (`transport-net`) |
//!
//! Optional features: `toml` (default; [`TransportConfig::from_toml_file`]), `futures`
//! (`FrameStream` and `FrameSink`: any transport as a `futures` `Stream` and `Sink`), `metrics`
//! (`export_stats`: a session's stats through the `metrics` crate).
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
//!
//! ## Shared memory without the registry
//!
//! The [`shm`] backend's own entry points, for code that wants its specific types (feature
//! `shm`).
//!
//! Two connected endpoints over one segment in this process, e.g. to hand one to a thread with
//! its own runtime ([`shm::pair`]):
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use transport::{Frame, Transport};
//! use transport::shm::{ShmConfig, pair};
//!
//! let (a, b) = pair(ShmConfig::default()).await?;
//! let mut buf = a.alloc(4096).await?; // a slot of the segment: sent without a copy
//! buf.fill(7);
//! a.send(Frame::new(buf)).await?;
//! let frame = b.recv().await?;
//! assert!(frame.bytes().len() == 4096 && frame.bytes().iter().all(|&x| x == 7));
//! drop(frame); // gives the slot back
//! # Ok::<(), transport::TransportError>(())
//! # }).unwrap();
//! ```
//!
//! A listener at a socket path, one segment per accepted peer ([`shm::ShmListener`],
//! [`shm::connect`]):
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use transport::{Frame, Transport};
//! use transport::shm::{ShmConfig, ShmListener, connect};
//!
//! let path = std::env::temp_dir().join(format!("listener-doc-{}.sock", std::process::id()));
//! let listener = ShmListener::bind(&path, ShmConfig::default())?;
//! let (server, client) = tokio::join!(listener.accept(), connect(&path));
//! let (server, client) = (server?, client?);
//! client.send(Frame::new("over shared memory")).await?;
//! assert_eq!(server.recv().await?.bytes(), b"over shared memory");
//! drop(listener); // removes the socket file; running sessions go on
//! assert!(!path.exists());
//! server.send(Frame::new("still here")).await?;
//! assert_eq!(client.recv().await?.bytes(), b"still here");
//! # Ok::<(), transport::TransportError>(())
//! # }).unwrap();
//! ```
//!
//! A hub: one host, many peers, frames from any peer without polling ([`shm::HubHost`]):
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use transport::{Frame, Transport};
//! use transport::shm::{HubConfig, HubHost, PeerState, connect};
//!
//! let path = std::env::temp_dir().join(format!("hub-doc-{}.sock", std::process::id()));
//! let hub = HubHost::bind(&path, HubConfig { max_peers: 4, ..HubConfig::default() })?;
//! let mut peers = Vec::new();
//! for name in ["left", "right"] {
//!     let (accepted, peer) = tokio::join!(hub.accept(), connect(&path));
//!     let ((id, _session), peer) = (accepted?, peer?);
//!     peer.send(Frame::new(name)).await?;
//!     peers.push((id, peer));
//! }
//! for _ in 0..2 {
//!     let (from, frame) = hub.recv_any().await?;
//!     let (_, peer) = peers.iter().find(|(id, _)| *id == from).unwrap();
//!     hub.send_to(from, Frame::new(frame.into_bytes())).await?; // answer the sender only
//!     let answer = peer.recv().await?;
//!     assert!(answer.bytes() == b"left" || answer.bytes() == b"right");
//! }
//! assert!(hub.peers().iter().all(|p| p.state == PeerState::Attached));
//! # Ok::<(), transport::TransportError>(())
//! # }).unwrap();
//! ```
//!
//! A child process started with a ready session, no socket path to agree on
//! ([`shm::spawn_peer`] in the parent, [`shm::from_inherited`] in the child; here the program
//! starts itself):
//!
//! ```standalone_crate
//! use transport::{Frame, Transport, TransportError};
//! use transport::shm::{INHERIT_ENV, ShmConfig, from_inherited, spawn_peer};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! if std::env::var_os(INHERIT_ENV).is_some() {
//!     // The child: echoes every frame until the parent closes the session.
//!     let session = from_inherited().await?;
//!     loop {
//!         match session.recv().await {
//!             Ok(frame) => session.send(frame).await?,
//!             Err(TransportError::Closed) => return Ok(()),
//!             Err(e) => return Err(e.into()),
//!         }
//!     }
//! }
//! let mut command = std::process::Command::new(std::env::current_exe()?);
//! let (mut child, session) = spawn_peer(&mut command, ShmConfig::default()).await?;
//! session.send(Frame::new("ping")).await?;
//! assert_eq!(session.recv().await?.bytes(), b"ping");
//! session.close();
//! assert!(child.wait()?.success());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })
//! # }
//! ```

pub use transport_api::*;

/// The in-process backend (feature `mem`).
#[cfg(feature = "mem")]
pub use transport_mem as mem;

/// The shared-memory backends, pairs and the hub (feature `shm`).
#[cfg(feature = "shm")]
pub use transport_shm as shm;

/// The network backends, `tcp://` and `unix://` (feature `net`).
#[cfg(feature = "net")]
pub use transport_net as net;

/// A [`Registry`] with every backend compiled into this build, by name: `mem` (feature `mem`),
/// `shm` and `hub` (feature `shm`), `tcp` and `unix` (feature `net`).
///
/// # Examples
///
/// ```
/// let registry = transport::registry();
/// for name in ["mem", "shm", "hub", "tcp", "unix"] {
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
    #[cfg(feature = "net")]
    {
        registry.register(transport_net::TcpFactory);
        registry.register(transport_net::UnixFactory);
    }
    registry
}
