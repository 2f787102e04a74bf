//! The object-safe form of [`Transport`], for code that picks a backend at run time.

use crate::{Frame, Result, Stats, Transport, TrySendError, TxBuf};

/// Object-safe twin of [`Transport`] with boxed futures. Every `Transport` implements it
/// (blanket impl), and [`BoxTransport`] implements `Transport` again, so generic service code
/// accepts a boxed transport unchanged.
///
/// The methods carry a `dyn_` prefix so that they never clash with [`Transport`]'s in method
/// resolution; call them through `BoxTransport`'s `Transport` impl.
#[async_trait::async_trait]
pub trait DynTransport: Send + Sync {
    /// See [`Transport::send`].
    async fn dyn_send(&self, frame: Frame) -> Result<()>;
    /// See [`Transport::try_send`].
    fn dyn_try_send(&self, frame: Frame) -> Result<(), TrySendError>;
    /// See [`Transport::recv`].
    async fn dyn_recv(&self) -> Result<Frame>;
    /// See [`Transport::try_recv`].
    fn dyn_try_recv(&self) -> Result<Option<Frame>>;
    /// See [`Transport::alloc`].
    async fn dyn_alloc(&self, len: usize) -> Result<TxBuf>;
    /// See [`Transport::close`].
    fn dyn_close(&self);
    /// See [`Transport::max_payload`].
    fn dyn_max_payload(&self) -> usize;
    /// See [`Transport::stats`].
    fn dyn_stats(&self) -> Stats;
    /// See [`Transport::backend`].
    fn dyn_backend(&self) -> &'static str;
}

#[async_trait::async_trait]
impl<T: Transport> DynTransport for T {
    async fn dyn_send(&self, frame: Frame) -> Result<()> {
        self.send(frame).await
    }
    fn dyn_try_send(&self, frame: Frame) -> Result<(), TrySendError> {
        self.try_send(frame)
    }
    async fn dyn_recv(&self) -> Result<Frame> {
        self.recv().await
    }
    fn dyn_try_recv(&self) -> Result<Option<Frame>> {
        self.try_recv()
    }
    async fn dyn_alloc(&self, len: usize) -> Result<TxBuf> {
        self.alloc(len).await
    }
    fn dyn_close(&self) {
        self.close()
    }
    fn dyn_max_payload(&self) -> usize {
        self.max_payload()
    }
    fn dyn_stats(&self) -> Stats {
        self.stats()
    }
    fn dyn_backend(&self) -> &'static str {
        self.backend()
    }
}

/// A transport whose backend was chosen at run time.
///
/// It implements [`Transport`] itself, so generic service code takes it unchanged.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use transport_api::{BoxTransport, Frame, Transport};
///
/// async fn greet<T: Transport>(t: &T) -> transport_api::Result<()> {
///     t.send(Frame::new("hello")).await
/// }
///
/// let (a, b) = transport_mem::pair(Default::default());
/// let (a, b): (BoxTransport, BoxTransport) = (Box::new(a), Box::new(b));
/// greet(&a).await?;
/// assert_eq!(b.recv().await?.bytes(), b"hello");
/// assert_eq!(b.backend(), "mem");
/// # Ok::<(), transport_api::TransportError>(())
/// # }).unwrap();
/// ```
pub type BoxTransport = Box<dyn DynTransport>;

/// A boxed future, as returned by the object-safe methods.
type BoxFut<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[allow(refining_impl_trait)]
impl<'t> Transport for Box<dyn DynTransport + 't> {
    fn send(&self, frame: Frame) -> BoxFut<'_, Result<()>> {
        (**self).dyn_send(frame)
    }
    fn try_send(&self, frame: Frame) -> Result<(), TrySendError> {
        (**self).dyn_try_send(frame)
    }
    fn recv(&self) -> BoxFut<'_, Result<Frame>> {
        (**self).dyn_recv()
    }
    fn try_recv(&self) -> Result<Option<Frame>> {
        (**self).dyn_try_recv()
    }
    fn alloc(&self, len: usize) -> BoxFut<'_, Result<TxBuf>> {
        (**self).dyn_alloc(len)
    }
    fn close(&self) {
        (**self).dyn_close()
    }
    fn max_payload(&self) -> usize {
        (**self).dyn_max_payload()
    }
    fn stats(&self) -> Stats {
        (**self).dyn_stats()
    }
    fn backend(&self) -> &'static str {
        (**self).dyn_backend()
    }
}
