//! Self-test of the suite: the `mem` backend wrapped in deliberate contract violations, one per
//! wrapper. Each must be caught by the scenario named next to it, within seconds; the unbroken
//! wrapper must pass every scenario, so a catch is the violation's doing.
//!
//! A wrapper is added here whenever a real bug is found in a backend (`SendRacingCloseLost`
//! mirrors the `shm` send/close race).

use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use transport_api::{
    Frame, FrameHeader, Payload, Result, Stats, Transport, TransportError, TrySendError, TxBuf,
};
use transport_conformance::{Backend, Capabilities, Outcome, PairOptions, RunConfig};
use transport_mem::MemTransport;
use transport_mem::conformance::MemBackend;

/// One violation of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// No violation: the control.
    None,
    /// `try_send` returns `Ok` without sending, one call in 50.
    TrySendOkWithoutSending,
    /// `try_recv` discards a frame and reports none, one frame in 50.
    TryRecvDiscards,
    /// `send` drops one frame in 1000 and returns `Ok`.
    DropsFrames,
    /// `send` holds one frame in 100 back and sends it after the next.
    Reorders,
    /// `send` sends one frame in 500 twice.
    Duplicates,
    /// Payloads over 4 KiB arrive with their middle byte flipped.
    CorruptsLargePayloads,
    /// `msg_id` keeps only its low 32 bits.
    MangleMsgId,
    /// `channel` keeps only its low 16 bits.
    MangleChannel,
    /// `method` keeps only its low 16 bits.
    MangleMethod,
    /// `flags` loses its top bit.
    MangleFlags,
    /// `credit` is not carried (always 0).
    MangleCredit,
    /// `deadline_ns` keeps only its low 32 bits.
    MangleDeadline,
    /// Frames sent in an `alloc` buffer lose their header.
    AllocPathDropsHeader,
    /// `send` fails with an I/O error when full, where it must wait.
    SendFailsWhenFull,
    /// `try_send` hands back an empty frame when full.
    TrySendFullHandsBackEmpty,
    /// A `recv` dropped after taking its frame (at one more await) loses it.
    CancelledRecvLoses,
    /// `recv` never returns `Closed`: it waits forever instead.
    ClosedNever,
    /// `recv` returns `Closed` only after a minute.
    ClosedLate,
    /// `close` throws away what the peer has not received yet.
    CloseDoesNotDrain,
    /// Operations blocked when this endpoint closes never wake.
    CloseLeavesLocalWaitersBlocked,
    /// Sends to a peer that went away wait forever, where they must fail with `Closed`.
    PeerGoneHangsSends,
    /// A dropped peer is reported as `PeerDied` before the frames it sent are delivered.
    PeerDiedEarly,
    /// A `send` racing `close()` returns `Ok` and its frame is lost (the `shm` bug).
    SendRacingCloseLost,
    /// `frames_received` misses one frame in 100.
    StatsLie,
    /// Every send is counted as copied, although `alloc` buffers go without a copy.
    ZeroCopyLie,
    /// An `alloc` buffer dropped unsent is never given back (its bytes stay in use).
    AllocLeaks,
    /// `alloc` returns one byte more than asked for buffers of 100 bytes or more.
    AllocWrongLength,
    /// `max_payload()` is one less than what is accepted.
    AcceptsOneOver,
    /// `max_payload()` is one more than what is accepted.
    RefusesExact,
    /// `PayloadTooLarge` reports the limit as the refused length.
    TooLargeWrongValues,
    /// `try_recv` reports `Closed` as soon as the peer closed, before its frames are drained.
    TryRecvClosedBeforeDrained,
    /// `try_send` after `close()` returns `Ok` and discards the frame.
    TrySendAfterCloseOk,
    /// `send` to a peer that closed returns `Ok` and discards the frame.
    SendOkToGonePeer,
    /// `Stats` never shows queued frames.
    HidesQueuedFrames,
    /// `recv` delivers one frame in 1000 a second time, to the next caller.
    RecvDuplicates,
}

/// State shared by the two ends of a pair.
#[derive(Default)]
struct Shared {
    closed: [AtomicBool; 2],
    died: [AtomicBool; 2],
}

/// One end of a mem pair with a fault.
struct Broken {
    inner: MemTransport,
    fault: Fault,
    side: usize,
    shared: Arc<Shared>,
    ops: AtomicU64,
    held: Mutex<Option<Frame>>,
    leaked: AtomicU64,
}

impl Broken {
    /// True once every `every` calls.
    fn nth(&self, every: u64) -> bool {
        self.ops.fetch_add(1, Relaxed) % every == every - 1
    }

    fn closed(&self) -> bool {
        self.shared.closed[self.side].load(Relaxed)
    }

    fn peer_closed(&self) -> bool {
        self.shared.closed[1 - self.side].load(Relaxed)
    }

    fn mangle(&self, mut h: FrameHeader) -> FrameHeader {
        match self.fault {
            Fault::MangleMsgId => h.msg_id &= 0xFFFF_FFFF,
            Fault::MangleChannel => h.channel &= 0xFFFF,
            Fault::MangleMethod => h.method &= 0xFFFF,
            Fault::MangleFlags => h.flags &= !0x8000_0000,
            Fault::MangleCredit => h.credit = 0,
            Fault::MangleDeadline => h.deadline_ns &= 0xFFFF_FFFF,
            _ => {}
        }
        h
    }

    /// Applies the sending faults that change the frame itself.
    fn outgoing(&self, mut f: Frame) -> Frame {
        f.header = self.mangle(f.header);
        if let Payload::Buf(b) = &f.payload {
            if self.fault == Fault::AllocPathDropsHeader {
                f.header = FrameHeader::default();
            }
            let _ = self
                .leaked
                .fetch_update(Relaxed, Relaxed, |l| Some(l.saturating_sub(b.len() as u64)));
        }
        f
    }

    /// Applies the receiving faults that change a received frame.
    fn incoming(&self, f: Frame) -> Frame {
        if self.fault == Fault::CorruptsLargePayloads && f.bytes().len() > 4096 {
            let mut v = f.bytes().to_vec();
            let mid = v.len() / 2;
            v[mid] ^= 0x40;
            return Frame::with_header(f.header, v);
        }
        f
    }

    /// The end of the session this fault reports too early, if any.
    fn early_end(&self) -> Option<TransportError> {
        match self.fault {
            Fault::PeerDiedEarly if self.shared.died[1 - self.side].load(Relaxed) => {
                Some(TransportError::PeerDied)
            }
            Fault::CloseDoesNotDrain if self.peer_closed() => Some(TransportError::Closed),
            _ => None,
        }
    }

    /// Applies the faults about waking: an operation ended by `Closed` that never returns.
    async fn after_closed<T>(&self, r: Result<T>) -> Result<T> {
        if matches!(r, Err(TransportError::Closed)) {
            let stuck = match self.fault {
                Fault::CloseLeavesLocalWaitersBlocked => self.closed(),
                Fault::PeerGoneHangsSends => !self.closed(),
                _ => false,
            };
            if stuck {
                std::future::pending::<()>().await;
            }
        }
        r
    }
}

impl Transport for Broken {
    async fn send(&self, frame: Frame) -> Result<()> {
        let frame = self.outgoing(frame);
        match self.fault {
            Fault::DropsFrames if self.nth(1000) => return Ok(()),
            Fault::Duplicates if self.nth(500) => {
                let h = frame.header;
                let b = frame.into_bytes();
                self.inner.send(Frame::with_header(h, b.clone())).await?;
                return self.inner.send(Frame::with_header(h, b)).await;
            }
            Fault::Reorders => {
                if self.nth(100) {
                    *self.held.lock().unwrap() = Some(frame);
                    return Ok(());
                }
                let r = self.inner.send(frame).await;
                let held = self.held.lock().unwrap().take();
                if let Some(h) = held {
                    self.inner.send(h).await?;
                }
                return r;
            }
            Fault::SendFailsWhenFull => {
                return match self.inner.try_send(frame) {
                    Ok(()) => Ok(()),
                    Err(TrySendError::Full(_)) => {
                        Err(TransportError::Io(std::io::ErrorKind::WouldBlock.into()))
                    }
                    Err(TrySendError::Failed(e)) => Err(e),
                };
            }
            Fault::SendOkToGonePeer if self.peer_closed() => return Ok(()),
            Fault::SendRacingCloseLost if !self.closed() => {
                tokio::task::yield_now().await;
                if self.closed() {
                    return Ok(());
                }
            }
            _ => {}
        }
        let r = self.inner.send(frame).await;
        self.after_closed(r).await
    }

    fn try_send(&self, frame: Frame) -> Result<(), TrySendError> {
        let frame = self.outgoing(frame);
        match self.fault {
            Fault::TrySendOkWithoutSending if self.nth(50) => Ok(()),
            Fault::TrySendAfterCloseOk if self.closed() => Ok(()),
            Fault::TrySendFullHandsBackEmpty => match self.inner.try_send(frame) {
                Err(TrySendError::Full(f)) => Err(TrySendError::Full(Frame::with_header(
                    f.header,
                    Bytes::new(),
                ))),
                r => r,
            },
            _ => self.inner.try_send(frame),
        }
    }

    async fn recv(&self) -> Result<Frame> {
        if let Some(e) = self.early_end() {
            return Err(e);
        }
        let r = self.inner.recv().await;
        if let Some(e) = self.early_end() {
            return Err(e);
        }
        match (&r, self.fault) {
            (Ok(_), Fault::CancelledRecvLoses) => tokio::task::yield_now().await,
            (Err(TransportError::Closed), Fault::ClosedNever) => std::future::pending::<()>().await,
            (Err(TransportError::Closed), Fault::ClosedLate) => {
                tokio::time::sleep(Duration::from_secs(60)).await
            }
            _ => {}
        }
        let r = self.after_closed(r).await;
        if self.fault == Fault::RecvDuplicates {
            if let Some(f) = self.held.lock().unwrap().take() {
                return Ok(f);
            }
            if let Ok(f) = &r
                && self.nth(1000)
            {
                let copy = Frame::with_header(f.header, f.bytes().to_vec());
                *self.held.lock().unwrap() = Some(copy);
            }
        }
        r.map(|f| self.incoming(f))
    }

    fn try_recv(&self) -> Result<Option<Frame>> {
        if let Some(e) = self.early_end() {
            return Err(e);
        }
        if self.fault == Fault::TryRecvClosedBeforeDrained && self.peer_closed() {
            return Err(TransportError::Closed);
        }
        match self.inner.try_recv() {
            Ok(Some(_)) if self.fault == Fault::TryRecvDiscards && self.nth(50) => Ok(None),
            r => r.map(|f| f.map(|f| self.incoming(f))),
        }
    }

    async fn alloc(&self, len: usize) -> Result<TxBuf> {
        let buf = self.inner.alloc(len).await?;
        match self.fault {
            Fault::AllocWrongLength if len >= 100 => Ok(TxBuf::heap(len + 1)),
            Fault::AllocLeaks => {
                self.leaked.fetch_add(len as u64, Relaxed);
                Ok(buf)
            }
            _ => Ok(buf),
        }
    }

    fn close(&self) {
        self.shared.closed[self.side].store(true, Relaxed);
        self.inner.close()
    }

    fn max_payload(&self) -> usize {
        match self.fault {
            Fault::AcceptsOneOver => self.inner.max_payload() - 1,
            Fault::RefusesExact => self.inner.max_payload() + 1,
            _ => self.inner.max_payload(),
        }
    }

    fn stats(&self) -> Stats {
        let mut s = self.inner.stats();
        match self.fault {
            Fault::StatsLie => s.frames_received -= s.frames_received / 100,
            Fault::ZeroCopyLie => {
                s.copied_sends += s.zero_copy_sends;
                s.zero_copy_sends = 0;
            }
            Fault::AllocLeaks => s.buffer_bytes_in_use += self.leaked.load(Relaxed),
            Fault::HidesQueuedFrames => {
                s.tx_queued_frames = 0;
                s.rx_queued_frames = 0;
            }
            _ => {}
        }
        s
    }

    fn backend(&self) -> &'static str {
        "broken-mem"
    }
}

impl Drop for Broken {
    fn drop(&mut self) {
        // Dropping is closing; `PeerDiedEarly` treats a drop without `close()` as a death.
        let was_closed = self.shared.closed[self.side].swap(true, Relaxed);
        self.shared.died[self.side].store(!was_closed, Relaxed);
    }
}

/// The `PayloadTooLarge` values `TooLargeWrongValues` reports wrongly.
fn wrong_values<T>(fault: Fault, r: Result<T>) -> Result<T> {
    match r {
        Err(TransportError::PayloadTooLarge { max, .. }) if fault == Fault::TooLargeWrongValues => {
            Err(TransportError::PayloadTooLarge { len: max, max })
        }
        r => r,
    }
}

/// `Broken` with `TooLargeWrongValues` applied to every refusal.
struct BrokenEnd(Broken);

impl Transport for BrokenEnd {
    async fn send(&self, frame: Frame) -> Result<()> {
        wrong_values(self.0.fault, self.0.send(frame).await)
    }
    fn try_send(&self, frame: Frame) -> Result<(), TrySendError> {
        match self.0.try_send(frame) {
            Err(TrySendError::Failed(e)) => Err(TrySendError::Failed(
                wrong_values::<()>(self.0.fault, Err(e)).unwrap_err(),
            )),
            r => r,
        }
    }
    async fn recv(&self) -> Result<Frame> {
        self.0.recv().await
    }
    fn try_recv(&self) -> Result<Option<Frame>> {
        self.0.try_recv()
    }
    async fn alloc(&self, len: usize) -> Result<TxBuf> {
        wrong_values(self.0.fault, self.0.alloc(len).await)
    }
    fn close(&self) {
        self.0.close()
    }
    fn max_payload(&self) -> usize {
        self.0.max_payload()
    }
    fn stats(&self) -> Stats {
        self.0.stats()
    }
    fn backend(&self) -> &'static str {
        self.0.backend()
    }
}

/// The `mem` backend with one fault; optionally declaring it as a known bug of `scenario`.
struct BrokenBackend {
    fault: Fault,
    known_bug: Option<&'static str>,
}

impl Backend for BrokenBackend {
    type T = BrokenEnd;
    type Listener = ();

    fn name(&self) -> &'static str {
        "broken-mem"
    }

    fn capabilities(&self) -> Capabilities {
        // Built from the reference backend's, so fields added to `Capabilities` carry over.
        let mut c = MemBackend.capabilities();
        c.cross_process = false;
        c
    }

    fn known_bugs(&self) -> Vec<(&'static str, &'static str)> {
        self.known_bug
            .map(|s| (s, "declared by the self-test"))
            .into_iter()
            .collect()
    }

    async fn pair(&self, opts: PairOptions) -> Result<(BrokenEnd, BrokenEnd)> {
        let (a, b) = MemBackend.pair(opts).await?;
        let shared = Arc::new(Shared::default());
        let end = |inner, side| {
            BrokenEnd(Broken {
                inner,
                fault: self.fault,
                side,
                shared: shared.clone(),
                ops: AtomicU64::new(0),
                held: Mutex::new(None),
                leaked: AtomicU64::new(0),
            })
        };
        Ok((end(a, 0), end(b, 1)))
    }
}

/// The self-test's run configuration: the environment's seed, a quarter of the frames (fixed,
/// whatever `CONFORMANCE_SCALE` says: the rarest faults need that many frames to show) and a
/// stall limit of at most 2 s, so every wrapper is caught within seconds.
fn config() -> RunConfig {
    let mut c = RunConfig::from_env();
    c.scale = 0.25;
    c.stall = c.stall.min(Duration::from_secs(2));
    c
}

/// Runs `scenario` against the `mem` backend with `fault` and returns its outcome, printing
/// how long it took.
fn run(fault: Fault, scenario: &str, config: &RunConfig) -> Outcome {
    let start = Instant::now();
    let backend = BrokenBackend {
        fault,
        known_bug: None,
    };
    let mut results = transport_conformance::run_scenarios(backend, config, |n| n == scenario);
    assert_eq!(results.len(), 1, "no scenario named `{scenario}`");
    let (_, outcome) = results.remove(0);
    eprintln!(
        "{fault:?} → {scenario}: {outcome:?} in {:.2?}",
        start.elapsed()
    );
    outcome
}

/// Asserts that `scenario` catches `fault`; returns the failure message.
fn caught(fault: Fault, scenario: &str) -> String {
    let config = config();
    match run(fault, scenario, &config) {
        Outcome::Failed(msg) => {
            assert!(
                msg.contains(&format!("CONFORMANCE_SEED={}", config.seed)),
                "the failure does not say how to replay it: {msg}"
            );
            msg
        }
        other => panic!("{fault:?} was not caught by `{scenario}`: {other:?}"),
    }
}

macro_rules! caught_by {
    ($($test:ident: $fault:ident => $scenario:literal;)*) => {$(
        #[test]
        fn $test() {
            caught(Fault::$fault, $scenario);
        }
    )*};
}

caught_by! {
    try_send_ok_without_sending: TrySendOkWithoutSending => "exactly_once_try_send_try_recv";
    try_recv_discards: TryRecvDiscards => "exactly_once_try_send_try_recv";
    drops_frames: DropsFrames => "ordering_single_channel_100k";
    reorders: Reorders => "ordering_single_channel_100k";
    duplicates: Duplicates => "ordering_single_channel_100k";
    corrupts_large_payloads: CorruptsLargePayloads => "integrity_payload_sizes";
    mangle_msg_id: MangleMsgId => "header_fields_round_trip";
    mangle_channel: MangleChannel => "header_fields_round_trip";
    mangle_method: MangleMethod => "header_fields_round_trip";
    mangle_flags: MangleFlags => "header_fields_round_trip";
    mangle_credit: MangleCredit => "header_fields_round_trip";
    mangle_deadline: MangleDeadline => "header_fields_round_trip";
    alloc_path_drops_header: AllocPathDropsHeader => "random_interleavings_mixed_paths";
    send_fails_when_full: SendFailsWhenFull => "backpressure_send_waits_try_send_full";
    try_send_full_hands_back_empty: TrySendFullHandsBackEmpty => "backpressure_send_waits_try_send_full";
    cancelled_recv_loses: CancelledRecvLoses => "cancellation_dropped_futures";
    close_does_not_drain: CloseDoesNotDrain => "close_peer_drains_then_closed";
    peer_died_early: PeerDiedEarly => "drop_without_close_peer_drains";
    send_racing_close_lost: SendRacingCloseLost => "close_races_concurrent_sends";
    stats_lie: StatsLie => "stats_counters_match_traffic";
    zero_copy_lie: ZeroCopyLie => "zero_copy_alloc_buffers";
    alloc_leaks: AllocLeaks => "alloc_dropped_unsent_returns_memory";
    alloc_wrong_length: AllocWrongLength => "zero_copy_alloc_buffers";
    accepts_one_over: AcceptsOneOver => "max_payload_exact_and_one_over";
    refuses_exact: RefusesExact => "max_payload_exact_and_one_over";
    too_large_wrong_values: TooLargeWrongValues => "max_payload_exact_and_one_over";
    try_recv_closed_before_drained: TryRecvClosedBeforeDrained => "close_peer_drains_then_closed";
    try_send_after_close_ok: TrySendAfterCloseOk => "close_wakes_local_waiters";
    send_ok_to_gone_peer: SendOkToGonePeer => "close_peer_drains_then_closed";
    hides_queued_frames: HidesQueuedFrames => "stats_counters_match_traffic";
    recv_duplicates: RecvDuplicates => "concurrency_8_senders_2_receivers";
}

/// Hangs are caught by the stall watchdog, whose message names what the scenario waits for.
macro_rules! stalls_in {
    ($($test:ident: $fault:ident => $scenario:literal, waiting in $op:literal;)*) => {$(
        #[test]
        fn $test() {
            let msg = caught(Fault::$fault, $scenario);
            assert!(
                msg.contains("no progress for") && msg.contains($op),
                "the stall report does not name `{}`: {msg}",
                $op
            );
        }
    )*};
}

stalls_in! {
    closed_never: ClosedNever => "close_peer_drains_then_closed", waiting in "recv on B";
    closed_late: ClosedLate => "close_wakes_blocked_peer_recv", waiting in "recv on B";
    close_leaves_local_waiters_blocked: CloseLeavesLocalWaitersBlocked
        => "close_wakes_local_waiters", waiting in "on A";
    peer_gone_hangs_sends: PeerGoneHangsSends
        => "peer_drop_races_concurrent_sends", waiting in "send on A";
}

/// The wrapper without a fault passes every scenario: what the others catch is their fault.
#[test]
fn unbroken_wrapper_passes_everything() {
    let backend = BrokenBackend {
        fault: Fault::None,
        known_bug: None,
    };
    let config = config();
    let results = transport_conformance::run_scenarios(backend, &config, |_| true);
    let failed: Vec<_> = results
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Failed(_)))
        .collect();
    assert!(
        failed.is_empty(),
        "the unbroken wrapper failed: {failed:#?}"
    );
    let passed = results
        .iter()
        .filter(|(_, o)| *o == Outcome::Passed)
        .count();
    assert!(passed >= 20, "only {passed} scenarios ran: {results:?}");
}

/// A declared known bug is reported as ignored with its reason, and still caught when the run
/// asks for known bugs.
#[test]
fn known_bugs_are_ignored_with_their_reason_unless_asked_for() {
    let scenario = "close_races_concurrent_sends";
    let backend = || BrokenBackend {
        fault: Fault::SendRacingCloseLost,
        known_bug: Some(scenario),
    };
    let mut config = config();
    let r = transport_conformance::run_scenarios(backend(), &config, |n| n == scenario);
    match &r[..] {
        [(_, Outcome::Ignored(why))] => assert!(why.contains("declared by the self-test"), "{why}"),
        other => panic!("a known bug was not ignored: {other:?}"),
    }
    config.run_known_bugs = true;
    let r = transport_conformance::run_scenarios(backend(), &config, |n| n == scenario);
    assert!(
        matches!(&r[..], [(_, Outcome::Failed(_))]),
        "a known bug run on request was not caught: {r:?}"
    );
}
