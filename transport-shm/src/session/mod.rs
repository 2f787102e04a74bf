//! The async session: one endpoint of a pair over a shared segment, implementing `Transport`.
//!
//! Concurrency: the transmit half ([`tx`]) and the receive half ([`rx`]) of the endpoint
//! ([`crate::core::endpoint`]) each sit behind one short lock
//! ([`SpinMutex`], whose unlock is a plain store) that is
//! never held across an `.await`, so any number of tasks may send and receive at once while each
//! ring keeps exactly one producer and one consumer.
//!
//! * [`inner`]: the operations that never wait (take, lease, publish) and their wake-ups;
//! * [`waiter`]: the one spin-then-park policy of `send`, `recv`, `alloc` and `readable`;
//! * [`liveness`]: the peer's end from the session socket and the pidfd;
//! * [`allocator`]: an `allocator-api2` allocator over the transmit half.

pub(crate) mod allocator;
mod inner;
mod link;
mod liveness;
mod rx;
pub(crate) mod spin;
mod tx;
pub(crate) mod waiter;

use crate::core::endpoint::gate::{CLOSED, Status};
use crate::core::endpoint::rx::{RxProbe, RxState};
use crate::core::endpoint::tx::TxState;
use crate::core::layout::Side;
use crate::core::spin_lock::SpinMutex;
use crate::core::wire::MSG_CLOSE;
use crate::os::segment::Segment;
use crate::os::sys;
use inner::{Body, Inner, inline_max};
use link::Link;
use rx::RxShared;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;
use tokio::sync::Notify;
use tracing::Instrument;
use transport_api::{
    Counters, Frame, Result, Stats, Transport, TransportError, TrySendError, TxBuf,
};
use tx::TxShared;

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
    pub(crate) opts: SessionOptions,
    /// The backend this session belongs to (`shm` or `hub`), for its tracing span.
    pub(crate) backend: &'static str,
    /// This side's address (the socket path, `pair`, `inherited`), for its tracing span.
    pub(crate) local: String,
}

/// What each side chooses for its own end of a session (the geometry is the listener's).
#[derive(Clone, Debug)]
pub(crate) struct SessionOptions {
    /// How long a waiting operation spins before parking.
    pub(crate) spin: Duration,
    /// A record of answer times that this end's doorbell rings are also stamped in (a hub's,
    /// read by its `recv_any`); each session keeps one of its own as well.
    pub(crate) shared_answers: Option<Arc<spin::AnswerWait>>,
    /// Map the peer's payload memory read-only (see [`ShmConfig::read_only_payloads`]).
    ///
    /// [`ShmConfig::read_only_payloads`]: crate::ShmConfig::read_only_payloads
    pub(crate) read_only_payloads: bool,
}

impl ShmTransport {
    /// Builds the endpoint and starts the liveness watcher (session socket hang-up, and the
    /// peer process's pidfd where the kernel names the peer). Must run inside a tokio runtime.
    pub(crate) fn start(p: SessionParts) -> Result<ShmTransport> {
        let keep = p.sock.try_clone()?;
        let corrupt = |what: &'static str| {
            move |e: crate::core::ring::RingError| TransportError::corrupt(format!("{what}: {e}"))
        };
        let (txd, rxd) = (p.side.tx(), p.side.rx());
        let geometry = p.seg.layout().geometry();
        let tx_state = TxState::new(
            p.seg.desc_producer(txd).map_err(corrupt("transmit ring"))?,
            p.seg
                .completion_consumer(txd)
                .map_err(corrupt("completion ring"))?,
            geometry,
        );
        let rx_state = RxState::new(
            p.seg.desc_consumer(rxd).map_err(corrupt("receive ring"))?,
            p.seg
                .completion_producer(rxd)
                .map_err(corrupt("return ring"))?,
            geometry,
        );
        // Nothing here writes the peer's payloads: mapped read-only on request, a stray write
        // faults at once instead of garbling a frame in flight (INVARIANTS 28).
        let protected = p.opts.read_only_payloads
            && p.seg.protect_payloads(rxd).map_err(|e| {
                TransportError::Io(std::io::Error::other(format!(
                    "mapping the peer's payload memory read-only: {e}"
                )))
            })?;
        p.seg.mark_attached(p.side, sys::current_pid());
        // The peer's process, from the kernel (SO_PEERCRED); a socket pair names our own pid.
        let peer_pid = rustix::net::sockopt::socket_peercred(&p.sock)
            .ok()
            .map(|c| c.pid.as_raw_nonzero().get());
        let span = transport_api::trace::session_span(
            p.backend,
            format_args!(
                "{} (side {:?}, pid {})",
                p.local,
                p.side,
                sys::current_pid()
            ),
            match peer_pid {
                Some(pid) => format!("pid {pid}"),
                None => "unknown".to_string(),
            },
        );
        let ring_capacity = p.seg.layout().ring_capacity();
        let link = Arc::new(Link {
            seg: p.seg,
            side: p.side,
            sock: keep,
            peer_bell: p.peer_bell,
            counters: Counters::default(),
            answers: spin::AnswerWait::default(),
            shared_answers: p.opts.shared_answers.clone(),
        });
        let max_payload = tx_state.pool.max_payload();
        let tx = Arc::new(TxShared {
            link: link.clone(),
            state: SpinMutex::new(tx_state),
            slot_freed: Notify::new(),
        });
        let rx = Arc::new(RxShared {
            link: link.clone(),
            probe: RxProbe::new(&rx_state),
            state: SpinMutex::new(rx_state),
        });
        let inner = Arc::new(Inner {
            link,
            owner: tx.clone(),
            tx,
            rx,
            bell: sys::async_readable(p.my_bell)?,
            local: Notify::new(),
            waiters: AtomicUsize::new(0),
            status: Status::default(),
            spin: p.opts.spin,
            spin_history: spin::SpinHistory::default(),
            max_payload,
            inline_max: inline_max(ring_capacity),
            span,
        });
        let sock = p.sock;
        // The peer's process, from the kernel (SO_PEERCRED), is a second death signal: it also
        // fires when the peer dies while a process it forked keeps the socket open. A socket
        // pair reports our own pid (its creator); that one is skipped.
        let pidfd = peer_pid
            .filter(|&pid| pid != sys::current_pid())
            .and_then(|pid| sys::pidfd_open(pid).ok())
            .and_then(|fd| sys::async_readable(fd).ok());
        let watcher = tokio::spawn(
            liveness::watch(sock, pidfd, Arc::downgrade(&inner)).instrument(inner.span.clone()),
        )
        .abort_handle();
        inner
            .span
            .in_scope(|| tracing::info!(peer_payloads_read_only = protected, "session started"));
        Ok(ShmTransport {
            inner,
            watchers: vec![watcher],
        })
    }

    /// Resolves once a frame is ready to receive or the session has ended (closed, peer gone,
    /// corrupt, or unable to wait because the runtime that created it shut down), without
    /// taking the frame and without spinning: the waiter parks on the
    /// eventfd at once. Useful to wait on many sessions (the hub's `recv_any`); follow it with
    /// [`Transport::try_recv`]. Cancel-safe.
    pub async fn readable(&self) {
        self.inner.readable().await
    }

    /// Resolves once the session has ended (closed, peer gone, or unable to wait) and no frame
    /// is left to receive, or once it is corrupt (it delivers nothing more). Cancel-safe; waits without polling (every receive wakes it to re-check).
    pub async fn drained(&self) {
        self.inner.drained().await
    }

    /// Also treats the exit of process `pid` as the peer's death (for a peer whose pid is known
    /// from outside the socket, e.g. a child this process spawned).
    pub(crate) fn watch_process(&mut self, pid: i32) -> Result<()> {
        let task = liveness::watch_process(pid, Arc::downgrade(&self.inner))?;
        self.watchers.push(task);
        Ok(())
    }

    /// An [`allocator_api2`] allocator whose allocations live in this endpoint's send slots:
    /// a `Vec<u8, ShmAllocator>` built in place is sent without a copy
    /// (see [`ShmAllocator::into_buf`](crate::ShmAllocator::into_buf)).
    pub fn allocator(&self) -> allocator::ShmAllocator {
        allocator::ShmAllocator::new(self.inner.tx.clone(), self.inner.owner.clone())
    }

    /// Payloads up to this many bytes travel inside the descriptor ring instead of a slot
    /// (16 bytes in the descriptor, 56 in each further entry, and never more than half the
    /// ring; 240 bytes with the default ring). Such a frame takes `1 + ceil((len - 16) / 56)`
    /// ring entries, and [`Transport::alloc`] of such a length returns a heap buffer: copying a
    /// few cache lines into the ring costs less than leasing and returning a slot.
    pub fn inline_max(&self) -> usize {
        self.inner.inline_max
    }

    /// The shared segment, for tests that play a hostile peer (feature `test-access`). Writing
    /// through it breaks the protocol on purpose.
    #[cfg(any(test, feature = "test-access"))]
    pub fn segment(&self) -> &Segment {
        &self.inner.link.seg
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
            if let Some(e) = inner.status.send_blocker() {
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
        if let Some(e) = inner.status.send_blocker() {
            return Err(e.into());
        }
        // Room in the ring first, so a Full frame is handed back without touching the pool.
        {
            let mut st = inner.tx.lock();
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
            if let Some(e) = inner.status.send_blocker() {
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
        // Under the transmit lock, so that no send publishes after the close is visible to
        // the peer (see `Inner::push_unit`): a send that returned `Ok` is delivered.
        let already = {
            let _st = inner.tx.lock();
            inner.status.set(CLOSED)
        };
        if already {
            return;
        }
        inner.link.seg.mark_closed(inner.link.side);
        let _ = rustix::io::write(&inner.link.sock, &[MSG_CLOSE]);
        // Discard what we will never read, returning its slots to the peer.
        let wake = inner
            .rx
            .lock()
            .discard_all(&inner.rx.probe, inner.link.seg.layout().geometry());
        // One doorbell serves both rings: the peer's sender re-checks its ring and its slots.
        if wake {
            inner.link.ring_peer();
        }
        inner.wake_all_waiters();
        inner.span.in_scope(|| tracing::info!("session closed"));
    }

    fn max_payload(&self) -> usize {
        self.inner.max_payload
    }

    fn stats(&self) -> Stats {
        let inner = &self.inner;
        let (tx_queued, pool) = {
            let mut st = inner.tx.lock();
            if inner.tx.drain(&mut st).is_err() {
                // Reported to the next operation; stats stay best effort.
            }
            (st.queued(), st.pool.occupancy())
        };
        let (rx_queued, held, held_bytes) = {
            let st = inner.rx.lock();
            let queued = if inner.status.is(CLOSED) {
                0
            } else {
                st.queued(inner.link.seg.layout().geometry())
            };
            (queued, st.held.held(), st.held_bytes)
        };
        Stats {
            tx_queued_frames: tx_queued,
            rx_queued_frames: rx_queued,
            buffer_bytes_in_use: pool.bytes_in_use as u64 + held_bytes,
            slots_in_use: (pool.slots_in_use + held) as u64,
            ..inner.link.counters.snapshot()
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
mod hostile_tests;
#[cfg(test)]
mod tests;
