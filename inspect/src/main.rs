//! `transport-inspect`: looks inside running transports.
//!
//! ```text
//! transport-inspect hub /run/host.sock            # the hub's peers, once
//! transport-inspect hub /run/host.sock --watch    # refreshed every second until Ctrl-C
//! transport-inspect hub /run/host.sock --json     # the same report as JSON
//! ```
//!
//! The hub answers on its admin socket (`PATH.admin`) only to processes of its own uid. Every
//! failure (no such path, not a hub, refused) is one line on standard error and exit code 1.

use clap::{Parser, Subcommand};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use transport_shm::hub_admin::{self, HubReport};

/// Looks inside running transports.
#[derive(Parser, Debug)]
#[command(name = "transport-inspect", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Lists a running hub's peers: id, pid, uid, state, frames and bytes each way, queue
    /// depth and slots in use.
    Hub {
        /// The hub's socket path (as given to `HubHost::bind` or `hub://PATH`).
        path: PathBuf,
        /// Refresh the table every `--interval-ms` until interrupted.
        #[arg(long)]
        watch: bool,
        /// Milliseconds between refreshes with `--watch` (100..=3600000).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
        interval_ms: u64,
        /// With `--watch`, stop after this many refreshes (scripts and tests).
        #[arg(long)]
        count: Option<u64>,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("transport-inspect: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(line) => {
            eprintln!("transport-inspect: {line}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), String> {
    let Command::Hub {
        path,
        watch,
        interval_ms,
        count,
        json,
    } = command;
    let rounds = if watch { count.unwrap_or(u64::MAX) } else { 1 };
    let clear = watch && std::io::stdout().is_terminal();
    for round in 0..rounds {
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(interval_ms)).await;
        }
        let report = hub_admin::query(&path).await.map_err(|e| e.to_string())?;
        let text = if json {
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())? + "\n"
        } else {
            table(&report)
        };
        let mut out = std::io::stdout().lock();
        let shown = if clear {
            write!(out, "\x1b[2J\x1b[H{text}")
        } else {
            write!(out, "{text}")
        };
        // A closed pipe (`| head`) ends the watch quietly.
        if shown.and_then(|_| out.flush()).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// The report as a fixed-width table, one line per peer.
fn table(r: &HubReport) -> String {
    let mut s = format!(
        "hub {} (host pid {}): {} of {} regions in use\n",
        r.path.display(),
        r.host_pid,
        r.max_peers - r.free_regions.min(r.max_peers),
        r.max_peers
    );
    s += &format!(
        "{:<18} {:>8} {:>6} {:<9} {:>10} {:>10} {:>12} {:>12} {:>6} {:>6} {:>6}\n",
        "PEER",
        "PID",
        "UID",
        "STATE",
        "FRAMES>",
        "FRAMES<",
        "BYTES>",
        "BYTES<",
        "TXQ",
        "RXQ",
        "SLOTS"
    );
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for p in &r.peers {
        let st = &p.stats;
        s += &format!(
            "{:<18} {:>8} {:>6} {:<9} {:>10} {:>10} {:>12} {:>12} {:>6} {:>6} {:>6}\n",
            format!("peer#{}@region{}", p.generation, p.region),
            opt(p.pid.map(|v| v.to_string())),
            opt(p.uid.map(|v| v.to_string())),
            format!("{:?}", p.state),
            st.frames_sent,
            st.frames_received,
            st.bytes_sent,
            st.bytes_received,
            st.tx_queued_frames,
            st.rx_queued_frames,
            st.slots_in_use
        );
    }
    if r.peers.is_empty() {
        s += "(no peers)\n";
    }
    s
}
