//! Sends that commit together share one write: the first lets the others commit, then writes
//! them all. These tests check what that must never cost: a frame, or a send left waiting.

use std::pin::pin;
use std::task::{Context, Poll, Waker};
use transport_api::{Frame, Transport, TransportError};
use transport_net::NetConfig;

fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

/// The send that was to write the queue is dropped before it did: its own frame is taken
/// back (none of it was written), and the frame another send committed meanwhile still goes
/// out, so that send completes.
#[tokio::test(flavor = "current_thread")]
async fn a_leading_send_dropped_before_its_write_leaves_the_others_going_out() {
    // Keep-alives every 15 minutes: the writer task does not happen to write the queue.
    let cfg = NetConfig {
        keepalive: std::time::Duration::from_secs(3600),
        ..NetConfig::default()
    };
    let (a, b) = transport_net::unix_pair(&cfg).await.unwrap();
    // A first frame each way, so that both writer tasks have run and wait for their timers.
    a.send(Frame::new(vec![0u8; 1])).await.unwrap();
    b.recv().await.unwrap();
    b.send(Frame::new(vec![0u8; 1])).await.unwrap();
    a.recv().await.unwrap();
    let mut lead = Box::pin(a.send(Frame::new(vec![1u8; 10]).msg_id(1)));
    assert!(
        poll_once(lead.as_mut()).is_pending(),
        "the first send yields once"
    );
    let mut follower = pin!(a.send(Frame::new(vec![2u8; 10]).msg_id(2)));
    assert!(
        poll_once(follower.as_mut()).is_pending(),
        "a later send leaves the write to the first"
    );
    drop(lead);
    tokio::time::timeout(std::time::Duration::from_secs(20), follower)
        .await
        .expect("the other send was left waiting for a write nobody makes")
        .unwrap();
    let f = b.recv().await.unwrap();
    assert_eq!((f.header.msg_id, f.bytes()), (2, &[2u8; 10][..]));
    a.close();
    assert!(matches!(b.recv().await, Err(TransportError::Closed)));
    assert_eq!(a.stats().frames_sent, 2);
}

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
