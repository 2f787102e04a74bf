//! Running the rows: the parent's loop over the selected rows (placement, progress, records,
//! the report) and the child process's entry, which runs one row's peer.

use super::cli::{ChildArgs, Options, Placement};
use super::procs::{self, PlaceCtx};
use super::proto::{Budget, GAP_SIZE, GAPS, size_label};
use super::report::{self, Mode, Record};
use super::rows::{ROWS, Row};
use super::{BenchError, BenchResult, hub};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

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
    print!("{}", report::target_check(&per_round, place.same_cpu));
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
