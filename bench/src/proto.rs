//! What every row shares: payload sizes, the payload pattern and its sequence stamps, the
//! receiver's tally (which reads every byte), time budgets and the control flags carried in
//! [`FrameHeader::flags`](transport_api::FrameHeader::flags).

use std::time::{Duration, Instant};

/// Payload sizes measured, in bytes.
pub const SIZES: [usize; 5] = [8, 64, 1024, 64 * 1024, 1024 * 1024];

/// Largest payload size measured.
pub const MAX_SIZE: usize = 1024 * 1024;

/// Parent → peer: start echoing `F_PING` frames until `F_END`.
pub const F_CMD_RTT: u32 = 0xB0_01;
/// Parent → peer: start receiving `F_DATA` frames until `F_END`.
pub const F_CMD_STREAM: u32 = 0xB0_02;
/// A ping, echoed back unchanged.
pub const F_PING: u32 = 0xB0_03;
/// One stream message, not answered.
pub const F_DATA: u32 = 0xB0_04;
/// End of a phase; answered by `F_END` (rtt) or `F_SUMMARY` (stream).
pub const F_END: u32 = 0xB0_05;
/// Peer → parent: a [`Tally`] encoded with [`Tally::to_bytes`].
pub const F_SUMMARY: u32 = 0xB0_06;
/// Parent → peer: exit.
pub const F_QUIT: u32 = 0xB0_07;
/// Parent → peer: start receiving zero-copy `F_DATA` frames (only the sequence number is
/// written and read) until `F_END`.
pub const F_CMD_STREAM_ZC: u32 = 0xB0_08;
/// Host → hub fan-in peer: stream `F_DATA` frames (payload: size and measuring time in ns,
/// both little-endian `u64`), then send `F_END` whose `msg_id` is the number sent.
pub const F_CMD_FANIN: u32 = 0xB0_09;
/// Host → the attach row's control peer: attach once more.
pub const F_GO: u32 = 0xB0_0A;
/// Attaching peer → host, first frame of a new session: the wall time (ns since the Unix
/// epoch, little-endian `u64`) taken just before `connect`.
pub const F_STAMP: u32 = 0xB0_0B;

/// Idle gaps of the `rtt-gap*` modes: before each ping the initiator sleeps this long, so the
/// peer may park and has to be woken.
pub const GAPS: [Duration; 3] = [
    Duration::from_micros(10),
    Duration::from_micros(100),
    Duration::from_millis(1),
];

/// Payload size of the `rtt-gap*` modes.
pub const GAP_SIZE: usize = 8;

/// Human-readable size: `8 B`, `64 KiB`, `1 MiB`.
pub fn size_label(size: usize) -> String {
    if size >= 1 << 20 && size % (1 << 20) == 0 {
        format!("{} MiB", size >> 20)
    } else if size >= 1 << 10 && size % (1 << 10) == 0 {
        format!("{} KiB", size >> 10)
    } else {
        format!("{size} B")
    }
}

/// The byte written last in a payload of more than 8 bytes carrying `seq`.
pub fn tail_byte(seq: u64) -> u8 {
    (seq as u8) ^ 0xA5
}

/// Writes `seq` into the first 8 bytes (little-endian) and [`tail_byte`] into the last byte of
/// `dst` when it is longer than 8 bytes. Payloads shorter than 8 bytes get a truncated stamp.
pub fn stamp(dst: &mut [u8], seq: u64) {
    let n = dst.len().min(8);
    dst[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
    if dst.len() > 8 {
        let last = dst.len() - 1;
        dst[last] = tail_byte(seq);
    }
}

/// The sequence number stamped at the start of `b`, if it has 8 bytes.
pub fn read_seq(b: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?))
}

/// Writes only `seq` into the first 8 bytes (little-endian) of `dst` (zero-copy rows: the rest
/// of the payload is left as the transport handed it out). Shorter payloads get a truncated
/// stamp.
pub fn stamp_seq(dst: &mut [u8], seq: u64) {
    let n = dst.len().min(8);
    dst[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
}

/// True when `b` carries the stamp of `seq` ([`stamp`]).
pub fn check(b: &[u8], seq: u64) -> bool {
    read_seq(b) == Some(seq) && (b.len() <= 8 || b[b.len() - 1] == tail_byte(seq))
}

/// A checksum that reads every byte: the wrapping sum of the little-endian 64-bit words (the
/// tail shorter than 8 bytes is added byte by byte). Fast enough (vectorised) not to be the
/// bottleneck, and a receiver that computes it cannot skip the payload.
pub fn checksum(b: &[u8]) -> u64 {
    let chunks = b.chunks_exact(8);
    let tail = chunks.remainder();
    let mut sum = 0u64;
    for c in chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        sum = sum.wrapping_add(u64::from_le_bytes(w));
    }
    tail.iter().fold(sum, |s, &x| s.wrapping_add(u64::from(x)))
}

/// The source bytes every sender copies its payload from (a fixed pseudo-random pattern), so
/// each row pays one copy into the transport per message.
pub struct Pattern {
    src: Vec<u8>,
}

impl Pattern {
    /// A pattern of `len` bytes.
    pub fn new(len: usize) -> Pattern {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let src = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        Pattern { src }
    }

    /// Copies the pattern into `dst` and stamps `seq` ([`stamp`]). `dst` must not be longer
    /// than the pattern.
    pub fn fill(&self, dst: &mut [u8], seq: u64) {
        let n = dst.len().min(self.src.len());
        dst[..n].copy_from_slice(&self.src[..n]);
        stamp(dst, seq);
    }

    /// The first `len` bytes of the pattern.
    pub fn bytes(&self, len: usize) -> &[u8] {
        &self.src[..len.min(self.src.len())]
    }
}

/// What a stream receiver counted: it checks each message's sequence number and tail byte and
/// reads every byte ([`checksum`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Messages received.
    pub count: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Messages whose stamp was not the expected one (out of order, lost or corrupt).
    pub errors: u64,
    /// Wrapping sum of the checksums of all payloads.
    pub checksum: u64,
}

impl Tally {
    /// Encoded length.
    pub const ENCODED_LEN: usize = 32;

    /// Accounts for one message; the expected sequence number is `count + 1`.
    pub fn take(&mut self, b: &[u8]) {
        self.count += 1;
        self.bytes += b.len() as u64;
        if !check(b, self.count) {
            self.errors += 1;
        }
        self.checksum = self.checksum.wrapping_add(checksum(b));
    }

    /// Accounts for one zero-copy message of `len` bytes whose first 8 bytes are `seq` (nothing
    /// else is read); the expected sequence number is `count + 1`.
    pub fn take_seq(&mut self, seq: Option<u64>, len: usize) {
        self.count += 1;
        self.bytes += len as u64;
        if seq != Some(self.count) {
            self.errors += 1;
        }
    }

    /// Little-endian encoding.
    pub fn to_bytes(&self) -> [u8; Self::ENCODED_LEN] {
        let mut b = [0u8; Self::ENCODED_LEN];
        for (i, v) in [self.count, self.bytes, self.errors, self.checksum]
            .into_iter()
            .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Inverse of [`Tally::to_bytes`]; `None` when `b` has the wrong length.
    pub fn from_bytes(b: &[u8]) -> Option<Tally> {
        if b.len() != Self::ENCODED_LEN {
            return None;
        }
        let w = |i: usize| read_seq(&b[i * 8..]).unwrap_or(0);
        Some(Tally {
            count: w(0),
            bytes: w(1),
            errors: w(2),
            checksum: w(3),
        })
    }

    /// Checks that the receiver got exactly `sent` intact messages of `size` bytes.
    pub fn verify(&self, sent: u64, size: usize) -> Result<(), crate::BenchError> {
        if self.count != sent || self.bytes != sent * size as u64 || self.errors != 0 {
            return Err(crate::BenchError::new(format!(
                "stream check failed: sent {sent} messages of {size} B, receiver counted {} \
                 messages, {} bytes, {} bad stamps",
                self.count, self.bytes, self.errors
            )));
        }
        Ok(())
    }
}

/// How long one measurement runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Warm-up before samples are kept (rtt only).
    pub warmup: Duration,
    /// Measuring time.
    pub measure: Duration,
    /// At least this many samples (or messages), even past `measure`.
    pub min_iters: u64,
    /// At most this many samples (or messages).
    pub max_iters: u64,
    /// Rtt only: how long the initiator sleeps before each ping (zero: no pause), outside the
    /// timed sample ([`Budget::idle`]).
    pub gap: Duration,
}

impl Budget {
    /// Records the round trip `t0..t1` once warm-up (`warm_end`) is over; `true` when the
    /// measurement is complete (`max_iters` samples, or `min_iters` and past `end`).
    pub fn record(
        &self,
        samples: &mut Vec<u64>,
        t0: Instant,
        t1: Instant,
        warm_end: Instant,
        end: Instant,
    ) -> bool {
        if t0 < warm_end {
            return false;
        }
        samples.push(nanos(t1 - t0));
        let n = samples.len() as u64;
        n >= self.max_iters || (n >= self.min_iters && t1 >= end)
    }

    /// Budget of a round-trip measurement.
    pub fn rtt(quick: bool, size: usize) -> Budget {
        let (warmup, measure) = if quick {
            (Duration::from_millis(30), Duration::from_millis(150))
        } else {
            (Duration::from_millis(300), Duration::from_millis(1500))
        };
        Budget {
            warmup,
            measure,
            min_iters: if size >= MAX_SIZE { 20 } else { 100 },
            max_iters: if quick { 300_000 } else { 3_000_000 },
            gap: Duration::ZERO,
        }
    }

    /// Budget of an idle-gap round-trip measurement (`rtt-gap*` modes): a fixed number of
    /// samples, each preceded by a sleep of `gap`.
    pub fn rtt_gap(quick: bool, gap: Duration) -> Budget {
        let iters = if quick { 300 } else { 2000 };
        Budget {
            warmup: Duration::from_millis(if quick { 5 } else { 20 }),
            measure: Duration::ZERO,
            min_iters: iters,
            max_iters: iters,
            gap,
        }
    }

    /// Sleeps for the idle gap, if any; called by every rtt initiator before it takes the
    /// start time of a ping. A blocking sleep (`nanosleep`, precise to tens of µs), also in
    /// the async rows: tokio timers have a 1 ms granularity.
    pub fn idle(&self) {
        if !self.gap.is_zero() {
            std::thread::sleep(self.gap);
        }
    }

    /// Budget of a one-way stream measurement.
    pub fn stream(quick: bool, _size: usize) -> Budget {
        Budget {
            warmup: Duration::ZERO,
            measure: if quick {
                Duration::from_millis(200)
            } else {
                Duration::from_millis(2000)
            },
            min_iters: 20,
            max_iters: u64::MAX,
            gap: Duration::ZERO,
        }
    }

    /// A generous upper bound on the wall time of this measurement, for the watchdog.
    pub fn limit(&self) -> Duration {
        let gaps = (self.gap + Duration::from_micros(200)) * self.min_iters.min(100_000) as u32;
        self.warmup + self.measure * 3 + gaps * 3 + Duration::from_secs(20)
    }
}

/// Decides when a sender or pinger stops; reads the clock only every few iterations for small
/// payloads so that the clock does not dominate.
pub struct Deadline {
    end: Instant,
    every: u64,
    min: u64,
    max: u64,
}

impl Deadline {
    /// Deadline `budget.measure` from now (after `budget.warmup`).
    pub fn new(budget: &Budget, size: usize) -> Deadline {
        Deadline {
            end: Instant::now() + budget.warmup + budget.measure,
            every: if size <= 4096 { 64 } else { 1 },
            min: budget.min_iters,
            max: budget.max_iters,
        }
    }

    /// True when `done` iterations are enough.
    pub fn reached(&self, done: u64) -> bool {
        done >= self.max
            || (done >= self.min && done % self.every == 0 && Instant::now() >= self.end)
    }
}

/// Nanoseconds in `d`, saturating.
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn budget_records_after_warm_up_and_stops_at_its_limits() {
        let b = Budget::rtt(true, 8);
        let t = Instant::now();
        let (warm_end, end) = (t + Duration::from_millis(1), t + Duration::from_secs(60));
        let mut samples = Vec::new();
        assert!(!b.record(&mut samples, t, t + Duration::from_nanos(5), warm_end, end));
        assert!(samples.is_empty(), "warm-up samples are not kept");
        let t0 = warm_end;
        for i in 1..b.max_iters {
            assert!(
                !b.record(
                    &mut samples,
                    t0,
                    t0 + Duration::from_nanos(7),
                    warm_end,
                    end
                ),
                "{i}"
            );
        }
        assert!(b.record(
            &mut samples,
            t0,
            t0 + Duration::from_nanos(7),
            warm_end,
            end
        ));
        assert_eq!(samples.len() as u64, b.max_iters);
        assert_eq!(samples[0], 7);
        let mut few = Vec::new();
        let late = end + Duration::from_secs(1);
        for _ in 1..b.min_iters {
            assert!(!b.record(&mut few, t0, late, warm_end, end));
        }
        assert!(
            b.record(&mut few, t0, late, warm_end, end),
            "min_iters past the deadline ends it"
        );
    }

    use super::*;

    #[test]
    fn stamps_round_trip() {
        let p = Pattern::new(MAX_SIZE);
        for size in SIZES {
            let mut b = vec![0u8; size];
            p.fill(&mut b, 77);
            assert!(check(&b, 77));
            assert!(!check(&b, 78));
        }
    }

    #[test]
    fn tally_encodes_and_verifies() {
        let p = Pattern::new(64);
        let mut t = Tally::default();
        for seq in 1..=3 {
            let mut b = vec![0u8; 64];
            p.fill(&mut b, seq);
            t.take(&b);
        }
        assert_eq!(Tally::from_bytes(&t.to_bytes()), Some(t));
        assert!(t.verify(3, 64).is_ok());
        assert!(t.verify(4, 64).is_err());
        let mut b = vec![0u8; 64];
        p.fill(&mut b, 9);
        t.take(&b);
        assert_eq!(t.errors, 1);

        let mut z = Tally::default();
        let mut b = vec![0u8; 64];
        for seq in 1..=2 {
            stamp_seq(&mut b, seq);
            z.take_seq(read_seq(&b), b.len());
        }
        z.take_seq(None, 64);
        assert_eq!((z.count, z.bytes, z.errors, z.checksum), (3, 192, 1, 0));
    }

    #[test]
    fn gap_budgets() {
        let b = Budget::rtt_gap(true, GAPS[2]);
        assert_eq!((b.min_iters, b.max_iters, b.gap), (300, 300, GAPS[2]));
        assert!(b.limit() > GAPS[2] * 300 * 3);
        assert_eq!(Budget::rtt(true, 8).gap, Duration::ZERO);
    }

    #[test]
    fn checksum_reads_every_byte() {
        let a = [1u8; 17];
        let mut b = a;
        b[12] = 2;
        assert_ne!(checksum(&a), checksum(&b));
        assert_eq!(size_label(8), "8 B");
        assert_eq!(size_label(65536), "64 KiB");
        assert_eq!(size_label(1 << 20), "1 MiB");
    }
}
