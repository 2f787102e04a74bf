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
//! Each scenario runs on its own multi-threaded tokio runtime under a watchdog: a scenario that
//! does not finish in time fails (and a wedged runtime aborts the binary) instead of hanging.
//! After every scenario both endpoints must be idle ([`Stats::is_idle`]): nothing queued and no
//! buffer memory held.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use transport_api::{Result, Stats, Transport};

mod scenarios;
mod silent_peer;
pub mod util;
mod xproc;

/// What a backend can do, so the suite knows which scenarios apply and which boundaries to test.
#[derive(Clone, Debug)]
pub struct Capabilities {
    /// Payload lengths where the backend changes representation (inline capacity, size-class
    /// limits). Each is tested at −1, exactly, and +1 (within `max_payload`).
    pub boundaries: Vec<usize>,
    /// Whether `alloc` buffers are sent without a copy (`Stats::zero_copy_sends` counts them).
    pub zero_copy: bool,
    /// `alloc` buffers of at most this many bytes may be sent by copy even when `zero_copy` is
    /// set (a backend that carries small payloads inline, where a copy is cheaper than a
    /// buffer reference); 0 when every `alloc` buffer is zero-copy.
    pub copies_up_to: usize,
    /// Whether [`Backend::listen`]/[`Backend::connect`] work across processes.
    pub cross_process: bool,
    /// Upper bound, in bytes, of `Stats::buffer_bytes_in_use` on one endpoint of a pair made with
    /// [`PairOptions::small`] whose peer stopped reading.
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
    let backend = Arc::new(backend);
    let mut trials = scenarios::trials(&backend);
    trials.extend(xproc::trials(&backend));
    trials.extend(silent_peer::trials(&backend));
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
