//! The write sharing of [`NetTransport::send`], where it depends on sends in progress.

use super::*;
use crate::listener::unix_pair;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

/// Keep-alives every 15 minutes: the writer task does not happen to write the queue.
fn quiet() -> NetConfig {
    NetConfig {
        keepalive: Duration::from_secs(3600),
        ..NetConfig::default()
    }
}

/// Sessions whose writer tasks have both run once and wait for their timers.
async fn warm_pair() -> (NetTransport, NetTransport) {
    let (a, b) = unix_pair(&quiet()).await.unwrap();
    a.send(Frame::new(vec![0u8; 1])).await.unwrap();
    b.recv().await.unwrap();
    b.send(Frame::new(vec![0u8; 1])).await.unwrap();
    a.recv().await.unwrap();
    (a, b)
}

/// A task sending alone writes at once: its first poll completes the send.
#[tokio::test(flavor = "current_thread")]
async fn a_lone_send_writes_on_its_first_poll() {
    let (a, b) = warm_pair().await;
    let send = pin!(a.send(Frame::new(vec![1u8; 10]).msg_id(1)));
    assert!(matches!(poll_once(send), Poll::Ready(Ok(()))));
    let f = b.recv().await.unwrap();
    assert_eq!((f.header.msg_id, f.bytes()), (1, &[1u8; 10][..]));
}

/// The send that was to write the queue is dropped before it did: its own frame is taken
/// back (none of it was written), and the frame another send committed meanwhile still goes
/// out, so that send completes.
#[tokio::test(flavor = "current_thread")]
async fn a_leading_send_dropped_before_its_write_leaves_the_others_going_out() {
    let (a, b) = warm_pair().await;
    // Another task's send in progress: the first send to commit lets others commit first.
    let other = Sending::enter(&a.shared.sending);
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
    drop(other);
    drop(lead);
    tokio::time::timeout(Duration::from_secs(20), follower)
        .await
        .expect("the other send was left waiting for a write nobody makes")
        .unwrap();
    let f = b.recv().await.unwrap();
    assert_eq!((f.header.msg_id, f.bytes()), (2, &[2u8; 10][..]));
    a.close();
    assert!(matches!(b.recv().await, Err(TransportError::Closed)));
    assert_eq!(a.stats().frames_sent, 2);
}

/// A task sending alone in a loop yields to the scheduler once every `PROBE_EVERY` sends (so
/// that tasks sending in loops of their own find each other, and the loop does not hold its
/// thread for good), and otherwise completes each send on its first poll.
#[tokio::test(flavor = "current_thread")]
async fn a_lone_sender_probes_for_others_once_every_probe_every_sends() {
    let (a, b) = warm_pair().await;
    let n = 3 * crate::shared::PROBE_EVERY;
    let mut yielded = Vec::new();
    for i in 0..n {
        let mut send = pin!(a.send(Frame::new(vec![3u8; 10]).msg_id(u64::from(i))));
        if poll_once(send.as_mut()).is_pending() {
            yielded.push(i);
            send.await.unwrap();
        }
        assert_eq!(b.recv().await.unwrap().header.msg_id, u64::from(i));
    }
    // The warm-up's send was the first lone leading write.
    let every = crate::shared::PROBE_EVERY;
    let expected: Vec<u32> = (0..n).filter(|i| (i + 2) % every == 0).collect();
    assert_eq!(yielded, expected);
}
