//! The `--svg` chart: every cell that has a `unix` counterpart, drawn as a horizontal bar of its
//! speed-up over that baseline (log scale, 1× marked), so a run can be read at a glance.

use super::report::{Record, ratios};
use super::{BenchError, BenchResult};
use plotters::prelude::*;
use std::path::Path;

/// One bar: its label and how many times faster than the `unix` baseline the cell is (above 1:
/// faster; latencies are inverted so that longer bars are always better).
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    /// `row mode size`, as in the table.
    pub label: String,
    /// Speed-up over `unix` in the same mode and size.
    pub speedup: f64,
}

/// The bars of a run: each record that has a ratio against `unix`, in table order, except the
/// `unix` row itself.
pub fn bars(records: &[Record]) -> Vec<Bar> {
    records
        .iter()
        .filter(|r| r.backend != "unix")
        .filter_map(|r| {
            let q = ratios(r, records);
            let speedup = match (q.p50_vs_unix, q.rate_vs_unix) {
                (Some(p), _) if p > 0.0 => 1.0 / p,
                (_, Some(rate)) => rate,
                _ => return None,
            };
            (speedup.is_finite() && speedup > 0.0).then(|| Bar {
                label: format!(
                    "{} {} {}",
                    r.backend,
                    r.mode.name(),
                    crate::proto::size_label(r.size as usize)
                ),
                speedup,
            })
        })
        .collect()
}

fn draw_error(e: impl std::fmt::Display) -> BenchError {
    BenchError::new(format!("drawing the chart: {e}"))
}

/// Draws `bars` under `title` into an SVG file at `path`.
pub fn write_svg(path: &Path, title: &str, bars: &[Bar]) -> BenchResult<()> {
    if bars.is_empty() {
        return Err(BenchError::new(
            "no cell has a `unix` baseline to compare with: run the `unix` row too",
        ));
    }
    let height = 80 + 18 * bars.len() as u32;
    let (lo, hi) = bars.iter().fold((1.0f64, 1.0f64), |(lo, hi), b| {
        (lo.min(b.speedup), hi.max(b.speedup))
    });
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    let n = bars.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(240)
        .build_cartesian_2d((lo / 1.5..hi * 1.5).log_scale(), (0..n).into_segmented())
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("speed-up over tokio Unix socket (×, log scale; longer is better)")
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => bars.get(*i).map(|b| b.label.clone()).unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(draw_error)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            let color = if b.speedup >= 1.0 { BLUE } else { RED };
            let base = lo / 1.5;
            Rectangle::new(
                [
                    (base, SegmentValue::Exact(i)),
                    (b.speedup, SegmentValue::Exact(i + 1)),
                ],
                color.mix(0.6).filled(),
            )
        }))
        .map_err(draw_error)?;
    root.present().map_err(draw_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Mode;

    fn rtt(backend: &str, p50: u64) -> Record {
        let mut samples = vec![p50; 3];
        Record::rtt(backend, 8, &mut samples, "split")
    }

    #[test]
    fn bars_invert_latencies_and_skip_cells_without_a_baseline() {
        let mut records = vec![rtt("unix", 40_000), rtt("shm", 200), rtt("spin", 100)];
        // A stream cell without a `unix` stream cell has no bar.
        records.push(Record::stream(
            "shm",
            64,
            1000,
            std::time::Duration::from_millis(1),
            "split",
        ));
        let b = bars(&records);
        assert_eq!(
            b.iter().map(|b| b.label.as_str()).collect::<Vec<_>>(),
            ["shm rtt 8 B", "spin rtt 8 B"]
        );
        assert!((b[0].speedup - 200.0).abs() < 1e-9, "{b:?}");
        assert!((b[1].speedup - 400.0).abs() < 1e-9, "{b:?}");
        assert_eq!(records[3].mode, Mode::Stream);
    }

    #[test]
    fn writes_an_svg_with_every_label_and_refuses_an_empty_chart() {
        let records = vec![rtt("unix", 40_000), rtt("shm", 200)];
        let path = std::env::temp_dir().join(format!("bench-chart-{}.svg", std::process::id()));
        write_svg(&path, "test run", &bars(&records)).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("shm rtt 8 B") && svg.contains("test run"));
        assert!(svg.contains("<rect"));
        assert!(write_svg(&path, "empty", &[]).is_err());
    }
}
