//! # transport-net
//!
//! Two [`Transport`](transport_api::Transport) backends on tokio stream sockets, with the same
//! contract as `mem` and `shm`: `tcp://HOST:PORT` (across machines) and `unix:///path/to.sock`
//! (between processes of one machine, no shared memory). Both are registered in the `transport`
//! facade's registry as [`TcpFactory`] and [`UnixFactory`].
//!
//! A `unix://` listener admits only processes its [`NetConfig::access`] policy allows (by
//! default its own effective uid, read with `SO_PEERCRED` before any byte is exchanged), and
//! creates its socket file with that policy's mode (`0600` by default); the rules are those of
//! the `shm` backend (crate `transport-access`). `tcp://` has no such check and encrypts
//! nothing.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use transport_api::{Frame, Transport, TransportError};
//! use transport_net::NetConfig;
//!
//! let (a, b) = transport_net::unix_pair(&NetConfig::default()).await?;
//! a.send(Frame::new("hello").msg_id(1)).await?;
//! a.close();
//! assert_eq!(b.recv().await?.header.msg_id, 1);
//! assert!(matches!(b.recv().await, Err(TransportError::Closed)));
//! # Ok::<(), TransportError>(())
//! # }).unwrap();
//! ```
//!
//! ## Wire format (version 1)
//!
//! All integers are little-endian. Each side first sends a 24-byte **hello**:
//!
//! | bytes  | field          | meaning                                                        |
//! |--------|----------------|----------------------------------------------------------------|
//! | 0..8   | magic          | `TRNSPNET`                                                     |
//! | 8..10  | version        | 1                                                              |
//! | 10..12 | reserved       | 0                                                              |
//! | 12..16 | `max_payload`  | largest payload this side accepts (1..=64 MiB)                  |
//! | 16..20 | `keepalive_ms` | this side declares the peer dead after this much silence        |
//! | 20..24 | `window`       | frame bytes the peer may have unconsumed at this side           |
//!
//! A hello with another magic, version or a field out of range, or one cut short, fails the
//! handshake with a `Corrupt` error naming the field; no hello within `handshake_ms` is a
//! `TimedOut` `Io` error. The session's `max_payload` is the smaller of the two.
//!
//! Then messages follow, each starting with a 32-bit word:
//!
//! - **frame**: the word is the payload length `n` (at most the agreed `max_payload`), then
//!   the 32-byte [`FrameHeader`](transport_api::FrameHeader) encoding, then `n` payload bytes;
//! - `0xFFFFFFF0` **keep-alive** (nothing follows), sent when a side has written nothing for
//!   a quarter of the peer's `keepalive_ms`;
//! - `0xFFFFFFF1` **credit**, then a u64: the total frame bytes (payload + 36 per frame) this
//!   side has consumed; the peer may have at most `window` bytes beyond that in flight (a
//!   single frame larger than the window goes alone);
//! - `0xFFFFFFF2` **close**: the sender has sent its last frame (graceful close);
//! - `0xFFFFFFF3` **want**: a send waits for credit; the receiver grants what it consumed.
//!
//! Any other word at or above `0xFFFFFF00`, a length above `max_payload` (refused from the
//! word alone, before any memory is reserved), credit for bytes never sent, or frames beyond
//! the window end the session with `Corrupt`. End of stream or a reset without a close is
//! `PeerDied`, after every frame received whole was delivered; so is silence longer than
//! `keepalive_ms` (the kernel's `TCP_USER_TIMEOUT` and TCP keep-alive are set to match).
//!
//! ## Design
//!
//! A `send` waits for credit, then commits its whole frame to the session's output queue. While
//! other sends are in progress, the first send to commit lets the tasks that are ready to run
//! commit theirs (one turn of the runtime's queue, no timer), then writes the queue in one
//! vectored write; a task sending alone writes at once, and takes the turn only once every 32
//! writes, to find tasks that send in loops of their own. The session's writer task writes
//! what a full socket left. Frames sent by many tasks at once thus share few writes (rows
//! `tcp-4tx` and `unix-net-4tx` in transport-bench: 4 tasks streaming 64-byte frames, about 3x
//! the frames per second of a hand-written `LengthDelimitedCodec` shared behind a mutex over
//! TCP, 2x over a Unix socket).
//! `send` returns `Ok` once its frame is in the kernel, so a process killed after a send
//! returned loses nothing. A `send` dropped before that takes its frame back if none of it was
//! written, and otherwise lets it go out whole: the wire never carries part of a frame. A
//! reader task reads in large chunks and hands payloads out as `Bytes` slices of its buffer
//! (no copy; payloads of at most 64 bytes are copied into the frame itself, no allocation;
//! payloads of 32 KiB or more are read into a buffer of their own, reused once dropped).
//! `close()` queues the close message after every frame already committed and writes it at
//! once if the socket has room; on a multi-thread runtime or outside any runtime it waits (at
//! most `keepalive_ms`, without holding up other tasks) until the close is in the kernel and,
//! over TCP, until the peer answers it with its end of stream, so a process may exit right
//! after it. A write that fails ends the output only: how the session ended is decided by the
//! reader, so a peer that closed and went away is `Closed` once all it sent was delivered.
//! Nothing here uses `unsafe`.
//!
//! The streams are plaintext: use them on trusted networks, or tunnel them.

#![forbid(unsafe_code)]

mod config;
#[cfg(feature = "conformance")]
pub mod conformance;
mod factory;
mod gauges;
mod listener;
mod out;
mod reader;
mod rxpool;
mod session;
mod shared;
mod sock;
pub mod wire;
mod writer;

pub use config::NetConfig;
pub use factory::{TcpFactory, UnixFactory};
pub use listener::{NetListener, connect_tcp, connect_unix, tcp_pair, unix_pair};
pub use session::NetTransport;
