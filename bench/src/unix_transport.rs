//! [`UnixFramed`]: a small, bench-only [`Transport`] over a tokio `UnixStream` (row `unix-t`).
//!
//! It exists to run the generic cross-process path ([`cross`](super::cross)) end to end with a
//! backend that is always available, and to show what the trait costs on top of the raw `unix`
//! baseline. It is not a production backend: `try_send` always reports `Full`, `try_recv`
//! never has a frame ready, `alloc` hands out heap buffers, and a `send` or `recv` future dropped
//! mid-frame breaks the stream (no cancel safety).
//!
//! Wire format: `len: u32 LE`, the 32-byte [`FrameHeader`], then `len` payload bytes.

use bytes::BytesMut;
use rustix::fd::OwnedFd;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;
use transport_api::{
    Counters, Frame, FrameHeader, Result, Stats, Transport, TransportError, TrySendError, TxBuf,
};

const HDR: usize = 4 + FrameHeader::ENCODED_LEN;
const MAX_PAYLOAD: usize = 16 << 20;

/// A [`Transport`] over a Unix stream socket (bench-only; see the module documentation).
pub struct UnixFramed {
    rd: Mutex<BufReader<OwnedReadHalf>>,
    wr: Mutex<OwnedWriteHalf>,
    shut: OwnedFd,
    closed: AtomicBool,
    counters: Counters,
}

fn io_err(e: io::Error) -> TransportError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => TransportError::Closed,
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => TransportError::PeerDied,
        _ => TransportError::Io(e),
    }
}

impl UnixFramed {
    /// Wraps a connected stream.
    pub fn new(s: UnixStream) -> io::Result<UnixFramed> {
        let std = s.into_std()?;
        let shut = OwnedFd::from(std.try_clone()?);
        let (rd, wr) = UnixStream::from_std(std)?.into_split();
        Ok(UnixFramed {
            rd: Mutex::new(BufReader::with_capacity(64 * 1024, rd)),
            wr: Mutex::new(wr),
            shut,
            closed: AtomicBool::new(false),
            counters: Counters::default(),
        })
    }

    /// Binds a listener at `path`, accepts one peer, and removes the listener.
    pub async fn accept_one(path: &Path) -> io::Result<UnixFramed> {
        let l = UnixListener::bind(path)?;
        let (s, _) = l.accept().await?;
        drop(l);
        let _ = std::fs::remove_file(path);
        UnixFramed::new(s)
    }

    /// Connects to a listener at `path`.
    pub async fn connect(path: &Path) -> io::Result<UnixFramed> {
        UnixFramed::new(UnixStream::connect(path).await?)
    }
}

impl Transport for UnixFramed {
    async fn send(&self, frame: Frame) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(TransportError::Closed);
        }
        let len = frame.payload.len();
        if len > MAX_PAYLOAD {
            return Err(TransportError::PayloadTooLarge {
                len,
                max: MAX_PAYLOAD,
            });
        }
        let mut head = [0u8; HDR];
        head[..4].copy_from_slice(&(len as u32).to_le_bytes());
        head[4..].copy_from_slice(&frame.header.to_bytes());
        let mut wr = self.wr.lock().await;
        if len <= 4096 {
            let mut one = [0u8; HDR + 4096];
            one[..HDR].copy_from_slice(&head);
            one[HDR..HDR + len].copy_from_slice(&frame.payload);
            wr.write_all(&one[..HDR + len]).await.map_err(io_err)?;
        } else {
            wr.write_all(&head).await.map_err(io_err)?;
            wr.write_all(&frame.payload).await.map_err(io_err)?;
        }
        self.counters.on_sent(len, false);
        Ok(())
    }

    fn try_send(&self, frame: Frame) -> Result<(), TrySendError> {
        Err(TrySendError::Full(frame))
    }

    async fn recv(&self) -> Result<Frame> {
        if self.closed.load(Ordering::Acquire) {
            return Err(TransportError::Closed);
        }
        let mut rd = self.rd.lock().await;
        let mut head = [0u8; HDR];
        rd.read_exact(&mut head).await.map_err(io_err)?;
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(TransportError::corrupt(format!(
                "frame of {len} bytes exceeds {MAX_PAYLOAD}"
            )));
        }
        let mut h = [0u8; FrameHeader::ENCODED_LEN];
        h.copy_from_slice(&head[4..]);
        let mut payload = BytesMut::zeroed(len);
        rd.read_exact(&mut payload).await.map_err(io_err)?;
        self.counters.on_received(len);
        Ok(Frame::with_header(
            FrameHeader::from_bytes(&h),
            payload.freeze(),
        ))
    }

    fn try_recv(&self) -> Result<Option<Frame>> {
        Ok(None)
    }

    async fn alloc(&self, len: usize) -> Result<TxBuf> {
        if len > MAX_PAYLOAD {
            return Err(TransportError::PayloadTooLarge {
                len,
                max: MAX_PAYLOAD,
            });
        }
        Ok(TxBuf::heap(len))
    }

    fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            let _ = rustix::net::shutdown(&self.shut, rustix::net::Shutdown::Write);
        }
    }

    fn max_payload(&self) -> usize {
        MAX_PAYLOAD
    }

    fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    fn backend(&self) -> &'static str {
        "unix-t"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generic;
    use crate::proto::{Budget, Pattern};
    use std::time::Duration;

    /// The generic parent and peer functions against each other over a socket pair, in one
    /// process.
    #[test]
    fn generic_functions_round_trip() {
        let rt = crate::cross::runtime().expect("runtime");
        rt.block_on(async {
            let (a, b) = UnixStream::pair().expect("pair");
            let (a, b) = (
                UnixFramed::new(a).expect("a"),
                UnixFramed::new(b).expect("b"),
            );
            let peer = tokio::spawn(async move { generic::serve(&b).await });
            let pattern = Pattern::new(64 * 1024);
            let budget = Budget {
                warmup: Duration::from_millis(1),
                measure: Duration::from_millis(5),
                min_iters: 10,
                max_iters: 1000,
                gap: Duration::ZERO,
            };
            for size in [8, 64 * 1024] {
                let samples = generic::rtt(&a, size, &budget, &pattern)
                    .await
                    .expect("rtt");
                assert!(samples.len() >= 10);
                let out = generic::stream_send(&a, size, &budget, &pattern)
                    .await
                    .expect("stream");
                assert!(out.msgs >= 10);
                assert_eq!(out.bytes, out.msgs * size as u64);
                let out = generic::stream_send_zc(&a, size, &budget)
                    .await
                    .expect("zero-copy stream");
                assert!(out.msgs >= 10);
            }
            let gap = Budget {
                gap: Duration::from_micros(10),
                ..budget
            };
            let samples = generic::rtt(&a, 8, &gap, &pattern).await.expect("gap rtt");
            assert!(samples.len() >= 10);
            generic::quit(&a).await.expect("quit");
            peer.await.expect("join").expect("serve");
        });
    }
}
