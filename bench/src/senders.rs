//! Many tasks streaming small frames over one connection, the case write coalescing is for:
//! transport-net (`tcp://`, `unix://`) against what a user writes by hand, one tokio stream
//! framed with `LengthDelimitedCodec` and shared by the tasks behind a `tokio::sync::Mutex`
//! (one [`codec::send`] — ready, start, flush — per frame).
//!
//! The senders are tasks of a current-thread runtime on the calling thread; the receiver is a
//! thread of this process (pinned to the peer CPU when the placement pins), with its own
//! current-thread runtime, which counts the frames and checks each sender's sequence. Used by
//! the `*-4tx` rows ([`ManySenders`]) and the `coalesce` binary.

use super::codec::{self, send};
use super::cross::{CONNECT_TIMEOUT, runtime};
use super::generic::StreamOutcome;
use super::procs::{PlaceCtx, pin_current_thread};
use super::proto::Budget;
use super::session::Session;
use super::{BenchError, BenchResult};
use bytes::Bytes;
use futures_core::Stream;
use std::future::poll_fn;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_util::codec::Framed;
use transport_api::{Frame, Transport};

/// The socket family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// TCP over loopback.
    Tcp,
    /// A Unix stream socket.
    Unix,
}

/// Who frames the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// transport-net.
    Net,
    /// `LengthDelimitedCodec` behind a mutex, by hand.
    Codec,
}

/// One measurement: frames the receiver counted, from the first send to the last frame.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// Frames received (each sender's final empty frame excluded).
    pub frames: u64,
    /// From the first send until the receiver had every sender's final frame.
    pub elapsed: Duration,
}

impl Outcome {
    /// Frames per second.
    pub fn rate(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Frame `i` of sender `s`: `size` bytes (at least 12), sender and sequence in the first 12.
fn payload(s: u32, i: u64, size: usize) -> Vec<u8> {
    let mut p = vec![0x5A; size.max(12)];
    p[..4].copy_from_slice(&s.to_le_bytes());
    p[4..12].copy_from_slice(&i.to_le_bytes());
    p
}

/// Checks each sender's order and counts frames.
struct Order {
    next: Vec<u64>,
    frames: u64,
}

impl Order {
    fn new(senders: u32) -> Order {
        Order {
            next: vec![0; senders as usize],
            frames: 0,
        }
    }

    fn see(&mut self, b: &[u8]) -> BenchResult<()> {
        let word = |r: std::ops::Range<usize>| {
            b.get(r)
                .ok_or_else(|| BenchError::new(format!("a frame of {} bytes", b.len())))
        };
        let s = u32::from_le_bytes(word(0..4)?.try_into().expect("4 bytes")) as usize;
        let i = u64::from_le_bytes(word(4..12)?.try_into().expect("8 bytes"));
        if s >= self.next.len() {
            return Err(BenchError::new(format!(
                "a frame from sender {s}, of {} senders",
                self.next.len()
            )));
        }
        if self.next[s] != i {
            return Err(BenchError::new(format!(
                "sender {s}: frame {i} arrived, expected {}",
                self.next[s]
            )));
        }
        self.next[s] += 1;
        self.frames += 1;
        Ok(())
    }
}

/// A private directory for a measurement's Unix socket, removed with its contents on drop.
struct SocketDir(PathBuf);

impl SocketDir {
    fn new() -> BenchResult<SocketDir> {
        let dir = std::env::temp_dir().join(format!("bench-senders-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(SocketDir(dir))
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Accepts the receiver's connection, for at most [`CONNECT_TIMEOUT`] (the receiver thread
/// may have failed before connecting; its error is then reported by [`finish`]).
async fn accepted<T, E: std::fmt::Display>(
    accept: impl Future<Output = Result<T, E>>,
) -> BenchResult<T> {
    tokio::time::timeout(CONNECT_TIMEOUT, accept)
        .await
        .map_err(|_| BenchError::new("the receiver did not connect in time"))?
        .map_err(|e| BenchError::new(format!("accept failed: {e}")))
}

type Receiver = std::thread::JoinHandle<BenchResult<Instant>>;

/// Starts the receiver thread: pins it, builds its runtime, runs `body`.
fn receiver<F, Fut>(cpu: Option<usize>, body: F) -> BenchResult<Receiver>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = BenchResult<Instant>>,
{
    std::thread::Builder::new()
        .name("bench-receiver".into())
        .spawn(move || {
            if let Some(cpu) = cpu {
                pin_current_thread(cpu)
                    .map_err(|e| BenchError::new(format!("cannot pin to CPU {cpu}: {e}")))?;
            }
            runtime()?.block_on(body())
        })
        .map_err(|e| BenchError::new(format!("cannot start the receiver thread: {e}")))
}

/// The outcome of a measurement whose senders started at `start` (or failed): waits for the
/// receiver and reports its error first (a sender's error is then usually the consequence).
fn finish(sent: BenchResult<Instant>, rx: Receiver, counted: &AtomicU64) -> BenchResult<Outcome> {
    let end = rx
        .join()
        .map_err(|_| BenchError::new("the receiver thread panicked"))??;
    let start = sent?;
    Ok(Outcome {
        frames: counted.load(Ordering::Relaxed),
        elapsed: end.duration_since(start),
    })
}

/// Receives (`next`, each frame's bytes seen through `view`) until each of `senders` sent its
/// final empty frame; returns when that was.
async fn recv_all<B>(
    mut next: impl AsyncFnMut() -> BenchResult<B>,
    view: fn(&B) -> &[u8],
    senders: u32,
    order: &mut Order,
) -> BenchResult<Instant> {
    let mut ended = 0;
    loop {
        let f = next().await?;
        let b = view(&f);
        if b.is_empty() {
            ended += 1;
            if ended == senders {
                return Ok(Instant::now());
            }
            continue;
        }
        order.see(b)?;
    }
}

/// What one measurement sends.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// The socket family.
    pub family: Family,
    /// Sending tasks.
    pub senders: u32,
    /// Payload bytes per frame (at least 12 are sent: sender and sequence).
    pub size: usize,
    /// How long the tasks send.
    pub run: Duration,
    /// The CPU the receiver thread is pinned to, if any.
    pub cpu: Option<usize>,
}

/// transport-net: `senders` tasks send `size`-byte frames for `run`, then an empty frame each.
pub fn run_net(load: &Load) -> BenchResult<Outcome> {
    let l = *load;
    let dir = SocketDir::new()?;
    let path = dir.0.join("net.sock");
    let cfg = transport_net::NetConfig::default();
    let rt = runtime()?;
    let listener = rt.block_on(async {
        match l.family {
            Family::Tcp => transport_net::NetListener::bind_tcp("127.0.0.1:0", cfg.clone()).await,
            Family::Unix => transport_net::NetListener::bind_unix(&path, cfg.clone()),
        }
    })?;
    let addr = listener.local_address();
    let counted = Arc::new(AtomicU64::new(0));
    let c2 = counted.clone();
    let rx = receiver(l.cpu, move || async move {
        let cfg = transport_net::NetConfig::default();
        let t = match l.family {
            Family::Tcp => transport_net::connect_tcp(&addr, &cfg).await?,
            Family::Unix => transport_net::connect_unix(Path::new(&addr), &cfg).await?,
        };
        let mut order = Order::new(l.senders);
        let end = recv_all(
            async || Ok(t.recv().await?),
            |f: &Frame| f.bytes(),
            l.senders,
            &mut order,
        )
        .await?;
        c2.store(order.frames, Ordering::Relaxed);
        Ok(end)
    })?;
    let sent = rt.block_on(async {
        let t = Arc::new(accepted(listener.accept()).await?);
        spawn_senders(&l, move |p| {
            let t = t.clone();
            async move { Ok(t.send(Frame::new(p)).await?) }
        })
        .await
    });
    finish(sent, rx, &counted)
}

/// `senders` tasks sharing stream `s`, framed by the codec, behind a mutex.
async fn codec_senders<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    s: S,
    load: &Load,
) -> BenchResult<Instant> {
    let c = Arc::new(tokio::sync::Mutex::new(Framed::new(
        s,
        codec::length_delimited(),
    )));
    spawn_senders(load, move |p| {
        let c = c.clone();
        async move { send(&mut *c.lock().await, Bytes::from(p)).await }
    })
    .await
}

/// Spawns the load's sending tasks, each sending its frames through `send` for its run (then an
/// empty one), and waits for them; returns when they started. Every frame was sent when this
/// returns (`send` returns once its frame is written), so dropping the connection then loses
/// nothing the receiver counts.
async fn spawn_senders<F, Fut>(load: &Load, send: F) -> BenchResult<Instant>
where
    F: Fn(Vec<u8>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = BenchResult<()>> + Send,
{
    let Load {
        senders, size, run, ..
    } = *load;
    let start = Instant::now();
    let tasks: Vec<_> = (0..senders)
        .map(|s| {
            let send = send.clone();
            tokio::spawn(async move {
                let mut i = 0;
                while start.elapsed() < run {
                    send(payload(s, i, size)).await?;
                    i += 1;
                }
                send(Vec::new()).await
            })
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|e| BenchError::new(format!("a sender task failed: {e}")))??;
    }
    Ok(start)
}

async fn codec_recv<S: AsyncRead + AsyncWrite + Unpin>(
    s: S,
    senders: u32,
    counted: &AtomicU64,
) -> BenchResult<Instant> {
    let mut c = Framed::new(s, codec::length_delimited());
    let mut order = Order::new(senders);
    let end = recv_all(
        async || {
            let f = poll_fn(|cx| Pin::new(&mut c).poll_next(cx))
                .await
                .ok_or_else(|| BenchError::new("the codec stream ended"))??;
            Ok(f)
        },
        |b: &bytes::BytesMut| &b[..],
        senders,
        &mut order,
    )
    .await?;
    counted.store(order.frames, Ordering::Relaxed);
    Ok(end)
}

/// The hand-written baseline of [`run_net`].
pub fn run_codec(load: &Load) -> BenchResult<Outcome> {
    let l = *load;
    let rt = runtime()?;
    let counted = Arc::new(AtomicU64::new(0));
    let c2 = counted.clone();
    match l.family {
        Family::Tcp => {
            let listener = rt.block_on(TcpListener::bind("127.0.0.1:0"))?;
            let addr = listener.local_addr()?;
            let rx = receiver(l.cpu, move || async move {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                codec_recv(s, l.senders, &c2).await
            })?;
            let sent = rt.block_on(async {
                let (s, _) = accepted(listener.accept()).await?;
                s.set_nodelay(true)?;
                codec_senders(s, &l).await
            });
            finish(sent, rx, &counted)
        }
        Family::Unix => {
            let dir = SocketDir::new()?;
            let path = dir.0.join("codec.sock");
            let listener = {
                let _g = rt.enter();
                UnixListener::bind(&path)?
            };
            let p = path.clone();
            let rx = receiver(l.cpu, move || async move {
                let s = UnixStream::connect(&p).await?;
                codec_recv(s, l.senders, &c2).await
            })?;
            let sent = rt.block_on(async {
                let (s, _) = accepted(listener.accept()).await?;
                codec_senders(s, &l).await
            });
            finish(sent, rx, &counted)
        }
    }
}

/// The parent side of a `*-4tx` row: each stream cell is one measurement of [`run_net`] or
/// [`run_codec`] lasting the budget's measuring time.
pub struct ManySenders {
    family: Family,
    framing: Framing,
    senders: u32,
    cpu: Option<usize>,
}

impl ManySenders {
    /// A row of `senders` sending tasks.
    pub fn new(place: &PlaceCtx, family: Family, framing: Framing, senders: u32) -> ManySenders {
        ManySenders {
            family,
            framing,
            senders,
            cpu: place.child_cpu,
        }
    }
}

impl Session for ManySenders {
    fn rtt(&mut self, _size: usize, _budget: &Budget) -> BenchResult<Vec<u64>> {
        Err(BenchError::new("the many-sender rows measure streams only"))
    }

    fn stream(&mut self, size: usize, budget: &Budget) -> BenchResult<StreamOutcome> {
        let run = match self.framing {
            Framing::Net => run_net,
            Framing::Codec => run_codec,
        };
        let o = run(&Load {
            family: self.family,
            senders: self.senders,
            size,
            run: budget.measure,
            cpu: self.cpu,
        })?;
        Ok(StreamOutcome {
            msgs: o.frames,
            bytes: o.frames * size.max(12) as u64,
            elapsed: o.elapsed,
        })
    }

    fn finish(&mut self) -> BenchResult<()> {
        Ok(())
    }
}
