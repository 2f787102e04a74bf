//! Memory: `alloc` buffers, zero-copy sends and accounting.

use super::sizes;
use super::{err, join_err, settle_idle};
use crate::runner::Cx;
use crate::util::*;
use crate::{check_idle, ensure};
use std::sync::Arc;
use transport_api::{Frame, FrameHeader, Transport};

pub(crate) async fn zero_copy<T: Transport + 'static>(a: T, b: T, cx: Cx) -> Check {
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
