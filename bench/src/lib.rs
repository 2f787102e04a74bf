//! The `transport-bench` benchmark: round-trip latency and one-way throughput of every backend
//! and of baselines written here, between two processes where the backend allows.
//!
//! Layout:
//! - [`cli`]: command-line options (parent) and the hidden `--child` arguments (peer process);
//! - [`proto`]: payload pattern, sequence stamps, checksums, time budgets, protocol flags;
//! - [`generic`]: the benchmark written once over [`transport_api::Transport`] (parent side
//!   [`generic::rtt`] / [`generic::stream_send`], peer side [`generic::echo`] /
//!   [`generic::stream_recv`] / [`generic::serve`]);
//! - [`cross`]: runs a `Transport` backend between two processes through a rendezvous path;
//! - [`inproc`]: runs a `Transport` backend between two pinned threads of one process;
//! - [`unix`], [`eventfd`], [`spin`]: the baselines (raw tokio `UnixStream`, blocking eventfd
//!   ping-pong, shared-memory spin ping-pong and SPSC ring);
//! - [`codec`]: the baselines of the network backends, tokio TCP and Unix streams framed with
//!   `tokio_util`'s `LengthDelimitedCodec` as a user would write them (`tcp-codec`,
//!   `unix-codec`);
//! - [`senders`]: many tasks streaming over one connection (the `*-4tx` rows: transport-net's
//!   write coalescing against the codec behind a mutex), also the `coalesce` binary;
//! - [`hub`]: the transport-shm hub rows (host ↔ one peer, fan-in from N peer processes,
//!   attach and death-reclaim costs);
//! - [`unix_transport`]: a bench-only `Transport` over a Unix socket (the `unix-t` row), which
//!   exercises the generic cross-process path;
//! - `iox2` (feature `peers`): peer-library baselines, iceoryx2 publish-subscribe between two
//!   processes (busy-polling, zero-copy and event-driven rows);
//! - [`procs`]: child processes, watchdog, CPU pinning;
//! - [`shmem`]: the `unsafe` code (shared mapping and inherited descriptors), apart from one
//!   block in `iox2` (sending a zero-copy loan of which only the sequence number was written);
//! - [`report`]: percentiles, records, ratios, the table and the JSON output;
//! - [`chart`]: the `--svg` chart of every cell's speed-up over the `unix` baseline;
//! - [`session`]: what a row's parent side does ([`session::Session`]);
//! - [`rows`]: the list of rows; **add a backend there**. [`run`]: the parent's loop over the
//!   selected rows and the child process's entry.

pub mod chart;
pub mod cli;
pub mod codec;
pub mod cross;
pub mod eventfd;
pub mod generic;
pub mod hub;
pub mod inproc;
#[cfg(feature = "peers")]
pub mod iox2;
pub mod procs;
pub mod proto;
pub mod report;
pub mod rows;
pub mod run;
pub mod senders;
pub mod session;
pub mod shmem;
pub mod spin;
pub mod unix;
pub mod unix_transport;

use std::fmt;

/// Why a benchmark step failed: a message meant for the user.
#[derive(Debug)]
pub struct BenchError(pub String);

impl BenchError {
    /// An error with the given message.
    pub fn new(msg: impl Into<String>) -> BenchError {
        BenchError(msg.into())
    }

    /// Prefixes the message with some context.
    pub fn context(self, ctx: impl fmt::Display) -> BenchError {
        BenchError(format!("{ctx}: {}", self.0))
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

impl From<std::io::Error> for BenchError {
    fn from(e: std::io::Error) -> Self {
        BenchError(format!("I/O error: {e}"))
    }
}

impl From<rustix::io::Errno> for BenchError {
    fn from(e: rustix::io::Errno) -> Self {
        BenchError(format!("system call failed: {e}"))
    }
}

impl From<transport_api::TransportError> for BenchError {
    fn from(e: transport_api::TransportError) -> Self {
        BenchError(format!("transport error: {e}"))
    }
}

/// Result of a benchmark step.
pub type BenchResult<T> = Result<T, BenchError>;

/// Entry point of the binary: parses `args` (without the program name), runs the benchmark or
/// the child role, and returns the process exit code (0 success, 1 failure, 2 bad usage).
pub fn main_with_args(args: Vec<std::ffi::OsString>) -> i32 {
    match cli::parse(args, &rows::known_names()) {
        Ok(cli::Command::Help) => {
            println!("{}", cli::USAGE);
            0
        }
        Ok(cli::Command::Run(opts)) => match run::run_parent(&opts) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("transport-bench: error: {e}");
                1
            }
        },
        Ok(cli::Command::Child(args)) => match run::run_child(&args) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("transport-bench child `{}`: error: {e}", args.backend);
                1
            }
        },
        Err(msg) => {
            eprintln!("transport-bench: {msg}\n\n{}", cli::USAGE);
            2
        }
    }
}
