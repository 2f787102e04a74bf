//! The sender-private slot pool and the receiver's set of held slots.
//!
//! Each direction's payload memory belongs to its sender. The sender's [`SenderPool`] keeps the
//! free lists and every slot's state and generation in **process-private** memory: nothing of the
//! allocator lives in shared memory and no link is ever stored in payload bytes (INVARIANTS 7), so
//! the peer cannot corrupt it. The receiver gives slots back through the completion ring; each
//! returned entry is checked by [`SenderPool::complete`] (range, state `InFlight`, generation)
//! before the slot is reused (INVARIANTS 9, 13).
//!
//! Slot states and the only legal transitions (each checked from the expected state):
//!
//! ```text
//! Free --alloc--> Leased --mark_in_flight--> InFlight --complete / reclaim--> Free
//!                   \--free_leased (buffer dropped unsent)--> Free
//! ```
//!
//! # Class choice: no fallback
//! [`SenderPool::alloc`] uses the **smallest class that fits** and never falls back to a larger
//! class when that one is exhausted: it returns `Ok(None)` and the caller waits for a completion
//! of that class (backpressure, INVARIANTS 6). Small messages therefore can never drain the large
//! classes (INVARIANTS 10), and memory use stays bounded by the geometry.
//!
//! The pool itself is a plain `&mut self` structure; the async layer serialises access (one
//! mutex per direction).

use crate::core::codec::SlotRef;
use crate::core::layout::Geometry;

/// State of one slot, private to the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotState {
    /// On the free list.
    Free,
    /// Handed to the user as a writable buffer, not yet sent.
    Leased,
    /// Published to the receiver; comes back through the completion ring.
    InFlight,
}

/// Why a pool operation was refused. Errors about entries from the completion ring mean the
/// peer broke the protocol (close the session as corrupt).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PoolError {
    /// No class is large enough; nothing was allocated (INVARIANTS 4).
    #[error("payload of {len} bytes exceeds the largest slot of {max} bytes")]
    TooLarge {
        /// Requested length.
        len: usize,
        /// Largest slot size.
        max: usize,
    },
    /// Class index out of range.
    #[error("slot class {class} out of range ({nclasses} classes)")]
    BadClass {
        /// The class.
        class: u8,
        /// Number of classes.
        nclasses: usize,
    },
    /// Slot index out of range.
    #[error("slot index {index} out of range for class {class} ({count} slots)")]
    BadIndex {
        /// The class.
        class: u8,
        /// The index.
        index: u32,
        /// Slots in the class.
        count: u32,
    },
    /// The slot is not in the state the transition starts from (e.g. a double completion).
    #[error("slot {slot:?} is {found:?}, expected {expected:?}")]
    WrongState {
        /// The slot named.
        slot: SlotRef,
        /// State required by the transition.
        expected: SlotState,
        /// Actual state.
        found: SlotState,
    },
    /// The generation does not match the slot's current allocation (a stale or forged entry).
    #[error("slot {slot:?} has generation {current}, not {}", slot.generation)]
    StaleGeneration {
        /// The slot named (with the generation given).
        slot: SlotRef,
        /// The slot's current generation.
        current: u32,
    },
    /// The receiver got a descriptor for a slot it still holds (duplicate delivery).
    #[error("slot {slot:?} is already held by the receiver")]
    AlreadyHeld {
        /// The slot.
        slot: SlotRef,
    },
    /// The receiver released a slot it does not hold.
    #[error("slot {slot:?} is not held by the receiver")]
    NotHeld {
        /// The slot.
        slot: SlotRef,
    },
}

#[derive(Debug, Clone, Copy)]
struct SlotMeta {
    state: SlotState,
    generation: u32,
}

#[derive(Debug)]
struct ClassPool {
    slot_size: u32,
    free: Vec<u32>,
    meta: Vec<SlotMeta>,
}

/// Occupancy of a pool, for stats and leak checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Occupancy {
    /// Slots not free (leased + in flight).
    pub slots_in_use: usize,
    /// Sum of the slot sizes of the slots in use.
    pub bytes_in_use: usize,
    /// Slots leased to the user, not yet sent.
    pub leased: usize,
    /// Slots published to the receiver and not yet returned.
    pub in_flight: usize,
}

/// The sender's private allocator for one direction's slots.
#[derive(Debug)]
pub(crate) struct SenderPool {
    classes: Vec<ClassPool>,
    occ: Occupancy,
}

impl SenderPool {
    /// A pool with every slot of `geometry` free, generation 0.
    pub(crate) fn new(geometry: &Geometry) -> SenderPool {
        let classes = geometry
            .classes
            .iter()
            .map(|c| ClassPool {
                slot_size: c.slot_size,
                // Reversed so that slot 0 is handed out first.
                free: (0..c.slot_count).rev().collect(),
                meta: vec![
                    SlotMeta {
                        state: SlotState::Free,
                        generation: 0,
                    };
                    c.slot_count as usize
                ],
            })
            .collect();
        SenderPool {
            classes,
            occ: Occupancy::default(),
        }
    }

    /// Largest payload a slot holds.
    pub(crate) fn max_payload(&self) -> usize {
        self.classes.last().map_or(0, |c| c.slot_size as usize)
    }

    /// Free slots of `class` (0 for an unknown class).
    #[cfg(test)]
    pub(crate) fn free_slots(&self, class: u8) -> usize {
        self.classes
            .get(usize::from(class))
            .map_or(0, |c| c.free.len())
    }

    /// Current occupancy.
    pub(crate) fn occupancy(&self) -> Occupancy {
        self.occ
    }

    /// The smallest class whose slots hold `len` bytes.
    pub(crate) fn class_for(&self, len: usize) -> Result<u8, PoolError> {
        self.classes
            .iter()
            .position(|c| len <= c.slot_size as usize)
            .map(|i| i as u8)
            .ok_or(PoolError::TooLarge {
                len,
                max: self.max_payload(),
            })
    }

    /// Leases a slot of the smallest class that holds `len` bytes: `Ok(None)` when that class
    /// is exhausted (wait for a completion, do not fall back to a larger class),
    /// [`PoolError::TooLarge`] when no class fits (checked before anything is allocated).
    pub(crate) fn alloc(&mut self, len: usize) -> Result<Option<SlotRef>, PoolError> {
        let class = self.class_for(len)?;
        let c = &mut self.classes[usize::from(class)];
        let Some(index) = c.free.pop() else {
            return Ok(None);
        };
        let m = &mut c.meta[index as usize];
        debug_assert_eq!(m.state, SlotState::Free);
        m.generation = m.generation.wrapping_add(1);
        m.state = SlotState::Leased;
        self.occ.slots_in_use += 1;
        self.occ.bytes_in_use += c.slot_size as usize;
        self.occ.leased += 1;
        Ok(Some(SlotRef {
            class,
            index,
            generation: m.generation,
        }))
    }

    /// State and current generation of a slot, or a range error.
    pub(crate) fn state(&self, class: u8, index: u32) -> Result<(SlotState, u32), PoolError> {
        let nclasses = self.classes.len();
        let c = self
            .classes
            .get(usize::from(class))
            .ok_or(PoolError::BadClass { class, nclasses })?;
        let m = c.meta.get(index as usize).ok_or(PoolError::BadIndex {
            class,
            index,
            count: c.meta.len() as u32,
        })?;
        Ok((m.state, m.generation))
    }

    /// Checks `slot` is in range, in state `from` and of the current generation, then moves it
    /// to `to`. Returns the slot size.
    fn transition(
        &mut self,
        slot: SlotRef,
        from: SlotState,
        to: SlotState,
    ) -> Result<usize, PoolError> {
        let (state, current) = self.state(slot.class, slot.index)?;
        if current != slot.generation {
            return Err(PoolError::StaleGeneration { slot, current });
        }
        if state != from {
            return Err(PoolError::WrongState {
                slot,
                expected: from,
                found: state,
            });
        }
        let c = &mut self.classes[usize::from(slot.class)];
        c.meta[slot.index as usize].state = to;
        if to == SlotState::Free {
            c.free.push(slot.index);
        }
        Ok(c.slot_size as usize)
    }

    fn release_counts(&mut self, size: usize) {
        self.occ.slots_in_use -= 1;
        self.occ.bytes_in_use -= size;
    }

    /// `Leased → InFlight`: the slot's descriptor is about to be published.
    pub(crate) fn mark_in_flight(&mut self, slot: SlotRef) -> Result<(), PoolError> {
        self.transition(slot, SlotState::Leased, SlotState::InFlight)?;
        self.occ.leased -= 1;
        self.occ.in_flight += 1;
        Ok(())
    }

    /// `Leased → Free`: the user dropped the buffer without sending it.
    pub(crate) fn free_leased(&mut self, slot: SlotRef) -> Result<(), PoolError> {
        let size = self.transition(slot, SlotState::Leased, SlotState::Free)?;
        self.occ.leased -= 1;
        self.release_counts(size);
        Ok(())
    }

    /// `InFlight → Free` for an entry the receiver returned through the completion ring.
    /// Any error means the peer broke the protocol (stale, duplicate or forged entry).
    pub(crate) fn complete(&mut self, entry: u64) -> Result<SlotRef, PoolError> {
        let slot = SlotRef::from_entry(entry);
        let size = self.transition(slot, SlotState::InFlight, SlotState::Free)?;
        self.occ.in_flight -= 1;
        self.release_counts(size);
        Ok(slot)
    }

    /// The receiver is gone: every in-flight slot comes back (local bookkeeping only). Leased
    /// slots stay with their users. Returns how many slots were reclaimed.
    pub(crate) fn reclaim_all_in_flight(&mut self) -> usize {
        let mut n = 0;
        for c in &mut self.classes {
            for (index, m) in c.meta.iter_mut().enumerate() {
                if m.state == SlotState::InFlight {
                    m.state = SlotState::Free;
                    c.free.push(index as u32);
                    self.occ.in_flight -= 1;
                    self.occ.slots_in_use -= 1;
                    self.occ.bytes_in_use -= c.slot_size as usize;
                    n += 1;
                }
            }
        }
        n
    }
}

/// The receiver's record of the slots it currently holds (received, not yet returned): one bit
/// per slot. A descriptor naming a slot already held is a duplicate and is refused.
#[derive(Debug)]
pub(crate) struct HeldSet {
    classes: Vec<(u32, Vec<u64>)>,
    held: usize,
}

impl HeldSet {
    /// An empty set for the slots of `geometry`.
    pub(crate) fn new(geometry: &Geometry) -> HeldSet {
        HeldSet {
            classes: geometry
                .classes
                .iter()
                .map(|c| {
                    (
                        c.slot_count,
                        vec![0u64; (c.slot_count as usize).div_ceil(64)],
                    )
                })
                .collect(),
            held: 0,
        }
    }

    fn bit(&mut self, slot: SlotRef) -> Result<(&mut u64, u64), PoolError> {
        let nclasses = self.classes.len();
        let (count, bits) =
            self.classes
                .get_mut(usize::from(slot.class))
                .ok_or(PoolError::BadClass {
                    class: slot.class,
                    nclasses,
                })?;
        if slot.index >= *count {
            return Err(PoolError::BadIndex {
                class: slot.class,
                index: slot.index,
                count: *count,
            });
        }
        let i = slot.index as usize;
        Ok((&mut bits[i / 64], 1u64 << (i % 64)))
    }

    /// Records that the receiver now holds `slot`; [`PoolError::AlreadyHeld`] for a duplicate.
    pub(crate) fn insert(&mut self, slot: SlotRef) -> Result<(), PoolError> {
        let (word, mask) = self.bit(slot)?;
        if *word & mask != 0 {
            return Err(PoolError::AlreadyHeld { slot });
        }
        *word |= mask;
        self.held += 1;
        Ok(())
    }

    /// Records that the receiver gave `slot` back; [`PoolError::NotHeld`] if it was not held.
    pub(crate) fn remove(&mut self, slot: SlotRef) -> Result<(), PoolError> {
        let (word, mask) = self.bit(slot)?;
        if *word & mask == 0 {
            return Err(PoolError::NotHeld { slot });
        }
        *word &= !mask;
        self.held -= 1;
        Ok(())
    }

    /// True when `slot` is held (false when out of range).
    #[cfg(test)]
    pub(crate) fn contains(&self, slot: SlotRef) -> bool {
        let i = slot.index as usize;
        self.classes
            .get(usize::from(slot.class))
            .filter(|(count, _)| slot.index < *count)
            .is_some_and(|(_, bits)| bits[i / 64] & (1 << (i % 64)) != 0)
    }

    /// Number of slots held.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Forgets every held slot (the sender died and its segment is dropped); returns how many.
    #[cfg(test)]
    pub(crate) fn clear(&mut self) -> usize {
        for (_, bits) in &mut self.classes {
            bits.fill(0);
        }
        std::mem::take(&mut self.held)
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
