//! The hub's parameters and their limits.

use crate::core::layout::Geometry;
use crate::rendezvous::{AccessPolicy, ShmConfig};
use std::time::Duration;
use transport_api::{Result, TransportError};

/// Default number of regions (peers attached at once).
pub(crate) const DEFAULT_MAX_PEERS: usize = 64;
/// Largest number of regions a hub accepts.
pub const MAX_HUB_PEERS: usize = 4096;

/// Hub parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubConfig {
    /// Number of regions, i.e. peers attached at once (1..=[`MAX_HUB_PEERS`]; default 64).
    pub max_peers: usize,
    /// Ring capacity and slot classes of every region (both directions).
    pub geometry: Geometry,
    /// How long [`HubHost::recv_any`](crate::HubHost::recv_any) sweeps all peers before parking
    /// (at most [`ShmConfig::MAX_SPIN`]); after a host session rang its peer's doorbell, up to
    /// five times this (and at most [`ShmConfig::MAX_SPIN`]) while the answer is due, as a
    /// session's `recv` (see [`ShmConfig::spin`]).
    pub spin: Duration,
    /// How long a peer connecting while every region is busy waits for one before it is
    /// refused with [`Refusal::Full`](transport_api::Refusal::Full) (option `wait_ms`,
    /// 0..=3600000; default 0: refused at once).
    pub wait: Duration,
    /// How long the host waits for a peer to finish the handshake (option `handshake_ms`).
    pub handshake_timeout: Duration,
    /// Who may attach, and the socket file's mode (default: only this process's uid, `0600`).
    pub access: AccessPolicy,
    /// Map each peer's payload memory read-only in the host (option `read_only_payloads`,
    /// default `false`; see [`ShmConfig::read_only_payloads`]).
    pub read_only_payloads: bool,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            max_peers: DEFAULT_MAX_PEERS,
            geometry: Geometry::default(),
            spin: ShmConfig::default().spin,
            wait: Duration::ZERO,
            handshake_timeout: ShmConfig::default().handshake_timeout,
            access: AccessPolicy::default(),
            read_only_payloads: false,
        }
    }
}

impl HubConfig {
    /// The longest `wait` accepted (one hour).
    pub const MAX_WAIT: Duration = Duration::from_secs(3600);

    pub(crate) fn session_options(&self) -> crate::session::SessionOptions {
        crate::session::SessionOptions {
            spin: self.spin,
            shared_answers: None,
            read_only_payloads: self.read_only_payloads,
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.max_peers == 0 || self.max_peers > MAX_HUB_PEERS {
            return Err(bad_max_peers(self.max_peers as u64));
        }
        for (name, value, max) in [
            ("spin", self.spin, ShmConfig::MAX_SPIN),
            ("wait", self.wait, Self::MAX_WAIT),
            (
                "handshake_timeout",
                self.handshake_timeout,
                ShmConfig::MAX_HANDSHAKE_TIMEOUT,
            ),
        ] {
            if value > max {
                return Err(TransportError::Config(format!(
                    "hub {name} = {value:?} exceeds the limit of {max:?}"
                )));
            }
        }
        if self.handshake_timeout.is_zero() {
            return Err(TransportError::Config(
                "hub handshake_timeout must be at least 1 ms".into(),
            ));
        }
        self.geometry
            .validate()
            .map_err(|e| TransportError::Config(format!("hub region geometry: {e}")))
    }
}

pub(crate) fn bad_max_peers(n: u64) -> TransportError {
    TransportError::Config(format!(
        "hub max_peers = {n} is outside 1..={MAX_HUB_PEERS}"
    ))
}
