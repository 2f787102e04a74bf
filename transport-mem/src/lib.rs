//! # transport-mem
//!
//! The in-process backend and the semantic reference for every other backend: the conformance
//! suite's expectations are first checked here.
//!
//! - [`pair`] makes two connected endpoints.
//! - [`MemListener::bind`] / [`connect`] rendezvous by name inside one process, which is what the
//!   configuration factory ([`MemFactory`], backend name `mem`) uses.
//!
//! Each direction is a bounded queue (in frames and in bytes). `send` waits for room, `try_send`
//! hands the frame back on `Full`, and every wait is a registered [`tokio::sync::Notify`] waiter,
//! checked under the queue lock after registering, so no wake-up is lost and nothing spins.
//!
//! ```
//! # tokio_test();
//! # fn tokio_test() { tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use transport_api::{Frame, Transport};
//! let (a, b) = transport_mem::pair(transport_mem::MemConfig::default());
//! a.send(Frame::new("hello")).await.unwrap();
//! assert_eq!(b.recv().await.unwrap().bytes(), b"hello");
//! # }) }
//! ```

use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use tokio::sync::{Notify, mpsc};
use transport_api::{
    BackendFactory, BoxTransport, Counters, DynListener, Frame, FrameHeader, Payload, Result,
    Stats, Transport, TransportConfig, TransportError, TrySendError, TxBuf,
};

/// Limits of one in-memory session (the same in both directions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemConfig {
    /// Frames one direction can hold before `send` waits.
    pub capacity: usize,
    /// Payload bytes one direction can hold before `send` waits (a frame is always admitted
    /// into an empty queue, so this never deadlocks).
    pub capacity_bytes: usize,
    /// Largest payload accepted.
    pub max_payload: usize,
}

impl Default for MemConfig {
    fn default() -> Self {
        MemConfig {
            capacity: 1024,
            capacity_bytes: 16 << 20,
            max_payload: 1 << 20,
        }
    }
}

impl MemConfig {
    /// Option names understood in a `mem://` configuration.
    pub const OPTIONS: &'static [&'static str] = &["capacity", "capacity_bytes", "max_payload"];

    /// Accepted range of `capacity` (frames per direction).
    pub const CAPACITY: RangeInclusive<usize> = 1..=1 << 20;
    /// Accepted range of `capacity_bytes` (payload bytes per direction): up to 16 GiB.
    pub const CAPACITY_BYTES: RangeInclusive<usize> = 1..=1 << 34;
    /// Accepted range of `max_payload` (bytes): up to 1 GiB.
    pub const MAX_PAYLOAD: RangeInclusive<usize> = 0..=1 << 30;

    /// Reads the limits from a configuration's options, starting from the defaults; each
    /// option must lie in its range ([`CAPACITY`](Self::CAPACITY),
    /// [`CAPACITY_BYTES`](Self::CAPACITY_BYTES), [`MAX_PAYLOAD`](Self::MAX_PAYLOAD)).
    ///
    /// # Examples
    ///
    /// ```
    /// use transport_mem::MemConfig;
    ///
    /// let c = MemConfig::from_config(&"mem://jobs?capacity=8&max_payload=4096".parse()?)?;
    /// assert_eq!((c.capacity, c.max_payload), (8, 4096));
    /// assert!(MemConfig::from_config(&"mem://jobs?capacity=0".parse()?).is_err());
    /// assert!(MemConfig::from_config(&"mem://jobs?capcity=8".parse()?).is_err());
    /// # Ok::<(), transport_api::TransportError>(())
    /// ```
    pub fn from_config(cfg: &TransportConfig) -> Result<Self> {
        cfg.check_known(Self::OPTIONS)?;
        let d = MemConfig::default();
        MemConfig {
            capacity: cfg
                .get_in("capacity", Self::CAPACITY)?
                .unwrap_or(d.capacity),
            capacity_bytes: cfg
                .get_in("capacity_bytes", Self::CAPACITY_BYTES)?
                .unwrap_or(d.capacity_bytes),
            max_payload: cfg
                .get_in("max_payload", Self::MAX_PAYLOAD)?
                .unwrap_or(d.max_payload),
        }
        .validated()
    }

    /// Checks that every limit lies in its accepted range.
    pub fn validated(self) -> Result<Self> {
        for (name, value, range) in [
            ("capacity", self.capacity, Self::CAPACITY),
            ("capacity_bytes", self.capacity_bytes, Self::CAPACITY_BYTES),
            ("max_payload", self.max_payload, Self::MAX_PAYLOAD),
        ] {
            if !range.contains(&value) {
                return Err(TransportError::Config(format!(
                    "mem: `{name}` is {value}, outside the accepted range {}..={}",
                    range.start(),
                    range.end()
                )));
            }
        }
        Ok(self)
    }
}

struct QueueState {
    frames: VecDeque<(FrameHeader, Bytes)>,
    bytes: usize,
    /// The sending endpoint closed or was dropped: the receiver drains, then sees `Closed`.
    sender_gone: bool,
    /// The receiving endpoint closed or was dropped: sends fail with `Closed`.
    receiver_gone: bool,
}

/// One direction of a session.
struct Queue {
    state: Mutex<QueueState>,
    /// Signalled when a frame is pushed or the sender goes away.
    readable: Notify,
    /// Signalled when room is made or the receiver goes away.
    writable: Notify,
}

impl Queue {
    fn new() -> Arc<Queue> {
        Arc::new(Queue {
            state: Mutex::new(QueueState {
                frames: VecDeque::new(),
                bytes: 0,
                sender_gone: false,
                receiver_gone: false,
            }),
            readable: Notify::new(),
            writable: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic while holding this lock cannot leave the state half-updated (every critical
        // section is a single push/pop with its counters), so poisoning is safe to ignore.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One endpoint of an in-process session. Cheap to share (`&self` methods), `Send + Sync`.
pub struct MemTransport {
    tx: Arc<Queue>,
    rx: Arc<Queue>,
    config: MemConfig,
    closed: AtomicBool,
    counters: Counters,
    /// This endpoint's session span ([`transport_api::trace`]).
    span: tracing::Span,
}

/// Two connected endpoints.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use transport_api::{Frame, Transport};
/// use transport_mem::{MemConfig, pair};
///
/// let (a, b) = pair(MemConfig { capacity: 64, ..MemConfig::default() });
/// let receiver = tokio::spawn(async move {
///     let mut total = 0;
///     while let Ok(frame) = b.recv().await {
///         total += frame.bytes().len();
///     }
///     total // `recv` returned `Closed` after the last frame
/// });
/// for _ in 0..1000 {
///     a.send(Frame::new(&b"0123456789"[..])).await?; // waits whenever 64 frames are queued
/// }
/// drop(a);
/// assert_eq!(receiver.await.unwrap(), 10_000);
/// # Ok::<(), transport_api::TransportError>(())
/// # }).unwrap();
/// ```
pub fn pair(config: MemConfig) -> (MemTransport, MemTransport) {
    named_pair(config, "pair")
}

/// Two connected endpoints whose session spans name `name` as the address.
fn named_pair(config: MemConfig, name: &str) -> (MemTransport, MemTransport) {
    let ab = Queue::new();
    let ba = Queue::new();
    let end = |tx: &Arc<Queue>, rx: &Arc<Queue>, role: &str| {
        let span = transport_api::trace::session_span("mem", name, role);
        tracing::debug!(parent: &span, "session opened");
        MemTransport {
            tx: tx.clone(),
            rx: rx.clone(),
            config,
            closed: AtomicBool::new(false),
            counters: Counters::default(),
            span,
        }
    };
    (end(&ab, &ba, "client"), end(&ba, &ab, "server"))
}

enum Admit {
    Sent,
    Full(FrameHeader, Bytes),
}

impl MemTransport {
    fn check_len(&self, len: usize) -> Result<()> {
        if len > self.config.max_payload {
            return Err(TransportError::PayloadTooLarge {
                len,
                max: self.config.max_payload,
            });
        }
        Ok(())
    }

    fn into_parts(frame: Frame) -> (FrameHeader, Bytes, bool) {
        match frame.payload {
            Payload::Bytes(b) => (frame.header, b, false),
            Payload::Buf(b) => {
                // Heap buffers freeze into `Bytes` without a copy; an inline one, or one leased
                // by another backend, is copied once.
                let zero_copy = b.is_heap() && !b.is_inline();
                (frame.header, b.into_bytes(), zero_copy)
            }
        }
    }

    /// Pushes if there is room. Errors if either side is closed.
    fn admit(&self, header: FrameHeader, bytes: Bytes, zero_copy: bool) -> Result<Admit> {
        let mut q = self.tx.lock();
        if self.closed.load(Relaxed) {
            return Err(TransportError::Closed);
        }
        if q.receiver_gone {
            return Err(TransportError::Closed);
        }
        let fits = q.frames.len() < self.config.capacity
            && (q.frames.is_empty() || q.bytes + bytes.len() <= self.config.capacity_bytes);
        if !fits {
            return Ok(Admit::Full(header, bytes));
        }
        let len = bytes.len();
        q.bytes += len;
        q.frames.push_back((header, bytes));
        drop(q);
        self.counters.on_sent(len, zero_copy);
        self.tx.readable.notify_waiters();
        Ok(Admit::Sent)
    }

    fn take(&self) -> Result<Option<Frame>> {
        let mut q = self.rx.lock();
        if self.closed.load(Relaxed) {
            return Err(TransportError::Closed);
        }
        match q.frames.pop_front() {
            Some((header, bytes)) => {
                q.bytes -= bytes.len();
                drop(q);
                self.counters.on_received(bytes.len());
                self.rx.writable.notify_waiters();
                Ok(Some(Frame::with_header(header, bytes)))
            }
            None if q.sender_gone => Err(TransportError::Closed),
            None => Ok(None),
        }
    }
}

impl Transport for MemTransport {
    async fn send(&self, frame: Frame) -> Result<()> {
        self.check_len(frame.payload.len())?;
        let (mut header, mut bytes, zero_copy) = Self::into_parts(frame);
        let mut waited = false;
        loop {
            let notified = self.tx.writable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.admit(header, bytes, zero_copy)? {
                Admit::Sent => return Ok(()),
                Admit::Full(h, b) => (header, bytes) = (h, b),
            }
            if !waited {
                waited = true;
                self.counters.send_waits.fetch_add(1, Relaxed);
            }
            notified.await;
        }
    }

    fn try_send(&self, frame: Frame) -> Result<(), TrySendError> {
        self.check_len(frame.payload.len())?;
        let (header, bytes, zero_copy) = Self::into_parts(frame);
        match self.admit(header, bytes, zero_copy)? {
            Admit::Sent => Ok(()),
            Admit::Full(h, b) => Err(TrySendError::Full(Frame::with_header(h, b))),
        }
    }

    async fn recv(&self) -> Result<Frame> {
        let mut waited = false;
        loop {
            let notified = self.rx.readable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(f) = self.take()? {
                return Ok(f);
            }
            if !waited {
                waited = true;
                self.counters.recv_waits.fetch_add(1, Relaxed);
            }
            notified.await;
        }
    }

    fn try_recv(&self) -> Result<Option<Frame>> {
        self.take()
    }

    async fn alloc(&self, len: usize) -> Result<TxBuf> {
        self.check_len(len)?;
        if self.closed.load(Relaxed) {
            return Err(TransportError::Closed);
        }
        Ok(TxBuf::heap(len))
    }

    fn close(&self) {
        if self.closed.swap(true, Relaxed) {
            return;
        }
        // Outgoing: the peer drains what we sent, then sees `Closed`.
        self.tx.lock().sender_gone = true;
        // Incoming: drop what we will never read, and make the peer's sends fail.
        {
            let mut q = self.rx.lock();
            q.receiver_gone = true;
            q.frames.clear();
            q.bytes = 0;
        }
        for q in [&self.tx, &self.rx] {
            q.readable.notify_waiters();
            q.writable.notify_waiters();
        }
        tracing::debug!(parent: &self.span, "session closed");
    }

    fn max_payload(&self) -> usize {
        self.config.max_payload
    }

    fn stats(&self) -> Stats {
        let (txf, txb) = {
            let q = self.tx.lock();
            (q.frames.len(), q.bytes)
        };
        let (rxf, rxb) = {
            let q = self.rx.lock();
            (q.frames.len(), q.bytes)
        };
        Stats {
            tx_queued_frames: txf as u64,
            rx_queued_frames: rxf as u64,
            buffer_bytes_in_use: (txb + rxb) as u64,
            ..self.counters.snapshot()
        }
    }

    fn backend(&self) -> &'static str {
        "mem"
    }
}

impl Drop for MemTransport {
    fn drop(&mut self) {
        self.close();
    }
}

type Pending = mpsc::UnboundedSender<MemTransport>;

fn names() -> MutexGuard<'static, HashMap<String, (MemConfig, Pending)>> {
    static NAMES: OnceLock<Mutex<HashMap<String, (MemConfig, Pending)>>> = OnceLock::new();
    NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Accepts in-process connections made with [`connect`] to its name. The name is freed when
/// the listener is dropped.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use transport_api::{Frame, Transport};
/// use transport_mem::{MemConfig, MemListener};
///
/// let listener = MemListener::bind("billing", MemConfig::default())?;
/// assert!(MemListener::bind("billing", MemConfig::default()).is_err()); // the name is taken
///
/// let client = transport_mem::connect("billing")?;
/// let server = listener.accept().await?;
/// client.send(Frame::new("invoice")).await?;
/// assert_eq!(server.recv().await?.bytes(), b"invoice");
///
/// drop(listener);
/// assert!(transport_mem::connect("billing").is_err()); // nobody listens any more
/// # Ok::<(), transport_api::TransportError>(())
/// # }).unwrap();
/// ```
pub struct MemListener {
    name: String,
    incoming: tokio::sync::Mutex<mpsc::UnboundedReceiver<MemTransport>>,
}

impl MemListener {
    /// Listens on `name` with the session limits `config`. Fails if the name is taken.
    pub fn bind(name: &str, config: MemConfig) -> Result<MemListener> {
        let config = config.validated()?;
        let mut map = names();
        if map.get(name).is_some_and(|(_, tx)| !tx.is_closed()) {
            return Err(TransportError::Io(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("mem: the name `{name}` already has a listener"),
            )));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        map.insert(name.to_string(), (config, tx));
        tracing::debug!(backend = "mem", name, "listening");
        Ok(MemListener {
            name: name.to_string(),
            incoming: tokio::sync::Mutex::new(rx),
        })
    }

    /// Waits for the next connection.
    pub async fn accept(&self) -> Result<MemTransport> {
        let t = self.incoming.lock().await.recv().await;
        let t = t.ok_or(TransportError::Closed)?;
        tracing::debug!(parent: &t.span, "accepted");
        Ok(t)
    }

    /// The name this listener is bound to.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for MemListener {
    fn drop(&mut self) {
        // Close our receiving end first so the entry is recognisably ours (or already stale),
        // then remove it unless a newer listener took the name meanwhile.
        self.incoming.get_mut().close();
        let mut map = names();
        if map.get(&self.name).is_some_and(|(_, tx)| tx.is_closed()) {
            map.remove(&self.name);
        }
    }
}

/// Connects to the listener bound to `name` in this process.
pub fn connect(name: &str) -> Result<MemTransport> {
    let map = names();
    let (config, tx) = map.get(name).ok_or_else(|| {
        TransportError::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            format!("mem: no listener named `{name}` in this process"),
        ))
    })?;
    let (ours, theirs) = named_pair(*config, name);
    tx.send(theirs).map_err(|_| {
        TransportError::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            format!("mem: the listener `{name}` is gone"),
        ))
    })?;
    tracing::debug!(parent: &ours.span, "connected");
    Ok(ours)
}

/// The `mem` backend for [`transport_api::Registry`]: `mem://NAME?capacity=…&capacity_bytes=…&max_payload=…`.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemFactory;

struct FactoryListener {
    inner: MemListener,
    config: TransportConfig,
}

#[async_trait::async_trait]
impl DynListener for FactoryListener {
    async fn accept(&self) -> Result<BoxTransport> {
        Ok(Box::new(self.inner.accept().await?))
    }
    fn connect_config(&self) -> TransportConfig {
        TransportConfig::new("mem", self.config.address.clone())
    }
}

#[async_trait::async_trait]
impl BackendFactory for MemFactory {
    fn name(&self) -> &'static str {
        "mem"
    }
    async fn listen(&self, config: &TransportConfig) -> Result<Box<dyn DynListener>> {
        let limits = MemConfig::from_config(config)?;
        Ok(Box::new(FactoryListener {
            inner: MemListener::bind(config.require_address()?, limits)?,
            config: config.clone(),
        }))
    }
    async fn connect(&self, config: &TransportConfig) -> Result<BoxTransport> {
        MemConfig::from_config(config)?;
        Ok(Box::new(connect(config.require_address()?)?))
    }
}

#[cfg(feature = "conformance")]
pub mod conformance {
    //! This backend described for the conformance suite (feature `conformance`).

    use super::*;
    use transport_conformance::{Backend, Capabilities, PairOptions};

    /// The `mem` backend under test.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct MemBackend;

    /// Limits of a [`PairOptions::SMALL`] pair.
    pub const SMALL: MemConfig = MemConfig {
        capacity: 16,
        capacity_bytes: 16 << 10,
        max_payload: 1 << 20,
    };

    impl Backend for MemBackend {
        type T = MemTransport;
        type Listener = ();

        fn name(&self) -> &'static str {
            "mem"
        }

        fn capabilities(&self) -> Capabilities {
            Capabilities {
                boundaries: vec![SMALL.capacity_bytes],
                zero_copy: true,
                // `alloc` buffers this small live inside the `TxBuf` and are copied once.
                copies_up_to: transport_api::TxBuf::INLINE_CAPACITY,
                cross_process: false,
                // One direction holds at most `capacity_bytes`, or one frame of any size
                // when it was admitted into an empty queue.
                small_memory_bound: (SMALL.capacity_bytes + SMALL.max_payload) as u64,
                liveness: None,
            }
        }

        async fn pair(&self, opts: PairOptions) -> Result<(MemTransport, MemTransport)> {
            Ok(pair(if opts.small {
                SMALL
            } else {
                MemConfig::default()
            }))
        }
    }
}
