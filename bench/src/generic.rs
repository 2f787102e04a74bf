//! The benchmark written once over [`Transport`]: any backend, in one process or two.
//!
//! Parent side: [`rtt`], [`stream_send`] and [`stream_send_zc`] (then [`quit`]). Peer side:
//! [`serve`], which runs [`echo`], [`stream_recv`] or [`stream_recv_zc`] as the parent commands. Control travels in
//! [`FrameHeader::flags`](transport_api::FrameHeader::flags) ([`proto`](super::proto) `F_*`).

use super::proto::{
    Budget, Deadline, F_CMD_RTT, F_CMD_STREAM, F_CMD_STREAM_ZC, F_DATA, F_END, F_PING, F_QUIT,
    F_SUMMARY, Pattern, Tally, check, read_seq, stamp_seq,
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
pub async fn send_stamped<T: Transport>(
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
/// Each sample covers alloc, filling the payload, send, the echo and receiving it. With an idle
/// gap ([`Budget::gap`]) the initiator sleeps before each ping, outside the sample.
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
        budget.idle();
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
        if budget.record(&mut samples, t0, t1, warm_end, end) {
            break;
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
    finish_stream(t, sent, size, start).await
}

/// Zero-copy variant of [`stream_send`]: each `size`-byte buffer comes from `t.alloc` and is
/// filled in place with the sequence number only (the rest of the payload is whatever the
/// buffer held); a peer running [`serve`] reads only the sequence number
/// ([`stream_recv_zc`]). Measures the transport's own cost per frame, without the payload
/// copy and the full read of [`stream_send`].
pub async fn stream_send_zc<T: Transport>(
    t: &T,
    size: usize,
    budget: &Budget,
) -> BenchResult<StreamOutcome> {
    t.send(control(F_CMD_STREAM_ZC)).await?;
    let deadline = Deadline::new(budget, size);
    let start = Instant::now();
    let mut sent = 0u64;
    while !deadline.reached(sent) {
        sent += 1;
        let mut buf = t.alloc(size).await?;
        stamp_seq(&mut buf, sent);
        t.send(Frame::new(buf).msg_id(sent).flags(F_DATA)).await?;
    }
    finish_stream(t, sent, size, start).await
}

/// Ends a stream phase: `F_END`, then the peer's summary, checked against what was sent.
async fn finish_stream<T: Transport>(
    t: &T,
    sent: u64,
    size: usize,
    start: Instant,
) -> BenchResult<StreamOutcome> {
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
    recv_tally(t, "stream_recv", |tally, b| tally.take(b)).await
}

/// Peer side of [`stream_send_zc`]: reads only the sequence number of every `F_DATA` frame
/// until `F_END`, then answers with its [`Tally`] (whose checksum stays zero).
pub async fn stream_recv_zc<T: Transport>(t: &T) -> BenchResult<Tally> {
    recv_tally(t, "stream_recv_zc", |tally, b| {
        tally.take_seq(read_seq(b), b.len())
    })
    .await
}

async fn recv_tally<T: Transport>(
    t: &T,
    what: &str,
    mut take: impl FnMut(&mut Tally, &[u8]),
) -> BenchResult<Tally> {
    let mut tally = Tally::default();
    loop {
        let f = t.recv().await?;
        match f.header.flags {
            F_DATA => take(&mut tally, f.bytes()),
            F_END => {
                t.send(Frame::new(Bytes::copy_from_slice(&tally.to_bytes())).flags(F_SUMMARY))
                    .await?;
                return Ok(tally);
            }
            other => {
                return Err(BenchError::new(format!(
                    "{what}: unexpected flags {other:#x}"
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
            F_CMD_STREAM_ZC => {
                stream_recv_zc(t).await?;
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
