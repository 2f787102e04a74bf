//! Single-producer single-consumer rings over atomic views of shared memory.
//!
//! A ring region is `CONTROL_WORDS + capacity × W` `u64` words:
//!
//! ```text
//! word 0  head             (producer's line: written by the producer on every push)
//! word 8  tail             (consumer's line: written by the consumer on every pop)
//! word 16 consumer_parked  (own line: written only when the consumer parks or is woken)
//! word 24 producer_parked  (own line: written only when the producer parks or is woken;
//!                          0, or 1 + the tail at which the waiting producer's unit fits)
//! word 32 entry 0 (W words), entry 1, …
//!
//! The parking flags sit on lines of their own: the producer reads `consumer_parked` after every
//! push, and if it shared the tail's line, every pop would invalidate it (one extra cache miss
//! per frame in each direction).
//! ```
//!
//! Indices are monotonically increasing `u64`s; the slot of index `i` is `i & (capacity - 1)`
//! with the capacity taken from the **process-local** geometry (INVARIANTS 3). Each side keeps its own
//! index privately and only *publishes* it; the index written by the other side is validated on
//! every read (the producer's head must stay within `[last seen head, tail + capacity]`, the
//! consumer's tail within `[last seen tail, head]`), so a hostile peer produces a
//! [`RingError`], never an out-of-range access or a panic.
//!
//! Entries are written with `Relaxed` stores and published by a `Release` store of the head;
//! the consumer loads the head with `Acquire`, reads the entry with `Relaxed` loads and gives the
//! room back with a `Release` store of the tail.
//!
//! # Parking (waking without system calls on the hot path)
//!
//! Both sides use the same Dekker-style handshake, with a `SeqCst` fence between "store my
//! flag/index" and "load the other side's index/flag", so that at least one side sees the other:
//!
//! * A **consumer** that found the ring empty calls [`Consumer::prepare_park`]: it sets
//!   `consumer_parked`, fences, and re-checks the head. `Ok(true)` means it may sleep (on its
//!   eventfd); `Ok(false)` means entries arrived meanwhile (the flag is already cleared). After
//!   waking it calls [`Consumer::unpark`] and pops again.
//! * A **producer**, after [`Producer::try_push`], calls [`Producer::consumer_needs_wake`]: a
//!   fence, then an atomic swap of `consumer_parked` to 0. Only if it returns `true` does the
//!   caller write the consumer's eventfd — once per park, never when nobody sleeps (INVARIANTS 14,
//!   18).
//! * The mirror image serves a producer that waits for space: [`Producer::prepare_park`] /
//!   [`Producer::unpark`], and the consumer calls [`Consumer::producer_needs_wake`] after
//!   popping. The producer announces the tail at which its whole unit fits, so a producer
//!   waiting for several entries is woken once, by the pop that makes room, not by every pop.

use std::ops::Deref;

mod error;

pub(crate) use error::{PushError, RingError};

use crate::core::sync::{AtomicU64, Ordering, fence};

/// Words of the control block (four cache lines).
pub(crate) const CONTROL_WORDS: usize = 32;
/// Words per descriptor entry (64 bytes).
pub(crate) const DESC_WORDS: usize = 8;
/// Words per completion entry.
pub(crate) const COMPLETION_WORDS: usize = 1;

/// In a stamped ring, the entry word whose top 16 bits carry the lap stamp.
pub(crate) const STAMP_WORD: usize = 4;
/// Bit position of the 16-bit lap stamp in [`STAMP_WORD`]. The ring owns these bits: what the
/// caller passes there is replaced on push and cleared on pop.
pub(crate) const STAMP_SHIFT: u32 = 48;
const STAMP_MASK: u64 = 0xFFFF << STAMP_SHIFT;

const HEAD: usize = 0;
const TAIL: usize = 8;
const CONSUMER_PARKED: usize = 16;
const PRODUCER_PARKED: usize = 24;

/// Number of `u64` words a ring of `capacity` entries of `entry_words` words occupies.
pub(crate) const fn ring_words(capacity: u32, entry_words: usize) -> usize {
    CONTROL_WORDS + capacity as usize * entry_words
}

/// The stamp of index `index`: its lap plus one, modulo 2^16, in place. Consecutive laps differ,
/// so an entry left from the previous lap never looks published; a zeroed ring never does either.
fn stamp(index: u64, lap_shift: u32) -> u64 {
    ((index >> lap_shift).wrapping_add(1) & 0xFFFF) << STAMP_SHIFT
}

fn check_region(words: usize, capacity: u32, w: usize) -> Result<u64, RingError> {
    if capacity == 0 || !capacity.is_power_of_two() {
        return Err(RingError::BadCapacity { capacity });
    }
    let needed = ring_words(capacity, w);
    if words < needed {
        return Err(RingError::RegionTooSmall { words, needed });
    }
    Ok(u64::from(capacity))
}

/// The `W` words of the entry at ring position `pos` (`pos < capacity`; `attach` checked that
/// the region holds every position's words, so the range is in bounds).
#[inline]
fn entry_words<const W: usize>(words: &[AtomicU64], pos: u64) -> &[AtomicU64] {
    let base = CONTROL_WORDS + pos as usize * W;
    &words[base..base + W]
}

/// The `producer_parked` word announcing that the producer waits until the consumer's tail
/// reaches `wake_at`: never 0, which means "not parked". (The word 1, written by producers that
/// announced a bare flag, stands for "wake at any tail".)
fn park_word(wake_at: u64) -> u64 {
    wake_at.wrapping_add(1).max(1)
}

/// The tail a `producer_parked` word (nonzero) waits for.
fn park_threshold(word: u64) -> u64 {
    word.wrapping_sub(1)
}

/// `true` when `tail` has reached the threshold announced by the nonzero park word `word`
/// (wrapping comparison: indices never get 2^63 apart). The word 1 is reached by every tail.
fn reached(tail: u64, word: u64) -> bool {
    word == 1 || tail.wrapping_sub(park_threshold(word)) < 1 << 63
}

/// `true` when `x` lies in the wrapping interval `[lo, hi]`.
fn within(x: u64, lo: u64, hi: u64) -> bool {
    x.wrapping_sub(lo) <= hi.wrapping_sub(lo)
}

/// The producing end of a ring of `W`-word entries. Exactly one may exist per ring; it needs
/// `&mut self` to push, so concurrent senders must serialise (INVARIANTS 1).
///
/// `STAMPED` rings (the descriptor rings) also write a lap stamp into every entry, so that the
/// consumer learns that an entry is published from the entry itself: polling one cache line
/// instead of two (the head index, then the entry) takes one cache-line transfer off every
/// frame's way. The head index is still published, for occupancy figures and re-attachment.
#[derive(Debug)]
pub(crate) struct Producer<S, const W: usize, const STAMPED: bool = false> {
    words: S,
    cap: u64,
    lap_shift: u32,
    head: u64,
    cached_tail: u64,
}

/// The consuming end of a ring of `W`-word entries. Exactly one may exist per ring.
#[derive(Debug)]
pub(crate) struct Consumer<S, const W: usize, const STAMPED: bool = false> {
    words: S,
    cap: u64,
    lap_shift: u32,
    tail: u64,
    cached_head: u64,
}

/// A read-only, lock-free view of a stamped ring's entries: whether the entry at an index is
/// published. It lets a caller that keeps its [`Consumer`] behind a lock poll for the next entry
/// with plain loads, taking the lock only once something arrived. Only a hint: the authoritative
/// answer is the consumer's own [`Consumer::peek`].
#[derive(Debug, Clone)]
pub(crate) struct StampProbe<S, const W: usize> {
    words: S,
    mask: u64,
    lap_shift: u32,
}

impl<S: Deref<Target = [AtomicU64]>, const W: usize> StampProbe<S, W> {
    /// True when the entry at `index` carries the stamp of `index` (`Acquire`): it is published
    /// and not yet overwritten by a later lap. Any index is accepted (never out of bounds).
    #[inline]
    pub(crate) fn is_published(&self, index: u64) -> bool {
        let at = CONTROL_WORDS + (index & self.mask) as usize * W + STAMP_WORD;
        self.words
            .get(at)
            .is_some_and(|w| w.load(Ordering::Acquire) & STAMP_MASK == stamp(index, self.lap_shift))
    }
}

/// Producer of the descriptor ring (stamped).
pub(crate) type DescProducer<S> = Producer<S, DESC_WORDS, true>;
/// Consumer of the descriptor ring (stamped).
pub(crate) type DescConsumer<S> = Consumer<S, DESC_WORDS, true>;
/// Producer of the completion ring (the receiver, giving slots back).
pub(crate) type CompletionProducer<S> = Producer<S, COMPLETION_WORDS>;
/// Consumer of the completion ring (the sender, taking slots back).
pub(crate) type CompletionConsumer<S> = Consumer<S, COMPLETION_WORDS>;

impl<S: Deref<Target = [AtomicU64]>, const W: usize, const STAMPED: bool> Producer<S, W, STAMPED> {
    /// Attaches as the producer, resynchronising the private head from the ring's published
    /// head (INVARIANTS 2: a re-attached producer continues where the ring is, not at 0).
    pub(crate) fn attach(words: S, capacity: u32) -> Result<Self, RingError> {
        const { assert!(!STAMPED || W > STAMP_WORD) };
        let cap = check_region(words.len(), capacity, W)?;
        let head = words[HEAD].load(Ordering::Acquire);
        let tail = words[TAIL].load(Ordering::Acquire);
        let (min, max) = (head.wrapping_sub(cap), head);
        if !within(tail, min, max) {
            return Err(RingError::TailOutOfRange { tail, min, max });
        }
        Ok(Producer {
            words,
            cap,
            lap_shift: capacity.trailing_zeros(),
            head,
            cached_tail: tail,
        })
    }

    /// Index of the next entry to publish.
    pub(crate) fn head(&self) -> u64 {
        self.head
    }

    /// Capacity in entries (from the local geometry).
    pub(crate) fn capacity(&self) -> u64 {
        self.cap
    }

    fn load_tail(&mut self) -> Result<u64, RingError> {
        let tail = self.words[TAIL].load(Ordering::Acquire);
        if !within(tail, self.cached_tail, self.head) {
            return Err(RingError::TailOutOfRange {
                tail,
                min: self.cached_tail,
                max: self.head,
            });
        }
        self.cached_tail = tail;
        Ok(tail)
    }

    /// Reads and validates the consumer's tail now: every entry before it has been consumed.
    pub(crate) fn consumed_up_to(&mut self) -> Result<u64, RingError> {
        self.load_tail()
    }

    /// Number of entries that can be pushed right now (reads the consumer's tail).
    pub(crate) fn free_space(&mut self) -> Result<u64, RingError> {
        let tail = self.load_tail()?;
        Ok(self.cap - self.head.wrapping_sub(tail))
    }

    /// Publishes one entry, or reports [`PushError::Full`].
    pub(crate) fn try_push(&mut self, entry: &[u64; W]) -> Result<(), PushError> {
        self.try_push_unit(entry, &[])
    }

    /// Publishes `first` and then `rest` as one unit in consecutive positions: the consumer
    /// sees all of them or none (in a stamped ring, the first entry's stamp is written last and
    /// covers the others). [`PushError::Full`] when they do not fit right now.
    #[inline]
    pub(crate) fn try_push_unit(
        &mut self,
        first: &[u64; W],
        rest: &[[u64; W]],
    ) -> Result<(), PushError> {
        self.try_push_unit_with(1 + rest.len(), |e, i| match e.checked_sub(1) {
            None => first[i],
            Some(c) => rest[c][i],
        })
    }

    /// [`Producer::try_push_unit`] for a unit of `entries` entries whose words are produced by
    /// `word(e, i)` (word `i` of entry `e`, 0 being the first): each is stored straight into
    /// the ring, with no intermediate copy of the unit. Called once per word, in the order the
    /// words are stored: the continuation entries in order, then the first entry, its stamp
    /// word last.
    #[inline(always)]
    pub(crate) fn try_push_unit_with(
        &mut self,
        entries: usize,
        word: impl Fn(usize, usize) -> u64,
    ) -> Result<(), PushError> {
        let n = entries as u64;
        if n > self.cap || n == 0 {
            return Err(PushError::BadUnit {
                entries,
                capacity: self.cap,
            });
        }
        if self.head.wrapping_sub(self.cached_tail) + n > self.cap {
            let tail = self.load_tail()?;
            if self.head.wrapping_sub(tail) + n > self.cap {
                return Err(PushError::Full);
            }
        }
        let mask = self.cap - 1;
        // The view is resolved once: through `Deref` every access would reload the view's
        // start and length (the stores below could alias them as far as the compiler knows).
        let words: &[AtomicU64] = &self.words;
        // `index & mask < cap` and the region holds `cap * W` entry words (checked at attach),
        // so the entry ranges below are in bounds.
        for e in 1..entries {
            let index = self.head.wrapping_add(e as u64);
            let slot = entry_words::<W>(words, index & mask);
            for (i, dst) in slot.iter().enumerate() {
                let w = word(e, i);
                let w = if STAMPED && i == STAMP_WORD {
                    (w & !STAMP_MASK) | stamp(index, self.lap_shift)
                } else {
                    w
                };
                dst.store(w, Ordering::Relaxed);
            }
        }
        let slot = entry_words::<W>(words, self.head & mask);
        for (i, dst) in slot.iter().enumerate() {
            if !(STAMPED && i == STAMP_WORD) {
                dst.store(word(0, i), Ordering::Relaxed);
            }
        }
        if STAMPED {
            // Last: the stamp publishes the whole unit.
            let w = (word(0, STAMP_WORD) & !STAMP_MASK) | stamp(self.head, self.lap_shift);
            slot[STAMP_WORD].store(w, Ordering::Release);
        }
        self.head = self.head.wrapping_add(n);
        words[HEAD].store(self.head, Ordering::Release);
        Ok(())
    }

    /// Call after publishing: `true` (once per park) when the consumer announced it sleeps, so
    /// the caller must write the consumer's eventfd. Clears the flag.
    #[inline]
    pub(crate) fn consumer_needs_wake(&self) -> bool {
        fence(Ordering::SeqCst);
        self.words[CONSUMER_PARKED].load(Ordering::SeqCst) != 0
            && self.words[CONSUMER_PARKED].swap(0, Ordering::SeqCst) != 0
    }

    /// A push of `needed` entries found the ring full: announce that this producer waits for
    /// space, then re-check. `Ok(true)`: still no room for `needed` entries, the caller may
    /// sleep until the consumer wakes it. `Ok(false)`: room appeared meanwhile (the flag is
    /// cleared again); retry the push. `needed` must be the size of the unit that failed:
    /// checking for less would report room that the push cannot use, and the caller would
    /// spin instead of sleeping.
    ///
    /// The announcement is the tail at which the unit fits (`park_word`): the consumer wakes
    /// this producer only once its tail reaches it, not on every pop. Local waiters of one
    /// producer share the word (the caller serialises them); the earliest threshold is kept.
    pub(crate) fn prepare_park(&mut self, needed: u64) -> Result<bool, RingError> {
        let needed = needed.max(1);
        let mine = park_word(self.head.wrapping_add(needed).wrapping_sub(self.cap));
        let word = &self.words[PRODUCER_PARKED];
        // Always written (even when an earlier threshold is kept), so that the Dekker pairing
        // with the consumer's "store tail, fence, load word" holds for this call's own store.
        // The peer may write the word too (to clear it, or, if hostile, at will): after a few
        // lost races our own threshold is simply stored.
        let mut cur = word.load(Ordering::SeqCst);
        let mut stored = false;
        for _ in 0..4 {
            let keep = if cur != 0 && reached(park_threshold(mine), cur) {
                cur
            } else {
                mine
            };
            match word.compare_exchange(cur, keep, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => {
                    stored = true;
                    break;
                }
                Err(now) => cur = now,
            }
        }
        if !stored {
            word.store(mine, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
        let tail = self.load_tail()?;
        if self.head.wrapping_sub(tail) + needed > self.cap {
            Ok(true)
        } else {
            self.unpark();
            Ok(false)
        }
    }

    /// Withdraws the "waiting for space" announcement (after waking, or when giving up).
    pub(crate) fn unpark(&self) {
        self.words[PRODUCER_PARKED].store(0, Ordering::SeqCst);
    }
}

impl<S: Deref<Target = [AtomicU64]>, const W: usize, const STAMPED: bool> Consumer<S, W, STAMPED> {
    /// Attaches as the consumer, resynchronising the private tail from the ring.
    pub(crate) fn attach(words: S, capacity: u32) -> Result<Self, RingError> {
        const { assert!(!STAMPED || W > STAMP_WORD) };
        let cap = check_region(words.len(), capacity, W)?;
        let tail = words[TAIL].load(Ordering::Acquire);
        let head = words[HEAD].load(Ordering::Acquire);
        let (min, max) = (tail, tail.wrapping_add(cap));
        if !within(head, min, max) {
            return Err(RingError::HeadOutOfRange { head, min, max });
        }
        Ok(Consumer {
            words,
            cap,
            lap_shift: capacity.trailing_zeros(),
            tail,
            cached_head: head,
        })
    }

    /// A lock-free probe of this ring's stamps (stamped rings only; see [`StampProbe`]).
    pub(crate) fn probe(&self) -> StampProbe<S, W>
    where
        S: Clone,
    {
        const { assert!(STAMPED) };
        StampProbe {
            words: self.words.clone(),
            mask: self.cap - 1,
            lap_shift: self.lap_shift,
        }
    }

    /// Index of the next entry to consume.
    pub(crate) fn tail(&self) -> u64 {
        self.tail
    }

    /// Capacity in entries (from the local geometry).
    pub(crate) fn capacity(&self) -> u64 {
        self.cap
    }

    fn load_head(&mut self) -> Result<u64, RingError> {
        let head = self.words[HEAD].load(Ordering::Acquire);
        let max = self.tail.wrapping_add(self.cap);
        if !within(head, self.cached_head, max) {
            return Err(RingError::HeadOutOfRange {
                head,
                min: self.cached_head,
                max,
            });
        }
        self.cached_head = head;
        Ok(head)
    }

    /// True when the entry at the tail is published (the next [`Consumer::peek`] returns it).
    #[inline]
    pub(crate) fn is_ready(&mut self) -> Result<bool, RingError> {
        if STAMPED {
            let base = CONTROL_WORDS + (self.tail & (self.cap - 1)) as usize * W;
            let w = self.words[base + STAMP_WORD].load(Ordering::Acquire);
            return Ok(w & STAMP_MASK == stamp(self.tail, self.lap_shift));
        }
        Ok(self.cached_head != self.tail || self.load_head()? != self.tail)
    }

    /// Number of published units ready to take, walking from the tail: `unit_len` gives the
    /// number of entries of the unit whose first entry it is shown (`None`: not a valid unit,
    /// stop counting there). Stops at the first entry not published; visits at most one
    /// ring's worth of entries whatever the peer wrote. Stamped rings only (0 otherwise).
    pub(crate) fn ready_units(&self, unit_len: impl Fn(&[u64; W]) -> Option<u64>) -> u64 {
        if !STAMPED {
            return 0;
        }
        let (mut at, mut units) = (0u64, 0u64);
        while at < self.cap {
            let index = self.tail.wrapping_add(at);
            let base = CONTROL_WORDS + (index & (self.cap - 1)) as usize * W;
            let w = self.words[base + STAMP_WORD].load(Ordering::Acquire);
            if w & STAMP_MASK != stamp(index, self.lap_shift) {
                break;
            }
            match unit_len(&self.read(at)) {
                Some(n) if n >= 1 && n <= self.cap - at => {
                    units += 1;
                    at += n;
                }
                _ => break,
            }
        }
        units
    }

    /// True when no entry is ready.
    #[cfg(test)]
    pub(crate) fn is_empty(&mut self) -> Result<bool, RingError> {
        Ok(!self.is_ready()?)
    }

    /// The entry at the tail if it is published, without consuming it (see
    /// [`Consumer::advance`]); the stamp bits are cleared.
    #[inline]
    pub(crate) fn peek(&mut self) -> Result<Option<[u64; W]>, RingError> {
        if !self.is_ready()? {
            return Ok(None);
        }
        Ok(Some(self.read(0)))
    }

    /// The entry `i` positions after the tail, read as it is (stamp bits cleared). Meant for the
    /// later entries of a unit whose first entry [`Consumer::peek`] returned: they were written
    /// before it was published. What it returns for other positions is whatever the memory
    /// holds (plain words, never out of bounds).
    #[inline]
    pub(crate) fn read(&self, i: u64) -> [u64; W] {
        let slot = entry_words::<W>(&self.words, self.tail.wrapping_add(i) & (self.cap - 1));
        let mut out = [0u64; W];
        for (o, w) in out.iter_mut().zip(slot) {
            *o = w.load(Ordering::Relaxed);
        }
        if STAMPED {
            out[STAMP_WORD] &= !STAMP_MASK;
        }
        out
    }

    /// Word `w` of the entry `i` positions after the tail, as [`Consumer::read`] would return
    /// it (stamp bits cleared), without reading the rest of the entry. `w` is less than `W`.
    #[inline(always)]
    pub(crate) fn word(&self, i: u64, w: usize) -> u64 {
        let slot = entry_words::<W>(&self.words, self.tail.wrapping_add(i) & (self.cap - 1));
        let v = slot[w].load(Ordering::Relaxed);
        if STAMPED && w == STAMP_WORD {
            v & !STAMP_MASK
        } else {
            v
        }
    }

    /// Consumes `n` entries (the unit just read) and gives their room back to the producer
    /// (`Release` store of the tail). `n` is at most the capacity: callers check the unit's
    /// size against the ring before reading it. A larger `n` is a bug in the caller (a debug
    /// assertion).
    #[inline]
    pub(crate) fn advance(&mut self, n: u64) {
        debug_assert!(n <= self.cap, "advance({n}) past a ring of {}", self.cap);
        self.tail = self.tail.wrapping_add(n);
        self.words[TAIL].store(self.tail, Ordering::Release);
    }

    /// Takes the next entry, `Ok(None)` when the ring is empty. The slot is given back to the
    /// producer at once (`Release` store of the tail).
    pub(crate) fn try_pop(&mut self) -> Result<Option<[u64; W]>, RingError> {
        let e = self.peek()?;
        if e.is_some() {
            self.advance(1);
        }
        Ok(e)
    }

    /// The ring was empty: announce that this consumer sleeps, then re-check.
    /// `Ok(true)`: still empty, the caller may sleep on its eventfd.
    /// `Ok(false)`: entries arrived meanwhile (the flag is cleared again); pop them.
    pub(crate) fn prepare_park(&mut self) -> Result<bool, RingError> {
        self.words[CONSUMER_PARKED].store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.is_ready()? {
            self.unpark();
            Ok(false)
        } else {
            Ok(true)
        }
    }

    /// Withdraws the "sleeping" announcement (after waking, or when giving up).
    pub(crate) fn unpark(&self) {
        self.words[CONSUMER_PARKED].store(0, Ordering::SeqCst);
    }

    /// Call after popping: `true` (once per park) when the producer waits for space and its
    /// unit now fits (the tail reached its announced threshold), so the caller must write the
    /// producer's eventfd. Clears the announcement. Any word the peer wrote is accepted: a
    /// nonsensical threshold only wakes it early or not at all, which is its own loss.
    #[inline]
    pub(crate) fn producer_needs_wake(&self) -> bool {
        fence(Ordering::SeqCst);
        let w = self.words[PRODUCER_PARKED].load(Ordering::SeqCst);
        w != 0
            && reached(self.tail, w)
            && self.words[PRODUCER_PARKED].swap(0, Ordering::SeqCst) != 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
