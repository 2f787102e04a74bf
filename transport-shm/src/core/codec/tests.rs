//! Unit tests of `codec`.

use super::*;
use proptest::prelude::*;

fn header() -> FrameHeader {
    FrameHeader {
        msg_id: 0x0102_0304_0506_0708,
        channel: 9,
        method: 10,
        flags: 11,
        credit: 12,
        deadline_ns: 13,
    }
}

#[test]
fn inline_round_trip_and_header_bytes() {
    let g = Geometry::default();
    let d = Descriptor::inline(header(), b"hello, world!").unwrap();
    let w = d.encode();
    // Words 0..4 are exactly the API's header encoding.
    let hb = header().to_bytes();
    assert_eq!(w[0].to_le_bytes(), hb[0..8]);
    assert_eq!(w[3].to_le_bytes(), hb[24..32]);
    let back = Descriptor::decode(&w, &g).unwrap();
    assert_eq!(back, d);
    assert_eq!(back.inline_head().unwrap(), b"hello, world!");
    assert_eq!(back.continuations(), 0);
    assert!(Descriptor::inline(header(), &[0; INLINE_MAX + 1]).is_none());
    let empty = Descriptor::inline(header(), &[]).unwrap();
    assert!(Descriptor::decode(&empty.encode(), &g).unwrap().is_empty());
}

#[test]
fn inline_units_round_trip_at_every_length() {
    let g = Geometry::default();
    let payload: Vec<u8> = (0..INLINE_MAX).map(|i| (i * 7 + 3) as u8).collect();
    for len in 0..=INLINE_MAX {
        let bytes = &payload[..len];
        let d = Descriptor::inline(header(), bytes).unwrap();
        let first = d.encode();
        let mut conts = [[u64::MAX; 8]; MAX_CONT];
        let n = Descriptor::encode_continuations(bytes, &mut conts);
        assert_eq!(n, continuations(len), "len {len}");
        // Word 4 of every entry stays free for the ring's stamp.
        assert_eq!(first[4] >> 48, 0);
        assert!(conts[..n].iter().all(|e| e[4] == 0));
        let back = Descriptor::decode(&first, &g).unwrap();
        assert_eq!(back.len(), len);
        assert_eq!(back.continuations(), n);
        let head = back.inline_head().unwrap();
        let mut out = vec![0u8; len];
        out[..head.len()].copy_from_slice(head);
        for (k, e) in conts[..n].iter().enumerate() {
            Descriptor::read_continuation(e, &mut out[INLINE_HEAD + k * CONT_BYTES..]);
        }
        assert_eq!(out, bytes, "len {len}");
    }
}

/// The wire layout pinned by fixed values, independent of the encoder: a change of byte
/// order or of the continuation word layout would pass every round trip but break peers
/// built from another version.
#[test]
fn inline_unit_wire_layout_is_fixed() {
    let bytes: Vec<u8> = (0..=239).collect();
    let le = |from: u8| u64::from_le_bytes(std::array::from_fn(|k| from + k as u8));
    let h = header();
    let mut conts = [[0; 8]; MAX_CONT];
    let (first, n) = encode_inline_unit(&h, &bytes, &mut conts).unwrap();
    assert_eq!(n, 4);
    assert_eq!(first[0], 0x0102_0304_0506_0708);
    assert_eq!(first[1], 9 | 10 << 32);
    assert_eq!(first[2], 11 | 12 << 32);
    assert_eq!(first[3], 13);
    assert_eq!(first[4], 240);
    assert_eq!(first[5], 0);
    assert_eq!(
        (first[6], first[7]),
        (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908)
    );
    assert_eq!(conts[0][0], le(16));
    assert_eq!(conts[0][3], le(40));
    assert_eq!(conts[0][4], 0);
    assert_eq!(conts[0][5], le(48));
    assert_eq!(conts[0][7], le(64));
    assert_eq!(conts[1][0], le(72));
    assert_eq!(conts[3][7], 0xefee_edec_ebea_e9e8);
    // A short tail is zero-padded.
    let (first, n) = encode_inline_unit(&h, &bytes[..11], &mut conts).unwrap();
    assert_eq!((n, first[6], first[7]), (0, le(0), 0x0a_0908));
}

#[test]
fn word_codec_round_trips_at_every_length() {
    let payload: Vec<u8> = (0..INLINE_MAX).map(|i| (i * 13 + 5) as u8).collect();
    for len in 0..=INLINE_MAX {
        let bytes = &payload[..len];
        let mut conts = [[u64::MAX; 8]; MAX_CONT];
        let (first, n) = encode_inline_unit(&header(), bytes, &mut conts).unwrap();
        assert_eq!(
            first,
            Descriptor::inline(header(), bytes).unwrap().encode(),
            "len {len}"
        );
        assert_eq!(n, continuations(len));
        // Continuations: stamp word clear, bytes where `read_continuation` finds them,
        // zero padding after the payload.
        let mut out = vec![0u8; n * CONT_BYTES];
        for (k, e) in conts[..n].iter().enumerate() {
            assert_eq!(e[4], 0);
            Descriptor::read_continuation(e, &mut out[k * CONT_BYTES..]);
        }
        let rest = bytes.get(INLINE_HEAD..).unwrap_or(&[]);
        assert_eq!(&out[..rest.len()], rest, "len {len}");
        assert!(out[rest.len()..].iter().all(|&b| b == 0), "len {len}");
        // The receive side's word reader gives back the first 64 bytes.
        let cont = if n > 0 { conts[0] } else { [0; 8] };
        let small = inline_small_bytes(&first, |i| cont[i]);
        let k = len.min(small.len());
        assert_eq!(&small[..k], &bytes[..k], "len {len}");
    }
    let mut conts = [[0; 8]; MAX_CONT];
    assert!(encode_inline_unit(&header(), &[0; INLINE_MAX + 1], &mut conts).is_none());
}

/// The send path picks the smallest padded copy for each size: every one must give the
/// same words as the full-size unit (which the fixed-layout test pins), and refuse only
/// payloads longer than it holds.
#[test]
fn every_padded_unit_size_gives_the_same_words() {
    fn check<const N: usize>(bytes: &[u8], reference: &InlineUnit<INLINE_MAX>) {
        let len = bytes.len();
        let Some(u) = InlineUnit::<N>::new(&header(), bytes) else {
            assert!(len > N, "len {len} refused by a {N}-byte unit");
            return;
        };
        assert!(len <= N, "len {len} accepted by a {N}-byte unit");
        assert_eq!(u.entries(), reference.entries(), "len {len}, N {N}");
        for e in 0..u.entries() {
            for i in 0..8 {
                assert_eq!(
                    u.word(e, i),
                    reference.word(e, i),
                    "len {len} N {N} ({e}, {i})"
                );
            }
        }
    }
    let payload: Vec<u8> = (0..INLINE_MAX).map(|i| (i * 29 + 3) as u8).collect();
    for len in 0..=INLINE_MAX {
        let bytes = &payload[..len];
        let reference = InlineUnit::<INLINE_MAX>::new(&header(), bytes).unwrap();
        assert_eq!(reference.entries(), 1 + continuations(len));
        check::<INLINE_HEAD>(bytes, &reference);
        check::<{ INLINE_HEAD + CONT_BYTES }>(bytes, &reference);
    }
    assert!(InlineUnit::<INLINE_MAX>::new(&header(), &[0; INLINE_MAX + 1]).is_none());
}

#[test]
fn slot_round_trip() {
    let g = Geometry::default();
    let slot = SlotRef {
        class: 3,
        index: 3,
        generation: u32::MAX,
    };
    let d = Descriptor::slot(header(), slot, 1 << 20);
    assert_eq!(Descriptor::decode(&d.encode(), &g).unwrap(), d);
    assert_eq!(d.len(), 1 << 20);
    assert_eq!(d.inline_head(), None);
    assert_eq!(d.continuations(), 0);
}

#[test]
fn entry_round_trip() {
    let s = SlotRef {
        class: 7,
        index: (1 << 24) - 1,
        generation: 0xdead_beef,
    };
    assert_eq!(SlotRef::from_entry(s.to_entry()), s);
}

#[test]
fn bad_descriptor_is_corrupt_not_a_panic() {
    let g = Geometry::default();
    let base = Descriptor::slot(
        header(),
        SlotRef {
            class: 0,
            index: 0,
            generation: 0,
        },
        10,
    )
    .encode();
    assert_eq!(base[5], 0);
    let with = |i: usize, v: u64| {
        let mut w = base;
        w[i] = v;
        w
    };
    let slot_w4 = |len: u64, class: u64| len | (1 << 32) | (class << 40);
    let cases = [
        (
            with(4, INLINE_MAX as u64 + 1),
            DescriptorError::InlineTooLong {
                len: INLINE_MAX as u32 + 1,
            },
        ),
        (
            with(4, u64::from(u32::MAX)),
            DescriptorError::InlineTooLong { len: u32::MAX },
        ),
        (with(4, 2 << 32), DescriptorError::BadKind { kind: 2 }),
        (
            with(4, slot_w4(10, 4)),
            DescriptorError::BadClass {
                class: 4,
                nclasses: 4,
            },
        ),
        (
            with(4, slot_w4(10, 255)),
            DescriptorError::BadClass {
                class: 255,
                nclasses: 4,
            },
        ),
        (
            with(5, 256),
            DescriptorError::BadIndex {
                class: 0,
                index: 256,
                count: 256,
            },
        ),
        (
            with(4, slot_w4(257, 0)),
            DescriptorError::LenOverSlot {
                len: 257,
                class: 0,
                slot_size: 256,
            },
        ),
        (
            with(4, slot_w4(1, 0) | 1 << 48),
            DescriptorError::ReservedBits {
                word: 4,
                value: slot_w4(1, 0) | 1 << 48,
            },
        ),
    ];
    for (w, expected) in cases {
        assert_eq!(Descriptor::decode(&w, &g), Err(expected));
    }
    // Inline descriptor with slot fields set.
    let mut w = Descriptor::inline(header(), b"x").unwrap().encode();
    w[5] = 7;
    assert_eq!(
        Descriptor::decode(&w, &g),
        Err(DescriptorError::ReservedBits { word: 5, value: 7 })
    );
}

proptest! {
    #[test]
    fn decode_arbitrary_words_never_panics(w in any::<[u64; 8]>()) {
        let g = Geometry::default();
        match Descriptor::decode(&w, &g) {
            Ok(d) => {
                // A valid descriptor is within the geometry and re-encodes to the same
                // meaning.
                match d.payload {
                    DescPayload::Inline { len, .. } => prop_assert!(usize::from(len) <= INLINE_MAX),
                    DescPayload::Slot { slot, len } => {
                        let c = g.classes[usize::from(slot.class)];
                        prop_assert!(slot.index < c.slot_count);
                        prop_assert!(len <= c.slot_size);
                    }
                }
                prop_assert_eq!(Descriptor::decode(&d.encode(), &g), Ok(d));
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }

    #[test]
    fn header_words_are_the_header_bytes(
        msg_id in any::<u64>(), channel in any::<u32>(), method in any::<u32>(),
        flags in any::<u32>(), credit in any::<u32>(), deadline_ns in any::<u64>()
    ) {
        let h = FrameHeader { msg_id, channel, method, flags, credit, deadline_ns };
        let words = header_words(&h);
        let bytes = h.to_bytes();
        for (i, w) in words.iter().enumerate() {
            prop_assert_eq!(&w.to_le_bytes()[..], &bytes[8 * i..8 * i + 8]);
        }
        let mut all = [0u64; 8];
        all[..4].copy_from_slice(&words);
        prop_assert_eq!(header_from_words(&all), h);
    }

    #[test]
    fn decode_near_valid_words_never_panics(
        len in 0u64..70_000, kind in 0u64..3, class in 0u64..6, index in 0u64..300, generation in any::<u32>()
    ) {
        let g = Geometry::default();
        let mut w = [0u64; 8];
        w[4] = len | kind << 32 | class << 40;
        if kind == 1 {
            w[5] = index | u64::from(generation) << 32;
        }
        let r = Descriptor::decode(&w, &g);
        let valid = match kind {
            0 => len <= INLINE_MAX as u64 && class == 0,
            1 => (class as usize) < g.classes.len()
                && index < u64::from(g.classes[class as usize].slot_count)
                && len <= u64::from(g.classes[class as usize].slot_size),
            _ => false,
        };
        prop_assert_eq!(r.is_ok(), valid, "{:?}", r);
    }
}
