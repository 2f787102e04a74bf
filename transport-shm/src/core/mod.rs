//! The core: everything that touches shared memory without doing I/O.
//!
//! Each module here is written over atomic views of shared words ([`sync`] is the one place
//! that chooses `std` or loom atomics), so the loom models run exactly this code.
pub(crate) mod codec;
pub(crate) mod endpoint;
// `Layout` and its direction and class parts are public with feature `test-access` (the
// module `testing`) and crate-internal without it.
#[cfg_attr(not(feature = "test-access"), allow(unreachable_pub))]
pub(crate) mod layout;
pub(crate) mod pool;
pub(crate) mod ring;
pub(crate) mod spin_lock;
pub(crate) mod sync;
pub(crate) mod wire;

#[cfg(all(test, loom))]
mod loom_tests;
