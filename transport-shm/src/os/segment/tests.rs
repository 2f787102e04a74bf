//! Unit tests of `segment`.

use super::*;
use crate::core::codec::{DescPayload, Descriptor};
use crate::core::layout::{SlotClass, hdr};
use crate::core::pool::{HeldSet, SenderPool};
use crate::core::ring::PushError;
use std::os::fd::AsFd;
use transport_api::FrameHeader;

fn small() -> Geometry {
    Geometry {
        ring_capacity: 4,
        classes: vec![
            SlotClass {
                slot_size: 64,
                slot_count: 4,
            },
            SlotClass {
                slot_size: 4096,
                slot_count: 2,
            },
        ],
    }
}

#[test]
fn two_mappings_exchange_descriptors_and_payloads() {
    // Side A creates; side B maps the same memfd separately, as another process would.
    let (fd, a) = Segment::create(small()).unwrap();
    let b = Segment::attach(fd.as_fd()).unwrap();
    assert_eq!(a.layout(), b.layout());
    assert!(!Arc::ptr_eq(a.mapping(), b.mapping()));
    a.mark_attached(Side::A, sys::current_pid());
    b.mark_attached(Side::B, 4242);
    assert_eq!(a.side_state(Side::B).pid, Some(4242));
    assert!(b.side_state(Side::A).attached);

    let d = Direction::AToB;
    let mut tx = a.desc_producer(d).unwrap();
    let mut rx = b.desc_consumer(d).unwrap();
    let mut comp_tx = b.completion_producer(d).unwrap();
    let mut comp_rx = a.completion_consumer(d).unwrap();
    let mut pool = SenderPool::new(a.layout().geometry());
    let mut held = HeldSet::new(b.layout().geometry());
    let geometry = b.layout().geometry().clone();

    for round in 0..20u64 {
        // Sender: inline frame, then a slot frame with real content.
        let h = FrameHeader {
            msg_id: round,
            ..FrameHeader::default()
        };
        tx.try_push(&Descriptor::inline(h, b"tiny").unwrap().encode())
            .unwrap();
        let payload: Vec<u8> = (0..3000).map(|i| (i as u64 + round) as u8).collect();
        let slot = pool.alloc(payload.len()).unwrap().unwrap();
        a.slot(d, slot).unwrap().write(0, &payload).unwrap();
        pool.mark_in_flight(slot).unwrap();
        tx.try_push(&Descriptor::slot(h, slot, payload.len() as u32).encode())
            .unwrap();

        // Receiver, through its own mapping.
        let first = Descriptor::decode(&rx.try_pop().unwrap().unwrap(), &geometry).unwrap();
        assert_eq!(first.header.msg_id, round);
        assert_eq!(first.inline_head().unwrap(), b"tiny");
        let second = Descriptor::decode(&rx.try_pop().unwrap().unwrap(), &geometry).unwrap();
        let DescPayload::Slot { slot: got, len } = second.payload else {
            panic!("expected a slot descriptor, got {second:?}");
        };
        held.insert(got).unwrap();
        assert_eq!(
            b.slot(d, got).unwrap().to_vec(len as usize).unwrap(),
            payload
        );
        held.remove(got).unwrap();
        comp_tx.try_push(&[got.to_entry()]).unwrap();

        // Sender takes the slot back.
        let entry = comp_rx.try_pop().unwrap().unwrap()[0];
        assert_eq!(pool.complete(entry).unwrap(), slot);
    }
    assert_eq!(rx.try_pop().unwrap(), None);
    assert_eq!(pool.occupancy().slots_in_use, 0);
    assert_eq!(held.held(), 0);
}

#[test]
fn reattached_producer_resyncs_over_a_real_segment() {
    let (fd, a) = Segment::create(small()).unwrap();
    let b = Segment::attach(fd.as_fd()).unwrap();
    let d = Direction::BToA;
    let mut rx = a.desc_consumer(d).unwrap();
    {
        let mut tx = b.desc_producer(d).unwrap();
        for i in 0..6 {
            tx.try_push(&[i; 8]).unwrap();
            assert_eq!(rx.try_pop().unwrap(), Some([i; 8]));
        }
    }
    // A new peer process maps the segment and takes over the producer side.
    let b2 = Segment::attach(fd.as_fd()).unwrap();
    let mut tx = b2.desc_producer(d).unwrap();
    assert_eq!(tx.head(), 6);
    for i in 6..10 {
        tx.try_push(&[i; 8]).unwrap();
    }
    assert_eq!(tx.try_push(&[0; 8]), Err(PushError::Full));
    for i in 6..10 {
        assert_eq!(rx.try_pop().unwrap(), Some([i; 8]));
    }
}

#[test]
fn attacher_rejects_a_bad_header() {
    let (fd, a) = Segment::create(small()).unwrap();
    a.header()[hdr::RING_CAPACITY].store(3, Ordering::Relaxed);
    assert!(matches!(
        Segment::attach(fd.as_fd()),
        Err(SegmentError::Layout(LayoutError::BadRingCapacity {
            capacity: 3
        }))
    ));
    // A geometry that claims more memory than the segment has.
    a.header()[hdr::RING_CAPACITY].store(4, Ordering::Relaxed);
    a.header()[hdr::CLASSES + 1].store(4096 | (64 << 32), Ordering::Relaxed);
    assert!(matches!(
        Segment::attach(fd.as_fd()),
        Err(SegmentError::Layout(LayoutError::TotalLenMismatch { .. }))
    ));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
    /// The peer scribbles arbitrary values over the header and every ring word while
    /// traffic flows: this side only ever gets typed errors, never a panic, and its layout
    /// does not change.
    #[test]
    fn hostile_peer_writes_never_panic(
        writes in proptest::collection::vec(
            (0usize..5, proptest::prelude::any::<usize>(), proptest::prelude::any::<u64>()),
            1..40,
        ),
        small_values in proptest::prelude::any::<bool>(),
    ) {
        let (fd, a) = Segment::create(small()).unwrap();
        let peer = Segment::attach(fd.as_fd()).unwrap();
        let before = a.layout().clone();
        let geometry = before.geometry().clone();
        let mut tx = a.desc_producer(Direction::AToB).unwrap();
        let mut rx = a.desc_consumer(Direction::BToA).unwrap();
        let mut comp_rx = a.completion_consumer(Direction::AToB).unwrap();
        let mut comp_tx = a.completion_producer(Direction::BToA).unwrap();
        let mut pool = SenderPool::new(&geometry);
        let mut held = HeldSet::new(&geometry);
        for i in 0..2 {
            let s = pool.alloc(10 + i).unwrap().unwrap();
            pool.mark_in_flight(s).unwrap();
            tx.try_push(&Descriptor::slot(FrameHeader::default(), s, 10).encode()).unwrap();
        }
        let regions = [
            peer.header(),
            peer.desc_ring(Direction::AToB),
            peer.desc_ring(Direction::BToA),
            peer.completion_ring(Direction::AToB),
            peer.completion_ring(Direction::BToA),
        ];
        for (r, i, v) in writes {
            let region = &regions[r];
            let v = if small_values { v % 8 } else { v };
            region[i % region.len()].store(v, Ordering::Relaxed);
            // This side keeps working on what it sees.
            if let Ok(Some(w)) = rx.try_pop()
                && let Ok(d) = Descriptor::decode(&w, &geometry)
                && let DescPayload::Slot { slot, len } = d.payload
                && held.insert(slot).is_ok()
            {
                let bytes = a.slot(Direction::BToA, slot).unwrap();
                proptest::prop_assert!(bytes.to_vec(len as usize).is_ok());
                let _ = comp_tx.try_push(&[slot.to_entry()]);
            }
            if let Ok(Some([e])) = comp_rx.try_pop() {
                let _ = pool.complete(e);
            }
            let _ = tx.try_push(&[0; 8]);
            let _ = rx.prepare_park();
            rx.unpark();
            let _ = tx.consumer_needs_wake();
            let _ = a.side_state(Side::B);
        }
        proptest::prop_assert_eq!(a.layout(), &before);
        proptest::prop_assert!(pool.occupancy().in_flight <= 2);
    }
}

#[test]
fn slot_lookup_is_range_checked() {
    let (_fd, a) = Segment::create(small()).unwrap();
    let s = |class, index| SlotRef {
        class,
        index,
        generation: 0,
    };
    assert_eq!(a.slot(Direction::AToB, s(1, 1)).unwrap().len(), 4096);
    assert!(matches!(
        a.slot(Direction::AToB, s(1, 2)),
        Err(SegmentError::NoSuchSlot { class: 1, index: 2 })
    ));
    assert!(matches!(
        a.slot(Direction::AToB, s(2, 0)),
        Err(SegmentError::NoSuchSlot { class: 2, index: 0 })
    ));
    // The last slot of the last direction ends inside the mapping.
    let last = a.slot(Direction::BToA, s(1, 1)).unwrap();
    last.write(4095, &[1]).unwrap();
}
