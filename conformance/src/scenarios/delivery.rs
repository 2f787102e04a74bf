//! Delivery: frames arrive in order and exactly once, with one or many senders and receivers.

use super::{err, join_err, settle_idle};
use crate::ensure;
use crate::scenario::Cx;
use crate::util::Check;
use bytes::Bytes;
use std::collections::BTreeSet;
use std::sync::Arc;
use transport_api::{Frame, Transport, TransportError};

/// One sender, one receiver, 100 000 frames (scaled): each arrives once, in order.
pub(crate) async fn ordering_single_channel<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
    cx.step("B receives the frames of one sender in order");
    let n_frames = cx.n(100_000);
    let a = Arc::new(a);
    let sender = {
        let a = a.clone();
        cx.spawn(async move {
            for i in 0..n_frames {
                a.send(Frame::new(Bytes::copy_from_slice(&i.to_le_bytes())).msg_id(i))
                    .await
                    .map_err(err(format!("send #{i}")))?;
            }
            Ok::<_, String>(())
        })
    };
    for i in 0..n_frames {
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
    settle_idle(&*a, &b, &cx).await
}

/// Frames on 64 channels picked at random: global order and per-channel order hold.
pub(crate) async fn ordering_interleaved<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
    cx.step("B receives frames of 64 interleaved channels in order");
    const CHANNELS: u32 = 64;
    let n_frames = cx.n(64_000);
    let seed = cx.seed;
    let a = Arc::new(a);
    let sender = {
        let a = a.clone();
        let mut rng = cx.rng(1);
        cx.spawn(async move {
            let mut per = vec![0u64; CHANNELS as usize];
            for i in 0..n_frames {
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
    for i in 0..n_frames {
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
    settle_idle(&*a, &b, &cx).await
}

/// Eight sender tasks, two receiver tasks: every frame once, in order per sender.
pub(crate) async fn concurrency<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
    cx.step("8 tasks send while 2 tasks receive");
    const SENDERS: u32 = 8;
    let per = cx.n(10_000);
    let a = Arc::new(a);
    let b = Arc::new(b);
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let a = a.clone();
        senders.push(cx.spawn(async move {
            for i in 0..per {
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
        receivers.push(cx.spawn(async move {
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
        total as u64 == SENDERS as u64 * per,
        "{total} frames delivered, {} sent",
        SENDERS as u64 * per
    );
    settle_idle(&*a, &*b, &cx).await
}
