//! A session's counters and occupancy gauges, readable without a lock.

use std::sync::atomic::AtomicU64;
use tokio::sync::Notify;

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
