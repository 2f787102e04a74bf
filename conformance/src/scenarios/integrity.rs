//! Integrity: payloads and headers arrive as given; `max_payload` is exact.

use super::sizes;
use super::{err, join_err, settle_idle};
use crate::runner::Cx;
use crate::util::*;
use crate::{check_idle, ensure};
use bytes::Bytes;
use std::sync::Arc;
use transport_api::{Frame, FrameHeader, Transport, TransportError, TrySendError, TypedTransport};

pub(crate) async fn integrity_sizes<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
    let sizes = sizes(&cx.caps, a.max_payload());
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
    settle_idle(&*a, &b, &cx).await
}

pub(crate) async fn too_large<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
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
    settle_idle(&a, &b, &cx).await
}

pub(crate) async fn typed_messages<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
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
