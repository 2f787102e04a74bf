//! Progress reporting for the stall watchdog.
//!
//! A scenario makes progress whenever a frame moves or an operation ends (a `send`, `recv` or
//! `alloc` returns, a `try_send` is not `Full`, a `try_recv` is not empty). Every endpoint a
//! scenario uses is wrapped in a [`Probe`], which reports this on its own, and counts the
//! operations still pending on it. A scenario names what it is doing with [`Progress::step`].
//! When nothing moves for the stall limit the watchdog fails the scenario with
//! [`Progress::stall_report`]: the step, and which operations are blocked on which endpoint.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use transport_api::{Frame, Result, Stats, Transport, TrySendError, TxBuf};

/// Operations that can be pending on an endpoint.
const OPS: [&str; 3] = ["send", "recv", "alloc"];
const SEND: usize = 0;
const RECV: usize = 1;
const ALLOC: usize = 2;

/// Operations pending on one endpoint.
#[derive(Default)]
struct Pending([AtomicI64; 3]);

#[derive(Default)]
struct Inner {
    events: AtomicU64,
    /// The first failure a scenario task reported; the watchdog ends the scenario with it.
    failure: Mutex<Option<String>>,
    step: Mutex<String>,
    endpoints: Mutex<Vec<(String, Arc<Pending>)>>,
}

/// A scenario's progress: a count of events and the step it is at. Cheap to clone.
#[derive(Clone, Default)]
pub struct Progress(Arc<Inner>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Progress {
    /// A fresh tracker with no events and no step.
    pub fn new() -> Progress {
        Progress::default()
    }

    /// Records one event (the scenario moved).
    pub fn tick(&self) {
        self.0.events.fetch_add(1, Relaxed);
    }

    /// Number of events so far.
    pub fn events(&self) -> u64 {
        self.0.events.load(Relaxed)
    }

    /// Names what the scenario does or waits for next; shown if it stalls. Counts as progress.
    pub fn step(&self, what: impl Into<String>) {
        *lock(&self.0.step) = what.into();
        self.tick();
    }

    /// Reports that a task of the scenario failed: the scenario ends with `what` at once, even
    /// while another task waits for something the failed one would have done.
    pub fn fail(&self, what: &str) {
        lock(&self.0.failure).get_or_insert_with(|| what.to_string());
    }

    /// What the scenario is stuck on: its step and the operations pending on each endpoint.
    pub fn stall_report(&self, idle: Duration) -> String {
        let mut s = format!("no progress for {idle:?}");
        let step = lock(&self.0.step).clone();
        if !step.is_empty() {
            let _ = write!(s, " while {step}");
        }
        let mut blocked = Vec::new();
        for (name, p) in lock(&self.0.endpoints).iter() {
            for (i, op) in OPS.iter().enumerate() {
                let n = p.0[i].load(Relaxed);
                if n > 0 {
                    blocked.push(format!("{n}× {op} on {name}"));
                }
            }
        }
        if blocked.is_empty() {
            s.push_str("; no transport operation is pending");
        } else {
            let _ = write!(s, "; waiting in {}", blocked.join(", "));
        }
        s
    }

    /// Wraps `t` so that its operations report progress; `name` labels it in stall reports.
    pub fn probe<T: Transport>(&self, name: &str, t: T) -> Probe<T> {
        let pending = Arc::new(Pending::default());
        lock(&self.0.endpoints).push((name.to_string(), pending.clone()));
        Probe {
            inner: t,
            progress: self.clone(),
            pending,
        }
    }

    /// Returns a task's failure as soon as one is reported ([`Progress::fail`]), or a stall
    /// report once no event happened for `stall`. Never returns otherwise.
    pub(crate) async fn watch(&self, stall: Duration) -> String {
        let tick = (stall / 8).max(Duration::from_millis(5));
        let mut last = self.events();
        let mut since = Instant::now();
        loop {
            tokio::time::sleep(tick).await;
            if let Some(f) = lock(&self.0.failure).clone() {
                return f;
            }
            let now = self.events();
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= stall {
                return self.stall_report(since.elapsed());
            }
        }
    }
}

/// Counts one pending operation for as long as it lives (dropped when the future ends or is
/// cancelled).
struct PendingOp<'a>(&'a AtomicI64);

impl<'a> PendingOp<'a> {
    fn new(c: &'a AtomicI64) -> Self {
        c.fetch_add(1, Relaxed);
        PendingOp(c)
    }
}

impl Drop for PendingOp<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// A transport that reports every operation to a [`Progress`], and otherwise forwards
/// everything unchanged to the transport it wraps.
pub struct Probe<T> {
    inner: T,
    progress: Progress,
    pending: Arc<Pending>,
}

impl<T> Probe<T> {
    /// The wrapped transport.
    pub fn inner(&self) -> &T {
        &self.inner
    }
}

impl<T: Transport> Transport for Probe<T> {
    async fn send(&self, frame: Frame) -> Result<()> {
        let _op = PendingOp::new(&self.pending.0[SEND]);
        let r = self.inner.send(frame).await;
        self.progress.tick();
        r
    }

    fn try_send(&self, frame: Frame) -> Result<(), TrySendError> {
        let r = self.inner.try_send(frame);
        if !matches!(r, Err(TrySendError::Full(_))) {
            self.progress.tick();
        }
        r
    }

    async fn recv(&self) -> Result<Frame> {
        let _op = PendingOp::new(&self.pending.0[RECV]);
        let r = self.inner.recv().await;
        self.progress.tick();
        r
    }

    fn try_recv(&self) -> Result<Option<Frame>> {
        let r = self.inner.try_recv();
        if !matches!(r, Ok(None)) {
            self.progress.tick();
        }
        r
    }

    async fn alloc(&self, len: usize) -> Result<TxBuf> {
        let _op = PendingOp::new(&self.pending.0[ALLOC]);
        let r = self.inner.alloc(len).await;
        self.progress.tick();
        r
    }

    fn close(&self) {
        self.progress.tick();
        self.inner.close()
    }

    fn max_payload(&self) -> usize {
        self.inner.max_payload()
    }

    fn stats(&self) -> Stats {
        self.inner.stats()
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_report_names_the_step_and_pending_operations() {
        let p = Progress::new();
        p.step("draining B");
        let pending = Arc::new(Pending::default());
        pending.0[RECV].store(2, Relaxed);
        lock(&p.0.endpoints).push(("B".into(), pending));
        let r = p.stall_report(Duration::from_secs(1));
        assert!(r.contains("while draining B"), "{r}");
        assert!(r.contains("2× recv on B"), "{r}");
    }
}
