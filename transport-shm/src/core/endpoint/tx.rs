//! The send half of an endpoint: publishing units on the descriptor ring, taking returned slots
//! back from the completion ring, and the sender-private slot pool.

use super::bump;
use crate::core::codec::MAX_CONT;
use crate::core::layout::Geometry;
use crate::core::pool::SenderPool;
use crate::core::ring::{CompletionConsumer, DescProducer, PushError, RingError};
use crate::core::sync::AtomicU64;
use std::ops::Deref;
use transport_api::{Counters, Result, TransportError};

/// The send half's state, behind the endpoint's transmit lock.
pub(crate) struct TxState<S> {
    pub(crate) ring: DescProducer<S>,
    pub(crate) completions: CompletionConsumer<S>,
    pub(crate) pool: SenderPool,
    /// The receiver is gone: its completions no longer come; in-flight slots were reclaimed.
    pub(crate) reclaimed: bool,
    /// For each ring position, the number of entries of the unit last published starting
    /// there: `stats` counts the queued frames (not entries) by walking from the receiver's
    /// tail to our head. Process memory, written with one store per frame.
    unit_entries: Box<[u8]>,
}

impl<S: Deref<Target = [AtomicU64]>> TxState<S> {
    /// The send half over its two rings, with a pool for `geometry`.
    pub(crate) fn new(
        ring: DescProducer<S>,
        completions: CompletionConsumer<S>,
        geometry: &Geometry,
    ) -> Self {
        let capacity = ring.capacity() as usize;
        TxState {
            ring,
            completions,
            pool: SenderPool::new(geometry),
            reclaimed: false,
            unit_entries: vec![0; capacity].into_boxed_slice(),
        }
    }

    /// Units published at or after `tail` (frames the receiver has not taken yet).
    fn units_since(&self, tail: u64) -> u64 {
        units_between(
            &self.unit_entries,
            tail,
            self.ring.head(),
            self.ring.capacity(),
        )
    }

    /// Frames published and not yet taken by the receiver.
    pub(crate) fn queued(&mut self) -> u64 {
        if self.reclaimed {
            return 0;
        }
        match self.ring.consumed_up_to() {
            Ok(tail) => self.units_since(tail),
            Err(_) => 0,
        }
    }

    /// Takes every returned slot back; the number taken. Errors mean the peer forged an
    /// entry. A caller that took any back wakes its local tasks waiting for a slot.
    pub(crate) fn drain_completions(&mut self) -> Result<usize> {
        if self.reclaimed {
            return Ok(0);
        }
        let mut n = 0;
        while let Some([entry]) = self
            .completions
            .try_pop()
            .map_err(|e| TransportError::corrupt(format!("completion ring: {e}")))?
        {
            self.pool.complete(entry).map_err(|e| {
                TransportError::corrupt(format!("completion entry {entry:#x}: {e}"))
            })?;
            n += 1;
        }
        Ok(n)
    }

    /// The receiver is gone: takes back every slot it still held (after the caller drained
    /// what it returned) and stops reading its completions. The number of slots reclaimed.
    pub(crate) fn reclaim(&mut self) -> usize {
        let n = self.pool.reclaim_all_in_flight();
        self.reclaimed = true;
        n
    }

    /// Publishes the unit of `entries` entries whose words `word(e, i)` gives (see
    /// [`crate::core::ring::Producer::try_push_unit_with`]) if the ring has room now, then runs
    /// `published`. `Ok(wake)` once published: `wake` when the receiver sleeps and its doorbell
    /// must be rung; `Err(PushError::Full)` when the ring has no room for the unit now. The
    /// caller counts the frame ([`TxState::count_sent`]) before it releases the lock.
    #[inline(always)]
    pub(crate) fn push_unit(
        &mut self,
        entries: usize,
        word: impl Fn(usize, usize) -> u64,
        published: impl FnOnce(&mut Self),
    ) -> std::result::Result<bool, PushError> {
        self.ring.try_push_unit_with(entries, word)?;
        debug_assert!(entries <= 1 + MAX_CONT, "a unit of {entries} entries");
        let start = self.ring.head().wrapping_sub(entries as u64);
        let at = (start & (self.ring.capacity() - 1)) as usize;
        if let Some(e) = self.unit_entries.get_mut(at) {
            // `entries <= 1 + MAX_CONT`.
            *e = entries as u8;
        }
        published(self);
        Ok(self.ring.consumer_needs_wake())
    }

    /// Counts a published frame of `len` bytes in the send counters, which are written only
    /// here, under the transmit lock (so plain stores suffice).
    #[inline(always)]
    pub(crate) fn count_sent(&self, counters: &Counters, len: usize, zero_copy: bool) {
        bump(&counters.frames_sent, 1);
        bump(&counters.bytes_sent, len as u64);
        bump(
            if zero_copy {
                &counters.zero_copy_sends
            } else {
                &counters.copied_sends
            },
            1,
        );
    }

    /// Announces that a sender waits for room for a unit of `needed` entries; `Ok(true)` when
    /// it may sleep (see [`crate::core::ring::Producer::prepare_park`]).
    pub(crate) fn prepare_park(&mut self, needed: u64) -> std::result::Result<bool, RingError> {
        self.ring.prepare_park(needed)
    }
}

/// The units in ring positions `tail..head` of a ring of `cap` entries (a power of two), where
/// `entries[pos]` is the number of entries of the unit last published starting at `pos`. A
/// tail the peer left inside a unit only makes the count approximate: the walk advances at
/// least one entry per step and stops at the head or once it is more than `cap` away.
fn units_between(entries: &[u8], tail: u64, head: u64, cap: u64) -> u64 {
    let (mut at, mut units) = (tail, 0);
    while at != head && head.wrapping_sub(at) <= cap {
        let n = entries
            .get((at & (cap - 1)) as usize)
            .map_or(1, |&n| n.max(1));
        at = at.wrapping_add(u64::from(n));
        units += 1;
    }
    units
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::units_between;

    #[test]
    fn queued_units_are_walked_from_the_tail() {
        // Ring of 8: units of 1, 4, 1, 2 entries from position 0; the other positions hold
        // sizes left from an earlier lap.
        let entries = [1u8, 4, 3, 3, 3, 1, 2, 3];
        assert_eq!(units_between(&entries, 0, 8, 8), 4, "a full ring");
        assert_eq!(units_between(&entries, 1, 8, 8), 3);
        assert_eq!(units_between(&entries, 5, 6, 8), 1);
        assert_eq!(units_between(&entries, 8, 8, 8), 0, "empty");
        // Wrapping positions and indices: the same layout one lap later and near u64::MAX.
        assert_eq!(units_between(&entries, 16, 24, 8), 4);
        let base = u64::MAX - 2; // position 5 (u64::MAX & 7 == 7)
        assert_eq!(units_between(&entries, base, base.wrapping_add(3), 8), 2);
        // A tail inside a unit (a hostile peer): approximate, bounded, no panic.
        assert_eq!(units_between(&entries, 2, 8, 8), 3);
        assert_eq!(
            units_between(&[5; 8], 6, 8, 8),
            1,
            "a stale size past the head"
        );
        assert_eq!(
            units_between(&[0; 8], 3, 8, 8),
            5,
            "unknown sizes count as 1"
        );
        // A head more than a ring away (never from an honest ring): no walk at all.
        assert_eq!(units_between(&entries, 0, 100, 8), 0);
        assert_eq!(
            units_between(&[], 0, 8, 8),
            8,
            "a missing table counts entries"
        );
    }
}
