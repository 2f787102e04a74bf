//! Listening and connecting: address parsing, binding (with stale Unix socket files
//! reclaimed), accepting, and in-process pairs.

use crate::NetConfig;
use crate::session::NetTransport;
use crate::sock::Sock;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use transport_access::PeerCredentials;
use transport_api::{Result, TransportError};

/// An `Io` error whose message names what was being done and where.
fn named(e: io::Error, what: String) -> TransportError {
    TransportError::Io(io::Error::new(e.kind(), format!("{what}: {e}")))
}

/// Splits `HOST:PORT` (`[v6]:PORT` for IPv6 literals); `Config` errors name the address.
pub(crate) fn host_port(addr: &str) -> Result<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| {
        TransportError::Config(format!(
            "tcp address `{addr}` has no port; expected HOST:PORT"
        ))
    })?;
    let port = port.parse::<u16>().map_err(|_| {
        TransportError::Config(format!(
            "bad port `{port}` in tcp address `{addr}`; expected 0..=65535"
        ))
    })?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(TransportError::Config(format!(
            "tcp address `{addr}` has no host"
        )));
    }
    Ok((host, port))
}

/// Connects to a `tcp://` listener at `HOST:PORT` and runs the handshake.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use transport_api::{Frame, Transport};
/// use transport_net::{NetConfig, NetListener};
///
/// let config = NetConfig::default();
/// let listener = NetListener::bind_tcp("127.0.0.1:0", config.clone()).await?;
/// let addr = listener.local_address();
/// let (client, server) = tokio::try_join!(
///     transport_net::connect_tcp(&addr, &config),
///     listener.accept(),
/// )?;
/// client.send(Frame::new("over tcp")).await?;
/// assert_eq!(server.recv().await?.bytes(), b"over tcp");
/// # Ok::<(), transport_api::TransportError>(())
/// # }).unwrap();
/// ```
pub async fn connect_tcp(addr: &str, cfg: &NetConfig) -> Result<NetTransport> {
    let hp = host_port(addr)?;
    let mut targets = tokio::net::lookup_host(hp)
        .await
        .map_err(|e| named(e, format!("resolving host `{}` of tcp://{addr}", hp.0)))?
        .peekable();
    if targets.peek().is_none() {
        return Err(TransportError::Io(io::Error::new(
            io::ErrorKind::NotFound,
            format!("host `{}` of tcp://{addr} has no address", hp.0),
        )));
    }
    let mut last = None;
    for target in targets {
        // A host that drops packets would keep the kernel trying for minutes.
        let attempt = tokio::time::timeout(cfg.handshake_timeout, TcpStream::connect(target))
            .await
            .unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {:?}", cfg.handshake_timeout),
                ))
            });
        match attempt {
            Ok(s) => return NetTransport::start(Sock::Tcp(s), "tcp", cfg, "connect").await,
            Err(e) => last = Some(named(e, format!("connecting to tcp://{addr} ({target})"))),
        }
    }
    Err(last.expect("at least one address was tried"))
}

/// Connects to a `unix://` listener at `path` and runs the handshake.
pub async fn connect_unix(path: impl AsRef<Path>, cfg: &NetConfig) -> Result<NetTransport> {
    let path = path.as_ref();
    let s = UnixStream::connect(path)
        .await
        .map_err(|e| named(e, format!("connecting to unix://{}", path.display())))?;
    NetTransport::start(Sock::Unix(s), "unix", cfg, "connect").await
}

/// Two connected `unix` endpoints in this process (a socket pair), handshake done.
pub async fn unix_pair(cfg: &NetConfig) -> Result<(NetTransport, NetTransport)> {
    let (a, b) = UnixStream::pair()?;
    tokio::try_join!(
        NetTransport::start(Sock::Unix(a), "unix", cfg, "pair"),
        NetTransport::start(Sock::Unix(b), "unix", cfg, "pair"),
    )
}

/// Two connected `tcp` endpoints in this process, over loopback.
pub async fn tcp_pair(cfg: &NetConfig) -> Result<(NetTransport, NetTransport)> {
    let l = NetListener::bind_tcp("127.0.0.1:0", cfg.clone()).await?;
    let addr = l.local_address();
    tokio::try_join!(connect_tcp(&addr, cfg), l.accept())
}

enum Inner {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        path: PathBuf,
        /// (device, inode) of the socket file this listener created: only that file is
        /// removed on drop.
        id: (u64, u64),
    },
}

/// A listening `tcp://` or `unix://` endpoint.
///
/// [`accept`](NetListener::accept) runs the peers' handshakes concurrently: a slow or silent
/// peer delays no other, and a peer whose hello is bad, truncated or late is logged and
/// skipped.
pub struct NetListener {
    inner: Inner,
    config: NetConfig,
    /// Handshakes in progress; kept across `accept` calls, so a dropped `accept` loses none.
    handshakes: tokio::sync::Mutex<tokio::task::JoinSet<Result<NetTransport>>>,
}

impl std::fmt::Debug for NetListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetListener")
            .field("address", &self.local_address())
            .finish_non_exhaustive()
    }
}

impl NetListener {
    /// Listens on `HOST:PORT`; port 0 picks a free port ([`local_address`](Self::local_address)
    /// tells which).
    pub async fn bind_tcp(addr: &str, config: NetConfig) -> Result<NetListener> {
        config.hello()?;
        let hp = host_port(addr)?;
        let l = TcpListener::bind(hp)
            .await
            .map_err(|e| named(e, format!("listening on tcp://{addr}")))?;
        tracing::debug!(address = %addr, "tcp listener bound");
        Ok(NetListener {
            inner: Inner::Tcp(l),
            config,
            handshakes: Default::default(),
        })
    }

    /// Listens on the Unix socket `path`. A socket file left by a dead listener is removed
    /// and replaced; a live listener's is never touched (an `AddrInUse` error names the path),
    /// and neither is a file that is not a socket.
    pub fn bind_unix(path: impl AsRef<Path>, config: NetConfig) -> Result<NetListener> {
        config.hello()?;
        let path = path.as_ref().to_path_buf();
        let shown = path.display().to_string();
        config.access.check_dir("unix", &path)?;
        let listener = match UnixListener::bind(&path) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                reclaim(&path)?;
                UnixListener::bind(&path)
                    .map_err(|e| named(e, format!("listening on unix://{shown}")))?
            }
            Err(e) => return Err(named(e, format!("listening on unix://{shown}"))),
        };
        // Defence in depth: who may connect is decided by the credential check in `accept`.
        let mode = std::fs::Permissions::from_mode(config.access.socket_mode());
        std::fs::set_permissions(&path, mode)
            .map_err(|e| named(e, format!("setting the mode of unix://{shown}")))?;
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| named(e, format!("inspecting unix://{shown}")))?;
        Ok(NetListener {
            inner: Inner::Unix {
                listener,
                path,
                id: (meta.dev(), meta.ino()),
            },
            config,
            handshakes: Default::default(),
        })
    }

    /// The address peers connect to: `IP:PORT` with the real port, or the socket path.
    pub fn local_address(&self) -> String {
        match &self.inner {
            Inner::Tcp(l) => l
                .local_addr()
                .map_or_else(|e| format!("?({e})"), |a| a.to_string()),
            Inner::Unix { path, .. } => path.display().to_string(),
        }
    }

    /// The backend name: `"tcp"` or `"unix"`.
    pub fn backend(&self) -> &'static str {
        match self.inner {
            Inner::Tcp(_) => "tcp",
            Inner::Unix { .. } => "unix",
        }
    }

    /// Waits for the next peer whose handshake succeeds. Cancel-safe: handshakes under way
    /// when the future is dropped complete in a later call.
    pub async fn accept(&self) -> Result<NetTransport> {
        let mut handshakes = self.handshakes.lock().await;
        loop {
            tokio::select! {
                Some(done) = handshakes.join_next(), if !handshakes.is_empty() => match done {
                    Ok(Ok(t)) => return Ok(t),
                    Ok(Err(e)) => tracing::warn!(
                        listener = %self.local_address(),
                        error = %e,
                        "a peer failed the handshake; it was dropped"
                    ),
                    Err(e) => tracing::warn!(
                        listener = %self.local_address(),
                        error = %e,
                        "a handshake task ended abnormally"
                    ),
                },
                sock = self.accept_socket() => {
                    let (sock, backend, config) = (sock?, self.backend(), self.config.clone());
                    if !self.admits(&sock) {
                        continue;
                    }
                    handshakes.spawn(async move {
                        NetTransport::start(sock, backend, &config, "accept").await
                    });
                }
            }
        }
    }

    /// Whether the connecting process may have a session: over a Unix socket, its
    /// credentials (`SO_PEERCRED`) must pass the configuration's [`AccessPolicy`]
    /// (transport_access); a refused peer's connection is closed before any byte is sent.
    fn admits(&self, sock: &Sock) -> bool {
        let Sock::Unix(s) = sock else {
            return true;
        };
        match PeerCredentials::of(s) {
            Ok(c) if self.config.access.admits(&c) => true,
            Ok(c) => {
                tracing::warn!(listener = %self.local_address(), peer = %c, "refused a peer the access policy does not admit");
                false
            }
            Err(e) => {
                tracing::warn!(listener = %self.local_address(), error = %e, "refused a peer whose credentials could not be read");
                false
            }
        }
    }

    async fn accept_socket(&self) -> Result<Sock> {
        Ok(match &self.inner {
            Inner::Tcp(l) => Sock::Tcp(l.accept().await?.0),
            Inner::Unix { listener, .. } => Sock::Unix(listener.accept().await?.0),
        })
    }
}

/// Removes the socket file at `path` if no one listens on it any more.
fn reclaim(path: &Path) -> Result<()> {
    let shown = path.display();
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| named(e, format!("inspecting unix://{shown}")))?;
    if !meta.file_type().is_socket() {
        return Err(TransportError::Io(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("unix://{shown}: the path exists and is not a socket; it is left alone"),
        )));
    }
    if !transport_access::is_stale_socket(path) {
        return Err(TransportError::Io(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("unix://{shown} is in use by a live listener"),
        )));
    }
    std::fs::remove_file(path)
        .map_err(|e| named(e, format!("removing the stale socket unix://{shown}")))?;
    tracing::info!(path = %shown, "reclaimed a stale socket file");
    Ok(())
}

impl Drop for NetListener {
    fn drop(&mut self) {
        if let Inner::Unix { path, id, .. } = &self.inner {
            let ours = std::fs::symlink_metadata(path)
                .map(|m| (m.dev(), m.ino()) == *id)
                .unwrap_or(false);
            if ours {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
