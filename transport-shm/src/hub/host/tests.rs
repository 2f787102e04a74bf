//! Unit tests of `host`.

use super::*;
use crate::core::layout::{Geometry, Side};
use crate::core::sync::Ordering;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_peer_maps_a_region_of_its_own_that_the_host_sees() {
    let path = std::env::temp_dir().join(format!(
        "transport-shm-hub-unit-{}.sock",
        std::process::id()
    ));
    let geometry = Geometry {
        ring_capacity: 8,
        classes: vec![crate::core::layout::SlotClass {
            slot_size: 256,
            slot_count: 8,
        }],
    };
    let hub = HubHost::bind(
        &path,
        HubConfig {
            max_peers: 3,
            geometry,
            ..HubConfig::default()
        },
    )
    .unwrap();
    let mut peers = Vec::new();
    for i in 0..3 {
        let (accepted, peer) = tokio::join!(hub.accept(), crate::connect(&path));
        let ((id, host), peer) = (accepted.unwrap(), peer.unwrap());
        assert_eq!(id.region(), i);
        // The peer's mapping is exactly its region, a whole number of pages.
        assert_eq!(peer.segment().mapping().len(), hub.region_len());
        assert_eq!(hub.region_len() % sys::page_size(), 0);
        assert_eq!(host.segment().layout(), peer.segment().layout());
        // The host's view of the region is the peer's mapping: same bytes.
        peer.segment().header()[Side::B.pid_word()].store(4242 + i as u64, Ordering::Relaxed);
        assert_eq!(
            hub.shared.peer_header_word(i, Side::B.pid_word()),
            4242 + i as u64
        );
        assert_eq!(
            host.segment().side_state(Side::B).pid,
            Some(4242 + i as i32)
        );
        peers.push((host, peer));
    }
    // The pid the hub reports comes from the kernel (the peers are this process here).
    assert!(
        hub.peers()
            .iter()
            .all(|p| p.pid == Some(sys::current_pid()))
    );
    let uid = rustix::process::geteuid().as_raw();
    assert!(hub.peers().iter().all(|p| p.uid == Some(uid)));
}

#[test]
fn handles_are_send_and_sync() {
    fn is<T: Send + Sync>() {}
    is::<HubHost>();
    is::<HubPeer>();
}
