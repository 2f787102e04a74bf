//! Unit tests of `allocator`.

use crate::conformance::small_geometry;
use crate::{ShmConfig, pair};
use allocator_api2::vec::Vec;
use std::time::Duration;
use transport_api::{Frame, Transport};

fn cfg() -> ShmConfig {
    ShmConfig {
        geometry: small_geometry(),
        spin: Duration::ZERO,
        ..ShmConfig::default()
    }
}

#[tokio::test]
async fn vec_built_in_place_is_sent_without_copy() {
    let (a, b) = pair(cfg()).await.unwrap();
    let alloc = a.allocator();
    let mut v: Vec<u8, _> = Vec::with_capacity_in(10, alloc.clone());
    for i in 0..3000u32 {
        v.push(i as u8); // grows across classes: 256 B slot → 4 KiB slot
    }
    let before = a.stats();
    a.send(Frame::new(alloc.into_buf(v)).msg_id(5))
        .await
        .unwrap();
    let after = a.stats();
    assert_eq!(after.zero_copy_sends - before.zero_copy_sends, 1);
    let f = b.recv().await.unwrap();
    assert_eq!(f.header.msg_id, 5);
    assert!(f.bytes().iter().enumerate().all(|(i, &x)| x == i as u8));
    assert_eq!(f.bytes().len(), 3000);
    drop(f);
    assert!(a.stats().is_idle(), "{:?}", a.stats());
}

#[tokio::test]
async fn dropped_vectors_return_their_slots_and_exhaustion_is_an_error() {
    let (a, _b) = pair(cfg()).await.unwrap();
    let alloc = a.allocator();
    // The small geometry has 8 slots of 256 B.
    let held: std::vec::Vec<Vec<u8, _>> = (0..8)
        .map(|_| Vec::with_capacity_in(200, alloc.clone()))
        .collect();
    assert!(a.stats().buffer_bytes_in_use >= 8 * 256);
    assert_eq!(a.stats().slots_in_use, 8);
    let mut extra: Vec<u8, _> = Vec::new_in(alloc.clone());
    assert!(
        extra.try_reserve(200).is_err(),
        "a ninth 256-B slot cannot exist"
    );
    drop(held);
    assert!(extra.try_reserve(200).is_ok());
    drop(extra);
    assert!(a.stats().is_idle(), "{:?}", a.stats());
    let zero: Vec<u8, _> = Vec::new_in(alloc);
    drop(zero);
}

#[tokio::test]
async fn a_foreign_vector_is_copied() {
    let (a, b) = pair(cfg()).await.unwrap();
    let (c, _d) = pair(cfg()).await.unwrap();
    let mut v: Vec<u8, _> = Vec::new_in(c.allocator());
    v.extend_from_slice(&[7u8; 100]);
    let buf = a.allocator().into_buf(v);
    a.send(Frame::new(buf)).await.unwrap();
    assert_eq!(b.recv().await.unwrap().bytes(), &[7u8; 100][..]);
    assert!(c.stats().is_idle(), "the foreign vector's slot came back");
}
