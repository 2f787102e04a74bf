//! The operating system layer: the mapping with every memory `unsafe`, the system calls, and a
//! mapped segment with its local layout.
pub(crate) mod lease;
pub(crate) mod mapping;
// `Segment` and `SideState` are public with feature `test-access` (the module `testing`) and
// crate-internal without it.
#[cfg_attr(not(feature = "test-access"), allow(unreachable_pub))]
pub(crate) mod segment;
pub(crate) mod sys;
