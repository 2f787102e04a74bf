//! # transport-conformance
//!
//! One suite of scenarios, run unchanged against every [`Transport`] backend.
//!
//! A backend author implements [`Backend`] (make a connected pair; optionally listen, accept and
//! connect across processes; declare [`Capabilities`]) and adds a test target with
//! `harness = false` whose whole body is one line:
//!
//! ```ignore
//! transport_conformance::conformance_main!(my_backend::ConformanceBackend::default());
//! ```
//!
//! Every scenario then runs as a named test (`cargo test -p my-backend --test conformance`,
//! filters work as usual). Scenarios a backend cannot run are reported as *ignored* with the
//! reason, by name. Cross-process scenarios re-execute the test binary as the peer process.
//!
//! Each scenario runs on its own multi-threaded tokio runtime under a watchdog driven by
//! progress: every endpoint a scenario uses reports each frame moved and each operation ended,
//! and a scenario during which nothing moves for `CONFORMANCE_STALL_MS` (default 5000) fails at
//! once, naming the step it was at and the operations still blocked (`1× recv on B`). A lost
//! frame or a `Closed` that never comes thus costs seconds, not minutes. A total limit
//! ([`SCENARIO_TIMEOUT`]) stays as a backstop, and a wedged runtime aborts the binary.
//!
//! Random choices come from one seed per run, printed at the start and in every failure
//! (`CONFORMANCE_SEED` replays it); `CONFORMANCE_SCALE` scales the frame counts of the large
//! scenarios (see [`RunConfig`]). [`run_scenarios`] runs the suite from a program.
//! After every scenario both endpoints must be idle ([`Stats::is_idle`]): nothing queued and no
//! buffer memory held.
//!
//! [`clauses`] maps each clause of the contract to the scenarios that check it. The suite tests
//! itself: `tests/broken_backends.rs` wraps the `mem` backend in one deliberate violation each
//! and asserts which scenario catches it. A scenario a backend is known to fail is declared in
//! [`Backend::known_bugs`] and reported as ignored with the reason until fixed.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use transport_api::{Result, Stats, Transport};

pub mod clauses;
pub mod progress;
mod runner;
mod scenario;
mod scenarios;
mod silent_peer;
pub mod util;
mod xproc;

pub use runner::{DEFAULT_STALL, Outcome, RunConfig, run_scenarios};

/// What a backend can do, so the suite knows which scenarios apply and which boundaries to test.
///
/// No flag lets a backend skip a clause of the contract: each one either adds cases (sizes to
/// test), tunes a bound the suite checks, or, for a mode the backend does not have at all,
/// reports the scenarios of that mode as *ignored* with the reason. What each field changes:
///
/// | Field | Scenarios it affects | Effect |
/// |---|---|---|
/// | `boundaries` | `integrity_payload_sizes`, `zero_copy_alloc_buffers`, `alloc_dropped_unsent_returns_memory`, `xproc_echo_integrity` | adds each boundary −1, exactly and +1 to the sizes tested; skips nothing |
/// | `zero_copy` | `zero_copy_alloc_buffers` | `false` skips only the check that `alloc` buffers are counted in `Stats::zero_copy_sends`; delivery and content are still checked |
/// | `copies_up_to` | `zero_copy_alloc_buffers` | `alloc` buffers up to this size are left out of that count |
/// | `cross_process` | every `xproc_*` scenario | `false` reports them ignored: they need [`Backend::listen`], [`Backend::accept`] and [`Backend::connect`] |
/// | `small_memory_bound` | `backpressure_send_waits_try_send_full` | the bound the held memory is checked against; skips nothing |
#[derive(Clone, Debug)]
pub struct Capabilities {
    /// Payload lengths where the backend changes representation (inline capacity, size-class
    /// limits). Each is tested at −1, exactly, and +1 (within `max_payload`), because that is
    /// where length and copy bugs live. Skips nothing.
    pub boundaries: Vec<usize>,
    /// Whether `alloc` buffers are sent without a copy (`Stats::zero_copy_sends` counts them).
    /// When `false`, `zero_copy_alloc_buffers` does not check that count (a backend that copies
    /// every payload has no zero-copy sends to count); it still checks every frame arrives
    /// intact and that each send is counted once.
    pub zero_copy: bool,
    /// `alloc` buffers of at most this many bytes may be sent by copy even when `zero_copy` is
    /// set (a backend that carries small payloads inline, where a copy is cheaper than a
    /// buffer reference); 0 when every `alloc` buffer is zero-copy. Only narrows the zero-copy
    /// count check.
    pub copies_up_to: usize,
    /// Whether [`Backend::listen`]/[`Backend::connect`] work across processes. When `false`,
    /// every `xproc_*` scenario (peer death, reconnection, graceful exit of a peer process) is
    /// reported as ignored with the reason, since it needs a peer in another process.
    pub cross_process: bool,
    /// Upper bound, in bytes, of `Stats::buffer_bytes_in_use` on one endpoint of a pair made with
    /// [`PairOptions::small`] whose peer stopped reading: `backpressure_send_waits_try_send_full`
    /// checks memory stays within it (memory bounded by configuration). Skips nothing.
    pub small_memory_bound: u64,
    /// The backend declares a peer dead after this much silence (a peer stopped without
    /// closing); `None` skips the silent-peer scenario.
    pub liveness: Option<Duration>,
}

/// How to size a pair for a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairOptions {
    /// Small queues, so backpressure is reached quickly (the backend picks what "small" means,
    /// e.g. a handful of frames or a few KiB per direction).
    pub small: bool,
}

impl PairOptions {
    /// The backend's default sizes.
    pub const DEFAULT: PairOptions = PairOptions { small: false };
    /// Small queues.
    pub const SMALL: PairOptions = PairOptions { small: true };

    /// Small queues.
    pub fn small() -> Self {
        Self::SMALL
    }
}

/// A backend under test.
///
/// Only [`Backend::pair`] and [`Backend::capabilities`] are required. Backends that run across
/// processes also implement `listen`/`accept`/`connect`; the suite then spawns the peer as a real
/// child process (this same test binary, re-executed) and kills it with SIGKILL.
pub trait Backend: Send + Sync + 'static {
    /// The endpoint type.
    type T: Transport + 'static;
    /// The cross-process listener type (use `()` if unsupported).
    type Listener: Send + Sync + 'static;

    /// Short backend name, used in messages.
    fn name(&self) -> &'static str;

    /// What the backend supports.
    fn capabilities(&self) -> Capabilities;

    /// Two connected endpoints in this process.
    fn pair(&self, opts: PairOptions) -> impl Future<Output = Result<(Self::T, Self::T)>> + Send;

    /// Starts listening for a peer in another process; returns the listener and the address
    /// to pass to [`Backend::connect`] in the child.
    fn listen(
        &self,
        _opts: PairOptions,
    ) -> impl Future<Output = Result<(Self::Listener, String)>> + Send {
        async { Err(unsupported(self.name(), "cross-process sessions")) }
    }

    /// Accepts the next peer on `listener`.
    fn accept(&self, _listener: &Self::Listener) -> impl Future<Output = Result<Self::T>> + Send {
        async { Err(unsupported(self.name(), "cross-process sessions")) }
    }

    /// Connects to `address` (called in the child process).
    fn connect(&self, _address: &str) -> impl Future<Output = Result<Self::T>> + Send {
        async { Err(unsupported(self.name(), "cross-process sessions")) }
    }

    /// Scenarios this backend is known to fail, each with the reason (a bug being fixed). The
    /// runner reports them as ignored with that reason and does not run them; run them anyway
    /// with `--include-ignored` (or [`RunConfig::run_known_bugs`]). Empty by default.
    fn known_bugs(&self) -> Vec<(&'static str, &'static str)> {
        Vec::new()
    }
}

fn unsupported(backend: &'static str, what: &str) -> transport_api::TransportError {
    transport_api::TransportError::Unsupported {
        backend,
        what: what.to_string(),
    }
}

/// Generates `fn main` for a `harness = false` test target that runs the whole suite against
/// the given backend value.
#[macro_export]
macro_rules! conformance_main {
    ($backend:expr) => {
        fn main() -> ::std::process::ExitCode {
            $crate::run_main($backend)
        }
    };
}

/// Entry point used by [`conformance_main!`]: runs the child role when this process was spawned
/// as a peer, else the suite with libtest-style arguments and output.
pub fn run_main<B: Backend>(backend: B) -> ExitCode {
    if let Some(code) = xproc::child_main(&backend) {
        return code;
    }
    let args = libtest_mimic::Arguments::from_args();
    let mut config = RunConfig::from_env();
    config.run_known_bugs = args.ignored || args.include_ignored;
    eprintln!(
        "conformance: backend `{}`, seed {} (replay with CONFORMANCE_SEED={}), scale {}, \
         stall limit {:?}",
        backend.name(),
        config.seed,
        config.seed,
        config.scale,
        config.stall
    );
    let trials = runner::trials(Arc::new(backend), config);
    libtest_mimic::run(&args, trials).exit_code()
}

/// Default time a scenario may take before it fails.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);

/// Checks that an endpoint holds nothing: no queued frames, no buffer memory.
pub fn check_idle(who: &str, s: &Stats) -> std::result::Result<(), String> {
    if s.is_idle() {
        Ok(())
    } else {
        Err(format!(
            "{who} is not idle after the scenario (leak?): {s:?}"
        ))
    }
}
