//! Baseline `spin`, the physical lower bound: two processes share a memfd mapping and spin on
//! atomic words, never entering the kernel.
//!
//! - rtt: the parent copies the payload into buffer A and publishes its sequence number; the
//!   peer copies A to B (its "send") and publishes the same number back; the parent checks B's
//!   stamp.
//! - stream: an SPSC ring of fixed-size slots with a head (producer) and a tail (consumer)
//!   index; the producer copies each payload in, the consumer reads every byte ([`Tally`]).
//!
//! Commands (rtt, stream, quit) go through a command word so that one peer process serves every
//! size. With `--placement same` the waiting side yields its CPU after a few spins, otherwise
//! both sides spin on their own CPU.

use super::cli::ChildArgs;
use super::generic::StreamOutcome;
use super::procs::{ChildProc, PlaceCtx};
use super::proto::{Budget, Deadline, MAX_SIZE, Pattern, Tally, check, tail_byte};
use super::session::Session;
use super::shmem::SharedRegion;
use super::{BenchError, BenchResult};
use rustix::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::{Duration, Instant};

// Layout: control words each on their own 128-byte line, then the buffers.
const LINE: usize = 128;
const CMD_SEQ: usize = 0;
const CMD_KIND: usize = LINE;
const CMD_SIZE: usize = 2 * LINE;
const DONE_SEQ: usize = 3 * LINE;
const PING: usize = 4 * LINE;
const PONG: usize = 5 * LINE;
const HEAD: usize = 6 * LINE;
const TAIL: usize = 7 * LINE;
const END: usize = 8 * LINE;
const RESULT: usize = 9 * LINE; // 4 words: the Tally
const BUF_A: usize = 4096;
const BUF_B: usize = BUF_A + MAX_SIZE;
const RING: usize = BUF_B + MAX_SIZE;
const RING_BYTES: usize = 4 * MAX_SIZE;
/// Length of the shared mapping.
pub const REGION_LEN: usize = RING + RING_BYTES;

const KIND_RTT: u64 = 1;
const KIND_STREAM: u64 = 2;
const KIND_QUIT: u64 = 3;
const NONE: u64 = u64::MAX;

/// Slots of the stream ring for a payload size.
fn slots(size: usize) -> usize {
    (RING_BYTES / size.max(1)).clamp(2, 4096)
}

/// Waits politely or not: pure spinning on separate CPUs, yielding when sharing one; every
/// 2^18 rounds runs `check` (is the peer still alive?). Also used by the busy-polling peer rows.
pub struct Spinner<F: FnMut() -> BenchResult<()>> {
    same_cpu: bool,
    n: u32,
    check: F,
}

impl<F: FnMut() -> BenchResult<()>> Spinner<F> {
    /// A spinner that yields after a few rounds when `same_cpu`, and calls `check` now and
    /// then (its error ends the wait).
    pub fn new(same_cpu: bool, check: F) -> Self {
        Spinner {
            same_cpu,
            n: 0,
            check,
        }
    }

    /// One round of waiting.
    #[inline]
    pub fn pause(&mut self) -> BenchResult<()> {
        self.n = self.n.wrapping_add(1);
        if self.same_cpu && self.n > 16 {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
        if self.n % (1 << 18) == 0 {
            (self.check)()?;
        }
        Ok(())
    }

    /// Starts a new wait: the next rounds spin again before yielding.
    pub fn reset(&mut self) {
        self.n = 0;
    }

    /// Waits until `cond` holds.
    pub fn until(&mut self, mut cond: impl FnMut() -> bool) -> BenchResult<()> {
        self.n = 0;
        while !cond() {
            self.pause()?;
        }
        Ok(())
    }
}

fn write_stamped(r: &SharedRegion, off: usize, pattern: &Pattern, size: usize, seq: u64) {
    r.write(off, pattern.bytes(size));
    r.write(off, &seq.to_le_bytes());
    if size > 8 {
        r.write(off + size - 1, &[tail_byte(seq)]);
    }
}

/// Parent side of the `spin` row.
pub struct SpinSession {
    region: SharedRegion,
    _fd: OwnedFd,
    child: Option<ChildProc>,
    pattern: Pattern,
    same_cpu: bool,
    cmd_seq: u64,
}

impl SpinSession {
    /// Creates the shared mapping (inherited by the child) and starts the peer.
    pub fn start(place: &PlaceCtx) -> BenchResult<SpinSession> {
        let (region, fd) = SharedRegion::create(REGION_LEN)?;
        let child = ChildProc::spawn(place, "spin", &[fd.as_raw_fd()], None)?;
        Ok(SpinSession {
            region,
            _fd: fd,
            child: Some(child),
            pattern: Pattern::new(MAX_SIZE),
            same_cpu: place.same_cpu,
            cmd_seq: 0,
        })
    }

    /// Resets the data words and posts a command; the peer is idle (waiting for one).
    fn command(&mut self, kind: u64, size: usize) {
        let r = &self.region;
        for off in [PING, PONG, HEAD, TAIL] {
            r.atomic(off).store(0, Relaxed);
        }
        r.atomic(END).store(NONE, Relaxed);
        for i in 0..4 {
            r.atomic(RESULT + 8 * i).store(0, Relaxed);
        }
        r.atomic(CMD_KIND).store(kind, Relaxed);
        r.atomic(CMD_SIZE).store(size as u64, Relaxed);
        self.cmd_seq += 1;
        r.atomic(CMD_SEQ).store(self.cmd_seq, Release);
    }

    fn parts(
        &mut self,
    ) -> (
        &SharedRegion,
        &Pattern,
        Spinner<impl FnMut() -> BenchResult<()>>,
    ) {
        let child = &mut self.child;
        let spinner = Spinner::new(self.same_cpu, move || match child {
            Some(c) => c.check_alive(),
            None => Err(BenchError::new("the spin peer is gone")),
        });
        (&self.region, &self.pattern, spinner)
    }

    fn wait_done(&mut self) -> BenchResult<()> {
        let seq = self.cmd_seq;
        let (r, _, mut sp) = self.parts();
        sp.until(|| r.atomic(DONE_SEQ).load(Acquire) == seq)
    }
}

impl Session for SpinSession {
    fn rtt(&mut self, size: usize, budget: &Budget) -> BenchResult<Vec<u64>> {
        self.command(KIND_RTT, size);
        let (r, pattern, mut sp) = self.parts();
        let (ping, pong) = (r.atomic(PING), r.atomic(PONG));
        let warm_end = Instant::now() + budget.warmup;
        let end = warm_end + budget.measure;
        let mut samples = Vec::with_capacity(4096);
        let mut seq = 0u64;
        loop {
            seq += 1;
            budget.idle();
            let t0 = Instant::now();
            write_stamped(r, BUF_A, pattern, size, seq);
            ping.store(seq, Release);
            sp.until(|| pong.load(Acquire) == seq)?;
            let ok = r.with_bytes(BUF_B, size, |b| check(b, seq));
            let t1 = Instant::now();
            if !ok {
                return Err(BenchError::new(format!(
                    "spin rtt: bad echo for ping {seq}"
                )));
            }
            if budget.record(&mut samples, t0, t1, warm_end, end) {
                break;
            }
        }
        ping.store(NONE, Release);
        sp.until(|| pong.load(Acquire) == NONE)?;
        drop(sp);
        self.wait_done()?;
        Ok(samples)
    }

    fn stream(&mut self, size: usize, budget: &Budget) -> BenchResult<StreamOutcome> {
        self.command(KIND_STREAM, size);
        let n_slots = slots(size) as u64;
        let (r, pattern, mut sp) = self.parts();
        let (head_w, tail_w) = (r.atomic(HEAD), r.atomic(TAIL));
        let deadline = Deadline::new(budget, size);
        let start = Instant::now();
        let (mut head, mut tail) = (0u64, 0u64);
        while !deadline.reached(head) {
            if head - tail >= n_slots {
                sp.until(|| {
                    tail = tail_w.load(Acquire);
                    head - tail < n_slots
                })?;
            }
            let off = RING + (head % n_slots) as usize * size;
            write_stamped(r, off, pattern, size, head + 1);
            head += 1;
            head_w.store(head, Release);
        }
        r.atomic(END).store(head, Release);
        drop(sp);
        self.wait_done()?;
        let elapsed = start.elapsed();
        let r = &self.region;
        let w = |i: usize| r.atomic(RESULT + 8 * i).load(Relaxed);
        let tally = Tally {
            count: w(0),
            bytes: w(1),
            errors: w(2),
            checksum: w(3),
        };
        tally.verify(head, size)?;
        Ok(StreamOutcome {
            msgs: head,
            bytes: tally.bytes,
            elapsed,
        })
    }

    fn finish(&mut self) -> BenchResult<()> {
        self.command(KIND_QUIT, 0);
        self.wait_done()?;
        match self.child.take() {
            Some(c) => c.wait(Duration::from_secs(10)),
            None => Ok(()),
        }
    }
}

/// Peer side: maps the inherited memfd and obeys commands until quit.
pub fn child(args: &ChildArgs) -> BenchResult<()> {
    let [fd] = args.fds[..] else {
        return Err(BenchError::new("spin child needs one --fd"));
    };
    let r = SharedRegion::attach_inherited(fd, REGION_LEN)?;
    let ppid = args.ppid;
    let mut sp = Spinner::new(args.same_cpu, move || match rustix::process::getppid() {
        Some(p) if p.as_raw_nonzero().get() as u32 == ppid => Ok(()),
        _ => Err(BenchError::new("the parent is gone")),
    });
    let mut last = 0u64;
    loop {
        sp.until(|| r.atomic(CMD_SEQ).load(Acquire) != last)?;
        last = r.atomic(CMD_SEQ).load(Acquire);
        let kind = r.atomic(CMD_KIND).load(Relaxed);
        let size = r.atomic(CMD_SIZE).load(Relaxed) as usize;
        if kind != KIND_QUIT && !(8..=MAX_SIZE).contains(&size) {
            return Err(BenchError::new(format!("spin: bad size {size}")));
        }
        match kind {
            KIND_RTT => echo(&r, &mut sp, size)?,
            KIND_STREAM => receive(&r, &mut sp, size)?,
            KIND_QUIT => {
                r.atomic(DONE_SEQ).store(last, Release);
                return Ok(());
            }
            k => return Err(BenchError::new(format!("spin: bad command {k}"))),
        }
        r.atomic(DONE_SEQ).store(last, Release);
    }
}

fn echo<F: FnMut() -> BenchResult<()>>(
    r: &SharedRegion,
    sp: &mut Spinner<F>,
    size: usize,
) -> BenchResult<()> {
    let (ping, pong) = (r.atomic(PING), r.atomic(PONG));
    let mut last = 0u64;
    loop {
        let mut p = 0;
        sp.until(|| {
            p = ping.load(Acquire);
            p != last
        })?;
        if p == NONE {
            pong.store(NONE, Release);
            return Ok(());
        }
        r.copy_within(BUF_A, BUF_B, size);
        pong.store(p, Release);
        last = p;
    }
}

fn receive<F: FnMut() -> BenchResult<()>>(
    r: &SharedRegion,
    sp: &mut Spinner<F>,
    size: usize,
) -> BenchResult<()> {
    let n_slots = slots(size) as u64;
    let (head_w, tail_w, end_w) = (r.atomic(HEAD), r.atomic(TAIL), r.atomic(END));
    let mut tally = Tally::default();
    let (mut head, mut tail) = (0u64, 0u64);
    loop {
        if tail == head {
            head = head_w.load(Acquire);
            if tail == head {
                let end = end_w.load(Acquire);
                if end != NONE && tail >= end {
                    break;
                }
                sp.pause()?;
                continue;
            }
        }
        let off = RING + (tail % n_slots) as usize * size;
        r.with_bytes(off, size, |b| tally.take(b));
        tail += 1;
        tail_w.store(tail, Release);
    }
    for (i, v) in [tally.count, tally.bytes, tally.errors, tally.checksum]
        .into_iter()
        .enumerate()
    {
        r.atomic(RESULT + 8 * i).store(v, Relaxed);
    }
    Ok(())
}
