//! The spin part of a wait ([`Spin`]), what an end remembers of its spins ([`SpinHistory`])
//! and how long it waits for an answer after waking its peer ([`AnswerWait`]): pure timing
//! policy, no shared memory and no runtime.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The spin part of a wait: how long to retry before parking, and how to behave meanwhile.
/// The clock is read, and the OS thread yielded (so that a peer sharing this CPU can run),
/// every `every` tries (32, or 1 in an eager spin, see [`SpinHistory`]); between them the CPU is
/// told it is spinning.
pub(crate) struct Spin {
    start: Instant,
    limit: Duration,
    tries: usize,
    next_check: usize,
    every: usize,
    yielded: bool,
    /// A yield of this spin returned only after [`SWITCHED`]: another thread had this CPU.
    switched: bool,
}

/// A yield that returns after this long gave the CPU to another thread: a `sched_yield` that
/// finds nothing else to run returns in well under a microsecond, while a switch to another
/// thread and back costs two context switches and that thread's work.
const SWITCHED: Duration = Duration::from_micros(2);

impl Spin {
    /// Starts a spin of at most `limit`.
    pub(crate) fn new(limit: Duration) -> Spin {
        Spin::every(limit, 32)
    }

    fn every(limit: Duration, every: usize) -> Spin {
        Spin {
            start: Instant::now(),
            limit,
            tries: 0,
            next_check: every,
            every,
            yielded: false,
            switched: false,
        }
    }

    /// Counts `tries` more attempts that found nothing and pauses before the next; `false` once
    /// the spin time is over (then the caller parks).
    #[inline]
    pub(crate) fn pause(&mut self, tries: usize) -> bool {
        self.tries += tries;
        if self.tries >= self.next_check {
            self.next_check = self.tries + self.every;
            let now = Instant::now();
            if now.duration_since(self.start) >= self.limit {
                return false;
            }
            self.yielded = true;
            std::thread::yield_now();
            if now.elapsed() >= SWITCHED {
                self.switched = true;
            }
        } else {
            std::hint::spin_loop();
        }
        true
    }

    /// [`Spin::pause`] for one try in a loop whose tries are slow (each one a pass over many
    /// sessions): the clock is read on every call, before pausing.
    pub(crate) fn pause_timed(&mut self) -> bool {
        if self.start.elapsed() >= self.limit {
            return false;
        }
        self.tries += 1;
        if self.tries % 32 == 0 {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
        true
    }
}

/// Whether an end's recent spins succeeded only after giving the CPU to another thread: then
/// the peer most likely runs on this CPU (both pinned to one, or a machine with one), where a
/// spin can only succeed once this thread lets the peer run, and pausing before each yield
/// burns the time slice both need. After [`LATE_TO_EAGER`] such spins in a row, spins are
/// eager: they yield on every try. Every [`PROBE_EVERY`]th spin stays patient, as a probe. A spin
/// that succeeds without having given the CPU away (the peer answered from another CPU, however
/// late) makes them patient again. Whether a yield gave the CPU away is read from its duration
/// ([`SWITCHED`]).
#[derive(Debug, Default)]
pub(crate) struct SpinHistory {
    /// Successful spins in a row that had given the CPU away first (saturating at
    /// [`LATE_TO_EAGER`]).
    late: AtomicU32,
    /// Spins started while eager (wrapping), to space the probes.
    eager: AtomicU32,
}

/// See [`SpinHistory`].
const LATE_TO_EAGER: u32 = 4;
/// See [`SpinHistory`].
const PROBE_EVERY: u32 = 64;

impl SpinHistory {
    /// A spin of at most `limit`, eager or patient as the history says.
    pub(crate) fn start(&self, limit: Duration) -> Spin {
        if self.late.load(Ordering::Relaxed) >= LATE_TO_EAGER
            && self.eager.fetch_add(1, Ordering::Relaxed).wrapping_add(1) % PROBE_EVERY != 0
        {
            Spin::every(limit, 1)
        } else {
            Spin::new(limit)
        }
    }

    /// Records a spin that found what it waited for; one that found it at once tells nothing.
    pub(crate) fn succeeded(&self, spin: &Spin) {
        if spin.tries == 0 {
            return;
        }
        let late = self.late.load(Ordering::Relaxed);
        let next = if spin.switched {
            late.saturating_add(1).min(LATE_TO_EAGER)
        } else {
            0
        };
        if next != late {
            self.late.store(next, Ordering::Relaxed);
        }
    }
}

/// After an end woke its peer, how long its receive keeps spinning for the answer before it
/// parks. A peer that was parked answers only after its wake-up, and on a virtual machine whose
/// idle vCPU halts, that wake-up alone can outlast the configured spin: the waiting end then
/// parks too and its answer takes a second wake-up, doubling the round trip after an idle
/// period. So each ring of the peer's doorbell is timed ([`AnswerWait::rang`]), the time until
/// the next frame a waiting receive got is remembered ([`AnswerWait::answered`]), and a receive
/// that found nothing within the spin time keeps spinning until 5/4 of that time after the
/// latest ring, never past the cap ([`AnswerWait::remaining`]). The time covers the peer's
/// wake-up and its work on the request alike: after a ring, the spin for its answer is
/// effectively up to five times the configured one whenever answers come that late.
///
/// An extension that runs out without the answer ([`AnswerWait::missed`]) is not repeated for
/// the next ring, then for the next 3, 7, … 63 rings while they keep missing (one that finds its
/// answer resets this): where the answer can only come once this thread stops spinning (both
/// ends on one current-thread runtime) or comes later than the cap, at most one ring in 64 is
/// spun for in vain. Only the first frame received after a ring is timed as its answer, and
/// only if it comes within twice the cap; a ring older than the cap is forgotten.
///
/// Pure timing policy with relaxed atomics, shared by the tasks of one end (or, for a hub, by
/// every host session and `recv_any`): a lost or mixed-up update only makes one spin shorter or
/// longer, never longer than the cap.
#[derive(Debug)]
pub(crate) struct AnswerWait {
    epoch: Instant,
    /// When this end last woke its peer: nanoseconds since `epoch`, plus one; 0 when no ring
    /// awaits its answer.
    rang_at: AtomicU64,
    /// How long the last answer after a ring took, in nanoseconds (0: none known).
    took: AtomicU64,
    /// The receive count of the end that rang, at the latest ring: a frame is that ring's
    /// answer only if it is the first received after it.
    frames_at_ring: AtomicU64,
    /// Extensions in a row that ran out without the answer (at most [`MAX_MISSES`]).
    misses: AtomicU32,
    /// Rings still to pass without an extension after a miss.
    skip: AtomicU32,
    /// Whether the latest ring may be waited for past the spin time (not one to skip).
    extend: AtomicBool,
}

/// See [`AnswerWait`]: after this many misses in a row, one ring in 2^this is extended.
const MAX_MISSES: u32 = 6;

/// The longest spin a configuration accepts (see `ShmConfig::MAX_SPIN`); the spin for an
/// answer is bounded by it too.
pub(crate) const MAX_SPIN: Duration = Duration::from_secs(1);

impl Default for AnswerWait {
    fn default() -> Self {
        AnswerWait {
            epoch: Instant::now(),
            rang_at: AtomicU64::new(0),
            took: AtomicU64::new(0),
            frames_at_ring: AtomicU64::new(0),
            misses: AtomicU32::new(0),
            skip: AtomicU32::new(0),
            extend: AtomicBool::new(false),
        }
    }
}

/// The longest a receive spins for the answer to a ring after it, for a configured spin time of
/// `spin`: five times that (100 µs with the default 20 µs; none when spinning is off), and never
/// more than [`MAX_SPIN`].
pub(crate) fn answer_cap(spin: Duration) -> Duration {
    spin.saturating_mul(5).min(MAX_SPIN)
}

/// Nanoseconds of `d`, saturating (u64 nanoseconds cover 584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl AnswerWait {
    /// `now` as nanoseconds since the epoch, plus one (never 0).
    fn stamp(&self, now: Instant) -> u64 {
        nanos(now.saturating_duration_since(self.epoch)).saturating_add(1)
    }

    /// Records that this end rang its peer's doorbell at `now`, having received `frames`
    /// frames so far.
    pub(crate) fn rang(&self, now: Instant, frames: u64) {
        self.frames_at_ring.store(frames, Ordering::Relaxed);
        let skip = self.skip.load(Ordering::Relaxed);
        if skip > 0 {
            self.skip.store(skip - 1, Ordering::Relaxed);
        }
        self.extend.store(skip == 0, Ordering::Relaxed);
        self.rang_at.store(self.stamp(now), Ordering::Relaxed);
    }

    /// Whether a ring awaits its answer (one relaxed load).
    #[inline]
    pub(crate) fn pending(&self) -> bool {
        self.rang_at.load(Ordering::Relaxed) != 0
    }

    /// How much longer a receive that found nothing at `now` spins: until 5/4 of the last
    /// answer's time after the latest ring, and at most `cap` after that ring. Zero when no
    /// ring awaits its answer, no answer time is known, this ring is one to skip after a miss,
    /// or that moment has passed. A ring older than `cap` is forgotten here.
    pub(crate) fn remaining(&self, now: Instant, cap: Duration) -> Duration {
        let rang = self.rang_at.load(Ordering::Relaxed);
        if rang == 0 {
            return Duration::ZERO;
        }
        let elapsed = self.stamp(now).saturating_sub(rang);
        if elapsed > nanos(cap) {
            // Stale: its answer came within an earlier spin, or is not coming.
            let _ = self
                .rang_at
                .compare_exchange(rang, 0, Ordering::Relaxed, Ordering::Relaxed);
            return Duration::ZERO;
        }
        let took = self.took.load(Ordering::Relaxed);
        if took == 0 || !self.extend.load(Ordering::Relaxed) {
            return Duration::ZERO;
        }
        let budget = took.saturating_add(took / 4).min(nanos(cap));
        Duration::from_nanos(budget.saturating_sub(elapsed))
    }

    /// Records that a receive got a frame at `now` after waiting, its end having received
    /// `frames` frames with it (`None`: not known, for a record shared by many sessions): when
    /// a ring awaits its answer and this is the first frame since, the time since that ring is
    /// the answer's time. An answer later than twice `cap` after its ring is not timed, and the
    /// time known is dropped (answers have slowed down past the cap: it is learnt again).
    pub(crate) fn answered(&self, now: Instant, cap: Duration, frames: Option<u64>) {
        let rang = self.rang_at.swap(0, Ordering::Relaxed);
        let first =
            frames.is_none_or(|n| n.wrapping_sub(self.frames_at_ring.load(Ordering::Relaxed)) == 1);
        if rang == 0 || !first {
            return;
        }
        let took = self.stamp(now).saturating_sub(rang);
        match took <= nanos(cap).saturating_mul(2) {
            true => self.took.store(took.max(1), Ordering::Relaxed),
            false => self.took.store(0, Ordering::Relaxed),
        }
    }

    /// Records that an extension found the answer it spun for (see [`AnswerWait::answered`]).
    pub(crate) fn hit(&self, now: Instant, cap: Duration, frames: Option<u64>) {
        self.misses.store(0, Ordering::Relaxed);
        self.answered(now, cap, frames);
    }

    /// Records that an extension ran out without the answer: that answer is not timed (it
    /// will arrive after this end parked, its time swollen by this end's own wake-up), and the
    /// next 2^misses - 1 rings are not extended.
    pub(crate) fn missed(&self) {
        self.rang_at.store(0, Ordering::Relaxed);
        let misses = (self.misses.load(Ordering::Relaxed) + 1).min(MAX_MISSES);
        self.misses.store(misses, Ordering::Relaxed);
        self.skip.store((1 << misses) - 1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::{AnswerWait, LATE_TO_EAGER, MAX_SPIN, PROBE_EVERY, Spin, SpinHistory, answer_cap};
    use std::time::Duration;

    /// How the awaited frame arrives in a simulated spin.
    #[derive(Clone, Copy)]
    enum Peer {
        /// Before this spin's first yield (from another CPU).
        Quick,
        /// Right after this spin's first yield, which gave the CPU to the peer (a real switch
        /// is set by `pause` from the yield's duration; here it is simulated).
        SameCpu,
        /// After this spin's first yield, which returned at once (a slow peer elsewhere).
        SlowElsewhere,
    }

    /// One spin from `h` answered as `peer` says; whether it was eager.
    fn spin_once(h: &SpinHistory, peer: Peer) -> bool {
        let mut s = h.start(Duration::from_secs(60));
        let eager = s.every == 1;
        loop {
            assert!(s.pause(1));
            if s.yielded || matches!(peer, Peer::Quick) {
                break;
            }
        }
        match peer {
            Peer::SameCpu => s.switched = true,
            _ => s.switched = false,
        }
        h.succeeded(&s);
        eager
    }

    #[test]
    fn spins_turn_eager_when_the_peer_needs_this_cpu_and_patient_when_it_does_not() {
        // A patient spin yields on its 32nd try, not before.
        let mut s = Spin::new(Duration::from_secs(60));
        (0..31).for_each(|_| assert!(s.pause(1)));
        assert!(!s.yielded);
        assert!(s.pause(1) && s.yielded);
        let h = SpinHistory::default();
        // Quick answers, and slow ones from another CPU, keep spins patient.
        for _ in 0..10 {
            assert!(!spin_once(&h, Peer::Quick));
            assert!(!spin_once(&h, Peer::SlowElsewhere));
        }
        // Answers that needed this CPU, in a row, make spins eager; a spin that found its
        // frame at once (no try) does not break the row.
        assert!((0..LATE_TO_EAGER - 1).all(|_| !spin_once(&h, Peer::SameCpu)));
        let at_once = h.start(Duration::from_secs(60));
        h.succeeded(&at_once);
        assert!(!spin_once(&h, Peer::SameCpu));
        let n = PROBE_EVERY as usize;
        let eager: Vec<bool> = (0..2 * n).map(|_| spin_once(&h, Peer::SameCpu)).collect();
        // Every PROBE_EVERY-th is a patient probe; needing this CPU too, it leaves them eager.
        let patient: Vec<usize> = (0..eager.len()).filter(|&i| !eager[i]).collect();
        assert_eq!(patient, [n - 1, 2 * n - 1]);
        // The peer answers from another CPU, however late: patient again at once.
        assert!(spin_once(&h, Peer::SlowElsewhere));
        assert!((0..2 * n).all(|_| !spin_once(&h, Peer::SlowElsewhere)));
    }

    #[test]
    fn after_a_ring_receives_spin_for_the_answer_as_long_as_the_last_one_took() {
        let us = Duration::from_micros;
        let cap = us(100);
        let w = AnswerWait::default();
        let t0 = w.epoch + us(1000);
        // Nothing rang, or no answer timed yet: no extra spin.
        assert_eq!(w.remaining(t0, cap), Duration::ZERO);
        w.rang(t0, 0);
        assert!(w.pending());
        assert_eq!(w.remaining(t0 + us(20), cap), Duration::ZERO);
        // The first answer came 70 µs after the ring (the receive had parked).
        w.answered(t0 + us(70), cap, Some(1));
        assert!(!w.pending());
        assert_eq!(
            w.remaining(t0 + us(80), cap),
            Duration::ZERO,
            "no ring pending"
        );
        // The next ring: spin until 5/4 of 70 µs (87.5 µs) after it; the cap bounds it.
        let t1 = t0 + us(5000);
        w.rang(t1, 0);
        assert_eq!(w.remaining(t1 + us(20), cap), Duration::from_nanos(67_500));
        assert_eq!(w.remaining(t1 + us(20), us(60)), us(40));
        // Found at 35 µs: the next budget is 43.75 µs.
        w.hit(t1 + us(35), cap, Some(1));
        let t2 = t1 + us(5000);
        w.rang(t2, 0);
        assert_eq!(w.remaining(t2 + us(20), cap), Duration::from_nanos(23_750));
        assert_eq!(
            w.remaining(t2 + us(50), cap),
            Duration::ZERO,
            "past the budget"
        );
        // A ring older than the cap is forgotten: a frame after it is not its answer.
        assert_eq!(w.remaining(t2 + us(101), cap), Duration::ZERO);
        assert!(!w.pending());
        w.answered(t2 + us(150), cap, Some(1));
        w.rang(t2 + us(10_000), 0);
        assert_eq!(
            w.remaining(t2 + us(10_020), cap),
            Duration::from_nanos(23_750),
            "the time known is kept"
        );
        // An answer later than twice the cap drops the time known: it is learnt again.
        w.answered(t2 + us(10_250), cap, Some(1));
        w.rang(t2 + us(20_000), 0);
        assert_eq!(w.remaining(t2 + us(20_020), cap), Duration::ZERO);
        // Only the first frame received after a ring is its answer: a second one (the first
        // was taken without waiting) is not timed, and the time known stays.
        w.answered(t2 + us(20_030), cap, Some(1));
        w.rang(t2 + us(25_000), 7);
        w.answered(t2 + us(25_090), cap, Some(9));
        w.rang(t2 + us(26_000), 9);
        assert_eq!(
            w.remaining(t2 + us(26_020), cap),
            Duration::from_nanos(17_500)
        );
        w.answered(t2 + us(26_090), cap, Some(10));
        w.rang(t2 + us(27_000), 10);
        let capped = "5/4 of 90 µs, capped at 100 µs after the ring";
        assert_eq!(w.remaining(t2 + us(27_020), cap), us(80), "{capped}");
        // A zero cap (spinning off) never extends, and a time before the epoch is no panic.
        w.answered(t2 + us(20_030), cap, Some(1));
        w.rang(t2 + us(30_000), 0);
        assert_eq!(w.remaining(t2 + us(30_001), Duration::ZERO), Duration::ZERO);
        w.answered(w.epoch - us(1), cap, Some(1));
        assert_eq!(w.remaining(w.epoch - us(1), cap), Duration::ZERO);
    }

    #[test]
    fn extensions_that_miss_are_tried_ever_more_rarely_until_one_finds_its_answer() {
        let us = Duration::from_micros;
        let cap = us(100);
        let w = AnswerWait::default();
        let mut t = w.epoch + us(1000);
        // An answer time of 40 µs known.
        w.rang(t, 0);
        w.answered(t + us(40), cap, Some(1));
        // Whether the ring at `t` (answered 40 µs later) is extended, and whether the
        // extension, if any, finds the answer (`finds`).
        let mut ring = |finds: bool| {
            t += us(5000);
            w.rang(t, 0);
            let extended = !w.remaining(t + us(20), cap).is_zero();
            match (extended, finds) {
                (true, true) => w.hit(t + us(40), cap, Some(1)),
                // The answer still comes, after this end parked (its time swollen by this
                // end's own wake-up): not timed.
                (true, false) => {
                    w.missed();
                    w.answered(t + us(140), cap, Some(1));
                }
                (false, _) => w.answered(t + us(40), cap, Some(1)),
            }
            extended
        };
        assert!(ring(false), "the first extension runs");
        // After 1, 2, 3 misses in a row: 1, 3, 7 rings skipped before the next try.
        let pattern: Vec<bool> = (0..14).map(|_| ring(false)).collect();
        let tried: Vec<usize> = (0..pattern.len()).filter(|&i| pattern[i]).collect();
        assert_eq!(tried, [1, 5, 13], "{pattern:?}");
        // The skips stop at one try in 64 rings.
        let tries = (0..1000).filter(|_| ring(false)).count();
        assert!((15..=17).contains(&tries), "{tries} tries in 1000 rings");
        // One that finds its answer resets it: every ring is extended again, for as long as
        // the 40 µs answers take (no miss swelled the time known).
        while !ring(true) {}
        assert!((0..10).all(|_| ring(true)));
        t += us(5000);
        w.rang(t, 0);
        assert_eq!(w.remaining(t + us(20), cap), us(30));
        // The cap never exceeds the longest spin a configuration accepts.
        assert_eq!(answer_cap(Duration::from_secs(1)), MAX_SPIN);
        assert_eq!(answer_cap(us(20)), us(100));
    }
}
