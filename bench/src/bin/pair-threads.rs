//! A quick two-thread probe of the shared-memory pair, for A/B comparisons while tuning: one
//! process, the two endpoints on two threads pinned to CPUs 0 and 1, each with its own
//! current-thread runtime. It skips the benchmark's process and peer set-up, so a change can be
//! measured in seconds; the numbers reported in the README come from `transport-bench`. The
//! pair is made on a third runtime that keeps running (one unpinned worker), whose worker wakes
//! a parked end; the probe is meant for the busy path, where neither end parks.
//!
//! ```sh
//! cargo build --release -p transport-bench --bin pair-threads
//! target/release/pair-threads stream 64 2000000   # one-way frames/s, receiver reads every byte
//! target/release/pair-threads rtt 8 200000         # round trips, median and mean in ns
//! target/release/pair-threads stream 64 2000000 same  # both threads on CPU 0
//! ```

use std::time::{Duration, Instant};

use transport_api::{Frame, Transport};
use transport_shm::{ShmConfig, ShmTransport};

fn pin(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
        eprintln!("pair-threads: cannot pin to CPU {cpu}: {e}");
    }
}

fn on_cpu<T: Send + 'static>(
    cpu: usize,
    f: impl AsyncFnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        pin(cpu);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f())
    })
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn stream_send(t: ShmTransport, size: usize, frames: u64) -> Result<Duration, BoxError> {
    let pattern = vec![0x5au8; size];
    let start = Instant::now();
    for seq in 0..frames {
        let mut buf = t.alloc(size).await?;
        buf.copy_from_slice(&pattern);
        let n = size.min(8);
        buf[..n].copy_from_slice(&seq.to_le_bytes()[..n]);
        t.send(Frame::new(buf).msg_id(seq)).await?;
    }
    // The receiver's answer marks the moment the last frame was read.
    t.recv().await?;
    Ok(start.elapsed())
}

async fn stream_recv(t: ShmTransport, frames: u64) -> Result<u64, BoxError> {
    let mut sum = 0u64;
    for seq in 0..frames {
        let f = t.recv().await?;
        if f.header.msg_id != seq {
            return Err(format!("frame {seq} arrived as {}", f.header.msg_id).into());
        }
        sum = f
            .bytes()
            .iter()
            .fold(sum, |s, &b| s.wrapping_add(u64::from(b)));
    }
    t.send(Frame::new(bytes::Bytes::new())).await?;
    Ok(sum)
}

async fn rtt_ping(t: ShmTransport, size: usize, n: u64) -> Result<Vec<u64>, BoxError> {
    let pattern = vec![0x5au8; size];
    let mut samples = Vec::with_capacity(n as usize);
    for seq in 0..n {
        let start = Instant::now();
        let mut buf = t.alloc(size).await?;
        buf.copy_from_slice(&pattern);
        t.send(Frame::new(buf).msg_id(seq)).await?;
        let f = t.recv().await?;
        samples.push(start.elapsed().as_nanos() as u64);
        if f.header.msg_id != seq {
            return Err(format!("pong {seq} arrived as {}", f.header.msg_id).into());
        }
    }
    Ok(samples)
}

async fn rtt_echo(t: ShmTransport, n: u64) -> Result<(), BoxError> {
    for _ in 0..n {
        let f = t.recv().await?;
        t.send(f).await?;
    }
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("stream");
    let size: usize = args.get(1).map_or(Ok(64), |s| s.parse())?;
    let n: u64 = args.get(2).map_or(Ok(1_000_000), |s| s.parse())?;
    // `same`: both endpoints on CPU 0 (the benchmark's `--placement same`).
    let peer_cpu = match args.get(3).map(String::as_str) {
        None | Some("split") => 1,
        Some("same") => 0,
        Some(other) => {
            return Err(format!("unknown placement `{other}`: expected split or same").into());
        }
    };
    // The sessions' doorbells and liveness watchers belong to the runtime that creates them:
    // it keeps running (one worker of its own) while the two pinned threads use the endpoints,
    // so a parked end is woken through that worker.
    let driver = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (a, b) = driver.block_on(transport_shm::pair(ShmConfig::default()))?;
    match mode {
        "stream" => {
            let rx = on_cpu(peer_cpu, async move || stream_recv(b, n).await);
            let tx = on_cpu(0, async move || stream_send(a, size, n).await);
            let elapsed = tx.join().map_err(|_| "sender panicked")??;
            let sum = rx.join().map_err(|_| "receiver panicked")??;
            println!(
                "stream {size} B: {n} frames in {:.3} s = {:.2} M frames/s (byte sum {sum})",
                elapsed.as_secs_f64(),
                n as f64 / elapsed.as_secs_f64() / 1e6
            );
        }
        "rtt" => {
            let echo = on_cpu(peer_cpu, async move || rtt_echo(b, n).await);
            let ping = on_cpu(0, async move || rtt_ping(a, size, n).await);
            let mut s = ping.join().map_err(|_| "pinger panicked")??;
            echo.join().map_err(|_| "echo panicked")??;
            s.sort_unstable();
            let mean = s.iter().sum::<u64>() as f64 / s.len().max(1) as f64;
            println!(
                "rtt {size} B: {n} round trips, p50 {} ns, p90 {} ns, mean {mean:.0} ns",
                s[s.len() / 2],
                s[s.len() * 9 / 10]
            );
        }
        other => return Err(format!("unknown mode `{other}`: expected stream or rtt").into()),
    }
    Ok(())
}
