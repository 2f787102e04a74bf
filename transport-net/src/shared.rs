//! The state one session's handle, reader task and writer task share: why it ended, the
//! receive queue and credit ([`State`]), the output queue, and the operations on them.

use crate::gauges::Gauges;
use crate::out::Out;
use crate::sock::Sock;
use crate::wire;
use std::collections::VecDeque;
use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64, AtomicUsize,
    Ordering::{AcqRel, Relaxed},
};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use transport_api::{Frame, Result, TransportError};

/// See [`Shared::probe_due`].
pub(crate) const PROBE_EVERY: u32 = 32;

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
    /// The session's reader or writer task was dropped before it finished (the tokio runtime
    /// it was spawned on, the one that created the session, shut down) or panicked: nothing
    /// reads or writes the socket any more.
    TasksGone {
        /// The task panicked (a bug in this crate) rather than being dropped with its runtime.
        panicked: bool,
    },
}

impl End {
    pub(crate) fn error(&self) -> TransportError {
        match self {
            End::LocalClose | End::PeerClose => TransportError::Closed,
            End::PeerDied => TransportError::PeerDied,
            End::Corrupt(d) => TransportError::corrupt(d.clone()),
            End::TasksGone { panicked: false } => TransportError::Io(std::io::Error::other(
                "the tokio runtime that created this session (and runs its socket's reader and \
                 writer) has shut down",
            )),
            End::TasksGone { panicked: true } => TransportError::Io(std::io::Error::other(
                "the session's socket reader or writer task panicked",
            )),
        }
    }
}

/// Made before the reader or writer task is spawned and moved into it: dropped before
/// [`TaskGuard::done`], that is with the task when its runtime shuts down (whether or not the
/// task ever ran) or when it panics, it ends the session ([`End::TasksGone`]) and wakes every
/// waiter, so that calls made from another runtime fail instead of waiting for a task that no
/// longer exists.
pub(crate) struct TaskGuard {
    sh: Arc<Shared>,
    reader: bool,
    finished: bool,
}

impl TaskGuard {
    /// The guard of the reader task (`reader`) or of the writer task.
    pub(crate) fn new(sh: Arc<Shared>, reader: bool) -> TaskGuard {
        TaskGuard {
            sh,
            reader,
            finished: false,
        }
    }

    /// The session the task serves.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.sh
    }

    /// The task ran to its end (it reported how the session ended itself).
    pub(crate) fn done(mut self) {
        self.finished = true;
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let end = End::TasksGone {
            panicked: std::thread::panicking(),
        };
        if self.reader {
            self.sh.reader_ended(end);
        } else {
            self.sh.finish(end);
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
    /// The output ended (the session ended other than by a local close, or a write failed):
    /// the queue was dropped and nothing more is written. Set under both locks, with the queue
    /// dropped (see [`Shared::check_written`]).
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

impl State {
    /// What a send whose frame cannot be written any more reports: the session's end, or
    /// `PeerDied` while the reader has not yet found why the peer stopped reading.
    pub(crate) fn output_error(&self) -> TransportError {
        self.end
            .as_ref()
            .map_or(TransportError::PeerDied, End::error)
    }
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
    /// A `send` committed a frame and writes the queue once the tasks ready to send have
    /// committed theirs (see [`NetTransport::send`](crate::NetTransport)); later sends leave
    /// the write to it.
    pub(crate) flush_due: AtomicBool,
    /// `send` calls in progress (committing, or waiting for credit or for their write). A
    /// leading send lets other tasks commit first when some are in progress.
    pub(crate) sending: AtomicUsize,
    /// Sends that committed while a leading send owed the write (reset by that write).
    pub(crate) followers: AtomicU32,
    /// Leading writes in a row that carried no other send's frame. A leading send with no
    /// other send in progress lets other tasks commit first only once every
    /// [`PROBE_EVERY`] such writes (see [`Shared::probe_due`]).
    pub(crate) lone_leads: AtomicU32,
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
    /// Ends the session for `end` (the first cause wins for what users see). A local close
    /// queues the close message after every committed frame and sends it (see
    /// [`Shared::send_close`]); any other end also ends the output: queued messages are dropped
    /// and nothing more is written.
    pub(crate) fn finish(&self, end: End) {
        self.end_session(end, false);
    }

    /// [`finish`](Self::finish) for the reader task, which read its last byte: no more frames
    /// arrive, so `recv` reports the end once the received frames are taken.
    pub(crate) fn reader_ended(&self, end: End) {
        self.end_session(end, true);
    }

    fn end_session(&self, end: End, from_reader: bool) {
        let mut st = lock(&self.state);
        let was = st.end.clone();
        if st.end.is_none() {
            st.end = Some(end.clone());
        }
        if from_reader {
            // Set with `end`: a session whose reader is done always has its verdict.
            st.reader_done = true;
        }
        let mut close_queued = false;
        if matches!(end, End::LocalClose) {
            if !st.closed_locally {
                st.closed_locally = true;
                let n = st.rx.len() as u64;
                let bytes: u64 = st.rx.iter().map(|f| f.payload.len() as u64).sum();
                st.rx.clear();
                self.gauges.rx_frames.fetch_sub(n, Relaxed);
                self.gauges.rx_bytes.fetch_sub(bytes, Relaxed);
            }
            if !st.link_down {
                // Under the state lock, which commits take too: every frame committed before
                // the close is queued before it, and none after it.
                close_queued = lock(&self.out).queue_close();
            }
        } else {
            self.drop_output(&mut st);
        }
        let reader_done = st.reader_done;
        drop(st);
        if close_queued {
            self.send_close();
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
            (None, End::TasksGone { .. }) => {
                tracing::warn!(parent: &self.span, error = %end.error(), "session ended")
            }
            (_, End::Corrupt(d)) => {
                tracing::warn!(parent: &self.span, detail = %d, "corrupt input from the peer; session ended")
            }
            _ => tracing::debug!(parent: &self.span, cause = ?end, "link ended"),
        }
        self.send_ready.notify_waiters();
        self.recv_ready.notify_waiters();
        self.gauges.written.notify_waiters();
        self.writer_wake.notify_one();
    }

    /// Ends the output (once): drops what is queued, so nothing more is written. Called with
    /// the state lock held, and takes the queue's lock inside it: a sender that finds its frame
    /// neither written nor queued under both locks ([`Shared::check_written`]) knows it never
    /// will be.
    fn drop_output(&self, st: &mut State) {
        if !st.link_down {
            st.link_down = true;
            lock(&self.out).clear(&self.gauges);
        }
    }

    /// Commits `frame` to the output queue if the peer's window has room and returns its
    /// sequence number; `Ok(None)` leaves the frame with the caller.
    /// With `Write::Now` it writes the queue at once (or leaves it to the writer task); with
    /// `Write::Deferred` it writes nothing, and the second value says whether the caller must
    /// call [`Shared::write_deferred`] (it is the first of the sends now committing).
    pub(crate) fn try_commit(
        &self,
        frame: &mut Option<Frame>,
        write: Write,
    ) -> Result<Option<(u64, bool)>> {
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
            if st.link_down {
                return Err(st.output_error());
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
        match write {
            Write::Now { wait_for_lock } => {
                self.kick(wait_for_lock);
                Ok(Some((seq, false)))
            }
            // AcqRel: a send that finds the flag set committed its frame before the leader's
            // `write_deferred` clears it, so that write takes the frame along.
            Write::Deferred => {
                let lead = !self.flush_due.swap(true, AcqRel);
                if !lead {
                    self.followers.fetch_add(1, Relaxed);
                }
                Ok(Some((seq, lead)))
            }
        }
    }

    /// Writes what the sends committed since the flag was set (see [`Shared::flush_due`]).
    pub(crate) fn write_deferred(&self) {
        if self.flush_due.swap(false, AcqRel) {
            if self.followers.swap(0, Relaxed) > 0 {
                self.lone_leads.store(0, Relaxed);
            } else {
                self.lone_leads.fetch_add(1, Relaxed);
            }
            self.kick(false);
        }
    }

    /// Whether a leading send with no other send in progress should still let the tasks ready
    /// to run commit first: once every [`PROBE_EVERY`] leading writes that carried no other
    /// frame. Tasks that send in a loop without waiting are not "in progress" between two
    /// sends; the probe finds them (their frames join the write, and the next leaders wait for
    /// them again), and it keeps a task sending alone from holding its thread for good. A task
    /// sending alone pays one scheduler turn per [`PROBE_EVERY`] frames.
    pub(crate) fn probe_due(&self) -> bool {
        self.lone_leads.load(Relaxed).wrapping_add(1) % PROBE_EVERY == 0
    }

    /// Counts a frame that went out (or will, whole).
    pub(crate) fn count_sent(&self, len: usize, zero_copy: bool) {
        self.gauges.frames_sent.fetch_add(1, Relaxed);
        self.gauges.bytes_sent.fetch_add(len as u64, Relaxed);
        if zero_copy {
            self.gauges.zero_copy_sends.fetch_add(1, Relaxed);
        } else {
            self.gauges.copied_sends.fetch_add(1, Relaxed);
        }
    }

    /// Takes queued frame `seq` back if none of it was written, returning its credit.
    pub(crate) fn take_back(&self, seq: u64) -> Option<Frame> {
        let mut st = lock(&self.state);
        let f = lock(&self.out).take_back(seq, &self.gauges)?;
        st.sent -= wire::cost(f.payload.len());
        drop(st);
        self.send_ready.notify_waiters();
        Some(f)
    }

    /// Whether frame `seq` is written whole: `Ok(true)`, `Ok(false)` while it waits, an error
    /// when the output ended before it was (then none of it is delivered).
    pub(crate) fn check_written(&self, seq: u64) -> Result<bool> {
        // Both locks, in the order `drop_output` takes them: between looking at the queue and
        // at `link_down` no write can complete the frame.
        let st = lock(&self.state);
        if lock(&self.out).is_written(seq) {
            return Ok(true);
        }
        if st.link_down {
            return Err(st.output_error());
        }
        Ok(false)
    }

    /// Writes what is queued now (unless someone else is writing and `wait_for_lock` is
    /// false); what the socket does not take is left to the writer task.
    pub(crate) fn kick(&self, wait_for_lock: bool) {
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

    /// Sends the close message [`finish`](Self::finish) just queued: writes it at once if the
    /// socket has room, so that a process may exit right after `close()`. Where this thread may
    /// wait without starving the session's tasks or an in-process peer, it also waits (at
    /// most `keepalive_ms`) until the close is in the kernel and, over TCP, until the peer
    /// answers it with its end of stream, reading away what comes before (nothing read after a
    /// local close is used): input left unread when a TCP socket is closed, or arriving after,
    /// makes the kernel reset the connection and drop what it has not sent yet. Whatever is
    /// left is the writer task's (the write) and the reader task's (the wait for the peer's
    /// end of stream).
    fn send_close(&self) {
        let flushed = lock(&self.out).flush(&self.sock, &self.gauges);
        let written = match flushed {
            Ok(written) => written,
            Err(e) => return self.write_failed(e),
        };
        let tcp = matches!(self.sock, Sock::Tcp(_));
        if written && !tcp {
            // A Unix socket keeps nothing on this side: what is written is at the peer.
            return;
        }
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            // Not on a runtime's thread: waiting here holds up no task.
            Err(_) => self.linger(),
            // The runtime hands this worker's other tasks to another thread meanwhile.
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                tokio::task::block_in_place(|| self.linger())
            }
            // A current-thread runtime could not run the session's tasks, nor an in-process
            // peer, while this thread waits: only pending input is read away.
            Ok(_) => {
                if tcp {
                    self.sock.discard_input();
                }
            }
        }
    }

    /// The waiting part of [`send_close`](Self::send_close), in this thread.
    fn linger(&self) {
        let deadline = std::time::Instant::now() + self.keepalive;
        loop {
            // The queue's lock is held only to write, never while waiting: senders and the
            // writer task (which may finish the job first) go on meanwhile.
            let flushed = lock(&self.out).flush_direct(&self.sock, &self.gauges);
            match flushed {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => return self.write_failed(e),
            }
            if !self.sock.wait_writable(deadline) {
                return;
            }
        }
        if matches!(self.sock, Sock::Tcp(_)) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            self.sock.drain_until_eof(left);
        }
    }

    /// A write failed: the peer is gone or reset the connection. The output ends, but the
    /// session's end is left to the reader: what the peer sent before, up to a close message,
    /// may still wait in the socket, and is delivered first.
    pub(crate) fn write_failed(&self, e: std::io::Error) {
        tracing::debug!(parent: &self.span, error = %e, "write failed");
        let mut st = lock(&self.state);
        self.drop_output(&mut st);
        drop(st);
        self.send_ready.notify_waiters();
        self.gauges.written.notify_waiters();
        self.writer_wake.notify_one();
    }

    pub(crate) fn check_len(&self, len: usize) -> Result<()> {
        if len > self.max_payload {
            return Err(TransportError::PayloadTooLarge {
                len,
                max: self.max_payload,
            });
        }
        Ok(())
    }

    pub(crate) fn ask_credit(&self) {
        if !self.want_credit.swap(true, Relaxed) {
            self.writer_wake.notify_one();
        }
    }

    pub(crate) fn try_take(&self) -> Result<Option<Frame>> {
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
pub(crate) struct Pending<'a> {
    pub(crate) sh: &'a Shared,
    pub(crate) seq: u64,
    pub(crate) len: usize,
    pub(crate) zero_copy: bool,
    pub(crate) armed: bool,
    /// This send owes the deferred write of the queue ([`Shared::write_deferred`]).
    pub(crate) lead: bool,
}

impl Pending<'_> {
    /// The send's outcome once its frame is written whole (`Ok`, counted as sent) or can no
    /// longer be (the output's error); `None` while it waits. Disarms the drop either way.
    pub(crate) fn settle(&mut self) -> Option<Result<()>> {
        let r = match self.sh.check_written(self.seq) {
            Ok(false) => return None,
            Ok(true) => {
                self.sh.count_sent(self.len, self.zero_copy);
                Ok(())
            }
            Err(e) => Err(e),
        };
        self.armed = false;
        Some(r)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.armed && self.sh.take_back(self.seq).is_none() {
            // Written, or partly written and going out whole: it counts as sent. (Neither
            // when the link went down and the queue was dropped with it.)
            let out = lock(&self.sh.out);
            if out.is_written(self.seq) || out.holds(self.seq) {
                drop(out);
                self.sh.count_sent(self.len, self.zero_copy);
            }
        }
        if self.lead {
            // Dropped before its deferred write: the other sends' frames still go out.
            self.sh.write_deferred();
        }
    }
}

/// Counts one `send` in progress in [`Shared::sending`] for as long as it lives.
pub(crate) struct Sending<'a>(&'a AtomicUsize);

impl<'a> Sending<'a> {
    pub(crate) fn enter(n: &'a AtomicUsize) -> Sending<'a> {
        n.fetch_add(1, Relaxed);
        Sending(n)
    }

    /// Whether other sends are in progress beside this one.
    pub(crate) fn others(&self) -> bool {
        self.0.load(Relaxed) > 1
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// When [`Shared::try_commit`] writes the queue.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Write {
    /// At once (waiting for the queue's lock if asked, else leaving it to its holder).
    Now { wait_for_lock: bool },
    /// After the tasks ready to send have committed theirs.
    Deferred,
}
