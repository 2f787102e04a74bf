//! Segment geometry and layout: where everything lives inside the shared segment.
//!
//! A [`Geometry`] is what the creator chooses (ring capacity and slot size classes, the same for
//! both directions). [`Layout::new`] validates it and computes every offset once. The creator
//! writes the geometry into the header ([`Layout::write_header`]); the attacher reads it back
//! **once** with [`Layout::from_header`], validates every field against the rules below and the
//! real mapping length, and from then on uses only its process-local [`Layout`] — nothing about
//! the geometry is ever re-read from shared memory (INVARIANTS 3 and 24).
//!
//! # Segment layout (all offsets are multiples of 64 bytes; payload areas start and end on
//! [`PAYLOAD_ALIGN`] boundaries, so that a receiver can map its peer's payloads read-only)
//!
//! ```text
//! header (256 B):
//!   line 0: magic, version, ring capacity, class count, 8 class words (size | count << 32)
//!   line 1: total segment length, reserved (zero)
//!   line 2: side A state word (ATTACHED | CLOSED bits), side A pid
//!   line 3: side B state word, side B pid
//! for each direction d in [A→B, B→A]:
//!   descriptor ring: control block (2 lines) + ring_capacity × 64-byte descriptors
//!   completion ring: control block (2 lines) + completion_capacity × 8-byte entries, padded to 64 B
//!   padding to PAYLOAD_ALIGN, payload area of class 0, class 1, … (slot_count × slot_size
//!   bytes each), padding to PAYLOAD_ALIGN
//! ```
//!
//! Every word of the header and of the rings is a little-endian `u64` accessed only through
//! atomics (see [`crate::core::ring`]); only payload bytes are plain memory.

use crate::core::ring;
use crate::core::sync::{AtomicU64, Ordering};

/// Magic number at word 0 of the header: `"TSHMSEG1"` in little-endian bytes.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"TSHMSEG1");
/// Layout version written at word 1 of the header.
pub(crate) const VERSION: u32 = 2;
/// Largest number of slot size classes.
pub const MAX_CLASSES: usize = 8;
/// Largest descriptor ring capacity (descriptors per direction).
pub const MAX_RING_CAPACITY: u32 = 1 << 16;
/// Smallest slot size; every slot size is a multiple of this (one cache line).
pub const SLOT_ALIGN: u32 = 64;
/// Largest slot size (256 MiB).
pub const MAX_SLOT_SIZE: u32 = 1 << 28;
/// Largest number of slots in one class. Total slots of a direction stay below 2^24, the width of
/// the slot index in a completion entry.
pub const MAX_SLOT_COUNT: u32 = 1 << 16;
/// Largest segment size this crate creates or accepts (1 TiB).
pub const MAX_SEGMENT_LEN: u64 = 1 << 40;
/// Cache line size used for alignment.
pub(crate) const CACHE_LINE: usize = 64;
/// Alignment of each direction's payload memory (its start and its end): one page on the
/// platforms this crate targets, so that the receiver can protect the whole of it read-only
/// without touching the rings around it.
pub const PAYLOAD_ALIGN: usize = 4096;

/// Number of `u64` words in the header.
pub(crate) const HEADER_WORDS: usize = 32;
/// Size of the header in bytes.
pub(crate) const HEADER_LEN: usize = HEADER_WORDS * 8;

/// Header word indices.
pub(crate) mod hdr {
    /// Magic number ([`super::MAGIC`]); written last by the creator (Release).
    pub(crate) const MAGIC: usize = 0;
    /// Layout version ([`super::VERSION`]).
    pub(crate) const VERSION: usize = 1;
    /// Descriptor ring capacity.
    pub(crate) const RING_CAPACITY: usize = 2;
    /// Number of slot size classes.
    pub(crate) const NCLASSES: usize = 3;
    /// First of [`super::MAX_CLASSES`] class words: `slot_size | slot_count << 32`.
    pub(crate) const CLASSES: usize = 4;
    /// Total segment length in bytes, as computed by the creator.
    pub(crate) const TOTAL_LEN: usize = 12;
    /// First reserved word (must be zero) on line 1.
    pub(crate) const RESERVED_START: usize = 13;
    /// End (exclusive) of the reserved words on line 1.
    pub(crate) const RESERVED_END: usize = 16;
    /// Side A state word (bits [`super::STATE_ATTACHED`], [`super::STATE_CLOSED`]).
    pub(crate) const SIDE_A_STATE: usize = 16;
    /// Side A process id.
    pub(crate) const SIDE_A_PID: usize = 17;
    /// Side B state word.
    pub(crate) const SIDE_B_STATE: usize = 24;
    /// Side B process id.
    pub(crate) const SIDE_B_PID: usize = 25;
}

/// Side state bit: the side has attached to the segment.
pub(crate) const STATE_ATTACHED: u64 = 1;
/// Side state bit: the side has closed gracefully (after publishing everything it sent).
pub(crate) const STATE_CLOSED: u64 = 2;

/// One of the two ends of a pair segment. Side A creates the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The creator.
    A,
    /// The attacher.
    B,
}

impl Side {
    /// The other side.
    pub fn peer(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    /// The direction this side sends on.
    pub fn tx(self) -> Direction {
        match self {
            Side::A => Direction::AToB,
            Side::B => Direction::BToA,
        }
    }

    /// The direction this side receives on.
    pub fn rx(self) -> Direction {
        self.tx().reverse()
    }

    /// Header word index of this side's state word.
    pub fn state_word(self) -> usize {
        match self {
            Side::A => hdr::SIDE_A_STATE,
            Side::B => hdr::SIDE_B_STATE,
        }
    }

    /// Header word index of this side's pid word.
    pub fn pid_word(self) -> usize {
        match self {
            Side::A => hdr::SIDE_A_PID,
            Side::B => hdr::SIDE_B_PID,
        }
    }
}

/// One direction of traffic; each has its own rings and payload memory owned by its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Side A sends, side B receives (index 0).
    AToB = 0,
    /// Side B sends, side A receives (index 1).
    BToA = 1,
}

impl Direction {
    /// The opposite direction.
    pub fn reverse(self) -> Direction {
        match self {
            Direction::AToB => Direction::BToA,
            Direction::BToA => Direction::AToB,
        }
    }

    /// 0 for A→B, 1 for B→A.
    pub fn index(self) -> usize {
        self as usize
    }
}

mod error;
pub use error::LayoutError;

/// One slot size class: `slot_count` slots of `slot_size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotClass {
    /// Bytes per slot (multiple of 64).
    pub slot_size: u32,
    /// Number of slots.
    pub slot_count: u32,
}

/// What the creator chooses: ring capacity and slot classes, identical for both directions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    /// Descriptors per direction; a power of two.
    pub ring_capacity: u32,
    /// Slot size classes, strictly increasing sizes, at most [`MAX_CLASSES`].
    pub classes: Vec<SlotClass>,
}

impl Default for Geometry {
    /// 1024 ring entries per direction (64 KiB); classes 256 B × 256, 4 KiB × 64, 64 KiB × 16
    /// and 1 MiB × 4 (about 5.1 MiB of payload memory per direction, touched lazily). The
    /// largest payload is therefore 1 MiB; payloads of up to 240 bytes travel inline in the
    /// ring (a descriptor plus up to four continuation entries), so at least 204 such frames
    /// and up to 1024 frames of at most 16 bytes fit in flight.
    fn default() -> Self {
        Geometry {
            ring_capacity: 1024,
            classes: vec![
                SlotClass {
                    slot_size: 256,
                    slot_count: 256,
                },
                SlotClass {
                    slot_size: 4 << 10,
                    slot_count: 64,
                },
                SlotClass {
                    slot_size: 64 << 10,
                    slot_count: 16,
                },
                SlotClass {
                    slot_size: 1 << 20,
                    slot_count: 4,
                },
            ],
        }
    }
}

impl Geometry {
    /// Checks every rule: ring capacity a power of two in `1..=MAX_RING_CAPACITY`; 1 to
    /// [`MAX_CLASSES`] classes; slot sizes non-zero multiples of 64, at most [`MAX_SLOT_SIZE`],
    /// strictly increasing; slot counts in `1..=MAX_SLOT_COUNT`; total size within
    /// [`MAX_SEGMENT_LEN`].
    pub fn validate(&self) -> Result<(), LayoutError> {
        Layout::new(self.clone()).map(|_| ())
    }

    /// Largest payload a slot can carry (the last class's slot size).
    pub fn max_payload(&self) -> usize {
        self.classes.last().map_or(0, |c| c.slot_size as usize)
    }

    /// Total number of slots of one direction.
    pub fn total_slots(&self) -> u64 {
        self.classes.iter().map(|c| u64::from(c.slot_count)).sum()
    }

    fn check_rules(&self) -> Result<(), LayoutError> {
        let cap = self.ring_capacity;
        if cap == 0 || !cap.is_power_of_two() || cap > MAX_RING_CAPACITY {
            return Err(LayoutError::BadRingCapacity {
                capacity: u64::from(cap),
            });
        }
        if self.classes.is_empty() || self.classes.len() > MAX_CLASSES {
            return Err(LayoutError::BadClassCount {
                count: self.classes.len() as u64,
            });
        }
        let mut previous: Option<u32> = None;
        for (class, c) in self.classes.iter().enumerate() {
            if c.slot_size == 0 || c.slot_size % SLOT_ALIGN != 0 || c.slot_size > MAX_SLOT_SIZE {
                return Err(LayoutError::BadSlotSize {
                    class,
                    size: c.slot_size,
                });
            }
            if c.slot_count == 0 || c.slot_count > MAX_SLOT_COUNT {
                return Err(LayoutError::BadSlotCount {
                    class,
                    count: c.slot_count,
                });
            }
            if let Some(previous) = previous
                && c.slot_size <= previous
            {
                return Err(LayoutError::SizesNotIncreasing {
                    class,
                    size: c.slot_size,
                    previous,
                });
            }
            previous = Some(c.slot_size);
        }
        Ok(())
    }
}

/// Where one class's slots live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassLayout {
    /// Bytes per slot.
    pub slot_size: u32,
    /// Number of slots.
    pub slot_count: u32,
    /// Byte offset of slot 0 in the segment.
    pub offset: usize,
}

/// Where one direction's rings and payload memory live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirLayout {
    /// Byte offset of the descriptor ring (control block then entries).
    pub desc_ring_offset: usize,
    /// Length of the descriptor ring region in `u64` words.
    pub desc_ring_words: usize,
    /// Byte offset of the completion ring (control block then entries).
    pub completion_ring_offset: usize,
    /// Length of the completion ring region in `u64` words (padded to a cache line).
    pub completion_ring_words: usize,
    /// Completion ring capacity: next power of two ≥ the direction's total slots.
    pub completion_capacity: u32,
    /// Payload areas, one per class.
    pub classes: Vec<ClassLayout>,
    /// Byte offset of the payload memory (the first class's slots), a multiple of
    /// [`PAYLOAD_ALIGN`].
    pub payload_offset: usize,
    /// Length of the payload memory with its padding, a multiple of [`PAYLOAD_ALIGN`]: only
    /// slots live in `payload_offset..payload_offset + payload_len`.
    pub payload_len: usize,
}

/// A validated geometry with every offset computed: process-local, never re-read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    geometry: Geometry,
    dirs: [DirLayout; 2],
    total_len: usize,
}

fn align_up(v: u64, a: u64) -> Option<u64> {
    Some(v.checked_add(a - 1)? / a * a)
}

impl Layout {
    /// Validates `geometry` and computes the layout.
    pub(crate) fn new(geometry: Geometry) -> Result<Layout, LayoutError> {
        geometry.check_rules()?;
        let too_large = || LayoutError::TooLarge;
        let line = CACHE_LINE as u64;
        let mut off: u64 = HEADER_LEN as u64;
        let total_slots = geometry.total_slots();
        // Bounded by MAX_CLASSES * MAX_SLOT_COUNT = 2^19, so fits in u32 after rounding.
        let completion_capacity = total_slots.next_power_of_two() as u32;
        let desc_ring_words = ring::ring_words(geometry.ring_capacity, ring::DESC_WORDS);
        let completion_ring_words = align_up(
            ring::ring_words(completion_capacity, ring::COMPLETION_WORDS) as u64,
            line / 8,
        )
        .ok_or_else(too_large)? as usize;
        let build_dir = |off: &mut u64| -> Result<DirLayout, LayoutError> {
            let desc_ring_offset = *off;
            *off = off
                .checked_add(desc_ring_words as u64 * 8)
                .ok_or_else(too_large)?;
            let completion_ring_offset = *off;
            *off = off
                .checked_add(completion_ring_words as u64 * 8)
                .ok_or_else(too_large)?;
            let page = PAYLOAD_ALIGN as u64;
            *off = align_up(*off, page).ok_or_else(too_large)?;
            let payload_offset = *off;
            let mut classes = Vec::with_capacity(geometry.classes.len());
            for c in &geometry.classes {
                *off = align_up(*off, line).ok_or_else(too_large)?;
                let offset = *off;
                let bytes = u64::from(c.slot_size) * u64::from(c.slot_count);
                *off = off.checked_add(bytes).ok_or_else(too_large)?;
                if *off > MAX_SEGMENT_LEN {
                    return Err(too_large());
                }
                classes.push(ClassLayout {
                    slot_size: c.slot_size,
                    slot_count: c.slot_count,
                    offset: usize::try_from(offset).map_err(|_| too_large())?,
                });
            }
            *off = align_up(*off, page).ok_or_else(too_large)?;
            let payload_len = *off - payload_offset;
            Ok(DirLayout {
                desc_ring_offset: usize::try_from(desc_ring_offset).map_err(|_| too_large())?,
                desc_ring_words,
                completion_ring_offset: usize::try_from(completion_ring_offset)
                    .map_err(|_| too_large())?,
                completion_ring_words,
                completion_capacity,
                classes,
                payload_offset: usize::try_from(payload_offset).map_err(|_| too_large())?,
                payload_len: usize::try_from(payload_len).map_err(|_| too_large())?,
            })
        };
        let d0 = build_dir(&mut off)?;
        let d1 = build_dir(&mut off)?;
        if off > MAX_SEGMENT_LEN {
            return Err(too_large());
        }
        let total_len = usize::try_from(off).map_err(|_| too_large())?;
        Ok(Layout {
            geometry,
            dirs: [d0, d1],
            total_len,
        })
    }

    /// The geometry this layout was computed from.
    pub(crate) fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Total segment length in bytes.
    pub fn total_len(&self) -> usize {
        self.total_len
    }

    /// Offsets of one direction.
    pub fn dir(&self, d: Direction) -> &DirLayout {
        &self.dirs[d.index()]
    }

    /// Descriptor ring capacity.
    pub(crate) fn ring_capacity(&self) -> u32 {
        self.geometry.ring_capacity
    }

    /// The header words this layout is described by (everything but the side state and the
    /// magic, which [`Layout::write_header`] stores last).
    fn header_values(&self) -> [(usize, u64); 4 + MAX_CLASSES] {
        let mut v = [(0usize, 0u64); 4 + MAX_CLASSES];
        v[0] = (hdr::VERSION, u64::from(VERSION));
        v[1] = (hdr::RING_CAPACITY, u64::from(self.geometry.ring_capacity));
        v[2] = (hdr::NCLASSES, self.geometry.classes.len() as u64);
        v[3] = (hdr::TOTAL_LEN, self.total_len as u64);
        for i in 0..MAX_CLASSES {
            let w = self.geometry.classes.get(i).map_or(0, |c| {
                u64::from(c.slot_size) | (u64::from(c.slot_count) << 32)
            });
            v[4 + i] = (hdr::CLASSES + i, w);
        }
        v
    }

    /// Writes the header into `header` (the first `HEADER_WORDS` words of a fresh, zeroed
    /// segment). The magic is stored last with `Release`, so an attacher that reads it with
    /// `Acquire` sees a complete header (INVARIANTS 22: publish readiness last).
    pub(crate) fn write_header(&self, header: &[AtomicU64]) -> Result<(), LayoutError> {
        if header.len() < HEADER_WORDS {
            return Err(LayoutError::HeaderTooShort { got: header.len() });
        }
        for (i, v) in self.header_values() {
            header[i].store(v, Ordering::Relaxed);
        }
        header[hdr::MAGIC].store(MAGIC, Ordering::Release);
        Ok(())
    }

    /// Reads the geometry from a header **once**, validates every field (magic, version, ring
    /// capacity, class rules, reserved words, stored total length) and checks that the computed
    /// layout fits in `mapping_len` bytes. The returned layout is process-local.
    pub(crate) fn from_header(
        header: &[AtomicU64],
        mapping_len: usize,
    ) -> Result<Layout, LayoutError> {
        if header.len() < HEADER_WORDS {
            return Err(LayoutError::HeaderTooShort { got: header.len() });
        }
        // Read every word exactly once, magic first (Acquire pairs with the creator's Release).
        let mut w = [0u64; 16];
        w[hdr::MAGIC] = header[hdr::MAGIC].load(Ordering::Acquire);
        for (i, slot) in w.iter_mut().enumerate().skip(1) {
            *slot = header[i].load(Ordering::Relaxed);
        }
        if w[hdr::MAGIC] != MAGIC {
            return Err(LayoutError::BadMagic {
                found: w[hdr::MAGIC],
            });
        }
        if w[hdr::VERSION] != u64::from(VERSION) {
            return Err(LayoutError::BadVersion {
                found: w[hdr::VERSION],
            });
        }
        let cap = w[hdr::RING_CAPACITY];
        let ring_capacity = u32::try_from(cap)
            .ok()
            .filter(|c| c.is_power_of_two() && *c <= MAX_RING_CAPACITY)
            .ok_or(LayoutError::BadRingCapacity { capacity: cap })?;
        let n = w[hdr::NCLASSES];
        if n == 0 || n > MAX_CLASSES as u64 {
            return Err(LayoutError::BadClassCount { count: n });
        }
        let n = n as usize;
        let mut classes = Vec::with_capacity(n);
        for i in 0..MAX_CLASSES {
            let word = w[hdr::CLASSES + i];
            if i < n {
                classes.push(SlotClass {
                    slot_size: word as u32,
                    slot_count: (word >> 32) as u32,
                });
            } else if word != 0 {
                return Err(LayoutError::NonZeroReserved {
                    word: hdr::CLASSES + i,
                    value: word,
                });
            }
        }
        let reserved = &w[hdr::RESERVED_START..hdr::RESERVED_END];
        if let Some((i, &value)) = reserved.iter().enumerate().find(|(_, v)| **v != 0) {
            return Err(LayoutError::NonZeroReserved {
                word: hdr::RESERVED_START + i,
                value,
            });
        }
        let layout = Layout::new(Geometry {
            ring_capacity,
            classes,
        })?;
        if w[hdr::TOTAL_LEN] != layout.total_len as u64 {
            return Err(LayoutError::TotalLenMismatch {
                stored: w[hdr::TOTAL_LEN],
                computed: layout.total_len as u64,
            });
        }
        if layout.total_len > mapping_len {
            return Err(LayoutError::MappingTooSmall {
                mapping_len,
                needed: layout.total_len,
            });
        }
        Ok(layout)
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
