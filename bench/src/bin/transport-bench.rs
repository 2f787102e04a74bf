//! `transport-bench`: round-trip latency and one-way throughput of every backend and of the
//! baselines (spin, eventfd, unix), between two processes where the backend allows; with the
//! cargo feature `peers`, also of a peer library (iceoryx2).
//!
//! ```text
//! cargo run --release -p transport-bench [--features peers] --bin transport-bench -- [--quick]
//!     [--json PATH] [--placement split|same] [--only NAME[,NAME...]]
//! ```
//!
//! The code lives in the `transport_bench` library; this binary also plays the peer process when started
//! with the hidden `--child` argument.

fn main() {
    std::process::exit(transport_bench::main_with_args(
        std::env::args_os().skip(1).collect(),
    ));
}
