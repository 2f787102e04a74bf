//! The output queue: whole messages, written by whoever holds its lock.
//!
//! A frame enters the queue whole, under the session lock, the moment its `send` completes;
//! bytes leave only through [`Out::flush`], which the holder of the queue's lock calls (a sending
//! task that found the lock free, or the writer task). Back-to-back frames go out in one
//! vectored write; a partly written message stays at the front with its position, so whoever
//! writes next continues it and no other bytes are ever interleaved into a frame.

use crate::gauges::Gauges;
use crate::wire::{self, FRAME_HEAD_LEN};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::Ordering::Relaxed;
use tokio::time::Instant;
use transport_api::{Frame, Payload};

/// Most slices handed to one vectored write.
const MAX_IOV: usize = 64;

/// One queued message: head bytes (a frame's length and header, or a control message) and a
/// payload (empty for control messages).
struct Msg {
    head: [u8; FRAME_HEAD_LEN],
    head_len: u8,
    payload: Payload,
    /// Bytes of `head` then `payload` already written.
    pos: usize,
    /// A user frame (counted in the gauges), not a control message.
    frame: bool,
    /// Position in the order of messages queued (see [`Out::is_written`]).
    seq: u64,
}

impl Msg {
    fn total(&self) -> usize {
        usize::from(self.head_len) + self.payload.len()
    }
}

/// The output queue and what the writer task needs to know about past writes.
#[derive(Default)]
pub(crate) struct Out {
    queue: VecDeque<Msg>,
    /// When bytes last went out (keep-alives fill silences longer than `ping_every`).
    pub(crate) last_write: Option<Instant>,
    /// The close message is queued; nothing may follow it.
    pub(crate) close_queued: bool,
    /// Sequence number of the close message, once queued.
    close_seq: Option<u64>,
    /// The write side is shut down: the close message is written (see [`Out::flush`]).
    write_shut: bool,
    /// Sequence number of the next message queued.
    next_seq: u64,
    /// One past the sequence number of the last message written whole.
    done_seq: u64,
}

impl Out {
    /// Queues a frame; returns its sequence number.
    pub(crate) fn push_frame(&mut self, f: Frame, g: &Gauges) -> u64 {
        let len = f.payload.len();
        g.tx_frames.fetch_add(1, Relaxed);
        g.tx_bytes.fetch_add(len as u64, Relaxed);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push_back(Msg {
            // `len <= max_payload <= MAX_PAYLOAD_LIMIT`, checked by every send.
            head: wire::frame_head(&f.header, len as u32),
            head_len: FRAME_HEAD_LEN as u8,
            payload: f.payload,
            pos: 0,
            frame: true,
            seq,
        });
        seq
    }

    /// True once message `seq` is written whole (or was taken back).
    pub(crate) fn is_written(&self, seq: u64) -> bool {
        // Messages leave in queue order, so every message before the last one written whole
        // is gone too.
        self.done_seq > seq
    }

    /// Message `seq` is still queued (whole or partly written).
    pub(crate) fn holds(&self, seq: u64) -> bool {
        self.queue.iter().any(|m| m.seq == seq)
    }

    /// Takes frame `seq` back if none of its bytes were written yet.
    pub(crate) fn take_back(&mut self, seq: u64, g: &Gauges) -> Option<Frame> {
        let i = self.queue.iter().position(|m| m.seq == seq && m.pos == 0)?;
        let m = self.queue.remove(i)?;
        g.tx_frames.fetch_sub(1, Relaxed);
        g.tx_bytes.fetch_sub(m.payload.len() as u64, Relaxed);
        let mut h = [0u8; transport_api::FrameHeader::ENCODED_LEN];
        h.copy_from_slice(&m.head[4..FRAME_HEAD_LEN]);
        Some(Frame::with_header(
            transport_api::FrameHeader::from_bytes(&h),
            m.payload,
        ))
    }

    /// Nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Queues a control message (credit, a request for credit, a keep-alive).
    pub(crate) fn push_control(&mut self, bytes: &[u8]) {
        let mut head = [0u8; FRAME_HEAD_LEN];
        head[..bytes.len()].copy_from_slice(bytes);
        self.queue.push_back(Msg {
            head,
            head_len: bytes.len() as u8,
            payload: Payload::default(),
            pos: 0,
            frame: false,
            seq: self.next_seq,
        });
        self.next_seq += 1;
    }

    /// Queues the close message after everything committed (once); true if it was not
    /// queued before.
    pub(crate) fn queue_close(&mut self) -> bool {
        if self.close_queued {
            return false;
        }
        self.close_seq = Some(self.next_seq);
        self.push_control(&wire::CLOSE.to_le_bytes());
        self.close_queued = true;
        true
    }

    /// The close message is written whole (so is every message before it).
    pub(crate) fn close_written(&self) -> bool {
        self.close_seq.is_some_and(|s| self.is_written(s))
    }

    /// Drops everything queued (the link is gone).
    pub(crate) fn clear(&mut self, g: &Gauges) {
        for m in self.queue.drain(..) {
            if m.frame {
                g.tx_frames.fetch_sub(1, Relaxed);
                g.tx_bytes.fetch_sub(m.payload.len() as u64, Relaxed);
            }
        }
    }

    /// Writes as much of the queue as the socket takes without waiting. `Ok(true)`: the queue
    /// is empty; `Ok(false)`: the socket is full. Whoever writes the last byte of the close
    /// message shuts the write side down, so the peer sees the end of stream right after it.
    pub(crate) fn flush(&mut self, sock: &crate::sock::Sock, g: &Gauges) -> io::Result<bool> {
        self.flush_by(sock, g, false)
    }

    /// [`flush`](Self::flush) through the system call itself rather than tokio's cached
    /// readiness: for a `close()` waiting in its own thread (`Shared::linger`), where the
    /// runtime may not run to refresh that cache, which would answer "would block" forever.
    pub(crate) fn flush_direct(
        &mut self,
        sock: &crate::sock::Sock,
        g: &Gauges,
    ) -> io::Result<bool> {
        self.flush_by(sock, g, true)
    }

    fn flush_by(&mut self, sock: &crate::sock::Sock, g: &Gauges, direct: bool) -> io::Result<bool> {
        use rustix::net::{SendAncillaryBuffer, SendFlags, sendmsg};
        let done = if direct {
            let fd = sock.fd();
            self.flush_with(g, |iov| {
                sendmsg(
                    fd,
                    iov,
                    &mut SendAncillaryBuffer::default(),
                    SendFlags::NOSIGNAL,
                )
                .map_err(io::Error::from)
            })?
        } else {
            self.flush_with(g, |iov| sock.try_write_vectored(iov))?
        };
        if done && !self.write_shut && self.close_written() {
            self.write_shut = true;
            sock.shutdown(rustix::net::Shutdown::Write);
        }
        Ok(done)
    }

    fn flush_with(
        &mut self,
        g: &Gauges,
        mut write: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> io::Result<bool> {
        loop {
            if self.queue.is_empty() {
                return Ok(true);
            }
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            for m in &self.queue {
                let head = &m.head[..usize::from(m.head_len)];
                if m.pos < head.len() {
                    iov[n] = IoSlice::new(&head[m.pos..]);
                    n += 1;
                    if !m.payload.is_empty() {
                        iov[n] = IoSlice::new(&m.payload);
                        n += 1;
                    }
                } else {
                    iov[n] = IoSlice::new(&m.payload[m.pos - head.len()..]);
                    n += 1;
                }
                if n + 2 > MAX_IOV {
                    break;
                }
            }
            let mut written = match write(&iov[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.last_write = Some(Instant::now());
            let mut completed = false;
            while written > 0 {
                let front = self
                    .queue
                    .front_mut()
                    .expect("written bytes came from the queue");
                let left = front.total() - front.pos;
                if written < left {
                    front.pos += written;
                    break;
                }
                written -= left;
                let m = self.queue.pop_front().expect("front exists");
                self.done_seq = m.seq + 1;
                if m.frame {
                    g.tx_frames.fetch_sub(1, Relaxed);
                    g.tx_bytes.fetch_sub(m.payload.len() as u64, Relaxed);
                }
                completed = true;
            }
            if completed {
                // Once per write: every send waiting for one of these messages looks again.
                g.written.notify_waiters();
            }
        }
    }
}
