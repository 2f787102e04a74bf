//! The target check: ratios between two rows' cells of the same round, judged on their median
//! against the bounds of the performance issues.

use super::{Mode, Record, find, median, ratio};
use std::fmt::Write as _;

/// Which measure a target compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Measure {
    /// Round-trip p50: lower is better.
    P50,
    /// Stream messages per second: higher is better.
    Rate,
}

/// A performance target: the `num` row's measure in `mode` divided by the `den` row's in
/// `den_mode` (usually the same mode), both at `size` and from the same round, against a bound
/// (at most `bound` for latencies, at least `bound` for rates).
struct Target {
    label: &'static str,
    measure: Measure,
    num: &'static str,
    den: &'static str,
    mode: Mode,
    den_mode: Mode,
    size: u64,
    bound: f64,
    /// Also asks the `num` cell to be stable: the spread of its per-round values (largest minus
    /// smallest, over their median) at most this much.
    spread: Option<f64>,
    /// Checked only when both sides ran on one CPU (`--placement same`): across CPUs the
    /// comparison says nothing (a busy round trip against a kernel wake).
    one_cpu: bool,
    /// A reference line, not a target: the ratio is printed with its bound for reading beside
    /// the targets (a baseline against the bound, say), marked "ref" instead of judged.
    reference: bool,
}

impl Target {
    /// This target, also requiring the numerator's spread across rounds to be at most `max`.
    const fn stable(self, max: f64) -> Target {
        Target {
            spread: Some(max),
            ..self
        }
    }

    /// This target, checked only when both sides share one CPU.
    const fn on_one_cpu(self) -> Target {
        Target {
            one_cpu: true,
            ..self
        }
    }

    /// This line as a reference: printed, not judged.
    const fn reference(self) -> Target {
        Target {
            reference: true,
            ..self
        }
    }
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
        den_mode: mode,
        size,
        bound,
        spread: None,
        one_cpu: false,
        reference: false,
    }
}

/// A latency target whose denominator is measured in another mode (an idle-gap round trip
/// against a back-to-back one).
const fn target_across(
    label: &'static str,
    (num, mode): (&'static str, Mode),
    (den, den_mode): (&'static str, Mode),
    bound: f64,
) -> Target {
    Target {
        label,
        measure: Measure::P50,
        num,
        den,
        mode,
        den_mode,
        size: 8,
        bound,
        spread: None,
        one_cpu: false,
        reference: false,
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
    // The parked path: both sides parked on every frame, on each runtime flavour.
    target(
        "rtt 8 B, always parked: shm-park / eventfd",
        ("shm-park", "eventfd"),
        Mode::Rtt,
        8,
        1.1,
    ),
    target(
        "rtt 8 B, always parked: shm-park / eventfd-rt (tokio)",
        ("shm-park", "eventfd-rt"),
        Mode::Rtt,
        8,
        1.1,
    ),
    target(
        "rtt 8 B, always parked, mt: shm-park-mt / eventfd-rt-mt",
        ("shm-park-mt", "eventfd-rt-mt"),
        Mode::Rtt,
        8,
        1.1,
    ),
    target(
        "rtt 8 B, always parked: shm-park / unix",
        ("shm-park", "unix"),
        Mode::Rtt,
        8,
        1.0,
    ),
    target(
        "rtt 8 B, always parked, mt: shm-park-mt / unix-mt",
        ("shm-park-mt", "unix-mt"),
        Mode::Rtt,
        8,
        1.0,
    ),
    target(
        "rtt 8 B, always parked: shm-park-mt / shm-park",
        ("shm-park-mt", "shm-park"),
        Mode::Rtt,
        8,
        1.2,
    ),
    target(
        "rtt 8 B, default spin: shm-mt / shm",
        ("shm-mt", "shm"),
        Mode::Rtt,
        8,
        1.2,
    ),
    target(
        "one CPU, default spin: shm / eventfd",
        ("shm", "eventfd"),
        Mode::Rtt,
        8,
        1.0,
    )
    .on_one_cpu(),
    target_across(
        "gap 1 ms, default spin: shm / eventfd back-to-back",
        ("shm", Mode::RttGap1ms),
        ("eventfd", Mode::Rtt),
        0.6,
    )
    .stable(0.25),
    target_across(
        "gap 1 ms, mt: shm-mt / eventfd back-to-back",
        ("shm-mt", Mode::RttGap1ms),
        ("eventfd", Mode::Rtt),
        0.6,
    )
    .stable(0.25),
    // The reference of the two gap targets above: one kernel wake after 1 ms idle, no runtime
    // and no transport, against the same bound. Where it misses, a transport that wakes a
    // parked peer meets the bound only by beating a bare kernel wake.
    target_across(
        "gap 1 ms reference (one wake): eventfd-spin / eventfd back-to-back",
        ("eventfd-spin", Mode::RttGap1ms),
        ("eventfd", Mode::Rtt),
        0.6,
    )
    .stable(0.25)
    .reference(),
    target(
        "gap 1 ms: shm / eventfd-spin (one-wake reference)",
        ("shm", "eventfd-spin"),
        Mode::RttGap1ms,
        8,
        1.0,
    )
    .reference(),
    target(
        "gap 1 ms: hub-any / shm",
        ("hub-any", "shm"),
        Mode::RttGap1ms,
        8,
        1.1,
    ),
    // The network backends against what a user writes by hand with tokio-util's codec.
    target(
        "rtt 8 B: tcp / tcp-codec",
        ("tcp", "tcp-codec"),
        Mode::Rtt,
        8,
        1.1,
    ),
    target(
        "stream 64 B, 4 sending tasks (coalescing): tcp-4tx / tcp-codec-4tx",
        ("tcp-4tx", "tcp-codec-4tx"),
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
        "stream 64 B, 4 sending tasks (coalescing): unix-net-4tx / unix-codec-4tx",
        ("unix-net-4tx", "unix-codec-4tx"),
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
    target(
        "rtt 8 B, both busy: shm / spin (parked-path issue)",
        ("shm", "spin"),
        Mode::Rtt,
        8,
        2.0,
    ),
];

/// The target check: for each target whose two cells were measured, the ratio in every round
/// (both cells from the same round), their median, and whether the median meets the bound.
/// A target that asks for stability also needs the numerator's spread (largest minus smallest
/// of its values in the rounds where both cells ran, over their lower median) within its limit: "missed (spread)" when only that fails;
/// one round has no spread to judge and is reported as such. `one_cpu`: both sides ran on one
/// CPU, which the targets marked so need. Empty when no target applies to the rows that ran.
pub fn target_check(rounds: &[Vec<Record>], one_cpu: bool) -> String {
    let value = |r: &Record, m: Measure| match m {
        Measure::P50 => r.p50_ns.map(|v| v as f64),
        Measure::Rate => r.msgs_per_s,
    };
    let mut out = String::new();
    for t in TARGETS.iter().filter(|t| one_cpu || !t.one_cpu) {
        let (ratios, nums): (Vec<f64>, Vec<f64>) = rounds
            .iter()
            .filter_map(|round| {
                let n = find(round, t.num, t.mode, t.size)?;
                let d = find(round, t.den, t.den_mode, t.size)?;
                let r = ratio(value(n, t.measure), value(d, t.measure))?;
                Some((r, value(n, t.measure)?))
            })
            .unzip();
        let Some(mid) = median(ratios.clone()) else {
            continue;
        };
        let (op, met) = match t.measure {
            Measure::P50 => ("<=", mid <= t.bound),
            Measure::Rate => (">=", mid >= t.bound),
        };
        let (stable, stability) = match (t.spread, nums.len()) {
            (None, _) => (true, String::new()),
            (Some(_), 0 | 1) => (true, "  spread: one round".to_string()),
            (Some(max), _) => match spread(&nums) {
                // Judged on the value as printed (one decimal of a percent).
                Some(s) => {
                    let (pct, max_pct) = ((s * 1000.0).round() / 10.0, max * 100.0);
                    (
                        pct <= max_pct,
                        format!("  spread {pct:.1}% (<= {max_pct:.0}%)"),
                    )
                }
                None => (false, "  spread: n/a (zero median)".to_string()),
            },
        };
        let verdict = match (t.reference, met, stable) {
            (true, ..) => "ref",
            (false, true, true) => "met",
            (false, true, false) => "missed (spread)",
            (false, false, _) => "missed",
        };
        let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        let _ = writeln!(
            out,
            "  {:<48} {op} {:<4}  median {mid:>5.2}  {verdict:<6}  rounds: {}{stability}",
            t.label,
            t.bound,
            each.join(" ")
        );
    }
    if out.is_empty() {
        return out;
    }
    format!(
        "target check (each ratio from one round's two cells; judged on the median; p50 ratios \
         lower is better, rate ratios higher is better; `ref`: a reference line, printed with \
         the bound it is read against, not judged):\n{out}"
    )
}

/// Largest minus smallest of `values` over their median (the lower middle value for an even
/// count, as everywhere in this report: a stricter judge than the mean of the two); `None`
/// when the median is not positive. Callers pass at least two values.
fn spread(values: &[f64]) -> Option<f64> {
    let mid = median(values.to_vec())?;
    let (lo, hi) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    (mid > 0.0).then(|| (hi - lo) / mid)
}
