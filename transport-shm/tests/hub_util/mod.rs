//! Helpers shared by the hub's integration tests: a small geometry and configurations,
//! numbered frames and their check, hang guards, unique socket paths, binding and attaching.
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use transport_api::Frame;
use transport_shm::{Geometry, HubConfig, HubHost, PeerId, ShmTransport, SlotClass};

/// Hang guard for every test.
pub(crate) const GUARD: Duration = Duration::from_secs(30);

pub(crate) fn sock_path(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "transport-shm-hub-test-{tag}-{}-{}.sock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

pub(crate) fn geometry() -> Geometry {
    Geometry {
        ring_capacity: 32,
        classes: vec![
            SlotClass {
                slot_size: 256,
                slot_count: 32,
            },
            SlotClass {
                slot_size: 4096,
                slot_count: 16,
            },
            SlotClass {
                slot_size: 64 << 10,
                slot_count: 4,
            },
        ],
    }
}

pub(crate) fn config(max_peers: usize) -> HubConfig {
    HubConfig {
        max_peers,
        geometry: geometry(),
        ..HubConfig::default()
    }
}

/// A hub whose connecting peers wait for a region while all are busy (instead of being
/// refused at once, the default).
pub(crate) fn waiting_config(max_peers: usize) -> HubConfig {
    HubConfig {
        wait: Duration::from_secs(60),
        ..config(max_peers)
    }
}

pub(crate) fn byte(seq: u64, tag: u32, i: usize) -> u8 {
    (seq.wrapping_mul(31) ^ u64::from(tag).wrapping_mul(0x9e37) ^ (i as u64).wrapping_mul(7)) as u8
}

/// Frame `seq` of stream `tag`: `len` bytes (at least 8), sequence number first.
pub(crate) fn numbered(seq: u64, tag: u32, len: usize) -> Frame {
    let len = len.max(8);
    let mut p: Vec<u8> = (0..len).map(|i| byte(seq, tag, i)).collect();
    p[..8].copy_from_slice(&seq.to_le_bytes());
    Frame::new(p).msg_id(seq).channel(tag)
}

pub(crate) fn check(f: &Frame, seq: u64, tag: u32) -> Result<(), String> {
    let b = f.bytes();
    if f.header.msg_id != seq || f.header.channel != tag {
        return Err(format!(
            "stream {tag}: expected frame #{seq}, got #{} of stream {}",
            f.header.msg_id, f.header.channel
        ));
    }
    if b.len() < 8 || b[..8] != seq.to_le_bytes() {
        return Err(format!("stream {tag} frame #{seq}: bad sequence bytes"));
    }
    if let Some(i) = (8..b.len()).find(|&i| b[i] != byte(seq, tag, i)) {
        return Err(format!(
            "stream {tag} frame #{seq}: byte {i} of {} corrupted",
            b.len()
        ));
    }
    Ok(())
}

pub(crate) async fn guard<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: hang guard of {GUARD:?} expired"),
    }
}

/// Yields until `cond` holds (hang-guarded).
pub(crate) async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    guard(what, async {
        while !cond() {
            tokio::task::yield_now().await;
        }
    })
    .await
}

pub(crate) fn bind(tag: &str, cfg: HubConfig) -> (Arc<HubHost>, PathBuf) {
    let path = sock_path(tag);
    (Arc::new(HubHost::bind(&path, cfg).unwrap()), path)
}

/// Connects a peer and accepts it: (id, host side, peer side).
pub(crate) async fn attach(
    hub: &HubHost,
    path: &PathBuf,
) -> (PeerId, Arc<ShmTransport>, ShmTransport) {
    let (accepted, peer) = tokio::join!(hub.accept(), transport_shm::connect(path));
    let (id, host) = accepted.unwrap();
    (id, host, peer.unwrap())
}
