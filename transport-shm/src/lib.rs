//! Shared-memory transport backend: pair sessions between two processes, and a hub of one host
//! and many peers, behind [`transport_api::Transport`].
//!
//! # Examples
//!
//! ```
//! use transport_api::{Frame, Transport};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let (a, b) = transport_shm::pair(transport_shm::ShmConfig::default()).await?;
//! a.send(Frame::new(b"hello".to_vec())).await?;
//! assert_eq!(b.recv().await?.bytes(), b"hello");
//! # Ok::<(), transport_api::TransportError>(())
//! # }).unwrap();
//! ```
//!
//! Between processes, one side binds a [`ShmListener`] (or a [`HubHost`]) at a Unix socket path
//! and the other calls [`connect`]; [`spawn_peer`] hands a child process a ready session.
//!
//! # Layers
//!
//! Each layer imports only the ones below it (`docs/ARCHITECTURE.md` in this crate walks a
//! frame through them):
//!
//! 1. `core`: no I/O. The segment layout, the SPSC rings, the slot pool, the descriptor codec,
//!    the socket's wire bytes, and the pair protocol of one endpoint as a state machine that
//!    returns whom to wake. Written over atomic views of shared words; `core::sync` is the one
//!    place that picks loom's atomics for the loom models (`--cfg loom`).
//! 2. `os`: the mapping, the system calls (memfd, eventfd, pidfd, descriptor passing) and a
//!    mapped segment with its local layout; the raw slot pointers handed to payloads.
//! 3. `session`: [`ShmTransport`] over the endpoint: one spin-then-park waiter, liveness from
//!    the kernel, and [`ShmAllocator`].
//! 4. `rendezvous`: the handshake, [`ShmListener`] / [`connect`] / [`pair`], and
//!    [`spawn_peer`] / [`from_inherited`].
//! 5. `hub`: [`HubHost`], its region table, the region monitor and the `recv_any` scheduler.
//! 6. `factory`: [`ShmFactory`] and [`HubFactory`], the options of `shm://` and `hub://`.
//!
//! # Trust model
//!
//! The peer may write any byte of the segment at any time. Every control word is accessed
//! through atomics only, every value read from shared memory is validated before use, and a
//! violation surfaces as a typed error (`Corrupt`), never as a panic or an out-of-bounds
//! access. `docs/INVARIANTS.md` lists each hazard of shared-memory transports with the tests
//! that guard it; comments cite them as "INVARIANTS n".
//!
//! # Where `unsafe` is
//!
//! Every `unsafe` block that touches memory is in `os`: `os::mapping` (the atomic and byte views
//! of the mapping), `os::sys` (mapping a file, descriptors adopted from the kernel) and
//! `os::lease` (slot memory handed to received payloads and leased send buffers, through
//! `TxBuf::from_lease`, the documented hand-off of `transport-api`). Two other modules need the
//! keyword by their nature, each with a `SAFETY` note: `core::spin_lock` (the lock's
//! `UnsafeCell`) and `session::allocator` (`allocator_api2::Allocator` is an unsafe trait).

// A loom build compiles the core alone (for its models); much of it serves only the layers
// above, which that build leaves out.
#![cfg_attr(loom, allow(dead_code))]

mod core;
#[cfg(not(loom))]
mod factory;
#[cfg(not(loom))]
mod hub;
#[cfg(not(loom))]
mod os;
#[cfg(not(loom))]
mod rendezvous;
#[cfg(not(loom))]
mod session;

pub use crate::core::layout::{
    Direction, Geometry, LayoutError, MAX_CLASSES, MAX_RING_CAPACITY, MAX_SEGMENT_LEN,
    MAX_SLOT_COUNT, MAX_SLOT_SIZE, PAYLOAD_ALIGN, SLOT_ALIGN, Side, SlotClass,
};
#[cfg(not(loom))]
pub use factory::{HubFactory, ShmFactory};
#[cfg(not(loom))]
pub use hub::{HubConfig, HubHost, HubPeer, MAX_HUB_PEERS, PeerId, PeerInfo, PeerState};
#[cfg(not(loom))]
pub use os::mapping::{MappingError, SharedBytes};
#[cfg(not(loom))]
pub use rendezvous::{
    AccessPolicy, INHERIT_ENV, PeerCheck, PeerCredentials, ShmConfig, ShmListener, connect,
    connect_config, connect_with, from_inherited, pair, spawn_peer,
};

#[cfg(not(loom))]
pub mod hub_admin {
    //! Inspection of a running hub through its admin socket (`PATH.admin`): [`query`] returns
    //! a [`HubReport`] of its peers, for processes of the host's uid only. `transport-inspect
    //! hub PATH` prints it.
    pub use crate::hub::admin::{
        ADMIN_MAGIC, AdminAnswer, AdminError, HubReport, MAX_ANSWER, PeerReport, REQ_REPORT,
        admin_path, query,
    };
}
#[cfg(not(loom))]
pub use session::ShmTransport;
#[cfg(not(loom))]
pub use session::allocator::ShmAllocator;

/// Internals for tests that play a hostile peer (feature `test-access`): the segment behind
/// [`ShmTransport::segment`] and the layout that places every word of it. Writing through these
/// breaks the protocol on purpose.
#[cfg(all(feature = "test-access", not(loom)))]
pub mod testing {
    pub use crate::core::layout::{ClassLayout, DirLayout, Layout};
    pub use crate::os::mapping::{Mapping, MappingError, SharedWords};
    pub use crate::os::segment::{Segment, SideState};
}

#[cfg(all(feature = "conformance", not(loom)))]
pub mod conformance;
