//! Closing: local waiters wake, the peer drains then sees `Closed`, drop is a close.

use super::fill_until_full;
use super::{err, join_err, settle_idle};
use crate::runner::Cx;
use crate::util::*;
use crate::{check_idle, ensure};
use std::sync::Arc;
use transport_api::{Frame, Transport, TransportError, TrySendError};

pub(crate) async fn close_wakes_local_waiters<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
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

pub(crate) async fn close_peer_drains<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
    const N: u64 = 200;
    for i in 0..N {
        a.send(numbered(i, 100))
            .await
            .map_err(err(format!("send #{i}")))?;
    }
    a.close();
    a.close(); // idempotent
    for i in 0..N {
        let f = b
            .recv()
            .await
            .map_err(err(format!("recv #{i} after peer close")))?;
        check_numbered(&f, i)?;
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

pub(crate) async fn drop_without_close<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
    const N: u64 = 200;
    let b = Arc::new(b);
    let rw = b.stats().recv_waits;
    let receiver = {
        let b = b.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                match b.recv().await {
                    Ok(f) => {
                        check_numbered(&f, n)?;
                        n += 1;
                    }
                    Err(TransportError::Closed) => return Ok::<_, String>(n),
                    Err(e) => return Err(format!("recv after peer drop: {e}")),
                }
            }
        })
    };
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
