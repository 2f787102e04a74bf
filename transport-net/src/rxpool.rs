//! Receive buffers for large payloads, used again once their frame is dropped.
//!
//! A large payload is read straight into a buffer of its own and handed to `recv` as `Bytes`
//! that own the buffer. Allocating that buffer afresh for every frame made the allocator map
//! and unmap memory for each one (the kernel then zeroes and faults in every page again): half
//! the throughput at 64 KiB to 1 MiB over TCP. Here a dropped payload's buffer goes back to
//! its session's pool, whose pages stay mapped, and the next large frame takes it.

use bytes::Bytes;
use std::sync::{Arc, Mutex};

/// Payloads of at least this many bytes are read into a pooled buffer of their own; smaller
/// ones are cut from the reader's chunk buffer.
pub(crate) const LARGE: usize = 32 << 10;

/// The free buffers of one session, at most `limit` bytes of capacity in all.
#[derive(Debug)]
pub(crate) struct RxPool {
    free: Mutex<Free>,
    limit: usize,
}

#[derive(Debug, Default)]
struct Free {
    bufs: Vec<Vec<u8>>,
    bytes: usize,
}

impl RxPool {
    /// A pool keeping at most `limit` bytes of free buffers (the session's receive window:
    /// what the peer may have in flight to this side anyway).
    pub(crate) fn new(limit: usize) -> Arc<RxPool> {
        Arc::new(RxPool {
            free: Mutex::new(Free::default()),
            limit,
        })
    }

    /// An empty buffer with room for `len` bytes: a free one that fits without wasting more
    /// than a quarter of `len`, or a new one. Queued payloads thus hold at most 1.25 times the
    /// window the peer may fill, plus the pool's own limit of free buffers.
    pub(crate) fn take(&self, len: usize) -> Vec<u8> {
        let mut f = crate::shared::lock(&self.free);
        let fit = f
            .bufs
            .iter()
            .position(|b| b.capacity() >= len && b.capacity() - len <= len / 4);
        match fit {
            Some(i) => {
                let b = f.bufs.swap_remove(i);
                f.bytes -= b.capacity();
                b
            }
            None => Vec::with_capacity(len),
        }
    }

    fn give(&self, mut b: Vec<u8>) {
        b.clear();
        let mut f = crate::shared::lock(&self.free);
        if f.bytes + b.capacity() <= self.limit {
            f.bytes += b.capacity();
            f.bufs.push(b);
        }
    }

    /// `buf` (filled) as the bytes of a payload; the buffer comes back here when they drop.
    pub(crate) fn bytes(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            pool: Arc::clone(self),
        })
    }

    #[cfg(test)]
    fn free_bytes(&self) -> usize {
        crate::shared::lock(&self.free).bytes
    }
}

/// A payload's buffer on loan from its pool.
struct Pooled {
    buf: Vec<u8>,
    pool: Arc<RxPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_payload_gives_its_buffer_back_for_the_next_one() {
        let pool = RxPool::new(1 << 20);
        let mut b = pool.take(100_000);
        b.extend((0..100_000u32).map(|i| i as u8));
        let ptr = b.as_ptr();
        let bytes = pool.bytes(b);
        assert_eq!(bytes.len(), 100_000);
        assert_eq!(bytes[99_999], (99_999u32) as u8);
        let clone = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(pool.free_bytes(), 0, "a slice still holds the buffer");
        drop(clone);
        assert!(pool.free_bytes() >= 100_000);
        let again = pool.take(95_000);
        assert_eq!(again.as_ptr(), ptr, "the same memory again");
        assert!(again.is_empty());
        // Too small for this size, or far too large: a new buffer.
        assert!(pool.take(10).capacity() < 100_000);
    }

    #[test]
    fn the_pool_keeps_at_most_its_limit() {
        let pool = RxPool::new(150_000);
        let a = pool.bytes(pool.take(100_000));
        let b = pool.bytes(pool.take(100_000));
        drop(a);
        drop(b);
        let kept = pool.free_bytes();
        assert!((100_000..=150_000).contains(&kept), "{kept}");
    }
}
