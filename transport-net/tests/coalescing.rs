//! Sends that commit together share one write: the first lets the others commit, then writes
//! them all. These tests check what that must never cost: a frame, or a send left waiting.

//! (The case of a leading send dropped before its write is a unit test of the session
//! module, which can hold a send in progress for it.)

use transport_api::{Frame, Transport};
use transport_net::NetConfig;

/// Many tasks sending at once on a current-thread runtime: every frame arrives once, in each
/// sender's order, and every send returns.
#[tokio::test(flavor = "current_thread")]
async fn concurrent_sends_on_one_thread_all_arrive_in_order() {
    const TASKS: u32 = 8;
    const EACH: u64 = 500;
    let (a, b) = transport_net::unix_pair(&NetConfig::default())
        .await
        .unwrap();
    let a = std::sync::Arc::new(a);
    let tasks: Vec<_> = (0..TASKS)
        .map(|s| {
            let a = a.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    a.send(
                        Frame::new(vec![s as u8; 1 + (i % 100) as usize])
                            .channel(s)
                            .msg_id(i),
                    )
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    let mut next = vec![0u64; TASKS as usize];
    for _ in 0..u64::from(TASKS) * EACH {
        let f = b.recv().await.unwrap();
        let s = f.header.channel as usize;
        assert_eq!(f.header.msg_id, next[s], "sender {s}");
        assert_eq!(f.bytes(), &vec![s as u8; 1 + (next[s] % 100) as usize][..]);
        next[s] += 1;
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(a.stats().frames_sent, u64::from(TASKS) * EACH);
}
