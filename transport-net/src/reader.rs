//! The input side: the task that reads the socket in large chunks, splits messages out of the
//! buffer, queues frames for `recv` and applies control messages.

use crate::rxpool::{LARGE, RxPool};
use crate::shared::{End, Shared, TaskGuard, lock};
use crate::wire::{self, FRAME_HEAD_LEN, Parsed};
use bytes::{Buf, BufMut, BytesMut};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use transport_api::{Frame, FrameHeader, Payload, TxBuf};

/// Bytes asked of the kernel per read when no larger frame is pending.
const CHUNK: usize = 64 << 10;

/// What handling one message decided.
enum Step {
    Go,
    Stop(End),
}

/// The reader task of one session. Ends when the link ends: graceful close, end of stream,
/// reset, silence longer than the keep-alive timeout, or corrupt input.
pub(crate) async fn run(guard: TaskGuard) {
    let end = read_until_end(guard.shared().clone()).await;
    guard.shared().reader_ended(end);
    guard.done();
}

/// The reader's loop: reads and dispatches until the session ends, and says how.
async fn read_until_end(sh: Arc<Shared>) -> End {
    let mut buf = BytesMut::with_capacity(CHUNK);
    let pool = RxPool::new(usize::try_from(sh.own_window).unwrap_or(usize::MAX));
    let mut idle = Idle::new(sh.keepalive);
    loop {
        let mut delivered = false;
        if lock(&sh.state).closed_locally {
            // Closed here: input is only waited through (until the peer's end of stream) and
            // dropped; `close()` may also have read some of it away.
            buf.clear();
        }
        let need = loop {
            match wire::parse(&buf, sh.max_payload) {
                Err(e) => {
                    break Err(End::Corrupt(match e {
                        transport_api::TransportError::Corrupt { detail } => detail,
                        other => other.to_string(),
                    }));
                }
                Ok(Parsed::Need(n)) => break Ok(n),
                Ok(p) => match handle(&sh, p, &mut buf, &mut delivered) {
                    Step::Go => {}
                    Step::Stop(end) => break Err(end),
                },
            }
        };
        if delivered {
            sh.recv_ready.notify_waiters();
        }
        let need = match need {
            Ok(n) => n,
            Err(end) => break end,
        };
        let large = need >= FRAME_HEAD_LEN + LARGE;
        if large && buf.len() >= FRAME_HEAD_LEN {
            // A large frame whose head is here: its payload goes into a buffer of its own.
            match read_large(&sh, &mut idle, &pool, &mut buf, need - FRAME_HEAD_LEN).await {
                Ok(Step::Go) => continue,
                Ok(Step::Stop(end)) | Err(end) => break end,
            }
        }
        // Room for the whole pending message (its length was checked against max_payload
        // before this reservation), and at least a chunk; only a chunk while a large frame's
        // head is incomplete (its payload will not be read into this buffer).
        let want = if large {
            CHUNK
        } else {
            need.saturating_sub(buf.len()).max(CHUNK)
        };
        if buf.capacity() - buf.len() < want {
            buf.reserve(want);
        }
        let pending = buf.len();
        if let Err(end) = read_some(&sh, &mut idle, &mut buf, pending).await {
            break end;
        }
    }
}

/// The keep-alive deadline of the input: one timer for the session's life, moved only when it
/// fires, so a read costs no timer registration.
struct Idle {
    sleep: Pin<Box<Sleep>>,
    /// When the last byte arrived.
    last: Instant,
}

impl Idle {
    fn new(keepalive: Duration) -> Idle {
        let last = Instant::now();
        Idle {
            sleep: Box::pin(tokio::time::sleep_until(last + keepalive)),
            last,
        }
    }

    /// Ready once `keepalive` passed without a byte.
    fn poll_silent(&mut self, cx: &mut Context<'_>, keepalive: Duration) -> Poll<()> {
        loop {
            ready!(self.sleep.as_mut().poll(cx));
            let due = self.last + keepalive;
            if Instant::now() >= due {
                return Poll::Ready(());
            }
            self.sleep.as_mut().reset(due);
        }
    }
}

/// Reads some bytes into `buf`; the end of the session if the stream ended (with `pending`
/// bytes of a message unfinished), failed or stayed silent past the keep-alive timeout.
async fn read_some<B: BufMut>(
    sh: &Shared,
    idle: &mut Idle,
    buf: &mut B,
    pending: usize,
) -> Result<(), End> {
    let read = sh.sock.read_some(buf);
    tokio::pin!(read);
    let r = std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = read.as_mut().poll(cx) {
            return Poll::Ready(Some(r));
        }
        idle.poll_silent(cx, sh.keepalive).map(|()| None)
    })
    .await;
    match r {
        None => {
            tracing::warn!(parent: &sh.span, timeout = ?sh.keepalive, "no byte from the peer within the keep-alive timeout");
            Err(End::PeerDied)
        }
        Some(Ok(0)) => {
            if pending != 0 {
                tracing::warn!(parent: &sh.span, pending, "stream ended inside a message");
            }
            Err(End::PeerDied)
        }
        Some(Ok(_)) => {
            idle.last = Instant::now();
            Ok(())
        }
        Some(Err(e)) => {
            tracing::debug!(parent: &sh.span, error = %e, "read failed");
            Err(End::PeerDied)
        }
    }
}

/// Reads the `len`-byte payload of the frame whose head starts `buf` into a pooled buffer of
/// its own (see [`crate::rxpool`]), then delivers the frame.
async fn read_large(
    sh: &Shared,
    idle: &mut Idle,
    pool: &Arc<RxPool>,
    buf: &mut BytesMut,
    len: usize,
) -> Result<Step, End> {
    let head = buf.split_to(FRAME_HEAD_LEN);
    let mut h = [0u8; FrameHeader::ENCODED_LEN];
    h.copy_from_slice(&head[4..]);
    let mut payload = pool.take(len);
    // What the chunk buffer already holds of it (less than all: the frame was incomplete).
    let have = buf.len().min(len);
    payload.extend_from_slice(&buf[..have]);
    buf.advance(have);
    while payload.len() < len {
        let pending = FRAME_HEAD_LEN + payload.len();
        let missing = len - payload.len();
        let mut room = (&mut payload).limit(missing);
        read_some(sh, idle, &mut room, pending).await?;
    }
    let mut delivered = false;
    let step = deliver(
        sh,
        FrameHeader::from_bytes(&h),
        Payload::Bytes(pool.bytes(payload)),
        &mut delivered,
    );
    if delivered {
        sh.recv_ready.notify_waiters();
    }
    Ok(step)
}

fn handle(sh: &Shared, p: Parsed, buf: &mut BytesMut, delivered: &mut bool) -> Step {
    let wire_len = p.wire_len();
    match p {
        Parsed::Need(_) => unreachable!("handled by the caller"),
        Parsed::KeepAlive => buf.advance(wire_len),
        Parsed::Want => {
            buf.advance(wire_len);
            sh.peer_wants.store(true, Relaxed);
            sh.writer_wake.notify_one();
        }
        Parsed::Credit(consumed) => {
            buf.advance(wire_len);
            let mut st = lock(&sh.state);
            if consumed < st.acked || consumed > st.sent {
                let detail = format!(
                    "credit for {consumed} bytes consumed, but {} were sent and {} already acknowledged",
                    st.sent, st.acked
                );
                return Step::Stop(End::Corrupt(detail));
            }
            st.acked = consumed;
            drop(st);
            sh.send_ready.notify_waiters();
        }
        Parsed::Close => {
            buf.advance(wire_len);
            return Step::Stop(End::PeerClose);
        }
        Parsed::Frame { header, len } => {
            let mut msg = buf.split_to(wire_len);
            msg.advance(FRAME_HEAD_LEN);
            let payload = if len <= TxBuf::INLINE_CAPACITY {
                // Small payloads are copied into the frame itself: no allocation, and the
                // receive buffer is not pinned by them.
                let mut a = [0u8; TxBuf::INLINE_CAPACITY];
                a[..len].copy_from_slice(&msg);
                Payload::Buf(TxBuf::inline_from_array(a, len).expect("len <= INLINE_CAPACITY"))
            } else {
                Payload::Bytes(msg.freeze())
            };
            return deliver(sh, header, payload, delivered);
        }
    }
    Step::Go
}

/// Queues a received frame for `recv`, after checking that the peer kept within the window.
fn deliver(sh: &Shared, header: FrameHeader, payload: Payload, delivered: &mut bool) -> Step {
    let len = payload.len();
    let wire_len = FRAME_HEAD_LEN + len;
    let mut st = lock(&sh.state);
    st.received += wire_len as u64;
    let unconsumed = st.received.saturating_sub(sh.consumed.load(Relaxed));
    let bound = sh.own_window.max(wire::cost(sh.max_payload));
    if unconsumed > bound {
        let detail = format!(
            "the peer has {unconsumed} bytes unconsumed here, beyond the window of {bound}"
        );
        return Step::Stop(End::Corrupt(detail));
    }
    if st.closed_locally {
        return Step::Go;
    }
    st.rx.push_back(Frame::with_header(header, payload));
    // Counted under the lock, before any `recv` can take the frame and uncount it.
    let g = &sh.gauges;
    g.rx_frames.fetch_add(1, Relaxed);
    g.rx_bytes.fetch_add(len as u64, Relaxed);
    g.frames_received.fetch_add(1, Relaxed);
    g.bytes_received.fetch_add(len as u64, Relaxed);
    drop(st);
    *delivered = true;
    Step::Go
}
