//! Any [`Transport`] as a `futures` [`Stream`] of received frames and a [`Sink`] of frames to
//! send (feature `futures`), for code built on stream combinators.
//!
//! Both adapters hold a *handle* on the transport: a reference (`&T`, to use them inside one
//! task) or an `Arc<T>` (to move them into spawned tasks). A received frame or an immediate send
//! costs no allocation; only a wait (nothing to receive, no room to send) boxes the transport's
//! own future until it completes.

use crate::{Frame, Result, Transport, TransportError, TrySendError};
use futures_core::{FusedStream, Stream};
use futures_sink::Sink;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A handle the adapters can hold: a reference or a smart pointer to a transport.
pub trait TransportHandle: Deref<Target: Transport> + Clone + Send + Sync + Unpin {}

impl<H> TransportHandle for H where H: Deref<Target: Transport> + Clone + Send + Sync + Unpin {}

/// The frames a transport receives, as a [`Stream`] of `Result<Frame>`.
///
/// * Items are the results of [`Transport::recv`], in order. The stream ends (`None`) when the
///   session is closed ([`TransportError::Closed`]: the peer closed or this side did). Any
///   other error is yielded as an item; after a terminal one
///   ([`is_terminal`](TransportError::is_terminal): `PeerDied`, `Corrupt`) the stream ends.
/// * Cancel safety: dropping the stream (or a future polling it, such as a `select!` branch)
///   while it waits consumes no frame; the next `recv` on the transport gets it. The wait is the
///   transport's own cancel-safe `recv` future.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use futures_core::Stream;
/// use std::pin::pin;
/// use transport_api::{Frame, FrameStream, Transport};
///
/// let (a, b) = transport_mem::pair(Default::default());
/// for i in 0..3 {
///     a.send(Frame::new("tick").msg_id(i)).await?;
/// }
/// a.close();
///
/// let mut frames = pin!(FrameStream::new(&b));
/// let mut ids = Vec::new();
/// while let Some(frame) = std::future::poll_fn(|cx| frames.as_mut().poll_next(cx)).await {
///     ids.push(frame?.header.msg_id);
/// }
/// assert_eq!(ids, [0, 1, 2]); // then the stream ended: the peer closed
/// # Ok::<(), transport_api::TransportError>(())
/// # }).unwrap();
/// ```
pub struct FrameStream<'a, H> {
    handle: H,
    waiting: Option<BoxFut<'a, Result<Frame>>>,
    ended: bool,
}

impl<'a, H: TransportHandle + 'a> FrameStream<'a, H> {
    /// The frames `handle`'s transport receives.
    pub fn new(handle: H) -> Self {
        FrameStream {
            handle,
            waiting: None,
            ended: false,
        }
    }

    /// The transport handle.
    pub fn get_ref(&self) -> &H {
        &self.handle
    }
}

impl<'a, H: TransportHandle + 'a> Stream for FrameStream<'a, H> {
    type Item = Result<Frame>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let result = match this.waiting.as_mut() {
            Some(wait) => ready!(wait.as_mut().poll(cx)),
            None => match this.handle.try_recv() {
                Ok(Some(frame)) => Ok(frame),
                Ok(None) => {
                    let handle = this.handle.clone();
                    let mut wait: BoxFut<'a, _> = Box::pin(async move { handle.recv().await });
                    match wait.as_mut().poll(cx) {
                        Poll::Ready(r) => r,
                        Poll::Pending => {
                            this.waiting = Some(wait);
                            return Poll::Pending;
                        }
                    }
                }
                Err(e) => Err(e),
            },
        };
        this.waiting = None;
        Poll::Ready(match result {
            Ok(frame) => Some(Ok(frame)),
            Err(TransportError::Closed) => {
                this.ended = true;
                None
            }
            Err(e) => {
                this.ended = e.is_terminal();
                Some(Err(e))
            }
        })
    }
}

impl<'a, H: TransportHandle + 'a> FusedStream for FrameStream<'a, H> {
    fn is_terminated(&self) -> bool {
        self.ended
    }
}

impl<H> fmt::Debug for FrameStream<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameStream")
            .field("waiting", &self.waiting.is_some())
            .field("ended", &self.ended)
            .finish()
    }
}

/// A [`Sink`] of frames sent over a transport, with backpressure: it holds at most one frame
/// the transport had no room for (when used as the `Sink` contract asks, `poll_ready` before
/// each `start_send`).
///
/// A frame given to [`start_send`](Sink::start_send) is in one of three states:
/// 1. **In the transport**: there was room ([`Transport::try_send`]), so it is sent and is
///    delivered whatever happens to the sink afterwards.
/// 2. **Held**: there was no room; the sink keeps the frame itself. Nothing of it reached the
///    transport, and [`take_unsent`](Self::take_unsent) hands it back.
/// 3. **Sending**: [`poll_ready`](Sink::poll_ready), [`poll_flush`](Sink::poll_flush) or
///    [`poll_close`](Sink::poll_close) found still no room and started the transport's own
///    [`send`](Transport::send), which waits for room; they return `Pending` until it
///    completed. That is the backpressure. When they return `Ready(Ok(()))`, every frame given
///    to `start_send` is in the transport; a failed send's error is returned by the next of
///    them.
///
/// `poll_close` flushes, then [`close`](Transport::close)s the transport (the peer receives
/// everything sent, then `Closed`).
///
/// **Drop.** Frames in the transport are unaffected. A held frame is dropped unsent (take it
/// back first with [`take_unsent`](Self::take_unsent) to keep it). A frame being sent has its
/// send cancelled: per the transport's cancel-safety contract it is sent whole or not at all,
/// never duplicated, and the transport stays usable. [`has_pending`](Self::has_pending) tells
/// whether anything is held or being sent; flush before dropping to be sure every frame went.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use futures_sink::Sink;
/// use std::future::poll_fn;
/// use std::pin::pin;
/// use transport_api::{Frame, FrameSink, Transport};
///
/// let (a, b) = transport_mem::pair(Default::default());
/// let mut sink = pin!(FrameSink::new(&a));
/// for i in 0..3 {
///     poll_fn(|cx| sink.as_mut().poll_ready(cx)).await?;
///     sink.as_mut().start_send(Frame::new("job").msg_id(i))?;
/// }
/// poll_fn(|cx| sink.as_mut().poll_close(cx)).await?; // flushes, then closes `a`
///
/// for i in 0..3 {
///     assert_eq!(b.recv().await?.header.msg_id, i);
/// }
/// assert!(matches!(b.recv().await, Err(transport_api::TransportError::Closed)));
/// # Ok::<(), transport_api::TransportError>(())
/// # }).unwrap();
/// ```
pub struct FrameSink<'a, H> {
    handle: H,
    /// Frames with no room yet, oldest first (one, unless `start_send` came without
    /// `poll_ready`), none of them passed to the transport.
    held: VecDeque<Frame>,
    /// The transport's `send` of the frame taken from the front of `held`.
    sending: Option<BoxFut<'a, Result<()>>>,
}

impl<'a, H: TransportHandle + 'a> FrameSink<'a, H> {
    /// A sink sending over `handle`'s transport.
    pub fn new(handle: H) -> Self {
        FrameSink {
            handle,
            held: VecDeque::new(),
            sending: None,
        }
    }

    /// The transport handle.
    pub fn get_ref(&self) -> &H {
        &self.handle
    }

    /// True while a frame given to `start_send` is held or being sent (see the states above).
    pub fn has_pending(&self) -> bool {
        self.sending.is_some() || !self.held.is_empty()
    }

    /// Takes back the held frames, oldest first: those that had no room and whose send has not
    /// started. A frame being sent is not among them (it belongs to the transport's `send`).
    pub fn take_unsent(&mut self) -> Vec<Frame> {
        self.held.drain(..).collect()
    }

    /// Moves every held frame into the transport, in order; `Ready(Ok)` once all are in.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        loop {
            if let Some(send) = self.sending.as_mut() {
                let result = ready!(send.as_mut().poll(cx));
                self.sending = None;
                result?;
            }
            let Some(frame) = self.held.pop_front() else {
                return Poll::Ready(Ok(()));
            };
            match self.handle.try_send(frame) {
                Ok(()) => {}
                Err(TrySendError::Full(frame)) => {
                    let handle = self.handle.clone();
                    self.sending = Some(Box::pin(async move { handle.send(frame).await }));
                }
                Err(TrySendError::Failed(e)) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl<'a, H: TransportHandle + 'a> Sink<Frame> for FrameSink<'a, H> {
    type Error = TransportError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_pending(cx)
    }

    fn start_send(self: Pin<&mut Self>, frame: Frame) -> Result<()> {
        let this = self.get_mut();
        if this.has_pending() {
            // Called without waiting for `poll_ready`: the frame queues behind the pending
            // ones, in order, rather than being refused.
            this.held.push_back(frame);
            return Ok(());
        }
        match this.handle.try_send(frame) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(frame)) => {
                this.held.push_back(frame);
                Ok(())
            }
            Err(TrySendError::Failed(e)) => Err(e),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().poll_pending(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        this.handle.close();
        Poll::Ready(Ok(()))
    }
}

impl<H> fmt::Debug for FrameSink<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameSink")
            .field("held", &self.held.len())
            .field("sending", &self.sending.is_some())
            .finish()
    }
}
