//! Unit tests of `layout`.

use super::*;
use proptest::prelude::*;

fn words(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

fn header_of(layout: &Layout) -> Vec<AtomicU64> {
    let h = words(HEADER_WORDS);
    layout.write_header(&h).unwrap();
    h
}

#[test]
fn default_geometry_is_valid_and_aligned() {
    let l = Layout::new(Geometry::default()).unwrap();
    assert_eq!(l.geometry().max_payload(), 1 << 20);
    for d in [Direction::AToB, Direction::BToA] {
        let dl = l.dir(d);
        assert_eq!(dl.desc_ring_offset % CACHE_LINE, 0);
        assert_eq!(dl.completion_ring_offset % CACHE_LINE, 0);
        assert_eq!(dl.completion_ring_words % 8, 0);
        assert_eq!(dl.completion_capacity, 512); // 256 + 64 + 16 + 4 = 340 -> 512
        for c in &dl.classes {
            assert_eq!(c.offset % CACHE_LINE, 0);
            assert!(c.offset + (c.slot_size * c.slot_count) as usize <= l.total_len());
        }
    }
    // Regions do not overlap and come in order.
    let a = l.dir(Direction::AToB);
    let b = l.dir(Direction::BToA);
    assert!(a.desc_ring_offset >= HEADER_LEN);
    assert_eq!(
        a.completion_ring_offset,
        a.desc_ring_offset + a.desc_ring_words * 8
    );
    // Payload memory starts on the first page boundary after the rings and ends on a page
    // boundary at or after the last slot, before the next direction's rings.
    for dl in [a, b] {
        let rings_end = dl.completion_ring_offset + dl.completion_ring_words * 8;
        assert_eq!(dl.payload_offset % PAYLOAD_ALIGN, 0);
        assert_eq!(dl.payload_len % PAYLOAD_ALIGN, 0);
        assert!(dl.payload_offset >= rings_end && dl.payload_offset - rings_end < PAYLOAD_ALIGN);
        assert_eq!(dl.classes[0].offset, dl.payload_offset);
        let last = dl.classes.last().unwrap();
        let slots_end = last.offset + (last.slot_size * last.slot_count) as usize;
        let end = dl.payload_offset + dl.payload_len;
        assert!(end >= slots_end && end - slots_end < PAYLOAD_ALIGN);
    }
    assert!(b.desc_ring_offset >= a.payload_offset + a.payload_len);
    assert_eq!(l.total_len(), b.payload_offset + b.payload_len);
}

#[test]
fn geometry_rules_are_enforced_with_values() {
    let ok = Geometry::default();
    let mut g = ok.clone();
    g.ring_capacity = 0;
    assert_eq!(
        g.validate(),
        Err(LayoutError::BadRingCapacity { capacity: 0 })
    );
    g.ring_capacity = 96;
    assert_eq!(
        g.validate(),
        Err(LayoutError::BadRingCapacity { capacity: 96 })
    );
    g.ring_capacity = MAX_RING_CAPACITY * 2;
    assert!(matches!(
        g.validate(),
        Err(LayoutError::BadRingCapacity { .. })
    ));
    let mut g = ok.clone();
    g.classes.clear();
    assert_eq!(g.validate(), Err(LayoutError::BadClassCount { count: 0 }));
    let mut g = ok.clone();
    g.classes = (1..=9)
        .map(|i| SlotClass {
            slot_size: 64 * i,
            slot_count: 1,
        })
        .collect();
    assert_eq!(g.validate(), Err(LayoutError::BadClassCount { count: 9 }));
    let mut g = ok.clone();
    g.classes[1].slot_size = 4000;
    assert_eq!(
        g.validate(),
        Err(LayoutError::BadSlotSize {
            class: 1,
            size: 4000
        })
    );
    let mut g = ok.clone();
    g.classes[2].slot_size = 256;
    assert_eq!(
        g.validate(),
        Err(LayoutError::SizesNotIncreasing {
            class: 2,
            size: 256,
            previous: 4096
        })
    );
    let mut g = ok.clone();
    g.classes[0].slot_count = 0;
    assert_eq!(
        g.validate(),
        Err(LayoutError::BadSlotCount { class: 0, count: 0 })
    );
    let g = Geometry {
        ring_capacity: 1,
        classes: vec![
            SlotClass {
                slot_size: MAX_SLOT_SIZE,
                slot_count: MAX_SLOT_COUNT,
            };
            1
        ],
    };
    assert_eq!(g.validate(), Err(LayoutError::TooLarge));
}

#[test]
fn header_round_trip() {
    let l = Layout::new(Geometry::default()).unwrap();
    let h = header_of(&l);
    assert_eq!(h[hdr::MAGIC].load(Ordering::Relaxed), MAGIC);
    let back = Layout::from_header(&h, l.total_len()).unwrap();
    assert_eq!(back, l);
}

#[test]
fn from_header_reports_field_and_value() {
    let l = Layout::new(Geometry::default()).unwrap();
    let cases: Vec<(usize, u64, LayoutError)> = vec![
        (hdr::MAGIC, 7, LayoutError::BadMagic { found: 7 }),
        (hdr::VERSION, 1, LayoutError::BadVersion { found: 1 }),
        (
            hdr::RING_CAPACITY,
            0,
            LayoutError::BadRingCapacity { capacity: 0 },
        ),
        (
            hdr::RING_CAPACITY,
            1 << 40,
            LayoutError::BadRingCapacity { capacity: 1 << 40 },
        ),
        (hdr::NCLASSES, 9, LayoutError::BadClassCount { count: 9 }),
        (
            hdr::CLASSES + 7,
            5,
            LayoutError::NonZeroReserved {
                word: hdr::CLASSES + 7,
                value: 5,
            },
        ),
        (
            hdr::RESERVED_START,
            1,
            LayoutError::NonZeroReserved {
                word: hdr::RESERVED_START,
                value: 1,
            },
        ),
        (
            hdr::TOTAL_LEN,
            1,
            LayoutError::TotalLenMismatch {
                stored: 1,
                computed: l.total_len() as u64,
            },
        ),
    ];
    for (word, value, expected) in cases {
        let h = header_of(&l);
        h[word].store(value, Ordering::Relaxed);
        assert_eq!(
            Layout::from_header(&h, l.total_len()),
            Err(expected),
            "word {word}"
        );
    }
    let h = header_of(&l);
    assert_eq!(
        Layout::from_header(&h, l.total_len() - 1),
        Err(LayoutError::MappingTooSmall {
            mapping_len: l.total_len() - 1,
            needed: l.total_len()
        })
    );
    assert_eq!(
        Layout::from_header(&h[..4], usize::MAX),
        Err(LayoutError::HeaderTooShort { got: 4 })
    );
}

#[test]
fn attacher_uses_the_header_geometry() {
    // The creator chose a geometry different from anything the attacher would pick itself;
    // the attacher's layout must come from the header, not from its own configuration.
    let creator = Layout::new(Geometry {
        ring_capacity: 8,
        classes: vec![SlotClass {
            slot_size: 128,
            slot_count: 3,
        }],
    })
    .unwrap();
    let h = header_of(&creator);
    let attacher = Layout::from_header(&h, creator.total_len()).unwrap();
    assert_ne!(attacher, Layout::new(Geometry::default()).unwrap());
    assert_eq!(attacher, creator);
    assert_eq!(attacher.ring_capacity(), 8);
    assert_eq!(attacher.dir(Direction::BToA).completion_capacity, 4);
}

proptest! {
    #[test]
    fn from_header_on_random_words_never_panics(
        words in any::<[u64; HEADER_WORDS]>(),
        magic in any::<bool>(),
        mapping_len in any::<usize>(),
    ) {
        let h: Vec<AtomicU64> = words.iter().map(|w| AtomicU64::new(*w)).collect();
        if magic {
            h[hdr::MAGIC].store(MAGIC, Ordering::Relaxed);
        }
        if let Ok(l) = Layout::from_header(&h, mapping_len) {
            prop_assert!(l.total_len() <= mapping_len);
            prop_assert!(l.geometry().validate().is_ok());
        }
    }

    #[test]
    fn from_header_on_mutated_valid_header_never_panics(
        edits in proptest::collection::vec(
            (0usize..16, prop_oneof![
                any::<u64>(),
                0u64..300,
                (0u64..(1 << 21), 0u64..70).prop_map(|(a, b)| a | b << 32),
            ]),
            1..5,
        ),
        mapping_len in 0usize..(64 << 20),
    ) {
        let l = Layout::new(Geometry::default()).unwrap();
        let h = header_of(&l);
        for (i, v) in edits {
            h[i].store(v, Ordering::Relaxed);
        }
        match Layout::from_header(&h, mapping_len) {
            Ok(back) => {
                prop_assert!(back.total_len() <= mapping_len);
                prop_assert!(back.geometry().validate().is_ok());
                for d in [Direction::AToB, Direction::BToA] {
                    let dl = back.dir(d);
                    for c in &dl.classes {
                        prop_assert!(
                            c.offset + (c.slot_size as usize) * (c.slot_count as usize)
                                <= back.total_len()
                        );
                    }
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
}

#[test]
fn geometry_is_kept_local() {
    // After attaching, changing the header (a hostile or buggy peer) changes nothing in the
    // process-local layout: it is never re-read.
    let l = Layout::new(Geometry::default()).unwrap();
    let h = header_of(&l);
    let attached = Layout::from_header(&h, l.total_len()).unwrap();
    for w in &h[..16] {
        w.store(0, Ordering::Relaxed);
    }
    assert_eq!(attached.ring_capacity(), 1024);
    assert_eq!(attached, l);
}
