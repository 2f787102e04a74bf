//! Unit tests of `session`.

use super::*;
use crate::core::codec::continuations;
use std::sync::atomic::Ordering;
use transport_api::Payload;

/// Bytes past an inline payload's length inside its ring entries (what a careless or
/// hostile sender may leave there) never show in the received frame, not even when the
/// received buffer is grown.
#[tokio::test]
async fn inline_padding_in_the_ring_never_shows() {
    use crate::core::layout::Direction;
    let (a, b) = crate::pair(crate::ShmConfig::default()).await.unwrap();
    let layout = a.segment().layout();
    let words = a
        .segment()
        .mapping()
        .words(0, layout.total_len() / 8)
        .unwrap();
    let ring = layout.dir(Direction::AToB).desc_ring_offset / 8 + crate::core::ring::CONTROL_WORDS;
    let mut at = 0; // ring position of the next unit
    for len in [5usize, 16, 40, 64] {
        let payload: Vec<u8> = (1..=len as u8).collect();
        a.send(Frame::new(payload.clone()).msg_id(len as u64))
            .await
            .unwrap();
        // Every payload word of the unit (descriptor words 6, 7; continuation words
        // 0..3, 5..7) gets 0xEE in each byte past the length.
        let entries = 1 + continuations(len);
        for j in 0..(2 + 7 * (entries - 1)).min(8) {
            let (e, w) = payload_word_at_for_test(j);
            let word = &words[ring + (at + e) * 8 + w];
            let first_pad = len.saturating_sub(8 * j).min(8);
            let mut bytes = word.load(Ordering::Relaxed).to_le_bytes();
            bytes[first_pad..].fill(0xEE);
            word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
        }
        let f = b.recv().await.unwrap();
        assert_eq!(f.header.msg_id, len as u64);
        assert_eq!(f.bytes(), &payload[..], "len {len}");
        let Payload::Buf(mut buf) = f.payload else {
            panic!("len {len}: a small frame arrives in a TxBuf");
        };
        assert_eq!(buf.set_len(TxBuf::INLINE_CAPACITY), TxBuf::INLINE_CAPACITY);
        assert!(
            buf[len..].iter().all(|&x| x == 0),
            "len {len}: {:?}",
            &buf[..]
        );
        at += entries;
    }
}

/// Both inline routes (`send` straight from the frame, `try_send` through `try_prepare`)
/// at the sizes where the unit grows, and the counters they keep.
#[tokio::test]
async fn both_inline_routes_carry_every_boundary_size() {
    let (a, b) = crate::pair(crate::ShmConfig::default()).await.unwrap();
    let max = a.inline_max();
    let sizes = [0, 1, 16, 17, 64, 65, 72, 73, max - 1, max];
    for (i, &len) in sizes.iter().enumerate() {
        let payload: Vec<u8> = (0..len).map(|k| (k * 31 + i) as u8).collect();
        if i % 2 == 0 {
            a.send(Frame::new(payload.clone()).msg_id(i as u64))
                .await
                .unwrap();
        } else {
            a.try_send(Frame::new(payload.clone()).msg_id(i as u64))
                .unwrap();
        }
        let f = b.recv().await.unwrap();
        assert_eq!(
            (f.header.msg_id, f.bytes()),
            (i as u64, &payload[..]),
            "len {len}"
        );
    }
    let s = a.stats();
    assert_eq!((s.copied_sends, s.zero_copy_sends), (sizes.len() as u64, 0));
    assert_eq!(s.bytes_sent, sizes.iter().sum::<usize>() as u64);
}

/// With several status flags set, operations report them in a fixed order: a local close
/// first, then corruption, then the peer's end.
#[tokio::test]
async fn status_flags_are_reported_in_order() {
    let (a, b) = crate::pair(crate::ShmConfig::default()).await.unwrap();
    a.inner.fail("test: broken on purpose".into());
    for r in [
        a.send(Frame::new(vec![1u8; 8])).await,
        a.try_send(Frame::new(vec![1u8; 8])).map_err(|e| match e {
            TrySendError::Full(_) => panic!("not full"),
            TrySendError::Failed(e) => e,
        }),
        a.recv().await.map(drop),
    ] {
        assert!(matches!(r, Err(TransportError::Corrupt { .. })), "{r:?}");
    }
    a.close();
    assert!(matches!(
        a.send(Frame::new(vec![1u8; 8])).await,
        Err(TransportError::Closed)
    ));
    assert!(matches!(a.recv().await, Err(TransportError::Closed)));
    // The peer's end, seen by `b` once `a` closed: a graceful close, not a death.
    let r = b.recv().await;
    assert!(matches!(r, Err(TransportError::Closed)), "{r:?}");
}

/// (entry of the unit, word in it) of payload word `j` (`j < 8`), as the wire layout
/// documents it: descriptor words 6 and 7, then continuation words 0, 1, 2, 3, 5, 6.
fn payload_word_at_for_test(j: usize) -> (usize, usize) {
    [
        (0, 6),
        (0, 7),
        (1, 0),
        (1, 1),
        (1, 2),
        (1, 3),
        (1, 5),
        (1, 6),
    ][j]
}

/// The permissions of the mapping that holds `addr`, from `/proc/self/maps` (`"rw-s"`).
fn perms_at(addr: usize) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (range, perms) = (f.next().unwrap(), f.next().unwrap());
        let (lo, hi) = range.split_once('-').unwrap();
        let (lo, hi) = (
            usize::from_str_radix(lo, 16).unwrap(),
            usize::from_str_radix(hi, 16).unwrap(),
        );
        if (lo..hi).contains(&addr) {
            return perms.to_string();
        }
    }
    panic!("no mapping holds {addr:#x}");
}

/// With `read_only_payloads`, each end maps the payload memory of what it receives read-only
/// (the kernel says so), its own payload memory and every ring read-write; a write into the
/// read-only part through the crate's byte views is refused with the range. Without it,
/// nothing is protected.
#[tokio::test]
async fn the_peers_payload_memory_is_mapped_read_only() {
    use crate::core::layout::Direction;
    let cfg = crate::ShmConfig {
        read_only_payloads: true,
        ..crate::ShmConfig::default()
    };
    let (a, b) = crate::pair(cfg).await.unwrap();
    for (t, incoming, outgoing) in [
        (&a, Direction::BToA, Direction::AToB),
        (&b, Direction::AToB, Direction::BToA),
    ] {
        let map = t.segment().mapping();
        let layout = t.segment().layout();
        let (inc, out) = (layout.dir(incoming), layout.dir(outgoing));
        assert_eq!(
            map.read_only(),
            Some(inc.payload_offset..inc.payload_offset + inc.payload_len)
        );
        let addr = |off: usize| map.span(off, 1).unwrap().0.as_ptr() as usize;
        let last = inc.payload_offset + inc.payload_len - 1;
        assert_eq!(&perms_at(addr(inc.payload_offset))[..3], "r--");
        assert_eq!(&perms_at(addr(last))[..3], "r--");
        for writable in [
            0,
            inc.desc_ring_offset,
            inc.completion_ring_offset,
            out.desc_ring_offset,
            out.payload_offset,
            out.payload_offset + out.payload_len - 1,
        ] {
            assert_eq!(&perms_at(addr(writable))[..3], "rw-", "offset {writable}");
        }
        let whole = map.bytes(0, map.len()).unwrap();
        assert!(matches!(
            whole.write(inc.payload_offset + 10, &[1, 2, 3]),
            Err(crate::os::mapping::MappingError::ReadOnly { .. })
        ));
        whole.write(out.payload_offset + 10, &[1, 2, 3]).unwrap();
    }
    let (c, _d) = crate::pair(crate::ShmConfig::default()).await.unwrap();
    assert_eq!(c.segment().mapping().read_only(), None);
    // Traffic of every size still flows both ways.
    for len in [0usize, 8, 300, 5000, 70_000] {
        a.send(Frame::new(vec![7u8; len])).await.unwrap();
        assert_eq!(b.recv().await.unwrap().bytes(), &vec![7u8; len][..]);
        b.send(Frame::new(vec![9u8; len])).await.unwrap();
        assert_eq!(a.recv().await.unwrap().bytes(), &vec![9u8; len][..]);
    }
}

/// Makes a pair with `config` (spin 0 whatever it says) on a current-thread runtime that is
/// shut down right after, then runs `body` with both ends on a fresh runtime, on a thread of
/// its own: a wait that busy-loops never lets a timer fire, so the 20 s limit is kept from
/// outside (its expiry fails the test).
fn after_the_creating_runtime_shut_down<T: Send + 'static, F>(
    config: crate::ShmConfig,
    body: impl FnOnce(ShmTransport, ShmTransport) -> F + Send + 'static,
) -> T
where
    F: std::future::Future<Output = T>,
{
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let config = crate::ShmConfig {
        spin: std::time::Duration::ZERO,
        ..config
    };
    let first = runtime();
    let (a, b) = first.block_on(crate::pair(config)).unwrap();
    drop(first);
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(runtime().block_on(body(a, b)));
    });
    let outcome = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the call neither returned nor failed: its wait loop spun");
    worker.join().unwrap();
    outcome
}

/// The `Io` error's message, or a panic naming what came instead.
fn io_message<T: std::fmt::Debug>(what: &str, r: Result<T>) -> String {
    match r {
        Err(TransportError::Io(e)) => e.to_string(),
        other => panic!("{what}: expected an Io error, got {other:?}"),
    }
}

/// A session's doorbell is registered with the I/O driver of the runtime that created it.
/// Once that runtime has shut down, a wait can no longer sleep: the call that must wait fails
/// with `Io` (naming the cause) instead of retrying its park in a loop that burns the CPU and
/// never returns to the runtime. Nothing else stops: a frame published afterwards is still
/// delivered, and a receive that finds the ring empty reports the error at once.
#[test]
fn waiting_after_the_creating_runtime_shut_down_fails_instead_of_spinning() {
    let (recv, sent, delivered, empty, after_readable) =
        after_the_creating_runtime_shut_down(crate::ShmConfig::default(), |a, b| async move {
            let recv = a.recv().await;
            let sent = b.send(Frame::new(vec![7u8; 8]).msg_id(9)).await;
            let delivered = a.try_recv();
            let empty = a.try_recv();
            a.readable().await;
            let after_readable = a.try_recv();
            (recv, sent, delivered, empty, after_readable)
        });
    let message = io_message("recv", recv);
    assert!(message.contains("runtime"), "{message}");
    assert!(sent.is_ok(), "a send that finds room publishes: {sent:?}");
    match delivered {
        Ok(Some(f)) => assert_eq!((f.header.msg_id, f.bytes().to_vec()), (9, vec![7u8; 8])),
        other => panic!("the frame sent after the failure: {other:?}"),
    }
    io_message("try_recv on the empty ring", empty);
    io_message("try_recv after readable", after_readable);
}

/// The same for `alloc`: with the only slot of its class held, an `alloc` that must wait for
/// it after the creating runtime shut down fails with `Io` instead of spinning.
#[test]
fn an_alloc_that_must_wait_after_the_runtime_shut_down_fails() {
    use crate::core::layout::{Geometry, SlotClass};
    let config = crate::ShmConfig {
        geometry: Geometry {
            ring_capacity: 64,
            classes: vec![SlotClass {
                slot_size: 4096,
                slot_count: 1,
            }],
        },
        ..Default::default()
    };
    let (held, second) = after_the_creating_runtime_shut_down(config, |a, b| async move {
        // The peer stays open throughout: only the wait may fail.
        let _peer = b;
        let held = a.alloc(1000).await;
        let second = a.alloc(1000).await.map(|b| b.len());
        (held.map(|b| b.len()), second)
    });
    assert_eq!(held.ok(), Some(1000));
    let message = io_message("second alloc", second);
    assert!(message.contains("runtime"), "{message}");
}
