//! The async session: one endpoint of a pair over a shared segment, implementing `Transport`.
//!
//! Concurrency: the transmit side (descriptor producer, completion consumer, slot pool) and the
//! receive side (descriptor consumer, held set, completion producer) each sit behind one short
//! lock ([`SpinMutex`], whose unlock is a plain store) that is never held across an `.await`, so
//! any number of tasks may send and receive at once while each ring keeps exactly one producer
//! and one consumer (LESSONS 1).
//!
//! Waiting: a task that finds nothing to do spins briefly, then announces it parks (a flag in
//! shared memory, see [`crate::ring`]) and awaits its own eventfd through tokio's `AsyncFd`.
//! The peer writes that eventfd only when the flag is set, so busy peers make no system calls.
//! Peer liveness comes from the session socket, watched by one small task per session.

use crate::descriptor::{
    CONT_BYTES, DescPayload, Descriptor, INLINE_HEAD, INLINE_MAX, InlineUnit, Location, MAX_CONT,
    SlotRef, continuations, header_from_words, inline_small_bytes,
};
use crate::layout::{Direction, Side};
use crate::mapping::SharedWords as Words;
use crate::pool::{HeldSet, SenderPool};
use crate::ring::{
    CompletionConsumer, CompletionProducer, DESC_WORDS, DescConsumer, DescProducer, PushError,
    StampProbe,
};
use crate::segment::Segment;
use crate::spin_lock::{SpinGuard, SpinMutex};
use bytes::Bytes;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;
use transport_api::{
    Counters, Frame, FrameHeader, LeaseOwner, Payload, Result, Stats, Transport, TransportError,
    TrySendError, TxBuf,
};

/// Message bytes on the session socket.
pub(crate) const MSG_READY: u8 = b'R';
pub(crate) const MSG_CLOSE: u8 = b'C';

/// Adds `n` to a counter whose writers are serialised by a lock they all hold: a plain load and
/// store instead of a locked read-modify-write, which is most of the cost of counting on the hot
/// path. Readers (`stats`) see the value as of some recent update.
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Takes an endpoint's transmit or receive lock.
#[inline]
pub(crate) fn lock<T>(m: &SpinMutex<T>) -> SpinGuard<'_, T> {
    m.lock()
}

/// Takes a lock off the hot path (the corruption detail). A poisoned lock carries no broken
/// invariant: the value is a whole `Option<String>` at every point a panic could leave from.
fn lock_std<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The mapped segment and what is fixed for the session's life.
pub(crate) struct Link {
    pub(crate) seg: Segment,
    pub(crate) side: Side,
    /// A duplicate of the session socket: kept open as long as any slot of this segment may be
    /// in use here (received payloads, leased buffers), so the peer sees our hang-up only when
    /// nothing here can touch its memory any more.
    pub(crate) sock: OwnedFd,
    /// The peer's eventfd.
    pub(crate) peer_bell: OwnedFd,
    pub(crate) counters: Counters,
}

impl Link {
    /// Pointer and size of a validated slot of direction `dir`.
    pub(crate) fn slot_ptr(
        &self,
        dir: Direction,
        slot: SlotRef,
    ) -> Option<(std::ptr::NonNull<u8>, usize)> {
        let b = self.seg.slot(dir, slot).ok()?;
        Some((b.as_ptr(), b.len()))
    }

    fn ring_peer(&self) {
        self.counters.wake_syscalls.fetch_add(1, Ordering::Relaxed);
        let _ = crate::os::eventfd_signal(self.peer_bell.as_fd());
    }
}

pub(crate) struct TxState {
    ring: DescProducer<Words>,
    completions: CompletionConsumer<Words>,
    pub(crate) pool: SenderPool,
    /// The receiver is gone: its completions no longer come; in-flight slots were reclaimed.
    reclaimed: bool,
    /// For each ring position, the number of entries of the unit last published starting
    /// there: `stats` counts the queued frames (not entries) by walking from the receiver's
    /// tail to our head. Process memory, written with one store per frame.
    unit_entries: Box<[u8]>,
}

impl TxState {
    /// Units published at or after `tail` (frames the receiver has not taken yet).
    fn units_since(&self, tail: u64) -> u64 {
        units_between(
            &self.unit_entries,
            tail,
            self.ring.head(),
            self.ring.capacity(),
        )
    }
}

/// The units in ring positions `tail..head` of a ring of `cap` entries (a power of two), where
/// `entries[pos]` is the number of entries of the unit last published starting at `pos`. A
/// tail the peer left inside a unit only makes the count approximate: the walk advances at
/// least one entry per step and stops at the head or once it is more than `cap` away.
fn units_between(entries: &[u8], tail: u64, head: u64, cap: u64) -> u64 {
    let (mut at, mut units) = (tail, 0);
    while at != head && head.wrapping_sub(at) <= cap {
        let n = entries
            .get((at & (cap - 1)) as usize)
            .map_or(1, |&n| n.max(1));
        at = at.wrapping_add(u64::from(n));
        units += 1;
    }
    units
}

/// Transmit side; also the owner of leased buffers.
pub(crate) struct TxShared {
    /// Keeps the mapping (and our end of the socket) alive while leased buffers exist.
    pub(crate) link: Arc<Link>,
    pub(crate) state: SpinMutex<TxState>,
    /// Tasks waiting for a slot; woken when a leased buffer is dropped unsent.
    pub(crate) slot_freed: Notify,
}

impl TxShared {
    /// Takes every returned slot back. Errors mean the peer forged an entry.
    /// Takes returned slots back (see [`TxShared::drain_completions`]) and, when any came back,
    /// wakes tasks waiting for a slot: whoever drains, a waiting `alloc` of any class must
    /// re-check, or it could sleep although its slot is free.
    pub(crate) fn drain(&self, st: &mut TxState) -> Result<usize> {
        let n = Self::drain_completions(st)?;
        if n > 0 {
            self.slot_freed.notify_waiters();
        }
        Ok(n)
    }

    fn drain_completions(st: &mut TxState) -> Result<usize> {
        if st.reclaimed {
            return Ok(0);
        }
        let mut n = 0;
        while let Some([entry]) = st
            .completions
            .try_pop()
            .map_err(|e| TransportError::corrupt(format!("completion ring: {e}")))?
        {
            st.pool.complete(entry).map_err(|e| {
                TransportError::corrupt(format!("completion entry {entry:#x}: {e}"))
            })?;
            n += 1;
        }
        Ok(n)
    }
}

impl LeaseOwner for TxShared {
    fn release(&self, token: u64) {
        let slot = SlotRef::from_entry(token);
        if let Err(e) = lock(&self.state).pool.free_leased(slot) {
            // Only reachable through a bug here (tokens are ours), never through the peer.
            tracing::error!(backend = "shm", ?slot, error = %e, "releasing an unsent buffer failed");
        }
        self.slot_freed.notify_waiters();
    }
}

struct RxState {
    ring: DescConsumer<Words>,
    completions: CompletionProducer<Words>,
    held: HeldSet,
    /// Bytes of the slots in `held` (received payloads not dropped yet).
    held_bytes: u64,
    /// `bytes_received` and `frames_received` when a receive last had to wait (see
    /// [`Inner::spin_longer_after_large_frames`]); touched only on that slow path.
    waited_at: (u64, u64),
}

/// Receive side.
struct RxShared {
    seg: Arc<Link>,
    state: SpinMutex<RxState>,
    /// Reads the receive ring's stamps without the lock, so that polling an empty ring costs
    /// two plain loads instead of a lock round trip (see [`RxShared::maybe_ready`]).
    probe: StampProbe<Words, DESC_WORDS>,
    /// The consumer's tail, mirrored after every change under the lock, for the probe.
    next: AtomicU64,
}

impl RxShared {
    /// False when the next entry is certainly not published yet, read without the lock. A true
    /// answer is only a hint (another receiver may take the entry first); a false one may also
    /// be stale when another task consumed concurrently, and then the next poll sees the new
    /// tail. Decisions to sleep are made under the lock ([`DescConsumer::prepare_park`]).
    #[inline]
    fn maybe_ready(&self) -> bool {
        self.probe.is_published(self.next.load(Ordering::Acquire))
    }

    /// Publishes the consumer's tail to [`RxShared::maybe_ready`]; called under the lock.
    fn mirror_tail(&self, st: &RxState) {
        self.next.store(st.ring.tail(), Ordering::Release);
    }

    /// Releases the receive lock, then rings the sender's doorbell if `wake` (what
    /// [`Inner::consumed`] or [`RxShared::give_back`] returned): no system call under the lock.
    #[inline]
    fn unlock_and_wake(&self, st: SpinGuard<'_, RxState>, wake: bool) {
        drop(st);
        if wake {
            self.seg.ring_peer();
        }
    }

    /// Gives a slot back to the sender through the completion ring. `true` when the sender
    /// waits for it: the caller rings its doorbell once the receive lock is released.
    #[must_use]
    fn give_back(&self, st: &mut RxState, slot: SlotRef) -> bool {
        let _ = st.held.remove(slot);
        match st.completions.try_push(&[slot.to_entry()]) {
            Ok(()) => st.completions.consumer_needs_wake(),
            // The ring holds every slot of the direction, so it can only be full if the peer
            // stopped draining it while also publishing more slots than exist: it is broken or
            // gone, and the slot is simply not returned.
            Err(PushError::Full | PushError::Corrupt(_) | PushError::BadUnit { .. }) => {
                tracing::debug!(
                    backend = "shm",
                    ?slot,
                    "completion ring unusable; slot not returned"
                );
                false
            }
        }
    }
}

/// A received payload living in the sender's slot; returns the slot when dropped.
struct RxSlot {
    rx: Arc<RxShared>,
    slot: SlotRef,
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    size: usize,
}

// SAFETY: the pointer refers to shared memory kept mapped by `rx.seg` (an `Arc`), and the slot
// is reserved for this value until it is dropped; reading it from any thread is fine.
unsafe impl Send for RxSlot {}
// SAFETY: as above; only shared reads are exposed.
unsafe impl Sync for RxSlot {}

impl AsRef<[u8]> for RxSlot {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` lies inside a validated slot of the mapping (`len <= slot size`
        // was checked when decoding the descriptor), the mapping outlives `self` through
        // `rx.seg`, and the sender does not reuse the slot before we return it on drop. A hostile
        // sender may still scribble over these bytes: they are plain bytes with no invariant.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for RxSlot {
    fn drop(&mut self) {
        let mut st = lock(&self.rx.state);
        st.held_bytes = st.held_bytes.saturating_sub(self.size as u64);
        let wake = self.rx.give_back(&mut st, self.slot);
        self.rx.unlock_and_wake(st, wake);
    }
}

/// Session status flags, process-local: one word, so that the hot paths ask "anything
/// wrong?" with a single load.
#[derive(Default)]
struct Status {
    /// [`CLOSED`] | [`PEER_CLOSED`] | [`PEER_GONE`] | [`FAILED`]; bits are only ever set.
    flags: AtomicU8,
    corrupt: Mutex<Option<String>>,
}

/// This endpoint was closed.
const CLOSED: u8 = 1;
/// The peer closed gracefully.
const PEER_CLOSED: u8 = 2;
/// The peer is gone (closed or died).
const PEER_GONE: u8 = 4;
/// Set once `corrupt` holds a detail.
const FAILED: u8 = 8;

impl Status {
    /// The flags now (`Acquire`).
    #[inline]
    fn get(&self) -> u8 {
        self.flags.load(Ordering::Acquire)
    }

    /// True when any of the flags `bits` is set.
    #[inline]
    fn is(&self, bits: u8) -> bool {
        self.get() & bits != 0
    }

    /// Sets `bit`; true when it was already set.
    fn set(&self, bit: u8) -> bool {
        self.flags.fetch_or(bit, Ordering::AcqRel) & bit != 0
    }
}

struct Inner {
    seg: Arc<Link>,
    tx: Arc<TxShared>,
    rx: Arc<RxShared>,
    owner: Arc<dyn LeaseOwner>,
    bell: AsyncFd<OwnedFd>,
    /// The doorbell rang and its count was not read yet (see [`Inner::park`]).
    bell_unread: AtomicBool,
    /// Wakes local waiters on status changes and after a doorbell drain.
    local: Notify,
    waiters: AtomicUsize,
    status: Status,
    spin: Duration,
    max_payload: usize,
    /// Largest payload sent inline in the ring (see [`inline_max`]).
    inline_max: usize,
}

/// A local waiter, counted in `Inner::waiters` while this guard lives.
struct Waiting<'a>(&'a Inner);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Largest payload this end sends inline through a ring of `capacity` entries: a frame takes at
/// most half the ring, so a sender never waits for more room than a ring can free at once.
fn inline_max(capacity: u32) -> usize {
    let entries = (capacity as usize / 2).max(1);
    INLINE_HEAD + (entries - 1).min(MAX_CONT) * CONT_BYTES
}

/// One endpoint of a shared-memory pair session. `Send + Sync`; share it with `Arc` between
/// tasks. See the crate documentation for the guarantees.
pub struct ShmTransport {
    inner: Arc<Inner>,
    watchers: Vec<tokio::task::AbortHandle>,
}

/// Parts needed to start a session (after the handshake).
pub(crate) struct SessionParts {
    pub(crate) seg: Segment,
    pub(crate) side: Side,
    pub(crate) sock: OwnedFd,
    pub(crate) my_bell: OwnedFd,
    pub(crate) peer_bell: OwnedFd,
    pub(crate) spin: Duration,
}

impl ShmTransport {
    /// Builds the endpoint and starts the liveness watcher (session socket hang-up, and the
    /// peer process's pidfd where the kernel names the peer). Must run inside a tokio runtime.
    pub(crate) fn start(p: SessionParts) -> Result<ShmTransport> {
        let keep = p.sock.try_clone()?;
        let corrupt = |what: &'static str| {
            move |e: crate::ring::RingError| TransportError::corrupt(format!("{what}: {e}"))
        };
        let (txd, rxd) = (p.side.tx(), p.side.rx());
        let tx_state = TxState {
            ring: p.seg.desc_producer(txd).map_err(corrupt("transmit ring"))?,
            completions: p
                .seg
                .completion_consumer(txd)
                .map_err(corrupt("completion ring"))?,
            pool: SenderPool::new(p.seg.layout().geometry()),
            reclaimed: false,
            unit_entries: vec![0; p.seg.layout().ring_capacity() as usize].into_boxed_slice(),
        };
        let rx_state = RxState {
            ring: p.seg.desc_consumer(rxd).map_err(corrupt("receive ring"))?,
            completions: p
                .seg
                .completion_producer(rxd)
                .map_err(corrupt("return ring"))?,
            held: HeldSet::new(p.seg.layout().geometry()),
            held_bytes: 0,
            waited_at: (0, 0),
        };
        p.seg.mark_attached(p.side, crate::os::current_pid());
        let ring_capacity = p.seg.layout().ring_capacity();
        let link = Arc::new(Link {
            seg: p.seg,
            side: p.side,
            sock: keep,
            peer_bell: p.peer_bell,
            counters: Counters::default(),
        });
        let max_payload = tx_state.pool.max_payload();
        let tx = Arc::new(TxShared {
            link: link.clone(),
            state: SpinMutex::new(tx_state),
            slot_freed: Notify::new(),
        });
        let rx = Arc::new(RxShared {
            seg: link.clone(),
            probe: rx_state.ring.probe(),
            next: AtomicU64::new(rx_state.ring.tail()),
            state: SpinMutex::new(rx_state),
        });
        let inner = Arc::new(Inner {
            seg: link,
            owner: tx.clone(),
            tx,
            rx,
            bell: crate::os::async_readable(p.my_bell)?,
            bell_unread: AtomicBool::new(false),
            local: Notify::new(),
            waiters: AtomicUsize::new(0),
            status: Status::default(),
            spin: p.spin,
            max_payload,
            inline_max: inline_max(ring_capacity),
        });
        let sock = p.sock;
        // The peer's process, from the kernel (SO_PEERCRED), is a second death signal: it also
        // fires when the peer dies while a process it forked keeps the socket open. A socket
        // pair reports our own pid (its creator); that one is skipped.
        let pidfd = rustix::net::sockopt::socket_peercred(&sock)
            .ok()
            .map(|c| c.pid.as_raw_nonzero().get())
            .filter(|&pid| pid != crate::os::current_pid())
            .and_then(|pid| crate::os::pidfd_open(pid).ok())
            .and_then(|fd| crate::os::async_readable(fd).ok());
        let watcher = tokio::spawn(watch(sock, pidfd, Arc::downgrade(&inner))).abort_handle();
        tracing::debug!(backend = "shm", side = ?p.side, "session started");
        Ok(ShmTransport {
            inner,
            watchers: vec![watcher],
        })
    }
}

/// Watches the session socket: `C` means the peer closed gracefully, end-of-file or an error
/// means the peer's process released the session (exited, was killed, or dropped it).
async fn watch(sock: OwnedFd, pidfd: Option<AsyncFd<OwnedFd>>, inner: Weak<Inner>) {
    let Ok(sock) = crate::os::async_readable(sock) else {
        if let Some(inner) = inner.upgrade() {
            inner.on_peer_gone();
        }
        return;
    };
    let exited = async {
        match &pidfd {
            // A pidfd becomes readable when its process exits.
            Some(p) => drop(p.readable().await),
            None => std::future::pending().await,
        }
    };
    tokio::pin!(exited);
    let mut buf = [0u8; 64];
    loop {
        let readable = tokio::select! {
            r = sock.readable() => r,
            () = &mut exited => {
                tracing::debug!(backend = "shm", "the peer's process exited (pidfd)");
                break;
            }
        };
        let Ok(mut guard) = readable else {
            break;
        };
        match guard
            .try_io(|fd| rustix::io::read(fd.get_ref(), &mut buf).map_err(std::io::Error::from))
        {
            Err(_would_block) => continue,
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                let Some(inner) = inner.upgrade() else { return };
                for &b in &buf[..n] {
                    match b {
                        MSG_CLOSE => {
                            inner.status.set(PEER_CLOSED);
                            tracing::debug!(backend = "shm", "peer closed the session");
                        }
                        other => inner.fail(format!(
                            "unexpected byte {other:#04x} on the session socket"
                        )),
                    }
                }
                inner.local.notify_waiters();
            }
        }
    }
    if let Some(inner) = inner.upgrade() {
        inner.on_peer_gone();
    }
}

impl Inner {
    fn fail(&self, detail: String) {
        let mut c = lock_std(&self.status.corrupt);
        if c.is_none() {
            tracing::warn!(backend = "shm", %detail, "session closed: the peer broke the protocol");
            *c = Some(detail);
            self.status.set(FAILED);
        }
        drop(c);
        self.local.notify_waiters();
        self.tx.slot_freed.notify_waiters();
    }

    /// The `Corrupt` error with the recorded detail, once the session failed (the callers
    /// check the `FAILED` flag first).
    #[cold]
    fn corrupt_error(&self) -> Option<TransportError> {
        lock_std(&self.status.corrupt)
            .as_ref()
            .map(|d| TransportError::corrupt(d.clone()))
    }

    fn on_peer_gone(&self) {
        // Reported by the socket and by the pidfd: handle it once.
        if self.status.is(PEER_GONE) {
            return;
        }
        let graceful =
            self.seg.seg.side_state(self.seg.side.peer()).closed || self.status.is(PEER_CLOSED);
        if graceful {
            self.status.set(PEER_CLOSED);
        }
        {
            let mut st = lock(&self.tx.state);
            let _ = self.tx.drain(&mut st);
            let n = st.pool.reclaim_all_in_flight();
            st.reclaimed = true;
            tracing::debug!(
                backend = "shm",
                reclaimed = n,
                graceful,
                "peer released the session"
            );
        }
        if !graceful {
            tracing::info!(backend = "shm", "peer died");
        }
        self.status.set(PEER_GONE);
        self.local.notify_waiters();
        self.tx.slot_freed.notify_waiters();
    }

    /// Why sending cannot proceed, if it cannot.
    #[inline]
    fn send_blocker(&self) -> Option<TransportError> {
        if self.status.get() == 0 {
            return None;
        }
        self.send_blocker_slow()
    }

    /// [`Inner::send_blocker`] once some flag is set: one snapshot of the flags, read in order
    /// of precedence.
    #[cold]
    fn send_blocker_slow(&self) -> Option<TransportError> {
        let f = self.status.get();
        if f & CLOSED != 0 {
            return Some(TransportError::Closed);
        }
        if f & FAILED != 0
            && let Some(e) = self.corrupt_error()
        {
            return Some(e);
        }
        Self::end_error(f)
    }

    /// Why receiving ends once the ring is drained.
    fn recv_end(&self) -> Option<TransportError> {
        Self::end_error(self.status.get())
    }

    /// The end the peer's flags in `f` announce: a graceful close wins over its death (the
    /// socket reports both when the peer closed and then exited).
    fn end_error(f: u8) -> Option<TransportError> {
        if f & PEER_CLOSED != 0 {
            Some(TransportError::Closed)
        } else if f & PEER_GONE != 0 {
            Some(TransportError::PeerDied)
        } else {
            None
        }
    }

    /// Counts the caller as a local waiter until the guard drops (however its future ends).
    /// A wait loop holds it from *before* its first attempt: a task that publishes or takes a
    /// frame notifies local waiters only while this count is non-zero, and the parked flag in
    /// shared memory is one word per ring, shared by every local waiter, so another task's
    /// `prepare_park` may withdraw it. A waiter counted only once it sleeps could miss both
    /// signals in the gap between its re-check and its sleep.
    fn waiting(&self) -> Waiting<'_> {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        Waiting(self)
    }

    /// Sleeps until the doorbell rings or a local event happens. The caller holds a
    /// [`Inner::waiting`] guard and re-checks its condition after every return. Cancel-safe.
    ///
    /// A ring of the doorbell is answered at once, without reading the eventfd: the caller goes
    /// straight to the frame, and the read (a system call) is left for the next `park`, which
    /// then only reads the count and returns for one more re-check. A wake-up is thus never
    /// consumed without a re-check after it, and while it stays unread the readiness stays set,
    /// so other waiters of this endpoint return and re-check too.
    async fn park(&self, notified: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>) {
        let unread = self.bell_unread.swap(false, Ordering::AcqRel);
        tokio::select! {
            _ = notified => {}
            r = self.bell.readable() => {
                if let Ok(mut g) = r {
                    if !unread {
                        self.bell_unread.store(true, Ordering::Release);
                        return;
                    }
                    // Reading an eventfd takes its whole count, so after a successful read the
                    // readiness can be cleared at once (a later write raises a new edge); this
                    // saves the extra read that would only return EAGAIN.
                    if let Ok(Ok(_)) = g.try_io(|fd| crate::os::eventfd_drain(fd.get_ref().as_fd()).map_err(std::io::Error::from)) {
                        g.clear_ready();
                        // The doorbell is shared by every waiter of this endpoint and we just
                        // consumed its wake-up: let the others re-check their own condition.
                        // (Only here: notifying on every wake-up would make two idle waiters
                        // wake each other forever.)
                        self.local.notify_waiters();
                    }
                }
            }
        }
    }

    /// Retries `attempt` for up to the configured spin time before the caller parks. The OS
    /// thread is yielded every few dozen tries so that a peer sharing this CPU can run.
    fn spin<T>(&self, mut attempt: impl FnMut() -> Result<Option<T>>) -> Result<Option<T>> {
        if self.spin.is_zero() {
            return Ok(None);
        }
        let start = Instant::now();
        let mut tries = 0u32;
        loop {
            if let Some(v) = attempt()? {
                return Ok(Some(v));
            }
            tries = tries.wrapping_add(1);
            if tries % 32 == 0 {
                if start.elapsed() >= self.spin {
                    return Ok(None);
                }
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }

    /// A receive that found nothing within the configured spin time, while the frames received
    /// since the previous such wait were large, keeps spinning for 1 µs more per 16 KiB of their
    /// average size (64 µs for 1 MiB frames) before it parks. The next frame of a stream of
    /// large frames takes the sender about as long to fill as the last ones took, while a park
    /// and wake-up costs tens of microseconds whatever the size: without the extension, a 1 MiB
    /// round trip or stream whose per-frame time is close to the spin time parks on most frames
    /// and runs at a fraction of its rate. The size comes from the receive counters, so the
    /// receive fast path does no extra work.
    #[cold]
    #[inline(never)]
    fn spin_longer_after_large_frames(&self) -> Result<Option<Frame>> {
        if self.spin.is_zero() {
            return Ok(None);
        }
        let c = &self.seg.counters;
        let bytes = c.bytes_received.load(Ordering::Relaxed);
        let frames = c.frames_received.load(Ordering::Relaxed);
        let (b0, f0) = std::mem::replace(&mut lock(&self.rx.state).waited_at, (bytes, frames));
        let (bytes, frames) = (bytes.wrapping_sub(b0), frames.wrapping_sub(f0));
        let extra = extra_spin(bytes, frames);
        // In rounds of the configured spin time (the very loop `recv` runs), so that this
        // path adds no second copy of it.
        let start = Instant::now();
        while start.elapsed() < extra {
            if let Some(f) = self.spin(|| self.take_or_end())? {
                return Ok(Some(f));
            }
        }
        Ok(None)
    }

    /// One receive attempt that also ends the session's stream: `Some(Err)` once the peer is
    /// gone and everything it published was delivered.
    fn take_or_end(&self) -> Result<Option<Frame>> {
        match self.try_take(true) {
            Ok(None) => self.end_or_none(),
            r => r,
        }
    }

    /// The rest of [`Inner::take_or_end`] once the lock-free probe found nothing (out of
    /// line: keeps the receive that finds a frame short).
    #[inline(never)]
    fn end_or_none(&self) -> Result<Option<Frame>> {
        if let Some(end) = self.recv_end() {
            // The peer is gone or closed: deliver what it published, then report it (asking
            // the ring itself, not the lock-free hint, before ending the stream).
            return match self.try_take(false)? {
                Some(f) => Ok(Some(f)),
                None => Err(end),
            };
        }
        Ok(None)
    }

    fn fail_ring(&self, what: &str, e: crate::ring::RingError) -> TransportError {
        let detail = format!("{what}: {e}");
        self.fail(detail.clone());
        TransportError::corrupt(detail)
    }

    fn kick_waiters(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.local.notify_waiters();
        }
    }

    /// Marks the session corrupt with `detail` and returns that error.
    fn corrupt<T>(&self, detail: String) -> Result<T> {
        self.fail(detail.clone());
        Err(TransportError::corrupt(detail))
    }

    /// Why [`Inner::try_take`] cannot take: closed, or corrupt.
    #[cold]
    fn take_blocker(&self) -> TransportError {
        if self.status.is(CLOSED) {
            return TransportError::Closed;
        }
        self.corrupt_error().unwrap_or(TransportError::Closed)
    }

    /// Takes the next frame if one is published. `probe`: look with the lock-free hint first
    /// (cheap polling); without it the answer comes from the ring under the lock.
    #[inline(always)]
    fn try_take(&self, probe: bool) -> Result<Option<Frame>> {
        if self.status.is(CLOSED | FAILED) {
            return Err(self.take_blocker());
        }
        if probe && !self.rx.maybe_ready() {
            return Ok(None);
        }
        let mut st = lock(&self.rx.state);
        let words = match st.ring.peek() {
            Ok(Some(w)) => w,
            Ok(None) => return Ok(None),
            Err(e) => {
                drop(st);
                return self.corrupt(format!("receive ring: {e}"));
            }
        };
        let location = match Descriptor::locate(&words, self.seg.seg.layout().geometry()) {
            Ok(l) => l,
            Err(e) => {
                drop(st);
                return self.corrupt(format!("descriptor: {e}"));
            }
        };
        let payload = match location {
            Location::Inline(len) => {
                let conts = continuations(len);
                let capacity = st.ring.capacity();
                if conts as u64 >= capacity {
                    drop(st);
                    return self.corrupt(format!(
                        "an inline payload of {len} bytes needs {} ring entries, the ring holds \
                         {capacity}",
                        1 + conts
                    ));
                }
                // Copied out before its entries are given back: from whole words into the
                // frame itself when it fits (no allocation), else onto the heap.
                if len <= TxBuf::INLINE_CAPACITY {
                    // Only the continuation words that carry these bytes are loaded.
                    let ring = &st.ring;
                    let cont = |i| if conts > 0 { ring.word(1, i) } else { 0 };
                    if let Some(b) = TxBuf::inline_from_array(inline_small_bytes(&words, cont), len)
                    {
                        let wake = self.consumed(&mut st, 1 + conts as u64, len);
                        self.rx.unlock_and_wake(st, wake);
                        self.kick_waiters();
                        // Returned from here: the frame, the largest value on this path, is
                        // built once.
                        let header = header_from_words(&words);
                        return Ok(Some(Frame::with_header(header, Payload::Buf(b))));
                    }
                }
                let payload = Payload::Bytes(Bytes::from(self.read_inline(&st, &words, len)));
                let wake = self.consumed(&mut st, 1 + conts as u64, len);
                self.rx.unlock_and_wake(st, wake);
                payload
            }
            Location::Slot { slot, len } => {
                let Some((ptr, size)) = self.seg.slot_ptr(self.seg.side.rx(), slot) else {
                    drop(st);
                    return self.corrupt(format!(
                        "descriptor names slot {slot:?} outside the segment"
                    ));
                };
                if let Err(e) = st.held.insert(slot) {
                    drop(st);
                    return self.corrupt(format!("descriptor reuses a held slot: {e}"));
                }
                st.held_bytes += size as u64;
                let wake = self.consumed(&mut st, 1, len as usize);
                self.rx.unlock_and_wake(st, wake);
                Payload::Bytes(Bytes::from_owner(RxSlot {
                    rx: self.rx.clone(),
                    slot,
                    ptr,
                    len: (len as usize).min(size),
                    size,
                }))
            }
        };
        self.kick_waiters();
        Ok(Some(Frame::with_header(header_from_words(&words), payload)))
    }

    /// The `len` bytes of an inline payload longer than a [`TxBuf`] holds, from the descriptor
    /// `first` at the tail and the continuation entries after it (checked to be in the ring).
    #[cold]
    fn read_inline(&self, st: &RxState, first: &[u64; 8], len: usize) -> Vec<u8> {
        #[expect(
            clippy::slow_vector_initialization,
            reason = "`vec![0; len]` calls calloc, which bypasses glibc's per-thread \
                      cache and costs about twice a malloc plus a fill at this size"
        )]
        let mut v = Vec::with_capacity(len);
        v.resize(len, 0);
        let head = len.min(INLINE_HEAD);
        v[..head].copy_from_slice(&inline_small_bytes(first, |_| 0)[..head]);
        for k in 0..continuations(len) {
            if let Some(rest) = v.get_mut(INLINE_HEAD + k * CONT_BYTES..) {
                Descriptor::read_continuation(&st.ring.read(1 + k as u64), rest);
            }
        }
        v
    }

    /// Gives the `entries` of a frame of `len` bytes back to the producer and counts the frame
    /// (receive counters are written only here, under the receive lock). `true` when the
    /// producer waits for this room: the caller rings its doorbell once the lock is released.
    #[must_use]
    fn consumed(&self, st: &mut RxState, entries: u64, len: usize) -> bool {
        st.ring.advance(entries);
        self.rx.mirror_tail(st);
        let wake = st.ring.producer_needs_wake();
        bump(&self.seg.counters.frames_received, 1);
        bump(&self.seg.counters.bytes_received, len as u64);
        wake
    }

    /// The peer's death is noticed under the transmit lock (in-flight slots reclaimed) before
    /// its flag is published: a sender that passed `send_blocker` just before must not publish
    /// or lease after the reclaim, or its slot would stay in flight forever.
    fn check_not_reclaimed(&self, st: &TxState) -> Result<()> {
        if st.reclaimed {
            return Err(self.send_blocker().unwrap_or(TransportError::PeerDied));
        }
        Ok(())
    }

    /// Leases a slot for `len` bytes if one is free now.
    fn try_alloc(&self, len: usize) -> Result<Option<TxBuf>> {
        if let Some(e) = self.send_blocker() {
            return Err(e);
        }
        let mut st = lock(&self.tx.state);
        self.check_not_reclaimed(&st)?;
        let mut drained = false;
        let slot = loop {
            match st.pool.alloc(len) {
                Ok(Some(s)) => break s,
                // Returned slots are taken back only when the class runs dry: one pass over
                // the completion ring then serves many allocations.
                Ok(None) if !drained => {
                    drained = true;
                    if let Err(e) = self.tx.drain(&mut st) {
                        drop(st);
                        self.fail(e.to_string());
                        return Err(e);
                    }
                }
                Ok(None) => return Ok(None),
                Err(_) => {
                    return Err(TransportError::PayloadTooLarge {
                        len,
                        max: self.max_payload,
                    });
                }
            }
        };
        drop(st);
        let (ptr, size) = self
            .seg
            .slot_ptr(self.seg.side.tx(), slot)
            .ok_or_else(|| TransportError::corrupt("own slot outside the segment"))?;
        // SAFETY: `ptr` addresses `size` bytes of our own direction's payload memory inside the
        // mapping (computed from the validated, process-local layout); the pool just leased this
        // slot to this buffer alone, and it stays leased until `release(token)` or
        // `take_lease`. The mapping lives as long as `owner` (which holds the segment).
        let buf = unsafe { TxBuf::from_lease(ptr, len, size, slot.to_entry(), self.owner.clone()) };
        Ok(Some(buf))
    }

    /// Tries to publish a descriptor. For a slot payload, `buf` is the lease; it is taken only
    /// when the descriptor is published, so a failure or cancellation frees it.
    fn try_publish(&self, header: FrameHeader, body: &mut Body) -> Result<bool> {
        match body {
            Body::Inline(p) => self.try_publish_inline(&header, p),
            Body::Slot { buf, zero_copy } => {
                if let Some(e) = self.send_blocker() {
                    return Err(e);
                }
                let Some(b) = buf else {
                    return Err(TransportError::Closed);
                };
                let slot = SlotRef::from_entry(lease_token(b, &self.owner)?);
                let first = Descriptor::slot(header, slot, b.len() as u32).encode();
                let len = b.len();
                let zero_copy = *zero_copy;
                self.push_unit(1, |_, i| first[i], len, zero_copy, |st| {
                    if let Some(b) = buf.take() {
                        let _ = b.take_lease(&self.owner);
                    }
                    if let Err(e) = st.pool.mark_in_flight(slot) {
                        tracing::error!(backend = "shm", error = %e, "own slot in an unexpected state");
                    }
                })
            }
        }
    }

    /// Whether a frame with `payload` is published inline in the ring (`send` and `try_send`
    /// route it through [`Inner::try_publish_inline`]): small, and not a buffer leased from
    /// this session (that one is sent from its slot without a copy). `PayloadTooLarge` for a
    /// payload no route can carry.
    #[inline(always)]
    fn travels_inline(&self, payload: &Payload) -> Result<bool> {
        let len = payload.len();
        if len > self.max_payload {
            return Err(TransportError::PayloadTooLarge {
                len,
                max: self.max_payload,
            });
        }
        Ok(len <= self.inline_max && !is_lease_of(payload, &self.owner))
    }

    /// Tries to publish `bytes` (at most `INLINE_MAX`) inline in the ring, straight from the
    /// caller's memory: each ring word is computed from a padded copy sized for the unit
    /// ([`InlineUnit`]) and stored in place.
    fn try_publish_inline(&self, header: &FrameHeader, bytes: &[u8]) -> Result<bool> {
        if let Some(e) = self.send_blocker() {
            return Err(e);
        }
        let len = bytes.len();
        // The padded copy is made before taking the lock.
        if len <= INLINE_HEAD {
            if let Some(u) = InlineUnit::<INLINE_HEAD>::new(header, bytes) {
                return self.push_unit(u.entries(), |e, i| u.word(e, i), len, false, |_| {});
            }
        } else if len <= INLINE_HEAD + CONT_BYTES {
            if let Some(u) = InlineUnit::<{ INLINE_HEAD + CONT_BYTES }>::new(header, bytes) {
                return self.push_unit(u.entries(), |e, i| u.word(e, i), len, false, |_| {});
            }
        } else if let Some(u) = InlineUnit::<INLINE_MAX>::new(header, bytes) {
            return self.push_unit(u.entries(), |e, i| u.word(e, i), len, false, |_| {});
        }
        Err(TransportError::PayloadTooLarge {
            len,
            max: INLINE_MAX,
        })
    }

    /// Publishes the unit of `entries` entries whose words `word(e, i)` gives (see
    /// [`crate::ring::Producer::try_push_unit_with`]) if the ring has room now (`Ok(false)` if
    /// not), then runs `published` under the transmit lock. A published frame of `len` bytes
    /// is counted in the send counters (written only here, under the transmit lock); the
    /// receiver's doorbell is rung after unlocking if it sleeps.
    #[inline(always)]
    fn push_unit(
        &self,
        entries: usize,
        word: impl Fn(usize, usize) -> u64,
        len: usize,
        zero_copy: bool,
        published: impl FnOnce(&mut TxState),
    ) -> Result<bool> {
        let mut st = lock(&self.tx.state);
        self.check_not_reclaimed(&st)?;
        match st.ring.try_push_unit_with(entries, word) {
            Ok(()) => {}
            Err(PushError::Full) => return Ok(false),
            Err(PushError::Corrupt(e)) => {
                drop(st);
                return self.corrupt(format!("transmit ring: {e}"));
            }
            // `inline_max` keeps every unit within half the ring.
            Err(e @ PushError::BadUnit { .. }) => {
                drop(st);
                return Err(TransportError::Config(format!("transmit ring: {e}")));
            }
        }
        debug_assert!(entries <= 1 + MAX_CONT, "a unit of {entries} entries");
        let start = st.ring.head().wrapping_sub(entries as u64);
        let at = (start & (st.ring.capacity() - 1)) as usize;
        if let Some(e) = st.unit_entries.get_mut(at) {
            // `entries <= 1 + MAX_CONT`.
            *e = entries as u8;
        }
        published(&mut st);
        let wake = st.ring.consumer_needs_wake();
        let c = &self.seg.counters;
        bump(&c.frames_sent, 1);
        bump(&c.bytes_sent, len as u64);
        bump(
            if zero_copy {
                &c.zero_copy_sends
            } else {
                &c.copied_sends
            },
            1,
        );
        drop(st);
        if wake {
            self.seg.ring_peer();
        }
        Ok(true)
    }

    /// Frames published and not yet taken by the receiver.
    fn queued_tx(&self, st: &mut TxState) -> u64 {
        if st.reclaimed {
            return 0;
        }
        match st.ring.consumed_up_to() {
            Ok(tail) => st.units_since(tail),
            Err(_) => 0,
        }
    }
}

/// How much longer a receive spins after `frames` frames of `bytes` bytes in all: 1 µs per
/// 16 KiB of their average size, at most 1 ms (see [`Inner::spin_longer_after_large_frames`]).
fn extra_spin(bytes: u64, frames: u64) -> Duration {
    let avg = bytes.checked_div(frames).unwrap_or(0);
    Duration::from_micros(avg >> 14).min(Duration::from_millis(1))
}

/// True when `p` is a buffer leased from `owner` (it is sent from its slot, without a copy).
fn is_lease_of(p: &Payload, owner: &Arc<dyn LeaseOwner>) -> bool {
    matches!(p, Payload::Buf(b) if b.is_leased_from(owner))
}

fn lease_token(b: &TxBuf, owner: &Arc<dyn LeaseOwner>) -> Result<u64> {
    // `take_lease` consumes; peek at the token by the documented encoding instead.
    b.lease_token(owner)
        .ok_or_else(|| TransportError::corrupt("buffer is not ours"))
}

/// A payload being sent.
enum Body {
    /// Up to `INLINE_MAX` bytes, carried in the descriptor and its continuation entries.
    Inline(Payload),
    /// A leased slot (`None` once published); `zero_copy` when the caller filled it in place.
    Slot { buf: Option<TxBuf>, zero_copy: bool },
}

impl Body {
    /// How many ring entries this body takes when published.
    fn ring_entries(&self) -> u64 {
        match self {
            Body::Inline(p) => 1 + continuations(p.len()) as u64,
            Body::Slot { .. } => 1,
        }
    }

    /// What the caller gave, back (for `TrySendError::Full`).
    fn into_payload(self) -> Payload {
        match self {
            Body::Inline(p) => p,
            Body::Slot { buf, .. } => buf.map(Payload::Buf).unwrap_or_default(),
        }
    }
}

impl Inner {
    /// Converts a payload into what goes on the ring without waiting: a buffer leased from this
    /// endpoint is sent as it is, a small payload goes inline, any other is copied into a slot
    /// if one is free now. `Err(payload)` when no slot is free.
    fn try_prepare(&self, payload: Payload) -> Result<Result<Body, Payload>> {
        match payload {
            Payload::Buf(b) if b.is_leased_from(&self.owner) => Ok(Ok(Body::Slot {
                buf: Some(b),
                zero_copy: true,
            })),
            p if p.len() <= self.inline_max => Ok(Ok(Body::Inline(p))),
            p => Ok(match self.try_alloc(p.len())? {
                Some(mut buf) => {
                    buf.copy_from_slice(&p);
                    Ok(Body::Slot {
                        buf: Some(buf),
                        zero_copy: false,
                    })
                }
                None => Err(p),
            }),
        }
    }

    /// The wait loop of `send` and `recv`. Counted as a local waiter throughout (see
    /// [`Inner::waiting`]), it retries `attempt`; when that fails, `prepare_park` announces the
    /// park on the ring and re-checks exactly the condition that failed, and the task sleeps
    /// only when that re-check says so. `waits` counts the call once.
    async fn wait_for<T>(
        &self,
        waits: &AtomicU64,
        what: &str,
        mut attempt: impl FnMut() -> Result<Option<T>>,
        mut prepare_park: impl FnMut() -> std::result::Result<bool, crate::ring::RingError>,
    ) -> Result<T> {
        let _waiting = self.waiting();
        waits.fetch_add(1, Ordering::Relaxed);
        loop {
            let notified = self.local.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = attempt()? {
                return Ok(v);
            }
            match prepare_park() {
                Ok(true) => self.park(notified).await,
                Ok(false) => {}
                Err(e) => return Err(self.fail_ring(what, e)),
            }
        }
    }

    /// The waiting part of `send`: parks until the ring has room for the whole frame (boxed
    /// by the caller, so the common future stays small).
    async fn send_wait(&self, header: FrameHeader, mut body: Body) -> Result<()> {
        let needed = body.ring_entries();
        self.wait_for(
            &self.seg.counters.send_waits,
            "transmit ring",
            || {
                let sent = self.try_publish(header, &mut body)?;
                if sent {
                    self.kick_waiters();
                }
                Ok(sent.then_some(()))
            },
            || lock(&self.tx.state).ring.prepare_park(needed),
        )
        .await
    }

    /// The waiting part of `recv`: parks until a frame arrives or the session ends.
    async fn recv_wait(&self) -> Result<Frame> {
        if let Some(f) = self.spin_longer_after_large_frames()? {
            return Ok(f);
        }
        self.wait_for(
            &self.seg.counters.recv_waits,
            "receive ring",
            || self.take_or_end(),
            || lock(&self.rx.state).ring.prepare_park(),
        )
        .await
    }

    /// The waiting part of `alloc`: parks until a slot of the class comes back.
    async fn alloc_wait(&self, len: usize) -> Result<TxBuf> {
        let _waiting = self.waiting();
        self.seg.counters.send_waits.fetch_add(1, Ordering::Relaxed);
        loop {
            let freed = self.tx.slot_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let notified = self.local.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(b) = self.try_alloc(len)? {
                return Ok(b);
            }
            let may_sleep = lock(&self.tx.state).completions.prepare_park();
            match may_sleep {
                Ok(true) => {
                    tokio::select! {
                        _ = freed => {}
                        _ = self.park(notified) => {}
                    }
                }
                Ok(false) => {}
                Err(e) => return Err(self.fail_ring("completion ring", e)),
            }
        }
    }
}

impl ShmTransport {
    /// Also treats the exit of process `pid` as the peer's death (for a peer whose pid is known
    /// from outside the socket, e.g. a child this process spawned).
    pub(crate) fn watch_process(&mut self, pid: i32) -> Result<()> {
        let pidfd =
            crate::os::async_readable(crate::os::pidfd_open(pid).map_err(std::io::Error::from)?)?;
        let inner = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            let _ = pidfd.readable().await;
            if let Some(inner) = inner.upgrade() {
                tracing::debug!(backend = "shm", pid, "the peer's process exited (pidfd)");
                inner.on_peer_gone();
            }
        });
        self.watchers.push(task.abort_handle());
        Ok(())
    }

    /// Resolves once a frame is ready to receive or the session has ended (closed, peer gone,
    /// or corrupt), without taking the frame and without spinning: the waiter parks on the
    /// eventfd at once. Useful to wait on many sessions (the hub's `recv_any`); follow it with
    /// [`Transport::try_recv`]. Cancel-safe.
    pub async fn readable(&self) {
        let inner = &self.inner;
        let _waiting = inner.waiting();
        let mut counted = false;
        loop {
            let notified = inner.local.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if inner.status.is(CLOSED | FAILED) || inner.recv_end().is_some() {
                return;
            }
            let may_sleep = {
                let mut st = lock(&inner.rx.state);
                match st.ring.is_ready() {
                    Ok(false) => st.ring.prepare_park(),
                    // Ready, or broken (the next receive reports it).
                    Ok(true) | Err(_) => return,
                }
            };
            match may_sleep {
                Ok(true) => {
                    if !counted {
                        counted = true;
                        inner
                            .seg
                            .counters
                            .recv_waits
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    inner.park(notified).await
                }
                Ok(false) | Err(_) => return,
            }
        }
    }

    /// Resolves once the session has ended (closed, peer gone or corrupt) and no frame is left
    /// to receive. Cancel-safe; waits without polling (every receive wakes it to re-check).
    pub async fn drained(&self) {
        let inner = &self.inner;
        let _waiting = inner.waiting();
        loop {
            let notified = inner.local.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let ended = inner.status.is(CLOSED | FAILED) || inner.recv_end().is_some();
            if ended && !matches!(lock(&inner.rx.state).ring.is_ready(), Ok(true)) {
                return;
            }
            notified.await;
        }
    }

    /// An [`allocator_api2`] allocator whose allocations live in this endpoint's send slots:
    /// a `Vec<u8, ShmAllocator>` built in place is sent without a copy
    /// (see [`ShmAllocator::into_buf`](crate::ShmAllocator::into_buf)).
    pub fn allocator(&self) -> crate::allocator::ShmAllocator {
        crate::allocator::ShmAllocator::new(self.inner.tx.clone(), self.inner.owner.clone())
    }
}

impl ShmTransport {
    /// Payloads up to this many bytes travel inside the descriptor ring instead of a slot
    /// (16 bytes in the descriptor, 56 in each further entry, and never more than half the
    /// ring; 240 bytes with the default ring). Such a frame takes `1 + ceil((len - 16) / 56)`
    /// ring entries, and [`Transport::alloc`] of such a length returns a heap buffer: copying a
    /// few cache lines into the ring costs less than leasing and returning a slot.
    pub fn inline_max(&self) -> usize {
        self.inner.inline_max
    }

    /// The shared segment, for tests that play a hostile peer (feature `conformance`). Writing
    /// through it breaks the protocol on purpose.
    #[cfg(any(test, feature = "conformance"))]
    pub fn segment(&self) -> &Segment {
        &self.inner.seg.seg
    }
}

impl Transport for ShmTransport {
    // Not an `async fn`: its argument would be copied from the future into a local when it
    // is first polled, and a frame is the largest value of the hot path. The block uses the
    // captured frame in place.
    #[expect(
        clippy::manual_async_fn,
        reason = "see above: the argument is used in place"
    )]
    fn send(&self, frame: Frame) -> impl Future<Output = Result<()>> + Send {
        async move {
            let inner = &self.inner;
            let len = frame.payload.len();
            if inner.travels_inline(&frame.payload)? {
                // Small frames travel inline: published straight from the caller's bytes (which
                // checks `send_blocker` first), with the same fast path and spin as below.
                if inner.try_publish_inline(&frame.header, &frame.payload)?
                    || inner
                        .spin(|| {
                            Ok(inner
                                .try_publish_inline(&frame.header, &frame.payload)?
                                .then_some(()))
                        })?
                        .is_some()
                {
                    inner.kick_waiters();
                    return Ok(());
                }
                return Box::pin(inner.send_wait(frame.header, Body::Inline(frame.payload))).await;
            }
            if let Some(e) = inner.send_blocker() {
                return Err(e);
            }
            let header = frame.header;
            let mut body = match inner.try_prepare(frame.payload)? {
                Ok(body) => body,
                Err(p) => {
                    let mut buf = self.alloc(len).await?;
                    buf.copy_from_slice(&p);
                    Body::Slot {
                        buf: Some(buf),
                        zero_copy: false,
                    }
                }
            };
            // Fast path, then a short spin, without registering as a waiter; the parking part is
            // boxed so that this future stays small (it is moved on every call).
            if inner.try_publish(header, &mut body)?
                || inner
                    .spin(|| Ok(inner.try_publish(header, &mut body)?.then_some(())))?
                    .is_some()
            {
                inner.kick_waiters();
                return Ok(());
            }
            Box::pin(inner.send_wait(header, body)).await
        }
    }

    fn try_send(&self, frame: Frame) -> Result<(), TrySendError> {
        let inner = &self.inner;
        if inner.travels_inline(&frame.payload)? {
            // As in `send`: published straight from the caller's bytes (after `send_blocker`),
            // and handed back whole when the ring has no room for its unit.
            return if inner.try_publish_inline(&frame.header, &frame.payload)? {
                inner.kick_waiters();
                Ok(())
            } else {
                Err(TrySendError::Full(frame))
            };
        }
        if let Some(e) = inner.send_blocker() {
            return Err(e.into());
        }
        // Room in the ring first, so a Full frame is handed back without touching the pool.
        {
            let mut st = lock(&inner.tx.state);
            match st.ring.free_space() {
                Ok(0) => return Err(TrySendError::Full(frame)),
                Ok(_) => {}
                Err(e) => {
                    drop(st);
                    return Err(inner.fail_ring("transmit ring", e).into());
                }
            }
        }
        let header = frame.header;
        let mut body = match inner.try_prepare(frame.payload)? {
            Ok(body) => body,
            Err(p) => return Err(TrySendError::Full(Frame::with_header(header, p))),
        };
        if inner.try_publish(header, &mut body)? {
            inner.kick_waiters();
            Ok(())
        } else {
            Err(TrySendError::Full(Frame::with_header(
                header,
                body.into_payload(),
            )))
        }
    }

    async fn recv(&self) -> Result<Frame> {
        let inner = &self.inner;
        // Fast path, then a short spin, without registering as a waiter.
        if let Some(f) = inner.take_or_end()? {
            return Ok(f);
        }
        if let Some(f) = inner.spin(|| inner.take_or_end())? {
            return Ok(f);
        }
        Box::pin(inner.recv_wait()).await
    }

    fn try_recv(&self) -> Result<Option<Frame>> {
        self.inner.take_or_end()
    }

    async fn alloc(&self, len: usize) -> Result<TxBuf> {
        let inner = &self.inner;
        if len > inner.max_payload {
            return Err(TransportError::PayloadTooLarge {
                len,
                max: inner.max_payload,
            });
        }
        if len <= inner.inline_max {
            // Small frames travel inline in the ring: a heap buffer is cheaper than a slot
            // (no lease, no completion), and sending it copies it into the ring once.
            if let Some(e) = inner.send_blocker() {
                return Err(e);
            }
            return Ok(TxBuf::heap(len));
        }
        if let Some(b) = inner.try_alloc(len)? {
            return Ok(b);
        }
        if let Some(b) = inner.spin(|| inner.try_alloc(len))? {
            return Ok(b);
        }
        Box::pin(inner.alloc_wait(len)).await
    }

    fn close(&self) {
        let inner = &self.inner;
        if inner.status.set(CLOSED) {
            return;
        }
        inner.seg.seg.mark_closed(inner.seg.side);
        let _ = rustix::io::write(&inner.seg.sock, &[MSG_CLOSE]);
        // Discard what we will never read, returning its slots to the peer.
        let wake = {
            let mut st = lock(&inner.rx.state);
            let mut wake = false;
            // At most one ring's worth: a peer that keeps publishing cannot keep `close` here.
            let mut budget = st.ring.capacity();
            while let Ok(Some(words)) = st.ring.peek() {
                // Stop at anything broken: there is nothing to return past it.
                let Ok(desc) = Descriptor::decode(&words, inner.seg.seg.layout().geometry()) else {
                    break;
                };
                let entries = 1 + desc.continuations() as u64;
                if entries > budget {
                    break;
                }
                budget -= entries;
                st.ring.advance(entries);
                if let DescPayload::Slot { slot, .. } = desc.payload {
                    if st.held.insert(slot).is_ok() {
                        wake |= inner.rx.give_back(&mut st, slot);
                    }
                }
            }
            inner.rx.mirror_tail(&st);
            wake | st.ring.producer_needs_wake()
        };
        // One doorbell serves both rings: the peer's sender re-checks its ring and its slots.
        if wake {
            inner.seg.ring_peer();
        }
        inner.local.notify_waiters();
        inner.tx.slot_freed.notify_waiters();
        tracing::debug!(backend = "shm", side = ?inner.seg.side, "session closed");
    }

    fn max_payload(&self) -> usize {
        self.inner.max_payload
    }

    fn stats(&self) -> Stats {
        let inner = &self.inner;
        let (tx_queued, pool) = {
            let mut st = lock(&inner.tx.state);
            if inner.tx.drain(&mut st).is_err() {
                // Reported to the next operation; stats stay best effort.
            }
            let q = inner.queued_tx(&mut st);
            (q, st.pool.occupancy())
        };
        let (rx_queued, held, held_bytes) = {
            let st = lock(&inner.rx.state);
            let queued = if inner.status.is(CLOSED) {
                0
            } else {
                let geometry = inner.seg.seg.layout().geometry();
                st.ring.ready_units(|w| {
                    Descriptor::decode(w, geometry)
                        .ok()
                        .map(|d| 1 + d.continuations() as u64)
                })
            };
            (queued, st.held.held(), st.held_bytes)
        };
        Stats {
            tx_queued_frames: tx_queued,
            rx_queued_frames: rx_queued,
            buffer_bytes_in_use: pool.bytes_in_use as u64 + held_bytes,
            slots_in_use: (pool.slots_in_use + held) as u64,
            ..inner.seg.counters.snapshot()
        }
    }

    fn backend(&self) -> &'static str {
        "shm"
    }
}

impl Drop for ShmTransport {
    fn drop(&mut self) {
        self.close();
        for w in &self.watchers {
            w.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_units_are_walked_from_the_tail() {
        // Ring of 8: units of 1, 4, 1, 2 entries from position 0; the other positions hold
        // sizes left from an earlier lap.
        let entries = [1u8, 4, 3, 3, 3, 1, 2, 3];
        assert_eq!(units_between(&entries, 0, 8, 8), 4, "a full ring");
        assert_eq!(units_between(&entries, 1, 8, 8), 3);
        assert_eq!(units_between(&entries, 5, 6, 8), 1);
        assert_eq!(units_between(&entries, 8, 8, 8), 0, "empty");
        // Wrapping positions and indices: the same layout one lap later and near u64::MAX.
        assert_eq!(units_between(&entries, 16, 24, 8), 4);
        let base = u64::MAX - 2; // position 5 (u64::MAX & 7 == 7)
        assert_eq!(units_between(&entries, base, base.wrapping_add(3), 8), 2);
        // A tail inside a unit (a hostile peer): approximate, bounded, no panic.
        assert_eq!(units_between(&entries, 2, 8, 8), 3);
        assert_eq!(
            units_between(&[5; 8], 6, 8, 8),
            1,
            "a stale size past the head"
        );
        assert_eq!(
            units_between(&[0; 8], 3, 8, 8),
            5,
            "unknown sizes count as 1"
        );
        // A head more than a ring away (never from an honest ring): no walk at all.
        assert_eq!(units_between(&entries, 0, 100, 8), 0);
        assert_eq!(
            units_between(&[], 0, 8, 8),
            8,
            "a missing table counts entries"
        );
    }

    /// Bytes past an inline payload's length inside its ring entries (what a careless or
    /// hostile sender may leave there) never show in the received frame, not even when the
    /// received buffer is grown.
    #[tokio::test]
    async fn inline_padding_in_the_ring_never_shows() {
        use crate::layout::Direction;
        let (a, b) = crate::pair(crate::ShmConfig::default()).await.unwrap();
        let layout = a.segment().layout();
        let words = a
            .segment()
            .mapping()
            .words(0, layout.total_len() / 8)
            .unwrap();
        let ring = layout.dir(Direction::AToB).desc_ring_offset / 8 + crate::ring::CONTROL_WORDS;
        let mut at = 0; // ring position of the next unit
        for len in [5usize, 16, 40, 64] {
            let payload: Vec<u8> = (1..=len as u8).collect();
            a.send(Frame::new(payload.clone()).msg_id(len as u64))
                .await
                .unwrap();
            // Every payload word of the unit (descriptor words 6, 7; continuation words
            // 0..3, 5..7) gets 0xEE in each byte past the length.
            let entries = 1 + continuations(len);
            for j in 0..(2 + 7 * (entries - 1)).min(8) {
                let (e, w) = payload_word_at_for_test(j);
                let word = &words[ring + (at + e) * 8 + w];
                let first_pad = len.saturating_sub(8 * j).min(8);
                let mut bytes = word.load(Ordering::Relaxed).to_le_bytes();
                bytes[first_pad..].fill(0xEE);
                word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
            }
            let f = b.recv().await.unwrap();
            assert_eq!(f.header.msg_id, len as u64);
            assert_eq!(f.bytes(), &payload[..], "len {len}");
            let Payload::Buf(mut buf) = f.payload else {
                panic!("len {len}: a small frame arrives in a TxBuf");
            };
            assert_eq!(buf.set_len(TxBuf::INLINE_CAPACITY), TxBuf::INLINE_CAPACITY);
            assert!(
                buf[len..].iter().all(|&x| x == 0),
                "len {len}: {:?}",
                &buf[..]
            );
            at += entries;
        }
    }

    /// Both inline routes (`send` straight from the frame, `try_send` through `try_prepare`)
    /// at the sizes where the unit grows, and the counters they keep.
    #[tokio::test]
    async fn both_inline_routes_carry_every_boundary_size() {
        let (a, b) = crate::pair(crate::ShmConfig::default()).await.unwrap();
        let max = a.inline_max();
        let sizes = [0, 1, 16, 17, 64, 65, 72, 73, max - 1, max];
        for (i, &len) in sizes.iter().enumerate() {
            let payload: Vec<u8> = (0..len).map(|k| (k * 31 + i) as u8).collect();
            if i % 2 == 0 {
                a.send(Frame::new(payload.clone()).msg_id(i as u64))
                    .await
                    .unwrap();
            } else {
                a.try_send(Frame::new(payload.clone()).msg_id(i as u64))
                    .unwrap();
            }
            let f = b.recv().await.unwrap();
            assert_eq!(
                (f.header.msg_id, f.bytes()),
                (i as u64, &payload[..]),
                "len {len}"
            );
        }
        let s = a.stats();
        assert_eq!((s.copied_sends, s.zero_copy_sends), (sizes.len() as u64, 0));
        assert_eq!(s.bytes_sent, sizes.iter().sum::<usize>() as u64);
    }

    /// With several status flags set, operations report them in a fixed order: a local close
    /// first, then corruption, then the peer's end.
    #[tokio::test]
    async fn status_flags_are_reported_in_order() {
        let (a, b) = crate::pair(crate::ShmConfig::default()).await.unwrap();
        a.inner.fail("test: broken on purpose".into());
        for r in [
            a.send(Frame::new(vec![1u8; 8])).await,
            a.try_send(Frame::new(vec![1u8; 8])).map_err(|e| match e {
                TrySendError::Full(_) => panic!("not full"),
                TrySendError::Failed(e) => e,
            }),
            a.recv().await.map(drop),
        ] {
            assert!(matches!(r, Err(TransportError::Corrupt { .. })), "{r:?}");
        }
        a.close();
        assert!(matches!(
            a.send(Frame::new(vec![1u8; 8])).await,
            Err(TransportError::Closed)
        ));
        assert!(matches!(a.recv().await, Err(TransportError::Closed)));
        // The peer's end, seen by `b` once `a` closed: a graceful close, not a death.
        let r = b.recv().await;
        assert!(matches!(r, Err(TransportError::Closed)), "{r:?}");
    }

    /// (entry of the unit, word in it) of payload word `j` (`j < 8`), as the wire layout
    /// documents it: descriptor words 6 and 7, then continuation words 0, 1, 2, 3, 5, 6.
    fn payload_word_at_for_test(j: usize) -> (usize, usize) {
        [
            (0, 6),
            (0, 7),
            (1, 0),
            (1, 1),
            (1, 2),
            (1, 3),
            (1, 5),
            (1, 6),
        ][j]
    }

    #[test]
    fn receives_spin_longer_only_after_large_frames() {
        // Small frames (all inline ones, and slots up to 16 KiB): no extension.
        assert_eq!(extra_spin(100 * 64, 100), Duration::ZERO);
        assert_eq!(extra_spin(16383, 1), Duration::ZERO);
        // No frame since the last wait, or wrapped counters: no extension, no panic.
        assert_eq!(extra_spin(0, 0), Duration::ZERO);
        assert_eq!(extra_spin(u64::MAX, 0), Duration::ZERO);
        // 1 µs per 16 KiB of the average frame.
        assert_eq!(extra_spin(3 << 20, 3), Duration::from_micros(64));
        assert_eq!(
            extra_spin((1 << 20) + 64 * 99, 100),
            Duration::from_micros(0)
        );
        assert_eq!(extra_spin(64 << 10, 1), Duration::from_micros(4));
        // Bounded whatever the counters say.
        assert_eq!(extra_spin(u64::MAX, 1), Duration::from_millis(1));
    }
}
