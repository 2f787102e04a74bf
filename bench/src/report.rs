//! Results: percentiles, records, ratios against the baselines, the table and the JSON output.

use super::proto::size_label;
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

/// What a record measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Mode {
    /// Round-trip latency, ping-pong.
    #[serde(rename = "rtt")]
    Rtt,
    /// Round-trip latency when the initiator sleeps 10 µs before each ping.
    #[serde(rename = "rtt-gap10us")]
    RttGap10us,
    /// Round-trip latency when the initiator sleeps 100 µs before each ping.
    #[serde(rename = "rtt-gap100us")]
    RttGap100us,
    /// Round-trip latency when the initiator sleeps 1 ms before each ping.
    #[serde(rename = "rtt-gap1ms")]
    RttGap1ms,
    /// One-way throughput.
    #[serde(rename = "stream")]
    Stream,
    /// Cost of attaching a peer to a hub: the peer's `connect` call until the host's `accept`
    /// returns (latency samples, no payload).
    #[serde(rename = "attach")]
    Attach,
    /// Cost of noticing a peer's death: SIGKILL until the host's `recv` reports the end.
    #[serde(rename = "death")]
    Death,
    /// Cost of reclaiming a dead peer's hub region: SIGKILL until the region is free again.
    #[serde(rename = "reclaim")]
    Reclaim,
}

impl Mode {
    /// The name in the table and in JSON: `"rtt"`, `"rtt-gap10us"`, …, `"stream"`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Rtt => "rtt",
            Mode::RttGap10us => "rtt-gap10us",
            Mode::RttGap100us => "rtt-gap100us",
            Mode::RttGap1ms => "rtt-gap1ms",
            Mode::Stream => "stream",
            Mode::Attach => "attach",
            Mode::Death => "death",
            Mode::Reclaim => "reclaim",
        }
    }

    /// The idle-gap mode for a gap of [`GAPS`](super::proto::GAPS), if it is one of them.
    pub fn for_gap(gap: Duration) -> Option<Mode> {
        match gap.as_micros() {
            10 => Some(Mode::RttGap10us),
            100 => Some(Mode::RttGap100us),
            1000 => Some(Mode::RttGap1ms),
            _ => None,
        }
    }

    /// True for the round-trip modes (with or without an idle gap).
    pub fn is_rtt(self) -> bool {
        matches!(
            self,
            Mode::Rtt | Mode::RttGap10us | Mode::RttGap100us | Mode::RttGap1ms
        )
    }

    /// True for the one-off cost modes (`attach`, `death`, `reclaim`): latency samples without
    /// a payload size.
    pub fn is_cost(self) -> bool {
        matches!(self, Mode::Attach | Mode::Death | Mode::Reclaim)
    }
}

/// One measured cell: a backend, a mode and a payload size. Fields that do not apply to the
/// mode are `None` (`null` in JSON): latencies for streams, rates for round trips.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Record {
    /// Row name (`spin`, `unix`, `mem`, …).
    pub backend: String,
    /// `rtt`, `rtt-gap10us`, `rtt-gap100us`, `rtt-gap1ms`, `stream`, or a cost: `attach`,
    /// `death`, `reclaim` (then `size` is 0).
    pub mode: Mode,
    /// Payload size in bytes.
    pub size: u64,
    /// Median round-trip time, ns.
    pub p50_ns: Option<u64>,
    /// 99th-percentile round-trip time, ns.
    pub p99_ns: Option<u64>,
    /// Messages per second (stream).
    pub msgs_per_s: Option<f64>,
    /// Payload gigabytes (10^9 bytes) per second (stream).
    pub gbps: Option<f64>,
    /// `split` or `same` (or `unpinned` when pinning failed).
    pub placement: String,
    /// The peer library a row measures (`iceoryx2`), or `None` (`null`) for this workspace's
    /// backends and the baselines written here.
    pub peer: Option<String>,
    /// `Transport` rows: wake system calls per frame the parent sent (table only, not JSON).
    #[serde(skip)]
    pub wakes_per_frame: Option<f64>,
}

impl Record {
    /// A round-trip record from raw samples (ns), which are sorted in place.
    pub fn rtt(backend: &str, size: usize, samples: &mut [u64], placement: &str) -> Record {
        samples.sort_unstable();
        Record {
            backend: backend.to_string(),
            mode: Mode::Rtt,
            size: size as u64,
            p50_ns: percentile(samples, 50.0),
            p99_ns: percentile(samples, 99.0),
            msgs_per_s: None,
            gbps: None,
            placement: placement.to_string(),
            peer: None,
            wakes_per_frame: None,
        }
    }

    /// The same record in another mode (the idle-gap round trips).
    pub fn with_mode(mut self, mode: Mode) -> Record {
        self.mode = mode;
        self
    }

    /// The same record attributed to a peer library.
    pub fn with_peer(mut self, peer: Option<&str>) -> Record {
        self.peer = peer.map(str::to_string);
        self
    }

    /// A stream record: `msgs` messages of `size` bytes in `elapsed`.
    pub fn stream(
        backend: &str,
        size: usize,
        msgs: u64,
        elapsed: Duration,
        placement: &str,
    ) -> Record {
        let (rate, gbps) = rates(msgs, size, elapsed);
        Record {
            backend: backend.to_string(),
            mode: Mode::Stream,
            size: size as u64,
            p50_ns: None,
            p99_ns: None,
            msgs_per_s: rate,
            gbps,
            placement: placement.to_string(),
            peer: None,
            wakes_per_frame: None,
        }
    }
}

/// Nearest-rank percentile `p` (0 < p <= 100) of `sorted` (ascending): the smallest sample
/// such that at least `p` % of the samples are at or below it. `None` when empty.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Messages per second and payload GB/s (10^9 bytes) of `msgs` messages of `size` bytes in
/// `elapsed`; `None` when no time elapsed.
pub fn rates(msgs: u64, size: usize, elapsed: Duration) -> (Option<f64>, Option<f64>) {
    let s = elapsed.as_secs_f64();
    if s <= 0.0 {
        return (None, None);
    }
    let rate = msgs as f64 / s;
    (Some(rate), Some(rate * size as f64 / 1e9))
}

/// `a / b` when both exist and `b` is not zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

/// The ratios shown next to a record.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Ratios {
    /// rtt p50 / the `spin` row's p50 in the same mode at the same size.
    pub p50_vs_spin: Option<f64>,
    /// rtt p50 / the `unix` row's p50 in the same mode at the same size.
    pub p50_vs_unix: Option<f64>,
    /// stream msgs/s / the `unix` row's stream msgs/s at the same size.
    pub rate_vs_unix: Option<f64>,
}

fn find<'a>(records: &'a [Record], backend: &str, mode: Mode, size: u64) -> Option<&'a Record> {
    records
        .iter()
        .find(|r| r.backend == backend && r.mode == mode && r.size == size)
}

/// Ratios of `r` against the `spin` and `unix` records of the same mode and size in `all`.
pub fn ratios(r: &Record, all: &[Record]) -> Ratios {
    let p50 = |x: &Record| x.p50_ns.map(|v| v as f64);
    match r.mode {
        m if m.is_rtt() => Ratios {
            p50_vs_spin: ratio(p50(r), find(all, "spin", m, r.size).and_then(p50)),
            p50_vs_unix: ratio(p50(r), find(all, "unix", m, r.size).and_then(p50)),
            rate_vs_unix: None,
        },
        Mode::Stream => Ratios {
            rate_vs_unix: ratio(
                r.msgs_per_s,
                find(all, "unix", Mode::Stream, r.size).and_then(|x| x.msgs_per_s),
            ),
            ..Ratios::default()
        },
        _ => Ratios::default(),
    }
}

/// `850 ns`, `12.3 µs`, `4.56 ms` (nanoseconds below 10 µs, milliseconds from 1 ms).
pub fn fmt_ns(ns: u64) -> String {
    if ns < 10_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else {
        format!("{:.2} ms", ns as f64 / 1e6)
    }
}

/// `950`, `12.3k`, `4.56M`.
pub fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        Some(r) if r >= 100.0 => format!("{r:.0}x"),
        Some(r) if r >= 10.0 => format!("{r:.1}x"),
        Some(r) if r >= 0.01 => format!("{r:.2}x"),
        Some(r) => format!("{r:.4}x"),
        None => "-".into(),
    }
}

/// The results table, one line per record, with ratios against the baselines.
pub fn table(records: &[Record], placement_note: &str) -> String {
    let header = [
        "backend",
        "mode",
        "size",
        "p50",
        "p99",
        "msgs/s",
        "GB/s",
        "p50/spin",
        "p50/unix",
        "rate/unix",
        "wakes/tx",
    ];
    let mut rows: Vec<[String; 11]> = Vec::new();
    for r in records {
        let q = ratios(r, records);
        rows.push([
            r.backend.clone(),
            r.mode.name().to_string(),
            if r.mode.is_cost() {
                "-".into()
            } else {
                size_label(r.size as usize)
            },
            r.p50_ns.map_or("-".into(), fmt_ns),
            r.p99_ns.map_or("-".into(), fmt_ns),
            r.msgs_per_s.map_or("-".into(), fmt_rate),
            r.gbps.map_or("-".into(), |g| format!("{g:.2}")),
            fmt_ratio(q.p50_vs_spin),
            fmt_ratio(q.p50_vs_unix),
            fmt_ratio(q.rate_vs_unix),
            r.wakes_per_frame.map_or("-".into(), |w| format!("{w:.2}")),
        ]);
    }
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = format!("placement: {placement_note}\n");
    let mut line = |cells: &[String]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w - c.chars().count();
            if i < 3 {
                let _ = write!(l, "{c}{}  ", " ".repeat(pad));
            } else {
                let _ = write!(l, "{}{c}  ", " ".repeat(pad));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header.map(String::from));
    for row in &rows {
        line(row);
    }
    out.push_str(
        "p50/spin, p50/unix: rtt p50 divided by that baseline's rtt p50 at the same size; \
         rate/unix: stream msgs/s divided by unix's; wakes/tx: wake system calls per frame sent \
         by the parent side (Transport rows).\n",
    );
    if records
        .iter()
        .any(|r| r.mode.is_rtt() && r.mode != Mode::Rtt)
    {
        out.push_str(
            "rtt-gapN: 8 B round trips where the initiator sleeps N before each ping (not \
             counted), so a waiting peer may park and must be woken.\n",
        );
    }
    if records.iter().any(|r| r.mode.is_cost()) {
        out.push_str(
            "attach: a peer process's `connect` until the host's `accept` returns (one peer \
             connecting and closing repeatedly, wall clocks of both processes); death: SIGKILL \
             of a peer process until the host's `recv` on its session ends; reclaim: SIGKILL \
             until the region is free again (the host drops its handle on the end); one fresh \
             peer process per death sample.\n",
        );
    }
    for line in vs_shm(records) {
        out.push_str(&line);
        out.push('\n');
    }
    let names = |pick: &dyn Fn(&Record) -> bool| {
        let mut v: Vec<&str> = Vec::new();
        for r in records.iter().filter(|r| pick(r)) {
            if !v.contains(&r.backend.as_str()) {
                v.push(&r.backend);
            }
        }
        v.join(", ")
    };
    let zc = names(&|r| r.backend.ends_with("-zc"));
    if !zc.is_empty() {
        let _ = writeln!(
            out,
            "zero-copy rows ({zc}): the sender writes only the sequence number into a buffer \
             loaned from the transport, the receiver reads only that; all other rows copy the \
             payload in and read every byte."
        );
    }
    let mut peers: Vec<&str> = Vec::new();
    for p in records.iter().filter_map(|r| r.peer.as_deref()) {
        if !peers.contains(&p) {
            peers.push(p);
        }
    }
    for p in peers {
        let rows = names(&|r| r.peer.as_deref() == Some(p));
        let _ = writeln!(out, "peer library {p}: rows {rows}.");
    }
    out
}

/// One line per `hub*` row with round trips: its rtt p50 divided by the `shm` row's p50 in the
/// same mode and size of the same run.
fn vs_shm(records: &[Record]) -> Vec<String> {
    let mut backends: Vec<&str> = Vec::new();
    for r in records.iter().filter(|r| r.backend.starts_with("hub")) {
        if !backends.contains(&r.backend.as_str()) {
            backends.push(&r.backend);
        }
    }
    let p50 = |x: &Record| x.p50_ns.map(|v| v as f64);
    backends
        .into_iter()
        .filter_map(|b| {
            let cells: Vec<String> = records
                .iter()
                .filter(|r| r.backend == b && r.mode.is_rtt())
                .filter_map(|r| {
                    let q = ratio(p50(r), find(records, "shm", r.mode, r.size).and_then(p50))?;
                    Some(format!(
                        "{} {} {}",
                        r.mode.name(),
                        size_label(r.size as usize),
                        fmt_ratio(Some(q))
                    ))
                })
                .collect();
            (!cells.is_empty())
                .then(|| format!("{b} p50 / shm p50 (same run): {}.", cells.join(", ")))
        })
        .collect()
}

/// The lower median of `v` (the middle element, or the lower of the two middle ones), or
/// `None` when `v` is empty.
fn median<T: Copy + PartialOrd>(mut v: Vec<T>) -> Option<T> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v.get(v.len().saturating_sub(1) / 2).copied()
}

/// One record per cell (backend, mode, size) found in any round, in the order of first
/// appearance, each measure the median of that cell over the rounds that measured it.
pub fn median_records(rounds: &[Vec<Record>]) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    for r in rounds.iter().flatten() {
        if find(&out, &r.backend, r.mode, r.size).is_some() {
            continue;
        }
        let same: Vec<&Record> = rounds
            .iter()
            .filter_map(|round| find(round, &r.backend, r.mode, r.size))
            .collect();
        let pick_u =
            |f: fn(&Record) -> Option<u64>| median(same.iter().filter_map(|x| f(x)).collect());
        let pick_f =
            |f: fn(&Record) -> Option<f64>| median(same.iter().filter_map(|x| f(x)).collect());
        out.push(Record {
            p50_ns: pick_u(|x| x.p50_ns),
            p99_ns: pick_u(|x| x.p99_ns),
            msgs_per_s: pick_f(|x| x.msgs_per_s),
            gbps: pick_f(|x| x.gbps),
            wakes_per_frame: pick_f(|x| x.wakes_per_frame),
            ..r.clone()
        });
    }
    out
}

/// Which measure a target compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Measure {
    /// Round-trip p50: lower is better.
    P50,
    /// Stream messages per second: higher is better.
    Rate,
}

/// A performance target: the `num` row's measure divided by the `den` row's, both in `mode` at
/// `size` and from the same round, against a bound (at most `bound` for latencies, at least
/// `bound` for rates).
struct Target {
    label: &'static str,
    measure: Measure,
    num: &'static str,
    den: &'static str,
    mode: Mode,
    size: u64,
    bound: f64,
}

const fn target(
    label: &'static str,
    (num, den): (&'static str, &'static str),
    mode: Mode,
    size: u64,
    bound: f64,
) -> Target {
    let measure = match mode {
        Mode::Stream => Measure::Rate,
        _ => Measure::P50,
    };
    Target {
        label,
        measure,
        num,
        den,
        mode,
        size,
        bound,
    }
}

/// The targets of the performance issue that the rows of a run can check.
const TARGETS: &[Target] = &[
    target(
        "rtt 8 B, both busy: shm / iox2-poll",
        ("shm", "iox2-poll"),
        Mode::Rtt,
        8,
        0.5,
    ),
    target(
        "rtt 64 B, both busy: shm / iox2-poll",
        ("shm", "iox2-poll"),
        Mode::Rtt,
        64,
        0.5,
    ),
    target(
        "rtt 8 B, both busy: shm / spin",
        ("shm", "spin"),
        Mode::Rtt,
        8,
        2.5,
    ),
    target(
        "parked receiver, gap 10 µs: shm / iox2-event",
        ("shm", "iox2-event"),
        Mode::RttGap10us,
        8,
        0.5,
    ),
    target(
        "parked receiver, gap 100 µs: shm / iox2-event",
        ("shm", "iox2-event"),
        Mode::RttGap100us,
        8,
        0.5,
    ),
    target(
        "parked receiver, gap 1 ms: shm / iox2-event",
        ("shm", "iox2-event"),
        Mode::RttGap1ms,
        8,
        0.5,
    ),
    target(
        "stream 64 B: shm / iox2-poll",
        ("shm", "iox2-poll"),
        Mode::Stream,
        64,
        3.0,
    ),
    target(
        "stream 1 MiB with copy: shm / iox2-poll",
        ("shm", "iox2-poll"),
        Mode::Stream,
        1 << 20,
        1.0,
    ),
    target(
        "rtt 8 B: tcp / tcp-codec",
        ("tcp", "tcp-codec"),
        Mode::Rtt,
        8,
        1.1,
    ),
    target(
        "stream 64 B (coalescing): tcp / tcp-codec",
        ("tcp", "tcp-codec"),
        Mode::Stream,
        64,
        2.0,
    ),
    target(
        "stream 1 MiB: tcp / tcp-codec",
        ("tcp", "tcp-codec"),
        Mode::Stream,
        1 << 20,
        0.9,
    ),
    target(
        "rtt 8 B: unix-net / unix-codec",
        ("unix-net", "unix-codec"),
        Mode::Rtt,
        8,
        1.1,
    ),
    target(
        "stream 64 B (coalescing): unix-net / unix-codec",
        ("unix-net", "unix-codec"),
        Mode::Stream,
        64,
        2.0,
    ),
    target(
        "stream 1 MiB: unix-net / unix-codec",
        ("unix-net", "unix-codec"),
        Mode::Stream,
        1 << 20,
        0.9,
    ),
];

/// The target check: for each target whose two cells were measured, the ratio in every round
/// (both cells from the same round), their median, and whether the median meets the bound.
/// Empty when no target applies to the rows that ran.
pub fn target_check(rounds: &[Vec<Record>]) -> String {
    let value = |r: &Record, m: Measure| match m {
        Measure::P50 => r.p50_ns.map(|v| v as f64),
        Measure::Rate => r.msgs_per_s,
    };
    let mut out = String::new();
    for t in TARGETS {
        let ratios: Vec<f64> = rounds
            .iter()
            .filter_map(|round| {
                let n = find(round, t.num, t.mode, t.size)?;
                let d = find(round, t.den, t.mode, t.size)?;
                ratio(value(n, t.measure), value(d, t.measure))
            })
            .collect();
        let Some(mid) = median(ratios.clone()) else {
            continue;
        };
        let (op, met) = match t.measure {
            Measure::P50 => ("<=", mid <= t.bound),
            Measure::Rate => (">=", mid >= t.bound),
        };
        let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        let _ = writeln!(
            out,
            "  {:<48} {op} {:<4}  median {mid:>5.2}  {:<6}  rounds: {}",
            t.label,
            t.bound,
            if met { "met" } else { "missed" },
            each.join(" ")
        );
    }
    if out.is_empty() {
        return out;
    }
    format!(
        "target check (each ratio from one round's two cells; judged on the median; p50 ratios \
         lower is better, rate ratios higher is better):\n{out}"
    )
}

/// The records as a pretty-printed JSON array.
pub fn to_json(records: &[Record]) -> String {
    serde_json::to_string_pretty(records)
        .unwrap_or_else(|e| format!("\"serialisation failed: {e}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&[7], 50.0), Some(7));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[1, 2], 50.0), Some(1));
        assert_eq!(percentile(&[1, 2], 99.0), Some(2));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&v, 0.0), None);
        let mut s = vec![30, 10, 20];
        let r = Record::rtt("x", 8, &mut s, "split");
        assert_eq!((r.p50_ns, r.p99_ns), (Some(20), Some(30)));
    }

    #[test]
    fn rates_and_ratios() {
        let (rate, gbps) = rates(2_000_000, 1000, Duration::from_secs(2));
        assert_eq!(rate, Some(1e6));
        assert_eq!(gbps, Some(1.0));
        assert_eq!(rates(5, 8, Duration::ZERO), (None, None));
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(ratio(Some(3.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(2.0)), None);

        let mk = |b: &str, p50| {
            let mut s = vec![p50];
            Record::rtt(b, 64, &mut s, "split")
        };
        let all = vec![
            mk("spin", 100),
            mk("unix", 4000),
            mk("mem", 400),
            Record::stream("unix", 64, 1000, Duration::from_secs(1), "split"),
            Record::stream("mem", 64, 5000, Duration::from_secs(1), "split"),
        ];
        let q = ratios(&all[2], &all);
        assert_eq!(q.p50_vs_spin, Some(4.0));
        assert_eq!(q.p50_vs_unix, Some(0.1));
        assert_eq!(q.rate_vs_unix, None);
        let q = ratios(&all[4], &all);
        assert_eq!(q.rate_vs_unix, Some(5.0));
        assert_eq!(q.p50_vs_spin, None);
        // No baseline at another size.
        let mut s = vec![5];
        let other = Record::rtt("mem", 8, &mut s, "split");
        assert_eq!(ratios(&other, &all), Ratios::default());
        // Idle-gap round trips compare with the same mode only.
        let gap = |b: &str, p50| {
            let mut s = vec![p50];
            Record::rtt(b, 64, &mut s, "split").with_mode(Mode::RttGap1ms)
        };
        let g = [gap("unix", 8000), gap("shm", 2000)];
        let q = ratios(&g[1], &g);
        assert_eq!((q.p50_vs_unix, q.p50_vs_spin), (Some(0.25), None));
        assert_eq!(ratios(&g[1], &all), Ratios::default());
        for (gap, mode) in
            crate::proto::GAPS
                .iter()
                .zip([Mode::RttGap10us, Mode::RttGap100us, Mode::RttGap1ms])
        {
            assert_eq!(Mode::for_gap(*gap), Some(mode));
        }
        let t = table(&all, "split");
        assert!(t.contains("p50/spin"));
        assert!(t.contains("4.00x"));

        // Hub rows: ratio to shm in a note; costs have no size and no ratios.
        let hubs = vec![
            mk("shm", 1000),
            mk("hub", 1100),
            Record::rtt("hub-attach", 0, &mut [40_000, 50_000], "split").with_mode(Mode::Attach),
        ];
        assert_eq!(ratios(&hubs[2], &hubs), Ratios::default());
        let t = table(&hubs, "split");
        assert!(t.contains("hub p50 / shm p50 (same run): rtt 64 B 1.10x."));
        assert!(t.contains("attach: a peer process"));
        assert!(!t.contains("rtt-gapN"));
    }

    #[test]
    fn json_record_shape() {
        let mut s = vec![100, 200];
        let recs = vec![
            Record::rtt("spin", 8, &mut s, "split"),
            Record::stream("unix", 1024, 10, Duration::from_secs(1), "same")
                .with_peer(Some("iceoryx2")),
            Record::rtt("unix", 8, &mut [5], "split").with_mode(Mode::RttGap100us),
            Record::rtt("hub-attach", 0, &mut [5, 9], "split").with_mode(Mode::Reclaim),
        ];
        let v: serde_json::Value = serde_json::from_str(&to_json(&recs)).expect("valid JSON");
        let arr = v.as_array().expect("an array");
        assert_eq!(arr.len(), 4);
        assert_eq!(arr[3]["mode"], "reclaim");
        assert_eq!(
            (arr[3]["p50_ns"].as_u64(), arr[3]["p99_ns"].as_u64()),
            (Some(5), Some(9))
        );
        assert_eq!(arr[1]["peer"], "iceoryx2");
        assert_eq!(arr[2]["mode"], "rtt-gap100us");
        let mut keys: Vec<&str> = arr[0]
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "backend",
                "gbps",
                "mode",
                "msgs_per_s",
                "p50_ns",
                "p99_ns",
                "peer",
                "placement",
                "size"
            ]
        );
        assert!(arr[0]["peer"].is_null());
        assert_eq!(arr[0]["backend"], "spin");
        assert_eq!(arr[0]["mode"], "rtt");
        assert_eq!(arr[0]["size"], 8);
        assert_eq!(arr[0]["p50_ns"], 100);
        assert_eq!(arr[0]["p99_ns"], 200);
        assert!(arr[0]["msgs_per_s"].is_null());
        assert!(arr[0]["gbps"].is_null());
        assert_eq!(arr[0]["placement"], "split");
        assert_eq!(arr[1]["mode"], "stream");
        assert!(arr[1]["p50_ns"].is_null());
        assert_eq!(arr[1]["msgs_per_s"], 10.0);
        assert_eq!(arr[1]["gbps"], 10.0 * 1024.0 / 1e9);
        assert_eq!(arr[1]["placement"], "same");
    }

    #[test]
    fn medians_over_rounds_and_the_target_check() {
        let rtt = |b: &str, size: usize, p50: u64| Record::rtt(b, size, &mut [p50], "split");
        let stream =
            |b: &str, msgs: u64| Record::stream(b, 64, msgs, Duration::from_secs(1), "split");
        // Three rounds; the machine was slow in the second one (everything 4x).
        let rounds = vec![
            vec![
                rtt("shm", 8, 400),
                rtt("iox2-poll", 8, 1000),
                stream("shm", 7_000_000),
                stream("iox2-poll", 2_000_000),
            ],
            vec![
                rtt("iox2-poll", 8, 4000),
                rtt("shm", 8, 1600),
                stream("iox2-poll", 500_000),
                stream("shm", 1_750_000),
            ],
            vec![
                rtt("shm", 8, 600),
                rtt("iox2-poll", 8, 1000),
                stream("shm", 5_000_000),
                stream("iox2-poll", 2_000_000),
            ],
        ];
        let m = median_records(&rounds);
        assert_eq!(m.len(), 4);
        assert_eq!((m[0].backend.as_str(), m[0].p50_ns), ("shm", Some(600)));
        assert_eq!(
            (m[1].backend.as_str(), m[1].p50_ns),
            ("iox2-poll", Some(1000))
        );
        assert_eq!(m[2].msgs_per_s, Some(5_000_000.0));
        assert_eq!(m[3].msgs_per_s, Some(2_000_000.0));
        // Ratios are taken within each round: 0.4, 0.4, 0.6 (median 0.4, met);
        // 3.5, 3.5, 2.5 (median 3.5, met).
        let t = target_check(&rounds);
        let line = |label: &str| {
            t.lines()
                .find(|l| l.contains(label))
                .unwrap_or_else(|| panic!("no line for {label} in {t}"))
                .to_string()
        };
        let l = line("rtt 8 B, both busy: shm / iox2-poll");
        assert!(
            l.contains("median  0.40") && l.contains("met") && l.contains("rounds: 0.40 0.40 0.60"),
            "{l}"
        );
        let l = line("stream 64 B: shm / iox2-poll");
        assert!(l.contains("median  3.50") && l.contains("met"), "{l}");
        // Targets whose cells did not run are left out; no applicable target, no section.
        assert!(!t.contains("iox2-event") && !t.contains("1 MiB"));
        assert_eq!(target_check(&[vec![rtt("spin", 8, 100)]]), "");
        // A missed target.
        let slow = vec![vec![rtt("shm", 8, 900), rtt("iox2-poll", 8, 1000)]];
        assert!(target_check(&slow).contains("missed"));
    }
}
