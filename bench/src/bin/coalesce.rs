//! Many tasks streaming small frames over one connection: `tcp://` or `unix://` (transport-net)
//! against what a user writes by hand, one tokio stream framed with `LengthDelimitedCodec` and
//! shared by the tasks behind a `tokio::sync::Mutex` (one `send`, ready + start + flush, per
//! frame). Sender and receiver run on two threads of one process, each with a current-thread
//! runtime; the receiver counts frames and checks each sender's sequence.
//!
//! ```sh
//! cargo run --release -p transport-bench --bin coalesce -- [tcp|unix] [SENDERS] [SIZE] [ROUNDS]
//! ```
//!
//! Prints frames per second of both and their ratio for each round (alternating order), then
//! the median ratio. Defaults: tcp, 4 senders, 64 bytes, 5 rounds.

use bytes::Bytes;
use futures_core::Stream;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use transport_api::{Frame, Transport};
use transport_bench::codec::send;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long each measurement sends.
const RUN: Duration = Duration::from_millis(1500);

fn runtime() -> tokio::runtime::Runtime {
    transport_bench::cross::runtime().expect("a tokio runtime")
}

/// Frame `i` of sender `s`: `size` bytes, sender and sequence in the first 12.
fn payload(s: u32, i: u64, size: usize) -> Vec<u8> {
    let mut p = vec![0x5A; size.max(12)];
    p[..4].copy_from_slice(&s.to_le_bytes());
    p[4..12].copy_from_slice(&i.to_le_bytes());
    p
}

/// Checks per-sender order; returns the frames counted.
#[derive(Default)]
struct Order {
    next: Vec<u64>,
    frames: u64,
}

impl Order {
    fn see(&mut self, b: &[u8]) -> Result<(), BoxError> {
        let s = u32::from_le_bytes(b[..4].try_into()?) as usize;
        let i = u64::from_le_bytes(b[4..12].try_into()?);
        if self.next.len() <= s {
            self.next.resize(s + 1, 0);
        }
        if self.next[s] != i {
            return Err(format!("sender {s}: frame {i} arrived, expected {}", self.next[s]).into());
        }
        self.next[s] += 1;
        self.frames += 1;
        Ok(())
    }
}

/// transport-net: `senders` tasks send until the deadline, then a frame of length 0 each.
fn run_net(kind: &str, senders: u32, size: usize) -> Result<f64, BoxError> {
    let dir = std::env::temp_dir().join(format!("coalesce-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("net.sock");
    let _ = std::fs::remove_file(&path);
    let cfg = transport_net::NetConfig::default();
    let rt = runtime();
    let (listener, addr) = rt.block_on(async {
        let l = match kind {
            "tcp" => transport_net::NetListener::bind_tcp("127.0.0.1:0", cfg.clone()).await?,
            _ => transport_net::NetListener::bind_unix(&path, cfg.clone())?,
        };
        let a = l.local_address();
        Ok::<_, BoxError>((l, a))
    })?;
    let kind_owned = kind.to_string();
    let receiver = std::thread::spawn(move || -> Result<(u64, Instant), BoxError> {
        let rt = runtime();
        rt.block_on(async {
            let cfg = transport_net::NetConfig::default();
            let t = match kind_owned.as_str() {
                "tcp" => transport_net::connect_tcp(&addr, &cfg).await?,
                _ => transport_net::connect_unix(&addr, &cfg).await?,
            };
            let (mut order, mut ended) = (Order::default(), 0);
            loop {
                let f = t.recv().await?;
                if f.bytes().is_empty() {
                    ended += 1;
                    if ended == senders {
                        return Ok((order.frames, Instant::now()));
                    }
                    continue;
                }
                order.see(f.bytes())?;
            }
        })
    });
    let start = rt.block_on(async {
        let t = Arc::new(listener.accept().await?);
        let start = Instant::now();
        let tasks: Vec<_> = (0..senders)
            .map(|s| {
                let t = t.clone();
                tokio::spawn(async move {
                    let mut i = 0;
                    while start.elapsed() < RUN {
                        t.send(Frame::new(payload(s, i, size))).await?;
                        i += 1;
                    }
                    t.send(Frame::new(Vec::new())).await
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        Ok::<_, BoxError>((start, t))
    })?;
    let (frames, end) = receiver.join().map_err(|_| "the receiver panicked")??;
    drop(start.1);
    Ok(frames as f64 / end.duration_since(start.0).as_secs_f64())
}

async fn codec_recv_all<S: AsyncRead + AsyncWrite + Unpin>(
    mut c: Framed<S, LengthDelimitedCodec>,
    senders: u32,
) -> Result<(u64, Instant), BoxError> {
    let (mut order, mut ended) = (Order::default(), 0);
    loop {
        let f = poll_fn(|cx| Pin::new(&mut c).poll_next(cx))
            .await
            .ok_or("the codec stream ended")??;
        if f.is_empty() {
            ended += 1;
            if ended == senders {
                return Ok((order.frames, Instant::now()));
            }
            continue;
        }
        order.see(&f)?;
    }
}

async fn codec_senders<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    c: Framed<S, LengthDelimitedCodec>,
    senders: u32,
    size: usize,
) -> Result<Instant, BoxError> {
    let c = Arc::new(tokio::sync::Mutex::new(c));
    let start = Instant::now();
    let tasks: Vec<_> = (0..senders)
        .map(|s| {
            let c = c.clone();
            tokio::spawn(async move {
                let mut i = 0;
                while start.elapsed() < RUN {
                    send(&mut *c.lock().await, Bytes::from(payload(s, i, size))).await?;
                    i += 1;
                }
                Ok::<_, BoxError>(send(&mut *c.lock().await, Bytes::new()).await?)
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(start)
}

/// The hand-written baseline.
fn run_codec(kind: &str, senders: u32, size: usize) -> Result<f64, BoxError> {
    let dir = std::env::temp_dir().join(format!("coalesce-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("codec.sock");
    let _ = std::fs::remove_file(&path);
    let rt = runtime();
    let codec = LengthDelimitedCodec::new;
    if kind == "tcp" {
        let l = rt.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let addr = l.local_addr()?;
        let receiver = std::thread::spawn(move || {
            runtime().block_on(async {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                codec_recv_all(Framed::new(s, codec()), senders).await
            })
        });
        let start = rt.block_on(async {
            let (s, _) = l.accept().await?;
            s.set_nodelay(true)?;
            codec_senders(Framed::new(s, codec()), senders, size).await
        })?;
        let (frames, end) = receiver.join().map_err(|_| "the receiver panicked")??;
        return Ok(frames as f64 / end.duration_since(start).as_secs_f64());
    }
    let l = {
        let _g = rt.enter();
        UnixListener::bind(&path)?
    };
    let p = path.clone();
    let receiver = std::thread::spawn(move || {
        runtime().block_on(async {
            let s = UnixStream::connect(&p).await?;
            codec_recv_all(Framed::new(s, codec()), senders).await
        })
    });
    let start = rt.block_on(async {
        let (s, _) = l.accept().await?;
        codec_senders(Framed::new(s, codec()), senders, size).await
    })?;
    let (frames, end) = receiver.join().map_err(|_| "the receiver panicked")??;
    Ok(frames as f64 / end.duration_since(start).as_secs_f64())
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kind = args.first().map_or("tcp", String::as_str).to_string();
    if kind != "tcp" && kind != "unix" {
        return Err(format!("backend `{kind}`: expected tcp or unix").into());
    }
    let num = |i: usize, d: u64| -> Result<u64, BoxError> {
        args.get(i).map_or(Ok(d), |s| Ok(s.parse()?))
    };
    let senders = u32::try_from(num(1, 4)?.clamp(1, 1024))?;
    let size = usize::try_from(num(2, 64)?.clamp(12, 1 << 20))?;
    let rounds = num(3, 5)?.clamp(1, 50);
    println!("{kind}: {senders} senders, {size}-byte frames, {rounds} rounds of {RUN:?} each");
    let mut ratios = Vec::new();
    for r in 0..rounds {
        let (net, codec) = if r % 2 == 0 {
            let n = run_net(&kind, senders, size)?;
            (n, run_codec(&kind, senders, size)?)
        } else {
            let c = run_codec(&kind, senders, size)?;
            (run_net(&kind, senders, size)?, c)
        };
        println!(
            "round {r}: transport-net {net:>10.0} frames/s, codec {codec:>10.0} frames/s, ratio {:.2}",
            net / codec
        );
        ratios.push(net / codec);
    }
    ratios.sort_by(f64::total_cmp);
    println!("median ratio {:.2}", ratios[ratios.len() / 2]);
    Ok(())
}
