//! Memory: `alloc` buffers, zero-copy sends and accounting.

use super::sizes;
use super::{err, join_err, settle_idle};
use crate::scenario::Cx;
use crate::util::{Check, check_numbered, check_pattern, fill_pattern, numbered};
use crate::{check_idle, ensure};
use std::sync::Arc;
use transport_api::{Frame, FrameHeader, Transport, TrySendError};

/// `alloc` buffers of every size arrive intact; with `zero_copy` declared, those over
/// `copies_up_to` are counted as zero-copy sends; a buffer from elsewhere is still delivered.
pub(crate) async fn zero_copy<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
    cx.step("sending alloc buffers of every boundary size");
    let sizes: Vec<usize> = sizes(&cx.caps, a.max_payload());
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
        cx.spawn(async move {
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
    if cx.caps.zero_copy {
        let large = sizes.iter().filter(|&&n| n > cx.caps.copies_up_to).count() as u64;
        ensure!(
            zc >= large && zc <= sent,
            "only {zc} of the {large} alloc'd frames over {} bytes were sent without a copy",
            cx.caps.copies_up_to
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
    settle_idle(&*a, &b, &cx).await
}

/// `alloc` buffers dropped without being sent give their memory back: one at a time, many held
/// at once, many more in total than a small pair has, and a truncated buffer sends only what
/// it kept.
pub(crate) async fn alloc_dropped_unsent<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
    let max = a.max_payload();
    let sizes = sizes(&cx.caps, max);
    cx.step("allocating buffers of every boundary size and dropping them unsent");
    for round in 0..3 {
        for &len in &sizes {
            let mut buf = a.alloc(len).await.map_err(err(format!("alloc({len})")))?;
            ensure!(
                buf.len() == len,
                "alloc({len}) returned {} bytes",
                buf.len()
            );
            fill_pattern(&mut buf, len as u64);
            drop(buf);
            let _ = cx
                .wait_until("the sender is idle after dropping a buffer", || {
                    a.stats().is_idle()
                })
                .await;
            check_idle(
                &format!("the sender after dropping an unsent alloc({len}) (round {round})"),
                &a.stats(),
            )?;
        }
    }
    cx.step("allocating and dropping 1000 buffers, more than a small pair holds");
    for i in 0..1000u64 {
        let len = [100, 1000, 5000][(i % 3) as usize].min(max);
        drop(
            a.alloc(len)
                .await
                .map_err(err(format!("alloc #{i} ({len} bytes)")))?,
        );
    }
    cx.step("holding several buffers at once, then dropping them out of order");
    let mut held = Vec::new();
    for len in [10, 100, 1000, 3000] {
        held.push(a.alloc(len.min(max)).await.map_err(err("alloc"))?);
    }
    held.swap(0, 2);
    drop(held);
    let _ = cx
        .wait_until("the sender is idle after dropping held buffers", || {
            a.stats().is_idle()
        })
        .await;
    check_idle("the sender after dropping held buffers", &a.stats())?;
    cx.step("sending a truncated alloc buffer");
    let len = 1000.min(max);
    let mut buf = a.alloc(len).await.map_err(err("alloc"))?;
    fill_pattern(&mut buf, 77);
    buf.truncate(len / 2);
    a.send(Frame::new(buf).msg_id(1))
        .await
        .map_err(err("send of a truncated buffer"))?;
    let f = b.recv().await.map_err(err("recv of a truncated buffer"))?;
    ensure!(
        f.bytes().len() == len / 2,
        "a buffer of {len} bytes truncated to {} arrived with {} bytes",
        len / 2,
        f.bytes().len()
    );
    check_pattern(f.bytes(), 77)?;
    drop(f);
    settle_idle(&a, &b, &cx).await
}

/// Every counter of [`Stats`](transport_api::Stats) matches the traffic: frames and bytes sent
/// and received on each side, each send counted once as zero-copy or copied, and queued frames
/// shown while the receiver has not taken them.
pub(crate) async fn stats_counters<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
    const N: u64 = 300;
    let (a0, b0) = (a.stats(), b.stats());
    let mut rng = cx.rng(60);
    let plan: Vec<(usize, u64)> = (0..N)
        .map(|_| {
            (
                [0, 1, 60, 700, 4000, 20_000][rng.below(6) as usize],
                rng.below(3),
            )
        })
        .collect();
    let total: u64 = plan.iter().map(|&(len, _)| len as u64).sum();
    cx.step("one frame queued and not yet received");
    a.send(numbered(0, 100)).await.map_err(err("send"))?;
    // A counts the frame until B takes it where it can tell (shared queues and rings); a
    // network backend hands it to the kernel and may count 0 on the sending side.
    cx.wait_until("B shows 1 frame to receive and A at most 1 queued", || {
        a.stats().tx_queued_frames <= 1 && b.stats().rx_queued_frames == 1
    })
    .await
    .map_err(|e| format!("{e}: A {:?}, B {:?}", a.stats(), b.stats()))?;
    let f = b.recv().await.map_err(err("recv"))?;
    check_numbered(&f, 0)?;
    drop(f);
    let a = Arc::new(a);
    cx.step(format!(
        "{N} frames of mixed sizes through send, try_send and alloc"
    ));
    let sender = {
        let (a, plan) = (a.clone(), plan.clone());
        cx.spawn(async move {
            for (i, &(len, path)) in plan.iter().enumerate() {
                let f = numbered(i as u64, len.max(8));
                let f = Frame::with_header(f.header, f.bytes()[..len].to_vec());
                match path {
                    0 => a.send(f).await.map_err(err(format!("send #{i}")))?,
                    1 => match a.try_send(f) {
                        Ok(()) => {}
                        Err(TrySendError::Full(back)) => {
                            a.send(back).await.map_err(err(format!("send #{i}")))?
                        }
                        Err(TrySendError::Failed(e)) => return Err(format!("try_send #{i}: {e}")),
                    },
                    _ => {
                        let mut buf = a.alloc(len).await.map_err(err(format!("alloc #{i}")))?;
                        buf.copy_from_slice(f.bytes());
                        a.send(Frame::with_header(f.header, buf))
                            .await
                            .map_err(err(format!("send #{i}")))?
                    }
                }
            }
            Ok::<_, String>(())
        })
    };
    for (i, &(len, _)) in plan.iter().enumerate() {
        let f = b.recv().await.map_err(err(format!("recv #{i}")))?;
        ensure!(
            f.header.msg_id == i as u64 && f.bytes().len() == len,
            "frame #{i}: wrong frame"
        );
    }
    sender.await.map_err(join_err)??;
    let (a1, b1) = (a.stats(), b.stats());
    let sent = a1.frames_sent - a0.frames_sent;
    let counted = [
        ("A frames_sent", sent, N + 1),
        ("A bytes_sent", a1.bytes_sent - a0.bytes_sent, total + 100),
        (
            "B frames_received",
            b1.frames_received - b0.frames_received,
            N + 1,
        ),
        (
            "B bytes_received",
            b1.bytes_received - b0.bytes_received,
            total + 100,
        ),
        (
            "A zero_copy_sends + copied_sends",
            (a1.zero_copy_sends + a1.copied_sends) - (a0.zero_copy_sends + a0.copied_sends),
            N + 1,
        ),
        (
            "A frames_received",
            a1.frames_received - a0.frames_received,
            0,
        ),
        ("B frames_sent", b1.frames_sent - b0.frames_sent, 0),
    ];
    for (what, got, want) in counted {
        ensure!(
            got == want,
            "{what} grew by {got}, but {want} frames/bytes went that way (A {a1:?}, B {b1:?})"
        );
    }
    settle_idle(&*a, &b, &cx).await
}
