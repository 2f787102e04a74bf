//! Rendezvous: how two processes come to share a session.
//!
//! * [`handshake`]: the exchange over the session socket (the bytes are in
//!   [`crate::core::wire`]): the listener sends the segment and two doorbells, the connector
//!   validates and maps them and answers ready; the socket then stays open as the liveness
//!   channel;
//! * [`listener`]: [`ShmListener`] at a Unix socket path, [`connect`], and [`pair`] in one
//!   process;
//! * [`inherit`]: [`spawn_peer`] and [`from_inherited`], a child that inherits a ready socket;
//! * who may connect ([`AccessPolicy`], from `SO_PEERCRED`) and how the socket file is
//!   created: crate `transport-access`, shared with `unix://`.
//!
//! Configuration parsing (`shm://PATH?ring=…`) is in `crate::factory`.

mod config;
mod handshake;
mod inherit;
mod listener;

pub use config::ShmConfig;
pub(crate) use handshake::{refuse, serve_segment};
pub use inherit::{INHERIT_ENV, from_inherited, spawn_peer};
pub use listener::{ShmListener, connect, connect_config, connect_with, pair};
pub use transport_access::{AccessPolicy, PeerCheck, PeerCredentials};
