//! In-process scenarios: each runs on a connected pair from [`Backend::pair`], and the ones the
//! issue names also through the boxed, object-safe transport.

use crate::util::{
    Check, Rng, check_numbered, check_pattern, fill_pattern, numbered, pattern, run_scenario,
    wait_until,
};
use crate::{Backend, Capabilities, PairOptions, SCENARIO_TIMEOUT, check_idle, ensure};
use bytes::Bytes;
use libtest_mimic::{Failed, Trial};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use transport_api::{
    BoxTransport, Frame, FrameHeader, Transport, TransportError, TrySendError, TypedTransport,
};

/// How long a scenario may wait for a state it polls for (a blocked waiter, settled stats).
pub(crate) const SETTLE: Duration = Duration::from_secs(20);

pub(crate) fn to_failed(r: Check) -> Result<(), Failed> {
    r.map_err(Failed::from)
}

fn err(what: impl std::fmt::Display) -> impl FnOnce(TransportError) -> String {
    move |e| format!("{what}: {e}")
}

fn join_err(e: tokio::task::JoinError) -> String {
    format!("a scenario task panicked or was cancelled: {e}")
}

/// Waits until both endpoints are idle (stats may settle asynchronously on some backends),
/// then checks it.
pub(crate) async fn settle_idle<T: Transport>(a: &T, b: &T) -> Check {
    let _ = wait_until("both endpoints are idle", SETTLE, || {
        a.stats().is_idle() && b.stats().is_idle()
    })
    .await;
    check_idle("endpoint A", &a.stats())?;
    check_idle("endpoint B", &b.stats())
}

macro_rules! pair_trials {
    ($trials:ident, $backend:ident, $( $name:literal => ($opts:expr, $f:path, boxed: $boxed:literal) ),* $(,)?) => {$(
        {
            let b = $backend.clone();
            $trials.push(Trial::test($name, move || {
                to_failed(run_scenario($name, 4, SCENARIO_TIMEOUT, async move {
                    let caps = b.capabilities();
                    let (x, y) = b.pair($opts).await.map_err(err("making a pair"))?;
                    $f(x, y, caps).await
                }))
            }));
        }
        if $boxed {
            let b = $backend.clone();
            let name = concat!("boxed_", $name);
            $trials.push(Trial::test(name, move || {
                to_failed(run_scenario(name, 4, SCENARIO_TIMEOUT, async move {
                    let caps = b.capabilities();
                    let (x, y) = b.pair($opts).await.map_err(err("making a pair"))?;
                    let (x, y): (BoxTransport, BoxTransport) = (Box::new(x), Box::new(y));
                    $f(x, y, caps).await
                }))
            }));
        }
    )*};
}

pub(crate) fn trials<B: Backend>(backend: &Arc<B>) -> Vec<Trial> {
    let mut t = Vec::new();
    pair_trials!(t, backend,
        "ordering_single_channel_100k" => (PairOptions::DEFAULT, ordering_single_channel, boxed: true),
        "ordering_interleaved_64_channels" => (PairOptions::DEFAULT, ordering_interleaved, boxed: false),
        "integrity_payload_sizes" => (PairOptions::DEFAULT, integrity_sizes, boxed: true),
        "payload_too_large_consumes_nothing" => (PairOptions::DEFAULT, too_large, boxed: false),
        "backpressure_send_waits_try_send_full" => (PairOptions::SMALL, backpressure, boxed: true),
        "concurrency_8_senders_2_receivers" => (PairOptions::DEFAULT, concurrency, boxed: false),
        "cancellation_dropped_futures" => (PairOptions::SMALL, cancellation, boxed: false),
        "close_wakes_local_waiters" => (PairOptions::SMALL, close_wakes_local_waiters, boxed: false),
        "close_peer_drains_then_closed" => (PairOptions::DEFAULT, close_peer_drains, boxed: false),
        "drop_without_close_peer_drains" => (PairOptions::DEFAULT, drop_without_close, boxed: false),
        "zero_copy_alloc_buffers" => (PairOptions::DEFAULT, zero_copy, boxed: false),
        "typed_messages" => (PairOptions::DEFAULT, typed_messages, boxed: false),
    );
    t
}

async fn ordering_single_channel<T: Transport + 'static>(a: T, b: T, _c: Capabilities) -> Check {
    const N: u64 = 100_000;
    let a = Arc::new(a);
    let sender = {
        let a = a.clone();
        tokio::spawn(async move {
            for i in 0..N {
                a.send(Frame::new(Bytes::copy_from_slice(&i.to_le_bytes())).msg_id(i))
                    .await
                    .map_err(err(format!("send #{i}")))?;
            }
            Ok::<_, String>(())
        })
    };
    for i in 0..N {
        let f = b.recv().await.map_err(err(format!("recv #{i}")))?;
        ensure!(
            f.header.msg_id == i && f.bytes() == i.to_le_bytes(),
            "frame #{i}: got msg_id {} payload {:?}",
            f.header.msg_id,
            f.bytes()
        );
    }
    sender.await.map_err(join_err)??;
    ensure!(
        b.try_recv().map_err(err("try_recv"))?.is_none(),
        "an extra frame arrived"
    );
    settle_idle(&*a, &b).await
}

async fn ordering_interleaved<T: Transport + 'static>(a: T, b: T, _c: Capabilities) -> Check {
    const CHANNELS: u32 = 64;
    const N: u64 = 64_000;
    let seed = Rng::seed_from_env();
    let a = Arc::new(a);
    let sender = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut rng = Rng::new(seed);
            let mut per = vec![0u64; CHANNELS as usize];
            for i in 0..N {
                let ch = rng.below(CHANNELS as u64) as u32;
                let s = per[ch as usize];
                per[ch as usize] += 1;
                let f = Frame::new(Bytes::copy_from_slice(&s.to_le_bytes()))
                    .msg_id(i)
                    .channel(ch);
                a.send(f).await.map_err(err(format!("send #{i}")))?;
            }
            Ok::<_, String>(())
        })
    };
    let mut per = vec![0u64; CHANNELS as usize];
    for i in 0..N {
        let f = b.recv().await.map_err(err(format!("recv #{i}")))?;
        let ch = f.header.channel;
        ensure!(ch < CHANNELS, "frame #{i} has channel {ch} (seed {seed})");
        ensure!(
            f.header.msg_id == i,
            "global order broken at #{i}: msg_id {} (seed {seed})",
            f.header.msg_id
        );
        let want = per[ch as usize];
        ensure!(
            f.bytes() == want.to_le_bytes(),
            "channel {ch} order broken: expected #{want}, got {:?} (seed {seed})",
            f.bytes()
        );
        per[ch as usize] += 1;
    }
    sender.await.map_err(join_err)??;
    settle_idle(&*a, &b).await
}

/// Payload sizes to test: 0, 1, each declared boundary −1/0/+1, `max_payload` −1/0.
pub(crate) fn sizes(caps: &Capabilities, max: usize) -> Vec<usize> {
    let mut s = BTreeSet::from([0, 1, 2, 7, 8, 9, 63, 64, 65]);
    for &b in &caps.boundaries {
        s.extend([b.saturating_sub(1), b, b + 1]);
    }
    s.extend([max.saturating_sub(1), max]);
    s.into_iter().filter(|&n| n <= max).collect()
}

async fn integrity_sizes<T: Transport + 'static>(a: T, b: T, caps: Capabilities) -> Check {
    let sizes = sizes(&caps, a.max_payload());
    let a = Arc::new(a);
    let sender = {
        let a = a.clone();
        let sizes = sizes.clone();
        tokio::spawn(async move {
            for (i, &len) in sizes.iter().enumerate() {
                a.send(
                    Frame::new(pattern(len, len as u64))
                        .msg_id(i as u64)
                        .method(len as u32),
                )
                .await
                .map_err(err(format!("send of {len} bytes")))?;
            }
            Ok::<_, String>(())
        })
    };
    for (i, &len) in sizes.iter().enumerate() {
        let f = b
            .recv()
            .await
            .map_err(err(format!("recv of {len} bytes")))?;
        ensure!(
            f.header.msg_id == i as u64,
            "expected frame #{i} ({len} bytes), got #{}",
            f.header.msg_id
        );
        ensure!(
            f.bytes().len() == len,
            "sent {len} bytes, received {}",
            f.bytes().len()
        );
        check_pattern(f.bytes(), len as u64)?;
    }
    sender.await.map_err(join_err)??;
    settle_idle(&*a, &b).await
}

async fn too_large<T: Transport + 'static>(a: T, b: T, _c: Capabilities) -> Check {
    let max = a.max_payload();
    let before = a.stats();
    match a.send(Frame::new(vec![7u8; max + 1])).await {
        Err(TransportError::PayloadTooLarge { len, max: m }) => {
            ensure!(
                len == max + 1 && m == max,
                "PayloadTooLarge carries len {len}, max {m}; want {}, {max}",
                max + 1
            )
        }
        other => {
            return Err(format!(
                "send of max_payload+1 = {} bytes: expected PayloadTooLarge, got {other:?}",
                max + 1
            ));
        }
    }
    match a.try_send(Frame::new(vec![7u8; max + 1])) {
        Err(TrySendError::Failed(TransportError::PayloadTooLarge { .. })) => {}
        other => {
            return Err(format!(
                "try_send of max_payload+1: expected PayloadTooLarge, got {other:?}"
            ));
        }
    }
    match a.alloc(max + 1).await {
        Err(TransportError::PayloadTooLarge { .. }) => {}
        other => {
            return Err(format!(
                "alloc(max_payload+1): expected PayloadTooLarge, got {other:?}"
            ));
        }
    }
    let after = a.stats();
    ensure!(
        after.frames_sent == before.frames_sent,
        "a refused frame was counted as sent"
    );
    check_idle("sender after refusals", &after)?;
    // Repeated refusals must not leak anything either (LESSONS 4).
    for _ in 0..1000 {
        let r = a.send(Frame::new(Bytes::from(vec![0u8; max + 1]))).await;
        ensure!(
            matches!(r, Err(TransportError::PayloadTooLarge { .. })),
            "refusal #n: {r:?}"
        );
    }
    a.send(Frame::new(pattern(max, 5)).msg_id(1))
        .await
        .map_err(err("send of max_payload"))?;
    let f = b.recv().await.map_err(err("recv of max_payload"))?;
    ensure!(
        f.header.msg_id == 1 && f.bytes().len() == max,
        "the frame after the refusals is wrong"
    );
    check_pattern(f.bytes(), 5)?;
    drop(f);
    ensure!(
        b.try_recv().map_err(err("try_recv"))?.is_none(),
        "a refused frame was delivered"
    );
    settle_idle(&a, &b).await
}

async fn fill_until_full<T: Transport>(a: &T, len: usize) -> Result<u64, String> {
    let mut sent = 0u64;
    loop {
        match a.try_send(numbered(sent, len)) {
            Ok(()) => sent += 1,
            Err(TrySendError::Full(f)) => {
                check_numbered(&f, sent)
                    .map_err(|e| format!("the frame handed back by Full is not ours: {e}"))?;
                return Ok(sent);
            }
            Err(TrySendError::Failed(e)) => return Err(format!("try_send #{sent}: {e}")),
        }
        ensure!(
            sent < 1_000_000,
            "try_send never reported Full after {sent} frames"
        );
    }
}

async fn backpressure<T: Transport + 'static>(a: T, b: T, caps: Capabilities) -> Check {
    const LEN: usize = 512;
    let a = Arc::new(a);
    let n = fill_until_full(&*a, LEN).await?;
    ensure!(n > 0, "try_send was Full on an empty transport");
    let used = a.stats().buffer_bytes_in_use + b.stats().buffer_bytes_in_use;
    ensure!(
        used <= caps.small_memory_bound,
        "{used} bytes held with the receiver stopped; the backend declares a bound of {}",
        caps.small_memory_bound
    );
    let waits = a.stats().send_waits;
    let blocked = {
        let a = a.clone();
        tokio::spawn(async move { a.send(numbered(n, LEN)).await })
    };
    wait_until("the send blocks on a full transport", SETTLE, || {
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
    settle_idle(&*a, &b).await
}

async fn concurrency<T: Transport + 'static>(a: T, b: T, _c: Capabilities) -> Check {
    const SENDERS: u32 = 8;
    const PER: u64 = 10_000;
    let a = Arc::new(a);
    let b = Arc::new(b);
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let a = a.clone();
        senders.push(tokio::spawn(async move {
            for i in 0..PER {
                let f = Frame::new(Bytes::copy_from_slice(&i.to_le_bytes()))
                    .channel(s)
                    .msg_id(i);
                a.send(f).await.map_err(err(format!("sender {s} #{i}")))?;
            }
            Ok::<_, String>(())
        }));
    }
    let mut receivers = Vec::new();
    for r in 0..2 {
        let b = b.clone();
        receivers.push(tokio::spawn(async move {
            let mut last = vec![None::<u64>; SENDERS as usize];
            let mut got = Vec::new();
            loop {
                match b.recv().await {
                    Ok(f) => {
                        let (s, i) = (f.header.channel, f.header.msg_id);
                        ensure!(s < SENDERS, "receiver {r}: unknown sender {s}");
                        ensure!(
                            f.bytes() == i.to_le_bytes(),
                            "receiver {r}: payload mismatch for {s}/{i}"
                        );
                        if let Some(prev) = last[s as usize] {
                            ensure!(
                                i > prev,
                                "receiver {r}: sender {s}'s frame {i} came after {prev}"
                            );
                        }
                        last[s as usize] = Some(i);
                        got.push((s, i));
                    }
                    Err(TransportError::Closed) => return Ok(got),
                    Err(e) => return Err(format!("receiver {r}: {e}")),
                }
            }
        }));
    }
    for s in senders {
        s.await.map_err(join_err)??;
    }
    a.close();
    let mut all = Vec::new();
    for r in receivers {
        all.extend(r.await.map_err(join_err)??);
    }
    let total = all.len();
    let unique: BTreeSet<_> = all.into_iter().collect();
    ensure!(
        unique.len() == total,
        "{} frames were delivered twice",
        total - unique.len()
    );
    ensure!(
        total as u64 == SENDERS as u64 * PER,
        "{total} frames delivered, {} sent",
        SENDERS as u64 * PER
    );
    settle_idle(&*a, &*b).await
}

async fn cancellation<T: Transport + 'static>(a: T, b: T, _c: Capabilities) -> Check {
    const N: u64 = 20_000;
    let seed = Rng::seed_from_env();
    let a = Arc::new(a);
    let b = Arc::new(b);
    let sender = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut rng = Rng::new(seed);
            let mut ok = Vec::new();
            for i in 0..N {
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
        tokio::spawn(async move {
            let mut rng = Rng::new(seed ^ 0xABCD);
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
        !ok.is_empty() && (ok.len() as u64) < N,
        "the scenario cancelled nothing or everything ({} of {N} sent; seed {seed})",
        ok.len()
    );
    settle_idle(&*a, &*b).await
}

async fn close_wakes_local_waiters<T: Transport + 'static>(a: T, b: T, _c: Capabilities) -> Check {
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
    wait_until("a send and a recv are blocked", SETTLE, || {
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
    settle_idle(&*a, &b).await
}

async fn close_peer_drains<T: Transport + 'static>(a: T, b: T, _c: Capabilities) -> Check {
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
    settle_idle(&a, &b).await
}

async fn drop_without_close<T: Transport + 'static>(a: T, b: T, _c: Capabilities) -> Check {
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
    wait_until("the receiver is blocked", SETTLE, || {
        b.stats().recv_waits > rw
    })
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
    let _ = wait_until("B is idle", SETTLE, || b.stats().is_idle()).await;
    check_idle("endpoint B", &b.stats())
}

async fn zero_copy<T: Transport + 'static>(a: T, b: T, caps: Capabilities) -> Check {
    let sizes: Vec<usize> = sizes(&caps, a.max_payload());
    // An allocated buffer dropped without being sent must come back.
    drop(
        a.alloc(1000.min(a.max_payload()))
            .await
            .map_err(err("alloc"))?,
    );
    check_idle("sender after dropping an unsent buffer", &a.stats())?;
    let before = a.stats();
    let a = Arc::new(a);
    let sender = {
        let a = a.clone();
        let sizes = sizes.clone();
        tokio::spawn(async move {
            for (i, &len) in sizes.iter().enumerate() {
                let mut buf = a.alloc(len).await.map_err(err(format!("alloc({len})")))?;
                if buf.len() != len {
                    return Err(format!("alloc({len}) returned {} bytes", buf.len()));
                }
                fill_pattern(&mut buf, len as u64 + 1);
                a.send(Frame::with_header(
                    FrameHeader {
                        msg_id: i as u64,
                        ..Default::default()
                    },
                    buf,
                ))
                .await
                .map_err(err(format!("send of an alloc({len}) buffer")))?;
            }
            Ok::<_, String>(())
        })
    };
    for (i, &len) in sizes.iter().enumerate() {
        let f = b
            .recv()
            .await
            .map_err(err(format!("recv of {len} bytes")))?;
        ensure!(
            f.header.msg_id == i as u64 && f.bytes().len() == len,
            "alloc frame #{i}: wrong frame ({} bytes)",
            f.bytes().len()
        );
        check_pattern(f.bytes(), len as u64 + 1)?;
    }
    sender.await.map_err(join_err)??;
    let after = a.stats();
    let sent = after.frames_sent - before.frames_sent;
    let zc = after.zero_copy_sends - before.zero_copy_sends;
    ensure!(
        sent == sizes.len() as u64,
        "{sent} frames counted as sent, {} sent",
        sizes.len()
    );
    if caps.zero_copy {
        let large = sizes.iter().filter(|&&n| n > caps.copies_up_to).count() as u64;
        ensure!(
            zc >= large && zc <= sent,
            "only {zc} of the {large} alloc'd frames over {} bytes were sent without a copy",
            caps.copies_up_to
        );
    }
    // A buffer that did not come from this transport is still delivered intact.
    let mut foreign = transport_api::TxBuf::heap(300);
    fill_pattern(&mut foreign, 99);
    a.send(Frame::new(foreign))
        .await
        .map_err(err("send of a heap TxBuf"))?;
    let f = b.recv().await.map_err(err("recv of a heap TxBuf"))?;
    check_pattern(f.bytes(), 99)?;
    drop(f);
    settle_idle(&*a, &b).await
}

async fn typed_messages<T: Transport + 'static>(a: T, b: T, _c: Capabilities) -> Check {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Order {
        id: u64,
        item: String,
        qty: Vec<u32>,
    }
    let msg = Order {
        id: 42,
        item: "bolts".into(),
        qty: vec![1, 2, 3],
    };
    a.send_msg(
        FrameHeader {
            method: 7,
            ..Default::default()
        },
        &msg,
    )
    .await
    .map_err(err("send_msg"))?;
    let (h, got): (FrameHeader, Order) = b.recv_msg().await.map_err(err("recv_msg"))?;
    ensure!(
        h.method == 7 && got == msg,
        "typed message changed in transit: {h:?} {got:?}"
    );
    a.send(Frame::new(vec![0xFFu8; 3]))
        .await
        .map_err(err("send garbage"))?;
    match b.recv_msg::<Order>().await {
        Err(TransportError::Decode { len: 3, ty, .. }) => {
            ensure!(ty.contains("Order"), "decode error names `{ty}`")
        }
        other => {
            return Err(format!(
                "decoding garbage: expected Decode error, got {other:?}"
            ));
        }
    }
    settle_idle(&a, &b).await
}
