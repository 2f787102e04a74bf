//! Running scenarios: the run configuration, the watchdogs, outcomes, and the two front ends
//! (libtest-style trials for [`conformance_main!`](crate::conformance_main) and
//! [`run_scenarios`] for programs).

use crate::progress::Progress;
use crate::scenario::{Cx, Scenario, ScenarioFuture};
use crate::util::Check;
use crate::{Backend, SCENARIO_TIMEOUT};
use libtest_mimic::{Completion, Trial};
use std::sync::Arc;
use std::time::Duration;

/// How a run of the suite is parameterised.
///
/// [`RunConfig::from_env`] reads it from the environment, which is how
/// [`conformance_main!`](crate::conformance_main) is configured.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Seed of every random choice (`CONFORMANCE_SEED`); a failure message names it, and the
    /// same seed replays the same choices.
    pub seed: u64,
    /// Multiplier of the frame counts of the large scenarios (`CONFORMANCE_SCALE`, default 1:
    /// at least 100 000 frames through each exactly-once scenario). A CI job short on time
    /// may lower it; the contract checks stay the same, only their sample shrinks.
    pub scale: f64,
    /// A scenario during which no frame moves and no operation ends for this long fails at once,
    /// naming what it waits for (`CONFORMANCE_STALL_MS`, default 5000 ms).
    pub stall: Duration,
    /// Hard limit of one scenario, whatever its progress ([`SCENARIO_TIMEOUT`]).
    pub timeout: Duration,
    /// Runs the scenarios listed by [`Backend::known_bugs`], which are otherwise reported as
    /// ignored (`--include-ignored` or `--ignored` on the command line sets it).
    pub run_known_bugs: bool,
}

/// Default stall limit of [`RunConfig::stall`].
pub const DEFAULT_STALL: Duration = Duration::from_millis(5000);

fn env_parse<T: std::str::FromStr>(name: &str) -> Option<T> {
    let v = std::env::var(name).ok()?;
    match v.parse() {
        Ok(x) => Some(x),
        Err(_) => {
            eprintln!("conformance: ignoring {name}={v:?} (not a number)");
            None
        }
    }
}

impl RunConfig {
    /// The configuration given by the environment: `CONFORMANCE_SEED` (default: from the
    /// clock), `CONFORMANCE_SCALE` (default 1), `CONFORMANCE_STALL_MS` (default 5000).
    ///
    /// # Examples
    ///
    /// ```
    /// let config = transport_conformance::RunConfig::from_env();
    /// assert!(config.scale > 0.0);
    /// assert!(config.stall <= config.timeout);
    /// ```
    pub fn from_env() -> RunConfig {
        let seed = env_parse("CONFORMANCE_SEED").unwrap_or_else(crate::util::Rng::seed_from_env);
        let scale = env_parse::<f64>("CONFORMANCE_SCALE")
            .filter(|s| s.is_finite() && *s > 0.0)
            .unwrap_or(1.0);
        let stall = env_parse::<u64>("CONFORMANCE_STALL_MS")
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_STALL);
        RunConfig {
            seed,
            scale,
            stall: stall.min(SCENARIO_TIMEOUT),
            timeout: SCENARIO_TIMEOUT,
            run_known_bugs: false,
        }
    }

    /// How to replay this run, for failure messages.
    fn replay(&self) -> String {
        if self.scale == 1.0 {
            format!("CONFORMANCE_SEED={}", self.seed)
        } else {
            format!(
                "CONFORMANCE_SEED={} CONFORMANCE_SCALE={}",
                self.seed, self.scale
            )
        }
    }
}

/// What running one scenario gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every check held.
    Passed,
    /// A check failed, or the scenario stalled or ran out of time; the message says which and
    /// how to replay it.
    Failed(String),
    /// The scenario does not apply to this backend, or is a declared known bug; the reason.
    Ignored(String),
}

fn all_scenarios<B: Backend>() -> Vec<Scenario<B>> {
    let mut v = crate::scenarios::list::<B>();
    v.extend(crate::xproc::list::<B>());
    v.extend(crate::silent_peer::list::<B>());
    v
}

fn run_one<B: Backend>(s: &Scenario<B>, backend: &Arc<B>, cfg: &RunConfig) -> Outcome {
    let caps = backend.capabilities();
    if s.cross_process && !caps.cross_process {
        return Outcome::Ignored(format!(
            "skipped: the `{}` backend has no cross-process mode",
            backend.name()
        ));
    }
    if s.needs_liveness && caps.liveness.is_none() {
        return Outcome::Ignored(format!(
            "skipped: the `{}` backend declares no liveness timeout (Capabilities::liveness)",
            backend.name()
        ));
    }
    if !cfg.run_known_bugs
        && let Some((_, why)) = backend.known_bugs().into_iter().find(|(n, _)| *n == s.name)
    {
        return Outcome::Ignored(format!("known bug of `{}`: {why}", backend.name()));
    }
    let progress = Progress::new();
    let cx = Cx {
        caps,
        seed: cfg.seed,
        scale: cfg.scale,
        progress: progress.clone(),
        settle: cfg.stall * 3 / 4,
    };
    let fut = (s.run)(backend.clone(), cx);
    match run_scenario(s.name, s.workers, cfg, &progress, fut) {
        Ok(()) => Outcome::Passed,
        Err(e) => Outcome::Failed(format!("{e}\n(replay with {})", cfg.replay())),
    }
}

/// Runs `fut` on a fresh multi-threaded runtime with `workers` threads. It fails as soon as it
/// makes no progress for `cfg.stall`, and in any case after `cfg.timeout`. A watchdog thread
/// aborts the process if even the runtime is wedged 30 s past the timeout, so a broken backend
/// can never hang the test run.
fn run_scenario(
    name: &str,
    workers: usize,
    cfg: &RunConfig,
    progress: &Progress,
    fut: ScenarioFuture,
) -> Check {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build a runtime: {e}"))?;
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog_name = name.to_string();
    let limit = cfg.timeout;
    let watchdog = std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            done_rx.recv_timeout(limit + Duration::from_secs(30))
        {
            eprintln!("conformance watchdog: scenario `{watchdog_name}` is wedged; aborting");
            std::process::abort();
        }
    });
    let stall = cfg.stall;
    let result = rt.block_on(async {
        tokio::select! {
            r = fut => r,
            report = progress.watch(stall) => Err(report),
            _ = tokio::time::sleep(limit) => Err(format!(
                "scenario did not finish within {limit:?}; last state: {}",
                progress.stall_report(Duration::ZERO)
            )),
        }
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    let _ = done_tx.send(());
    let _ = watchdog.join();
    result
}

/// The suite as libtest-mimic trials, one per scenario.
pub(crate) fn trials<B: Backend>(backend: Arc<B>, cfg: RunConfig) -> Vec<Trial> {
    let cfg = Arc::new(cfg);
    all_scenarios::<B>()
        .into_iter()
        .map(|s| {
            let (b, cfg) = (backend.clone(), cfg.clone());
            Trial::ignorable_test(s.name, move || match run_one(&s, &b, &cfg) {
                Outcome::Passed => Ok(Completion::Completed),
                Outcome::Ignored(why) => Ok(Completion::ignored_with(why)),
                Outcome::Failed(msg) => Err(msg.into()),
            })
        })
        .collect()
}

/// Runs every scenario whose name `filter` accepts against `backend`, one after the other, and
/// returns each one's name and outcome in suite order.
///
/// This is the suite as a library: a test can run it against a backend and assert which
/// scenarios pass or fail (the crate's own self-test runs deliberately broken backends this
/// way). `filter` sees every scenario name once, so it can also collect them.
///
/// # Examples
///
/// ```
/// use transport_conformance::{Outcome, RunConfig, run_scenarios};
/// use transport_mem::conformance::MemBackend;
///
/// let mut config = RunConfig::from_env();
/// config.scale = 0.05; // a sample of the frames, for a quick check
/// let results = run_scenarios(MemBackend, &config, |name| name.starts_with("close_"));
/// assert!(results.len() >= 3);
/// for (name, outcome) in results {
///     assert_eq!(outcome, Outcome::Passed, "{name}");
/// }
/// ```
pub fn run_scenarios<B: Backend>(
    backend: B,
    config: &RunConfig,
    mut filter: impl FnMut(&str) -> bool,
) -> Vec<(&'static str, Outcome)> {
    let backend = Arc::new(backend);
    all_scenarios::<B>()
        .into_iter()
        .filter(|s| filter(s.name))
        .map(|s| (s.name, run_one(&s, &backend, config)))
        .collect()
}
