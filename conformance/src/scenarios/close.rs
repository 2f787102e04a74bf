//! Closing: local waiters wake, the peer drains then sees `Closed`, drop is a close.

use super::{OrderCheck, check_exactly_once, check_tagged, fill_until_full, tagged};
use super::{err, join_err, settle_idle};
use crate::scenario::{Cx, probed_pair};
use crate::util::{Check, Rng, check_numbered, numbered};
use crate::{Backend, PairOptions};
use crate::{check_idle, ensure};
use std::sync::Arc;
use transport_api::{Frame, Transport, TransportError, TrySendError};

/// A blocked `send` and a blocked `recv` on `A` wake with `Closed` when `A` closes; later
/// operations on `A` fail with `Closed`; `B` still gets what `A` sent before, then `Closed`.
pub(crate) async fn close_wakes_local_waiters<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
    cx.step("a send and a recv blocked on A when A closes");
    let a = Arc::new(a);
    let n = fill_until_full(&*a, 256).await?;
    let sw = a.stats().send_waits;
    let rw = a.stats().recv_waits;
    let send = {
        let a = a.clone();
        tokio::spawn(async move { a.send(numbered(n, 256)).await })
    };
    let recv = {
        let a = a.clone();
        tokio::spawn(async move { a.recv().await })
    };
    cx.wait_until("a send and a recv are blocked", || {
        let s = a.stats();
        s.send_waits > sw && s.recv_waits > rw
    })
    .await?;
    a.close();
    let s = send.await.map_err(join_err)?;
    ensure!(
        matches!(s, Err(TransportError::Closed)),
        "blocked send after local close: {s:?}"
    );
    let r = recv.await.map_err(join_err)?;
    ensure!(
        matches!(r, Err(TransportError::Closed)),
        "blocked recv after local close: {r:?}"
    );
    let r = a.send(Frame::new("late")).await;
    ensure!(
        matches!(r, Err(TransportError::Closed)),
        "send after close: {r:?}"
    );
    let r = a.try_send(Frame::new("late"));
    ensure!(
        matches!(r, Err(TrySendError::Failed(TransportError::Closed))),
        "try_send after close: {r:?}"
    );
    let r = a.recv().await;
    ensure!(
        matches!(r, Err(TransportError::Closed)),
        "recv after close: {r:?}"
    );
    // The peer still gets everything sent before the close, then Closed.
    for i in 0..n {
        let f = b
            .recv()
            .await
            .map_err(err(format!("peer recv #{i} after close")))?;
        check_numbered(&f, i)?;
    }
    let r = b.recv().await;
    ensure!(
        matches!(r, Err(TransportError::Closed)),
        "peer recv after draining: {r:?}"
    );
    settle_idle(&*a, &b, &cx).await
}

/// `try_recv` until it returns a frame or fails (the end of a session may reach the peer a
/// little after the frames before it, so an empty answer is retried).
async fn try_recv_next<T: Transport>(b: &T) -> Result<Frame, TransportError> {
    loop {
        if let Some(f) = b.try_recv()? {
            return Ok(f);
        }
        tokio::task::yield_now().await;
    }
}

/// `A` sends, then closes (twice: idempotent): `B` receives every frame (through `recv` and
/// `try_recv` in turn), then `Closed` on every later `try_recv` and `recv`, and its sends fail
/// with `Closed`.
pub(crate) async fn close_peer_drains<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
    cx.step("B drains what A sent before closing, then expects Closed");
    const N: u64 = 200;
    for i in 0..N {
        a.send(numbered(i, 100))
            .await
            .map_err(err(format!("send #{i}")))?;
    }
    a.close();
    a.close(); // idempotent
    for i in 0..N {
        let f = if i % 2 == 0 {
            b.recv()
                .await
                .map_err(err(format!("recv #{i} after peer close")))?
        } else {
            try_recv_next(&b)
                .await
                .map_err(err(format!("try_recv #{i} after peer close")))?
        };
        check_numbered(&f, i)?;
    }
    match try_recv_next(&b).await {
        Err(TransportError::Closed) => {}
        Err(e) => return Err(format!("try_recv after draining a closed peer: {e}")),
        Ok(f) => {
            return Err(format!(
                "a frame arrived after the {N} sent: {:?}",
                f.header
            ));
        }
    }
    for _ in 0..2 {
        let r = b.recv().await;
        ensure!(
            matches!(r, Err(TransportError::Closed)),
            "recv after draining a closed peer: {r:?}"
        );
    }
    let r = b.send(Frame::new("to a closed peer")).await;
    ensure!(
        matches!(r, Err(TransportError::Closed)),
        "send to a closed peer: {r:?}"
    );
    settle_idle(&a, &b, &cx).await
}

/// A task of the scenario that receives numbered frames on `b` until `Closed` and returns how
/// many arrived (in order); any other error fails it, prefixed with `what`.
fn count_until_closed<T: Transport + 'static>(
    cx: &Cx,
    b: Arc<T>,
    what: &'static str,
) -> tokio::task::JoinHandle<Result<u64, String>> {
    cx.spawn(async move {
        let mut n = 0u64;
        loop {
            match b.recv().await {
                Ok(f) => {
                    check_numbered(&f, n)?;
                    n += 1;
                }
                Err(TransportError::Closed) => return Ok(n),
                Err(e) => return Err(format!("{what}: {e}")),
            }
        }
    })
}

/// `A` is dropped without `close()` while `B` is blocked in `recv`: `B` gets every frame `A` sent,
/// then `Closed` (a drop is a graceful close, not a death).
pub(crate) async fn drop_without_close<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
    cx.step("B drains what A sent before being dropped, then expects Closed");
    const N: u64 = 200;
    let b = Arc::new(b);
    let rw = b.stats().recv_waits;
    let receiver = count_until_closed(&cx, b.clone(), "recv after peer drop");
    cx.wait_until("the receiver is blocked", || b.stats().recv_waits > rw)
        .await?;
    for i in 0..N {
        a.send(numbered(i, 64))
            .await
            .map_err(err(format!("send #{i}")))?;
    }
    drop(a);
    let n = receiver.await.map_err(join_err)??;
    ensure!(n == N, "{n} frames arrived before Closed; {N} were sent");
    let r = b.send(Frame::new("to a dropped peer")).await;
    ensure!(
        matches!(r, Err(TransportError::Closed)),
        "send to a dropped peer: {r:?}"
    );
    let _ = cx.wait_until("B is idle", || b.stats().is_idle()).await;
    check_idle("endpoint B", &b.stats())
}

/// `B` is blocked in `recv` when `A` sends a few frames and closes: `B` gets them, then
/// `Closed`, without any further call waking it.
pub(crate) async fn close_wakes_blocked_peer_recv<T: Transport + 'static>(
    a: T,
    b: T,
    cx: Cx,
) -> Check {
    const N: u64 = 3;
    let b = Arc::new(b);
    let rw = b.stats().recv_waits;
    let receiver = count_until_closed(&cx, b.clone(), "recv after the peer closed");
    cx.wait_until("B is blocked in recv", || b.stats().recv_waits > rw)
        .await?;
    for i in 0..N {
        a.send(numbered(i, 100))
            .await
            .map_err(err(format!("send #{i}")))?;
    }
    a.close();
    cx.step("B's blocked recv must return the frames, then Closed");
    let n = receiver.await.map_err(join_err)??;
    ensure!(n == N, "{n} frames arrived before Closed; {N} were sent");
    settle_idle(&a, &*b, &cx).await
}

/// Sends tagged frames as sender `s` until one fails or `per` were sent, at random through
/// `send` or `try_send` (then `send` when `Full`). Returns the numbers whose send returned `Ok`
/// and the error that ended it.
async fn racing_sender<T: Transport>(
    t: &T,
    s: u32,
    per: u64,
    mut rng: Rng,
) -> Result<(Vec<u64>, Option<TransportError>), String> {
    let mut ok = Vec::new();
    for i in 0..per {
        let f = tagged(s, i, [0, 16, 200, 1000][rng.below(4) as usize]);
        let r = if rng.below(2) == 0 {
            t.send(f).await
        } else {
            match t.try_send(f) {
                Ok(()) => Ok(()),
                Err(TrySendError::Full(back)) => t.send(back).await,
                Err(TrySendError::Failed(e)) => Err(e),
            }
        };
        match r {
            Ok(()) => ok.push(i),
            Err(e) => return Ok((ok, Some(e))),
        }
    }
    Ok((ok, None))
}

/// Rounds on fresh pairs (default and small queues in turn): four tasks send on `A` until a
/// send fails, while `A` is closed once `B` has received a random number of frames (often
/// none). Every send that returned `Ok` is delivered to `B` exactly once and in order, every
/// other send fails with `Closed`, and nothing else arrives.
pub(crate) async fn close_races_sends<B: Backend>(backend: Arc<B>, cx: Cx) -> Check {
    let rounds = cx.n(200);
    let mut rng = cx.rng(40);
    for round in 0..rounds {
        let opts = if round % 2 == 0 {
            PairOptions::DEFAULT
        } else {
            PairOptions::SMALL
        };
        let (a, b) = probed_pair(&*backend, opts, &cx).await?;
        let close_after = [0, 1, 10, 100, 1000][rng.below(5) as usize];
        close_race_round(a, b, close_after, rng.next_u64(), &cx)
            .await
            .map_err(|e| {
                format!("round {round} (small: {}, A closed after B received {close_after} frames): {e}", opts.small)
            })?;
    }
    Ok(())
}

async fn close_race_round<T: Transport + 'static>(
    a: T,
    b: T,
    close_after: u64,
    seed: u64,
    cx: &Cx,
) -> Check {
    const SENDERS: u32 = 4;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let (count_tx, mut count_rx) = tokio::sync::watch::channel(0u64);
    let receiver = {
        let b = b.clone();
        cx.spawn(async move {
            let mut order = OrderCheck::default();
            let mut got = Vec::new();
            loop {
                match b.recv().await {
                    Ok(f) => {
                        let (s, i) = check_tagged(&f)?;
                        order.see("B", s, i)?;
                        got.push((s, i));
                        count_tx.send_replace(got.len() as u64);
                    }
                    Err(TransportError::Closed) => return Ok::<_, String>(got),
                    Err(e) => return Err(format!("B: recv while A closes: {e}")),
                }
            }
        })
    };
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (a, rng) = (a.clone(), Rng::new(seed ^ u64::from(s + 1)));
            cx.spawn(async move { racing_sender(&*a, s, u64::MAX, rng).await })
        })
        .collect();
    cx.step(format!("waiting until B received {close_after} frames"));
    let _ = count_rx.wait_for(|&n| n >= close_after).await;
    cx.step(format!("A closes after B received {close_after} frames"));
    a.close();
    let mut ok = Vec::new();
    for (s, h) in senders.into_iter().enumerate() {
        let (sent, e) = h.await.map_err(join_err)??;
        ensure!(
            matches!(e, Some(TransportError::Closed)),
            "sender {s}: a send racing close() ended with {e:?}, expected Closed"
        );
        ok.push(sent);
    }
    cx.step("B drains what A sent before it closed");
    let got = receiver.await.map_err(join_err)??;
    check_exactly_once(&ok, &got)?;
    settle_idle(&*a, &*b, cx).await
}

/// Four tasks send on `A` (some blocked on a full queue) while `B` is dropped after receiving a
/// random number of frames: every send ends (the blocked ones wake) with `Closed`, and what `B`
/// received is what was accepted, in order.
pub(crate) async fn peer_drop_races_sends<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
    const SENDERS: u32 = 4;
    let per = cx.n(20_000).div_ceil(u64::from(SENDERS));
    let drop_after = 1 + cx.rng(50).below(per * u64::from(SENDERS) / 2);
    let a = Arc::new(a);
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            // More frames than the receiver takes: the senders are still sending when it goes.
            let (a, rng) = (a.clone(), cx.rng(51 + u64::from(s)));
            cx.spawn(async move { racing_sender(&*a, s, u64::MAX, rng).await })
        })
        .collect();
    cx.step(format!("B receives {drop_after} frames, then is dropped"));
    let mut order = OrderCheck::default();
    let mut got = Vec::new();
    while (got.len() as u64) < drop_after {
        let f = b.recv().await.map_err(err("B: recv"))?;
        let (s, i) = check_tagged(&f)?;
        order.see("B", s, i)?;
        got.push((s, i));
    }
    drop(b);
    cx.step("every send on A must end with Closed once B is gone");
    let mut ok = Vec::new();
    for (s, h) in senders.into_iter().enumerate() {
        let (sent, e) = h.await.map_err(join_err)??;
        ensure!(
            matches!(e, Some(TransportError::Closed)),
            "sender {s}: sending to a dropped peer ended with {e:?}, expected Closed"
        );
        ok.push(sent);
    }
    // Whatever `B` took must have been accepted; the rest of the accepted frames died with it.
    let mut accepted = ok.clone();
    for (s, v) in accepted.iter_mut().enumerate() {
        let mine: std::collections::BTreeSet<u64> = got
            .iter()
            .filter(|(x, _)| *x as usize == s)
            .map(|&(_, i)| i)
            .collect();
        v.retain(|i| mine.contains(i));
    }
    check_exactly_once(&accepted, &got)?;
    let _ = cx.wait_until("A is idle", || a.stats().is_idle()).await;
    check_idle("endpoint A", &a.stats())
}
