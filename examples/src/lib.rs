//! Shared code of the example programs: where their configuration comes from, the generic echo
//! service, the server and client roles of the two-sided examples ([`roles`]), the
//! request/response client and server ([`rpc`]) and the Prometheus endpoint ([`metrics_http`]).

pub mod metrics_http;
pub mod roles;
pub mod rpc;

use std::path::PathBuf;
use transport::{
    BoxTransport, DynListener, Registry, Transport, TransportConfig, TransportError, TypedTransport,
};

/// Every backend this build knows, for configuration-driven selection: the facade's
/// [`transport::registry()`].
pub fn registry() -> Registry {
    transport::registry()
}

/// A program's transport configuration and the file it was read from, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigSource {
    /// The configuration.
    pub config: TransportConfig,
    /// The TOML file it came from (`--config FILE`), named in every configuration error.
    pub file: Option<PathBuf>,
}

impl ConfigSource {
    /// Reads `--config FILE` or a URL from the front of `args`; returns the rest of `args`.
    /// With nothing there, `default` is used.
    ///
    /// # Examples
    ///
    /// ```
    /// use examples::ConfigSource;
    ///
    /// let args = ["hub:///tmp/h.sock?max_peers=8".to_string(), "100".to_string()];
    /// let (source, rest) = ConfigSource::from_args(&args, "mem://demo")?;
    /// assert_eq!((source.config.backend.as_str(), rest), ("hub", &args[1..]));
    ///
    /// let (source, rest) = ConfigSource::from_args(&args[1..], "mem://demo")?;
    /// assert_eq!((source.config.backend.as_str(), rest), ("mem", &args[1..]));
    /// # Ok::<(), transport::TransportError>(())
    /// ```
    pub fn from_args<'a>(
        args: &'a [String],
        default: &str,
    ) -> Result<(ConfigSource, &'a [String]), TransportError> {
        match args {
            [flag, file, rest @ ..] if flag == "--config" => Ok((
                ConfigSource {
                    config: TransportConfig::from_toml_file(file)?,
                    file: Some(file.into()),
                },
                rest,
            )),
            [flag] if flag == "--config" => Err(TransportError::Config(
                "`--config` needs a file name".into(),
            )),
            [url, rest @ ..] if url.contains("://") => Ok((Self::url(url)?, rest)),
            rest => Ok((Self::url(default)?, rest)),
        }
    }

    fn url(url: &str) -> Result<ConfigSource, TransportError> {
        Ok(ConfigSource {
            config: url.parse()?,
            file: None,
        })
    }

    fn blame(&self, e: TransportError) -> TransportError {
        match &self.file {
            Some(file) => e.in_file(file),
            None => e,
        }
    }

    /// Listens with the configured backend.
    pub async fn listen(&self) -> Result<Box<dyn DynListener>, TransportError> {
        registry()
            .listen(&self.config)
            .await
            .map_err(|e| self.blame(e))
    }

    /// Connects with the configured backend.
    pub async fn connect(&self) -> Result<BoxTransport, TransportError> {
        registry()
            .connect(&self.config)
            .await
            .map_err(|e| self.blame(e))
    }

    /// True for backends whose peers must live in this process (`mem`).
    pub fn in_process(&self) -> bool {
        self.config.backend == "mem"
    }
}

/// A request of the echo demo.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EchoRequest {
    /// Sequence number.
    pub seq: u64,
    /// Text to echo back.
    pub text: String,
}

/// The echo service: answers every request with the same request, on any transport, until the
/// peer closes. Written once, generic over the backend.
pub async fn echo_service<T: Transport + ?Sized>(t: &T) -> Result<u64, TransportError> {
    let mut served = 0;
    loop {
        match t.recv_msg::<EchoRequest>().await {
            Ok((header, req)) => {
                t.send_msg(header, &req).await?;
                served += 1;
            }
            Err(TransportError::Closed | TransportError::PeerDied) => return Ok(served),
            Err(e) => return Err(e),
        }
    }
}
