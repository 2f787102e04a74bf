//! Helpers shared by the scenarios: a seeded RNG, payload patterns, polling waits.

use std::time::{Duration, Instant};
use transport_api::Frame;

/// A scenario's verdict: `Err` carries the explanation.
pub type Check = std::result::Result<(), String>;

/// Fails the scenario with a formatted message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// A small deterministic RNG (xorshift64*), so failures can be replayed from the printed seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced by a fixed constant).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// A seed from the environment variable `CONFORMANCE_SEED`, or from the clock.
    pub fn seed_from_env() -> u64 {
        std::env::var("CONFORMANCE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            })
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Fills `buf` with a pattern derived from `seed`, so content errors are detected.
pub fn fill_pattern(buf: &mut [u8], seed: u64) {
    let mut r = Rng::new(seed.wrapping_add(0x1234_5678));
    for chunk in buf.chunks_mut(8) {
        let v = r.next_u64().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// A payload of `len` bytes with [`fill_pattern`].
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0; len];
    fill_pattern(&mut v, seed);
    v
}

/// Checks that `buf` holds the pattern for `seed`; the error names the first differing byte.
pub fn check_pattern(buf: &[u8], seed: u64) -> Result<(), String> {
    let want = pattern(buf.len(), seed);
    match buf.iter().zip(&want).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(i) => Err(format!(
            "payload of {} bytes (seed {seed}) differs at byte {i}: got {:#04x}, want {:#04x}",
            buf.len(),
            buf[i],
            want[i]
        )),
    }
}

/// Waits until `cond` holds, yielding to the runtime between checks (no sleeps); fails after
/// `limit` with `what` in the message.
pub async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Check {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            return Err(format!("timed out after {limit:?} waiting until {what}"));
        }
        tokio::task::yield_now().await;
    }
    Ok(())
}

/// A frame numbered `i` (in `msg_id` and the first 8 payload bytes) with a pattern payload of
/// `len` bytes (at least 8).
pub fn numbered(i: u64, len: usize) -> Frame {
    let mut p = pattern(len.max(8), i);
    p[..8].copy_from_slice(&i.to_le_bytes());
    Frame::new(p).msg_id(i)
}

/// Checks that `f` is the frame [`numbered`] made for `i`, content included.
pub fn check_numbered(f: &Frame, i: u64) -> Check {
    ensure!(
        f.header.msg_id == i,
        "expected frame #{i}, got #{}",
        f.header.msg_id
    );
    let b = f.bytes();
    ensure!(
        b.len() >= 8 && b[..8] == i.to_le_bytes(),
        "frame #{i}: bad sequence bytes"
    );
    let mut want = pattern(b.len(), i);
    want[..8].copy_from_slice(&i.to_le_bytes());
    ensure!(
        b == want.as_slice(),
        "frame #{i}: payload of {} bytes corrupted",
        b.len()
    );
    Ok(())
}

/// An in-memory sink for tests that check what a backend records with `tracing`: give
/// `move || log.clone()` to a subscriber's writer (e.g. `tracing_subscriber::fmt().with_writer`)
/// and read what was written with [`CapturedLog::text`].
#[derive(Clone, Debug, Default)]
pub struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    /// Everything written so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}
