//! Shared-memory transport backend: the I/O-free core and the OS layer.
//!
//! Layers (see `ARCHITECTURE.md`, "Shared-memory backend"):
//!
//! * **Core, no I/O** — [`layout`] (geometry, header, offsets, validated once), [`ring`] (SPSC
//!   rings over atomic views, parking handshake), [`descriptor`] (64-byte ring entries, checked
//!   decoding), [`pool`] (the sender-private slot allocator and the receiver's held set). These
//!   are written over [`AtomicU64`](std::sync::atomic::AtomicU64) slices and are model-checked
//!   with loom (`--cfg loom`).
//! * **Hub** — [`hub`]: one host, many peers, one segment of per-peer regions, each laid out
//!   and run exactly like a pair segment.
//! * **OS** — [`os`] (memfd, mmap, eventfd, pidfd, `SCM_RIGHTS`), [`mapping`] (the only `unsafe`
//!   code: checked atomic and byte views of the mapping) and [`segment`] (a mapped segment with
//!   its local layout, ring and slot accessors).
//!
//! Trust model: the peer may write any byte of the segment at any time. Every control word is
//! accessed through atomics only, every value read from shared memory is validated before use,
//! and a violation surfaces as a typed error, never as a panic or an out-of-bounds access.

#[cfg(not(loom))]
mod access;
#[cfg(not(loom))]
pub mod allocator;
pub mod descriptor;
#[cfg(not(loom))]
pub mod hub;
#[cfg(not(loom))]
pub mod hub_admin;
pub mod layout;
#[cfg(not(loom))]
mod listener;
#[cfg(not(loom))]
pub mod mapping;
#[cfg(not(loom))]
pub mod os;
pub mod pool;
pub mod ring;
#[cfg(not(loom))]
pub mod segment;
#[cfg(not(loom))]
mod session;
mod spin_lock;
mod sync;

#[cfg(all(test, not(loom)))]
mod hostile_tests;
#[cfg(all(test, loom))]
mod loom_tests;

#[cfg(not(loom))]
pub use access::{AccessPolicy, PeerCheck, PeerCredentials};
#[cfg(not(loom))]
pub use allocator::ShmAllocator;
pub use descriptor::{DescPayload, Descriptor, DescriptorError, INLINE_HEAD, INLINE_MAX, SlotRef};
#[cfg(not(loom))]
pub use hub::{HubConfig, HubFactory, HubHost, HubPeer, PeerId, PeerInfo, PeerState};
pub use layout::{Direction, Geometry, Layout, LayoutError, Side, SlotClass};
#[cfg(not(loom))]
pub use listener::{
    INHERIT_ENV, ShmConfig, ShmFactory, ShmListener, connect, connect_with, from_inherited, pair,
    spawn_peer,
};
#[cfg(not(loom))]
pub use os::OsError;
pub use pool::{HeldSet, Occupancy, PoolError, SenderPool, SlotState};
pub use ring::{Consumer, Producer, PushError, RingError, StampProbe};
#[cfg(not(loom))]
pub use segment::{Segment, SegmentError, SideState};
#[cfg(not(loom))]
pub use session::ShmTransport;

#[cfg(all(feature = "conformance", not(loom)))]
pub mod conformance;
