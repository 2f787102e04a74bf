//! A hostile peer scribbling over the shared segment while traffic flows.
//!
//! Each run makes a pair over one real memfd segment, streams frames from A to B (and acks back)
//! while a "peer" writes random values at random places — header words, ring indices and
//! parking flags, descriptors, completion entries and payload bytes. Then A closes. Every run
//! must end, within a hang guard, with normal progress or a typed error (`Corrupt`, `Closed`,
//! `PeerDied`) on each side: never a panic, an out-of-bounds access or a hang.
//!
//! `HOSTILE_SEEDS=<n>` (default 2000) sets the number of runs; `HOSTILE_SEED_BASE` the first seed.
//! The README documents a longer run.

use crate::conformance::small_geometry;
use crate::core::layout::Direction;
use crate::{ShmConfig, ShmTransport, pair};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use transport_api::{Frame, Transport, TransportError};

use transport_conformance::util::Rng;

/// Picks a word index to scribble over, biased towards control structures.
fn target(t: &ShmTransport, rng: &mut Rng) -> usize {
    let layout = t.segment().layout();
    let total_words = layout.total_len() / 8;
    let d = if rng.below(2) == 0 {
        Direction::AToB
    } else {
        Direction::BToA
    };
    let dl = layout.dir(d);
    let w = match rng.below(6) {
        0 => rng.below(32) as usize,
        1 => dl.desc_ring_offset / 8 + rng.below(16) as usize,
        2 => dl.desc_ring_offset / 8 + rng.below(dl.desc_ring_words as u64) as usize,
        3 => dl.completion_ring_offset / 8 + rng.below(dl.completion_ring_words as u64) as usize,
        _ => rng.below(total_words as u64) as usize,
    };
    w.min(total_words - 1)
}

fn value(rng: &mut Rng) -> u64 {
    match rng.below(5) {
        0 => 0,
        1 => rng.below(16),
        2 => u64::MAX - rng.below(4),
        3 => 1 << rng.below(64),
        _ => rng.next_u64(),
    }
}

fn ok_end(e: &TransportError) -> bool {
    matches!(
        e,
        TransportError::Corrupt { .. } | TransportError::Closed | TransportError::PeerDied
    )
}

/// Returns whether the receiver saw `Corrupt` (the scribbles were detected).
async fn one_run(seed: u64) -> Result<bool, String> {
    let mut rng = Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let cfg = ShmConfig {
        geometry: small_geometry(),
        spin: Duration::from_micros(2),
        // Half the runs with the peer's payloads read-only, half without.
        read_only_payloads: seed % 2 == 1,
        ..ShmConfig::default()
    };
    let (a, b) = pair(cfg).await.map_err(|e| format!("pair: {e}"))?;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let sender = {
        let a = a.clone();
        tokio::spawn(async move {
            let sizes = [0usize, 8, 16, 17, 200, 256, 257, 3000, 5000, 70_000];
            for i in 0..400u64 {
                let len = sizes[i as usize % sizes.len()];
                let r = if i % 3 == 0 {
                    match a.alloc(len).await {
                        Ok(mut buf) => {
                            buf.fill(i as u8);
                            a.send(Frame::new(buf).msg_id(i)).await
                        }
                        Err(e) => Err(e),
                    }
                } else {
                    a.send(Frame::new(vec![i as u8; len]).msg_id(i)).await
                };
                if let Err(e) = r {
                    return Some(e);
                }
                // Answers from B keep the other direction busy too.
                if let Ok(Some(_)) = a.try_recv() {}
            }
            None
        })
    };
    let receiver = {
        let b = b.clone();
        tokio::spawn(async move {
            loop {
                match b.recv().await {
                    Ok(f) => {
                        // Content may be scribbled; only touch every byte and answer.
                        let _sum: u64 = f.bytes().iter().map(|&x| u64::from(x)).sum();
                        let _ = b.try_send(Frame::new(f.into_bytes()));
                    }
                    Err(e) => return e,
                }
            }
        })
    };
    // Each end maps the other's payload memory read-only, so a word there is written through
    // the mapping of the end that owns it (as the peer would), everything else through A's.
    let words = |t: &ShmTransport| {
        t.segment()
            .mapping()
            .words(0, t.segment().layout().total_len() / 8)
            .map_err(|e| e.to_string())
    };
    let (words_a, words_b) = (words(&a)?, words(&b)?);
    let a_read_only = a.segment().mapping().read_only().unwrap_or_default();
    let writes = 1 + rng.below(40);
    for _ in 0..writes {
        let w = target(&a, &mut rng);
        let words = if a_read_only.contains(&(w * 8)) {
            &words_b
        } else {
            &words_a
        };
        words[w].store(value(&mut rng), Ordering::Relaxed);
        for _ in 0..rng.below(50) {
            tokio::task::yield_now().await;
        }
    }
    a.close();
    let guard = Duration::from_secs(20);
    let se = tokio::time::timeout(guard, sender)
        .await
        .map_err(|_| format!("seed {seed}: the sender hung after close"))?
        .map_err(|e| format!("seed {seed}: the sender panicked: {e}"))?;
    if let Some(e) = &se {
        if !ok_end(e) {
            return Err(format!(
                "seed {seed}: sender ended with unexpected error {e:?}"
            ));
        }
    }
    let re = tokio::time::timeout(guard, receiver)
        .await
        .map_err(|_| format!("seed {seed}: the receiver hung after the peer closed"))?
        .map_err(|e| format!("seed {seed}: the receiver panicked: {e}"))?;
    if !ok_end(&re) {
        return Err(format!(
            "seed {seed}: receiver ended with unexpected error {re:?}"
        ));
    }
    // Both endpoints still answer (no poisoned state, no panic) after the session ended.
    let _ = a.stats();
    let _ = b.stats();
    drop(b);
    Ok(matches!(re, TransportError::Corrupt { .. })
        || matches!(se, Some(TransportError::Corrupt { .. })))
}

#[test]
fn hostile_peer_scribbles_never_panic_or_hang() {
    let seeds: u64 = std::env::var("HOSTILE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let base: u64 = std::env::var("HOSTILE_SEED_BASE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut detected = 0;
    for seed in base..base + seeds {
        if rt.block_on(one_run(seed)).unwrap_or_else(|e| panic!("{e}")) {
            detected += 1;
        }
    }
    eprintln!("{detected} of {seeds} runs ended with Corrupt; the others ended normally");
    // Random scribbles over rings and descriptors must be caught in a good share of runs;
    // if none were, validation is not running at all.
    if seeds >= 50 {
        assert!(
            detected > 0,
            "no run detected corruption: validation is not exercised"
        );
        assert!(
            detected < seeds,
            "every run ended in Corrupt: traffic never flowed cleanly"
        );
    }
}
