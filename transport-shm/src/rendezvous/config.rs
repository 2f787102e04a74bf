//! The parameters a listener chooses for its sessions.

use crate::core::layout::Geometry;
use crate::session::SessionOptions;
use std::time::Duration;
use transport_access::AccessPolicy;

/// Session parameters. The listener chooses the geometry (the connector adopts what the
/// segment says); each side uses its own `spin` and `handshake_timeout`; `access` is the
/// listener's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShmConfig {
    /// Ring capacity and slot classes (identical for both directions).
    pub geometry: Geometry,
    /// How long a waiting `send`/`recv` spins before parking on its eventfd (at most
    /// [`ShmConfig::MAX_SPIN`]). After this end rang the peer's doorbell, a `recv` spins on
    /// for as long as the previous answer to a ring took (plus a quarter), up to five times this
    /// and at most [`ShmConfig::MAX_SPIN`]: the peer's wake-up can outlast the spin time on a
    /// virtual machine. Zero: park at once, always.
    pub spin: Duration,
    /// How long either side of the handshake waits for the other before it fails (option
    /// `handshake_ms`, 1..=600000; default 10 s).
    pub handshake_timeout: Duration,
    /// Who may connect to a listener, and its socket file's mode (default: only this
    /// process's uid, mode `0600`).
    pub access: AccessPolicy,
    /// Map the peer's payload memory read-only in this process (option `read_only_payloads`,
    /// default `false`), so that a stray write here faults instead of changing a frame in
    /// flight. Each side chooses for itself. Off by default: it cost a quarter of the stream
    /// throughput at 1 KiB to 64 KiB frames on the machine measured (BENCHMARKS.md), round
    /// trips unchanged.
    pub read_only_payloads: bool,
}

impl ShmConfig {
    /// The longest spin accepted (1 s): a spin burns a CPU while it lasts.
    pub const MAX_SPIN: Duration = crate::session::spin::MAX_SPIN;
    /// The longest handshake timeout accepted (10 minutes).
    pub const MAX_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(600);
}

impl Default for ShmConfig {
    fn default() -> Self {
        ShmConfig {
            geometry: Geometry::default(),
            spin: Duration::from_micros(20),
            handshake_timeout: Duration::from_secs(10),
            access: AccessPolicy::default(),
            read_only_payloads: false,
        }
    }
}

impl ShmConfig {
    pub(crate) fn session_options(&self) -> SessionOptions {
        SessionOptions {
            spin: self.spin,
            shared_answers: None,
            read_only_payloads: self.read_only_payloads,
        }
    }
}
