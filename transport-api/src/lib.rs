//! # transport-api
//!
//! The contract shared by every backend of this workspace: the [`Transport`] trait, its
//! object-safe twin [`DynTransport`] (so `Box<dyn DynTransport>` works when the backend is chosen
//! at run time), [`Frame`]s, zero-copy send buffers ([`TxBuf`]), typed errors
//! ([`TransportError`]), [`Stats`], typed messages ([`TypedTransport`]) and the configuration
//! factory ([`config`]).
//!
//! Optional features: `toml` (`TransportConfig::from_toml_file`), `futures` (`FrameStream` and
//! `FrameSink`: any transport as a `futures` `Stream` and `Sink`), `metrics` (`export_stats`).
//!
//! Service code is written once, generic over `T: Transport`:
//!
//! ```
//! use transport_api::{Frame, Transport, TransportError};
//!
//! async fn echo<T: Transport>(t: &T) -> Result<(), TransportError> {
//!     loop {
//!         match t.recv().await {
//!             Ok(frame) => t.send(frame).await?,
//!             Err(TransportError::Closed | TransportError::PeerDied) => return Ok(()),
//!             Err(e) => return Err(e),
//!         }
//!     }
//! }
//! ```
//!
//! ## The contract
//! - Frames arrive in the order they were sent (per sending task when many send at once), each
//!   exactly once.
//! - A frame whose `send` returned `Ok` is delivered unless the receiver itself goes away.
//! - `send` waits for room (backpressure) and never fails because a queue is momentarily full;
//!   `try_send` hands the frame back with [`TrySendError::Full`].
//! - Dropping a `send`, `recv` or `alloc` future at any await point loses, duplicates and leaks
//!   nothing.
//! - All methods take `&self`; transports are `Send + Sync`.
//! - `close()` (or drop) is graceful: local waiters wake with `Closed`; the peer receives all
//!   frames sent before, then `Closed`.

#![forbid(unsafe_op_in_unsafe_fn)]

pub mod buf;
pub mod config;
#[cfg(feature = "toml")]
mod config_file;
mod dyn_transport;
pub mod error;
pub mod frame;
pub mod stats;
#[cfg(feature = "metrics")]
mod stats_export;
#[cfg(feature = "futures")]
mod stream_sink;
pub mod trace;
mod typed;

pub use buf::{LeaseOwner, LeaseParts, TxBuf};
pub use config::{BackendFactory, DynListener, Registry, TransportConfig};
pub use dyn_transport::{BoxTransport, DynTransport};
pub use error::{Refusal, Result, TransportError, TrySendError};
pub use frame::{Frame, FrameHeader, Payload};
pub use stats::{Counters, Stats};
pub use typed::{TypedTransport, decode};

#[cfg(feature = "metrics")]
pub use stats_export::export_stats;
#[cfg(feature = "futures")]
pub use stream_sink::{FrameSink, FrameStream, TransportHandle};

use std::future::Future;

/// One end of a bidirectional frame session with a single peer.
///
/// See the [crate documentation](crate) for the contract every implementation keeps.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use transport_api::{Frame, Transport, TransportError, TrySendError};
///
/// let config = transport_mem::MemConfig { capacity: 1, ..Default::default() };
/// let (a, b) = transport_mem::pair(config);
///
/// // A buffer placed where the transport can send it without a copy.
/// let mut buf = a.alloc(5).await?;
/// buf.copy_from_slice(b"first");
/// a.send(Frame::new(buf)).await?;
///
/// // No room for a second frame: `try_send` hands it back, `send` would wait.
/// let back = a.try_send(Frame::new("second")).unwrap_err();
/// assert!(matches!(back, TrySendError::Full(_)));
/// assert_eq!(b.recv().await?.bytes(), b"first");
/// a.try_send(back.into_frame().unwrap()).unwrap();
/// assert_eq!(b.try_recv()?.unwrap().bytes(), b"second");
///
/// a.close();
/// assert!(matches!(b.recv().await, Err(TransportError::Closed)));
/// # Ok::<(), transport_api::TransportError>(())
/// # }).unwrap();
/// ```
pub trait Transport: Send + Sync {
    /// Sends a frame, waiting (asynchronously) while the peer is slow and there is no room.
    ///
    /// Fails with [`TransportError::PayloadTooLarge`] (nothing sent) when the payload exceeds
    /// [`max_payload`](Self::max_payload), with `Closed`/`PeerDied` when the session is over.
    /// Cancel-safe: if the future is dropped, the frame was either sent whole or not at all.
    fn send(&self, frame: Frame) -> impl Future<Output = Result<()>> + Send;

    /// Sends a frame if there is room now; otherwise hands it back in [`TrySendError::Full`].
    fn try_send(&self, frame: Frame) -> Result<(), TrySendError>;

    /// Receives the next frame, waiting until one arrives or the session ends.
    ///
    /// After the peer closes (or dies), frames it sent before are still delivered, then
    /// `Closed` (or `PeerDied`). Cancel-safe: a dropped future consumes no frame.
    fn recv(&self) -> impl Future<Output = Result<Frame>> + Send;

    /// Receives a frame if one is ready: `Ok(None)` when none is.
    fn try_recv(&self) -> Result<Option<Frame>>;

    /// A writable buffer of exactly `len` bytes, placed where this transport can send it
    /// without a copy. Waits while the transport's buffer memory is exhausted.
    fn alloc(&self, len: usize) -> impl Future<Output = Result<TxBuf>> + Send;

    /// Closes the session gracefully: local waiters wake with `Closed`; the peer receives every
    /// frame sent before, then `Closed`. Idempotent.
    fn close(&self);

    /// The largest payload this transport accepts, in bytes.
    fn max_payload(&self) -> usize;

    /// Counters and current occupancy of this endpoint.
    fn stats(&self) -> Stats;

    /// Short name of the backend (`"mem"`, `"shm"`, …).
    fn backend(&self) -> &'static str;
}
