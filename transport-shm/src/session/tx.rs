//! The transmit half of a session: the endpoint's send state behind its lock, and the owner of
//! buffers leased from its slots.

use super::link::Link;
use crate::core::codec::SlotRef;
use crate::core::endpoint::tx::TxState;
use crate::core::spin_lock::{SpinGuard, SpinMutex};
use crate::os::mapping::SharedWords;
use std::sync::Arc;
use tokio::sync::Notify;
use transport_api::{LeaseOwner, Result};

/// Transmit side; also the owner of leased buffers.
pub(crate) struct TxShared {
    /// Keeps the mapping (and our end of the socket) alive while leased buffers exist.
    pub(crate) link: Arc<Link>,
    pub(crate) state: SpinMutex<TxState<SharedWords>>,
    /// Tasks waiting for a slot; woken when a leased buffer is dropped unsent.
    pub(crate) slot_freed: Notify,
}

impl TxShared {
    /// Takes the transmit lock (never held across an `.await`).
    #[inline]
    pub(crate) fn lock(&self) -> SpinGuard<'_, TxState<SharedWords>> {
        self.state.lock()
    }

    /// Takes returned slots back (see [`TxState::drain_completions`]) and, when any came back,
    /// wakes tasks waiting for a slot: whoever drains, a waiting `alloc` of any class must
    /// re-check, or it could sleep although its slot is free. Errors mean the peer forged an
    /// entry.
    pub(crate) fn drain(&self, st: &mut TxState<SharedWords>) -> Result<usize> {
        let n = st.drain_completions()?;
        if n > 0 {
            self.slot_freed.notify_waiters();
        }
        Ok(n)
    }
}

impl LeaseOwner for TxShared {
    fn release(&self, token: u64) {
        let slot = SlotRef::from_entry(token);
        if let Err(e) = self.lock().pool.free_leased(slot) {
            // Only reachable through a bug here (tokens are ours), never through the peer.
            tracing::error!(backend = "shm", ?slot, error = %e, "releasing an unsent buffer failed");
        }
        self.slot_freed.notify_waiters();
    }
}
