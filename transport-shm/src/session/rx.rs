//! The receive half of a session: the endpoint's receive state behind its lock, the lock-free
//! probe, and the return of slots whose payloads were dropped.

use super::link::Link;
use crate::core::codec::SlotRef;
use crate::core::endpoint::rx::{RxProbe, RxState};
use crate::core::spin_lock::{SpinGuard, SpinMutex};
use crate::os::lease::SlotReturn;
use crate::os::mapping::SharedWords;
use std::sync::Arc;

/// Receive side.
pub(crate) struct RxShared {
    pub(crate) link: Arc<Link>,
    pub(crate) state: SpinMutex<RxState<SharedWords>>,
    /// Polls the receive ring without the lock (see [`RxProbe::maybe_ready`]).
    pub(crate) probe: RxProbe<SharedWords>,
}

impl RxShared {
    /// Takes the receive lock (never held across an `.await`).
    #[inline]
    pub(crate) fn lock(&self) -> SpinGuard<'_, RxState<SharedWords>> {
        self.state.lock()
    }

    /// Releases the receive lock, then rings the sender's doorbell if `wake` (what the receive
    /// state returned): no system call under the lock.
    #[inline]
    pub(crate) fn unlock_and_wake(&self, st: SpinGuard<'_, RxState<SharedWords>>, wake: bool) {
        drop(st);
        if wake {
            self.link.ring_peer();
        }
    }
}

impl RxShared {
    /// [`RxState::consumed`] with this session's probe and counters. `true` when the sender
    /// waits for this room: the caller rings its doorbell once the lock is released.
    #[must_use]
    pub(crate) fn consumed(&self, st: &mut RxState<SharedWords>, entries: u64, len: usize) -> bool {
        st.consumed(&self.probe, entries, len, &self.link.counters)
    }
}

impl SlotReturn for RxShared {
    fn return_slot(&self, slot: SlotRef, size: usize) {
        let mut st = self.lock();
        let wake = st.release(slot, size);
        self.unlock_and_wake(st, wake);
    }
}
