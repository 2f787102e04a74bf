//! The user's handle of a session, [`NetTransport`]: the handshake that starts one and the
//! [`Transport`] implementation over the [`Shared`] state.

use crate::NetConfig;
use crate::gauges::Gauges;
use crate::out::Out;
use crate::shared::{End, Pending, Sending, Shared, State, TaskGuard, Write, lock};
use crate::sock::Sock;
use crate::wire::{self, HELLO_LEN, Hello};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use transport_api::{
    Frame, Payload, Result, Stats, Transport, TransportError, TrySendError, TxBuf,
};

/// One end of a `tcp://` or `unix://` session.
///
/// Sends are queued whole, in the order they commit, and written by whoever holds the
/// socket's write side, so a dropped `send` never leaves part of a frame on the wire. Sends that
/// commit together share a write: while other sends are in progress (and, as a probe, once
/// every 32 writes of a task sending alone), the first one writes after the tasks ready to run
/// committed theirs; otherwise it writes at once (the session's writer task writes what a full
/// socket left). A `send` future kept
/// without being polled after its first poll may therefore hold back frames other tasks sent at
/// that moment, until it is polled or dropped, or at most until the session's next keep-alive
/// (a quarter of the peer's `keepalive_ms`). Received frames are taken in arrival order by any
/// number of receivers. Dropping the handle closes the session gracefully.
///
/// `close()` (and drop) queues the close message after every frame whose `send` already
/// committed it (those sends then return `Ok`; later ones fail with `Closed`) and writes it at
/// once if the socket has room. So that a process may exit right after it, it then waits, for
/// at most `keepalive_ms`, until the close is in the kernel (if the socket was full) and, over
/// TCP, until the peer answers the close with its end of stream (the kernel would otherwise
/// reset a connection still receiving, dropping its last unsent bytes). It waits in the calling
/// thread on a multi-thread runtime, through `block_in_place` (the runtime moves its other tasks
/// to another thread), or outside any runtime. On a current-thread runtime it does not wait,
/// since neither the session's tasks nor an in-process peer could run meanwhile: the writer
/// task writes what is left, and a process should not exit before the runtime has run it.
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
            flush_due: AtomicBool::new(false),
            sending: AtomicUsize::new(0),
            followers: AtomicU32::new(0),
            lone_leads: AtomicU32::new(0),
            peer_wants: AtomicBool::new(false),
            gauges: Gauges::default(),
            span,
        });
        tracing::info!(parent: &shared.span, role, max_payload, "session opened");
        // The guards exist before the tasks are spawned: a runtime that shuts down before
        // polling a task still drops them with it (see `TaskGuard`).
        tokio::spawn(crate::reader::run(TaskGuard::new(shared.clone(), true)));
        tokio::spawn(crate::writer::run(TaskGuard::new(shared.clone(), false)));
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
        let sending = Sending::enter(&sh.sending);
        let mut frame = Some(frame);
        let mut waited = false;
        let (seq, lead) = match sh.try_commit(&mut frame, Write::Deferred)? {
            Some(c) => c,
            None => loop {
                // Registered before looking again: credit arriving in between wakes it.
                let notified = sh.send_ready.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(c) = sh.try_commit(&mut frame, Write::Deferred)? {
                    break c;
                }
                if !waited {
                    waited = true;
                    sh.gauges.send_waits.fetch_add(1, Relaxed);
                }
                sh.ask_credit();
                notified.await;
            },
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
            lead,
        };
        if lead {
            // The first of the sends committing now writes them all in one go, once the other
            // tasks that are ready to run have committed theirs: one turn of the scheduler's
            // queue, no timer, so a lone frame goes out at once. The turn is taken while other
            // sends are in progress, or as an occasional probe (`Shared::probe_due`): a task
            // sending alone writes at once, without it (on a current-thread runtime the turn
            // costs a poll of the I/O driver when this future is the one `block_on` runs).
            if sending.others() || sh.probe_due() {
                yield_once().await;
            }
            pending.lead = false;
            sh.write_deferred();
        }
        // Looked at once before registering (a lone send's frame is written by now), then
        // after each registration: a write completing in between wakes the registered waiter.
        if let Some(r) = pending.settle() {
            return r;
        }
        loop {
            let notified = sh.gauges.written.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = pending.settle() {
                return r;
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
        let Some((seq, _)) = sh.try_commit(
            &mut slot,
            Write::Now {
                wait_for_lock: true,
            },
        )?
        else {
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
        if let Some(f) = sh.try_take()? {
            return Ok(f);
        }
        let mut waited = false;
        loop {
            // Registered before looking again: a frame arriving in between wakes it.
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

/// Lets the tasks already queued on this runtime run once before the caller continues: pending
/// once, waking itself at once. Unlike `tokio::task::yield_now`, whose wake-up waits for the
/// runtime to poll its I/O driver (a system call), this costs a trip through the run queue.
fn yield_once() -> impl Future<Output = ()> {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            return std::task::Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
}

#[cfg(test)]
mod tests;
