//! The `shm` and `hub` backends for [`transport_api::Registry`]: reading their options from a
//! configuration (`shm://PATH?ring=…`, `hub://PATH?max_peers=…`) and opening listeners and
//! connections with them.

use crate::core::layout::SlotClass;
use crate::hub::{DEFAULT_MAX_PEERS, HubConfig, HubHost, bad_max_peers};
use crate::rendezvous::{AccessPolicy, ShmConfig, ShmListener, connect_config};
use std::time::Duration;
use transport_api::{
    BackendFactory, BoxTransport, DynListener, Result, TransportConfig, TransportError,
};

impl ShmConfig {
    /// Option names understood in an `shm://` configuration: the session's own
    /// ([`SESSION_OPTIONS`](Self::SESSION_OPTIONS)) and the access policy's
    /// ([`AccessPolicy::OPTIONS`]).
    pub const OPTIONS: &'static [&'static str] = &[
        "ring",
        "spin_us",
        "classes",
        "handshake_ms",
        "read_only_payloads",
        "allow_uids",
        "allow_gids",
        "mode",
        "allow_shared_dir",
    ];
    /// The options of the session itself, with their ranges: `ring` (descriptors per
    /// direction, a power of two, see [`Geometry`](crate::Geometry)), `spin_us` (0..=1000000),
    /// `classes` (`SIZExCOUNT,…`), `handshake_ms` (1..=600000), `read_only_payloads`
    /// (`true`/`false`).
    pub const SESSION_OPTIONS: &'static [&'static str] = &[
        "ring",
        "spin_us",
        "classes",
        "handshake_ms",
        "read_only_payloads",
    ];

    /// Reads the options above from a configuration; every number must lie in its range, and
    /// the address (the socket path) must not be empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use transport_shm::ShmConfig;
    ///
    /// let c = ShmConfig::from_config(&"shm:///run/app.sock?spin_us=0&handshake_ms=500".parse()?)?;
    /// assert_eq!(c.handshake_timeout.as_millis(), 500);
    /// let e = ShmConfig::from_config(&"shm:///run/app.sock?spin_us=18446744073709551615".parse()?)
    ///     .unwrap_err();
    /// assert!(e.to_string().contains("spin_us"));
    /// assert!(ShmConfig::from_config(&"shm://?ring=64".parse()?).is_err());
    /// # Ok::<(), transport_api::TransportError>(())
    /// ```
    pub fn from_config(cfg: &TransportConfig) -> Result<ShmConfig> {
        cfg.check_known(Self::OPTIONS)?;
        cfg.require_address()?;
        let mut c = ShmConfig {
            access: AccessPolicy::from_config(cfg)?,
            ..ShmConfig::default()
        };
        if let Some(r) = cfg.get::<u32>("ring")? {
            c.geometry.ring_capacity = r;
        }
        let max_spin_us = Self::MAX_SPIN.as_micros() as u64;
        if let Some(us) = cfg.get_in::<u64>("spin_us", 0..=max_spin_us)? {
            c.spin = Duration::from_micros(us);
        }
        let max_handshake_ms = Self::MAX_HANDSHAKE_TIMEOUT.as_millis() as u64;
        if let Some(ms) = cfg.get_in::<u64>("handshake_ms", 1..=max_handshake_ms)? {
            c.handshake_timeout = Duration::from_millis(ms);
        }
        if let Some(ro) = cfg.get::<bool>("read_only_payloads")? {
            c.read_only_payloads = ro;
        }
        if let Some(spec) = cfg.get::<String>("classes")? {
            c.geometry.classes = parse_classes(&spec)?;
        }
        c.geometry
            .validate()
            .map_err(|e| TransportError::Config(format!("shm geometry in `{cfg}`: {e}")))?;
        Ok(c)
    }
}

fn parse_classes(spec: &str) -> Result<Vec<SlotClass>> {
    spec.split(',')
        .map(|part| {
            let (size, count) = part.split_once('x').ok_or_else(|| {
                TransportError::Config(format!("shm class `{part}` is not SIZExCOUNT"))
            })?;
            let num = |s: &str| {
                s.trim().parse::<u32>().map_err(|_| {
                    TransportError::Config(format!("shm class `{part}`: `{s}` is not a number"))
                })
            };
            Ok(SlotClass {
                slot_size: num(size)?,
                slot_count: num(count)?,
            })
        })
        .collect()
}

impl HubConfig {
    /// Option names understood in a `hub://` configuration: `max_peers` (1..=4096), `wait_ms`
    /// (0..=3600000) and every `shm` option ([`ShmConfig::OPTIONS`]).
    pub const OPTIONS: &'static [&'static str] = &[
        "max_peers",
        "wait_ms",
        "ring",
        "spin_us",
        "classes",
        "handshake_ms",
        "read_only_payloads",
        "allow_uids",
        "allow_gids",
        "mode",
        "allow_shared_dir",
    ];

    /// Reads `max_peers`, `wait_ms` and the `shm` options (see [`ShmConfig::from_config`])
    /// from a configuration.
    pub fn from_config(cfg: &TransportConfig) -> Result<HubConfig> {
        cfg.check_known(Self::OPTIONS)?;
        let mut shm_cfg = cfg.clone();
        shm_cfg.options.remove("max_peers");
        shm_cfg.options.remove("wait_ms");
        let shm = ShmConfig::from_config(&shm_cfg)?;
        let max_peers = cfg
            .get::<u64>("max_peers")?
            .map_or(Ok(DEFAULT_MAX_PEERS), |n| {
                usize::try_from(n).map_err(|_| bad_max_peers(n))
            })?;
        let max_wait_ms = Self::MAX_WAIT.as_millis() as u64;
        let wait = cfg
            .get_in::<u64>("wait_ms", 0..=max_wait_ms)?
            .map_or(Duration::ZERO, Duration::from_millis);
        let c = HubConfig {
            max_peers,
            geometry: shm.geometry,
            spin: shm.spin,
            wait,
            handshake_timeout: shm.handshake_timeout,
            access: shm.access,
            read_only_payloads: shm.read_only_payloads,
        };
        c.validate()?;
        Ok(c)
    }
}

/// What a peer needs to reach a listener configured by `listen`: the same backend and address,
/// and the peer-side options (`spin_us`, `handshake_ms`, `read_only_payloads`); the geometry
/// and the access policy are the listener's.
pub(crate) fn peer_config(listen: &TransportConfig) -> TransportConfig {
    let mut c = TransportConfig::new(listen.backend.clone(), listen.address.clone());
    for key in ["spin_us", "handshake_ms", "read_only_payloads"] {
        if let Some(v) = listen.options.get(key) {
            c.options.insert(key.into(), v.clone());
        }
    }
    c
}

/// The `shm` backend for [`transport_api::Registry`]:
/// `shm:///path/to/socket?ring=256&spin_us=20&classes=256x256,4096x64`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShmFactory;

struct FactoryListener {
    inner: ShmListener,
    config: TransportConfig,
}

#[async_trait::async_trait]
impl DynListener for FactoryListener {
    async fn accept(&self) -> Result<BoxTransport> {
        Ok(Box::new(self.inner.accept().await?))
    }
    fn connect_config(&self) -> TransportConfig {
        peer_config(&self.config)
    }
}

#[async_trait::async_trait]
impl BackendFactory for ShmFactory {
    fn name(&self) -> &'static str {
        "shm"
    }
    async fn listen(&self, config: &TransportConfig) -> Result<Box<dyn DynListener>> {
        let c = ShmConfig::from_config(config)?;
        Ok(Box::new(FactoryListener {
            inner: ShmListener::bind(&config.address, c)?,
            config: config.clone(),
        }))
    }
    async fn connect(&self, config: &TransportConfig) -> Result<BoxTransport> {
        let c = ShmConfig::from_config(config)?;
        Ok(Box::new(connect_config(&config.address, &c).await?))
    }
}

/// The `hub` backend for [`transport_api::Registry`]:
/// `hub:///path/to/socket?max_peers=64&ring=256&spin_us=20&classes=256x256,4096x64`.
///
/// `listen` starts a [`HubHost`] whose `accept` yields each peer's session (an owning
/// [`HubPeer`](crate::HubPeer)); `connect` joins a hub as a peer (the same as `shm` connect, which also
/// accepts a hub).
#[derive(Clone, Copy, Debug, Default)]
pub struct HubFactory;

struct HubDynListener {
    hub: HubHost,
    config: TransportConfig,
}

#[async_trait::async_trait]
impl DynListener for HubDynListener {
    async fn accept(&self) -> Result<BoxTransport> {
        let (_, p) = self.hub.accept_owned().await?;
        Ok(Box::new(p))
    }
    fn connect_config(&self) -> TransportConfig {
        peer_config(&self.config)
    }
}

#[async_trait::async_trait]
impl BackendFactory for HubFactory {
    fn name(&self) -> &'static str {
        "hub"
    }
    async fn listen(&self, config: &TransportConfig) -> Result<Box<dyn DynListener>> {
        let c = HubConfig::from_config(config)?;
        Ok(Box::new(HubDynListener {
            hub: HubHost::bind(&config.address, c)?,
            config: config.clone(),
        }))
    }
    async fn connect(&self, config: &TransportConfig) -> Result<BoxTransport> {
        let c = HubConfig::from_config(config)?;
        let peer = ShmConfig {
            spin: c.spin,
            handshake_timeout: c.handshake_timeout,
            read_only_payloads: c.read_only_payloads,
            ..ShmConfig::default()
        };
        Ok(Box::new(connect_config(&config.address, &peer).await?))
    }
}
