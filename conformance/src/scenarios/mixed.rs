//! Exactly-once delivery on every path a user can take: `try_send`/`try_recv` alone, and
//! every sending and receiving path mixed at random in both directions, with many tasks.

use super::{OrderCheck, check_exactly_once, check_tagged, err, join_err, settle_idle, tagged};
use crate::ensure;
use crate::scenario::Cx;
use crate::util::{Check, Rng};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use transport_api::{Frame, Transport, TransportError, TrySendError};

/// What one receiver got: (sender, number) pairs in arrival order.
type Received = Vec<(u32, u64)>;

/// Payload lengths the mixed scenarios pick from: empty, inline-sized, a few slots' worth.
const LENS: [usize; 6] = [0, 8, 64, 300, 1500, 5000];

fn pick_len(rng: &mut Rng) -> usize {
    LENS[rng.below(LENS.len() as u64) as usize]
}

/// Checks that a frame handed back by `Full` is the one offered.
fn check_handed_back(back: &Frame, s: u32, i: u64) -> Check {
    let (bs, bi) = check_tagged(back).map_err(|e| format!("the frame handed back by Full: {e}"))?;
    ensure!(
        (bs, bi) == (s, i),
        "try_send of frame {s}/#{i} was Full and handed back frame {bs}/#{bi}"
    );
    Ok(())
}

/// `SENDERS` tasks `try_send` (retrying on `Full`), `RECEIVERS` tasks `try_recv` (retrying on
/// empty); the sender closes when done and the receivers drain until `Closed`. Every frame must
/// arrive exactly once, in order per sender.
pub(crate) async fn try_paths_only<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
    const SENDERS: u32 = 3;
    const RECEIVERS: u32 = 2;
    let per = cx.n(100_000).div_ceil(u64::from(SENDERS));
    let (a, b) = (Arc::new(a), Arc::new(b));
    cx.step(format!(
        "{SENDERS} tasks try_send {per} frames each, {RECEIVERS} tasks try_recv them"
    ));
    let senders: Vec<JoinHandle<Result<Vec<u64>, String>>> = (0..SENDERS)
        .map(|s| {
            let a = a.clone();
            let mut rng = cx.rng(10 + u64::from(s));
            cx.spawn(async move {
                for i in 0..per {
                    let mut f = tagged(s, i, pick_len(&mut rng));
                    loop {
                        match a.try_send(f) {
                            Ok(()) => break,
                            Err(TrySendError::Full(back)) => {
                                check_handed_back(&back, s, i)?;
                                f = back;
                                tokio::task::yield_now().await;
                            }
                            Err(TrySendError::Failed(e)) => {
                                return Err(format!("try_send of frame {s}/#{i}: {e}"));
                            }
                        }
                    }
                    if rng.below(16) == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                Ok((0..per).collect())
            })
        })
        .collect();
    let receivers: Vec<JoinHandle<Result<Received, String>>> = (0..RECEIVERS)
        .map(|r| {
            let b = b.clone();
            cx.spawn(async move {
                let who = format!("receiver {r}");
                let mut order = OrderCheck::default();
                let mut got = Vec::new();
                loop {
                    match b.try_recv() {
                        Ok(Some(f)) => {
                            let (s, i) = check_tagged(&f)?;
                            order.see(&who, s, i)?;
                            got.push((s, i));
                        }
                        Ok(None) => tokio::task::yield_now().await,
                        Err(TransportError::Closed) => return Ok(got),
                        Err(e) => return Err(format!("{who}: try_recv: {e}")),
                    }
                }
            })
        })
        .collect();
    let mut ok = Vec::new();
    for s in senders {
        ok.push(s.await.map_err(join_err)??);
    }
    cx.step("the receivers drain what is left after the sender closed");
    a.close();
    let mut got = Vec::new();
    for r in receivers {
        got.extend(r.await.map_err(join_err)??);
    }
    check_exactly_once(&ok, &got)?;
    settle_idle(&*a, &*b, &cx).await
}

/// One direction of [`random_interleavings`]: what its senders accepted and what arrived.
struct Direction {
    received: AtomicU64,
    expected: u64,
    stop: watch::Sender<bool>,
}

impl Direction {
    fn arrived(&self) {
        if self.received.fetch_add(1, Relaxed) + 1 == self.expected {
            let _ = self.stop.send(true);
        }
    }
}

/// Sends `per` tagged frames as sender `s`, choosing at random between `send`, `try_send`
/// (then `send` when `Full`), `try_send` retried a few times, and an `alloc` buffer.
async fn mixed_sender<T: Transport>(t: &T, s: u32, per: u64, mut rng: Rng) -> Check {
    for i in 0..per {
        let f = tagged(s, i, pick_len(&mut rng));
        let what = format!("sender {s}, frame #{i}");
        match rng.below(4) {
            0 => t.send(f).await.map_err(err(&what))?,
            1 | 2 => {
                let mut tries = if rng.below(2) == 0 { 1 } else { 8 };
                let mut pending = Some(f);
                while tries > 0
                    && let Some(f) = pending.take()
                {
                    tries -= 1;
                    match t.try_send(f) {
                        Ok(()) => {}
                        Err(TrySendError::Full(back)) => {
                            check_handed_back(&back, s, i)?;
                            pending = Some(back);
                            tokio::task::yield_now().await;
                        }
                        Err(TrySendError::Failed(e)) => return Err(format!("{what}: {e}")),
                    }
                }
                if let Some(f) = pending {
                    t.send(f).await.map_err(err(&what))?;
                }
            }
            _ => {
                let mut buf = t
                    .alloc(f.bytes().len())
                    .await
                    .map_err(err(format!("{what}: alloc")))?;
                ensure!(
                    buf.len() == f.bytes().len(),
                    "{what}: alloc({}) returned {} bytes",
                    f.bytes().len(),
                    buf.len()
                );
                buf.copy_from_slice(f.bytes());
                t.send(Frame::with_header(f.header, buf))
                    .await
                    .map_err(err(&what))?;
            }
        }
    }
    Ok(())
}

/// Receives until its direction has every frame, choosing at random between `recv`,
/// `try_recv`, a `recv` dropped at its first pending poll, and a `recv` under a short timeout.
async fn mixed_receiver<T: Transport>(
    t: &T,
    who: String,
    dir: &Direction,
    mut rng: Rng,
) -> Result<Vec<(u32, u64)>, String> {
    let mut stop = dir.stop.subscribe();
    let mut order = OrderCheck::default();
    let mut got = Vec::new();
    loop {
        if *stop.borrow() {
            return Ok(got);
        }
        let r = match rng.below(4) {
            0 => tokio::select! {
                r = t.recv() => Some(r),
                _ = stop.wait_for(|v| *v) => None,
            },
            1 => match t.try_recv() {
                Ok(Some(f)) => Some(Ok(f)),
                Ok(None) => {
                    tokio::task::yield_now().await;
                    None
                }
                Err(e) => Some(Err(e)),
            },
            2 => tokio::select! {
                biased;
                r = t.recv() => Some(r),
                _ = tokio::task::yield_now() => None,
            },
            _ => {
                let limit = Duration::from_micros(rng.below(50));
                tokio::select! {
                    r = tokio::time::timeout(limit, t.recv()) => r.ok(),
                    _ = stop.wait_for(|v| *v) => None,
                }
            }
        };
        match r {
            Some(Ok(f)) => {
                let (s, i) = check_tagged(&f)?;
                order.see(&who, s, i)?;
                got.push((s, i));
                dir.arrived();
            }
            Some(Err(e)) => return Err(format!("{who}: {e}")),
            None => {}
        }
    }
}

/// Both endpoints send and receive at once, two sender and two receiver tasks on each, every
/// operation picked at random from the seed: each frame arrives exactly once, in order per
/// sender, whichever paths it took.
pub(crate) async fn random_interleavings<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
    const SENDERS: u32 = 2;
    const RECEIVERS: u64 = 2;
    let per = cx.n(100_000).div_ceil(2 * u64::from(SENDERS));
    let ends = [Arc::new(a), Arc::new(b)];
    let dirs: Vec<Arc<Direction>> = (0..2)
        .map(|_| {
            Arc::new(Direction {
                received: AtomicU64::new(0),
                expected: per * u64::from(SENDERS),
                stop: watch::channel(false).0,
            })
        })
        .collect();
    cx.step(format!(
        "both endpoints send {per} frames from each of {SENDERS} tasks on random paths"
    ));
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for (d, name) in [(0usize, "A→B"), (1, "B→A")] {
        let (tx, rx) = (ends[d].clone(), ends[1 - d].clone());
        for s in 0..SENDERS {
            let (t, rng) = (tx.clone(), cx.rng(100 + d as u64 * 10 + u64::from(s)));
            senders.push(cx.spawn(async move {
                mixed_sender(&*t, s, per, rng)
                    .await
                    .map_err(|e| format!("{name}: {e}"))
            }));
        }
        for r in 0..RECEIVERS {
            let (t, dir) = (rx.clone(), dirs[d].clone());
            let rng = cx.rng(200 + d as u64 * 10 + r);
            let who = format!("{name} receiver {r}");
            receivers.push(cx.spawn(async move { mixed_receiver(&*t, who, &dir, rng).await }));
        }
    }
    for s in senders {
        s.await.map_err(join_err)??;
    }
    cx.step("waiting for the last frames of both directions to arrive");
    for dir in &dirs {
        let mut stop = dir.stop.subscribe();
        // A lost frame would keep the receivers waiting: stop them and report what is missing.
        if tokio::time::timeout(cx.settle, stop.wait_for(|v| *v))
            .await
            .is_err()
        {
            let _ = dir.stop.send(true);
        }
    }
    let mut got: [Vec<(u32, u64)>; 2] = [Vec::new(), Vec::new()];
    for (k, r) in receivers.into_iter().enumerate() {
        got[k / RECEIVERS as usize].extend(r.await.map_err(join_err)??);
    }
    let ok: Vec<Vec<u64>> = (0..SENDERS).map(|_| (0..per).collect()).collect();
    for (d, name) in [(0usize, "A→B"), (1, "B→A")] {
        check_exactly_once(&ok, &got[d]).map_err(|e| format!("{name}: {e}"))?;
        let extra = ends[1 - d].try_recv().map_err(err("try_recv"))?;
        ensure!(
            extra.is_none(),
            "{name}: a frame beyond the {} sent arrived: {:?}",
            per * u64::from(SENDERS),
            extra.map(|f| f.header)
        );
    }
    let [a, b] = ends;
    settle_idle(&*a, &*b, &cx).await
}
