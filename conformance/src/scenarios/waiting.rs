//! Waiting: `send` waits under backpressure, `try_send` hands the frame back, and dropped
//! futures lose, duplicate and leak nothing.

use super::fill_until_full;
use super::{err, join_err, settle_idle};
use crate::ensure;
use crate::scenario::Cx;
use crate::util::{Check, check_numbered, numbered};
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use transport_api::{Frame, Transport, TransportError};

/// With the receiver stopped, `try_send` fills the transport then reports `Full` with the frame
/// handed back, memory stays within the declared bound, and `send` waits until the receiver
/// makes room.
pub(crate) async fn backpressure<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
    const LEN: usize = 512;
    let a = Arc::new(a);
    let n = fill_until_full(&*a, LEN).await?;
    ensure!(n > 0, "try_send was Full on an empty transport");
    let used = a.stats().buffer_bytes_in_use + b.stats().buffer_bytes_in_use;
    ensure!(
        used <= cx.caps.small_memory_bound,
        "{used} bytes held with the receiver stopped; the backend declares a bound of {}",
        cx.caps.small_memory_bound
    );
    let waits = a.stats().send_waits;
    let blocked = {
        let a = a.clone();
        tokio::spawn(async move { a.send(numbered(n, LEN)).await })
    };
    cx.wait_until("the send blocks on a full transport", || {
        a.stats().send_waits > waits || blocked.is_finished()
    })
    .await?;
    if blocked.is_finished() {
        let r = blocked.await.map_err(join_err)?;
        return Err(format!(
            "send on a full transport returned {r:?} instead of waiting for room"
        ));
    }
    for i in 0..=n {
        let f = b.recv().await.map_err(err(format!("recv #{i}")))?;
        check_numbered(&f, i)?;
    }
    blocked
        .await
        .map_err(join_err)?
        .map_err(err("the blocked send"))?;
    settle_idle(&*a, &b, &cx).await
}

/// Polls `fut` at most `polls` times (yielding in between) and drops it if it is still
/// pending: a cancellation at one of its first await points, whatever the timing.
async fn poll_at_most<F: Future>(fut: F, polls: u32) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    for i in 0..polls {
        let r = std::future::poll_fn(|c| Poll::Ready(fut.as_mut().poll(c))).await;
        if let Poll::Ready(v) = r {
            return Some(v);
        }
        if i + 1 < polls {
            tokio::task::yield_now().await;
        }
    }
    None
}

/// Sends, `alloc`s and receives dropped at random await points (timeouts, a few polls) lose,
/// duplicate and leak nothing: every frame sent with `Ok` arrives once and in order, and a
/// dropped send's frame arrives whole, once, in its place, or not at all (the trait's
/// cancel-safety).
pub(crate) async fn cancellation<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
    let n_frames = cx.n(20_000);
    let seed = cx.seed;
    let a = Arc::new(a);
    let b = Arc::new(b);
    let sender = {
        let a = a.clone();
        let mut rng = cx.rng(1);
        cx.spawn(async move {
            // `ok`: sends that returned Ok; `dropped`: sends dropped while pending, whose frame
            // went out whole or not at all (the trait's cancel-safety).
            let (mut ok, mut dropped) = (Vec::new(), std::collections::BTreeSet::new());
            for i in 0..n_frames {
                let len = [8usize, 100, 2000][rng.below(3) as usize];
                let done = match rng.below(4) {
                    0 => Some(a.send(numbered(i, len)).await),
                    1 => tokio::time::timeout(
                        Duration::from_micros(rng.below(30)),
                        a.send(numbered(i, len)),
                    )
                    .await
                    .ok(),
                    2 => poll_at_most(a.send(numbered(i, len)), 1 + rng.below(3) as u32).await,
                    _ => {
                        // Build the frame in a transport buffer; drop the alloc future or the
                        // send future at random.
                        let alloc = tokio::time::timeout(
                            Duration::from_micros(rng.below(30)),
                            a.alloc(len),
                        )
                        .await;
                        match alloc {
                            Ok(Ok(mut buf)) => {
                                let f = numbered(i, len);
                                buf.copy_from_slice(f.bytes());
                                let fut = a.send(Frame::with_header(f.header, buf));
                                poll_at_most(fut, 1 + rng.below(3) as u32).await
                            }
                            Ok(Err(e)) => Some(Err(e)),
                            Err(_) => None,
                        }
                    }
                };
                match done {
                    Some(Ok(())) => ok.push(i),
                    Some(Err(e)) => return Err(format!("send #{i}: {e} (seed {seed})")),
                    None => {
                        dropped.insert(i);
                    }
                }
            }
            a.close();
            Ok::<_, String>((ok, dropped))
        })
    };
    let receiver = {
        let b = b.clone();
        let mut rng = cx.rng(2);
        cx.spawn(async move {
            let mut got = Vec::new();
            loop {
                // Now and then the receiver stops taking frames for a while, so that the ring
                // fills and sends really wait (past any spinning) when the sender drops them: a
                // transport fast enough never to be full would otherwise see every send finish
                // on its first poll and no waiting send would ever be cancelled. Only coverage
                // depends on this pause; every check below holds whatever the timing.
                if rng.below(500) == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let r = match rng.below(3) {
                    0 => Some(b.recv().await),
                    1 => tokio::time::timeout(Duration::from_micros(rng.below(30)), b.recv())
                        .await
                        .ok(),
                    _ => poll_at_most(b.recv(), 1 + rng.below(3) as u32).await,
                };
                match r {
                    Some(Ok(f)) => {
                        check_numbered(&f, f.header.msg_id)?;
                        got.push(f.header.msg_id);
                    }
                    Some(Err(TransportError::Closed)) => return Ok::<_, String>(got),
                    Some(Err(e)) => return Err(format!("recv: {e} (seed {seed})")),
                    None => {}
                }
            }
        })
    };
    let (ok, dropped) = sender.await.map_err(join_err)??;
    let got = receiver.await.map_err(join_err)??;
    // Every frame whose send returned Ok arrives, once and in order; a dropped send's frame
    // may arrive too (sent whole), once and in its place; nothing else does.
    if let Some(w) = got.windows(2).find(|w| w[0] >= w[1]) {
        return Err(format!(
            "frame #{} arrived after frame #{} (seed {seed})",
            w[1], w[0]
        ));
    }
    let arrived: std::collections::BTreeSet<u64> = got.iter().copied().collect();
    if let Some(lost) = ok.iter().find(|i| !arrived.contains(i)) {
        return Err(format!(
            "send #{lost} returned Ok but its frame never arrived ({} Ok, {} arrived; seed {seed})",
            ok.len(),
            got.len()
        ));
    }
    let okset: std::collections::BTreeSet<u64> = ok.iter().copied().collect();
    if let Some(extra) = got
        .iter()
        .find(|i| !okset.contains(i) && !dropped.contains(i))
    {
        return Err(format!(
            "frame #{extra} arrived although its send neither returned Ok nor was dropped (seed {seed})"
        ));
    }
    ensure!(
        !ok.is_empty() && (ok.len() as u64) < n_frames,
        "the scenario cancelled nothing or everything ({} of {n_frames} sent; seed {seed})",
        ok.len()
    );
    settle_idle(&*a, &*b, &cx).await
}
