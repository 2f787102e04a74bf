//! Why a ring operation failed.

/// Why a ring could not be used: bad local parameters, or an index the peer published that
/// breaks the protocol (then the session must be closed as corrupt).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RingError {
    /// The capacity is zero or not a power of two.
    #[error("ring capacity {capacity} is not a non-zero power of two")]
    BadCapacity {
        /// The capacity given.
        capacity: u32,
    },
    /// The region is too small for the capacity.
    #[error("ring region has {words} words, needs {needed}")]
    RegionTooSmall {
        /// Words given.
        words: usize,
        /// Words needed.
        needed: usize,
    },
    /// The producer's published head is outside `[min, max]` (went backwards, or claims more
    /// entries than the ring holds).
    #[error("ring head {head} is outside the valid range [{min}, {max}]")]
    HeadOutOfRange {
        /// Head read from shared memory.
        head: u64,
        /// Smallest valid value (last head seen).
        min: u64,
        /// Largest valid value (tail + capacity).
        max: u64,
    },
    /// The consumer's published tail is outside `[min, max]` (went backwards, or past the head).
    #[error("ring tail {tail} is outside the valid range [{min}, {max}]")]
    TailOutOfRange {
        /// Tail read from shared memory.
        tail: u64,
        /// Smallest valid value (last tail seen).
        min: u64,
        /// Largest valid value (the head).
        max: u64,
    },
}

/// Why [`Producer::try_push`](super::Producer::try_push) did not push.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PushError {
    /// The ring is full right now; wait (see [`Producer::prepare_park`](super::Producer::prepare_park)) and retry.
    #[error("the ring is full")]
    Full,
    /// The unit has more entries than the ring holds (or none): it can never be pushed.
    #[error("a unit of {entries} entries does not fit a ring of {capacity}")]
    BadUnit {
        /// Entries in the unit.
        entries: usize,
        /// Capacity of the ring.
        capacity: u64,
    },
    /// The consumer published an invalid tail.
    #[error(transparent)]
    Corrupt(#[from] RingError),
}
