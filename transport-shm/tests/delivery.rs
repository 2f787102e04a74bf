//! Delivery: every frame arrives once, in order, with its content, through every route (inline, copied into a slot, zero-copy), and received payloads own their memory.
//!
//! Every test drives the real backend over a real memfd segment, checks payload contents and
//! proves that nothing leaked with `Stats`; waiting for another task uses bounded polling of
//! `stats()`, never a sleep (helpers in `common`).

mod common;

use bytes::Bytes;
use common::*;
use std::sync::Arc;
use transport_api::{Frame, FrameHeader, Transport, TrySendError, TxBuf};
use transport_shm::{ShmConfig, pair};

/// Many tasks sending on one transport at once, on a multi-threaded runtime, must not
/// become several producers of the single-producer ring. Half the senders use `send`, half
/// `try_send`; every frame arrives exactly once, in order per sender, with its content.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_deliver_each_frame_once_in_order() {
    const SENDERS: u32 = 8;
    const PER: u64 = 1500;
    const SIZES: [usize; 5] = [8, 100, 1000, 3000, 20_000];
    let (a, b) = pair(ShmConfig::default()).await.unwrap();
    let a = Arc::new(a);
    let start = Arc::new(tokio::sync::Barrier::new(SENDERS as usize));
    let bases: Arc<Vec<Vec<u8>>> = Arc::new(SIZES.iter().map(|&n| pattern(n, n as u64)).collect());
    let frame = |bases: &[Vec<u8>], s: u32, i: u64| {
        let mut p = bases[(i % SIZES.len() as u64) as usize].clone();
        p[..8].copy_from_slice(&i.to_le_bytes());
        if p.len() >= 12 {
            p[8..12].copy_from_slice(&s.to_le_bytes());
        }
        Frame::new(p).channel(s).msg_id(i)
    };
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (a, start, bases) = (a.clone(), start.clone(), bases.clone());
        senders.push(tokio::spawn(async move {
            start.wait().await;
            for i in 0..PER {
                if s % 2 == 0 {
                    a.send(frame(&bases, s, i)).await.unwrap();
                } else {
                    let mut f = frame(&bases, s, i);
                    loop {
                        match a.try_send(f) {
                            Ok(()) => break,
                            Err(TrySendError::Full(back)) => {
                                f = back;
                                tokio::task::yield_now().await;
                            }
                            Err(e) => panic!("sender {s} frame {i}: {e}"),
                        }
                    }
                }
            }
        }));
    }
    let receiver = tokio::spawn(async move {
        let mut next = vec![0u64; SENDERS as usize];
        let mut switches = 0u64;
        let mut last = u32::MAX;
        for _ in 0..u64::from(SENDERS) * PER {
            let f = guard("recv", b.recv()).await.unwrap();
            let s = f.header.channel;
            assert!(s < SENDERS, "unknown sender {s}");
            let i = next[s as usize];
            assert_eq!(f.header.msg_id, i, "sender {s}: out of order or lost frame");
            let want = frame(&bases, s, i);
            assert!(f.bytes() == want.bytes(), "sender {s} frame {i}: content");
            next[s as usize] += 1;
            if s != last {
                switches += 1;
                last = s;
            }
        }
        assert!(b.try_recv().unwrap().is_none(), "a frame was duplicated");
        (b, switches)
    });
    for s in senders {
        guard("sender", s).await.unwrap();
    }
    let (b, switches) = guard("receiver", receiver).await.unwrap();
    // Sanity: the senders really ran concurrently (interleaved on the ring).
    assert!(
        switches > u64::from(SENDERS),
        "senders never interleaved ({switches} switches): the test exercised nothing"
    );
    let total = u64::from(SENDERS) * PER;
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(sa.frames_sent, total);
    assert_eq!(sa.copied_sends, total);
    assert_eq!(sb.frames_received, total);
    assert_eq!(sa.bytes_sent, sb.bytes_received);
    settle_idle("after the concurrent senders", &a, &b).await;
}

/// Every zero-copy path delivers its content end to end: buffers from `alloc` at
/// every class boundary, truncated buffers, `try_send` of a buffer; heap buffers and buffers
/// leased by *another* transport are copied, not mistaken for our slots.
#[tokio::test]
async fn zero_copy_frames_arrive_with_content() {
    let (a, b) = pair(ShmConfig::default()).await.unwrap();
    let sizes = [
        0usize,
        1,
        7,
        8,
        15,
        16,
        17,
        63,
        64,
        65,
        71,
        72,
        73,
        128,
        239,
        240,
        241,
        255,
        256,
        257,
        4095,
        4096,
        4097,
        65_536,
        65_537,
        1 << 20,
    ];
    let header = |i: u64| FrameHeader {
        msg_id: i,
        channel: 7,
        method: 3,
        flags: 0xF0,
        credit: 9,
        deadline_ns: 1_000 + i,
    };
    for (i, &len) in sizes.iter().enumerate() {
        let mut buf = a.alloc(len).await.unwrap();
        assert_eq!(buf.len(), len);
        // Small payloads travel inline in the ring: `alloc` gives a heap buffer for them.
        assert_eq!(
            buf.is_heap(),
            len <= a.inline_max(),
            "size {len}: placement"
        );
        buf.copy_from_slice(&pattern(len, i as u64));
        a.send(Frame::with_header(header(i as u64), buf))
            .await
            .unwrap();
    }
    for (i, &len) in sizes.iter().enumerate() {
        let f = guard("recv", b.recv()).await.unwrap();
        assert_eq!(f.header, header(i as u64));
        assert_eq!(f.bytes().len(), len);
        assert!(
            f.bytes() == &pattern(len, i as u64)[..],
            "size {len}: content"
        );
    }
    let s = a.stats();
    let inline = sizes.iter().filter(|&&n| n <= a.inline_max()).count() as u64;
    assert!(inline > 0 && inline < sizes.len() as u64);
    assert_eq!(s.zero_copy_sends, sizes.len() as u64 - inline);
    assert_eq!(s.copied_sends, inline);

    // Truncated buffer, and try_send of a leased buffer.
    let mut buf = a.alloc(5000).await.unwrap();
    buf.copy_from_slice(&pattern(5000, 77));
    buf.truncate(123);
    a.send(Frame::new(buf).msg_id(100)).await.unwrap();
    let mut buf = a.alloc(2000).await.unwrap();
    buf.copy_from_slice(&pattern(2000, 78));
    a.try_send(Frame::new(buf).msg_id(101)).unwrap();
    // Heap buffer and a buffer leased from the other endpoint: copied.
    let mut heap = TxBuf::heap(3000);
    heap.copy_from_slice(&pattern(3000, 79));
    a.send(Frame::new(heap).msg_id(102)).await.unwrap();
    let mut foreign = b.alloc(700).await.unwrap();
    foreign.copy_from_slice(&pattern(700, 80));
    a.send(Frame::new(foreign).msg_id(103)).await.unwrap();
    let want = [
        (100, pattern(5000, 77)[..123].to_vec()),
        (101, pattern(2000, 78)),
        (102, pattern(3000, 79)),
        (103, pattern(700, 80)),
    ];
    for (id, content) in want {
        let f = guard("recv", b.recv()).await.unwrap();
        assert_eq!(f.header.msg_id, id);
        assert!(f.bytes() == &content[..], "frame {id}: content");
    }
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(sa.zero_copy_sends, sizes.len() as u64 - inline + 2);
    assert_eq!(sa.copied_sends, inline + 2);
    assert_eq!(sb.frames_received, sizes.len() as u64 + 4);
    assert_eq!(sa.bytes_sent, sb.bytes_received);
    assert_eq!(sb.frames_sent, 0, "the foreign buffer was sent by `a` only");
    settle_idle("after zero-copy sends", &a, &b).await;
}

/// Received payloads are owned `Bytes`: they stay valid across later receives, in
/// other threads and after both endpoints are gone, and return their slot exactly when the
/// last reference (including slices and clones) is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn received_payloads_are_owned_and_free_their_slot_on_drop() {
    let (a, b) = pair(ShmConfig::default()).await.unwrap();
    for i in 0..10u64 {
        a.send(Frame::new(pattern(1000, i)).msg_id(i))
            .await
            .unwrap();
    }
    let mut held: Vec<Bytes> = Vec::new();
    for _ in 0..10 {
        held.push(guard("recv", b.recv()).await.unwrap().into_bytes());
    }
    assert_eq!(b.stats().buffer_bytes_in_use, 10 * 4096);
    // Many later receives (slot and inline payloads) do not disturb the held ones.
    for i in 0..300u64 {
        let len = [8usize, 200, 1000, 5000][(i % 4) as usize];
        a.send(Frame::new(pattern(len, 1000 + i))).await.unwrap();
        let f = guard("recv", b.recv()).await.unwrap();
        assert!(f.bytes() == &pattern(len, 1000 + i)[..]);
    }
    // Inline payloads are plain heap bytes: holding them pins no slot.
    a.send(Frame::new(pattern(16, 5))).await.unwrap();
    let inline = guard("recv", b.recv()).await.unwrap().into_bytes();
    assert_eq!(b.stats().buffer_bytes_in_use, 10 * 4096);
    for (i, h) in held.iter().enumerate() {
        assert!(
            h == &pattern(1000, i as u64)[..],
            "held payload {i} changed"
        );
    }
    let slice = held[0].slice(10..20);
    let clone = held[1].clone();
    drop(held);
    let s = settle("slots of dropped payloads return", &b, |s| {
        s.buffer_bytes_in_use == 2 * 4096
    })
    .await;
    assert_eq!(s.rx_queued_frames, 0);
    settle("sender sees them returned", &a, |s| {
        s.buffer_bytes_in_use == 2 * 4096
    })
    .await;
    // Owned: readable from another thread.
    let clone = std::thread::spawn(move || {
        assert!(clone[..] == pattern(1000, 1)[..]);
        clone
    })
    .join()
    .unwrap();
    drop(clone);
    settle("the clone's slot returns", &a, |s| {
        s.buffer_bytes_in_use == 4096
    })
    .await;
    // Owned: outlives both endpoints.
    drop((a, b));
    assert!(slice[..] == pattern(1000, 0)[10..20]);
    assert!(inline[..] == pattern(16, 5)[..]);
    drop(slice); // returning the slot of a finished session must not panic
}

/// Sending a buffer moves it, and its slot is not reused while the receiver holds
/// the payload: with one payload held, hundreds of frames of the same class cycle through the
/// other slots; when the receiver holds all of them the sender waits instead of reusing one.
#[tokio::test]
async fn a_held_slot_is_not_reused_until_its_payload_drops() {
    let (a, b) = pair(small()).await.unwrap();
    let mut buf = a.alloc(200).await.unwrap();
    buf.fill(0xAA);
    a.send(Frame::new(buf).msg_id(0)).await.unwrap();
    let hold = b.try_recv().unwrap().expect("frame").into_bytes();
    assert!(hold.iter().all(|&x| x == 0xAA) && hold.len() == 200);
    for round in 0..300u64 {
        let mut buf = a.alloc(200).await.unwrap();
        buf.fill(round as u8 ^ 0x55);
        a.send(Frame::new(buf).msg_id(round + 1)).await.unwrap();
        let f = b.try_recv().unwrap().expect("frame");
        assert!(f.bytes().iter().all(|&x| x == round as u8 ^ 0x55));
        drop(f);
        assert!(
            hold.iter().all(|&x| x == 0xAA),
            "round {round}: held slot reused"
        );
        assert_eq!(
            a.stats().buffer_bytes_in_use,
            256,
            "only the held slot is in use"
        );
    }
    // The receiver holds all eight 256-byte slots: the sender cannot get a ninth.
    let mut rest = Vec::new();
    for i in 0..7u64 {
        a.try_send(Frame::new(vec![i as u8; 200])).unwrap();
        rest.push(b.try_recv().unwrap().expect("frame").into_bytes());
    }
    assert!(matches!(
        a.try_send(Frame::new(vec![0xEE; 200])),
        Err(TrySendError::Full(_))
    ));
    let mut fut = Box::pin(a.alloc(200));
    assert!(
        poll_once(fut.as_mut()).is_pending(),
        "a held slot was handed out"
    );
    for (i, r) in rest.iter().enumerate() {
        assert!(r.iter().all(|&x| x == i as u8));
    }
    assert!(hold.iter().all(|&x| x == 0xAA));
    // The returned slot reaches the waiting alloc through the completion ring and the
    // doorbell (the runtime's reactor), so await it rather than polling by hand.
    drop(rest.pop());
    let buf = guard("alloc after the receiver dropped a payload", fut)
        .await
        .unwrap();
    assert_eq!(buf.capacity(), 256);
    drop((buf, rest, hold));
    settle_idle("after holding", &a, &b).await;
}

/// `Stats::{tx,rx}_queued_frames` count frames, not ring entries, also when an inline frame
/// takes several entries.
#[tokio::test(flavor = "current_thread")]
async fn queued_counts_are_frames_not_ring_entries() {
    let (a, b) = pair(small_no_spin()).await.unwrap();
    let big = a.inline_max();
    assert!(big > 16 + 56, "a multi-entry inline frame: {big} B");
    // 1 + 4 + 1 + 2 entries: the whole ring of 8. Each lap starts the units at other ring
    // positions.
    let mut sizes = [8usize, big, 1000, 40];
    for lap in 0..4 {
        for (i, &len) in sizes.iter().enumerate() {
            a.try_send(Frame::new(vec![i as u8; len]).msg_id(i as u64))
                .unwrap();
        }
        for taken in 0..=sizes.len() {
            let left = (sizes.len() - taken) as u64;
            assert_eq!(
                a.stats().tx_queued_frames,
                left,
                "sender, lap {lap}, after {taken} taken"
            );
            assert_eq!(
                b.stats().rx_queued_frames,
                left,
                "receiver, lap {lap}, after {taken} taken"
            );
            if taken < sizes.len() {
                let f = b.try_recv().unwrap().expect("a queued frame");
                assert_eq!(f.bytes().len(), sizes[taken]);
            }
        }
        sizes.rotate_left(1);
    }
    assert!(a.stats().is_idle() && b.stats().is_idle());
}

/// `close` racing sends on other tasks while the peer receives: every send that returned `Ok`
/// is received before the peer sees `Closed`; the others fail with `Closed`. Repeated, so the
/// close lands at many points of a send (before the check, between the check and the publish,
/// after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn close_racing_sends_loses_no_frame_whose_send_returned_ok() {
    const SENDERS: u32 = 3;
    for round in 0..300u64 {
        let (a, b) = pair(ShmConfig::default()).await.unwrap();
        let a = Arc::new(a);
        let start = Arc::new(tokio::sync::Barrier::new(SENDERS as usize + 1));
        let receiver = tokio::spawn(async move {
            let mut got = vec![0u64; SENDERS as usize];
            loop {
                match b.recv().await {
                    Ok(f) => {
                        let s = f.header.channel as usize;
                        assert_eq!(f.header.msg_id, got[s], "round {round}: sender {s} order");
                        got[s] += 1;
                    }
                    Err(transport_api::TransportError::Closed) => break,
                    Err(e) => panic!("round {round}: unexpected {e}"),
                }
            }
            // Nothing may arrive after `Closed` either.
            assert!(b.try_recv().is_err(), "round {round}: a frame after Closed");
            got
        });
        let mut senders = Vec::new();
        for s in 0..SENDERS {
            let (a, start) = (a.clone(), start.clone());
            senders.push(tokio::spawn(async move {
                start.wait().await;
                let mut ok = 0u64;
                loop {
                    let len = if ok % 2 == 0 { 8 } else { 3000 };
                    let f = Frame::new(vec![s as u8; len]).channel(s).msg_id(ok);
                    match a.send(f).await {
                        Ok(()) => ok += 1,
                        Err(transport_api::TransportError::Closed) => return ok,
                        Err(e) => panic!("sender {s}: unexpected {e}"),
                    }
                }
            }));
        }
        start.wait().await;
        // Let the senders get going for a round-dependent number of frames, then close.
        while a.stats().frames_sent < round % 40 {
            tokio::task::yield_now().await;
        }
        a.close();
        let mut sent = vec![0u64; SENDERS as usize];
        for (s, t) in senders.into_iter().enumerate() {
            sent[s] = guard("sender", t).await.unwrap();
        }
        let got = guard("receiver", receiver).await.unwrap();
        assert_eq!(
            got, sent,
            "round {round}: frames whose send returned Ok were lost"
        );
    }
}
