//! The sender-private slot pool and the receiver's set of held slots.
//!
//! Each direction's payload memory belongs to its sender. The sender's [`SenderPool`] keeps the
//! free lists and every slot's state and generation in **process-private** memory: nothing of the
//! allocator lives in shared memory and no link is ever stored in payload bytes (LESSONS 7), so
//! the peer cannot corrupt it. The receiver gives slots back through the completion ring; each
//! returned entry is checked by [`SenderPool::complete`] (range, state `InFlight`, generation)
//! before the slot is reused (LESSONS 9, 13).
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
//! of that class (backpressure, LESSONS 6). Small messages therefore can never drain the large
//! classes (LESSONS 10), and memory use stays bounded by the geometry.
//!
//! The pool itself is a plain `&mut self` structure; the async layer serialises access (one
//! mutex per direction).

use crate::descriptor::SlotRef;
use crate::layout::Geometry;

/// State of one slot, private to the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
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
pub enum PoolError {
    /// No class is large enough; nothing was allocated (LESSONS 4).
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
pub struct Occupancy {
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
pub struct SenderPool {
    classes: Vec<ClassPool>,
    occ: Occupancy,
}

impl SenderPool {
    /// A pool with every slot of `geometry` free, generation 0.
    pub fn new(geometry: &Geometry) -> SenderPool {
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
    pub fn max_payload(&self) -> usize {
        self.classes.last().map_or(0, |c| c.slot_size as usize)
    }

    /// Slot size of `class`, if it exists.
    pub fn slot_size(&self, class: u8) -> Option<u32> {
        self.classes.get(usize::from(class)).map(|c| c.slot_size)
    }

    /// Number of classes.
    pub fn nclasses(&self) -> usize {
        self.classes.len()
    }

    /// Free slots of `class` (0 for an unknown class).
    pub fn free_slots(&self, class: u8) -> usize {
        self.classes
            .get(usize::from(class))
            .map_or(0, |c| c.free.len())
    }

    /// Current occupancy.
    pub fn occupancy(&self) -> Occupancy {
        self.occ
    }

    /// The smallest class whose slots hold `len` bytes.
    pub fn class_for(&self, len: usize) -> Result<u8, PoolError> {
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
    pub fn alloc(&mut self, len: usize) -> Result<Option<SlotRef>, PoolError> {
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
    pub fn state(&self, class: u8, index: u32) -> Result<(SlotState, u32), PoolError> {
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
    pub fn mark_in_flight(&mut self, slot: SlotRef) -> Result<(), PoolError> {
        self.transition(slot, SlotState::Leased, SlotState::InFlight)?;
        self.occ.leased -= 1;
        self.occ.in_flight += 1;
        Ok(())
    }

    /// `InFlight → Leased`: publishing failed (e.g. the ring was full and the send was
    /// cancelled before the descriptor went out), the caller still owns the buffer.
    pub fn unmark_in_flight(&mut self, slot: SlotRef) -> Result<(), PoolError> {
        self.transition(slot, SlotState::InFlight, SlotState::Leased)?;
        self.occ.in_flight -= 1;
        self.occ.leased += 1;
        Ok(())
    }

    /// `Leased → Free`: the user dropped the buffer without sending it.
    pub fn free_leased(&mut self, slot: SlotRef) -> Result<(), PoolError> {
        let size = self.transition(slot, SlotState::Leased, SlotState::Free)?;
        self.occ.leased -= 1;
        self.release_counts(size);
        Ok(())
    }

    /// `InFlight → Free` for an entry the receiver returned through the completion ring.
    /// Any error means the peer broke the protocol (stale, duplicate or forged entry).
    pub fn complete(&mut self, entry: u64) -> Result<SlotRef, PoolError> {
        let slot = SlotRef::from_entry(entry);
        let size = self.transition(slot, SlotState::InFlight, SlotState::Free)?;
        self.occ.in_flight -= 1;
        self.release_counts(size);
        Ok(slot)
    }

    /// The receiver is gone: every in-flight slot comes back (local bookkeeping only). Leased
    /// slots stay with their users. Returns how many slots were reclaimed.
    pub fn reclaim_all_in_flight(&mut self) -> usize {
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
pub struct HeldSet {
    classes: Vec<(u32, Vec<u64>)>,
    held: usize,
}

impl HeldSet {
    /// An empty set for the slots of `geometry`.
    pub fn new(geometry: &Geometry) -> HeldSet {
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
    pub fn insert(&mut self, slot: SlotRef) -> Result<(), PoolError> {
        let (word, mask) = self.bit(slot)?;
        if *word & mask != 0 {
            return Err(PoolError::AlreadyHeld { slot });
        }
        *word |= mask;
        self.held += 1;
        Ok(())
    }

    /// Records that the receiver gave `slot` back; [`PoolError::NotHeld`] if it was not held.
    pub fn remove(&mut self, slot: SlotRef) -> Result<(), PoolError> {
        let (word, mask) = self.bit(slot)?;
        if *word & mask == 0 {
            return Err(PoolError::NotHeld { slot });
        }
        *word &= !mask;
        self.held -= 1;
        Ok(())
    }

    /// True when `slot` is held (false when out of range).
    pub fn contains(&self, slot: SlotRef) -> bool {
        let i = slot.index as usize;
        self.classes
            .get(usize::from(slot.class))
            .filter(|(count, _)| slot.index < *count)
            .is_some_and(|(_, bits)| bits[i / 64] & (1 << (i % 64)) != 0)
    }

    /// Number of slots held.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Forgets every held slot (the sender died and its segment is dropped); returns how many.
    pub fn clear(&mut self) -> usize {
        for (_, bits) in &mut self.classes {
            bits.fill(0);
        }
        std::mem::take(&mut self.held)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::layout::SlotClass;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn small() -> Geometry {
        Geometry {
            ring_capacity: 4,
            classes: vec![
                SlotClass {
                    slot_size: 64,
                    slot_count: 3,
                },
                SlotClass {
                    slot_size: 128,
                    slot_count: 2,
                },
            ],
        }
    }

    #[test]
    fn lesson_04_and_10_size_checked_first_no_fallback_to_larger_class() {
        let mut p = SenderPool::new(&small());
        assert_eq!(p.class_for(0).unwrap(), 0);
        assert_eq!(p.class_for(64).unwrap(), 0);
        assert_eq!(p.class_for(65).unwrap(), 1);
        assert_eq!(
            p.alloc(129),
            Err(PoolError::TooLarge { len: 129, max: 128 })
        );
        assert_eq!(p.occupancy(), Occupancy::default()); // lesson 4: nothing allocated
        let a: Vec<_> = (0..3).map(|_| p.alloc(10).unwrap().unwrap()).collect();
        assert_eq!(a.iter().map(|s| s.index).collect::<Vec<_>>(), [0, 1, 2]);
        // Class 0 exhausted: wait, do not take a 128-byte slot (lesson 10).
        assert_eq!(p.alloc(10), Ok(None));
        assert_eq!(p.free_slots(1), 2);
        assert_eq!(
            p.occupancy(),
            Occupancy {
                slots_in_use: 3,
                bytes_in_use: 192,
                leased: 3,
                in_flight: 0
            }
        );
    }

    #[test]
    fn full_cycle_and_generations() {
        let mut p = SenderPool::new(&small());
        let s = p.alloc(100).unwrap().unwrap();
        assert_eq!((s.class, s.generation), (1, 1));
        p.mark_in_flight(s).unwrap();
        assert_eq!(p.occupancy().in_flight, 1);
        assert_eq!(p.complete(s.to_entry()), Ok(s));
        assert_eq!(p.occupancy(), Occupancy::default());
        let s2 = p.alloc(100).unwrap().unwrap();
        assert_eq!((s2.index, s2.generation), (s.index, 2));
        p.free_leased(s2).unwrap();
        assert_eq!(p.state(1, s.index), Ok((SlotState::Free, 2)));
    }

    #[test]
    fn lesson_09_double_free_rejected() {
        let mut p = SenderPool::new(&small());
        let s = p.alloc(1).unwrap().unwrap();
        p.mark_in_flight(s).unwrap();
        p.complete(s.to_entry()).unwrap();
        // A second completion of the same entry: the slot is Free, not InFlight.
        assert_eq!(
            p.complete(s.to_entry()),
            Err(PoolError::WrongState {
                slot: s,
                expected: SlotState::InFlight,
                found: SlotState::Free
            })
        );
        // Freeing a leased buffer twice.
        let s = p.alloc(1).unwrap().unwrap();
        p.free_leased(s).unwrap();
        assert!(matches!(
            p.free_leased(s),
            Err(PoolError::WrongState { .. })
        ));
        // The slot is on the free list exactly once: three distinct allocations, then none.
        let got: Vec<_> = (0..3).map(|_| p.alloc(1).unwrap().unwrap().index).collect();
        let mut sorted = got.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 3);
        assert_eq!(p.alloc(1), Ok(None));
    }

    #[test]
    fn lesson_13_stale_and_forged_completions_rejected() {
        let mut p = SenderPool::new(&small());
        let s = p.alloc(1).unwrap().unwrap();
        p.mark_in_flight(s).unwrap();
        let stale = SlotRef {
            generation: s.generation.wrapping_sub(1),
            ..s
        };
        assert_eq!(
            p.complete(stale.to_entry()),
            Err(PoolError::StaleGeneration {
                slot: stale,
                current: s.generation
            })
        );
        // Completing a slot that is only leased (never sent) is refused: the receiver cannot
        // free memory the sender still writes.
        let l = p.alloc(1).unwrap().unwrap();
        assert!(matches!(
            p.complete(l.to_entry()),
            Err(PoolError::WrongState {
                found: SlotState::Leased,
                ..
            })
        ));
        assert_eq!(
            p.complete(
                SlotRef {
                    class: 9,
                    index: 0,
                    generation: 1
                }
                .to_entry()
            ),
            Err(PoolError::BadClass {
                class: 9,
                nclasses: 2
            })
        );
        assert!(matches!(
            p.complete(u64::MAX),
            Err(PoolError::BadClass { .. })
        ));
        assert_eq!(
            p.complete(
                SlotRef {
                    class: 0,
                    index: 3,
                    generation: 1
                }
                .to_entry()
            ),
            Err(PoolError::BadIndex {
                class: 0,
                index: 3,
                count: 3
            })
        );
        // Nothing changed.
        assert_eq!(p.occupancy().in_flight, 1);
        assert_eq!(p.occupancy().leased, 1);
    }

    #[test]
    fn lesson_07_no_links_in_payload() {
        // The allocator's state lives only in the pool's private memory: a full cycle of
        // allocations never needs the payload bytes, so "payload memory" that is scribbled over
        // between operations (as a hostile peer could) changes nothing.
        let g = small();
        let mut payload = vec![0xAAu8; 64 * 3 + 128 * 2];
        let mut p = SenderPool::new(&g);
        let mut seen = Vec::new();
        for round in 0..10u8 {
            let s = p.alloc(64).unwrap().unwrap();
            payload.fill(round); // the peer overwrites every payload byte
            p.mark_in_flight(s).unwrap();
            payload.fill(!round);
            p.complete(s.to_entry()).unwrap();
            seen.push((s.index, s.generation));
        }
        // LIFO free list: the same slot comes back with increasing generations.
        assert!(seen.windows(2).all(|w| w[1].1 == w[0].1 + 1));
        assert_eq!(p.occupancy(), Occupancy::default());
        assert_eq!(p.free_slots(0), 3);
        // The pool's type holds no pointer into payload memory.
        assert!(!format!("{p:?}").contains("ptr"));
    }

    #[test]
    fn reclaim_all_in_flight_after_receiver_death() {
        let mut p = SenderPool::new(&small());
        let a = p.alloc(1).unwrap().unwrap();
        let b = p.alloc(100).unwrap().unwrap();
        let c = p.alloc(1).unwrap().unwrap();
        p.mark_in_flight(a).unwrap();
        p.mark_in_flight(b).unwrap();
        assert_eq!(p.reclaim_all_in_flight(), 2);
        assert_eq!(
            p.occupancy(),
            Occupancy {
                slots_in_use: 1,
                bytes_in_use: 64,
                leased: 1,
                in_flight: 0
            }
        );
        // Late completions of reclaimed slots are rejected.
        assert!(p.complete(a.to_entry()).is_err());
        p.free_leased(c).unwrap();
        assert_eq!(p.occupancy(), Occupancy::default());
    }

    #[test]
    fn held_set_detects_duplicates() {
        let mut h = HeldSet::new(&Geometry::default());
        let s = SlotRef {
            class: 0,
            index: 200,
            generation: 5,
        };
        h.insert(s).unwrap();
        assert!(h.contains(s));
        assert_eq!(h.insert(s), Err(PoolError::AlreadyHeld { slot: s }));
        assert_eq!(h.held(), 1);
        h.remove(s).unwrap();
        assert_eq!(h.remove(s), Err(PoolError::NotHeld { slot: s }));
        let bad = SlotRef {
            class: 3,
            index: 4,
            generation: 0,
        };
        assert_eq!(
            h.insert(bad),
            Err(PoolError::BadIndex {
                class: 3,
                index: 4,
                count: 4
            })
        );
        assert!(!h.contains(bad));
        h.insert(SlotRef { index: 1, ..s }).unwrap();
        h.insert(SlotRef { class: 2, ..s }.with_index(15)).unwrap();
        assert_eq!(h.clear(), 2);
        assert_eq!(h.held(), 0);
    }

    impl SlotRef {
        fn with_index(self, index: u32) -> SlotRef {
            SlotRef { index, ..self }
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Alloc(usize),
        Send(usize),
        FreeLeased(usize),
        Complete(usize),
        CompleteStale(usize),
        CompleteAgain(usize),
        Garbage(u64),
        Reclaim,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0usize..140).prop_map(Op::Alloc),
            3 => any::<usize>().prop_map(Op::Send),
            1 => any::<usize>().prop_map(Op::FreeLeased),
            3 => any::<usize>().prop_map(Op::Complete),
            1 => any::<usize>().prop_map(Op::CompleteStale),
            1 => any::<usize>().prop_map(Op::CompleteAgain),
            1 => any::<u64>().prop_map(Op::Garbage),
            1 => Just(Op::Reclaim),
        ]
    }

    proptest! {
        #[test]
        fn pool_invariants_hold(ops in proptest::collection::vec(op(), 1..200)) {
            let g = small();
            let mut p = SenderPool::new(&g);
            // Model: slot -> (state, generation) for every non-free slot.
            let mut leased: Vec<SlotRef> = Vec::new();
            let mut in_flight: Vec<SlotRef> = Vec::new();
            let mut completed: Vec<SlotRef> = Vec::new();
            for op in ops {
                match op {
                    Op::Alloc(len) => match p.alloc(len) {
                        Ok(Some(s)) => {
                            // Never handed out twice.
                            prop_assert!(!leased.iter().chain(&in_flight)
                                .any(|o| o.class == s.class && o.index == s.index));
                            prop_assert!(len <= g.classes[usize::from(s.class)].slot_size as usize);
                            if s.class > 0 {
                                prop_assert!(len > g.classes[usize::from(s.class) - 1].slot_size as usize);
                            }
                            leased.push(s);
                        }
                        Ok(None) => {
                            let class = p.class_for(len).unwrap();
                            let used = leased.iter().chain(&in_flight).filter(|s| s.class == class).count();
                            prop_assert_eq!(used, g.classes[usize::from(class)].slot_count as usize);
                        }
                        Err(PoolError::TooLarge { len: l, max }) => {
                            prop_assert_eq!(l, len);
                            prop_assert!(len > max);
                        }
                        Err(e) => prop_assert!(false, "{e}"),
                    },
                    Op::Send(i) if !leased.is_empty() => {
                        let s = leased.swap_remove(i % leased.len());
                        p.mark_in_flight(s).unwrap();
                        in_flight.push(s);
                    }
                    Op::FreeLeased(i) if !leased.is_empty() => {
                        let s = leased.swap_remove(i % leased.len());
                        p.free_leased(s).unwrap();
                    }
                    Op::Complete(i) if !in_flight.is_empty() => {
                        let s = in_flight.swap_remove(i % in_flight.len());
                        prop_assert_eq!(p.complete(s.to_entry()), Ok(s));
                        completed.push(s);
                    }
                    Op::CompleteStale(i) if !in_flight.is_empty() => {
                        let s = in_flight[i % in_flight.len()];
                        let stale = SlotRef { generation: s.generation.wrapping_add(1), ..s };
                        let rejected = matches!(
                            p.complete(stale.to_entry()),
                            Err(PoolError::StaleGeneration { .. })
                        );
                        prop_assert!(rejected);
                    }
                    Op::CompleteAgain(i) if !completed.is_empty() => {
                        let s = completed[i % completed.len()];
                        prop_assert!(p.complete(s.to_entry()).is_err());
                    }
                    Op::Garbage(e) => {
                        let s = SlotRef::from_entry(e);
                        let legit = in_flight.contains(&s);
                        let r = p.complete(e);
                        prop_assert_eq!(r.is_ok(), legit);
                        if legit {
                            in_flight.retain(|x| *x != s);
                            completed.push(s);
                        }
                    }
                    Op::Reclaim => {
                        prop_assert_eq!(p.reclaim_all_in_flight(), in_flight.len());
                        completed.append(&mut in_flight);
                    }
                    _ => {}
                }
                // Occupancy balances against the model.
                let occ = p.occupancy();
                prop_assert_eq!(occ.leased, leased.len());
                prop_assert_eq!(occ.in_flight, in_flight.len());
                prop_assert_eq!(occ.slots_in_use, leased.len() + in_flight.len());
                let bytes: usize = leased.iter().chain(&in_flight)
                    .map(|s| g.classes[usize::from(s.class)].slot_size as usize).sum();
                prop_assert_eq!(occ.bytes_in_use, bytes);
                let mut counts: HashMap<u8, usize> = HashMap::new();
                for s in leased.iter().chain(&in_flight) {
                    *counts.entry(s.class).or_default() += 1;
                }
                for (c, class) in g.classes.iter().enumerate() {
                    let used = counts.get(&(c as u8)).copied().unwrap_or(0);
                    prop_assert_eq!(p.free_slots(c as u8) + used, class.slot_count as usize);
                }
            }
        }
    }
}
