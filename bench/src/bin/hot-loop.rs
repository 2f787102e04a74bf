//! A single-threaded send/receive loop over a shared-memory pair in one process, made for
//! counting instructions per frame with callgrind, which gives the same count on every run
//! whatever else the machine is doing (timings on a shared VM do not):
//!
//! ```sh
//! cargo build --release -p transport-bench --bin hot-loop
//! valgrind --tool=callgrind target/release/hot-loop 10000 64
//! valgrind --tool=callgrind target/release/hot-loop 20000 64
//! ```
//!
//! The difference of the two totals divided by 10 000 is the cost of one `alloc` + fill +
//! `send` + `recv` + read of a frame of that size (start-up cancels out).

use transport_api::{Frame, Transport};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let frames: u64 = args.next().map_or(Ok(100_000), |s| s.parse())?;
    let size: usize = args.next().map_or(Ok(64), |s| s.parse())?;
    let (a, b) = transport_shm::pair(transport_shm::ShmConfig::default()).await?;
    let payload = vec![7u8; size];
    let mut sum = 0u64;
    for _ in 0..frames {
        let mut buf = a.alloc(size).await?;
        buf.copy_from_slice(&payload);
        a.send(Frame::new(buf)).await?;
        let f = b.recv().await?;
        sum = sum.wrapping_add(f.bytes().iter().map(|&x| u64::from(x)).sum::<u64>());
    }
    println!("{frames} frames of {size} B, byte sum {sum}");
    Ok(())
}
