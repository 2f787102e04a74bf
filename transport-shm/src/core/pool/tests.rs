//! Unit tests of `pool`.

use super::*;
use crate::core::layout::SlotClass;
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
fn size_is_checked_first_without_fallback_to_a_larger_class() {
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
fn double_free_is_rejected() {
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
fn stale_and_forged_completions_are_rejected() {
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
fn no_allocator_links_in_payload_bytes() {
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
