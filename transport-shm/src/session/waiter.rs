//! Waiting: the one spin-then-park policy of a session, used by `send`, `recv`, `alloc` and
//! [`ShmTransport::readable`](super::ShmTransport::readable). The hub's `recv_any` spins with
//! the same [`Spin`](super::spin::Spin), from a [`SpinHistory`](super::spin::SpinHistory) of
//! its own.
//!
//! [`ShmTransport`](super::ShmTransport) delegates its waits here.
//!
//! A task that finds nothing to do retries for the configured spin time
//! ([`Spin`](super::spin::Spin)), then
//! announces on the ring that it parks (a flag in shared memory, see [`crate::core::ring`]) and
//! awaits its own eventfd through tokio's `AsyncFd` ([`Inner::park`]). The peer writes that
//! eventfd only when the flag is set, so busy peers make no system calls.

use super::inner::{Body, Inner};
use super::spin::answer_cap;
use crate::core::endpoint::gate::FAILED;
use crate::core::ring::RingError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use transport_api::{Frame, FrameHeader, Result, TxBuf};

/// A local waiter, counted in `Inner::waiters` while this guard lives.
pub(crate) struct Waiting<'a>(&'a Inner);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How much longer a receive spins after `frames` frames of `bytes` bytes in all: 1 µs per
/// 16 KiB of their average size, at most 1 ms (see [`Inner::spin_longer_after_large_frames`]).
fn extra_spin(bytes: u64, frames: u64) -> Duration {
    let avg = bytes.checked_div(frames).unwrap_or(0);
    Duration::from_micros(avg >> 14).min(Duration::from_millis(1))
}

impl Inner {
    /// Counts the caller as a local waiter until the guard drops (however its future ends).
    /// A wait loop holds it from *before* its first attempt: a task that publishes or takes a
    /// frame notifies local waiters only while this count is non-zero, and the parked flag in
    /// shared memory is one word per ring, shared by every local waiter, so another task's
    /// `prepare_park` may withdraw it. A waiter counted only once it sleeps could miss both
    /// signals in the gap between its re-check and its sleep.
    pub(crate) fn waiting(&self) -> Waiting<'_> {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        Waiting(self)
    }

    /// Sleeps until the doorbell rings or a local event happens. The caller holds a
    /// [`Inner::waiting`] guard and re-checks its condition after every return. Cancel-safe.
    /// An error means the doorbell can no longer be awaited (the I/O driver of the runtime
    /// that created the session has shut down): returning at once instead would turn every
    /// wait into a busy loop that burns the CPU and never sleeps; the caller records it and
    /// fails its wait with it ([`Inner::fail_io`]).
    ///
    /// A ring of the doorbell is answered without reading the eventfd: every write raises a new
    /// readiness edge whatever its count holds, so clearing tokio's readiness is all a wake-up
    /// needs (tokio keeps an edge that arrived after the readiness was observed), and the read
    /// system call per wake-up is saved. The count only grows by one per wake-up; it cannot
    /// reach the eventfd's limit (2^64 - 2) in the life of a process.
    ///
    /// The doorbell is shared by every waiter of this endpoint: when others wait, they are told
    /// to re-check too, since this one consumed the readiness they were waiting on.
    pub(crate) async fn park(
        &self,
        notified: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    ) -> std::io::Result<()> {
        tokio::select! {
            _ = notified => {}
            r = self.bell.readable() => {
                r?.clear_ready();
                if self.waiters.load(Ordering::SeqCst) > 1 {
                    self.local.notify_waiters();
                }
            }
        }
        Ok(())
    }

    /// Retries `attempt` for up to the configured spin time before the caller parks.
    #[inline]
    pub(crate) fn spin<T>(&self, attempt: impl FnMut() -> Result<Option<T>>) -> Result<Option<T>> {
        self.spin_for(self.spin, attempt)
    }

    /// The longest a receive spins for the answer to a ring (see [`answer_cap`]).
    fn answer_cap(&self) -> Duration {
        answer_cap(self.spin)
    }

    /// Records that a receive which spun past the spin time, or parked, got a frame: the
    /// answer to this end's latest ring, if one awaits it and this is the first frame since. A
    /// frame found within the spin time is not timed (the busy path does no extra work): the
    /// ring it answered stays recorded until the next ring replaces it or it is older than the
    /// cap, and a later frame is not the first since it (see [`super::spin::AnswerWait`]).
    fn answered(&self) {
        if self.link.answers.pending() {
            let frames = Some(self.link.frames_received());
            self.link
                .answers
                .answered(Instant::now(), self.answer_cap(), frames);
        }
    }

    /// Retries `attempt` for up to `limit` before the caller parks.
    fn spin_for<T>(
        &self,
        limit: Duration,
        mut attempt: impl FnMut() -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        if limit.is_zero() {
            return Ok(None);
        }
        let mut spin = self.spin_history.start(limit);
        loop {
            if let Some(v) = attempt()? {
                self.spin_history.succeeded(&spin);
                return Ok(Some(v));
            }
            if !spin.pause(1) {
                return Ok(None);
            }
        }
    }

    /// A receive that found nothing within the configured spin time, while the frames received
    /// since the previous such wait were large, keeps spinning for 1 µs more per 16 KiB of their
    /// average size (64 µs for 1 MiB frames) before it parks. The next frame of a stream of
    /// large frames takes the sender about as long to fill as the last ones took, while a park
    /// and wake-up costs tens of microseconds whatever the size: without the extension, a 1 MiB
    /// round trip or stream whose per-frame time is close to the spin time parks on most frames
    /// and runs at a fraction of its rate. The size comes from the receive counters, so the
    /// receive fast path does no extra work.
    #[cold]
    #[inline(never)]
    fn spin_longer_after_large_frames(&self) -> Result<Option<Frame>> {
        if self.spin.is_zero() {
            return Ok(None);
        }
        let c = &self.link.counters;
        let bytes = c.bytes_received.load(Ordering::Relaxed);
        let frames = c.frames_received.load(Ordering::Relaxed);
        let (b0, f0) = std::mem::replace(&mut self.rx.lock().waited_at, (bytes, frames));
        let (bytes, frames) = (bytes.wrapping_sub(b0), frames.wrapping_sub(f0));
        let extra = extra_spin(bytes, frames);
        // In rounds of the configured spin time (the very loop `recv` runs), so that this
        // path adds no second copy of it.
        let start = Instant::now();
        while start.elapsed() < extra {
            if let Some(f) = self.spin(|| self.take_or_end())? {
                return Ok(Some(f));
            }
        }
        Ok(None)
    }

    /// The wait loop of `send` and `recv`. Counted as a local waiter throughout (see
    /// [`Inner::waiting`]), it retries `attempt`; when that fails, `prepare_park` announces the
    /// park on the ring and re-checks exactly the condition that failed, and the task sleeps
    /// only when that re-check says so. `waits` counts the call once.
    async fn wait_for<T>(
        &self,
        waits: &AtomicU64,
        what: &str,
        mut attempt: impl FnMut() -> Result<Option<T>>,
        mut prepare_park: impl FnMut() -> std::result::Result<bool, RingError>,
    ) -> Result<T> {
        let _waiting = self.waiting();
        waits.fetch_add(1, Ordering::Relaxed);
        loop {
            let notified = self.local.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = attempt()? {
                return Ok(v);
            }
            match prepare_park() {
                Ok(true) => {
                    if let Err(e) = self.park(notified).await {
                        return Err(self.fail_io(&e));
                    }
                }
                Ok(false) => {}
                Err(e) => return Err(self.fail_ring(what, e)),
            }
        }
    }

    /// The waiting part of `send`: parks until the ring has room for the whole frame (boxed
    /// by the caller, so the common future stays small).
    pub(crate) async fn send_wait(&self, header: FrameHeader, mut body: Body) -> Result<()> {
        let needed = body.ring_entries();
        self.wait_for(
            &self.link.counters.send_waits,
            "transmit ring",
            || {
                let sent = self.try_publish(header, &mut body)?;
                if sent {
                    self.kick_waiters();
                }
                Ok(sent.then_some(()))
            },
            || self.tx.lock().prepare_park(needed),
        )
        .await
    }

    /// The waiting part of `recv`: parks until a frame arrives or the session ends. Before it
    /// parks, a receive spins on while large frames are coming
    /// ([`Inner::spin_longer_after_large_frames`]) or while the answer to this end's latest
    /// ring of the peer's doorbell is due ([`super::spin::AnswerWait`]).
    pub(crate) async fn recv_wait(&self) -> Result<Frame> {
        if let Some(f) = self.spin_longer_after_large_frames()? {
            self.answered();
            return Ok(f);
        }
        let (answers, cap) = (&self.link.answers, self.answer_cap());
        let more = answers.remaining(Instant::now(), cap);
        if !more.is_zero() {
            match self.spin_for(more, || self.take_or_end())? {
                Some(f) => {
                    answers.hit(Instant::now(), cap, Some(self.link.frames_received()));
                    return Ok(f);
                }
                None => answers.missed(),
            }
        }
        let f = self
            .wait_for(
                &self.link.counters.recv_waits,
                "receive ring",
                || self.take_or_end(),
                || self.rx.lock().prepare_park(),
            )
            .await?;
        self.answered();
        Ok(f)
    }

    /// The waiting part of `alloc`: parks until a slot of the class comes back.
    pub(crate) async fn alloc_wait(&self, len: usize) -> Result<TxBuf> {
        let _waiting = self.waiting();
        self.link
            .counters
            .send_waits
            .fetch_add(1, Ordering::Relaxed);
        loop {
            let freed = self.tx.slot_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let notified = self.local.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(b) = self.try_alloc(len)? {
                return Ok(b);
            }
            let may_sleep = self.tx.lock().completions.prepare_park();
            match may_sleep {
                Ok(true) => {
                    tokio::select! {
                        _ = freed => {}
                        r = self.park(notified) => {
                            if let Err(e) = r {
                                return Err(self.fail_io(&e));
                            }
                        }
                    }
                }
                Ok(false) => {}
                Err(e) => return Err(self.fail_ring("completion ring", e)),
            }
        }
    }
}

impl Inner {
    /// See [`ShmTransport::readable`](super::ShmTransport::readable).
    pub(crate) async fn readable(&self) {
        let inner = self;
        let _waiting = inner.waiting();
        let mut counted = false;
        loop {
            let notified = inner.local.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if inner.status.ended() {
                return;
            }
            let may_sleep = {
                let mut st = inner.rx.lock();
                match st.ring.is_ready() {
                    Ok(false) => st.prepare_park(),
                    // Ready, or broken (the next receive reports it).
                    Ok(true) | Err(_) => return,
                }
            };
            match may_sleep {
                Ok(true) => {
                    if !counted {
                        counted = true;
                        inner
                            .link
                            .counters
                            .recv_waits
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    if let Err(e) = inner.park(notified).await {
                        // The next receive reports it.
                        inner.fail_io(&e);
                        return;
                    }
                }
                Ok(false) | Err(_) => return,
            }
        }
    }

    /// See [`ShmTransport::drained`](super::ShmTransport::drained).
    pub(crate) async fn drained(&self) {
        let inner = self;
        let _waiting = inner.waiting();
        loop {
            let notified = inner.local.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // A corrupt session delivers nothing more: what is left in its ring never drains.
            if inner.status.is(FAILED)
                || (inner.status.ended() && !matches!(inner.rx.lock().ring.is_ready(), Ok(true)))
            {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::extra_spin;
    use std::time::Duration;

    #[test]
    fn receives_spin_longer_only_after_large_frames() {
        // Small frames (all inline ones, and slots up to 16 KiB): no extension.
        assert_eq!(extra_spin(100 * 64, 100), Duration::ZERO);
        assert_eq!(extra_spin(16383, 1), Duration::ZERO);
        // No frame since the last wait, or wrapped counters: no extension, no panic.
        assert_eq!(extra_spin(0, 0), Duration::ZERO);
        assert_eq!(extra_spin(u64::MAX, 0), Duration::ZERO);
        // 1 µs per 16 KiB of the average frame.
        assert_eq!(extra_spin(3 << 20, 3), Duration::from_micros(64));
        assert_eq!(
            extra_spin((1 << 20) + 64 * 99, 100),
            Duration::from_micros(0)
        );
        assert_eq!(extra_spin(64 << 10, 1), Duration::from_micros(4));
        // Bounded whatever the counters say.
        assert_eq!(extra_spin(u64::MAX, 1), Duration::from_millis(1));
    }
}
