//! What a row's parent side does: [`Session`], measured by the driver in
//! [`rows`](crate::rows) one cell at a time.

use super::BenchError;
use super::BenchResult;
use super::generic::StreamOutcome;
use super::proto::Budget;
use super::report::Mode;

/// The parent side of a row, started by [`Row::start`](crate::rows::Row::start): measures one cell at a time.
pub trait Session {
    /// Round-trip times (ns) of `size`-byte payloads, warm-up excluded.
    fn rtt(&mut self, size: usize, budget: &Budget) -> BenchResult<Vec<u64>>;
    /// One-way throughput of `size`-byte payloads, every byte read and checked by the peer.
    fn stream(&mut self, size: usize, budget: &Budget) -> BenchResult<StreamOutcome>;
    /// Tells the peer to stop and waits for it (with a timeout).
    fn finish(&mut self) -> BenchResult<()>;
    /// Samples (ns) of a one-off cost ([`Mode::is_cost`]), for rows that list it in
    /// [`Row::costs`](crate::rows::Row::costs); `quick` asks for fewer samples.
    fn cost(&mut self, mode: Mode, quick: bool) -> BenchResult<Vec<u64>> {
        let _ = quick;
        Err(BenchError::new(format!(
            "this row does not measure {}",
            mode.name()
        )))
    }
    /// For `Transport` rows: wake system calls per frame sent by the parent side during the
    /// last measurement ([`Stats::wake_syscalls`](transport_api::Stats::wake_syscalls)).
    fn wakes_per_frame(&self) -> Option<f64> {
        None
    }
}
