//! A session: the state shared by the user's handle, the reader task and the writer task, the
//! handshake that starts one, and the [`Transport`] implementation.

use crate::NetConfig;
use crate::sock::Sock;
use crate::wire::{self, HELLO_LEN, Hello};
use crate::writer::Out;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use transport_api::{
    Frame, Payload, Result, Stats, Transport, TransportError, TrySendError, TxBuf,
};

/// Why a session ended, as its operations report it.
#[derive(Clone, Debug)]
pub(crate) enum End {
    /// `close()` or drop on this side.
    LocalClose,
    /// The peer sent a graceful close.
    PeerClose,
    /// End of stream, reset or silence without a graceful close.
    PeerDied,
    /// The peer broke the protocol.
    Corrupt(String),
}

impl End {
    pub(crate) fn error(&self) -> TransportError {
        match self {
            End::LocalClose | End::PeerClose => TransportError::Closed,
            End::PeerDied => TransportError::PeerDied,
            End::Corrupt(d) => TransportError::corrupt(d.clone()),
        }
    }
}

/// State guarded by one lock: what the user sees and the flow-control account of sends.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Set once; later causes do not replace it.
    pub(crate) end: Option<End>,
    /// `close()` was called here: every operation reports `Closed` from then on.
    pub(crate) closed_locally: bool,
    /// The reader task ended: no more frames arrive. Until then, `recv` keeps waiting for
    /// frames the peer sent before the link broke (a failed write does not lose them).
    pub(crate) reader_done: bool,
    /// The socket is finished with (peer gone, peer closed, corrupt input, write failure):
    /// nothing more is written or read.
    pub(crate) link_down: bool,
    /// Frame bytes (wire cost) committed by sends, in total.
    pub(crate) sent: u64,
    /// Frame bytes the peer reported consumed, in total.
    pub(crate) acked: u64,
    /// Received frames not yet taken by `recv`.
    pub(crate) rx: VecDeque<Frame>,
    /// Frame bytes received, in total (checked against the window this side announced).
    pub(crate) received: u64,
}

/// Counters and occupancy gauges, readable without a lock.
#[derive(Default)]
pub(crate) struct Gauges {
    pub(crate) frames_sent: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) frames_received: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) send_waits: AtomicU64,
    pub(crate) recv_waits: AtomicU64,
    pub(crate) zero_copy_sends: AtomicU64,
    /// Sends of other payloads: their bytes are copied into the kernel's socket buffer (an
    /// `alloc` buffer is written from the memory the caller filled, counted as zero-copy).
    pub(crate) copied_sends: AtomicU64,
    pub(crate) tx_frames: AtomicU64,
    pub(crate) tx_bytes: AtomicU64,
    pub(crate) rx_frames: AtomicU64,
    pub(crate) rx_bytes: AtomicU64,
    /// Woken when queued messages were written whole (or dropped with the link).
    pub(crate) written: Notify,
}

/// Everything one session's handle and tasks share.
pub(crate) struct Shared {
    pub(crate) sock: Sock,
    pub(crate) backend: &'static str,
    /// Largest payload in either direction: the smaller of both hellos' `max_payload`.
    pub(crate) max_payload: usize,
    /// Frame bytes this side may have unconsumed at the peer (the peer's announced window).
    pub(crate) peer_window: u64,
    /// The window this side announced; the peer must stay within it.
    pub(crate) own_window: u64,
    /// Silence after which the peer is declared dead.
    pub(crate) keepalive: Duration,
    /// Longest this side's writer stays silent (a quarter of the peer's keep-alive timeout).
    pub(crate) ping_every: Duration,
    pub(crate) state: Mutex<State>,
    pub(crate) out: Mutex<Out>,
    /// Woken when credit arrives or the session ends.
    pub(crate) send_ready: Notify,
    /// Woken when frames arrive or the session ends.
    pub(crate) recv_ready: Notify,
    /// Wakes the writer task: frames queued, credit to grant, close, end.
    pub(crate) writer_wake: Notify,
    /// Frame bytes this side's `recv` consumed, in total.
    pub(crate) consumed: AtomicU64,
    /// The last `consumed` value sent to the peer as credit (written by the writer only).
    pub(crate) granted: AtomicU64,
    /// A send here waits for credit: the writer tells the peer (once per episode).
    pub(crate) want_credit: AtomicBool,
    /// The peer told us it waits for credit: grant on the next consumption.
    pub(crate) peer_wants: AtomicBool,
    pub(crate) gauges: Gauges,
    pub(crate) span: tracing::Span,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves consistent data (every update is a single
    // step), so a poisoned lock is used as is.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Ends the session for `end` (the first cause wins for what users see). Anything but a
    /// local close also ends the link: queued output is dropped and the socket shut down.
    pub(crate) fn finish(&self, end: End) {
        let mut st = lock(&self.state);
        let was = st.end.clone();
        if st.end.is_none() {
            st.end = Some(end.clone());
        }
        let link_ends = !matches!(end, End::LocalClose);
        let already_down = st.link_down;
        let reader_done = st.reader_done;
        if link_ends {
            st.link_down = true;
        }
        if matches!(end, End::LocalClose) {
            st.closed_locally = true;
            let n = st.rx.len() as u64;
            let bytes: u64 = st.rx.iter().map(|f| f.payload.len() as u64).sum();
            st.rx.clear();
            self.gauges.rx_frames.fetch_sub(n, Relaxed);
            self.gauges.rx_bytes.fetch_sub(bytes, Relaxed);
        }
        drop(st);
        if matches!(end, End::LocalClose) && !already_down {
            self.close_now();
        }
        if link_ends && !already_down {
            lock(&self.out).clear(&self.gauges);
            self.gauges.written.notify_waiters();
        }
        if reader_done {
            // Nothing more is read or written: the peer sees the end at once.
            self.sock.shutdown(rustix::net::Shutdown::Both);
        }
        match (&was, &end) {
            (None, End::LocalClose) => {
                tracing::info!(parent: &self.span, "session closed by this side")
            }
            (None, End::PeerClose) => {
                tracing::info!(parent: &self.span, "session closed by the peer")
            }
            (None, End::PeerDied) => tracing::warn!(parent: &self.span, "peer died"),
            (_, End::Corrupt(d)) => {
                tracing::warn!(parent: &self.span, detail = %d, "corrupt input from the peer; session ended")
            }
            _ => tracing::debug!(parent: &self.span, cause = ?end, "link ended"),
        }
        self.send_ready.notify_waiters();
        self.recv_ready.notify_waiters();
        self.writer_wake.notify_one();
    }

    /// Commits `frame` to the output queue if the peer's window has room and returns its
    /// sequence number; `Ok(None)` leaves the frame with the caller.
    fn try_commit(&self, frame: &mut Option<Frame>, wait_for_lock: bool) -> Result<Option<u64>> {
        let Some(f) = frame.as_ref() else {
            return Ok(None);
        };
        let cost = wire::cost(f.payload.len());
        let seq = {
            let mut st = lock(&self.state);
            if st.closed_locally {
                return Err(TransportError::Closed);
            }
            if let Some(end) = &st.end {
                return Err(end.error());
            }
            let outstanding = st.sent.saturating_sub(st.acked);
            if outstanding > 0 && outstanding + cost > self.peer_window {
                return Ok(None);
            }
            st.sent += cost;
            let f = frame.take().expect("checked above");
            // Queued under the state lock: a close decided by the writer (which looks at both)
            // never overtakes a committed frame.
            lock(&self.out).push_frame(f, &self.gauges)
        };
        self.kick(wait_for_lock);
        Ok(Some(seq))
    }

    /// Counts a frame that went out (or will, whole).
    fn count_sent(&self, len: usize, zero_copy: bool) {
        self.gauges.frames_sent.fetch_add(1, Relaxed);
        self.gauges.bytes_sent.fetch_add(len as u64, Relaxed);
        if zero_copy {
            self.gauges.zero_copy_sends.fetch_add(1, Relaxed);
        } else {
            self.gauges.copied_sends.fetch_add(1, Relaxed);
        }
    }

    /// Takes queued frame `seq` back if none of it was written, returning its credit.
    fn take_back(&self, seq: u64) -> Option<Frame> {
        let mut st = lock(&self.state);
        let f = lock(&self.out).take_back(seq, &self.gauges)?;
        st.sent -= wire::cost(f.payload.len());
        drop(st);
        self.send_ready.notify_waiters();
        Some(f)
    }

    /// Whether frame `seq` is written whole: `Ok(true)`, `Ok(false)` while it waits, the
    /// session's error when the link went down before it was.
    fn check_written(&self, seq: u64) -> Result<bool> {
        if lock(&self.out).is_written(seq) {
            return Ok(true);
        }
        let st = lock(&self.state);
        if st.link_down {
            return Err(st.end.as_ref().map_or(TransportError::PeerDied, End::error));
        }
        Ok(false)
    }

    /// Writes what is queued now (unless someone else is writing and `wait_for_lock` is
    /// false); what the socket does not take is left to the writer task.
    fn kick(&self, wait_for_lock: bool) {
        let out = if wait_for_lock {
            Some(lock(&self.out))
        } else {
            self.out.try_lock().ok()
        };
        if let Some(mut out) = out {
            match out.flush(&self.sock, &self.gauges) {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    drop(out);
                    self.write_failed(e);
                    return;
                }
            }
        }
        self.writer_wake.notify_one();
    }

    /// Queues the close message and writes it at once if the socket takes it, so that a
    /// process exiting right after `close()` still closes gracefully; otherwise the writer
    /// task finishes the job.
    fn close_now(&self) {
        let mut out = lock(&self.out);
        out.queue_close();
        match out.flush_blocking(&self.sock, &self.gauges, self.keepalive) {
            Ok(()) => {
                self.sock.shutdown(rustix::net::Shutdown::Write);
                // Input left unread when a TCP socket is closed, or arriving after, makes the
                // kernel reset the connection and drop what it has not sent yet (the last
                // frames, the close). So that a process may exit right after `close()`, wait
                // (at most `keepalive_ms`) for the peer to answer the close with its end of
                // stream, reading away what comes before it: nothing read after a local close
                // is used. A current-thread runtime could not run an in-process peer
                // meanwhile, so there only what is pending is read away.
                let multi_thread = tokio::runtime::Handle::try_current().is_ok_and(|h| {
                    h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
                });
                if matches!(self.sock, Sock::Tcp(_)) && multi_thread {
                    tokio::task::block_in_place(|| self.sock.drain_until_eof(self.keepalive));
                } else {
                    self.sock.discard_input();
                }
            }
            Err(e) => {
                drop(out);
                self.write_failed(e);
            }
        }
    }

    pub(crate) fn write_failed(&self, e: std::io::Error) {
        tracing::debug!(parent: &self.span, error = %e, "write failed");
        self.finish(End::PeerDied);
    }

    fn check_len(&self, len: usize) -> Result<()> {
        if len > self.max_payload {
            return Err(TransportError::PayloadTooLarge {
                len,
                max: self.max_payload,
            });
        }
        Ok(())
    }

    fn ask_credit(&self) {
        if !self.want_credit.swap(true, Relaxed) {
            self.writer_wake.notify_one();
        }
    }

    fn try_take(&self) -> Result<Option<Frame>> {
        let mut st = lock(&self.state);
        if st.closed_locally {
            return Err(TransportError::Closed);
        }
        let Some(f) = st.rx.pop_front() else {
            return match &st.end {
                Some(e) if st.reader_done => Err(e.error()),
                _ => Ok(None),
            };
        };
        drop(st);
        let len = f.payload.len() as u64;
        self.gauges.rx_frames.fetch_sub(1, Relaxed);
        self.gauges.rx_bytes.fetch_sub(len, Relaxed);
        let consumed =
            self.consumed.fetch_add(wire::cost(len as usize), Relaxed) + wire::cost(len as usize);
        let ungranted = consumed.saturating_sub(self.granted.load(Relaxed));
        if ungranted >= self.own_window / 4 || self.peer_wants.load(Relaxed) {
            self.writer_wake.notify_one();
        }
        Ok(Some(f))
    }
}

/// A send that committed its frame and waits for it to be written; see [`NetTransport::send`].
struct Pending<'a> {
    sh: &'a Shared,
    seq: u64,
    len: usize,
    zero_copy: bool,
    armed: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.armed && self.sh.take_back(self.seq).is_none() {
            // Partly written: it goes out whole, so it counts as sent.
            self.sh.count_sent(self.len, self.zero_copy);
        }
    }
}

/// One end of a `tcp://` or `unix://` session.
///
/// Sends are queued whole, in the order they complete, and written by whoever holds the
/// socket's write side (the sending task when the socket is idle, the session's writer task
/// otherwise), so a dropped `send` never leaves part of a frame on the wire. Received frames are
/// taken in arrival order by any number of receivers. Dropping the handle closes the session
/// gracefully.
///
/// `close()` (and drop) writes the close message before returning, so a process may exit right
/// after it: if the socket is full it waits for the peer to read, and over TCP on a multi-thread
/// runtime it also waits for the peer to answer the close (the kernel would otherwise reset a
/// connection still receiving, dropping its last unsent bytes), each for at most
/// `keepalive_ms`, blocking the calling thread (through `block_in_place` where it may).
pub struct NetTransport {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for NetTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetTransport")
            .field("backend", &self.shared.backend)
            .field("max_payload", &self.shared.max_payload)
            .finish_non_exhaustive()
    }
}

impl NetTransport {
    /// Runs the handshake on a connected socket and starts the session's tasks.
    pub(crate) async fn start(
        sock: Sock,
        backend: &'static str,
        cfg: &NetConfig,
        role: &'static str,
    ) -> Result<NetTransport> {
        let (local, peer) = sock.addresses();
        let span = transport_api::trace::session_span(backend, &local, &peer);
        sock.tune(cfg.keepalive)?;
        let ours = cfg.hello()?;
        let theirs = tokio::time::timeout(cfg.handshake_timeout, handshake(&sock, &ours))
            .await
            .map_err(|_| {
                TransportError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "{backend} handshake with {peer}: no hello within {:?}",
                        cfg.handshake_timeout
                    ),
                ))
            })?
            .inspect_err(|e| {
                tracing::warn!(parent: &span, error = %e, "handshake failed");
            })?;
        let max_payload = ours.max_payload.min(theirs.max_payload) as usize;
        let shared = Arc::new(Shared {
            sock,
            backend,
            max_payload,
            peer_window: u64::from(theirs.window),
            own_window: u64::from(ours.window),
            keepalive: cfg.keepalive,
            ping_every: Duration::from_millis(u64::from(theirs.keepalive_ms)) / 4,
            state: Mutex::new(State::default()),
            out: Mutex::new(Out::default()),
            send_ready: Notify::new(),
            recv_ready: Notify::new(),
            writer_wake: Notify::new(),
            consumed: AtomicU64::new(0),
            granted: AtomicU64::new(0),
            want_credit: AtomicBool::new(false),
            peer_wants: AtomicBool::new(false),
            gauges: Gauges::default(),
            span,
        });
        tracing::info!(parent: &shared.span, role, max_payload, "session opened");
        tokio::spawn(crate::reader::run(shared.clone()));
        tokio::spawn(crate::writer::run(shared.clone()));
        Ok(NetTransport { shared })
    }
}

/// Sends our hello and reads the peer's (exactly [`HELLO_LEN`] bytes, so that frames the peer
/// sends right after stay in the socket for the reader).
async fn handshake(sock: &Sock, ours: &Hello) -> Result<Hello> {
    sock.write_all(&ours.encode()).await?;
    let mut b = [0u8; HELLO_LEN];
    let n = sock.read_exact(&mut b).await?;
    if n < HELLO_LEN {
        // Judge what arrived before complaining about its length: garbage is named as such.
        if n >= 8 && b[..8] != wire::MAGIC {
            return Hello::decode(&b);
        }
        return Err(TransportError::corrupt(format!(
            "truncated hello: the peer sent {n} of {HELLO_LEN} bytes, then ended the stream"
        )));
    }
    Hello::decode(&b)
}

impl Transport for NetTransport {
    async fn send(&self, frame: Frame) -> Result<()> {
        let sh = &*self.shared;
        sh.check_len(frame.payload.len())?;
        let (len, zero_copy) = (
            frame.payload.len(),
            matches!(frame.payload, Payload::Buf(_)),
        );
        let mut frame = Some(frame);
        let mut waited = false;
        let seq = loop {
            let notified = sh.send_ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(seq) = sh.try_commit(&mut frame, false)? {
                break seq;
            }
            if !waited {
                waited = true;
                sh.gauges.send_waits.fetch_add(1, Relaxed);
            }
            sh.ask_credit();
            notified.await;
        };
        // `Ok` only once the frame is in the kernel: a process killed after `send` returned
        // loses nothing. Dropped before that, the frame is taken back if none of it was
        // written, and goes out whole otherwise.
        let mut pending = Pending {
            sh,
            seq,
            len,
            zero_copy,
            armed: true,
        };
        loop {
            let notified = sh.gauges.written.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match sh.check_written(seq) {
                Ok(true) => {
                    pending.armed = false;
                    sh.count_sent(len, zero_copy);
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => {
                    pending.armed = false;
                    return Err(e);
                }
            }
            if !waited {
                waited = true;
                sh.gauges.send_waits.fetch_add(1, Relaxed);
            }
            notified.await;
        }
    }

    fn try_send(&self, frame: Frame) -> Result<(), TrySendError> {
        let sh = &*self.shared;
        sh.check_len(frame.payload.len())?;
        let (len, zero_copy) = (
            frame.payload.len(),
            matches!(frame.payload, Payload::Buf(_)),
        );
        let mut slot = Some(frame);
        let Some(seq) = sh.try_commit(&mut slot, true)? else {
            sh.ask_credit();
            return Err(TrySendError::Full(slot.expect("not committed")));
        };
        // As for `send`: the frame must be in the kernel (or on its way, partly written)
        // when this returns `Ok`; a full socket hands it back.
        if !sh.check_written(seq)? {
            if let Some(f) = sh.take_back(seq) {
                return Err(TrySendError::Full(f));
            }
        }
        sh.count_sent(len, zero_copy);
        Ok(())
    }

    async fn recv(&self) -> Result<Frame> {
        let sh = &*self.shared;
        let mut waited = false;
        loop {
            let notified = sh.recv_ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(f) = sh.try_take()? {
                return Ok(f);
            }
            if !waited {
                waited = true;
                sh.gauges.recv_waits.fetch_add(1, Relaxed);
            }
            notified.await;
        }
    }

    fn try_recv(&self) -> Result<Option<Frame>> {
        self.shared.try_take()
    }

    async fn alloc(&self, len: usize) -> Result<TxBuf> {
        self.shared.check_len(len)?;
        if let Some(end) = &lock(&self.shared.state).end {
            return Err(end.error());
        }
        // Process memory, written to the socket from where it is: sending it copies nothing.
        Ok(TxBuf::heap(len))
    }

    fn close(&self) {
        self.shared.finish(End::LocalClose);
    }

    fn max_payload(&self) -> usize {
        self.shared.max_payload
    }

    fn stats(&self) -> Stats {
        let g = &self.shared.gauges;
        Stats {
            frames_sent: g.frames_sent.load(Relaxed),
            bytes_sent: g.bytes_sent.load(Relaxed),
            frames_received: g.frames_received.load(Relaxed),
            bytes_received: g.bytes_received.load(Relaxed),
            send_waits: g.send_waits.load(Relaxed),
            recv_waits: g.recv_waits.load(Relaxed),
            zero_copy_sends: g.zero_copy_sends.load(Relaxed),
            copied_sends: g.copied_sends.load(Relaxed),
            wake_syscalls: 0,
            tx_queued_frames: g.tx_frames.load(Relaxed),
            rx_queued_frames: g.rx_frames.load(Relaxed),
            buffer_bytes_in_use: g.tx_bytes.load(Relaxed) + g.rx_bytes.load(Relaxed),
            slots_in_use: 0,
        }
    }

    fn backend(&self) -> &'static str {
        self.shared.backend
    }
}

impl Drop for NetTransport {
    fn drop(&mut self) {
        self.shared.finish(End::LocalClose);
    }
}
