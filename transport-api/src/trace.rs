//! Tracing conventions every backend follows.
//!
//! Each session has one span, [`session_span`], named `session`, with the fields `backend`,
//! `session` (a number unique within the process), `local` and `peer` (addresses, paths or
//! pids, whatever the backend knows). Backends record their session events inside it:
//! connect, accept, close, peer death, corrupt input and reclaim, at `debug` level or above for
//! the rare ones (`info` for a session starting or ending, `warn` for a dead or corrupt peer).
//! Nothing is recorded per frame above `trace` level, so a service can run with `debug` on.

use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};

/// The span of one session: `session{backend=… session=N local=… peer=…}`.
///
/// # Examples
///
/// ```
/// let span = transport_api::trace::session_span("mem", "orders", "client");
/// tracing::debug!(parent: &span, "session opened");
/// ```
pub fn session_span(
    backend: &'static str,
    local: impl Display,
    peer: impl Display,
) -> tracing::Span {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    tracing::info_span!("session", backend, session = id, local = %local, peer = %peer)
}
