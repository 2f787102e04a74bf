//! Loom models of the real ring, parking and completion code (the same functions that run over
//! the shared mapping, here over loom atomics). Every model is explored exhaustively (no
//! preemption bound).
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p transport-shm --release --lib loom`

use std::sync::Arc;

use loom::thread;

use crate::core::codec::{DescPayload, Descriptor};
use crate::core::layout::{Geometry, SlotClass};
use crate::core::pool::{HeldSet, PoolError, SenderPool, SlotState};
use crate::core::ring::{Consumer, Producer, PushError, ring_words};
use crate::core::sync::AtomicU64;

fn region(capacity: u32, w: usize) -> Arc<[AtomicU64]> {
    (0..ring_words(capacity, w))
        .map(|_| AtomicU64::new(0))
        .collect()
}

fn push_spin<S: std::ops::Deref<Target = [AtomicU64]>, const W: usize, const ST: bool>(
    p: &mut Producer<S, W, ST>,
    e: &[u64; W],
) {
    loop {
        match p.try_push(e) {
            Ok(()) => return,
            Err(PushError::Full) => thread::yield_now(),
            Err(e) => panic!("ring corrupt in a correct model: {e}"),
        }
    }
}

fn pop_spin<S: std::ops::Deref<Target = [AtomicU64]>, const W: usize, const ST: bool>(
    c: &mut Consumer<S, W, ST>,
) -> [u64; W] {
    loop {
        match c.try_pop() {
            Ok(Some(e)) => return e,
            Ok(None) => thread::yield_now(),
            Err(e) => panic!("ring corrupt in a correct model: {e}"),
        }
    }
}

/// Capacity 2, three two-word entries: every entry arrives once, in order, with both words
/// of the same entry (the Release/Acquire publication covers the Relaxed entry words), across
/// the wrap-around.
#[test]
fn loom_ring_wraparound_order_no_loss() {
    loom::model(|| {
        let r = region(2, 2);
        let mut p = Producer::<_, 2>::attach(r.clone(), 2).unwrap();
        let mut c = Consumer::<_, 2>::attach(r, 2).unwrap();
        let t = thread::spawn(move || {
            for i in 1..=3u64 {
                push_spin(&mut p, &[i, i * 100]);
            }
        });
        for i in 1..=3u64 {
            assert_eq!(pop_spin(&mut c), [i, i * 100]);
        }
        assert_eq!(c.try_pop().unwrap(), None);
        t.join().unwrap();
    });
}

/// The consumer finds the ring empty and parks while the producer pushes: either the consumer
/// sees the entry (and does not sleep) or the producer sees the parked flag (and wakes it).
/// Never both miss — that would be a lost wake-up.
#[test]
fn loom_park_then_wake_loses_no_wakeup() {
    loom::model(|| {
        let r = region(2, 1);
        let mut p = Producer::<_, 1>::attach(r.clone(), 2).unwrap();
        let mut c = Consumer::<_, 1>::attach(r, 2).unwrap();
        let t = thread::spawn(move || {
            p.try_push(&[7]).unwrap();
            p.consumer_needs_wake()
        });
        let (slept, got) = match c.try_pop().unwrap() {
            Some(e) => (false, Some(e)),
            None => {
                if c.prepare_park().unwrap() {
                    (true, None)
                } else {
                    (false, c.try_pop().unwrap())
                }
            }
        };
        let woken = t.join().unwrap();
        if slept {
            assert!(
                woken,
                "lost wake-up: consumer sleeps, producer saw no parked flag"
            );
            c.unpark();
            assert_eq!(c.try_pop().unwrap(), Some([7]));
        } else {
            assert_eq!(
                got,
                Some([7]),
                "consumer did not sleep, so it must see the entry"
            );
        }
    });
}

/// What a sender does with a unit: push it, or, when the ring is full, announce the park and
/// re-check for the whole unit: push it if it fits now, or report that the sender sleeps.
fn push_or_sleep<S, const W: usize, const STAMPED: bool>(
    p: &mut Producer<S, W, STAMPED>,
    first: &[u64; W],
    rest: &[[u64; W]],
) -> bool
where
    S: std::ops::Deref<Target = [AtomicU64]>,
{
    match p.try_push_unit(first, rest) {
        Ok(()) => false,
        Err(PushError::Full) => {
            if p.prepare_park(1 + rest.len() as u64).unwrap() {
                true
            } else {
                p.try_push_unit(first, rest).unwrap();
                false
            }
        }
        Err(e) => panic!("{e}"),
    }
}

/// The mirror image: a producer facing a full ring parks while the consumer pops; either the
/// producer sees the space or the consumer sees the flag and wakes it.
#[test]
fn loom_producer_waits_for_space_no_lost_wakeup() {
    loom::model(|| {
        let r = region(1, 1);
        let mut p = Producer::<_, 1>::attach(r.clone(), 1).unwrap();
        let mut c = Consumer::<_, 1>::attach(r, 1).unwrap();
        p.try_push(&[1]).unwrap();
        let t = thread::spawn(move || {
            assert_eq!(c.try_pop().unwrap(), Some([1]));
            c.producer_needs_wake()
        });
        let slept = push_or_sleep(&mut p, &[2], &[]);
        let woken = t.join().unwrap();
        if slept {
            assert!(
                woken,
                "lost wake-up: producer sleeps, consumer saw no parked flag"
            );
            p.unpark();
            p.try_push(&[2]).unwrap();
        }
    });
}

/// A producer waiting to push a unit of 2 entries into a full ring of 2 while the consumer
/// frees one entry at a time: when the re-check says "do not sleep", the unit fits (no retry
/// loop), and when the producer sleeps, the consumer's second pop sees its announcement. The
/// first pop, after which the unit does not fit yet, never wakes it.
#[test]
fn loom_producer_waits_for_a_whole_unit() {
    loom::model(|| {
        let r = region(2, 5);
        let mut p = Producer::<_, 5, true>::attach(r.clone(), 2).unwrap();
        let mut c = Consumer::<_, 5, true>::attach(r, 2).unwrap();
        p.try_push(&[1; 5]).unwrap();
        p.try_push(&[2; 5]).unwrap();
        let t = thread::spawn(move || {
            let mut woken = false;
            for i in 1..=2u64 {
                assert_eq!(c.try_pop().unwrap(), Some([i; 5]));
                let wake = c.producer_needs_wake();
                assert!(!(wake && i == 1), "woken while the unit does not fit");
                woken |= wake;
            }
            woken
        });
        let unit = ([3; 5], [[4; 5]]);
        let slept = push_or_sleep(&mut p, &unit.0, &unit.1);
        let woken = t.join().unwrap();
        if slept {
            assert!(
                woken,
                "lost wake-up: the producer sleeps, no pop saw its flag"
            );
            p.unpark();
            p.try_push_unit(&unit.0, &unit.1).unwrap();
        }
    });
}

/// A slot travels sender → receiver in a descriptor and comes back through the completion
/// ring; the receiver (buggy) returns it twice. The sender accepts exactly one completion,
/// rejects the duplicate, and reuses the slot with a new generation.
#[test]
fn loom_completion_round_trip_with_generation_checks() {
    loom::model(|| {
        let geometry = Geometry {
            ring_capacity: 2,
            classes: vec![SlotClass {
                slot_size: 64,
                slot_count: 1,
            }],
        };
        let desc = region(2, 8);
        let comp = region(2, 1);
        let mut tx = Producer::<_, 8, true>::attach(desc.clone(), 2).unwrap();
        let mut rx = Consumer::<_, 8, true>::attach(desc, 2).unwrap();
        let mut ctx = Producer::<_, 1>::attach(comp.clone(), 2).unwrap();
        let mut crx = Consumer::<_, 1>::attach(comp, 2).unwrap();

        let g2 = geometry.clone();
        let receiver = thread::spawn(move || {
            let mut held = HeldSet::new(&g2);
            let d = Descriptor::decode(&pop_spin(&mut rx), &g2).unwrap();
            let DescPayload::Slot { slot, len } = d.payload else {
                panic!("expected a slot descriptor");
            };
            assert_eq!(len, 40);
            held.insert(slot).unwrap();
            held.remove(slot).unwrap();
            push_spin(&mut ctx, &[slot.to_entry()]);
            push_spin(&mut ctx, &[slot.to_entry()]); // duplicate
        });

        let mut pool = SenderPool::new(&geometry);
        let slot = pool.alloc(40).unwrap().unwrap();
        pool.mark_in_flight(slot).unwrap();
        let h = transport_api::FrameHeader::default();
        push_spin(&mut tx, &Descriptor::slot(h, slot, 40).encode());
        assert_eq!(pool.alloc(40), Ok(None)); // only slot in flight: wait

        let first = pop_spin(&mut crx)[0];
        assert_eq!(pool.complete(first), Ok(slot));
        let second = pop_spin(&mut crx)[0];
        assert_eq!(
            pool.complete(second),
            Err(PoolError::WrongState {
                slot,
                expected: SlotState::InFlight,
                found: SlotState::Free
            })
        );
        let again = pool.alloc(10).unwrap().unwrap();
        assert_eq!(
            (again.index, again.generation),
            (slot.index, slot.generation + 1)
        );
        // The stale entry of the first allocation is refused even once the slot is in flight.
        pool.mark_in_flight(again).unwrap();
        assert!(matches!(
            pool.complete(first),
            Err(PoolError::StaleGeneration { .. })
        ));
        receiver.join().unwrap();
    });
}

/// Stamped ring (the descriptor rings): capacity 4, units of one and two entries, across the
/// wrap-around. The consumer learns of a unit from its first entry's stamp only (it never reads
/// the head), and must see every word of the unit, continuation included, and never a stale
/// entry from the previous lap.
#[test]
fn loom_stamped_units_wraparound_no_stale_entry() {
    loom::model(|| {
        let r = region(4, 5);
        let mut p = Producer::<_, 5, true>::attach(r.clone(), 4).unwrap();
        let mut c = Consumer::<_, 5, true>::attach(r, 4).unwrap();
        let t = thread::spawn(move || {
            // Units of 2, 1, 2 entries: 5 entries through a ring of 4.
            for i in 1..=3u64 {
                let first = [i, i, i, i, i];
                let cont = [[i * 10, i * 10, i * 10, i * 10, i * 10]];
                let rest: &[[u64; 5]] = if i == 2 { &[] } else { &cont };
                loop {
                    match p.try_push_unit(&first, rest) {
                        Ok(()) => break,
                        Err(PushError::Full) => thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        });
        for i in 1..=3u64 {
            let first = loop {
                match c.peek().unwrap() {
                    Some(e) => break e,
                    None => thread::yield_now(),
                }
            };
            // Word 4 is the stamp word: its value bits come back, the stamp is cleared.
            assert_eq!(first, [i, i, i, i, i]);
            if i == 2 {
                c.advance(1);
            } else {
                assert_eq!(c.read(1), [i * 10; 5]);
                c.advance(2);
            }
        }
        assert_eq!(c.peek().unwrap(), None);
        t.join().unwrap();
    });
}

/// Parking on a stamped ring: the consumer re-checks the stamp after announcing that it parks,
/// the producer checks the flag after writing the stamp; one of them must see the other.
#[test]
fn loom_stamped_park_wake_no_lost_wakeup() {
    loom::model(|| {
        let r = region(2, 5);
        let mut p = Producer::<_, 5, true>::attach(r.clone(), 2).unwrap();
        let mut c = Consumer::<_, 5, true>::attach(r, 2).unwrap();
        let t = thread::spawn(move || {
            p.try_push(&[7; 5]).unwrap();
            p.consumer_needs_wake()
        });
        let slept = match c.try_pop().unwrap() {
            Some(e) => {
                assert_eq!(e, [7; 5]);
                false
            }
            None => {
                if c.prepare_park().unwrap() {
                    true
                } else {
                    assert_eq!(c.try_pop().unwrap(), Some([7; 5]));
                    false
                }
            }
        };
        let woken = t.join().unwrap();
        if slept {
            assert!(woken, "lost wake-up on the stamped ring");
            c.unpark();
            assert_eq!(c.try_pop().unwrap(), Some([7; 5]));
        }
    });
}

/// The endpoint lock: two holders each add 1 to a value with `Relaxed` loads and stores. Only
/// the lock's exclusion and its Acquire/Release hand-over make the second holder see the first
/// one's write; a lost update would leave 1.
#[test]
fn loom_spin_lock_excludes_and_publishes() {
    use crate::core::spin_lock::SpinMutex;
    use crate::core::sync::Ordering::Relaxed;
    loom::model(|| {
        let m = Arc::new(SpinMutex::new(AtomicU64::new(0)));
        let m2 = m.clone();
        let add = |m: &SpinMutex<AtomicU64>| {
            let g = m.lock();
            let v = g.load(Relaxed);
            g.store(v + 1, Relaxed);
        };
        let t = thread::spawn(move || add(&m2));
        add(&m);
        t.join().unwrap();
        assert_eq!(m.lock().load(Relaxed), 2);
    });
}

/// Two local waiters of one producer (serialised, as under the transmit lock) announce
/// different thresholds while the consumer pops one entry: A waits for a unit of two entries,
/// then B for a single entry. If B sleeps, that pop must wake the endpoint (the doorbell wakes
/// every local waiter, and each re-checks): the word must keep B's earlier threshold, not A's.
/// (If B finds room it publishes and kicks the local waiters, which is not modelled here.)
#[test]
fn loom_two_local_waiters_share_the_park_word() {
    loom::model(|| {
        let r = region(2, 1);
        let mut p = Producer::<_, 1>::attach(r.clone(), 2).unwrap();
        let mut c = Consumer::<_, 1>::attach(r, 2).unwrap();
        p.try_push(&[1]).unwrap();
        p.try_push(&[2]).unwrap();
        let t = thread::spawn(move || {
            assert_eq!(c.try_pop().unwrap(), Some([1]));
            c.producer_needs_wake()
        });
        let a_sleeps = p.prepare_park(2).unwrap();
        let b_sleeps = p.prepare_park(1).unwrap();
        let woken = t.join().unwrap();
        assert!(a_sleeps, "one pop never makes room for two entries");
        if b_sleeps {
            assert!(
                woken,
                "lost wake-up: B sleeps, the pop that made its room woke nobody"
            );
        }
    });
}
