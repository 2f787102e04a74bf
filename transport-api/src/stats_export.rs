//! A session's [`Stats`] exported through the [`metrics`](::metrics) facade (feature
//! `metrics`), for whichever recorder the application installed (Prometheus, StatsD, …).

use crate::Stats;

/// A series name and the [`Stats`] field it reports.
type Series = (&'static str, fn(&Stats) -> u64);

/// Counter names (monotonic totals), each with the [`Stats`] field it reports.
const COUNTERS: &[Series] = &[
    ("transport_frames_sent", |s| s.frames_sent),
    ("transport_bytes_sent", |s| s.bytes_sent),
    ("transport_frames_received", |s| s.frames_received),
    ("transport_bytes_received", |s| s.bytes_received),
    ("transport_send_waits", |s| s.send_waits),
    ("transport_recv_waits", |s| s.recv_waits),
    ("transport_zero_copy_sends", |s| s.zero_copy_sends),
    ("transport_copied_sends", |s| s.copied_sends),
    ("transport_wake_syscalls", |s| s.wake_syscalls),
];

/// Gauge names (current occupancy), each with the [`Stats`] field it reports.
const GAUGES: &[Series] = &[
    ("transport_tx_queued_frames", |s| s.tx_queued_frames),
    ("transport_rx_queued_frames", |s| s.rx_queued_frames),
    ("transport_buffer_bytes_in_use", |s| s.buffer_bytes_in_use),
    ("transport_slots_in_use", |s| s.slots_in_use),
];

/// Records one snapshot of a session's [`Stats`] with the installed `metrics` recorder, every
/// series labelled `session = session`.
///
/// Counters (`transport_frames_sent`, `transport_bytes_sent`, `transport_frames_received`,
/// `transport_bytes_received`, `transport_send_waits`, `transport_recv_waits`,
/// `transport_zero_copy_sends`, `transport_copied_sends`, `transport_wake_syscalls`) are set to
/// the snapshot's totals; gauges (`transport_tx_queued_frames`, `transport_rx_queued_frames`,
/// `transport_buffer_bytes_in_use`, `transport_slots_in_use`) to its occupancy. Call it whenever
/// the figures should be fresh (on a timer, or before each scrape).
///
/// # Examples
///
/// ```
/// use transport_api::{Stats, export_stats};
///
/// let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
/// let handle = recorder.handle();
/// let stats = Stats { frames_sent: 7, tx_queued_frames: 2, ..Stats::default() };
/// metrics::with_local_recorder(&recorder, || export_stats("orders", &stats));
///
/// let text = handle.render();
/// assert!(text.contains("transport_frames_sent{session=\"orders\"} 7"), "{text}");
/// assert!(text.contains("transport_tx_queued_frames{session=\"orders\"} 2"), "{text}");
/// ```
pub fn export_stats(session: &str, stats: &Stats) {
    for (name, field) in COUNTERS {
        ::metrics::counter!(*name, "session" => session.to_owned()).absolute(field(stats));
    }
    for (name, field) in GAUGES {
        ::metrics::gauge!(*name, "session" => session.to_owned()).set(field(stats) as f64);
    }
}
