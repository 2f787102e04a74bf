//! Many tasks streaming small frames over one connection: `tcp://` or `unix://` (transport-net)
//! against what a user writes by hand, one tokio stream framed with `LengthDelimitedCodec` and
//! shared by the tasks behind a `tokio::sync::Mutex` (see `transport_bench::senders`; the
//! quick benchmark measures the same with 4 senders in its `*-4tx` rows).
//!
//! ```sh
//! cargo run --release -p transport-bench --bin coalesce -- [tcp|unix] [SENDERS] [SIZE] [ROUNDS] [MS]
//! ```
//!
//! Prints frames per second of both and their ratio for each round (alternating order), then
//! the median ratio. Defaults: tcp, 4 senders, 64 bytes, 5 rounds of 1500 ms.

use std::time::Duration;
use transport_bench::senders::{Family, Load, run_codec, run_net};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long each measurement sends, unless given.
const RUN_MS: u64 = 1500;

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kind = args.first().map_or("tcp", String::as_str).to_string();
    let family = match kind.as_str() {
        "tcp" => Family::Tcp,
        "unix" => Family::Unix,
        _ => return Err(format!("backend `{kind}`: expected tcp or unix").into()),
    };
    let num = |i: usize, d: u64| -> Result<u64, BoxError> {
        args.get(i).map_or(Ok(d), |s| Ok(s.parse()?))
    };
    let senders = u32::try_from(num(1, 4)?.clamp(1, 1024))?;
    let size = usize::try_from(num(2, 64)?.clamp(12, 1 << 20))?;
    let rounds = num(3, 5)?.clamp(1, 50);
    let run = Duration::from_millis(num(4, RUN_MS)?.clamp(10, 60_000));
    println!("{kind}: {senders} senders, {size}-byte frames, {rounds} rounds of {run:?} each");
    let mut ratios = Vec::new();
    for r in 0..rounds {
        let load = Load {
            family,
            senders,
            size,
            run,
            cpu: None,
        };
        let net = || run_net(&load).map(|o| o.rate());
        let codec = || run_codec(&load).map(|o| o.rate());
        let (net, codec) = if r % 2 == 0 {
            let n = net()?;
            (n, codec()?)
        } else {
            let c = codec()?;
            (net()?, c)
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
