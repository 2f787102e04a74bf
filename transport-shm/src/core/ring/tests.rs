//! Unit tests of `ring`.

use super::*;
use std::sync::Arc;

fn region(cap: u32, w: usize) -> Arc<[AtomicU64]> {
    (0..ring_words(cap, w)).map(|_| AtomicU64::new(0)).collect()
}

#[test]
fn push_pop_in_order_with_wrap_around() {
    let r = region(4, DESC_WORDS);
    let mut p = DescProducer::attach(r.clone(), 4).unwrap();
    let mut c = DescConsumer::attach(r.clone(), 4).unwrap();
    let mut next_pop = 0u64;
    for i in 0..100u64 {
        let e = [i, i + 1, i + 2, i + 3, i + 4, i + 5, i + 6, i + 7];
        match p.try_push(&e) {
            Ok(()) => {}
            Err(PushError::Full) => {
                assert_eq!(p.head() - next_pop, 4);
                let got = c.try_pop().unwrap().unwrap();
                assert_eq!(got[0], next_pop);
                assert_eq!(got[7], next_pop + 7);
                next_pop += 1;
                p.try_push(&e).unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    }
    while let Some(got) = c.try_pop().unwrap() {
        assert_eq!(got[0], next_pop);
        next_pop += 1;
    }
    assert_eq!(next_pop, 100);
    assert!(c.is_empty().unwrap());
}

#[test]
fn bad_parameters_are_refused() {
    let r = region(4, 1);
    assert_eq!(
        Producer::<_, 1>::attach(r.clone(), 3).unwrap_err(),
        RingError::BadCapacity { capacity: 3 }
    );
    assert_eq!(
        Consumer::<_, 1>::attach(r.clone(), 8).unwrap_err(),
        RingError::RegionTooSmall {
            words: CONTROL_WORDS + 4,
            needed: CONTROL_WORDS + 8
        }
    );
}

#[test]
fn hostile_head_is_corrupt_not_panic() {
    let r = region(4, 1);
    let mut c = Consumer::<_, 1>::attach(r.clone(), 4).unwrap();
    r[HEAD].store(5, Ordering::Relaxed); // more than capacity ahead of tail 0
    assert_eq!(
        c.try_pop().unwrap_err(),
        RingError::HeadOutOfRange {
            head: 5,
            min: 0,
            max: 4
        }
    );
    r[HEAD].store(2, Ordering::Relaxed);
    assert!(c.try_pop().unwrap().is_some());
    assert!(c.try_pop().unwrap().is_some());
    r[HEAD].store(1, Ordering::Relaxed); // went backwards
    assert_eq!(
        c.try_pop().unwrap_err(),
        RingError::HeadOutOfRange {
            head: 1,
            min: 2,
            max: 6
        }
    );
    r[HEAD].store(u64::MAX, Ordering::Relaxed);
    assert!(matches!(
        c.prepare_park(),
        Err(RingError::HeadOutOfRange { .. })
    ));
}

#[test]
fn probe_sees_exactly_the_published_entries() {
    let r = region(4, DESC_WORDS);
    let mut p = DescProducer::attach(r.clone(), 4).unwrap();
    let mut c = DescConsumer::attach(r.clone(), 4).unwrap();
    let probe = c.probe();
    let e = [9u64; DESC_WORDS];
    for lap in 0..6u64 {
        let base = lap * 4;
        assert!(!probe.is_published(base), "lap {lap}: nothing pushed yet");
        p.try_push(&e).unwrap();
        p.try_push_unit(&e, &[e]).unwrap();
        // Published: the single entry and the first entry of the unit; not the unit's
        // continuation (it carries no stamp of its own), nor what comes after.
        assert!(probe.is_published(base));
        assert!(probe.is_published(base + 1));
        assert!(!probe.is_published(base + 3));
        // The same positions seen with the previous and the next lap's index: not published.
        assert!(!probe.is_published(base + 4));
        if lap > 0 {
            assert!(!probe.is_published(base - 4), "overwritten by this lap");
        }
        // The probe agrees with the consumer, and taking entries does not change what the
        // stamps say about them until the producer overwrites them a lap later.
        assert_eq!(c.is_ready().unwrap(), probe.is_published(c.tail()));
        assert!(c.try_pop().unwrap().is_some());
        assert!(c.peek().unwrap().is_some());
        c.advance(2);
        assert!(probe.is_published(base));
        assert!(!probe.is_published(c.tail()));
        assert_eq!(c.is_ready().unwrap(), probe.is_published(c.tail()));
        p.try_push(&e).unwrap();
        assert!(probe.is_published(c.tail()));
        assert!(c.try_pop().unwrap().is_some());
    }
    // Absurd indices are answered (their laps' stamps are not in the ring), never out of
    // bounds.
    for i in [u64::MAX, u64::MAX - 3, 1 << 63] {
        assert!(!probe.is_published(i));
    }
}

/// A unit pushed from a word generator lands word for word where `try_push_unit` puts
/// it, and `Consumer::word` reads each word as `read` does (stamp bits cleared), across
/// wrap-around and laps.
#[test]
fn generated_units_and_single_words_match_whole_entries() {
    let r = region(8, DESC_WORDS);
    let mut p = DescProducer::attach(r.clone(), 8).unwrap();
    let mut c = DescConsumer::attach(r.clone(), 8).unwrap();
    let gen_word = |seed: u64| {
        move |e: usize, i: usize| {
            // The top bits set on purpose: in the stamp word the ring owns them and must
            // replace them; elsewhere they are data and must arrive.
            (seed << 16 | (e as u64) << 8 | i as u64) | STAMP_MASK
        }
    };
    for round in 0..40u64 {
        let entries = 1 + (round % 3) as usize;
        p.try_push_unit_with(entries, gen_word(round)).unwrap();
        assert!(c.is_ready().unwrap(), "round {round}");
        for e in 0..entries {
            let whole = c.read(e as u64);
            for (i, &w) in whole.iter().enumerate() {
                assert_eq!(c.word(e as u64, i), w, "round {round} entry {e} word {i}");
                // Only the stamp word's top bits belong to the ring.
                let g = gen_word(round)(e, i);
                let expected = if i == STAMP_WORD { g & !STAMP_MASK } else { g };
                assert_eq!(w, expected, "round {round} entry {e} word {i}");
            }
        }
        c.advance(entries as u64);
        assert!(
            !c.is_ready().unwrap(),
            "round {round}: the unit was one unit"
        );
    }
}

#[test]
fn stamped_ring_reads_stamps_not_the_head() {
    let r = region(4, DESC_WORDS);
    let mut p = DescProducer::attach(r.clone(), 4).unwrap();
    let mut c = DescConsumer::attach(r.clone(), 4).unwrap();
    assert!(!c.is_ready().unwrap(), "a zeroed ring holds nothing");
    // Stamp bits passed by the caller are replaced, and cleared again on the way out.
    let e = [1, 2, 3, 4, 5 | 0xABCD << STAMP_SHIFT, 6, 7, 8];
    for lap in 0..40u64 {
        for i in 0..4u64 {
            let mut e = e;
            e[0] = lap * 4 + i;
            p.try_push(&e).unwrap();
        }
        assert_eq!(p.try_push(&e), Err(PushError::Full));
        for i in 0..4u64 {
            let got = c.try_pop().unwrap().unwrap();
            assert_eq!(got[0], lap * 4 + i);
            assert_eq!(got[STAMP_WORD], 5);
        }
        // Last lap's entries are still in memory but never look published.
        assert_eq!(c.try_pop().unwrap(), None);
    }
    // The consumer never reads the head: a forged one (behind, ahead, absurd) changes
    // nothing.
    for forged in [c.tail() - 2, c.tail() + 3, u64::MAX / 2] {
        r[HEAD].store(forged, Ordering::Relaxed);
        assert_eq!(c.try_pop().unwrap(), None);
        assert!(!c.is_ready().unwrap());
    }
    // A unit larger than the ring can never be pushed.
    assert!(matches!(
        p.try_push_unit(&e, &[e; 4]),
        Err(PushError::BadUnit {
            entries: 5,
            capacity: 4
        })
    ));
    // Nor can an empty one (it would publish a stamp over nothing).
    assert_eq!(
        p.try_push_unit_with(0, |_, _| 0),
        Err(PushError::BadUnit {
            entries: 0,
            capacity: 4
        })
    );
}

#[test]
fn hostile_tail_is_corrupt_not_panic() {
    let r = region(2, 1);
    let mut p = Producer::<_, 1>::attach(r.clone(), 2).unwrap();
    p.try_push(&[1]).unwrap();
    p.try_push(&[2]).unwrap();
    r[TAIL].store(3, Ordering::Relaxed); // past the head
    assert_eq!(
        p.try_push(&[3]).unwrap_err(),
        PushError::Corrupt(RingError::TailOutOfRange {
            tail: 3,
            min: 0,
            max: 2
        })
    );
    r[TAIL].store(1, Ordering::Relaxed);
    p.try_push(&[3]).unwrap();
    r[TAIL].store(0, Ordering::Relaxed); // went backwards
    assert!(matches!(
        p.try_push(&[4]),
        Err(PushError::Corrupt(RingError::TailOutOfRange { .. }))
    ));
    // Attaching to a ring whose tail is beyond its head is refused too.
    let r = region(2, 1);
    r[TAIL].store(9, Ordering::Relaxed);
    assert!(Producer::<_, 1>::attach(r.clone(), 2).is_err());
    r[HEAD].store(20, Ordering::Relaxed);
    assert!(Consumer::<_, 1>::attach(r, 2).is_err());
}

#[test]
fn reattached_producer_resyncs_its_head() {
    let r = region(4, 1);
    {
        let mut p = Producer::<_, 1>::attach(r.clone(), 4).unwrap();
        let mut c = Consumer::<_, 1>::attach(r.clone(), 4).unwrap();
        for i in 0..10 {
            p.try_push(&[i]).unwrap();
            assert_eq!(c.try_pop().unwrap(), Some([i]));
        }
        p.try_push(&[10]).unwrap();
    } // producer "dies" with one entry unconsumed; consumer goes too
    let mut p = Producer::<_, 1>::attach(r.clone(), 4).unwrap();
    assert_eq!(p.head(), 11);
    let mut c = Consumer::<_, 1>::attach(r.clone(), 4).unwrap();
    assert_eq!(c.tail(), 10);
    // Not "full forever": three more fit, then full.
    for i in 11..14 {
        p.try_push(&[i]).unwrap();
    }
    assert_eq!(p.try_push(&[99]), Err(PushError::Full));
    for i in 10..14 {
        assert_eq!(c.try_pop().unwrap(), Some([i]));
    }
    assert_eq!(c.try_pop().unwrap(), None);
}

#[test]
fn only_a_parked_peer_is_woken_once() {
    let r = region(2, 1);
    let mut p = Producer::<_, 1>::attach(r.clone(), 2).unwrap();
    let mut c = Consumer::<_, 1>::attach(r.clone(), 2).unwrap();
    // Nobody parked: no wake (no syscall on the hot path).
    p.try_push(&[1]).unwrap();
    assert!(!p.consumer_needs_wake());
    // Data present: the consumer must not sleep, and its flag is withdrawn.
    assert!(!c.prepare_park().unwrap());
    assert_eq!(r[CONSUMER_PARKED].load(Ordering::Relaxed), 0);
    assert_eq!(c.try_pop().unwrap(), Some([1]));
    // Empty: it may sleep; the next push wakes it exactly once.
    assert!(c.prepare_park().unwrap());
    p.try_push(&[2]).unwrap();
    assert!(p.consumer_needs_wake());
    p.try_push(&[3]).unwrap();
    assert!(!p.consumer_needs_wake());
    c.unpark();
    // Producer waits for space; the consumer's pop wakes it once.
    assert_eq!(p.try_push(&[4]), Err(PushError::Full));
    assert!(p.prepare_park(1).unwrap());
    // Announced as "wake me when the tail reaches 2" (head 3 + 1 entry - capacity 2).
    assert_eq!(r[PRODUCER_PARKED].load(Ordering::Relaxed), park_word(2));
    assert_eq!(c.try_pop().unwrap(), Some([2]));
    assert!(c.producer_needs_wake());
    assert!(!c.producer_needs_wake());
    p.unpark();
    assert!(!p.prepare_park(1).unwrap()); // space now: do not sleep
    p.try_push(&[4]).unwrap();
}

#[test]
fn ready_units_counts_units_and_stops_at_nonsense() {
    let r = region(4, 5);
    let mut p = Producer::<_, 5, true>::attach(r.clone(), 4).unwrap();
    let c = Consumer::<_, 5, true>::attach(r, 4).unwrap();
    assert_eq!(c.ready_units(|_| Some(1)), 0);
    // Units of 2 and 1 entries; word 0 says how long each is.
    p.try_push_unit(&[2; 5], &[[0; 5]]).unwrap();
    p.try_push(&[1; 5]).unwrap();
    assert_eq!(c.ready_units(|e| Some(e[0])), 2);
    // Lengths that do not fit, or zero, end the walk; so does an invalid entry.
    assert_eq!(c.ready_units(|_| Some(0)), 0);
    assert_eq!(c.ready_units(|_| Some(u64::MAX)), 0);
    assert_eq!(c.ready_units(|_| None), 0);
    assert_eq!(
        c.ready_units(|_| Some(1)),
        3,
        "at most the published entries"
    );
}

#[test]
fn producer_parks_until_the_whole_unit_fits() {
    let r = region(4, 1);
    let mut p = Producer::<_, 1>::attach(r.clone(), 4).unwrap();
    let mut c = Consumer::<_, 1>::attach(r.clone(), 4).unwrap();
    p.try_push_unit(&[1], &[[2]]).unwrap();
    // Two entries free, the unit needs three: full, and still full when re-checked.
    assert_eq!(p.try_push_unit(&[3], &[[4], [5]]), Err(PushError::Full));
    assert!(p.prepare_park(3).unwrap());
    assert!(!p.prepare_park(2).unwrap());
    assert_eq!(c.try_pop().unwrap(), Some([1]));
    assert!(!p.prepare_park(3).unwrap());
    p.try_push_unit(&[3], &[[4], [5]]).unwrap();
}

#[test]
fn a_parked_producer_is_woken_once_its_unit_fits() {
    let r = region(4, 1);
    let mut p = Producer::<_, 1>::attach(r.clone(), 4).unwrap();
    let mut c = Consumer::<_, 1>::attach(r.clone(), 4).unwrap();
    for i in 0..4 {
        p.try_push(&[i]).unwrap();
    }
    // A unit of three waits for three pops: the first two do not wake the producer.
    assert!(p.prepare_park(3).unwrap());
    for i in 0..2 {
        assert_eq!(c.try_pop().unwrap(), Some([i]));
        assert!(
            !c.producer_needs_wake(),
            "woken after pop {i}, the unit does not fit"
        );
    }
    assert_eq!(c.try_pop().unwrap(), Some([2]));
    assert!(c.producer_needs_wake());
    assert!(!c.producer_needs_wake(), "one wake per park");
    p.try_push_unit(&[4], &[[5], [6]]).unwrap();

    // Two local waiters share the word: the earliest threshold wins, in either order.
    assert!(p.prepare_park(3).unwrap());
    assert!(p.prepare_park(1).unwrap());
    assert_eq!(c.try_pop().unwrap(), Some([3]));
    assert!(
        c.producer_needs_wake(),
        "the waiter for one entry is woken by one pop"
    );
    p.try_push(&[7]).unwrap();
    assert!(p.prepare_park(1).unwrap());
    assert!(p.prepare_park(2).unwrap());
    assert_eq!(c.try_pop().unwrap(), Some([4]));
    assert!(c.producer_needs_wake());
}

#[test]
fn any_park_word_from_the_peer_is_handled() {
    let r = region(4, 1);
    let mut c = Consumer::<_, 1>::attach(r.clone(), 4).unwrap();
    let mut p = Producer::<_, 1>::attach(r.clone(), 4).unwrap();
    p.try_push(&[1]).unwrap();
    assert_eq!(c.try_pop().unwrap(), Some([1]));
    // The bare flag of the 0/1 protocol means "wake at any tail".
    r[PRODUCER_PARKED].store(1, Ordering::SeqCst);
    assert!(c.producer_needs_wake());
    for w in [u64::MAX, 1 << 63, (1 << 63) + 1, 2, 3, 12345] {
        r[PRODUCER_PARKED].store(w, Ordering::SeqCst);
        let woken = c.producer_needs_wake();
        assert_eq!(woken, reached(c.tail(), w), "word {w:#x}");
        assert_eq!(r[PRODUCER_PARKED].load(Ordering::SeqCst) == 0, woken);
    }
}
