//! The `tcp` and `unix` backends for [`transport_api::Registry`].

use crate::{NetConfig, NetListener};
use transport_api::{BackendFactory, BoxTransport, DynListener, Result, TransportConfig};

/// The `tcp` backend: `tcp://HOST:PORT?keepalive_ms=…&window=…&max_payload=…&handshake_ms=…`.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use transport_api::{DynTransport, Frame, Registry};
///
/// let registry = Registry::new().with(transport_net::TcpFactory);
/// let listener = registry.listen(&"tcp://127.0.0.1:0".parse()?).await?;
/// // Port 0 picked a free port; the connect configuration names it.
/// let config = listener.connect_config();
/// assert_ne!(config.address, "127.0.0.1:0");
/// let (client, server) = tokio::try_join!(registry.connect(&config), listener.accept())?;
/// client.dyn_send(Frame::new("hi")).await?;
/// assert_eq!(server.dyn_recv().await?.bytes(), b"hi");
/// # Ok::<(), transport_api::TransportError>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpFactory;

/// The `unix` backend: `unix:///path/to.sock?keepalive_ms=…` (same options as `tcp`).
#[derive(Clone, Copy, Debug, Default)]
pub struct UnixFactory;

struct Listener {
    inner: NetListener,
    config: TransportConfig,
}

#[async_trait::async_trait]
impl DynListener for Listener {
    async fn accept(&self) -> Result<BoxTransport> {
        Ok(Box::new(self.inner.accept().await?))
    }
    fn connect_config(&self) -> TransportConfig {
        TransportConfig {
            address: self.inner.local_address(),
            ..self.config.clone()
        }
    }
}

#[async_trait::async_trait]
impl BackendFactory for TcpFactory {
    fn name(&self) -> &'static str {
        "tcp"
    }
    async fn listen(&self, config: &TransportConfig) -> Result<Box<dyn DynListener>> {
        let c = NetConfig::from_config(config)?;
        Ok(Box::new(Listener {
            inner: NetListener::bind_tcp(&config.address, c).await?,
            config: config.clone(),
        }))
    }
    async fn connect(&self, config: &TransportConfig) -> Result<BoxTransport> {
        let c = NetConfig::from_config(config)?;
        Ok(Box::new(crate::connect_tcp(&config.address, &c).await?))
    }
}

#[async_trait::async_trait]
impl BackendFactory for UnixFactory {
    fn name(&self) -> &'static str {
        "unix"
    }
    async fn listen(&self, config: &TransportConfig) -> Result<Box<dyn DynListener>> {
        let c = NetConfig::from_config(config)?;
        Ok(Box::new(Listener {
            inner: NetListener::bind_unix(&config.address, c)?,
            config: config.clone(),
        }))
    }
    async fn connect(&self, config: &TransportConfig) -> Result<BoxTransport> {
        let c = NetConfig::from_config(config)?;
        Ok(Box::new(crate::connect_unix(&config.address, &c).await?))
    }
}
