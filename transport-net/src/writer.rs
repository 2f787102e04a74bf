//! The writer task of a session: writes what sending tasks left queued ([`Out`]), grants
//! credit, keeps the link alive when idle, and sends the close after the last frame.
//!
//! [`Out`]: crate::out::Out

use crate::shared::{Shared, TaskGuard, lock};
use crate::wire;
use std::sync::atomic::Ordering::Relaxed;
use tokio::time::Instant;
/// What the writer does next after looking at the session.
enum Next {
    Write,
    Finish,
}

/// Queues control messages that are due (credit, a request for credit, keep-alive).
fn queue_control(sh: &Shared) -> Next {
    let st = lock(&sh.state);
    if st.link_down {
        return Next::Finish;
    }
    let mut out = lock(&sh.out);
    if out.close_queued {
        // A local close queued the close message (under the state lock, after the last
        // committed frame): nothing may follow it.
        return Next::Write;
    }
    if sh.want_credit.swap(false, Relaxed) {
        out.push_control(&wire::WANT.to_le_bytes());
    }
    let consumed = sh.consumed.load(Relaxed);
    let granted = sh.granted.load(Relaxed);
    if consumed > granted
        && (consumed - granted >= sh.own_window / 4 || sh.peer_wants.swap(false, Relaxed))
    {
        sh.granted.store(consumed, Relaxed);
        out.push_control(&wire::credit(consumed));
    }
    let idle = out.last_write.map_or(sh.ping_every, |t| t.elapsed());
    if out.is_empty() && idle >= sh.ping_every {
        out.push_control(&wire::KEEPALIVE.to_le_bytes());
    }
    Next::Write
}

/// The writer task of one session: writes what sending tasks left queued, grants credit,
/// keeps the link alive when idle, and sends the close after the last frame.
pub(crate) async fn run(guard: TaskGuard) {
    write_until_end(guard.shared()).await;
    guard.done();
}

/// The writer's loop, until the close is sent or the output ends.
async fn write_until_end(sh: &Shared) {
    loop {
        if let Next::Finish = queue_control(sh) {
            return;
        }
        let flushed = lock(&sh.out).flush(&sh.sock, &sh.gauges);
        match flushed {
            Err(e) => {
                sh.write_failed(e);
                return;
            }
            Ok(false) => {
                tokio::select! {
                    r = sh.sock.writable() => if let Err(e) = r {
                        sh.write_failed(e);
                        return;
                    },
                    _ = sh.writer_wake.notified() => {}
                }
                continue;
            }
            Ok(true) => {}
        }
        let (closed, last) = {
            let out = lock(&sh.out);
            (out.close_queued, out.last_write)
        };
        if closed {
            // Everything up to the close message is written, and the write side shut down
            // (by `Out::flush`): no more bytes from this side.
            tracing::debug!(parent: &sh.span, "close sent");
            return;
        }
        let deadline = last.unwrap_or_else(Instant::now) + sh.ping_every;
        tokio::select! {
            _ = sh.writer_wake.notified() => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}
