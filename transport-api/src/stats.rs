//! Counters and occupancy figures reported by every transport.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of one endpoint's counters and current occupancy.
///
/// Counters only grow; occupancy figures go back to zero when the endpoint is idle, which is
/// what tests use to prove that nothing leaked ([`Stats::is_idle`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Frames this endpoint sent successfully.
    pub frames_sent: u64,
    /// Payload bytes this endpoint sent successfully.
    pub bytes_sent: u64,
    /// Frames this endpoint received.
    pub frames_received: u64,
    /// Payload bytes this endpoint received.
    pub bytes_received: u64,
    /// Times a `send` (or `alloc`) had to wait for room (backpressure).
    pub send_waits: u64,
    /// Times a `recv` found nothing and had to wait.
    pub recv_waits: u64,
    /// Sends whose payload moved without a copy (buffers from `alloc`).
    pub zero_copy_sends: u64,
    /// Sends whose payload bytes were copied into transport memory.
    pub copied_sends: u64,
    /// System calls made to wake the peer (0 on backends that need none).
    pub wake_syscalls: u64,
    /// Frames sent by this endpoint that the peer has not taken yet, as far as this endpoint
    /// can tell: backends that share a queue or ring with the peer count every one; a network
    /// backend counts those it still holds (not those in the kernel or on the wire).
    pub tx_queued_frames: u64,
    /// Frames waiting for this endpoint to receive.
    pub rx_queued_frames: u64,
    /// Transport buffer memory currently held on behalf of this endpoint (queued payloads,
    /// allocated-but-unsent buffers, received payloads not yet dropped), in bytes.
    pub buffer_bytes_in_use: u64,
    /// Transport buffers currently held on behalf of this endpoint (shared-memory slots:
    /// leased, in flight, or received and not yet dropped); 0 on backends without slots.
    pub slots_in_use: u64,
}

impl Stats {
    /// True when nothing is queued in either direction and no buffer memory is held.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use transport_api::{Frame, Transport};
    ///
    /// let (a, b) = transport_mem::pair(Default::default());
    /// a.send(Frame::new("queued")).await?;
    /// assert_eq!(a.stats().tx_queued_frames, 1);
    /// assert!(!a.stats().is_idle());
    /// b.recv().await?;
    /// assert!(a.stats().is_idle() && b.stats().is_idle());
    /// assert_eq!((a.stats().frames_sent, b.stats().frames_received), (1, 1));
    /// # Ok::<(), transport_api::TransportError>(())
    /// # }).unwrap();
    /// ```
    pub fn is_idle(&self) -> bool {
        self.tx_queued_frames == 0
            && self.rx_queued_frames == 0
            && self.buffer_bytes_in_use == 0
            && self.slots_in_use == 0
    }
}

/// Lock-free counters a backend can embed and snapshot into [`Stats`].
///
/// Occupancy fields are left to the backend, which knows them exactly.
#[derive(Debug, Default)]
pub struct Counters {
    /// See [`Stats::frames_sent`].
    pub frames_sent: AtomicU64,
    /// See [`Stats::bytes_sent`].
    pub bytes_sent: AtomicU64,
    /// See [`Stats::frames_received`].
    pub frames_received: AtomicU64,
    /// See [`Stats::bytes_received`].
    pub bytes_received: AtomicU64,
    /// See [`Stats::send_waits`].
    pub send_waits: AtomicU64,
    /// See [`Stats::recv_waits`].
    pub recv_waits: AtomicU64,
    /// See [`Stats::zero_copy_sends`].
    pub zero_copy_sends: AtomicU64,
    /// See [`Stats::copied_sends`].
    pub copied_sends: AtomicU64,
    /// See [`Stats::wake_syscalls`].
    pub wake_syscalls: AtomicU64,
}

impl Counters {
    /// Records one sent frame of `len` bytes; `zero_copy` says whether its payload moved without
    /// a copy.
    pub fn on_sent(&self, len: usize, zero_copy: bool) {
        self.frames_sent.fetch_add(1, Relaxed);
        self.bytes_sent.fetch_add(len as u64, Relaxed);
        if zero_copy {
            self.zero_copy_sends.fetch_add(1, Relaxed);
        } else {
            self.copied_sends.fetch_add(1, Relaxed);
        }
    }

    /// Records one received frame of `len` bytes.
    pub fn on_received(&self, len: usize) {
        self.frames_received.fetch_add(1, Relaxed);
        self.bytes_received.fetch_add(len as u64, Relaxed);
    }

    /// Copies the counters into a [`Stats`] whose occupancy fields are zero.
    pub fn snapshot(&self) -> Stats {
        Stats {
            frames_sent: self.frames_sent.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            frames_received: self.frames_received.load(Relaxed),
            bytes_received: self.bytes_received.load(Relaxed),
            send_waits: self.send_waits.load(Relaxed),
            recv_waits: self.recv_waits.load(Relaxed),
            zero_copy_sends: self.zero_copy_sends.load(Relaxed),
            copied_sends: self.copied_sends.load(Relaxed),
            wake_syscalls: self.wake_syscalls.load(Relaxed),
            ..Stats::default()
        }
    }
}
