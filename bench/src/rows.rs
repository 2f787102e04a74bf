//! The rows of the table and the driver that measures them.
//!
//! # Adding a backend
//! A `Transport` backend between two processes is one [`Row`] entry in [`ROWS`]:
//! ```text
//! Row {
//!     name: "shm",
//!     about: "transport-shm between two processes",
//!     rtt_sizes: &SIZES,
//!     stream_sizes: &SIZES,
//!     gaps: true,  // also the idle-gap round trips (rtt-gap10us, rtt-gap100us, rtt-gap1ms)
//!     peer: None,  // or Some("library") for a peer library's row
//!     start: |p| Ok(Box::new(cross::parent(p, "shm", |path| async move {
//!         /* bind a listener at `path`, accept one peer, return the Transport */
//!     })?)),
//!     child: Some(|a| cross::child(a, |path| async move { /* connect to `path` */ })),
//!     costs: &[], // one-off costs (`attach`, `death`, `reclaim`), see `Session::cost`
//! },
//! ```
//! An in-process backend uses [`inproc::start`] with both ends and `child: None` (see `mem`).
//! Rows named `spin` and `unix` are the baselines the ratios divide by. Rows of peer libraries
//! (`iox2-*`, feature `peers`) come from the `iox2` module.

use super::cli::{ChildArgs, Options, Placement};
use super::cross::Flavor;
#[cfg(feature = "peers")]
use super::iox2;
use super::procs::{self, PlaceCtx};
use super::proto::{Budget, GAP_SIZE, GAPS, SIZES, size_label};
use super::report::{self, Mode, Record};
pub use super::session::Session;
use super::unix_transport::UnixFramed;
use super::{BenchError, BenchResult, codec, cross, eventfd, hub, inproc, spin, unix};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Starts the parent side of a row (and its peer).
pub type StartFn = fn(&PlaceCtx) -> BenchResult<Box<dyn Session>>;
/// Runs the peer side of a row in the child process.
pub type ChildFn = fn(&ChildArgs) -> BenchResult<()>;

/// One backend or baseline.
pub struct Row {
    /// Name in the table, in JSON, in `--only` and in `--child`.
    pub name: &'static str,
    /// One line of description.
    pub about: &'static str,
    /// Sizes measured in rtt mode.
    pub rtt_sizes: &'static [usize],
    /// Sizes measured in stream mode.
    pub stream_sizes: &'static [usize],
    /// Also measure the idle-gap round trips ([`GAPS`], [`GAP_SIZE`] payloads).
    pub gaps: bool,
    /// The peer library the row measures (`None`: this workspace or a baseline written here).
    pub peer: Option<&'static str>,
    /// Parent side.
    pub start: StartFn,
    /// Peer side when the peer is a process (`None` for in-process rows).
    pub child: Option<ChildFn>,
    /// One-off costs measured after the rest ([`Session::cost`]), one record per mode.
    pub costs: &'static [Mode],
}

/// Every row, in the order they run and appear.
pub const ROWS: &[Row] = &[
    Row {
        name: "spin",
        about: "shared-memory spin ping-pong / SPSC ring, two processes (lower bound)",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: false,
        peer: None,
        start: |p| Ok(Box::new(spin::SpinSession::start(p)?)),
        child: Some(spin::child),
        costs: &[],
    },
    Row {
        name: "eventfd",
        about: "blocking eventfd ping-pong, two processes (one kernel wake each way)",
        rtt_sizes: &[8],
        stream_sizes: &[],
        gaps: true,
        peer: None,
        start: |p| Ok(Box::new(eventfd::EventfdSession::start(p)?)),
        child: Some(eventfd::child),
        costs: &[],
    },
    Row {
        name: "unix",
        about: "tokio UnixStream, length-prefixed frames, two processes",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: true,
        peer: None,
        start: |p| Ok(Box::new(unix::UnixSession::start(p)?)),
        child: Some(unix::child),
        costs: &[],
    },
    Row {
        name: "unix-mt",
        about: "tokio UnixStream as `unix`, both sides on multi-thread runtimes",
        rtt_sizes: &[8],
        stream_sizes: &[],
        gaps: true,
        peer: None,
        start: |p| Ok(Box::new(unix::UnixSession::start_on(p, "unix-mt", MT)?)),
        child: Some(|a| unix::child_on(a, MT)),
        costs: &[],
    },
    Row {
        name: "unix-t",
        about: "the Transport trait over a Unix socket (bench-only adapter), two processes",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: false,
        peer: None,
        start: |p| {
            Ok(Box::new(cross::parent(p, "unix-t", |path| async move {
                UnixFramed::accept_one(&path).await
            })?))
        },
        child: Some(|a| cross::child(a, |path| async move { UnixFramed::connect(&path).await })),
        costs: &[],
    },
    Row {
        name: "tcp-codec",
        about: "tokio TcpStream + tokio_util LengthDelimitedCodec by hand, two processes \
                (baseline of `tcp`)",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: false,
        peer: None,
        start: |p| Ok(Box::new(codec::start_tcp(p)?)),
        child: Some(codec::tcp_child),
        costs: &[],
    },
    Row {
        name: "unix-codec",
        about: "tokio UnixStream + tokio_util LengthDelimitedCodec by hand, two processes \
                (baseline of `unix-net`)",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: false,
        peer: None,
        start: |p| Ok(Box::new(codec::start_unix(p)?)),
        child: Some(codec::unix_child),
        costs: &[],
    },
    Row {
        name: "tcp",
        about: "transport-net tcp:// over loopback, two processes",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: false,
        peer: None,
        start: |p| {
            Ok(Box::new(cross::parent(p, "tcp", |path| async move {
                let config = transport_net::NetConfig::default();
                let l = transport_net::NetListener::bind_tcp("127.0.0.1:0", config).await?;
                codec::publish(&path, &l.local_address())
                    .map_err(|e| transport_api::TransportError::Config(e.to_string()))?;
                l.accept().await
            })?))
        },
        child: Some(|a| {
            cross::child(a, |path| async move {
                let addr = std::fs::read_to_string(&path)?;
                transport_net::connect_tcp(addr.trim(), &transport_net::NetConfig::default()).await
            })
        }),
        costs: &[],
    },
    Row {
        name: "unix-net",
        about: "transport-net unix:// (stream socket), two processes",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: false,
        peer: None,
        start: |p| {
            Ok(Box::new(cross::parent(p, "unix-net", |path| async move {
                let config = transport_net::NetConfig::default();
                transport_net::NetListener::bind_unix(&path, config)?
                    .accept()
                    .await
            })?))
        },
        child: Some(|a| {
            cross::child(a, |path| async move {
                transport_net::connect_unix(&path, &transport_net::NetConfig::default()).await
            })
        }),
        costs: &[],
    },
    Row {
        name: "mem",
        about: "transport-mem, two pinned threads of one process",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: false,
        peer: None,
        start: |p| {
            let (a, b) = transport_mem::pair(transport_mem::MemConfig::default());
            Ok(Box::new(inproc::start(p, "mem", a, b)?))
        },
        child: None,
        costs: &[],
    },
    Row {
        name: "shm",
        about: "transport-shm, two processes through a rendezvous path",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: true,
        peer: None,
        start: |p| {
            let config = transport_shm::ShmConfig::default();
            Ok(Box::new(cross::parent(p, "shm", |path| async move {
                let listener = transport_shm::ShmListener::bind(&path, config)?;
                listener.accept().await
            })?))
        },
        child: Some(shm_child),
        costs: &[],
    },
    Row {
        name: "shm-ro",
        about: "transport-shm with `read_only_payloads` on both sides (the peer's slots mapped \
                read-only), two processes",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: false,
        peer: None,
        start: |p| {
            let config = transport_shm::ShmConfig {
                read_only_payloads: true,
                ..transport_shm::ShmConfig::default()
            };
            Ok(Box::new(cross::parent(p, "shm-ro", |path| async move {
                let listener = transport_shm::ShmListener::bind(&path, config)?;
                listener.accept().await
            })?))
        },
        child: Some(|a| {
            cross::child(a, |path| async move {
                let config = transport_shm::ShmConfig {
                    read_only_payloads: true,
                    ..transport_shm::ShmConfig::default()
                };
                transport_shm::connect_config(&path, &config).await
            })
        }),
        costs: &[],
    },
    Row {
        name: "shm-park",
        about: "transport-shm with no spin on either side (always parked), current-thread runtimes",
        rtt_sizes: &[8],
        stream_sizes: &[],
        gaps: true,
        peer: None,
        start: |p| shm_start(p, "shm-park", Duration::ZERO, CT),
        child: Some(|a| shm_child_on(a, Duration::ZERO, CT)),
        costs: &[],
    },
    Row {
        name: "shm-mt",
        about: "transport-shm with the default spin, multi-thread runtimes",
        rtt_sizes: &[8],
        stream_sizes: &[],
        gaps: true,
        peer: None,
        start: |p| shm_start(p, "shm-mt", DEFAULT_SPIN, MT),
        child: Some(|a| shm_child_on(a, DEFAULT_SPIN, MT)),
        costs: &[],
    },
    Row {
        name: "shm-park-mt",
        about: "transport-shm with no spin on either side (always parked), multi-thread runtimes",
        rtt_sizes: &[8],
        stream_sizes: &[],
        gaps: true,
        peer: None,
        start: |p| shm_start(p, "shm-park-mt", Duration::ZERO, MT),
        child: Some(|a| shm_child_on(a, Duration::ZERO, MT)),
        costs: &[],
    },
    Row {
        name: "hub",
        about: "transport-shm hub: host (HubHost, 16 regions) <-> one peer process, host receives \
                through the peer's session",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: true,
        peer: None,
        start: |p| Ok(Box::new(hub::start_pair(p, "hub", false)?)),
        child: Some(hub::pair_child),
        costs: &[],
    },
    Row {
        name: "hub-any",
        about: "transport-shm hub: host <-> one peer process, host receives through recv_any",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: true,
        peer: None,
        start: |p| Ok(Box::new(hub::start_pair(p, "hub-any", true)?)),
        child: Some(hub::pair_child),
        costs: &[],
    },
    Row {
        name: "shm-zc",
        about: "transport-shm, zero-copy stream: alloc'd buffer filled in place (sequence number)",
        rtt_sizes: &[],
        stream_sizes: &SIZES,
        gaps: false,
        peer: None,
        start: |p| {
            let config = transport_shm::ShmConfig::default();
            let session = cross::parent(p, "shm-zc", |path| async move {
                let listener = transport_shm::ShmListener::bind(&path, config)?;
                listener.accept().await
            })?;
            Ok(Box::new(session.zero_copy()))
        },
        child: Some(shm_child),
        costs: &[],
    },
    Row {
        name: "hub-fanin-1",
        about: "transport-shm hub: 1 peer process streaming to the host (recv_any)",
        rtt_sizes: &[],
        stream_sizes: &FANIN_SIZES,
        gaps: false,
        peer: None,
        start: |p| Ok(Box::new(hub::FaninSession::start(p, "hub-fanin-1", 1)?)),
        child: Some(hub::fanin_child),
        costs: &[],
    },
    Row {
        name: "hub-fanin-4",
        about: "transport-shm hub: 4 peer processes streaming to the host (recv_any)",
        rtt_sizes: &[],
        stream_sizes: &FANIN_SIZES,
        gaps: false,
        peer: None,
        start: |p| Ok(Box::new(hub::FaninSession::start(p, "hub-fanin-4", 4)?)),
        child: Some(hub::fanin_child),
        costs: &[],
    },
    Row {
        name: "hub-fanin-16",
        about: "transport-shm hub: 16 peer processes streaming to the host (recv_any)",
        rtt_sizes: &[],
        stream_sizes: &FANIN_SIZES,
        gaps: false,
        peer: None,
        start: |p| Ok(Box::new(hub::FaninSession::start(p, "hub-fanin-16", 16)?)),
        child: Some(hub::fanin_child),
        costs: &[],
    },
    Row {
        name: "hub-attach",
        about: "transport-shm hub: cost of a peer attach, of noticing its death and reclaiming \
                its region",
        rtt_sizes: &[],
        stream_sizes: &[],
        gaps: false,
        peer: None,
        start: |p| Ok(Box::new(hub::AttachSession::start(p, "hub-attach")?)),
        child: Some(hub::attach_child),
        costs: &[Mode::Attach, Mode::Death, Mode::Reclaim],
    },
    #[cfg(feature = "peers")]
    Row {
        name: "iox2-poll",
        about: "iceoryx2 publish-subscribe, busy-polling receive, payload copied in and read",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: true,
        peer: Some(iox2::PEER),
        start: |p| Ok(Box::new(iox2::Iox2Session::start(p, iox2::Flavor::Poll)?)),
        child: Some(|a| iox2::child(a, iox2::Flavor::Poll)),
        costs: &[],
    },
    #[cfg(feature = "peers")]
    Row {
        name: "iox2-poll-zc",
        about: "iceoryx2 publish-subscribe, busy-polling, zero-copy loans (sequence number only)",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: true,
        peer: Some(iox2::PEER),
        start: |p| Ok(Box::new(iox2::Iox2Session::start(p, iox2::Flavor::PollZc)?)),
        child: Some(|a| iox2::child(a, iox2::Flavor::PollZc)),
        costs: &[],
    },
    #[cfg(feature = "peers")]
    Row {
        name: "iox2-event",
        about: "iceoryx2 publish-subscribe + event notifier/listener, blocking wait per message",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: true,
        peer: Some(iox2::PEER),
        start: |p| Ok(Box::new(iox2::Iox2Session::start(p, iox2::Flavor::Event)?)),
        child: Some(|a| iox2::child(a, iox2::Flavor::Event)),
        costs: &[],
    },
];

/// Payload sizes of the hub fan-in rows.
const FANIN_SIZES: [usize; 2] = [64, 64 * 1024];

const CT: Flavor = Flavor::CurrentThread;
const MT: Flavor = Flavor::MultiThread;

/// The spin of `ShmConfig::default()`, for the rows that name their spin.
const DEFAULT_SPIN: Duration = Duration::from_micros(20);

/// Parent side of the `shm-*` rows with a chosen spin and runtime flavour.
fn shm_start(
    p: &PlaceCtx,
    name: &str,
    spin: Duration,
    flavor: Flavor,
) -> BenchResult<Box<dyn Session>> {
    let config = transport_shm::ShmConfig {
        spin,
        ..transport_shm::ShmConfig::default()
    };
    Ok(Box::new(cross::parent_on(
        p,
        name,
        flavor,
        |path| async move {
            let listener = transport_shm::ShmListener::bind(&path, config)?;
            listener.accept().await
        },
    )?))
}

/// Peer side of the `shm-*` rows with a chosen spin and runtime flavour.
fn shm_child_on(a: &ChildArgs, spin: Duration, flavor: Flavor) -> BenchResult<()> {
    cross::child_on(a, flavor, |path| async move {
        transport_shm::connect_with(&path, spin).await
    })
}

/// Peer side of the `shm` and `shm-zc` rows.
fn shm_child(a: &ChildArgs) -> BenchResult<()> {
    // The backend's defaults serve both placements: its spin yields the CPU every few dozen
    // tries, so a peer sharing the CPU is not delayed.
    cross::child(a, |path| async move { transport_shm::connect(&path).await })
}

/// Names of all rows.
pub fn known_names() -> Vec<&'static str> {
    ROWS.iter().map(|r| r.name).collect()
}

/// Child process entry: prelude (parent-death signal, pinning), then the row's peer.
pub fn run_child(args: &ChildArgs) -> BenchResult<()> {
    procs::child_prelude(args)?;
    if args.backend == hub::VICTIM {
        return hub::victim_child(args);
    }
    let row = ROWS
        .iter()
        .find(|r| r.name == args.backend)
        .ok_or_else(|| BenchError::new("unknown row"))?;
    let child = row
        .child
        .ok_or_else(|| BenchError::new("this row has no peer process"))?;
    child(args)
}

/// Decides and applies the placement: pins the calling (main) thread to the parent CPU.
fn place(placement: Placement) -> PlaceCtx {
    let (pc, cc) = placement.cpus();
    let allowed = rustix::thread::sched_getaffinity(None);
    let missing = [pc, cc]
        .into_iter()
        .find(|&c| allowed.as_ref().is_ok_and(|s| !s.is_set(c)));
    let result = match missing {
        Some(c) => Err(format!("CPU {c} is not available to this process")),
        None => procs::pin_current_thread(pc).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => PlaceCtx {
            label: placement.name().to_string(),
            parent_cpu: Some(pc),
            child_cpu: Some(cc),
            same_cpu: pc == cc,
        },
        Err(e) => {
            eprintln!(
                "transport-bench: warning: cannot apply placement `{}` ({e}); running unpinned",
                placement.name()
            );
            PlaceCtx {
                label: "unpinned".into(),
                parent_cpu: None,
                child_cpu: None,
                same_cpu: false,
            }
        }
    }
}

struct Progress {
    tty: bool,
    total: usize,
    done: usize,
}

impl Progress {
    fn step(&mut self, what: &str) {
        self.done += 1;
        let line = format!("[{:>3}/{}] {what}", self.done, self.total);
        let mut e = std::io::stderr().lock();
        let _ = if self.tty {
            write!(e, "\r\x1b[2K{line}")
        } else {
            writeln!(e, "{line}")
        };
        let _ = e.flush();
    }

    fn clear(&self) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
    }

    fn note(&self, msg: &str) {
        self.clear();
        eprintln!("{msg}");
    }
}

/// Measures every cell of one row, appending records. Returns the first error.
fn run_row(
    row: &Row,
    place: &PlaceCtx,
    quick: bool,
    progress: &mut Progress,
    records: &mut Vec<Record>,
) -> BenchResult<()> {
    progress.step(&format!("{}: starting the peer", row.name));
    let mut session = {
        let _w = procs::arm(format!("starting {}", row.name), Duration::from_secs(30));
        (row.start)(place)?
    };
    for &size in row.rtt_sizes {
        progress.step(&format!("{} rtt {}", row.name, size_label(size)));
        let budget = Budget::rtt(quick, size);
        let _w = procs::arm(
            format!("{} rtt {}", row.name, size_label(size)),
            budget.limit(),
        );
        let mut samples = session
            .rtt(size, &budget)
            .map_err(|e| e.context(format!("{} rtt {}", row.name, size_label(size))))?;
        let mut rec = Record::rtt(row.name, size, &mut samples, &place.label).with_peer(row.peer);
        rec.wakes_per_frame = session.wakes_per_frame();
        records.push(rec);
    }
    for &size in row.stream_sizes {
        progress.step(&format!("{} stream {}", row.name, size_label(size)));
        let budget = Budget::stream(quick, size);
        let _w = procs::arm(
            format!("{} stream {}", row.name, size_label(size)),
            budget.limit(),
        );
        let out = session
            .stream(size, &budget)
            .map_err(|e| e.context(format!("{} stream {}", row.name, size_label(size))))?;
        let mut rec =
            Record::stream(row.name, size, out.msgs, out.elapsed, &place.label).with_peer(row.peer);
        rec.wakes_per_frame = session.wakes_per_frame();
        records.push(rec);
    }
    for gap in GAPS.iter().copied().filter(|_| row.gaps) {
        let mode = Mode::for_gap(gap).ok_or_else(|| BenchError::new("unnamed idle gap"))?;
        let what = format!("{} {} {}", row.name, mode.name(), size_label(GAP_SIZE));
        progress.step(&what);
        let budget = Budget::rtt_gap(quick, gap);
        let _w = procs::arm(what.clone(), budget.limit());
        let mut samples = session
            .rtt(GAP_SIZE, &budget)
            .map_err(|e| e.context(&what))?;
        let mut rec = Record::rtt(row.name, GAP_SIZE, &mut samples, &place.label)
            .with_mode(mode)
            .with_peer(row.peer);
        rec.wakes_per_frame = session.wakes_per_frame();
        records.push(rec);
    }
    for &mode in row.costs {
        let what = format!("{} {}", row.name, mode.name());
        progress.step(&what);
        let _w = procs::arm(
            what.clone(),
            Duration::from_secs(if quick { 60 } else { 300 }),
        );
        let mut samples = session.cost(mode, quick).map_err(|e| e.context(&what))?;
        records.push(Record::rtt(row.name, 0, &mut samples, &place.label).with_mode(mode));
    }
    let _w = procs::arm(format!("stopping {}", row.name), Duration::from_secs(20));
    session
        .finish()
        .map_err(|e| e.context(format!("stopping {}", row.name)))
}

/// Parent entry: runs the selected rows, prints the table, writes JSON if asked. Fails (after
/// printing what was measured) if any row failed.
pub fn run_parent(opts: &Options) -> BenchResult<()> {
    procs::start_watchdog();
    let place = place(opts.placement);
    let rows: Vec<&Row> = ROWS
        .iter()
        .filter(|r| {
            opts.only
                .as_ref()
                .is_none_or(|o| o.iter().any(|n| n == r.name))
        })
        .collect();
    let rounds = opts.rounds.max(1) as usize;
    let mut progress = Progress {
        tty: std::io::stderr().is_terminal(),
        total: rounds
            * rows
                .iter()
                .map(|r| {
                    let gaps = if r.gaps { GAPS.len() } else { 0 };
                    1 + r.rtt_sizes.len() + r.stream_sizes.len() + gaps + r.costs.len()
                })
                .sum::<usize>(),
        done: 0,
    };
    let started = Instant::now();
    let mut per_round: Vec<Vec<Record>> = Vec::new();
    let mut failed = Vec::new();
    for round in 0..rounds {
        // Every other round runs the rows backwards, so that a slow drift of the machine's
        // speed does not always favour the rows that come first.
        let order: Vec<&Row> = if round % 2 == 0 {
            rows.clone()
        } else {
            rows.iter().rev().copied().collect()
        };
        let mut records = Vec::new();
        for row in order {
            if let Err(e) = run_row(row, &place, opts.quick, &mut progress, &mut records) {
                progress.note(&format!(
                    "transport-bench: error: row `{}` failed (round {}): {e}",
                    row.name,
                    round + 1
                ));
                if !failed.contains(&row.name) {
                    failed.push(row.name);
                }
            }
        }
        per_round.push(records);
    }
    let records = report::median_records(&per_round);
    progress.clear();
    let note = match (place.parent_cpu, place.child_cpu) {
        (Some(p), Some(c)) => format!("{} (parent CPU {p}, peer CPU {c})", place.label),
        _ => place.label.clone(),
    };
    let rounds_note = if rounds > 1 {
        format!(" ({rounds} rounds, each cell the median)")
    } else {
        String::new()
    };
    let note = format!(
        "{note}; {} run{rounds_note} in {:.1} s",
        if opts.quick { "quick" } else { "full" },
        started.elapsed().as_secs_f64()
    );
    print!("{}", report::table(&records, &note));
    print!("{}", report::target_check(&per_round));
    if let Some(path) = &opts.json {
        std::fs::write(path, report::to_json(&records) + "\n")
            .map_err(|e| BenchError::new(format!("cannot write {}: {e}", path.display())))?;
        eprintln!("wrote {} records to {}", records.len(), path.display());
    }
    if let Some(path) = &opts.svg {
        crate::chart::write_svg(path, &note, &crate::chart::bars(&records))?;
        eprintln!("drew the ratio chart into {}", path.display());
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(BenchError::new(format!(
            "rows failed: {}",
            failed.join(", ")
        )))
    }
}
