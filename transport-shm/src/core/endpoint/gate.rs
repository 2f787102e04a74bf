//! The endpoint's status: one process-local word of flags, so that the hot paths ask "anything
//! wrong?" with a single load, and the order in which the flags become errors.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};
use transport_api::TransportError;

/// This endpoint was closed.
pub(crate) const CLOSED: u8 = 1;
/// The peer closed gracefully.
pub(crate) const PEER_CLOSED: u8 = 2;
/// The peer is gone (closed or died).
pub(crate) const PEER_GONE: u8 = 4;
/// Set once the failure is recorded.
pub(crate) const FAILED: u8 = 8;

/// Why a session failed: the first failure recorded is the one every later call reports.
#[derive(Debug, Clone)]
enum Failure {
    /// The peer broke the protocol (what it wrote into shared memory or on the socket).
    Corrupt(String),
    /// This process can no longer wait on the session (its doorbell's I/O driver, the tokio
    /// runtime that created the session, has shut down).
    Io(std::io::ErrorKind, String),
}

impl Failure {
    fn error(&self) -> TransportError {
        match self {
            Failure::Corrupt(d) => TransportError::corrupt(d.clone()),
            Failure::Io(kind, d) => TransportError::Io(std::io::Error::new(*kind, d.clone())),
        }
    }
}

/// Session status flags and the failure.
#[derive(Default)]
pub(crate) struct Status {
    /// [`CLOSED`] | [`PEER_CLOSED`] | [`PEER_GONE`] | [`FAILED`]; bits are only ever set.
    flags: AtomicU8,
    failure: Mutex<Option<Failure>>,
}

/// Takes the failure's lock. A poisoned lock carries no broken invariant: the value is a whole
/// `Option<Failure>` at every point a panic could leave from.
fn lock_std<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Status {
    /// The flags now (`Acquire`).
    #[inline]
    pub(crate) fn get(&self) -> u8 {
        self.flags.load(Ordering::Acquire)
    }

    /// True when any of the flags `bits` is set.
    #[inline]
    pub(crate) fn is(&self, bits: u8) -> bool {
        self.get() & bits != 0
    }

    /// Sets `bit`; true when it was already set.
    pub(crate) fn set(&self, bit: u8) -> bool {
        self.flags.fetch_or(bit, Ordering::AcqRel) & bit != 0
    }

    /// Records `detail` as the way the peer broke the protocol, unless a failure is recorded
    /// already. True when this call recorded it.
    pub(crate) fn fail(&self, detail: String) -> bool {
        tracing::warn!(backend = "shm", %detail, "session closed: the peer broke the protocol");
        self.record(Failure::Corrupt(detail))
    }

    /// Records that this process can no longer wait on the session (`e`, from its doorbell),
    /// unless a failure is recorded already; returns the error every later call reports.
    pub(crate) fn fail_io(&self, e: &std::io::Error) -> TransportError {
        let detail = format!(
            "cannot wait on the session's doorbell: {e} (was the tokio runtime that created the session shut down?)"
        );
        tracing::warn!(backend = "shm", %detail, "session closed");
        self.record(Failure::Io(e.kind(), detail));
        self.failure_error().unwrap_or(TransportError::Closed)
    }

    fn record(&self, f: Failure) -> bool {
        let mut c = lock_std(&self.failure);
        if c.is_some() {
            return false;
        }
        *c = Some(f);
        self.set(FAILED);
        true
    }

    /// The error of the recorded failure, once the session failed (the callers check the
    /// `FAILED` flag first).
    #[cold]
    pub(crate) fn failure_error(&self) -> Option<TransportError> {
        lock_std(&self.failure).as_ref().map(Failure::error)
    }

    /// Why sending cannot proceed, if it cannot.
    #[inline]
    pub(crate) fn send_blocker(&self) -> Option<TransportError> {
        if self.get() == 0 {
            return None;
        }
        self.send_blocker_slow()
    }

    /// [`Status::send_blocker`] once some flag is set: one snapshot of the flags, read in order
    /// of precedence.
    #[cold]
    fn send_blocker_slow(&self) -> Option<TransportError> {
        let f = self.get();
        if f & CLOSED != 0 {
            return Some(TransportError::Closed);
        }
        if f & FAILED != 0
            && let Some(e) = self.failure_error()
        {
            return Some(e);
        }
        Self::end_error(f)
    }

    /// Why receiving ends once the ring is drained.
    pub(crate) fn recv_end(&self) -> Option<TransportError> {
        Self::end_error(self.get())
    }

    /// The end the peer's flags in `f` announce: a graceful close wins over its death (the
    /// socket reports both when the peer closed and then exited).
    fn end_error(f: u8) -> Option<TransportError> {
        if f & PEER_CLOSED != 0 {
            Some(TransportError::Closed)
        } else if f & PEER_GONE != 0 {
            Some(TransportError::PeerDied)
        } else {
            None
        }
    }

    /// Why a receive cannot take a frame: closed, or failed.
    #[cold]
    pub(crate) fn take_blocker(&self) -> TransportError {
        if self.is(CLOSED) {
            return TransportError::Closed;
        }
        self.failure_error().unwrap_or(TransportError::Closed)
    }

    /// The session has ended for a receiver: closed here, corrupt, or the peer is gone.
    pub(crate) fn ended(&self) -> bool {
        self.is(CLOSED | FAILED) || self.recv_end().is_some()
    }
}
