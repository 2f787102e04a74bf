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
/// Set once the corruption detail is recorded.
pub(crate) const FAILED: u8 = 8;
/// Set once a wait found that it cannot sleep (the doorbell's I/O driver, the tokio runtime
/// that created the session, has shut down); the cause is recorded with it.
pub(crate) const WAIT_FAILED: u8 = 16;

/// Session status flags, the corruption detail and why waiting failed.
#[derive(Default)]
pub(crate) struct Status {
    /// [`CLOSED`] | [`PEER_CLOSED`] | [`PEER_GONE`] | [`FAILED`] | [`WAIT_FAILED`]; bits are
    /// only ever set.
    flags: AtomicU8,
    corrupt: Mutex<Option<String>>,
    wait_failure: Mutex<Option<(std::io::ErrorKind, String)>>,
}

/// The `Io` error of a failed wait, from its recorded kind and detail.
fn wait_error(kind: std::io::ErrorKind, detail: &str) -> TransportError {
    TransportError::Io(std::io::Error::new(kind, detail.to_string()))
}

/// Takes the detail's lock. A poisoned lock carries no broken invariant: the value is a whole
/// `Option<String>` at every point a panic could leave from.
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

    /// Records `detail` as the reason the session failed, unless one is recorded already.
    /// True when this call recorded it.
    pub(crate) fn fail(&self, detail: String) -> bool {
        let mut c = lock_std(&self.corrupt);
        if c.is_some() {
            return false;
        }
        tracing::warn!(backend = "shm", %detail, "session closed: the peer broke the protocol");
        *c = Some(detail);
        self.set(FAILED);
        true
    }

    /// Records that a wait of this session cannot sleep (`e`, from its doorbell), unless that
    /// is recorded already, and returns the `Io` error it means. Nothing else stops: frames in
    /// the ring are still taken and sends that find room still publish; a receive that finds
    /// the ring empty reports this error instead of waiting ([`Status::recv_end`]), and so does
    /// every other call that would have to wait.
    pub(crate) fn fail_wait(&self, e: &std::io::Error) -> TransportError {
        let mut w = lock_std(&self.wait_failure);
        let (kind, detail) = w.get_or_insert_with(|| {
            let detail = format!(
                "cannot wait on the session's doorbell: {e} (the tokio runtime that created the \
                 session has shut down)"
            );
            tracing::warn!(backend = "shm", %detail, "session cannot wait any more");
            self.set(WAIT_FAILED);
            (e.kind(), detail)
        });
        wait_error(*kind, detail)
    }

    /// The `Corrupt` error with the recorded detail, once the session failed (the callers
    /// check the `FAILED` flag first).
    #[cold]
    pub(crate) fn corrupt_error(&self) -> Option<TransportError> {
        lock_std(&self.corrupt)
            .as_ref()
            .map(|d| TransportError::corrupt(d.clone()))
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
            && let Some(e) = self.corrupt_error()
        {
            return Some(e);
        }
        Self::end_error(f)
    }

    /// Why receiving ends once the ring is drained: the peer's end, or a failed wait.
    pub(crate) fn recv_end(&self) -> Option<TransportError> {
        let f = self.get();
        // The flag first: an empty ring asks this on every try of a spin, and the lock is taken
        // only once a wait has failed.
        Self::end_error(f).or_else(|| {
            if f & WAIT_FAILED == 0 {
                return None;
            }
            let w = lock_std(&self.wait_failure);
            let (kind, detail) = w.as_ref()?;
            Some(wait_error(*kind, detail))
        })
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

    /// Why a receive cannot take a frame: closed, or corrupt.
    #[cold]
    pub(crate) fn take_blocker(&self) -> TransportError {
        if self.is(CLOSED) {
            return TransportError::Closed;
        }
        self.corrupt_error().unwrap_or(TransportError::Closed)
    }

    /// The session has ended for a receiver: closed here, corrupt, or the peer is gone.
    pub(crate) fn ended(&self) -> bool {
        self.is(CLOSED | FAILED) || self.recv_end().is_some()
    }
}
