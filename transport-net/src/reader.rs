//! The input side: the task that reads the socket in large chunks, splits messages out of the
//! buffer, queues frames for `recv` and applies control messages.

use crate::shared::{End, Shared, lock};
use crate::wire::{self, FRAME_HEAD_LEN, Parsed};
use bytes::{Buf, BytesMut};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use transport_api::{Frame, Payload, TxBuf};

/// Bytes asked of the kernel per read when no larger frame is pending.
const CHUNK: usize = 64 << 10;

/// What handling one message decided.
enum Step {
    Go,
    Stop(End),
}

/// The reader task of one session. Ends when the link ends: graceful close, end of stream,
/// reset, silence longer than the keep-alive timeout, or corrupt input.
pub(crate) async fn run(sh: Arc<Shared>) {
    let mut buf = BytesMut::with_capacity(CHUNK);
    let end = loop {
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
        // Room for the whole pending message (its length was checked against max_payload
        // before this reservation), and at least a chunk.
        let want = need.saturating_sub(buf.len()).max(CHUNK);
        if buf.capacity() - buf.len() < want {
            buf.reserve(want);
        }
        match tokio::time::timeout(sh.keepalive, sh.sock.read_some(&mut buf)).await {
            Err(_) => {
                tracing::warn!(parent: &sh.span, timeout = ?sh.keepalive, "no byte from the peer within the keep-alive timeout");
                break End::PeerDied;
            }
            Ok(Ok(0)) => {
                if !buf.is_empty() {
                    tracing::warn!(parent: &sh.span, pending = buf.len(), "stream ended inside a message");
                }
                break End::PeerDied;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::debug!(parent: &sh.span, error = %e, "read failed");
                break End::PeerDied;
            }
        }
    };
    sh.reader_ended(end);
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
        }
    }
    Step::Go
}
