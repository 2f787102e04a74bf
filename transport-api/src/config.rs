//! Backend selection by configuration.
//!
//! A [`TransportConfig`] names a backend, an address and options. It deserialises from a
//! structured form (JSON, TOML, …) or from a compact URL string, and a [`Registry`] of backend
//! factories turns it into a listener or a connected [`BoxTransport`]. Service code therefore
//! swaps backends by configuration alone:
//!
//! ```
//! use transport_api::TransportConfig;
//!
//! let a: TransportConfig = "mem://orders?capacity=64".parse().unwrap();
//! let b: TransportConfig =
//!     serde_json::from_str(r#"{ "backend": "mem", "address": "orders", "options": { "capacity": 64 } }"#)
//!         .unwrap();
//! assert_eq!(a, b);
//! assert_eq!(a.get::<usize>("capacity").unwrap(), Some(64));
//! ```

use crate::{BoxTransport, Result, TransportError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// One option value: a boolean, an integer or a string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OptionValue {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// Anything else, as text.
    Str(String),
}

impl fmt::Display for OptionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionValue::Bool(b) => write!(f, "{b}"),
            OptionValue::Int(i) => write!(f, "{i}"),
            OptionValue::Str(s) => f.write_str(s),
        }
    }
}

/// Which backend to use, where, and with which options.
///
/// Deserialises from either a URL string (`"mem://name?capacity=64"`,
/// `"shm:///run/app.sock?ring=256"`) or a map with `backend`, `address` and `options`.
///
/// # Examples
///
/// ```
/// use transport_api::TransportConfig;
/// use transport_api::config::OptionValue;
///
/// let config = TransportConfig::new("shm", "/run/app.sock")
///     .with_option("ring", OptionValue::Int(256));
/// assert_eq!(config.to_string(), "shm:///run/app.sock?ring=256");
/// assert_eq!(config.get::<u32>("ring")?, Some(256));
/// assert_eq!(config.get::<u32>("spin_us")?, None);
///
/// // A backend names the options it knows; a typo is an error that names it.
/// let typo: TransportConfig = "shm:///run/app.sock?rign=256".parse()?;
/// let e = typo.check_known(&["ring", "spin_us"]).unwrap_err();
/// assert!(e.to_string().contains("unknown option `rign`"));
/// # Ok::<(), transport_api::TransportError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ConfigRepr")]
pub struct TransportConfig {
    /// Backend name, e.g. `"mem"` or `"shm"`.
    pub backend: String,
    /// Backend-specific address (a rendezvous name, a socket path, …).
    #[serde(default)]
    pub address: String,
    /// Backend-specific options.
    #[serde(default)]
    pub options: BTreeMap<String, OptionValue>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ConfigRepr {
    Url(String),
    Map {
        backend: String,
        #[serde(default)]
        address: String,
        #[serde(default)]
        options: BTreeMap<String, OptionValue>,
    },
}

impl TryFrom<ConfigRepr> for TransportConfig {
    type Error = TransportError;
    fn try_from(r: ConfigRepr) -> Result<Self> {
        match r {
            ConfigRepr::Url(s) => s.parse(),
            ConfigRepr::Map {
                backend,
                address,
                options,
            } => {
                if backend.is_empty() {
                    return Err(TransportError::Config("`backend` is empty".into()));
                }
                Ok(TransportConfig {
                    backend,
                    address,
                    options,
                })
            }
        }
    }
}

impl FromStr for TransportConfig {
    type Err = TransportError;

    /// Parses `backend://address?key=value&key2=value2`. Values that parse as integers or
    /// booleans become those; `%XX` escapes are not interpreted.
    fn from_str(s: &str) -> Result<Self> {
        let (backend, rest) = s.split_once("://").ok_or_else(|| {
            TransportError::Config(format!(
                "`{s}` is not a transport URL; expected `backend://address?key=value`"
            ))
        })?;
        if backend.is_empty()
            || !backend
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(TransportError::Config(format!(
                "`{backend}` is not a valid backend name in `{s}`"
            )));
        }
        let (address, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let mut options = BTreeMap::new();
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
            if k.is_empty() {
                return Err(TransportError::Config(format!(
                    "empty option name in `{s}`"
                )));
            }
            let v = if let Ok(i) = v.parse::<i64>() {
                OptionValue::Int(i)
            } else if let Ok(b) = v.parse::<bool>() {
                OptionValue::Bool(b)
            } else {
                OptionValue::Str(v.to_string())
            };
            if options.insert(k.to_string(), v).is_some() {
                return Err(TransportError::Config(format!(
                    "option `{k}` given twice in `{s}`"
                )));
            }
        }
        Ok(TransportConfig {
            backend: backend.to_string(),
            address: address.to_string(),
            options,
        })
    }
}

impl fmt::Display for TransportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.backend, self.address)?;
        for (i, (k, v)) in self.options.iter().enumerate() {
            write!(f, "{}{k}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

/// Types an option value can be read as.
pub trait FromOption: Sized {
    /// Converts, or explains why not.
    fn from_option(v: &OptionValue) -> std::result::Result<Self, String>;
}

macro_rules! int_option {
    ($($t:ty),*) => {$(
        impl FromOption for $t {
            fn from_option(v: &OptionValue) -> std::result::Result<Self, String> {
                match v {
                    OptionValue::Int(i) => <$t>::try_from(*i)
                        .map_err(|_| format!("{i} is out of range for {}", stringify!($t))),
                    OptionValue::Str(s) => s.parse().map_err(|_| format!("`{s}` is not a {}", stringify!($t))),
                    OptionValue::Bool(b) => Err(format!("`{b}` is not a {}", stringify!($t))),
                }
            }
        }
    )*};
}
int_option!(u8, u16, u32, u64, usize, i32, i64);

impl FromOption for bool {
    fn from_option(v: &OptionValue) -> std::result::Result<Self, String> {
        match v {
            OptionValue::Bool(b) => Ok(*b),
            other => Err(format!("`{other}` is not a boolean")),
        }
    }
}

impl FromOption for String {
    fn from_option(v: &OptionValue) -> std::result::Result<Self, String> {
        Ok(v.to_string())
    }
}

impl TransportConfig {
    /// A configuration for `backend` at `address` with no options.
    pub fn new(backend: impl Into<String>, address: impl Into<String>) -> Self {
        TransportConfig {
            backend: backend.into(),
            address: address.into(),
            options: BTreeMap::new(),
        }
    }

    /// Adds or replaces an option.
    pub fn with_option(mut self, key: impl Into<String>, value: OptionValue) -> Self {
        self.options.insert(key.into(), value);
        self
    }

    /// Reads option `key` as `V`; `Ok(None)` when absent, `Config` error when it does not
    /// convert.
    pub fn get<V: FromOption>(&self, key: &str) -> Result<Option<V>> {
        self.options
            .get(key)
            .map(|v| {
                V::from_option(v).map_err(|why| {
                    TransportError::Config(format!("option `{key}` of `{self}`: {why}"))
                })
            })
            .transpose()
    }

    /// Reads option `key` as `V` and checks that it lies in `range`; `Ok(None)` when absent.
    ///
    /// Backends read every numeric option through this, so an absurd value (a spin of
    /// `u64::MAX` microseconds, a queue of `u64::MAX` frames) is a `Config` error naming the
    /// option, the value and the accepted range, never a setting that hangs or exhausts memory.
    ///
    /// ```
    /// use transport_api::TransportConfig;
    ///
    /// let c: TransportConfig = "mem://x?capacity=18446744073709551615".parse().unwrap();
    /// let e = c.get_in::<usize>("capacity", 1..=1 << 20).unwrap_err().to_string();
    /// assert!(e.contains("capacity") && e.contains("1..=1048576"), "{e}");
    /// assert_eq!(c.get_in::<usize>("absent", 1..=8).unwrap(), None);
    /// ```
    pub fn get_in<V>(&self, key: &str, range: std::ops::RangeInclusive<V>) -> Result<Option<V>>
    where
        V: FromOption + PartialOrd + fmt::Display,
    {
        match self.get::<V>(key)? {
            Some(v) if !range.contains(&v) => Err(TransportError::Config(format!(
                "option `{key}` of `{self}`: {v} is outside the accepted range {}..={}",
                range.start(),
                range.end()
            ))),
            v => Ok(v),
        }
    }

    /// Fails with a `Config` error unless the address is non-empty: every backend needs to know
    /// where to listen or connect, and an empty address would otherwise pick a name no peer can
    /// find.
    pub fn require_address(&self) -> Result<&str> {
        if self.address.is_empty() {
            return Err(TransportError::Config(format!(
                "`{self}` has an empty address; backend `{}` needs one",
                self.backend
            )));
        }
        Ok(&self.address)
    }

    /// Fails with a `Config` error naming the first option not in `known`, so typos are caught.
    pub fn check_known(&self, known: &[&str]) -> Result<()> {
        match self.options.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(TransportError::Config(format!(
                "unknown option `{k}` for backend `{}`; known options: {}",
                self.backend,
                known.join(", ")
            ))),
            None => Ok(()),
        }
    }
}

/// A listener made by a factory: accepts connected transports.
#[async_trait::async_trait]
pub trait DynListener: Send + Sync {
    /// Waits for the next peer and returns the connected transport.
    async fn accept(&self) -> Result<BoxTransport>;
    /// The configuration a peer passes to [`Registry::connect`] to reach this listener.
    fn connect_config(&self) -> TransportConfig;
}

/// Builds listeners and connections for one backend. Each backend crate provides one.
#[async_trait::async_trait]
pub trait BackendFactory: Send + Sync {
    /// The backend name this factory handles (`TransportConfig::backend`).
    fn name(&self) -> &'static str;
    /// Starts listening as described by `config`.
    async fn listen(&self, config: &TransportConfig) -> Result<Box<dyn DynListener>>;
    /// Connects to a listener as described by `config`.
    async fn connect(&self, config: &TransportConfig) -> Result<BoxTransport>;
}

/// The set of backends an application knows, by name.
///
/// Each backend crate provides a [`BackendFactory`]; the `transport` facade's `registry()`
/// returns one with every backend compiled in.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use transport_api::{Frame, Registry, Transport, TransportConfig};
///
/// let registry = Registry::new().with(transport_mem::MemFactory);
/// let config: TransportConfig = "mem://registry-doc?capacity=16".parse()?;
/// let listener = registry.listen(&config).await?;
/// let client = registry.connect(&listener.connect_config()).await?;
/// let server = listener.accept().await?;
/// client.send(Frame::new("ping")).await?;
/// assert_eq!(server.recv().await?.bytes(), b"ping");
///
/// let Err(unknown) = registry.connect(&"carrier-pigeon://home".parse()?).await else {
///     panic!("no backend is called carrier-pigeon");
/// };
/// assert!(unknown.to_string().contains("no backend named `carrier-pigeon`"));
/// # Ok::<(), transport_api::TransportError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    factories: BTreeMap<&'static str, Arc<dyn BackendFactory>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Adds (or replaces) a backend factory.
    pub fn with(mut self, factory: impl BackendFactory + 'static) -> Self {
        self.register(factory);
        self
    }

    /// Adds (or replaces) a backend factory.
    pub fn register(&mut self, factory: impl BackendFactory + 'static) {
        self.factories.insert(factory.name(), Arc::new(factory));
    }

    /// Names of the registered backends.
    pub fn backends(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.factories.keys().copied()
    }

    fn factory(&self, config: &TransportConfig) -> Result<&Arc<dyn BackendFactory>> {
        self.factories.get(config.backend.as_str()).ok_or_else(|| {
            TransportError::Config(format!(
                "no backend named `{}` (in `{config}`); known backends: {}",
                config.backend,
                self.backends().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// Starts listening with the backend `config` names.
    pub async fn listen(&self, config: &TransportConfig) -> Result<Box<dyn DynListener>> {
        let l = self.factory(config)?.listen(config).await?;
        tracing::debug!(config = %config, "transport listening");
        Ok(l)
    }

    /// Connects with the backend `config` names.
    pub async fn connect(&self, config: &TransportConfig) -> Result<BoxTransport> {
        let t = self.factory(config)?.connect(config).await?;
        tracing::debug!(config = %config, "transport connected");
        Ok(t)
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.factories.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parses_and_displays_back() {
        let c: TransportConfig = "shm:///run/app.sock?ring=256&name=x&fast".parse().unwrap();
        assert_eq!(c.backend, "shm");
        assert_eq!(c.address, "/run/app.sock");
        assert_eq!(c.get::<u32>("ring").unwrap(), Some(256));
        assert_eq!(c.get::<String>("name").unwrap().as_deref(), Some("x"));
        assert_eq!(c.get::<bool>("fast").unwrap(), Some(true));
        assert_eq!(c.to_string().parse::<TransportConfig>().unwrap(), c);
    }

    #[test]
    fn bad_urls_are_explained() {
        for bad in ["nourl", "://x", "a b://x", "mem://x?=3", "mem://x?a=1&a=2"] {
            let e = bad.parse::<TransportConfig>().unwrap_err();
            assert!(matches!(e, TransportError::Config(_)), "{bad}: {e}");
        }
        let c: TransportConfig = "mem://x?capacity=-1&z=1".parse().unwrap();
        let e = c.get::<usize>("capacity").unwrap_err().to_string();
        assert!(e.contains("capacity") && e.contains("-1"), "{e}");
        let e = c.check_known(&["capacity"]).unwrap_err().to_string();
        assert!(e.contains("`z`"), "{e}");
    }

    #[test]
    fn ranged_options_name_key_value_and_range() {
        let c: TransportConfig = "x://a?n=9&huge=18446744073709551615&neg=-3"
            .parse()
            .unwrap();
        assert_eq!(c.get_in::<u32>("n", 1..=9).unwrap(), Some(9));
        let e = c.get_in::<u32>("n", 1..=8).unwrap_err().to_string();
        assert!(
            e.contains("`n`") && e.contains("9 is outside") && e.contains("1..=8"),
            "{e}"
        );
        let e = c.get_in::<u64>("huge", 0..=1000).unwrap_err().to_string();
        assert!(
            e.contains("18446744073709551615") && e.contains("0..=1000"),
            "{e}"
        );
        let e = c.get_in::<u64>("neg", 0..=1000).unwrap_err().to_string();
        assert!(e.contains("neg") && e.contains("-3"), "{e}");
        assert_eq!(c.get_in::<u64>("missing", 0..=1).unwrap(), None);
    }

    #[test]
    fn empty_address_is_refused_by_name() {
        let c: TransportConfig = "shm://?spin_us=1".parse().unwrap();
        let e = c.require_address().unwrap_err().to_string();
        assert!(e.contains("empty address") && e.contains("shm"), "{e}");
        let c: TransportConfig = "shm:///tmp/a.sock".parse().unwrap();
        assert_eq!(c.require_address().unwrap(), "/tmp/a.sock");
    }

    #[test]
    fn deserialises_from_toml_json_and_strings() {
        let t: TransportConfig = toml::from_str(
            "backend = \"mem\"\naddress = \"svc\"\n[options]\ncapacity = 64\nstrict = true\n",
        )
        .unwrap();
        let j: TransportConfig =
            serde_json::from_str("\"mem://svc?capacity=64&strict=true\"").unwrap();
        assert_eq!(t, j);

        #[derive(Deserialize)]
        struct App {
            transport: TransportConfig,
        }
        let app: App = toml::from_str("transport = \"mem://svc?capacity=64&strict=true\"").unwrap();
        assert_eq!(app.transport, t);
        assert!(serde_json::from_str::<TransportConfig>("\"nourl\"").is_err());
    }
}
