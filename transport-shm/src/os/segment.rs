//! A mapped segment with its process-local layout: the glue between [`crate::os::sys`],
//! [`crate::os::mapping`], [`crate::core::layout`] and [`crate::core::ring`].
//!
//! * The creator (side A) calls [`Segment::create`], which makes a sealed memfd, writes the
//!   header (magic last) and returns the fd to pass to the peer.
//! * The attacher (side B) calls [`Segment::attach`] with the received fd: the mapping is checked
//!   (sealed, size) and the geometry is read from the header once and validated against the
//!   mapping length (INVARIANTS 3, 22, 24).
//!
//! All views are computed from the local [`Layout`]; nothing is ever re-read from the header.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;

use crate::core::codec::SlotRef;
use crate::core::layout::{
    Direction, Geometry, HEADER_WORDS, Layout, LayoutError, STATE_ATTACHED, STATE_CLOSED, Side,
};
use crate::core::ring::{
    CompletionConsumer, CompletionProducer, DescConsumer, DescProducer, RingError,
};
use crate::core::sync::Ordering;
use crate::os::mapping::{Mapping, MappingError, SharedWords};
use crate::os::sys::{self, OsError};

/// Why a segment could not be created, attached or viewed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SegmentError {
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
    pub(crate) fn create(geometry: Geometry) -> Result<(OwnedFd, Segment), SegmentError> {
        let layout = Layout::new(geometry)?;
        let (fd, raw) = sys::create_segment(layout.total_len())?;
        let seg = Segment::init(Mapping::new(raw), layout)?;
        Ok((fd, seg))
    }

    /// Lays out a fresh, zero-filled mapping: writes the header (magic last).
    pub(crate) fn init(map: Arc<Mapping>, layout: Layout) -> Result<Segment, SegmentError> {
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
    pub(crate) fn attach(fd: BorrowedFd<'_>) -> Result<Segment, SegmentError> {
        let raw = sys::map_segment(fd)?;
        Segment::from_mapping(Mapping::new(raw))
    }

    /// Maps only the region `offset..offset + len` of a hub segment received from the hub
    /// (page-aligned, inside the file) and validates the region's own pair header: the result
    /// is a pair segment in every respect, and no byte outside the region is mapped.
    pub(crate) fn attach_region(
        fd: BorrowedFd<'_>,
        offset: u64,
        len: u64,
    ) -> Result<Segment, SegmentError> {
        let raw = sys::map_segment_range(fd, offset, len)?;
        Segment::from_mapping(Mapping::new(raw))
    }

    /// Validates the header of an existing mapping and computes the local layout.
    pub(crate) fn from_mapping(map: Arc<Mapping>) -> Result<Segment, SegmentError> {
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

    /// Maps the payload memory of direction `d` (the peer's slots, when `d` is what this side
    /// receives) read-only in this process: `Ok(false)` where the system's pages are larger
    /// than [`crate::core::layout::PAYLOAD_ALIGN`] and it stays writable.
    pub(crate) fn protect_payloads(&self, d: Direction) -> Result<bool, SegmentError> {
        let dl = self.layout.dir(d);
        Ok(self
            .map
            .protect_read_only(dl.payload_offset, dl.payload_len)?)
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
    pub(crate) fn desc_ring(&self, d: Direction) -> SharedWords {
        let dl = self.layout.dir(d);
        self.words(dl.desc_ring_offset, dl.desc_ring_words)
    }

    /// The completion ring region of direction `d`.
    pub fn completion_ring(&self, d: Direction) -> SharedWords {
        let dl = self.layout.dir(d);
        self.words(dl.completion_ring_offset, dl.completion_ring_words)
    }

    /// Attaches as producer of `d`'s descriptor ring (the sender of `d`).
    pub(crate) fn desc_producer(
        &self,
        d: Direction,
    ) -> Result<DescProducer<SharedWords>, RingError> {
        DescProducer::attach(self.desc_ring(d), self.layout.ring_capacity())
    }

    /// Attaches as consumer of `d`'s descriptor ring (the receiver of `d`).
    pub(crate) fn desc_consumer(
        &self,
        d: Direction,
    ) -> Result<DescConsumer<SharedWords>, RingError> {
        DescConsumer::attach(self.desc_ring(d), self.layout.ring_capacity())
    }

    /// Attaches as producer of `d`'s completion ring (the receiver of `d`, returning slots).
    pub(crate) fn completion_producer(
        &self,
        d: Direction,
    ) -> Result<CompletionProducer<SharedWords>, RingError> {
        CompletionProducer::attach(
            self.completion_ring(d),
            self.layout.dir(d).completion_capacity,
        )
    }

    /// Attaches as consumer of `d`'s completion ring (the sender of `d`, taking slots back).
    pub(crate) fn completion_consumer(
        &self,
        d: Direction,
    ) -> Result<CompletionConsumer<SharedWords>, RingError> {
        CompletionConsumer::attach(
            self.completion_ring(d),
            self.layout.dir(d).completion_capacity,
        )
    }

    /// The payload bytes of slot `(class, index)` of direction `d` (range-checked against the
    /// local geometry; the generation is not looked at). For tests and diagnostics: the
    /// send and receive paths use [`Segment::slot_span`].
    #[cfg(test)]
    pub(crate) fn slot(
        &self,
        d: Direction,
        slot: SlotRef,
    ) -> Result<crate::os::mapping::SharedBytes, SegmentError> {
        let (offset, size) = self.slot_range(d, slot)?;
        Ok(self.map.bytes(offset, size)?)
    }

    /// The first byte and size of `slot` of direction `d`, checked like [`Segment::slot`]
    /// without taking a reference to the mapping (the hot path's lease and receive hold the
    /// session, which holds the mapping).
    #[inline]
    pub(crate) fn slot_span(
        &self,
        d: Direction,
        slot: SlotRef,
    ) -> Result<(std::ptr::NonNull<u8>, usize), SegmentError> {
        let (offset, size) = self.slot_range(d, slot)?;
        Ok(self.map.span(offset, size)?)
    }

    /// Byte offset and size of `slot` of direction `d` in the layout.
    #[inline]
    fn slot_range(&self, d: Direction, slot: SlotRef) -> Result<(usize, usize), SegmentError> {
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
        Ok((offset, c.slot_size as usize))
    }

    /// Announces that `side` attached, with its pid.
    pub(crate) fn mark_attached(&self, side: Side, pid: i32) {
        let h = self.header();
        h[side.pid_word()].store(pid as u32 as u64, Ordering::Relaxed);
        h[side.state_word()].fetch_or(STATE_ATTACHED, Ordering::Release);
    }

    /// Announces that `side` closed gracefully (after publishing everything it sent).
    pub(crate) fn mark_closed(&self, side: Side) {
        self.header()[side.state_word()].fetch_or(STATE_CLOSED, Ordering::Release);
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
mod tests;
