//! Request/response over any [`Transport`]: a client with many calls in flight whose answers
//! are matched by [`FrameHeader::msg_id`], with deadlines carried in
//! [`FrameHeader::deadline_ns`], and a server that answers out of order and skips requests
//! whose deadline passed. Both are generic over the transport: the "generic transport bound in
//! service code" an application starts from.
//!
//! Protocol: a request is a frame with a fresh `msg_id`, a `method` and, when the caller has
//! one, a `deadline_ns` (wall clock, nanoseconds since the Unix epoch). Its answer carries the
//! same `msg_id` and the flag [`RESPONSE`] (plus [`ERROR`] for an error answer, whose payload
//! is the message).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use tokio::time::Instant;
use transport::{Frame, FrameHeader, Payload, Transport, TransportError};

/// Method: answer with the request's payload.
pub const ECHO: u32 = 1;
/// Method: answer with the request's payload after as many milliseconds as its first four
/// bytes say (little-endian `u32`).
pub const DELAY: u32 = 2;
/// Flag of every answer.
pub const RESPONSE: u32 = 1;
/// Flag of an error answer; the payload is the message.
pub const ERROR: u32 = 2;

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Sending the request failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The deadline passed first.
    #[error("call {msg_id}: no answer within its deadline of {timeout:?}")]
    DeadlineExceeded {
        /// The call.
        msg_id: u64,
        /// The time it was given.
        timeout: Duration,
    },
    /// The server answered with an error.
    #[error("call {msg_id}: the server answered with an error: {message}")]
    Remote {
        /// The call.
        msg_id: u64,
        /// The server's message.
        message: String,
    },
    /// The session ended before the answer came.
    #[error("call {msg_id}: the session ended before its answer")]
    SessionEnded {
        /// The call.
        msg_id: u64,
    },
}

/// Nanoseconds since the Unix epoch, `timeout` from now (saturating).
fn deadline_ns(timeout: Duration) -> u64 {
    let at = SystemTime::now() + timeout;
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .max(1)
}

/// True when the request's deadline has passed.
fn expired(header: &FrameHeader) -> bool {
    header.deadline_ns != 0 && deadline_ns(Duration::ZERO) >= header.deadline_ns
}

/// The calling side of a session. Run [`dispatch`](Self::dispatch) concurrently with the
/// calls (e.g. in `tokio::join!`): it routes each answer to its call.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use examples::rpc::{self, CallError, DELAY, ECHO, RpcClient};
/// use std::time::Duration;
/// use transport::Transport;
///
/// let (client_end, server_end) = transport::mem::pair(Default::default());
/// let client = RpcClient::new(client_end);
/// let calls = async {
///     // Both requests leave before either answer is awaited; the delayed one answers last.
///     let mut slow_payload = 5u32.to_le_bytes().to_vec(); // held 5 ms by the server
///     slow_payload.extend_from_slice(b"slow");
///     let slow = client.start(DELAY, slow_payload, Duration::from_secs(30)).await?;
///     let fast = client.start(ECHO, "fast", Duration::from_secs(30)).await?;
///     assert_eq!(fast.answer().await?.bytes(), b"fast");
///     assert!(slow.answer().await?.bytes().ends_with(b"slow"));
///     // The server holds this one for 49 days; its deadline passes long before.
///     let forever = u32::MAX.to_le_bytes().to_vec();
///     let late = client.call(DELAY, forever, Duration::from_millis(10)).await;
///     assert!(matches!(late, Err(CallError::DeadlineExceeded { .. })));
///     client.transport().close();
///     Ok::<(), CallError>(())
/// };
/// let (served, dispatched, called) =
///     tokio::join!(rpc::serve(&server_end), client.dispatch(), calls);
/// called?;
/// dispatched?;
/// assert_eq!(served?.answered, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct RpcClient<T> {
    transport: T,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Frame>>>,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    late: AtomicU64,
}

impl<T: Transport> RpcClient<T> {
    /// A client calling over `transport`.
    pub fn new(transport: T) -> Self {
        RpcClient {
            transport,
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            late: AtomicU64::new(0),
        }
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Frame>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a request and returns the call, whose [`answer`](PendingCall::answer) waits for
    /// the matching answer until `timeout` has passed. Many calls can be started before any
    /// is awaited. Cancel-safe: dropping this future or the call forgets the call (an answer
    /// that comes later is counted as [`late`](Self::late_answers)).
    pub async fn start(
        &self,
        method: u32,
        payload: impl Into<Payload>,
        timeout: Duration,
    ) -> Result<PendingCall<'_, T>, CallError> {
        let msg_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending().insert(msg_id, tx);
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_in_flight.fetch_max(now, Ordering::Relaxed);
        let call = PendingCall {
            client: self,
            msg_id,
            rx,
            deadline: Instant::now() + timeout,
            timeout,
        };
        let header = FrameHeader {
            msg_id,
            method,
            deadline_ns: deadline_ns(timeout),
            ..FrameHeader::default()
        };
        self.transport
            .send(Frame::with_header(header, payload))
            .await?;
        Ok(call)
    }

    /// [`start`](Self::start) and [`answer`](PendingCall::answer) in one.
    pub async fn call(
        &self,
        method: u32,
        payload: impl Into<Payload>,
        timeout: Duration,
    ) -> Result<Frame, CallError> {
        self.start(method, payload, timeout).await?.answer().await
    }

    /// Routes answers to their calls until the session ends: `Ok` when it was closed, the
    /// error otherwise. Calls still waiting then fail with [`CallError::SessionEnded`].
    pub async fn dispatch(&self) -> Result<(), TransportError> {
        let ended = loop {
            match self.transport.recv().await {
                Ok(frame) => {
                    let waiter = self.pending().remove(&frame.header.msg_id);
                    let delivered = match waiter {
                        Some(tx) if frame.header.flags & RESPONSE != 0 => tx.send(frame).is_ok(),
                        _ => false,
                    };
                    if !delivered {
                        self.late.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(TransportError::Closed) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.pending().clear();
        ended
    }

    /// Answers that matched no waiting call (it had given up, or never existed).
    pub fn late_answers(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }

    /// The most calls that were in flight (started, answer not yet taken) at once.
    pub fn max_in_flight(&self) -> u64 {
        self.max_in_flight.load(Ordering::Relaxed)
    }
}

/// A call whose request was sent: await its answer with [`answer`](Self::answer).
pub struct PendingCall<'c, T: Transport> {
    client: &'c RpcClient<T>,
    msg_id: u64,
    rx: oneshot::Receiver<Frame>,
    deadline: Instant,
    timeout: Duration,
}

impl<T: Transport> PendingCall<'_, T> {
    /// The call's `msg_id`.
    pub fn msg_id(&self) -> u64 {
        self.msg_id
    }

    /// Waits for the answer until the call's deadline.
    pub async fn answer(mut self) -> Result<Frame, CallError> {
        let msg_id = self.msg_id;
        match tokio::time::timeout_at(self.deadline, &mut self.rx).await {
            Ok(Ok(frame)) if frame.header.flags & ERROR != 0 => Err(CallError::Remote {
                msg_id,
                message: String::from_utf8_lossy(frame.bytes()).into_owned(),
            }),
            Ok(Ok(frame)) => Ok(frame),
            Ok(Err(_)) => Err(CallError::SessionEnded { msg_id }),
            Err(_) => Err(CallError::DeadlineExceeded {
                msg_id,
                timeout: self.timeout,
            }),
        }
    }
}

impl<T: Transport> Drop for PendingCall<'_, T> {
    fn drop(&mut self) {
        self.client.pending().remove(&self.msg_id);
        self.client.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What [`serve`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerReport {
    /// Requests answered (including error answers).
    pub answered: u64,
    /// Error answers (unknown method, malformed request).
    pub errors: u64,
    /// Requests not answered because their deadline had passed.
    pub expired: u64,
    /// Delayed requests still waiting when the session ended.
    pub unanswered: u64,
}

/// Serves requests until the peer closes: [`ECHO`] at once, [`DELAY`] after its delay (so
/// answers go out of order), anything else with an [`ERROR`] answer. A request whose deadline
/// has passed (when it arrives, or when its answer is due) is not answered.
pub async fn serve<T: Transport + ?Sized>(t: &T) -> Result<ServerReport, TransportError> {
    let mut report = ServerReport::default();
    // Delayed answers by due time (and arrival, to keep equal times apart).
    let mut delayed: BTreeMap<(Instant, u64), Frame> = BTreeMap::new();
    let mut arrivals = 0u64;
    loop {
        let next_due = delayed.keys().next().map(|&(at, _)| at);
        tokio::select! {
            biased;
            () = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                while let Some(entry) = delayed.first_entry() {
                    if entry.key().0 > Instant::now() {
                        break;
                    }
                    answer(t, entry.remove(), &mut report).await?;
                }
            }
            request = t.recv() => {
                let request = match request {
                    Ok(r) => r,
                    Err(TransportError::Closed | TransportError::PeerDied) => break,
                    Err(e) => return Err(e),
                };
                let mut header = request.header;
                header.flags = RESPONSE;
                match request.header.method {
                    ECHO => answer(t, Frame::with_header(header, request.payload), &mut report).await?,
                    DELAY => match request.bytes().first_chunk::<4>() {
                        Some(ms) => {
                            let due = Instant::now() + Duration::from_millis(u32::from_le_bytes(*ms).into());
                            arrivals += 1;
                            delayed.insert((due, arrivals), Frame::with_header(header, request.payload));
                        }
                        None => {
                            header.flags |= ERROR;
                            let message = "a DELAY request starts with a 4-byte delay";
                            answer(t, Frame::with_header(header, message), &mut report).await?;
                        }
                    },
                    other => {
                        header.flags |= ERROR;
                        let message = format!("unknown method {other}").into_bytes();
                        answer(t, Frame::with_header(header, message), &mut report).await?;
                    }
                }
            }
        }
    }
    report.unanswered = delayed.len() as u64;
    Ok(report)
}

/// Sends `response` unless the request's deadline (carried in its header) has passed.
async fn answer<T: Transport + ?Sized>(
    t: &T,
    response: Frame,
    report: &mut ServerReport,
) -> Result<(), TransportError> {
    if expired(&response.header) {
        report.expired += 1;
        return Ok(());
    }
    if response.header.flags & ERROR != 0 {
        report.errors += 1;
    }
    report.answered += 1;
    match t.send(response).await {
        // The client left; what it did not wait for is not an error of the server.
        Ok(()) | Err(TransportError::Closed | TransportError::PeerDied) => Ok(()),
        Err(e) => Err(e),
    }
}
