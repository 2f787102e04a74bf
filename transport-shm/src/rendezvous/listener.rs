//! A listener at a Unix socket path, connecting to it, and a pair in one process.

use super::config::ShmConfig;
use super::handshake::{io, join_handshake, refuse, serve_handshake};
use crate::session::ShmTransport;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use transport_access::PeerCredentials;
use transport_api::{Refusal, Result, TransportError};

/// Listens for peers at a Unix socket path; each accepted peer gets its own segment.
///
/// The path is removed when the listener is dropped.
pub struct ShmListener {
    listener: UnixListener,
    path: PathBuf,
    config: ShmConfig,
}

impl ShmListener {
    /// Binds `path` under `config.access` (socket file mode, directory check; a stale socket
    /// file nobody listens on is replaced, a live one never is).
    ///
    /// # Examples
    ///
    /// ```
    /// use transport_api::{Frame, Transport};
    /// use transport_shm::{ShmConfig, ShmListener, connect};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let dir = std::env::temp_dir().join(format!("shm-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("app.sock");
    /// let listener = ShmListener::bind(&path, ShmConfig::default())?;
    /// let (server, client) = tokio::join!(listener.accept(), connect(&path));
    /// let (server, client) = (server?, client?);
    /// client.send(Frame::new("ping")).await?;
    /// assert_eq!(server.recv().await?.bytes(), b"ping");
    /// # drop(listener);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), transport_api::TransportError>(())
    /// # }).unwrap();
    /// ```
    pub fn bind(path: impl AsRef<Path>, config: ShmConfig) -> Result<ShmListener> {
        let path = path.as_ref().to_path_buf();
        if path.as_os_str().is_empty() {
            return Err(TransportError::Config(
                "shm: the socket path is empty".into(),
            ));
        }
        config
            .geometry
            .validate()
            .map_err(|e| TransportError::Config(format!("shm geometry: {e}")))?;
        let listener = config.access.bind("shm", &path)?;
        tracing::debug!(backend = "shm", path = %path.display(), "listening");
        Ok(ShmListener {
            listener,
            path,
            config,
        })
    }

    /// Waits for the next peer and completes the handshake with it.
    ///
    /// A connecting process that the access policy does not admit is told so
    /// ([`Refusal::NotAllowed`]), logged with its pid and uid, and skipped before anything is
    /// created for it. A connection whose handshake fails (the peer hung up, sent garbage, or
    /// timed out) is logged and skipped: one broken client never ends the accept loop.
    pub async fn accept(&self) -> Result<ShmTransport> {
        loop {
            let (stream, _) = self.listener.accept().await?;
            let fd: OwnedFd = stream.into_std()?.into();
            match PeerCredentials::of(&fd) {
                Ok(c) if self.config.access.admits(&c) => {}
                Ok(c) => {
                    tracing::warn!(backend = "shm", path = %self.path.display(), pid = c.pid,
                        uid = c.uid, gid = c.gid, "peer refused by the access policy");
                    refuse(
                        &fd,
                        &Refusal::NotAllowed {
                            uid: c.uid,
                            gid: c.gid,
                        },
                    );
                    continue;
                }
                Err(e) => {
                    tracing::warn!(backend = "shm", path = %self.path.display(), error = %e,
                        "connection without credentials dropped");
                    continue;
                }
            }
            match serve_handshake(fd, &self.config, self.path.display().to_string()).await {
                Ok(t) => {
                    tracing::info!(backend = "shm", path = %self.path.display(), "peer attached");
                    return Ok(t);
                }
                Err(e @ (TransportError::Config(_) | TransportError::Unsupported { .. })) => {
                    return Err(e);
                }
                Err(e) => {
                    tracing::warn!(backend = "shm", path = %self.path.display(), error = %e,
                        "handshake with a connecting peer failed; waiting for the next one");
                }
            }
        }
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ShmListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Connects to a listener (or a hub) at `path`.
pub async fn connect(path: impl AsRef<Path>) -> Result<ShmTransport> {
    connect_config(path, &ShmConfig::default()).await
}

/// Connects to a listener at `path`, spinning for `spin` before parking.
pub async fn connect_with(path: impl AsRef<Path>, spin: Duration) -> Result<ShmTransport> {
    let config = ShmConfig {
        spin,
        ..ShmConfig::default()
    };
    connect_config(path, &config).await
}

/// Connects to a listener at `path` with this side's `spin`, `handshake_timeout` and
/// `read_only_payloads` from `config` (the geometry is the listener's). A listener that turns this process away answers
/// [`TransportError::Refused`] with its reason.
pub async fn connect_config(path: impl AsRef<Path>, config: &ShmConfig) -> Result<ShmTransport> {
    let path = path.as_ref();
    if path.as_os_str().is_empty() {
        return Err(TransportError::Config(
            "shm: the socket path to connect to is empty".into(),
        ));
    }
    let stream = UnixStream::connect(path).await.map_err(|e| {
        TransportError::Io(std::io::Error::new(
            e.kind(),
            format!("shm: connecting to {}: {e}", path.display()),
        ))
    })?;
    let fd: OwnedFd = stream.into_std()?.into();
    let t = join_handshake(
        fd,
        &path.display().to_string(),
        config.session_options(),
        config.handshake_timeout,
    )
    .await?;
    tracing::info!(backend = "shm", path = %path.display(), "connected");
    Ok(t)
}

/// Two connected endpoints in this process (both map the same segment). Useful for tests and
/// for moving one endpoint into a thread that has its own runtime.
pub async fn pair(config: ShmConfig) -> Result<(ShmTransport, ShmTransport)> {
    let (a, b) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC | rustix::net::SocketFlags::NONBLOCK,
        None,
    )
    .map_err(io)?;
    let serve = serve_handshake(a, &config, "pair".to_string());
    let join = join_handshake(
        b,
        "pair",
        config.session_options(),
        config.handshake_timeout,
    );
    let (x, y) = tokio::try_join!(serve, join)?;
    Ok((x, y))
}
