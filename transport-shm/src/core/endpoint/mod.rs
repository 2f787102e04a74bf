//! The pair protocol of one endpoint as a state machine without I/O.
//!
//! [`tx`] holds the send half (descriptor producer, completion consumer, the sender-private slot
//! pool), [`rx`] the receive half (descriptor consumer, held set, completion producer) and
//! [`gate`] the endpoint's status flags and the errors they mean. Every operation that can
//! free room or publish data for the peer *returns* whether the peer sleeps and must be woken;
//! ringing its doorbell (a system call) is the caller's business (see `session`), done after
//! the half's lock is released.

pub(crate) mod gate;
pub(crate) mod rx;
pub(crate) mod tx;

use std::sync::atomic::{AtomicU64, Ordering};

/// Adds `n` to a counter whose writers are serialised by a lock they all hold: a plain load and
/// store instead of a locked read-modify-write, which is most of the cost of counting on the hot
/// path. Readers (`stats`) see the value as of some recent update.
#[inline]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}
