//! The atomics every shared-memory algorithm of this crate is written over.
//!
//! Under `--cfg loom` these are loom's model-checked atomics, so the loom tests exercise exactly
//! the ring code that runs over the real mapping; otherwise they are `std`'s.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
