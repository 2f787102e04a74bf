//! Waiting: `send` waits under backpressure, `try_send` hands the frame back, and dropped
//! futures lose, duplicate and leak nothing.

use super::fill_until_full;
use super::{err, join_err, settle_idle};
use crate::ensure;
use crate::runner::Cx;
use crate::util::*;
use std::sync::Arc;
use std::time::Duration;
use transport_api::{Frame, Transport, TransportError};

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
        a.stats().send_waits > waits
    })
    .await?;
    ensure!(
        !blocked.is_finished(),
        "send finished although the transport is full"
    );
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

pub(crate) async fn cancellation<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
    let n_frames = cx.n(20_000);
    let seed = cx.seed;
    let a = Arc::new(a);
    let b = Arc::new(b);
    let sender = {
        let a = a.clone();
        let mut rng = cx.rng(1);
        tokio::spawn(async move {
            let mut ok = Vec::new();
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
                    2 => {
                        let fut = a.send(numbered(i, len));
                        tokio::select! {
                            biased;
                            r = fut => Some(r),
                            _ = tokio::task::yield_now() => None,
                        }
                    }
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
                                tokio::select! {
                                    biased;
                                    r = fut => Some(r),
                                    _ = tokio::task::yield_now() => None,
                                }
                            }
                            Ok(Err(e)) => Some(Err(e)),
                            Err(_) => None,
                        }
                    }
                };
                match done {
                    Some(Ok(())) => ok.push(i),
                    Some(Err(e)) => return Err(format!("send #{i}: {e} (seed {seed})")),
                    None => {}
                }
            }
            a.close();
            Ok::<_, String>(ok)
        })
    };
    let receiver = {
        let b = b.clone();
        let mut rng = cx.rng(2);
        tokio::spawn(async move {
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
                    _ => {
                        tokio::select! {
                            biased;
                            r = b.recv() => Some(r),
                            _ = tokio::task::yield_now() => None,
                        }
                    }
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
    let ok = sender.await.map_err(join_err)??;
    let got = receiver.await.map_err(join_err)??;
    if got != ok {
        let first = ok
            .iter()
            .zip(&got)
            .position(|(x, y)| x != y)
            .unwrap_or(ok.len().min(got.len()));
        return Err(format!(
            "{} sends returned Ok but {} frames arrived; first difference at index {first} (seed {seed})",
            ok.len(),
            got.len()
        ));
    }
    ensure!(
        !ok.is_empty() && (ok.len() as u64) < n_frames,
        "the scenario cancelled nothing or everything ({} of {n_frames} sent; seed {seed})",
        ok.len()
    );
    settle_idle(&*a, &*b, &cx).await
}
