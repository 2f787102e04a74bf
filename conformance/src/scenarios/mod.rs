//! In-process scenarios: each runs on a connected pair from [`Backend::pair`] (endpoints `A`
//! and `B`), some also through the boxed, object-safe transport. One file per contract clause;
//! the [clause table](crate::clauses) lists which scenario checks what.

mod close;
mod delivery;
mod integrity;
mod memory;
mod waiting;

use crate::runner::{Cx, Scenario, probed_pair};
use crate::util::{Check, check_numbered, numbered};
use crate::{Backend, Capabilities, PairOptions, check_idle, ensure};
use std::collections::BTreeSet;
use std::sync::Arc;
use transport_api::{BoxTransport, Transport, TransportError, TrySendError};

pub(crate) fn err(what: impl std::fmt::Display) -> impl FnOnce(TransportError) -> String {
    move |e| format!("{what}: {e}")
}

pub(crate) fn join_err(e: tokio::task::JoinError) -> String {
    format!("a scenario task panicked or was cancelled: {e}")
}

/// Waits until both endpoints are idle (stats may settle asynchronously on some backends),
/// then checks it.
pub(crate) async fn settle_idle<T: Transport>(a: &T, b: &T, cx: &Cx) -> Check {
    let _ = cx
        .wait_until("both endpoints are idle", || {
            a.stats().is_idle() && b.stats().is_idle()
        })
        .await;
    check_idle("endpoint A", &a.stats())?;
    check_idle("endpoint B", &b.stats())
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

/// `try_send`s numbered frames of `len` bytes until the transport is `Full`; checks the frame
/// handed back is the one offered and returns how many were sent.
pub(crate) async fn fill_until_full<T: Transport>(a: &T, len: usize) -> Result<u64, String> {
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

macro_rules! pair_scenarios {
    ($list:ident, $( $name:literal => ($opts:expr, $f:path, boxed: $boxed:literal) ),* $(,)?) => {$(
        $list.push(Scenario::new($name, false, |b: Arc<B>, cx: Cx| Box::pin(async move {
            let (x, y) = probed_pair(&*b, $opts, &cx).await?;
            $f(x, y, cx).await
        })));
        if $boxed {
            $list.push(Scenario::new(concat!("boxed_", $name), false, |b: Arc<B>, cx: Cx| {
                Box::pin(async move {
                    let (x, y) = probed_pair(&*b, $opts, &cx).await?;
                    let (x, y): (BoxTransport, BoxTransport) = (Box::new(x), Box::new(y));
                    $f(x, y, cx).await
                })
            }));
        }
    )*};
}

/// Every in-process scenario, in suite order.
pub(crate) fn list<B: Backend>() -> Vec<Scenario<B>> {
    let mut t = Vec::new();
    pair_scenarios!(t,
        // Delivery: order and exactly-once.
        "ordering_single_channel_100k" => (PairOptions::DEFAULT, delivery::ordering_single_channel, boxed: true),
        "ordering_interleaved_64_channels" => (PairOptions::DEFAULT, delivery::ordering_interleaved, boxed: false),
        "concurrency_8_senders_2_receivers" => (PairOptions::DEFAULT, delivery::concurrency, boxed: false),
        // Integrity: payloads and headers as given.
        "integrity_payload_sizes" => (PairOptions::DEFAULT, integrity::integrity_sizes, boxed: true),
        "payload_too_large_consumes_nothing" => (PairOptions::DEFAULT, integrity::too_large, boxed: false),
        "typed_messages" => (PairOptions::DEFAULT, integrity::typed_messages, boxed: false),
        // Waiting: backpressure and cancellation.
        "backpressure_send_waits_try_send_full" => (PairOptions::SMALL, waiting::backpressure, boxed: true),
        "cancellation_dropped_futures" => (PairOptions::SMALL, waiting::cancellation, boxed: false),
        // Closing.
        "close_wakes_local_waiters" => (PairOptions::SMALL, close::close_wakes_local_waiters, boxed: false),
        "close_peer_drains_then_closed" => (PairOptions::DEFAULT, close::close_peer_drains, boxed: false),
        "drop_without_close_peer_drains" => (PairOptions::DEFAULT, close::drop_without_close, boxed: false),
        // Memory and accounting.
        "zero_copy_alloc_buffers" => (PairOptions::DEFAULT, memory::zero_copy, boxed: false),
    );
    t
}
