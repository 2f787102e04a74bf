//! `FrameStream` and `FrameSink` over the reference backend: order, end of stream, backpressure
//! through `poll_ready`, and what cancellation and drop do.

use futures_core::{FusedStream, Stream};
use futures_sink::Sink;
use std::future::poll_fn;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use transport_api::{Frame, FrameSink, FrameStream, Transport, TransportError};
use transport_mem::{MemConfig, MemTransport, pair};

/// A waker that counts its wake-ups, to poll by hand and see whether a wait was woken.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting() -> (Arc<CountingWaker>, Waker) {
    let w = Arc::new(CountingWaker::default());
    (w.clone(), Waker::from(w))
}

/// A session whose directions hold one frame each.
fn tight_pair() -> (MemTransport, MemTransport) {
    pair(MemConfig {
        capacity: 1,
        ..MemConfig::default()
    })
}

async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

fn ids(frames: &[Frame]) -> Vec<u64> {
    frames.iter().map(|f| f.header.msg_id).collect()
}

/// Everything the transport holds right now.
fn drain(t: &MemTransport) -> Vec<Frame> {
    std::iter::from_fn(|| t.try_recv().unwrap()).collect()
}

#[tokio::test]
async fn stream_yields_in_order_then_ends_when_the_peer_closes() {
    let (a, b) = pair(MemConfig::default());
    let mut frames = FrameStream::new(&b);
    let sender = async {
        for i in 0..100 {
            a.send(Frame::new(vec![i as u8; i]).msg_id(i as u64))
                .await
                .unwrap();
        }
        a.close();
    };
    let receiver = async {
        let mut got = Vec::new();
        while let Some(f) = next(&mut frames).await {
            got.push(f.unwrap());
        }
        got
    };
    let ((), got) = tokio::join!(sender, receiver);
    assert_eq!(ids(&got), (0..100).collect::<Vec<_>>());
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, f)| f.bytes() == vec![i as u8; i])
    );
    assert!(frames.is_terminated());
    assert!(
        next(&mut frames).await.is_none(),
        "a fused stream stays ended"
    );
}

#[tokio::test]
async fn stream_over_an_arc_moves_into_a_task() {
    let (a, b) = pair(MemConfig::default());
    let mut frames = FrameStream::new(Arc::new(b));
    let task = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(item) = next(&mut frames).await {
            got.push(item.map(|f| f.header.msg_id));
        }
        got
    });
    a.send(Frame::new("x").msg_id(9)).await.unwrap();
    drop(a); // a dropped peer ends the stream after its frames (`Closed`)
    let got = task.await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(matches!(got[0], Ok(9)));
}

#[tokio::test]
async fn adapters_work_over_a_boxed_transport() {
    let (a, b) = pair(MemConfig::default());
    let (a, b): (transport_api::BoxTransport, transport_api::BoxTransport) =
        (Box::new(a), Box::new(b));
    let mut sink = pin!(FrameSink::new(&a));
    sink.as_mut()
        .start_send(Frame::new("boxed").msg_id(3))
        .unwrap();
    poll_fn(|cx| sink.as_mut().poll_close(cx)).await.unwrap();
    let mut frames = FrameStream::new(&b);
    assert_eq!(next(&mut frames).await.unwrap().unwrap().header.msg_id, 3);
    assert!(next(&mut frames).await.is_none());
}

#[tokio::test]
async fn dropping_a_waiting_stream_consumes_no_frame() {
    let (a, b) = pair(MemConfig::default());
    let (woken, waker) = counting();
    let mut cx = Context::from_waker(&waker);
    {
        let mut frames = pin!(FrameStream::new(&b));
        assert!(frames.as_mut().poll_next(&mut cx).is_pending());
        a.send(Frame::new("first").msg_id(1)).await.unwrap();
        assert!(
            woken.0.load(Ordering::SeqCst) > 0,
            "the waiting stream was not woken"
        );
        // Dropped while its recv is pending, after the frame arrived.
    }
    {
        // A `select!` that abandons the stream's branch behaves the same.
        let mut frames = FrameStream::new(&b);
        tokio::select! {
            biased;
            () = std::future::ready(()) => {}
            _ = next(&mut frames) => panic!("the ready branch is polled first"),
        }
    }
    a.send(Frame::new("second").msg_id(2)).await.unwrap();
    assert_eq!(ids(&drain(&b)), [1, 2], "a cancelled wait consumed a frame");
}

#[tokio::test]
async fn sink_applies_backpressure_through_poll_ready() {
    let (a, b) = tight_pair();
    let (woken, waker) = counting();
    let mut cx = Context::from_waker(&waker);
    let mut sink = pin!(FrameSink::new(&a));

    assert!(sink.as_mut().poll_ready(&mut cx).is_ready());
    sink.as_mut().start_send(Frame::new("a").msg_id(1)).unwrap();
    assert!(!sink.has_pending(), "there was room: sent at once");
    assert!(matches!(
        sink.as_mut().poll_ready(&mut cx),
        Poll::Ready(Ok(()))
    ));
    sink.as_mut().start_send(Frame::new("b").msg_id(2)).unwrap();
    assert!(sink.has_pending(), "no room: the sink keeps the frame");
    // Backpressure: not ready, and flushing waits too, until the receiver makes room.
    assert!(sink.as_mut().poll_ready(&mut cx).is_pending());
    assert!(sink.as_mut().poll_flush(&mut cx).is_pending());
    assert_eq!(woken.0.load(Ordering::SeqCst), 0);

    assert_eq!(b.recv().await.unwrap().header.msg_id, 1);
    assert!(
        woken.0.load(Ordering::SeqCst) > 0,
        "making room did not wake the sink"
    );
    assert!(matches!(
        sink.as_mut().poll_ready(&mut cx),
        Poll::Ready(Ok(()))
    ));
    assert!(!sink.has_pending());
    assert_eq!(ids(&drain(&b)), [2]);
}

#[tokio::test]
async fn sink_keeps_order_under_sustained_backpressure_and_close_closes() {
    let (a, b) = tight_pair();
    let receiver = async {
        let mut got = Vec::new();
        loop {
            match b.recv().await {
                Ok(f) => got.push(f),
                Err(TransportError::Closed) => return got,
                Err(e) => panic!("{e}"),
            }
        }
    };
    let sender = async {
        let mut sink = pin!(FrameSink::new(&a));
        for i in 0..200u64 {
            poll_fn(|cx| sink.as_mut().poll_ready(cx)).await.unwrap();
            sink.as_mut().start_send(Frame::new("m").msg_id(i)).unwrap();
        }
        poll_fn(|cx| sink.as_mut().poll_close(cx)).await.unwrap();
    };
    let (got, ()) = tokio::join!(receiver, sender);
    assert_eq!(ids(&got), (0..200).collect::<Vec<_>>());
    assert!(a.stats().send_waits > 0, "the test never waited for room");
}

#[tokio::test]
async fn a_held_frame_goes_straight_in_once_there_is_room() {
    let (a, b) = tight_pair();
    let mut sink = pin!(FrameSink::new(&a));
    sink.as_mut().start_send(Frame::new("a").msg_id(1)).unwrap();
    sink.as_mut().start_send(Frame::new("b").msg_id(2)).unwrap();
    assert_eq!(b.recv().await.unwrap().header.msg_id, 1);
    // Room appeared before the sink was polled: the first poll moves the frame in.
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(
        sink.as_mut().poll_flush(&mut cx),
        Poll::Ready(Ok(()))
    ));
    assert!(!sink.has_pending());
    assert_eq!(ids(&drain(&b)), [2]);
    assert_eq!(a.stats().send_waits, 0, "nothing waited");
}

#[tokio::test]
async fn start_send_without_poll_ready_queues_behind_the_pending_frame() {
    let (a, b) = tight_pair();
    let mut sink = pin!(FrameSink::new(&a));
    for i in 0..3 {
        sink.as_mut().start_send(Frame::new("m").msg_id(i)).unwrap();
    }
    let flush = async { poll_fn(|cx| sink.as_mut().poll_flush(cx)).await.unwrap() };
    let receive = async {
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(b.recv().await.unwrap());
        }
        got
    };
    let ((), got) = tokio::join!(flush, receive);
    assert_eq!(ids(&got), [0, 1, 2]);
}

#[tokio::test]
async fn dropping_the_sink_cancels_only_its_pending_send() {
    let (a, b) = tight_pair();
    let (_, waker) = counting();
    let mut cx = Context::from_waker(&waker);

    // Held (start_send found no room, nothing polled since): the frame never reached the
    // transport; it can be taken back, and dropping the sink drops it unsent.
    {
        let mut sink = FrameSink::new(&a);
        Pin::new(&mut sink)
            .start_send(Frame::new("sent").msg_id(1))
            .unwrap();
        Pin::new(&mut sink)
            .start_send(Frame::new("held").msg_id(2))
            .unwrap();
        assert!(sink.has_pending());
        assert_eq!(ids(&sink.take_unsent()), [2]);
        assert!(!sink.has_pending());
        Pin::new(&mut sink)
            .start_send(Frame::new("held, then dropped").msg_id(2))
            .unwrap();
    }
    // Sending (poll_ready started the transport's send, which waits for room): dropping
    // cancels that send; the frame is not the sink's to hand back any more.
    {
        let mut sink = FrameSink::new(&a);
        Pin::new(&mut sink)
            .start_send(Frame::new("waiting").msg_id(3))
            .unwrap();
        assert!(Pin::new(&mut sink).poll_ready(&mut cx).is_pending());
        assert!(sink.take_unsent().is_empty() && sink.has_pending());
    }
    // Neither dropped frame is delivered, nothing is duplicated, the transport stays usable
    // and nothing leaked.
    assert_eq!(ids(&drain(&b)), [1]);
    a.send(Frame::new("after").msg_id(4)).await.unwrap();
    assert_eq!(ids(&drain(&b)), [4]);
    assert!(a.stats().is_idle() && b.stats().is_idle());

    // A flushed sink's frames all arrive, even when the sink is dropped right after.
    {
        let mut sink = pin!(FrameSink::new(&a));
        sink.as_mut().start_send(Frame::new("x").msg_id(5)).unwrap();
        sink.as_mut().start_send(Frame::new("y").msg_id(6)).unwrap();
        let flushed = async { poll_fn(|cx| sink.as_mut().poll_flush(cx)).await.unwrap() };
        let first = async { b.recv().await.unwrap() };
        let ((), first) = tokio::join!(flushed, first);
        assert_eq!(first.header.msg_id, 5);
    }
    assert_eq!(ids(&drain(&b)), [6]);
}

#[tokio::test]
async fn sink_errors_surface_through_start_send_and_flush() {
    let (a, b) = tight_pair();
    let mut sink = pin!(FrameSink::new(&a));
    sink.as_mut().start_send(Frame::new("1")).unwrap();
    sink.as_mut().start_send(Frame::new("2")).unwrap(); // pending: no room
    drop(b);
    let flushed = poll_fn(|cx| sink.as_mut().poll_flush(cx)).await;
    assert!(
        matches!(flushed, Err(TransportError::Closed)),
        "{flushed:?}"
    );
    let refused = sink.as_mut().start_send(Frame::new("3"));
    assert!(
        matches!(refused, Err(TransportError::Closed)),
        "{refused:?}"
    );
}
