//! Backpressure: a full ring or an exhausted slot class makes `send` and `alloc` wait, never fail; refused and cancelled sends leak nothing.
//!
//! Every test drives the real backend over a real memfd segment, checks payload contents and
//! proves that nothing leaked with `Stats`; waiting for another task uses bounded polling of
//! `stats()`, never a sleep (helpers in `common`).

mod common;

use bytes::Bytes;
use common::*;
use std::sync::Arc;
use std::task::Poll;
use transport_api::{Frame, Transport, TransportError, TrySendError, TxBuf};
use transport_shm::conformance::small_geometry;
use transport_shm::pair;

/// An oversized payload is refused before anything is allocated, on every path
/// (`send`, `try_send`, `alloc`), even while the largest class is in use; 1000 refusals leak no
/// slot, and the single largest slot still carries a maximum-size payload afterwards.
#[tokio::test]
async fn oversized_sends_are_refused_before_taking_a_slot() {
    let (a, b) = pair(small()).await.unwrap();
    let max = a.max_payload();
    assert_eq!(max, 1 << 20, "small geometry's largest class");
    let big = Bytes::from(pattern(max + 1, 4));
    for _ in 0..1000 {
        expect_too_large(a.send(Frame::new(big.clone())).await, max + 1, max);
    }
    for _ in 0..100 {
        match a.try_send(Frame::new(big.clone())) {
            Err(TrySendError::Failed(TransportError::PayloadTooLarge { len, max: m })) => {
                assert_eq!((len, m), (max + 1, max))
            }
            other => panic!("try_send of an oversized frame: {other:?}"),
        }
        expect_too_large(a.alloc(max + 1).await.map(drop), max + 1, max);
    }
    expect_too_large(a.alloc(usize::MAX).await.map(drop), usize::MAX, max);
    let s = a.stats();
    assert!(s.is_idle(), "refused sends left something behind: {s:?}");
    assert_eq!(
        (s.frames_sent, s.copied_sends, s.zero_copy_sends),
        (0, 0, 0)
    );
    assert_eq!(s.send_waits, 0, "a refused send waited");
    assert!(
        b.try_recv().unwrap().is_none(),
        "a refused frame was delivered"
    );

    // The one 1 MiB slot still works, over and over (it was never leaked).
    for round in 0..3u64 {
        let p = pattern(max, round);
        if round == 1 {
            let mut buf = a.alloc(max).await.unwrap();
            buf.copy_from_slice(&p);
            a.send(Frame::new(buf).msg_id(round)).await.unwrap();
        } else {
            a.send(Frame::new(p.clone()).msg_id(round)).await.unwrap();
        }
        let f = guard("recv max-size", b.recv()).await.unwrap();
        assert_eq!(f.header.msg_id, round);
        assert!(f.bytes() == &p[..], "max-size payload corrupted");
        // While the receiver holds the only large slot, an oversized send still fails at once
        // (size checked before waiting for a slot).
        let mut fut = Box::pin(a.send(Frame::new(big.clone())));
        match poll_once(fut.as_mut()) {
            Poll::Ready(r) => expect_too_large(r, max + 1, max),
            Poll::Pending => panic!("an oversized send waited for a slot"),
        }
        drop(f);
        settle_idle("after a max-size frame", &a, &b).await;
    }
}

/// A `send` dropped while it waits (for ring space, after its payload is already in a
/// slot; or for a slot) and an `alloc` dropped while it waits leak nothing and deliver nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_send_futures_leak_no_slot() {
    let (a, b) = pair(small()).await.unwrap();
    // Fill the 8-entry ring with inline frames: no slot is in use.
    for i in 0..8u64 {
        a.try_send(Frame::new(i.to_le_bytes().to_vec()).msg_id(i))
            .unwrap();
    }
    assert!(matches!(
        a.try_send(Frame::new("x")),
        Err(TrySendError::Full(_))
    ));
    let s = a.stats();
    assert_eq!((s.tx_queued_frames, s.buffer_bytes_in_use), (8, 0));

    // Await point "waiting for ring space", payload already copied into a slot of each class,
    // or already in a leased buffer (zero-copy); far more rounds than slots in any class.
    let mut k = 100u64;
    for (len, class) in [
        (200, 256),
        (3000, 4096),
        (40_000, 65_536),
        (1 << 20, 1 << 20),
    ] {
        let p = Bytes::from(pattern(len, len as u64));
        for round in 0..20 {
            let waits = a.stats().send_waits;
            let frame = if round % 2 == 0 {
                Frame::new(p.clone()).msg_id(k)
            } else {
                let mut buf = a.alloc(len).await.unwrap();
                buf.copy_from_slice(&p);
                Frame::new(buf).msg_id(k)
            };
            k += 1;
            let mut fut = Box::pin(a.send(frame));
            assert!(poll_once(fut.as_mut()).is_pending(), "the ring is full");
            let s = a.stats();
            assert_eq!(s.send_waits, waits + 1, "the send parked waiting for space");
            assert_eq!(
                s.buffer_bytes_in_use, class,
                "the waiting send holds exactly one {class}-byte slot"
            );
            // Space appears, but the future is dropped before it is polled again.
            if round == 19 {
                let f = b.try_recv().unwrap().expect("a queued frame");
                let id = f.header.msg_id;
                assert!(id < 8, "only inline frames are queued, got {id}");
                a.try_send(Frame::new(id.to_le_bytes().to_vec()).msg_id(id))
                    .unwrap();
            }
            drop(fut);
            assert_eq!(a.stats().buffer_bytes_in_use, 0, "cancelled send leaked");
        }
    }

    // Await point "waiting for a slot": both 64 KiB slots are leased.
    let mut held: Vec<TxBuf> = Vec::new();
    for _ in 0..2 {
        held.push(a.alloc(40_000).await.unwrap());
    }
    // Drain the ring so only slot exhaustion can make the send wait.
    let mut drained = Vec::new();
    while let Some(f) = b.try_recv().unwrap() {
        drained.push(f.header.msg_id);
    }
    drained.sort_unstable();
    assert_eq!(
        drained,
        (0..8).collect::<Vec<_>>(),
        "only the inline frames"
    );
    let p = Bytes::from(pattern(40_000, 5));
    for round in 0..20 {
        let waits = a.stats().send_waits;
        if round % 2 == 0 {
            let mut fut = Box::pin(a.send(Frame::new(p.clone()).msg_id(1000 + round)));
            assert!(poll_once(fut.as_mut()).is_pending(), "no 64 KiB slot free");
        } else {
            let mut fut = Box::pin(a.alloc(40_000));
            assert!(poll_once(fut.as_mut()).is_pending(), "no 64 KiB slot free");
        }
        let s = a.stats();
        assert_eq!(s.send_waits, waits + 1, "parked waiting for a slot");
        assert_eq!(s.buffer_bytes_in_use, 2 * 65_536);
    }
    drop(held.pop());
    a.send(Frame::new(p.clone()).msg_id(2000)).await.unwrap();
    let f = guard("recv", b.recv()).await.unwrap();
    assert_eq!(f.header.msg_id, 2000, "a cancelled send was delivered");
    assert!(f.bytes() == &p[..]);
    drop((f, held));
    assert!(
        b.try_recv().unwrap().is_none(),
        "a cancelled send was delivered"
    );
    // Every class still has all of its slots: fill each class completely.
    for c in &small_geometry().classes {
        let bufs: Vec<TxBuf> = {
            let mut v = Vec::new();
            for _ in 0..c.slot_count {
                v.push(guard("alloc", a.alloc(c.slot_size as usize)).await.unwrap());
            }
            v
        };
        assert_eq!(
            a.stats().buffer_bytes_in_use,
            u64::from(c.slot_size) * u64::from(c.slot_count)
        );
        drop(bufs);
    }
    settle_idle("after cancellations", &a, &b).await;
}

/// Slot exhaustion is backpressure. With every slot of a class leased (locally) or
/// held by the receiver, `try_send` hands the frame back, `send` and `alloc` wait (no error),
/// other classes are unaffected, and freeing one slot lets a waiter through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slot_exhaustion_waits_instead_of_failing() {
    let (a, b) = pair(small()).await.unwrap();
    let a = Arc::new(a);
    let mut held: Vec<TxBuf> = Vec::new();
    for _ in 0..4 {
        held.push(a.alloc(3000).await.unwrap());
    }
    assert_eq!(a.stats().buffer_bytes_in_use, 4 * 4096);
    let p = pattern(3000, 6);
    match a.try_send(Frame::new(p.clone()).msg_id(1)) {
        Err(TrySendError::Full(f)) => {
            assert_eq!(f.header.msg_id, 1);
            assert!(f.bytes() == &p[..], "handed-back frame changed");
        }
        other => panic!("try_send with the 4 KiB class exhausted: {other:?}"),
    }
    let waits = a.stats().send_waits;
    let sender = {
        let (a, p) = (a.clone(), p.clone());
        tokio::spawn(async move { a.send(Frame::new(p).msg_id(1)).await })
    };
    settle("send waits for a slot", &*a, |s| s.send_waits > waits).await;
    let allocer = {
        let a = a.clone();
        tokio::spawn(async move { a.alloc(3000).await })
    };
    settle("alloc waits for a slot", &*a, |s| s.send_waits > waits + 1).await;
    assert!(!sender.is_finished() && !allocer.is_finished());
    // Other classes still work meanwhile.
    a.try_send(Frame::new(pattern(100, 0)).msg_id(0)).unwrap();
    let f = guard("recv", b.recv()).await.unwrap();
    assert_eq!((f.header.msg_id, f.bytes()), (0, &pattern(100, 0)[..]));
    drop(f);
    // Free two leased slots: both waiters get through.
    drop(held.pop());
    drop(held.pop());
    guard("waiting send", sender).await.unwrap().unwrap();
    let extra = guard("waiting alloc", allocer).await.unwrap().unwrap();
    let f = guard("recv", b.recv()).await.unwrap();
    assert_eq!(f.header.msg_id, 1);
    assert!(f.bytes() == &p[..]);
    drop(f);

    // Exhaustion by the receiver: it holds all four 4 KiB slots.
    held.push(extra);
    let mut kept = Vec::new();
    for (i, mut buf) in held.drain(..).enumerate() {
        let i = i as u64 + 10;
        buf.copy_from_slice(&pattern(3000, i));
        a.send(Frame::new(buf).msg_id(i)).await.unwrap();
    }
    a.send(Frame::new(pattern(3000, 13)).msg_id(13))
        .await
        .unwrap();
    for i in 10..14u64 {
        let f = guard("recv", b.recv()).await.unwrap();
        assert_eq!(f.header.msg_id, i);
        assert!(f.bytes() == &pattern(3000, i)[..]);
        kept.push(f.into_bytes());
    }
    assert!(matches!(
        a.try_send(Frame::new(pattern(3000, 14))),
        Err(TrySendError::Full(_))
    ));
    let waits = a.stats().send_waits;
    let sender = {
        let a = a.clone();
        tokio::spawn(async move { a.send(Frame::new(pattern(3000, 14)).msg_id(14)).await })
    };
    settle("send waits for a held slot", &*a, |s| s.send_waits > waits).await;
    assert!(!sender.is_finished());
    drop(kept.remove(0));
    guard("send after the receiver freed a slot", sender)
        .await
        .unwrap()
        .unwrap();
    let f = guard("recv", b.recv()).await.unwrap();
    assert_eq!(f.header.msg_id, 14);
    assert!(f.bytes() == &pattern(3000, 14)[..]);
    for (i, k) in kept.iter().enumerate() {
        assert!(
            k == &pattern(3000, i as u64 + 11)[..],
            "held payload changed"
        );
    }
    drop((f, kept));
    settle_idle("after exhaustion", &a, &b).await;
}

/// Small messages never fall back to larger classes, and each direction has its own
/// pool: with the 256-byte class exhausted, a 200-byte frame (above the inline limit) is refused by `try_send` while a
/// 64 KiB `alloc` succeeds at once and the other direction sends 200-byte frames freely.
#[tokio::test]
async fn small_messages_do_not_exhaust_large_classes() {
    let (a, b) = pair(small()).await.unwrap();
    let mut held = Vec::new();
    for i in 0..8u64 {
        a.try_send(Frame::new(pattern(200, i)).msg_id(i)).unwrap();
        let f = b.try_recv().unwrap().expect("frame");
        assert!(f.bytes() == &pattern(200, i)[..]);
        held.push(f.into_bytes());
    }
    assert_eq!(
        a.stats().buffer_bytes_in_use,
        8 * 256,
        "no larger slot used"
    );
    assert_eq!(b.stats().buffer_bytes_in_use, 8 * 256);
    assert_eq!(
        a.stats().tx_queued_frames,
        0,
        "the ring is empty, only slots are held"
    );
    match a.try_send(Frame::new(pattern(200, 8))) {
        Err(TrySendError::Full(_)) => {}
        other => panic!("200 bytes with the 256-byte class exhausted: {other:?}"),
    }
    assert_eq!(
        a.stats().buffer_bytes_in_use,
        8 * 256,
        "fell back to a larger class"
    );
    // Larger classes are untouched.
    let mut fut = Box::pin(a.alloc(64 << 10));
    let buf = match poll_once(fut.as_mut()) {
        Poll::Ready(r) => r.unwrap(),
        Poll::Pending => panic!("a 64 KiB alloc waited although its class is free"),
    };
    assert_eq!((buf.len(), buf.capacity()), (64 << 10, 64 << 10));
    assert_eq!(a.stats().buffer_bytes_in_use, 8 * 256 + (64 << 10));
    drop(buf);
    a.try_send(Frame::new(pattern(1000, 9)).msg_id(9)).unwrap();
    let f = b.try_recv().unwrap().expect("frame");
    assert!(f.bytes() == &pattern(1000, 9)[..]);
    drop(f);
    // The other direction has its own 256-byte class.
    for i in 0..8u64 {
        b.try_send(Frame::new(pattern(200, 50 + i)).msg_id(i))
            .unwrap();
    }
    for i in 0..8u64 {
        let f = a.try_recv().unwrap().expect("frame");
        assert_eq!(f.header.msg_id, i);
        assert!(f.bytes() == &pattern(200, 50 + i)[..]);
    }
    for (i, h) in held.iter().enumerate() {
        assert!(h == &pattern(200, i as u64)[..]);
    }
    drop(held);
    settle_idle("after class isolation", &a, &b).await;
}

/// A frame sent inline can take several ring entries (a descriptor and its continuations).
/// When fewer entries are free than the frame needs, the sender must sleep until the receiver
/// frees room: the re-check before sleeping must ask for the whole unit, not for one entry, or
/// with one to three entries free the sender neither publishes nor sleeps and retries inside a
/// single poll, so that on a current-thread runtime the receiver never runs again. The scenario
/// runs on its own thread so that such a hang fails the test instead of hanging it.
#[test]
fn sender_sleeps_when_a_multi_entry_frame_does_not_fit_yet() {
    let (sent, got) = on_one_thread(
        "the sender spun instead of sleeping: the receiver never ran",
        || async {
            let (a, b) = pair(small_no_spin()).await.unwrap();
            let a = Arc::new(a);
            // Ring of 8 entries; the largest inline frame takes 4 of them.
            let big = 184;
            let frames: Vec<Vec<u8>> = vec![vec![1u8; 8], vec![2u8; big], vec![3u8; big]];
            let sender = {
                let (a, frames) = (a.clone(), frames.clone());
                tokio::spawn(async move {
                    for f in frames {
                        a.send(Frame::new(f)).await?;
                    }
                    Ok::<_, transport_api::TransportError>(())
                })
            };
            // 5 entries used, 3 free, the third frame needs 4: the sender must park.
            while a.stats().send_waits == 0 {
                tokio::task::yield_now().await;
            }
            let mut got = Vec::new();
            for _ in 0..frames.len() {
                got.push(b.recv().await.unwrap().payload.to_vec());
            }
            sender.await.unwrap().unwrap();
            (frames, got)
        },
    );
    assert_eq!(sent, got);
}
