//! The benchmark written once over [`Transport`]: any backend, in one process or two.
//!
//! Parent side: [`rtt`] and [`stream_send`] (then [`quit`]). Peer side: [`serve`], which runs
//! [`echo`] or [`stream_recv`] as the parent commands. Control travels in
//! [`FrameHeader::flags`](transport_api::FrameHeader::flags) ([`proto`](super::proto) `F_*`).

use super::proto::{
    Budget, Deadline, F_CMD_RTT, F_CMD_STREAM, F_DATA, F_END, F_PING, F_QUIT, F_SUMMARY, Pattern,
    Tally, check, nanos,
};
use super::{BenchError, BenchResult};
use bytes::Bytes;
use std::time::{Duration, Instant};
use transport_api::{Frame, Transport, TransportError};

/// Outcome of a one-way stream measurement.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StreamOutcome {
    /// Messages sent and verified by the receiver.
    pub msgs: u64,
    /// Payload bytes sent and verified by the receiver.
    pub bytes: u64,
    /// From the first send until the receiver's summary arrived.
    pub elapsed: Duration,
}

fn control(flags: u32) -> Frame {
    Frame::new(Bytes::new()).flags(flags)
}

async fn expect<T: Transport>(t: &T, flags: u32) -> BenchResult<Frame> {
    let f = t.recv().await?;
    if f.header.flags != flags {
        return Err(BenchError::new(format!(
            "protocol: expected flags {flags:#x}, got {:#x}",
            f.header.flags
        )));
    }
    Ok(f)
}

/// Sends one `size`-byte frame stamped with `seq`, written into a buffer from `t.alloc` (so a
/// backend with its own memory receives it without a further copy).
async fn send_stamped<T: Transport>(
    t: &T,
    pattern: &Pattern,
    size: usize,
    seq: u64,
    flags: u32,
) -> BenchResult<()> {
    let mut buf = t.alloc(size).await?;
    pattern.fill(&mut buf, seq);
    t.send(Frame::new(buf).msg_id(seq).flags(flags)).await?;
    Ok(())
}

/// Parent side of the round-trip measurement: ping-pongs `size`-byte frames with a peer running
/// [`serve`] (or [`echo`]) and returns the round-trip times in nanoseconds, warm-up excluded.
/// Each sample covers alloc, filling the payload, send, the echo and receiving it.
pub async fn rtt<T: Transport>(
    t: &T,
    size: usize,
    budget: &Budget,
    pattern: &Pattern,
) -> BenchResult<Vec<u64>> {
    t.send(control(F_CMD_RTT)).await?;
    let start = Instant::now();
    let warm_end = start + budget.warmup;
    let end = warm_end + budget.measure;
    let mut samples = Vec::with_capacity(4096);
    let mut seq = 0u64;
    loop {
        seq += 1;
        let t0 = Instant::now();
        send_stamped(t, pattern, size, seq, F_PING).await?;
        let f = t.recv().await?;
        let t1 = Instant::now();
        if f.header.flags != F_PING || f.header.msg_id != seq || !check(f.bytes(), seq) {
            return Err(BenchError::new(format!(
                "rtt: bad echo for ping {seq} (flags {:#x}, id {}, {} bytes)",
                f.header.flags,
                f.header.msg_id,
                f.bytes().len()
            )));
        }
        drop(f);
        if t0 >= warm_end {
            samples.push(nanos(t1 - t0));
            let n = samples.len() as u64;
            if n >= budget.max_iters || (n >= budget.min_iters && t1 >= end) {
                break;
            }
        }
    }
    t.send(control(F_END)).await?;
    expect(t, F_END).await?;
    Ok(samples)
}

/// Parent side of the one-way measurement: sends `size`-byte frames as fast as the transport
/// takes them for the budget, then asks a peer running [`serve`] (or [`stream_recv`]) for its
/// tally and checks that every message arrived intact and in order.
pub async fn stream_send<T: Transport>(
    t: &T,
    size: usize,
    budget: &Budget,
    pattern: &Pattern,
) -> BenchResult<StreamOutcome> {
    t.send(control(F_CMD_STREAM)).await?;
    let deadline = Deadline::new(budget, size);
    let start = Instant::now();
    let mut sent = 0u64;
    while !deadline.reached(sent) {
        sent += 1;
        send_stamped(t, pattern, size, sent, F_DATA).await?;
    }
    t.send(control(F_END)).await?;
    let f = expect(t, F_SUMMARY).await?;
    let elapsed = start.elapsed();
    let tally = Tally::from_bytes(f.bytes())
        .ok_or_else(|| BenchError::new("stream: malformed summary from the peer"))?;
    tally.verify(sent, size)?;
    Ok(StreamOutcome {
        msgs: sent,
        bytes: tally.bytes,
        elapsed,
    })
}

/// Parent side: tells a peer running [`serve`] to exit, then closes the transport.
pub async fn quit<T: Transport>(t: &T) -> BenchResult<()> {
    let r = t.send(control(F_QUIT)).await;
    t.close();
    match r {
        Ok(()) | Err(TransportError::Closed | TransportError::PeerDied) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Peer side of [`rtt`]: echoes every `F_PING` frame unchanged until `F_END`, which it
/// acknowledges.
pub async fn echo<T: Transport>(t: &T) -> BenchResult<()> {
    loop {
        let f = t.recv().await?;
        match f.header.flags {
            F_PING => t.send(Frame::with_header(f.header, f.payload)).await?,
            F_END => {
                t.send(control(F_END)).await?;
                return Ok(());
            }
            other => {
                return Err(BenchError::new(format!(
                    "echo: unexpected flags {other:#x}"
                )));
            }
        }
    }
}

/// Peer side of [`stream_send`]: reads every byte of every `F_DATA` frame, checking its stamp,
/// until `F_END`, then answers with its [`Tally`].
pub async fn stream_recv<T: Transport>(t: &T) -> BenchResult<Tally> {
    let mut tally = Tally::default();
    loop {
        let f = t.recv().await?;
        match f.header.flags {
            F_DATA => tally.take(f.bytes()),
            F_END => {
                t.send(Frame::new(Bytes::copy_from_slice(&tally.to_bytes())).flags(F_SUMMARY))
                    .await?;
                return Ok(tally);
            }
            other => {
                return Err(BenchError::new(format!(
                    "stream_recv: unexpected flags {other:#x}"
                )));
            }
        }
    }
}

/// Peer side of a whole row: obeys the parent's commands (`F_CMD_RTT`, `F_CMD_STREAM`) until
/// `F_QUIT` or the end of the session.
pub async fn serve<T: Transport>(t: &T) -> BenchResult<()> {
    loop {
        let f = match t.recv().await {
            Ok(f) => f,
            Err(TransportError::Closed | TransportError::PeerDied) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        match f.header.flags {
            F_CMD_RTT => echo(t).await?,
            F_CMD_STREAM => {
                stream_recv(t).await?;
            }
            F_QUIT => {
                t.close();
                return Ok(());
            }
            other => {
                return Err(BenchError::new(format!(
                    "serve: unexpected command flags {other:#x}"
                )));
            }
        }
    }
}
