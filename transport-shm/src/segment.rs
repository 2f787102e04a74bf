//! A mapped segment with its process-local layout: the glue between [`crate::os`],
//! [`crate::mapping`], [`crate::layout`] and [`crate::ring`].
//!
//! * The creator (side A) calls [`Segment::create`], which makes a sealed memfd, writes the
//!   header (magic last) and returns the fd to pass to the peer.
//! * The attacher (side B) calls [`Segment::attach`] with the received fd: the mapping is checked
//!   (sealed, size) and the geometry is read from the header once and validated against the
//!   mapping length (LESSONS 3, 22, 24).
//!
//! All views are computed from the local [`Layout`]; nothing is ever re-read from the header.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;

use crate::descriptor::SlotRef;
use crate::layout::{
    Direction, Geometry, HEADER_WORDS, Layout, LayoutError, STATE_ATTACHED, STATE_CLOSED, Side,
};
use crate::mapping::{Mapping, MappingError, SharedBytes, SharedWords};
use crate::os::{self, OsError};
use crate::ring::{CompletionConsumer, CompletionProducer, DescConsumer, DescProducer, RingError};
use crate::sync::Ordering;

/// Why a segment could not be created, attached or viewed.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// A system call or OS-level check failed.
    #[error(transparent)]
    Os(#[from] OsError),
    /// The geometry or header is invalid.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// A view fell outside the mapping (a bug: layouts are validated against the mapping).
    #[error(transparent)]
    Mapping(#[from] MappingError),
    /// A slot reference is out of range for the local geometry.
    #[error("slot {index} of class {class} does not exist in this segment")]
    NoSuchSlot {
        /// The class.
        class: u8,
        /// The index.
        index: u32,
    },
}

/// What one side's state word says (values written by that side; untrusted for the peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideState {
    /// The side attached.
    pub attached: bool,
    /// The side closed gracefully.
    pub closed: bool,
    /// The pid it announced, when it is a plausible pid (1..=i32::MAX).
    pub pid: Option<i32>,
    /// The raw state word (unknown bits are kept for diagnostics).
    pub raw: u64,
}

/// A mapped, validated segment. Cheap to clone (two `Arc`s).
#[derive(Debug, Clone)]
pub struct Segment {
    map: Arc<Mapping>,
    layout: Arc<Layout>,
}

impl Segment {
    /// Creates a sealed memfd segment for `geometry`, writes its header and returns the fd to
    /// send to the peer.
    pub fn create(geometry: Geometry) -> Result<(OwnedFd, Segment), SegmentError> {
        let layout = Layout::new(geometry)?;
        let (fd, raw) = os::create_segment(layout.total_len())?;
        let seg = Segment::init(Mapping::new(raw), layout)?;
        Ok((fd, seg))
    }

    /// Lays out a fresh, zero-filled mapping: writes the header (magic last).
    pub fn init(map: Arc<Mapping>, layout: Layout) -> Result<Segment, SegmentError> {
        if map.len() < layout.total_len() {
            return Err(LayoutError::MappingTooSmall {
                mapping_len: map.len(),
                needed: layout.total_len(),
            }
            .into());
        }
        let header = map.words(0, HEADER_WORDS)?;
        layout.write_header(&header)?;
        Ok(Segment {
            map,
            layout: Arc::new(layout),
        })
    }

    /// Maps a segment received from the peer and validates its header.
    pub fn attach(fd: BorrowedFd<'_>) -> Result<Segment, SegmentError> {
        let raw = os::map_segment(fd)?;
        Segment::from_mapping(Mapping::new(raw))
    }

    /// Maps only the region `offset..offset + len` of a hub segment received from the hub
    /// (page-aligned, inside the file) and validates the region's own pair header: the result
    /// is a pair segment in every respect, and no byte outside the region is mapped.
    pub fn attach_region(
        fd: BorrowedFd<'_>,
        offset: u64,
        len: u64,
    ) -> Result<Segment, SegmentError> {
        let raw = os::map_segment_range(fd, offset, len)?;
        Segment::from_mapping(Mapping::new(raw))
    }

    /// Validates the header of an existing mapping and computes the local layout.
    pub fn from_mapping(map: Arc<Mapping>) -> Result<Segment, SegmentError> {
        let header = map.words(0, HEADER_WORDS)?;
        let layout = Layout::from_header(&header, map.len())?;
        Ok(Segment {
            map,
            layout: Arc::new(layout),
        })
    }

    /// The process-local layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The mapping.
    pub fn mapping(&self) -> &Arc<Mapping> {
        &self.map
    }

    /// The header words.
    pub fn header(&self) -> SharedWords {
        self.words(0, HEADER_WORDS)
    }

    fn words(&self, offset: usize, count: usize) -> SharedWords {
        // The layout was validated against the mapping length (`init` / `from_header`), so
        // every region it describes is inside the mapping and 64-byte aligned.
        match self.map.words(offset, count) {
            Ok(w) => w,
            Err(e) => unreachable!("validated layout region outside the mapping: {e}"),
        }
    }

    /// The descriptor ring region of direction `d`.
    pub fn desc_ring(&self, d: Direction) -> SharedWords {
        let dl = self.layout.dir(d);
        self.words(dl.desc_ring_offset, dl.desc_ring_words)
    }

    /// The completion ring region of direction `d`.
    pub fn completion_ring(&self, d: Direction) -> SharedWords {
        let dl = self.layout.dir(d);
        self.words(dl.completion_ring_offset, dl.completion_ring_words)
    }

    /// Attaches as producer of `d`'s descriptor ring (the sender of `d`).
    pub fn desc_producer(&self, d: Direction) -> Result<DescProducer<SharedWords>, RingError> {
        DescProducer::attach(self.desc_ring(d), self.layout.ring_capacity())
    }

    /// Attaches as consumer of `d`'s descriptor ring (the receiver of `d`).
    pub fn desc_consumer(&self, d: Direction) -> Result<DescConsumer<SharedWords>, RingError> {
        DescConsumer::attach(self.desc_ring(d), self.layout.ring_capacity())
    }

    /// Attaches as producer of `d`'s completion ring (the receiver of `d`, returning slots).
    pub fn completion_producer(
        &self,
        d: Direction,
    ) -> Result<CompletionProducer<SharedWords>, RingError> {
        CompletionProducer::attach(
            self.completion_ring(d),
            self.layout.dir(d).completion_capacity,
        )
    }

    /// Attaches as consumer of `d`'s completion ring (the sender of `d`, taking slots back).
    pub fn completion_consumer(
        &self,
        d: Direction,
    ) -> Result<CompletionConsumer<SharedWords>, RingError> {
        CompletionConsumer::attach(
            self.completion_ring(d),
            self.layout.dir(d).completion_capacity,
        )
    }

    /// The payload bytes of slot `(class, index)` of direction `d` (range-checked against the
    /// local geometry; the generation is not looked at).
    pub fn slot(&self, d: Direction, slot: SlotRef) -> Result<SharedBytes, SegmentError> {
        let c = self
            .layout
            .dir(d)
            .classes
            .get(usize::from(slot.class))
            .filter(|c| slot.index < c.slot_count)
            .ok_or(SegmentError::NoSuchSlot {
                class: slot.class,
                index: slot.index,
            })?;
        let offset = c.offset + slot.index as usize * c.slot_size as usize;
        Ok(self.map.bytes(offset, c.slot_size as usize)?)
    }

    /// Announces that `side` attached, with its pid.
    pub fn mark_attached(&self, side: Side, pid: i32) {
        let h = self.header();
        h[side.pid_word()].store(pid as u32 as u64, Ordering::Relaxed);
        h[side.state_word()].fetch_or(STATE_ATTACHED, Ordering::Release);
    }

    /// Announces that `side` closed gracefully (after publishing everything it sent).
    pub fn mark_closed(&self, side: Side) {
        self.header()[side.state_word()].fetch_or(STATE_CLOSED, Ordering::Release);
    }

    /// Clears `side`'s state (before a new peer takes that side).
    pub fn reset_side(&self, side: Side) {
        let h = self.header();
        h[side.state_word()].store(0, Ordering::Release);
        h[side.pid_word()].store(0, Ordering::Relaxed);
    }

    /// Reads `side`'s state word and pid (untrusted when `side` is the peer).
    pub fn side_state(&self, side: Side) -> SideState {
        let h = self.header();
        let raw = h[side.state_word()].load(Ordering::Acquire);
        let pid = h[side.pid_word()].load(Ordering::Relaxed);
        SideState {
            attached: raw & STATE_ATTACHED != 0,
            closed: raw & STATE_CLOSED != 0,
            pid: i32::try_from(pid).ok().filter(|p| *p > 0),
            raw,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::{DescPayload, Descriptor};
    use crate::layout::{SlotClass, hdr};
    use crate::pool::{HeldSet, SenderPool};
    use crate::ring::PushError;
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
        a.mark_attached(Side::A, os::current_pid());
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
    fn lesson_02_reattach_over_real_segment() {
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
    fn lesson_24_attacher_rejects_bad_header() {
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
        fn lesson_23_hostile_peer_writes_never_panic(
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
}
