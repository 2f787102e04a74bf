//! Session options: their defaults, ranges, and how they are read from a configuration.

use crate::wire::{self, Hello};
use std::time::Duration;
use transport_access::AccessPolicy;
use transport_api::{Result, TransportConfig, TransportError};

/// Options of one `tcp://` or `unix://` endpoint. Each side announces its own in the hello;
/// the session uses the smaller `max_payload` of the two.
///
/// # Examples
///
/// ```
/// use transport_net::NetConfig;
///
/// let c = NetConfig::from_config(&"tcp://127.0.0.1:7000?keepalive_ms=2000&window=65536".parse()?)?;
/// assert_eq!(c.keepalive.as_millis(), 2000);
/// assert_eq!(c.window, 65536);
/// let e = NetConfig::from_config(&"tcp://127.0.0.1:7000?keepalive_ms=0".parse()?).unwrap_err();
/// assert!(e.to_string().contains("keepalive_ms"));
/// # Ok::<(), transport_api::TransportError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// Largest payload this side accepts (`max_payload`, 1..=67108864 bytes; default 16 MiB).
    pub max_payload: usize,
    /// Frame bytes (payload plus 36) the peer may have sent and this side not yet consumed
    /// (`window`, 4096..=1073741824; default 8 MiB). Bounds the receiver's memory; a frame
    /// larger than the window is still sent, alone.
    pub window: u32,
    /// Silence after which the peer is declared dead (`keepalive_ms`, 20..=3600000; default
    /// 10 s). Also the kernel's `TCP_USER_TIMEOUT`.
    pub keepalive: Duration,
    /// Longest wait for the peer's hello, and for a TCP connection to be established
    /// (`handshake_ms`, 1..=600000; default 10 s).
    pub handshake_timeout: Duration,
    /// Who may connect to a `unix://` listener, and its socket file's mode (options
    /// `allow_uids`, `allow_gids`, `mode`, `allow_shared_dir` of `unix://` URLs). By default only
    /// the listener's own effective uid, with a `0600` socket file in a directory not writable by
    /// every user. `tcp://` has no such check: see the README's security section.
    pub access: AccessPolicy,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            max_payload: 16 << 20,
            window: 8 << 20,
            keepalive: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            access: AccessPolicy::default(),
        }
    }
}

impl NetConfig {
    /// The option names `tcp://` and `unix://` configurations accept (`unix://` also those of
    /// [`AccessPolicy::OPTIONS`]).
    pub const OPTIONS: &'static [&'static str] =
        &["max_payload", "window", "keepalive_ms", "handshake_ms"];

    /// Reads the options above; every number must lie in its range, unknown options and an
    /// empty address are `Config` errors that name them.
    pub fn from_config(cfg: &TransportConfig) -> Result<NetConfig> {
        let unix = cfg.backend == "unix";
        if unix {
            let known: Vec<&str> = Self::OPTIONS
                .iter()
                .chain(AccessPolicy::OPTIONS)
                .copied()
                .collect();
            cfg.check_known(&known)?;
        } else {
            cfg.check_known(Self::OPTIONS)?;
        }
        cfg.require_address()?;
        let mut c = NetConfig::default();
        if unix {
            c.access = AccessPolicy::from_config(cfg)?;
        }
        if let Some(v) = cfg.get_in::<u32>("max_payload", 1..=wire::MAX_PAYLOAD_LIMIT)? {
            c.max_payload = v as usize;
        }
        if let Some(v) = cfg.get_in::<u32>("window", wire::WINDOW_RANGE)? {
            c.window = v;
        }
        if let Some(v) = cfg.get_in::<u32>("keepalive_ms", wire::KEEPALIVE_RANGE_MS)? {
            c.keepalive = Duration::from_millis(u64::from(v));
        }
        if let Some(v) = cfg.get_in::<u64>("handshake_ms", 1..=600_000)? {
            c.handshake_timeout = Duration::from_millis(v);
        }
        Ok(c)
    }

    /// The hello this configuration announces; a `Config` error if a field is out of range.
    pub(crate) fn hello(&self) -> Result<Hello> {
        let bad = |what: String| Err(TransportError::Config(what));
        let max_payload = u32::try_from(self.max_payload).unwrap_or(u32::MAX);
        if max_payload == 0 || max_payload > wire::MAX_PAYLOAD_LIMIT {
            return bad(format!(
                "max_payload {} is outside 1..={}",
                self.max_payload,
                wire::MAX_PAYLOAD_LIMIT
            ));
        }
        let keepalive_ms = u32::try_from(self.keepalive.as_millis()).unwrap_or(u32::MAX);
        if !wire::KEEPALIVE_RANGE_MS.contains(&keepalive_ms) {
            return bad(format!(
                "keepalive of {:?} is outside {:?} ms",
                self.keepalive,
                wire::KEEPALIVE_RANGE_MS
            ));
        }
        if !wire::WINDOW_RANGE.contains(&self.window) {
            return bad(format!(
                "window {} is outside {:?}",
                self.window,
                wire::WINDOW_RANGE
            ));
        }
        Ok(Hello {
            max_payload,
            keepalive_ms,
            window: self.window,
        })
    }
}
