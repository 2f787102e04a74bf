//! Baselines `tcp-codec` and `unix-codec`: tokio `TcpStream` / `UnixStream` between two
//! processes framed with `tokio_util::codec::LengthDelimitedCodec`, written the way a user
//! would by hand (one `send` — ready, start, flush — per frame; `next` per frame received).
//!
//! Each codec frame carries `flags: u32 LE`, `msg_id: u64 LE`, then the payload.

use super::cli::ChildArgs;
use super::cross::{CONNECT_TIMEOUT, runtime};
use super::generic::StreamOutcome;
use super::procs::{ChildProc, PlaceCtx, RendezvousDir, retry};
use super::proto::{
    Budget, Deadline, F_CMD_RTT, F_CMD_STREAM, F_DATA, F_END, F_PING, F_QUIT, F_SUMMARY, MAX_SIZE,
    Pattern, Tally, check,
};
use super::session::Session;
use super::{BenchError, BenchResult};
use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use futures_sink::Sink;
use std::future::poll_fn;
use std::path::Path;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// Bytes before the payload inside each codec frame.
const HDR: usize = 12;

type Conn<S> = Framed<S, LengthDelimitedCodec>;

/// The codec of every baseline here: length-delimited frames up to the bench's largest.
pub fn length_delimited() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_SIZE + 64)
        .new_codec()
}

/// What `SinkExt::send` does: wait for room, queue the frame, flush (one write per frame, as a
/// user writes it by hand).
pub async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<S>,
    frame: Bytes,
) -> BenchResult<()> {
    poll_fn(|cx| Sink::<Bytes>::poll_ready(Pin::new(&mut *c), cx)).await?;
    Pin::new(&mut *c).start_send(frame)?;
    poll_fn(|cx| Sink::<Bytes>::poll_flush(Pin::new(&mut *c), cx)).await?;
    Ok(())
}

fn frame(flags: u32, id: u64, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(HDR + payload.len());
    b.extend_from_slice(&flags.to_le_bytes());
    b.extend_from_slice(&id.to_le_bytes());
    b.extend_from_slice(payload);
    b.freeze()
}

/// Receives one frame: (flags, id, the whole frame; payload at `[HDR..]`).
async fn recv<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<S>,
) -> BenchResult<(u32, u64, BytesMut)> {
    let f = poll_fn(|cx| Pin::new(&mut *c).poll_next(cx))
        .await
        .ok_or_else(|| BenchError::new("codec: the peer closed the stream"))??;
    if f.len() < HDR {
        return Err(BenchError::new(format!(
            "codec: frame of {} bytes",
            f.len()
        )));
    }
    let flags = u32::from_le_bytes([f[0], f[1], f[2], f[3]]);
    let mut id = [0u8; 8];
    id.copy_from_slice(&f[4..HDR]);
    Ok((flags, u64::from_le_bytes(id), f))
}

/// Parent side of a codec row.
pub struct CodecSession<S> {
    c: Conn<S>,
    rt: tokio::runtime::Runtime,
    wire: Vec<u8>,
    pattern: Pattern,
    child: Option<ChildProc>,
    _dir: RendezvousDir,
    name: &'static str,
}

/// Starts the `tcp-codec` row: listens on loopback port 0, tells the peer the port through
/// the rendezvous file.
pub fn start_tcp(place: &PlaceCtx) -> BenchResult<CodecSession<TcpStream>> {
    let rt = runtime()?;
    let dir = RendezvousDir::new("tcp-codec")?;
    let path = dir.join("port");
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0"))?;
    publish(&path, &listener.local_addr()?.to_string())?;
    let child = ChildProc::spawn(place, "tcp-codec", &[], Some(&path))?;
    let (s, _) = rt
        .block_on(async { tokio::time::timeout(CONNECT_TIMEOUT, listener.accept()).await })
        .map_err(|_| BenchError::new("the tcp-codec peer did not connect in time"))??;
    s.set_nodelay(true)?;
    Ok(CodecSession::new(s, rt, child, dir, "tcp-codec"))
}

/// Starts the `unix-codec` row.
pub fn start_unix(place: &PlaceCtx) -> BenchResult<CodecSession<UnixStream>> {
    let rt = runtime()?;
    let dir = RendezvousDir::new("unix-codec")?;
    let path = dir.join("unix.sock");
    let listener = {
        let _g = rt.enter();
        UnixListener::bind(&path)?
    };
    let child = ChildProc::spawn(place, "unix-codec", &[], Some(&path))?;
    let (s, _) = rt
        .block_on(async { tokio::time::timeout(CONNECT_TIMEOUT, listener.accept()).await })
        .map_err(|_| BenchError::new("the unix-codec peer did not connect in time"))??;
    Ok(CodecSession::new(s, rt, child, dir, "unix-codec"))
}

/// Writes `text` to `path` whole (through a rename), for a peer that polls for it.
pub fn publish(path: &Path, text: &str) -> BenchResult<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

impl<S: AsyncRead + AsyncWrite + Unpin> CodecSession<S> {
    fn new(
        s: S,
        rt: tokio::runtime::Runtime,
        child: ChildProc,
        dir: RendezvousDir,
        name: &'static str,
    ) -> Self {
        CodecSession {
            c: Framed::new(s, length_delimited()),
            rt,
            wire: Vec::new(),
            pattern: Pattern::new(MAX_SIZE),
            child: Some(child),
            _dir: dir,
            name,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session for CodecSession<S> {
    fn rtt(&mut self, size: usize, budget: &Budget) -> BenchResult<Vec<u64>> {
        let CodecSession {
            c,
            rt,
            wire,
            pattern,
            name,
            ..
        } = self;
        rt.block_on(async {
            send(c, frame(F_CMD_RTT, 0, &[])).await?;
            let warm_end = Instant::now() + budget.warmup;
            let end = warm_end + budget.measure;
            let mut samples = Vec::with_capacity(4096);
            wire.resize(size, 0);
            let mut seq = 0u64;
            loop {
                seq += 1;
                budget.idle();
                let t0 = Instant::now();
                pattern.fill(wire, seq);
                send(c, frame(F_PING, seq, wire)).await?;
                let (flags, id, f) = recv(c).await?;
                let t1 = Instant::now();
                if flags != F_PING || id != seq || !check(&f[HDR..], seq) {
                    return Err(BenchError::new(format!(
                        "{name} rtt: bad echo for ping {seq}"
                    )));
                }
                if budget.record(&mut samples, t0, t1, warm_end, end) {
                    break;
                }
            }
            send(c, frame(F_END, 0, &[])).await?;
            match recv(c).await? {
                (F_END, _, _) => Ok(samples),
                (f, _, _) => Err(BenchError::new(format!(
                    "{name} rtt: expected END, got {f:#x}"
                ))),
            }
        })
    }

    fn stream(&mut self, size: usize, budget: &Budget) -> BenchResult<StreamOutcome> {
        let CodecSession {
            c,
            rt,
            wire,
            pattern,
            name,
            ..
        } = self;
        rt.block_on(async {
            send(c, frame(F_CMD_STREAM, 0, &[])).await?;
            let deadline = Deadline::new(budget, size);
            let start = Instant::now();
            wire.resize(size, 0);
            let mut sent = 0u64;
            while !deadline.reached(sent) {
                sent += 1;
                pattern.fill(wire, sent);
                send(c, frame(F_DATA, sent, wire)).await?;
            }
            send(c, frame(F_END, 0, &[])).await?;
            let (flags, _, f) = recv(c).await?;
            let elapsed = start.elapsed();
            let tally = Tally::from_bytes(&f[HDR..]).filter(|_| flags == F_SUMMARY);
            let tally =
                tally.ok_or_else(|| BenchError::new(format!("{name} stream: bad summary")))?;
            tally.verify(sent, size)?;
            Ok(StreamOutcome {
                msgs: sent,
                bytes: tally.bytes,
                elapsed,
            })
        })
    }

    fn finish(&mut self) -> BenchResult<()> {
        let CodecSession { c, rt, .. } = self;
        rt.block_on(send(c, frame(F_QUIT, 0, &[])))?;
        match self.child.take() {
            Some(ch) => ch.wait(Duration::from_secs(10)),
            None => Ok(()),
        }
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(s: S) -> BenchResult<()> {
    let mut c = Framed::new(s, length_delimited());
    loop {
        let (flags, _, _) = recv(&mut c).await?;
        match flags {
            F_CMD_RTT => loop {
                match recv(&mut c).await? {
                    (F_PING, _, f) => send(&mut c, f.freeze()).await?,
                    (F_END, _, _) => {
                        send(&mut c, frame(F_END, 0, &[])).await?;
                        break;
                    }
                    (f, _, _) => return Err(BenchError::new(format!("codec echo: flags {f:#x}"))),
                }
            },
            F_CMD_STREAM => {
                let mut tally = Tally::default();
                loop {
                    match recv(&mut c).await? {
                        (F_DATA, _, f) => tally.take(&f[HDR..]),
                        (F_END, _, _) => break,
                        (f, _, _) => {
                            return Err(BenchError::new(format!("codec stream: flags {f:#x}")));
                        }
                    }
                }
                send(&mut c, frame(F_SUMMARY, 0, &tally.to_bytes())).await?;
            }
            F_QUIT => return Ok(()),
            f => return Err(BenchError::new(format!("codec: unexpected command {f:#x}"))),
        }
    }
}

/// Peer side of `tcp-codec`: reads the port from the rendezvous file and connects.
pub fn tcp_child(args: &ChildArgs) -> BenchResult<()> {
    let path = args
        .rendezvous
        .clone()
        .ok_or_else(|| BenchError::new("missing --rendezvous"))?;
    runtime()?.block_on(async {
        let s = retry(CONNECT_TIMEOUT, || async {
            let addr = std::fs::read_to_string(&path)?;
            TcpStream::connect(addr.trim()).await
        })
        .await?;
        s.set_nodelay(true)?;
        serve(s).await
    })
}

/// Peer side of `unix-codec`.
pub fn unix_child(args: &ChildArgs) -> BenchResult<()> {
    let path = args
        .rendezvous
        .clone()
        .ok_or_else(|| BenchError::new("missing --rendezvous"))?;
    runtime()?.block_on(async {
        let s = retry(CONNECT_TIMEOUT, || UnixStream::connect(&path)).await?;
        serve(s).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_codec_peer_echoes_tallies_and_quits() {
        let rt = runtime().unwrap();
        rt.block_on(async {
            let (a, b) = UnixStream::pair().unwrap();
            let peer = tokio::spawn(serve(b));
            let mut c = Framed::new(a, length_delimited());
            let pattern = Pattern::new(MAX_SIZE);
            let mut w = vec![0u8; 100];

            send(&mut c, frame(F_CMD_RTT, 0, &[])).await.unwrap();
            pattern.fill(&mut w, 1);
            send(&mut c, frame(F_PING, 1, &w)).await.unwrap();
            let (flags, id, back) = recv(&mut c).await.unwrap();
            assert_eq!((flags, id), (F_PING, 1));
            assert!(check(&back[HDR..], 1));
            send(&mut c, frame(F_END, 0, &[])).await.unwrap();
            assert_eq!(recv(&mut c).await.unwrap().0, F_END);

            send(&mut c, frame(F_CMD_STREAM, 0, &[])).await.unwrap();
            for seq in 1..=3 {
                pattern.fill(&mut w, seq);
                send(&mut c, frame(F_DATA, seq, &w)).await.unwrap();
            }
            send(&mut c, frame(F_END, 0, &[])).await.unwrap();
            let (flags, _, f) = recv(&mut c).await.unwrap();
            assert_eq!(flags, F_SUMMARY);
            Tally::from_bytes(&f[HDR..])
                .unwrap()
                .verify(3, 100)
                .unwrap();

            send(&mut c, frame(F_QUIT, 0, &[])).await.unwrap();
            peer.await.unwrap().unwrap();
        });
    }
}
