//! Integrity: payloads and headers arrive as given; `max_payload` is exact.

use super::sizes;
use super::{err, join_err, settle_idle};
use crate::scenario::Cx;
use crate::util::{Check, Rng, check_pattern, fill_pattern, pattern};
use crate::{check_idle, ensure};
use bytes::Bytes;
use std::sync::Arc;
use transport_api::{Frame, FrameHeader, Transport, TransportError, TrySendError, TypedTransport};

/// A payload of every interesting size (0, 1, each declared boundary ±1, `max_payload`)
/// arrives with its length and every byte intact.
pub(crate) async fn integrity_sizes<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
    cx.step("B receives payloads of every boundary size");
    let sizes = sizes(&cx.caps, a.max_payload());
    let a = Arc::new(a);
    let sender = {
        let a = a.clone();
        let sizes = sizes.clone();
        cx.spawn(async move {
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
    settle_idle(&*a, &b, &cx).await
}

/// A random value of a header field `bits` wide, edge values (0, all ones, top bit) one time
/// in four.
fn field(rng: &mut Rng, bits: u32) -> u64 {
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    };
    match rng.below(8) {
        0 => 0,
        1 => mask,
        2 => 1 << (bits - 1),
        _ => rng.next_u64() & mask,
    }
}

fn random_header(rng: &mut Rng) -> FrameHeader {
    FrameHeader {
        msg_id: field(rng, 64),
        channel: field(rng, 32) as u32,
        method: field(rng, 32) as u32,
        flags: field(rng, 32) as u32,
        credit: field(rng, 32) as u32,
        deadline_ns: field(rng, 64),
    }
}

/// Names the header fields that differ.
fn header_diff(got: &FrameHeader, want: &FrameHeader) -> String {
    let mut d = Vec::new();
    macro_rules! cmp {
        ($($f:ident),*) => {$(
            if got.$f != want.$f {
                d.push(format!("{} {:#x} (sent {:#x})", stringify!($f), got.$f, want.$f));
            }
        )*};
    }
    cmp!(msg_id, channel, method, flags, credit, deadline_ns);
    d.join(", ")
}

/// Frames with random values in every header field, sent through `send`, `try_send` and
/// `alloc` buffers, arrive with the header exactly as given.
pub(crate) async fn header_fields<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
    let n = cx.n(20_000);
    let mut rng = cx.rng(30);
    let frames: Arc<Vec<(FrameHeader, usize, u8)>> = Arc::new(
        (0..n)
            .map(|_| {
                let len = [0, 1, 8, 40, 200, 3000][rng.below(6) as usize];
                (random_header(&mut rng), len, rng.below(3) as u8)
            })
            .collect(),
    );
    let a = Arc::new(a);
    cx.step(format!("sending {n} frames with random headers"));
    let sender = {
        let (a, frames) = (a.clone(), frames.clone());
        cx.spawn(async move {
            for (i, &(h, len, path)) in frames.iter().enumerate() {
                let what = format!("frame #{i} ({h:?})");
                let payload = pattern(len, i as u64);
                match path {
                    0 => a
                        .send(Frame::with_header(h, payload))
                        .await
                        .map_err(err(&what))?,
                    1 => match a.try_send(Frame::with_header(h, payload)) {
                        Ok(()) => {}
                        Err(TrySendError::Full(back)) => {
                            ensure!(
                                back.header == h,
                                "try_send handed back a frame with another header: {}",
                                header_diff(&back.header, &h)
                            );
                            a.send(back).await.map_err(err(&what))?
                        }
                        Err(TrySendError::Failed(e)) => return Err(format!("{what}: {e}")),
                    },
                    _ => {
                        let mut buf = a.alloc(len).await.map_err(err(&what))?;
                        ensure!(
                            buf.len() == len,
                            "alloc({len}) returned {} bytes",
                            buf.len()
                        );
                        buf.copy_from_slice(&payload);
                        a.send(Frame::with_header(h, buf))
                            .await
                            .map_err(err(&what))?
                    }
                }
            }
            Ok::<_, String>(())
        })
    };
    for (i, &(h, len, path)) in frames.iter().enumerate() {
        let f = b.recv().await.map_err(err(format!("recv of frame #{i}")))?;
        let via = ["send", "try_send", "an alloc buffer"][path as usize];
        ensure!(
            f.header == h,
            "frame #{i} (sent through {via}) arrived with a changed header: {}",
            header_diff(&f.header, &h)
        );
        ensure!(
            f.bytes().len() == len,
            "frame #{i}: sent {len} bytes, received {}",
            f.bytes().len()
        );
        check_pattern(f.bytes(), i as u64).map_err(|e| format!("frame #{i}: {e}"))?;
    }
    sender.await.map_err(join_err)??;
    settle_idle(&*a, &b, &cx).await
}

fn too_large(r: Result<(), TransportError>, path: &str, max: usize) -> Check {
    match r {
        Err(TransportError::PayloadTooLarge { len, max: m }) => {
            ensure!(
                len == max + 1 && m == max,
                "{path} of max_payload+1 = {} bytes: PayloadTooLarge carries len {len}, max {m}",
                max + 1
            );
            Ok(())
        }
        other => Err(format!(
            "{path} of max_payload+1 = {} bytes: expected PayloadTooLarge, got {other:?}",
            max + 1
        )),
    }
}

/// Receives one frame of `len` bytes with the pattern of `seed` and id `id`.
async fn recv_exact<T: Transport>(b: &T, what: &str, id: u64, len: usize, seed: u64) -> Check {
    let f = b.recv().await.map_err(err(format!("recv of {what}")))?;
    ensure!(
        f.header.msg_id == id && f.bytes().len() == len,
        "{what}: got frame #{} of {} bytes, want #{id} of {len}",
        f.header.msg_id,
        f.bytes().len()
    );
    check_pattern(f.bytes(), seed).map_err(|e| format!("{what}: {e}"))
}

/// A payload of exactly `max_payload` bytes goes through `send`, `try_send` and `alloc`; one
/// byte more is refused by each with `PayloadTooLarge` carrying both lengths, and the refusals
/// send, count and hold nothing.
pub(crate) async fn max_payload<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
    let max = a.max_payload();
    cx.step("sending max_payload bytes through send, try_send and alloc");
    a.send(Frame::new(pattern(max, 1)).msg_id(1))
        .await
        .map_err(err(format!("send of max_payload = {max} bytes")))?;
    recv_exact(&b, "the max_payload frame sent by send", 1, max, 1).await?;
    let mut f = Frame::new(pattern(max, 2)).msg_id(2);
    loop {
        match a.try_send(f) {
            Ok(()) => break,
            Err(TrySendError::Full(back)) => {
                f = back;
                tokio::task::yield_now().await;
            }
            Err(TrySendError::Failed(e)) => {
                return Err(format!("try_send of max_payload = {max} bytes: {e}"));
            }
        }
    }
    recv_exact(&b, "the max_payload frame sent by try_send", 2, max, 2).await?;
    let mut buf = a.alloc(max).await.map_err(err(format!("alloc({max})")))?;
    ensure!(
        buf.len() == max,
        "alloc(max_payload = {max}) returned {} bytes",
        buf.len()
    );
    fill_pattern(&mut buf, 3);
    a.send(Frame::new(buf).msg_id(3))
        .await
        .map_err(err("send of a max_payload alloc buffer"))?;
    recv_exact(&b, "the max_payload alloc buffer", 3, max, 3).await?;
    settle_idle(&a, &b, &cx).await?;

    cx.step("offering max_payload + 1 bytes to send, try_send and alloc");
    let before = a.stats();
    too_large(a.send(Frame::new(vec![7u8; max + 1])).await, "send", max)?;
    match a.try_send(Frame::new(vec![7u8; max + 1])) {
        Ok(()) => too_large(Ok(()), "try_send", max)?,
        Err(TrySendError::Failed(e)) => too_large(Err(e), "try_send", max)?,
        Err(TrySendError::Full(_)) => {
            return Err(format!(
                "try_send of max_payload+1 = {} bytes on an idle transport: Full, expected \
                 PayloadTooLarge",
                max + 1
            ));
        }
    }
    too_large(a.alloc(max + 1).await.map(drop), "alloc", max)?;
    for _ in 0..1000 {
        too_large(
            a.send(Frame::new(Bytes::from(vec![0u8; max + 1]))).await,
            "send (repeated)",
            max,
        )?;
    }
    let after = a.stats();
    ensure!(
        after.frames_sent == before.frames_sent && after.bytes_sent == before.bytes_sent,
        "refused frames were counted as sent: {before:?} then {after:?}"
    );
    check_idle("the sender after the refusals", &after)?;
    a.send(Frame::new(pattern(max, 5)).msg_id(5))
        .await
        .map_err(err("send of max_payload after the refusals"))?;
    recv_exact(&b, "the frame after the refusals", 5, max, 5).await?;
    ensure!(
        b.try_recv().map_err(err("try_recv"))?.is_none(),
        "a refused frame was delivered"
    );
    settle_idle(&a, &b, &cx).await
}

/// `send_msg`/`recv_msg` round-trip a value; an undecodable payload is a `Decode` error.
pub(crate) async fn typed_messages<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
    cx.step("a typed message round trip");
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
    settle_idle(&a, &b, &cx).await
}
