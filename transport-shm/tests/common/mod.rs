//! Helpers shared by the integration tests: configurations, payload patterns, hang guards,
//! bounded polling of `stats()`, and unique socket paths.
#![allow(dead_code)]

use bytes::Bytes;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use transport_api::{Frame, Stats, Transport, TransportError};
use transport_shm::conformance::small_geometry;
use transport_shm::{Geometry, ShmConfig, ShmTransport};

/// Hang guard: far longer than any of these steps takes, far shorter than the whole budget.
pub(crate) const GUARD: Duration = Duration::from_secs(10);

/// `small_geometry()`: ring of 8; classes 256 B × 8, 4 KiB × 4, 64 KiB × 2, 1 MiB × 1.
pub(crate) fn small() -> ShmConfig {
    ShmConfig {
        geometry: small_geometry(),
        ..ShmConfig::default()
    }
}

/// A configuration whose waiters park (eventfd) at once instead of spinning first.
pub(crate) fn no_spin(geometry: Geometry) -> ShmConfig {
    ShmConfig {
        geometry,
        spin: Duration::ZERO,
        ..ShmConfig::default()
    }
}

pub(crate) fn pattern(len: usize, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let i = i as u64;
            (i.wrapping_mul(31) ^ (i >> 8) ^ seed.wrapping_mul(0x9E37_79B9)) as u8
        })
        .collect()
}

/// Awaits `f`, failing the test if it takes longer than [`GUARD`].
pub(crate) async fn guard<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(GUARD, f).await {
        Ok(v) => v,
        Err(_) => panic!("hang guard: {what} did not finish within {GUARD:?}"),
    }
}

/// Polls `t.stats()` until `pred` holds, yielding in between; fails after [`GUARD`].
pub(crate) async fn settle<T: Transport>(
    what: &str,
    t: &T,
    pred: impl Fn(&Stats) -> bool,
) -> Stats {
    let deadline = Instant::now() + GUARD;
    loop {
        let s = t.stats();
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {GUARD:?}; last stats {s:?}"
        );
        tokio::task::yield_now().await;
    }
}

pub(crate) async fn settle_idle(what: &str, a: &ShmTransport, b: &ShmTransport) {
    settle(what, a, Stats::is_idle).await;
    settle(what, b, Stats::is_idle).await;
}

/// Polls a future exactly once (with a waker that does nothing).
pub(crate) fn poll_once<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

pub(crate) fn expect_too_large(r: Result<(), TransportError>, len: usize, max: usize) {
    match r {
        Err(TransportError::PayloadTooLarge { len: l, max: m }) => assert_eq!((l, m), (len, max)),
        other => panic!("expected PayloadTooLarge {{ len: {len}, max: {max} }}, got {other:?}"),
    }
}

pub(crate) fn proc_fds() -> Vec<(u32, String, u32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue; // closed meanwhile
        };
        let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
            continue;
        };
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            .expect("fdinfo has a flags line");
        out.push((fd, target.to_string_lossy().into_owned(), flags));
    }
    out
}

/// A socket path unique to this process and test (lesson 25: no shared fixture paths).
pub(crate) fn sock_path(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "transport-shm-lessons-{}-{name}.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&p);
    p
}

pub(crate) async fn exchange_max(x: &ShmTransport, y: &ShmTransport, seed: u64) {
    let p = Bytes::from(pattern(x.max_payload(), seed));
    x.send(Frame::new(p.clone()).msg_id(seed)).await.unwrap();
    let f = guard("recv", y.recv()).await.unwrap();
    assert_eq!(f.header.msg_id, seed);
    assert!(f.bytes() == &p[..], "max-size payload corrupted");
}

/// Counts how often the inner future is polled.
pub(crate) struct Counted<F> {
    pub(crate) polls: Arc<AtomicU64>,
    pub(crate) f: Pin<Box<F>>,
}
impl<F: Future> Future for Counted<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.f.as_mut().poll(cx)
    }
}

/// Runs the future made by `scenario` on a current-thread runtime of its own thread and returns
/// its output, or panics with `what` after 60 s. On one thread a task that spins inside a single
/// poll starves every other task; this turns such a hang into a failing test.
pub(crate) fn on_one_thread<T, F>(what: &str, scenario: impl FnOnce() -> F + Send + 'static) -> T
where
    T: Send + 'static,
    F: Future<Output = T>,
{
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _ = done_tx.send(rt.block_on(scenario()));
    });
    done_rx.recv_timeout(Duration::from_secs(60)).expect(what)
}

/// `small_geometry()` with waiters that park at once (no spin).
pub(crate) fn small_no_spin() -> ShmConfig {
    ShmConfig {
        geometry: small_geometry(),
        spin: Duration::ZERO,
        ..ShmConfig::default()
    }
}
