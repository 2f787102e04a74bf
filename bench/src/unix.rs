//! Baseline `unix`: a tokio `UnixStream` between two processes carrying length-prefixed frames,
//! written directly (no `Transport` in between): one `write` per frame, a 64 KiB `BufReader`
//! on the receiving side.
//!
//! Wire format: `len: u32 LE`, `flags: u32 LE`, `msg_id: u64 LE`, then `len` payload bytes.

use super::cli::ChildArgs;
use super::cross::{self, CONNECT_TIMEOUT, Flavor, runtime_of};
use super::generic::StreamOutcome;
use super::procs::{ChildProc, PlaceCtx, RendezvousDir, retry};
use super::proto::{
    Budget, Deadline, F_CMD_RTT, F_CMD_STREAM, F_DATA, F_END, F_PING, F_QUIT, F_SUMMARY, MAX_SIZE,
    Pattern, Tally, check,
};
use super::session::Session;
use super::{BenchError, BenchResult};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Frame header length.
pub const HDR: usize = 16;
const BUF_CAP: usize = 64 * 1024;

fn put_header(dst: &mut [u8], len: usize, flags: u32, id: u64) {
    dst[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    dst[4..8].copy_from_slice(&flags.to_le_bytes());
    dst[8..16].copy_from_slice(&id.to_le_bytes());
}

/// Reads one frame into `buf` (header included, so it can be written back as is) and returns
/// its flags and message id. The payload is `buf[HDR..]`.
async fn read_frame(s: &mut BufReader<UnixStream>, buf: &mut Vec<u8>) -> BenchResult<(u32, u64)> {
    let mut h = [0u8; HDR];
    s.read_exact(&mut h).await?;
    let w32 = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let len = w32(0) as usize;
    if len > MAX_SIZE + 64 {
        return Err(BenchError::new(format!(
            "unix: frame of {len} bytes is too large"
        )));
    }
    buf.resize(HDR + len, 0);
    buf[..HDR].copy_from_slice(&h);
    s.read_exact(&mut buf[HDR..]).await?;
    let mut id = [0u8; 8];
    id.copy_from_slice(&h[8..16]);
    Ok((w32(4), u64::from_le_bytes(id)))
}

async fn write_control(s: &mut BufReader<UnixStream>, flags: u32) -> BenchResult<()> {
    let mut h = [0u8; HDR];
    put_header(&mut h, 0, flags, 0);
    s.write_all(&h).await?;
    Ok(())
}

/// Parent side of the `unix` row.
pub struct UnixSession {
    /// The stream and buffers, moved into the measurement's future while it runs (which runs
    /// as a task on a multi-thread runtime, see [`cross::drive`]).
    io: Option<Io>,
    rt: tokio::runtime::Runtime,
    child: Option<ChildProc>,
    _dir: RendezvousDir,
}

/// What a measurement of the `unix` row works on.
struct Io {
    s: BufReader<UnixStream>,
    wire: Vec<u8>,
    rbuf: Vec<u8>,
    pattern: Pattern,
}

impl UnixSession {
    /// Binds a listener in a private directory, starts the peer process and accepts it.
    pub fn start(place: &PlaceCtx) -> BenchResult<UnixSession> {
        Self::start_on(place, "unix", Flavor::CurrentThread)
    }

    /// [`UnixSession::start`] for the row `name`, both sides on runtimes of `flavor`.
    pub fn start_on(place: &PlaceCtx, name: &str, flavor: Flavor) -> BenchResult<UnixSession> {
        let rt = runtime_of(flavor)?;
        let dir = RendezvousDir::new(name)?;
        let path = dir.join("unix.sock");
        let listener = {
            let _g = rt.enter();
            UnixListener::bind(&path)?
        };
        let child = ChildProc::spawn(place, name, &[], Some(&path))?;
        let (s, _) = rt
            .block_on(async { tokio::time::timeout(CONNECT_TIMEOUT, listener.accept()).await })
            .map_err(|_| BenchError::new("the unix peer did not connect in time"))??;
        Ok(UnixSession {
            io: Some(Io {
                s: BufReader::with_capacity(BUF_CAP, s),
                wire: Vec::new(),
                rbuf: Vec::new(),
                pattern: Pattern::new(MAX_SIZE),
            }),
            rt,
            child: Some(child),
            _dir: dir,
        })
    }

    /// Runs `f` over the session's stream and buffers (see [`cross::drive`] for where).
    fn measure<R, F>(&mut self, f: impl FnOnce(Io) -> F) -> BenchResult<R>
    where
        R: Send + 'static,
        F: Future<Output = (Io, BenchResult<R>)> + Send + 'static,
    {
        let io = self
            .io
            .take()
            .ok_or_else(|| BenchError::new("unix: an earlier measurement failed"))?;
        let (io, r) = cross::drive(&self.rt, f(io))?;
        self.io = Some(io);
        r
    }
}

impl Io {
    /// The parent side of the round-trip measurement.
    async fn rtt(&mut self, size: usize, budget: &Budget) -> BenchResult<Vec<u64>> {
        let Io {
            s,
            wire,
            rbuf,
            pattern,
        } = self;
        write_control(s, F_CMD_RTT).await?;
        let warm_end = Instant::now() + budget.warmup;
        let end = warm_end + budget.measure;
        let mut samples = Vec::with_capacity(4096);
        wire.resize(HDR + size, 0);
        let mut seq = 0u64;
        loop {
            seq += 1;
            budget.idle();
            let t0 = Instant::now();
            put_header(wire, size, F_PING, seq);
            pattern.fill(&mut wire[HDR..], seq);
            s.write_all(wire).await?;
            let (flags, id) = read_frame(s, rbuf).await?;
            let t1 = Instant::now();
            if flags != F_PING || id != seq || !check(&rbuf[HDR..], seq) {
                return Err(BenchError::new(format!(
                    "unix rtt: bad echo for ping {seq}"
                )));
            }
            if budget.record(&mut samples, t0, t1, warm_end, end) {
                break;
            }
        }
        write_control(s, F_END).await?;
        match read_frame(s, rbuf).await? {
            (F_END, _) => Ok(samples),
            (f, _) => Err(BenchError::new(format!(
                "unix rtt: expected END, got {f:#x}"
            ))),
        }
    }

    /// The parent side of the one-way measurement.
    async fn stream(&mut self, size: usize, budget: &Budget) -> BenchResult<StreamOutcome> {
        let Io {
            s,
            wire,
            rbuf,
            pattern,
        } = self;
        write_control(s, F_CMD_STREAM).await?;
        let deadline = Deadline::new(budget, size);
        let start = Instant::now();
        wire.resize(HDR + size, 0);
        let mut sent = 0u64;
        while !deadline.reached(sent) {
            sent += 1;
            put_header(wire, size, F_DATA, sent);
            pattern.fill(&mut wire[HDR..], sent);
            s.write_all(wire).await?;
        }
        write_control(s, F_END).await?;
        let (flags, _) = read_frame(s, rbuf).await?;
        let elapsed = start.elapsed();
        let tally = Tally::from_bytes(&rbuf[HDR..]).filter(|_| flags == F_SUMMARY);
        let tally = tally.ok_or_else(|| BenchError::new("unix stream: bad summary"))?;
        tally.verify(sent, size)?;
        Ok(StreamOutcome {
            msgs: sent,
            bytes: tally.bytes,
            elapsed,
        })
    }
}

impl Session for UnixSession {
    fn rtt(&mut self, size: usize, budget: &Budget) -> BenchResult<Vec<u64>> {
        let budget = *budget;
        self.measure(move |mut io: Io| async move {
            let r = io.rtt(size, &budget).await;
            (io, r)
        })
    }

    fn stream(&mut self, size: usize, budget: &Budget) -> BenchResult<StreamOutcome> {
        let budget = *budget;
        self.measure(move |mut io: Io| async move {
            let r = io.stream(size, &budget).await;
            (io, r)
        })
    }

    fn finish(&mut self) -> BenchResult<()> {
        if let Some(io) = &mut self.io {
            self.rt.block_on(write_control(&mut io.s, F_QUIT))?;
        }
        match self.child.take() {
            Some(c) => c.wait(Duration::from_secs(10)),
            None => Ok(()),
        }
    }
}

/// Peer side of the `unix` row: connects to the rendezvous path and obeys the parent.
pub fn child(args: &ChildArgs) -> BenchResult<()> {
    child_on(args, Flavor::CurrentThread)
}

/// [`child`] on a runtime of `flavor`.
pub fn child_on(args: &ChildArgs, flavor: Flavor) -> BenchResult<()> {
    let path = args
        .rendezvous
        .clone()
        .ok_or_else(|| BenchError::new("missing --rendezvous"))?;
    cross::drive(&runtime_of(flavor)?, async move {
        let s = retry(CONNECT_TIMEOUT, || UnixStream::connect(&path)).await?;
        let mut s = BufReader::with_capacity(BUF_CAP, s);
        let mut buf = Vec::new();
        loop {
            let (flags, _) = read_frame(&mut s, &mut buf).await?;
            match flags {
                F_CMD_RTT => loop {
                    match read_frame(&mut s, &mut buf).await? {
                        (F_PING, _) => s.write_all(&buf).await?,
                        (F_END, _) => {
                            write_control(&mut s, F_END).await?;
                            break;
                        }
                        (f, _) => return Err(BenchError::new(format!("unix echo: flags {f:#x}"))),
                    }
                },
                F_CMD_STREAM => {
                    let mut tally = Tally::default();
                    loop {
                        match read_frame(&mut s, &mut buf).await? {
                            (F_DATA, _) => tally.take(&buf[HDR..]),
                            (F_END, _) => break,
                            (f, _) => {
                                return Err(BenchError::new(format!("unix stream: flags {f:#x}")));
                            }
                        }
                    }
                    let mut out = [0u8; HDR + Tally::ENCODED_LEN];
                    put_header(&mut out, Tally::ENCODED_LEN, F_SUMMARY, 0);
                    out[HDR..].copy_from_slice(&tally.to_bytes());
                    s.write_all(&out).await?;
                }
                F_QUIT => return Ok(()),
                f => return Err(BenchError::new(format!("unix: unexpected command {f:#x}"))),
            }
        }
    })?
}
