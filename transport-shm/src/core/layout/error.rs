//! Why a geometry or a header was refused ([`LayoutError`]).

use super::{
    HEADER_WORDS, MAGIC, MAX_CLASSES, MAX_RING_CAPACITY, MAX_SEGMENT_LEN, MAX_SLOT_COUNT,
    MAX_SLOT_SIZE, SLOT_ALIGN, VERSION,
};

/// Why a geometry or a header was refused. Each variant names the field and its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The ring capacity is zero, not a power of two, or above [`MAX_RING_CAPACITY`].
    #[error("ring capacity {capacity} must be a power of two in 1..={MAX_RING_CAPACITY}")]
    BadRingCapacity {
        /// The value found.
        capacity: u64,
    },
    /// No class, or more than [`MAX_CLASSES`].
    #[error("class count {count} must be in 1..={MAX_CLASSES}")]
    BadClassCount {
        /// The value found.
        count: u64,
    },
    /// A slot size is zero, not a multiple of [`SLOT_ALIGN`], or above [`MAX_SLOT_SIZE`].
    #[error(
        "class {class}: slot size {size} must be a non-zero multiple of {SLOT_ALIGN} up to {MAX_SLOT_SIZE}"
    )]
    BadSlotSize {
        /// Class index.
        class: usize,
        /// The value found.
        size: u32,
    },
    /// A slot count is zero or above [`MAX_SLOT_COUNT`].
    #[error("class {class}: slot count {count} must be in 1..={MAX_SLOT_COUNT}")]
    BadSlotCount {
        /// Class index.
        class: usize,
        /// The value found.
        count: u32,
    },
    /// Slot sizes must strictly increase from one class to the next.
    #[error("class {class}: slot size {size} is not larger than the previous class's {previous}")]
    SizesNotIncreasing {
        /// Class index.
        class: usize,
        /// Its slot size.
        size: u32,
        /// The previous class's slot size.
        previous: u32,
    },
    /// The segment would be larger than [`MAX_SEGMENT_LEN`] (or overflow).
    #[error("the segment would need more than {MAX_SEGMENT_LEN} bytes")]
    TooLarge,
    /// Header word 0 is not `MAGIC`.
    #[error("bad magic {found:#018x}, expected {MAGIC:#018x}")]
    BadMagic {
        /// The value found.
        found: u64,
    },
    /// Header word 1 is not `VERSION`.
    #[error("unsupported layout version {found}, expected {VERSION}")]
    BadVersion {
        /// The value found.
        found: u64,
    },
    /// A header word that must be zero (unused class, reserved) is not.
    #[error("header word {word} must be zero but holds {value:#x}")]
    NonZeroReserved {
        /// Word index in the header.
        word: usize,
        /// The value found.
        value: u64,
    },
    /// The total length stored in the header differs from the one computed from its geometry.
    #[error("header says the segment is {stored} bytes but its geometry needs {computed}")]
    TotalLenMismatch {
        /// Length stored in the header.
        stored: u64,
        /// Length computed from the header's geometry.
        computed: u64,
    },
    /// The mapping is shorter than the layout needs.
    #[error("the mapping is {mapping_len} bytes but the layout needs {needed}")]
    MappingTooSmall {
        /// Length of the mapping.
        mapping_len: usize,
        /// Length the layout needs.
        needed: usize,
    },
    /// Fewer header words were given than `HEADER_WORDS`.
    #[error("the header needs {HEADER_WORDS} words, got {got}")]
    HeaderTooShort {
        /// Number of words given.
        got: usize,
    },
}
