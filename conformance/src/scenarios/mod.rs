//! In-process scenarios: each runs on a connected pair from [`Backend::pair`] (endpoints `A`
//! and `B`), some also through the boxed, object-safe transport. One file per contract clause;
//! the [clause table](crate::clauses) lists which scenario checks what.

mod close;
mod delivery;
mod integrity;
mod memory;
mod mixed;
mod waiting;

use crate::scenario::{Cx, Scenario, probed_pair};
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
        "exactly_once_try_send_try_recv" => (PairOptions::DEFAULT, mixed::try_paths_only, boxed: true),
        "random_interleavings_mixed_paths" => (PairOptions::SMALL, mixed::random_interleavings, boxed: false),
        // Integrity: payloads and headers as given.
        "integrity_payload_sizes" => (PairOptions::DEFAULT, integrity::integrity_sizes, boxed: true),
        "header_fields_round_trip" => (PairOptions::DEFAULT, integrity::header_fields, boxed: true),
        "max_payload_exact_and_one_over" => (PairOptions::DEFAULT, integrity::max_payload, boxed: false),
        "typed_messages" => (PairOptions::DEFAULT, integrity::typed_messages, boxed: false),
        // Waiting: backpressure and cancellation.
        "backpressure_send_waits_try_send_full" => (PairOptions::SMALL, waiting::backpressure, boxed: true),
        "cancellation_dropped_futures" => (PairOptions::SMALL, waiting::cancellation, boxed: false),
        // Closing.
        "close_wakes_local_waiters" => (PairOptions::SMALL, close::close_wakes_local_waiters, boxed: false),
        "close_peer_drains_then_closed" => (PairOptions::DEFAULT, close::close_peer_drains, boxed: false),
        "close_wakes_blocked_peer_recv" => (PairOptions::DEFAULT, close::close_wakes_blocked_peer_recv, boxed: false),
        "drop_without_close_peer_drains" => (PairOptions::DEFAULT, close::drop_without_close, boxed: false),
        "peer_drop_races_concurrent_sends" => (PairOptions::SMALL, close::peer_drop_races_sends, boxed: false),
    );
    // Makes its own pairs: one per round.
    t.push(Scenario::new(
        "close_races_concurrent_sends",
        false,
        |b: Arc<B>, cx: Cx| Box::pin(close::close_races_sends(b, cx)),
    ));
    pair_scenarios!(t,
        // Memory and accounting.
        "zero_copy_alloc_buffers" => (PairOptions::DEFAULT, memory::zero_copy, boxed: false),
        "alloc_dropped_unsent_returns_memory" => (PairOptions::SMALL, memory::alloc_dropped_unsent, boxed: false),
        "stats_counters_match_traffic" => (PairOptions::DEFAULT, memory::stats_counters, boxed: true),
    );
    t
}

/// Random bytes that [`tagged`] payloads are cut from (copying and comparing them is cheap,
/// so the large scenarios check every byte of every frame).
fn tag_block() -> &'static [u8] {
    static BLOCK: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BLOCK.get_or_init(|| crate::util::pattern(TAG_MAX_LEN + 256, 0x7A66))
}

/// Longest payload [`tagged`] makes.
pub(crate) const TAG_MAX_LEN: usize = 8192;

/// The payload of frame `s`/`i` of `len` bytes: a slice of [`tag_block`] at an offset keyed
/// by both, so a frame's payload differs from its neighbours'.
fn tag_payload(s: u32, i: u64, len: usize) -> &'static [u8] {
    let off = ((u64::from(s) * 131 + i * 7) % 256) as usize;
    &tag_block()[off..off + len]
}

/// A frame from sender `s`, number `i`: `channel` = `s`, `msg_id` = `i`, `method` = payload
/// length (at most [`TAG_MAX_LEN`]), payload keyed by both.
pub(crate) fn tagged(s: u32, i: u64, len: usize) -> transport_api::Frame {
    let len = len.min(TAG_MAX_LEN);
    transport_api::Frame::new(bytes::Bytes::copy_from_slice(tag_payload(s, i, len)))
        .channel(s)
        .msg_id(i)
        .method(len as u32)
}

/// Checks a frame made by [`tagged`] (length and content) and returns its sender and number.
pub(crate) fn check_tagged(f: &transport_api::Frame) -> Result<(u32, u64), String> {
    let (s, i) = (f.header.channel, f.header.msg_id);
    let len = f.header.method as usize;
    ensure!(
        f.bytes().len() == len,
        "frame {s}/#{i}: sent {len} bytes, received {}",
        f.bytes().len()
    );
    ensure!(
        len <= TAG_MAX_LEN,
        "frame {s}/#{i}: header says {len} bytes"
    );
    let want = tag_payload(s, i, len);
    if f.bytes() != want {
        let at = f
            .bytes()
            .iter()
            .zip(want)
            .position(|(x, y)| x != y)
            .unwrap_or(0);
        return Err(format!(
            "frame {s}/#{i}: payload of {len} bytes differs at byte {at}: got {:#04x}, want {:#04x}",
            f.bytes()[at],
            want[at]
        ));
    }
    Ok((s, i))
}

/// Checks that one receiver saw each sender's frames in increasing order.
#[derive(Default)]
pub(crate) struct OrderCheck(std::collections::HashMap<u32, u64>);

impl OrderCheck {
    pub(crate) fn see(&mut self, who: &str, s: u32, i: u64) -> Check {
        if let Some(prev) = self.0.insert(s, i) {
            ensure!(
                i > prev,
                "{who}: sender {s}'s frame #{i} arrived after its frame #{prev}"
            );
        }
        Ok(())
    }
}

/// Compares what each sender had accepted (`ok[s]`: the numbers whose send returned `Ok`) with
/// what arrived (`got`, from every receiver): each accepted frame exactly once, nothing else.
pub(crate) fn check_exactly_once(ok: &[Vec<u64>], got: &[(u32, u64)]) -> Check {
    let mut per: Vec<Vec<u64>> = vec![Vec::new(); ok.len()];
    for &(s, i) in got {
        ensure!(
            (s as usize) < ok.len(),
            "a frame from unknown sender {s} (#{i}) arrived"
        );
        per[s as usize].push(i);
    }
    let mut problems = Vec::new();
    for (s, (want, have)) in ok.iter().zip(&mut per).enumerate() {
        let want: BTreeSet<u64> = want.iter().copied().collect();
        have.sort_unstable();
        let dups: Vec<u64> = have
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect();
        let have: BTreeSet<u64> = have.iter().copied().collect();
        let lost: Vec<u64> = want.difference(&have).copied().collect();
        let extra: Vec<u64> = have.difference(&want).copied().collect();
        for (what, v) in [
            ("accepted (Ok) but never delivered", &lost),
            ("delivered twice", &dups),
            ("delivered although its send did not return Ok", &extra),
        ] {
            if !v.is_empty() {
                problems.push(format!(
                    "sender {s}: {} frame(s) {what} (first #{}, of {} accepted)",
                    v.len(),
                    v[0],
                    want.len()
                ));
            }
        }
    }
    ensure!(problems.is_empty(), "{}", problems.join("; "));
    Ok(())
}
