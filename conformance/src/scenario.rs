//! What a scenario is: its name, needs and body ([`Scenario`]), and what it gets besides its
//! endpoints ([`Cx`]). The scenario modules build on this; the runner runs them.

use crate::progress::{Probe, Progress};
use crate::util::Check;
use crate::{Backend, Capabilities, PairOptions};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// What a scenario gets besides its endpoints.
#[derive(Clone)]
pub(crate) struct Cx {
    /// The backend's capabilities.
    pub caps: Capabilities,
    /// The run's seed.
    pub seed: u64,
    /// See [`RunConfig::scale`].
    pub scale: f64,
    /// Where the scenario reports its steps.
    pub progress: Progress,
    /// How long a scenario waits for a state it polls for before it fails with its own
    /// message (shorter than the stall limit, so the specific message wins).
    pub settle: Duration,
}

impl Cx {
    /// `base` scaled by [`RunConfig::scale`], at least 1.
    pub(crate) fn n(&self, base: u64) -> u64 {
        ((base as f64 * self.scale).round() as u64).max(1)
    }

    /// A generator seeded from the run's seed and `salt` (one salt per use).
    pub(crate) fn rng(&self, salt: u64) -> crate::util::Rng {
        crate::util::Rng::new(self.seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// Spawns a task of the scenario whose failure ends the scenario at once (see
    /// [`Progress::fail`]); the failure is also returned through the handle.
    pub(crate) fn spawn<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, String>> + Send + 'static,
    ) -> tokio::task::JoinHandle<Result<T, String>> {
        let progress = self.progress.clone();
        tokio::spawn(async move {
            let r = fut.await;
            if let Err(e) = &r {
                progress.fail(e);
            }
            r
        })
    }

    /// See [`Progress::step`].
    pub(crate) fn step(&self, what: impl Into<String>) {
        self.progress.step(what)
    }

    /// Polls `cond` (yielding between checks) until it holds; fails after
    /// [`Cx::settle`] naming `what`.
    pub(crate) async fn wait_until(&self, what: &str, cond: impl FnMut() -> bool) -> Check {
        self.step(format!("waiting until {what}"));
        crate::util::wait_until(what, self.settle, cond).await
    }
}

pub(crate) type ScenarioFuture = Pin<Box<dyn Future<Output = Check> + Send>>;
type RunFn<B> = Box<dyn Fn(Arc<B>, Cx) -> ScenarioFuture + Send + Sync>;

/// One named scenario of the suite.
pub(crate) struct Scenario<B> {
    pub name: &'static str,
    /// Needs [`Capabilities::cross_process`].
    pub cross_process: bool,
    /// Worker threads of its runtime.
    pub workers: usize,
    /// Needs [`Capabilities::liveness`] (a declared timeout for a silent peer).
    pub needs_liveness: bool,
    pub run: RunFn<B>,
}

impl<B: Backend> Scenario<B> {
    pub(crate) fn new(
        name: &'static str,
        cross_process: bool,
        run: impl Fn(Arc<B>, Cx) -> ScenarioFuture + Send + Sync + 'static,
    ) -> Self {
        Scenario {
            name,
            cross_process,
            workers: if cross_process { 2 } else { 4 },
            needs_liveness: false,
            run: Box::new(run),
        }
    }

    /// Marks the scenario as one for backends that declare a liveness timeout.
    pub(crate) fn needing_liveness(mut self) -> Self {
        self.needs_liveness = true;
        self
    }
}

/// A connected pair whose endpoints report progress as `A` and `B`.
pub(crate) async fn probed_pair<B: Backend>(
    b: &B,
    opts: PairOptions,
    cx: &Cx,
) -> Result<(Probe<B::T>, Probe<B::T>), String> {
    cx.step(format!("making a pair ({opts:?})"));
    let (x, y) = b
        .pair(opts)
        .await
        .map_err(|e| format!("making a pair: {e}"))?;
    Ok((cx.progress.probe("A", x), cx.progress.probe("B", y)))
}
