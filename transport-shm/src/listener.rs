//! Rendezvous: a listener at a Unix socket path, connecting peers, in-process pairs, and the
//! configuration factory (`shm://PATH?ring=…`).
//!
//! Handshake (one stream socket per session, kept open afterwards as the liveness channel):
//! 1. the listener accepts, creates a sealed memfd segment and two eventfds (one doorbell per
//!    side), and sends a hello message with the three descriptors (`SCM_RIGHTS`, all `CLOEXEC`);
//! 2. the connector maps the segment, validates the header against the mapping (geometry read
//!    once, kept locally), and answers `R` (ready);
//! 3. both start their endpoint. Afterwards the socket carries only `C` (graceful close); its
//!    hang-up tells the survivor that the peer's process released the session or died.

use crate::layout::{Geometry, Side, SlotClass};
use crate::os;
use crate::segment::Segment;
use crate::session::{MSG_READY, SessionParts, ShmTransport};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use transport_api::{
    BackendFactory, BoxTransport, DynListener, Result, TransportConfig, TransportError,
};

const HELLO: &[u8; 8] = b"TSHM\x01\x00\x00\x00";
/// First 8 bytes of a hub's hello (then the region offset and length).
const HUB_HELLO: &[u8; 8] = b"TSHM\x02\x00\x00\x00";
/// Length of a hub's hello.
pub(crate) const HUB_HELLO_LEN: usize = 24;
/// How long a handshake may take before it fails.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Session parameters chosen by the listener (the connector adopts what the segment says).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShmConfig {
    /// Ring capacity and slot classes (identical for both directions).
    pub geometry: Geometry,
    /// How long a waiting `send`/`recv` spins before parking on its eventfd.
    pub spin: Duration,
}

impl Default for ShmConfig {
    fn default() -> Self {
        ShmConfig {
            geometry: Geometry::default(),
            spin: Duration::from_micros(20),
        }
    }
}

impl ShmConfig {
    /// Option names understood in an `shm://` configuration.
    pub const OPTIONS: &'static [&'static str] = &["ring", "spin_us", "classes"];

    /// Reads `ring` (descriptors per direction), `spin_us` and `classes`
    /// (`SIZExCOUNT,SIZExCOUNT,…`, e.g. `256x256,4096x64`) from a configuration.
    pub fn from_config(cfg: &TransportConfig) -> Result<ShmConfig> {
        cfg.check_known(Self::OPTIONS)?;
        let mut c = ShmConfig::default();
        if let Some(r) = cfg.get::<u32>("ring")? {
            c.geometry.ring_capacity = r;
        }
        if let Some(us) = cfg.get::<u64>("spin_us")? {
            c.spin = Duration::from_micros(us);
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

fn io(e: impl Into<std::io::Error>) -> TransportError {
    TransportError::Io(e.into())
}

fn handshake_err(what: String) -> TransportError {
    TransportError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, what))
}

async fn with_timeout<T>(what: &str, f: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, f)
        .await
        .map_err(|_| {
            TransportError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("shm handshake: {what} timed out after {HANDSHAKE_TIMEOUT:?}"),
            ))
        })?
}

/// Creates the segment and doorbells, sends them over `sock` and waits for the peer's ready.
async fn serve_handshake(sock: OwnedFd, config: &ShmConfig) -> Result<ShmTransport> {
    let (memfd, seg) = Segment::create(config.geometry.clone())
        .map_err(|e| TransportError::Config(format!("shm segment: {e}")))?;
    serve_segment(sock, seg, memfd.as_fd(), HELLO, config.spin).await
}

/// Side A of a handshake over an already laid out segment: sends `hello` with the segment's
/// memfd and two new doorbells, waits for the peer's ready and starts the session.
///
/// `hello` is [`HELLO`] for a pair (the peer maps the whole file) or a [`hub_hello`] naming
/// the region the peer must map (the hub).
pub(crate) async fn serve_segment(
    sock: OwnedFd,
    seg: Segment,
    memfd: BorrowedFd<'_>,
    hello: &[u8],
    spin: Duration,
) -> Result<ShmTransport> {
    let bell_a = os::eventfd().map_err(io)?;
    let bell_b = os::eventfd().map_err(io)?;
    let sock = os::async_readable(sock)?;
    let sent = os::send_fds(
        sock.get_ref(),
        hello,
        &[memfd, bell_a.as_fd(), bell_b.as_fd()],
    )
    .map_err(io)?;
    if sent != hello.len() {
        return Err(handshake_err(format!(
            "the hello was cut short: {sent} of {} bytes sent",
            hello.len()
        )));
    }
    with_timeout("waiting for the peer to attach", async {
        loop {
            let mut g = sock.readable().await?;
            let mut b = [0u8; 1];
            match g
                .try_io(|fd| rustix::io::read(fd.get_ref(), &mut b).map_err(std::io::Error::from))
            {
                Err(_) => continue,
                Ok(Ok(1)) if b[0] == MSG_READY => return Ok(()),
                Ok(Ok(0)) => {
                    return Err(handshake_err(
                        "the peer hung up during the handshake".into(),
                    ));
                }
                Ok(Ok(_)) => {
                    return Err(handshake_err(format!(
                        "unexpected handshake byte {:#04x}",
                        b[0]
                    )));
                }
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    })
    .await?;
    let sock = sock.into_inner();
    ShmTransport::start(SessionParts {
        seg,
        side: Side::A,
        sock,
        my_bell: bell_a,
        peer_bell: bell_b,
        spin,
    })
}

/// The hello of a hub: [`HUB_HELLO`] then the region's offset and length (little-endian
/// `u64`s) inside the memfd that travels with it.
pub(crate) fn hub_hello(offset: u64, len: u64) -> [u8; HUB_HELLO_LEN] {
    let mut h = [0u8; HUB_HELLO_LEN];
    h[..8].copy_from_slice(HUB_HELLO);
    h[8..16].copy_from_slice(&offset.to_le_bytes());
    h[16..24].copy_from_slice(&len.to_le_bytes());
    h
}

/// What the listener's hello asks the connector to map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HelloKind {
    /// The whole file (a pair segment).
    Pair,
    /// Only `len` bytes at `offset` (a hub region).
    Region { offset: u64, len: u64 },
}

fn parse_hello(hello: &[u8]) -> Option<HelloKind> {
    if hello == HELLO {
        return Some(HelloKind::Pair);
    }
    if hello.len() == HUB_HELLO_LEN && &hello[..8] == HUB_HELLO {
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&hello[i..i + 8]);
            u64::from_le_bytes(b)
        };
        return Some(HelloKind::Region {
            offset: word(8),
            len: word(16),
        });
    }
    None
}

/// Receives the segment and doorbells over `sock`, validates and maps them, answers ready.
///
/// Works against a pair listener (maps the whole segment) and against a hub (maps only the
/// region the hello names; the session is then exactly a pair's side B).
async fn join_handshake(sock: OwnedFd, spin: Duration) -> Result<ShmTransport> {
    let sock = os::async_readable(sock)?;
    let (hello, fds) = with_timeout("waiting for the segment", async {
        let mut hello = Vec::new();
        let mut fds = Vec::new();
        loop {
            let mut g = sock.readable().await?;
            let mut buf = [0u8; HUB_HELLO_LEN];
            // A stream socket may split the hello: read until it is complete (descriptors
            // come with the first byte); a pair hello is complete after 8 bytes.
            let want = if hello.len() >= 8 && hello[..8] == *HUB_HELLO {
                HUB_HELLO_LEN
            } else {
                8
            };
            let room = want.saturating_sub(hello.len()).max(1);
            let max_fds = if fds.is_empty() { 3 } else { 0 };
            match g.try_io(|fd| {
                os::recv_fds(fd.get_ref(), &mut buf[..room], max_fds).map_err(std::io::Error::from)
            }) {
                Err(_) => continue,
                Ok(Ok((0, _))) => {
                    return Err(handshake_err(format!(
                        "the listener hung up after {} hello bytes",
                        hello.len()
                    )));
                }
                Ok(Ok((n, got))) => {
                    hello.extend_from_slice(&buf[..n]);
                    fds.extend(got);
                    let want = if hello.len() >= 8 && hello[..8] == *HUB_HELLO {
                        HUB_HELLO_LEN
                    } else {
                        8
                    };
                    if hello.len() >= want {
                        return Ok((hello, fds));
                    }
                }
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    })
    .await?;
    let kind = parse_hello(&hello);
    let (Some(kind), 3) = (kind, fds.len()) else {
        return Err(handshake_err(format!(
            "bad hello from the listener: {} bytes {:?} with {} descriptors (want {:?} or \
             {:?}+offset+length, with 3)",
            hello.len(),
            hello,
            fds.len(),
            HELLO,
            HUB_HELLO
        )));
    };
    let mut fds = fds.into_iter();
    let (memfd, bell_a, bell_b) = match (fds.next(), fds.next(), fds.next()) {
        (Some(m), Some(a), Some(b)) => (m, a, b),
        _ => return Err(handshake_err("missing descriptors".into())),
    };
    for bell in [&bell_a, &bell_b] {
        os::check_eventfd(bell.as_fd())
            .map_err(|e| TransportError::corrupt(format!("the listener's doorbell: {e}")))?;
    }
    let seg = match kind {
        HelloKind::Pair => Segment::attach(memfd.as_fd()),
        HelloKind::Region { offset, len } => Segment::attach_region(memfd.as_fd(), offset, len),
    }
    .map_err(|e| TransportError::corrupt(format!("the listener's segment is invalid: {e}")))?;
    drop(memfd);
    let sock = sock.into_inner();
    rustix::io::write(&sock, &[MSG_READY]).map_err(io)?;
    ShmTransport::start(SessionParts {
        seg,
        side: Side::B,
        sock,
        my_bell: bell_b,
        peer_bell: bell_a,
        spin,
    })
}

/// Listens for peers at a Unix socket path; each accepted peer gets its own segment.
///
/// The path is removed when the listener is dropped.
pub struct ShmListener {
    listener: UnixListener,
    path: PathBuf,
    config: ShmConfig,
}

impl ShmListener {
    /// Binds `path` (replacing a stale socket file nobody listens on).
    pub fn bind(path: impl AsRef<Path>, config: ShmConfig) -> Result<ShmListener> {
        let path = path.as_ref().to_path_buf();
        config
            .geometry
            .validate()
            .map_err(|e| TransportError::Config(format!("shm geometry: {e}")))?;
        let listener = match UnixListener::bind(&path) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && is_stale_socket(&path) => {
                // A socket file left by a dead listener: nobody accepts on it any more.
                std::fs::remove_file(&path)?;
                UnixListener::bind(&path)?
            }
            Err(e) => {
                return Err(TransportError::Io(std::io::Error::new(
                    e.kind(),
                    format!("shm: binding {}: {e}", path.display()),
                )));
            }
        };
        tracing::debug!(backend = "shm", path = %path.display(), "listening");
        Ok(ShmListener {
            listener,
            path,
            config,
        })
    }

    /// Waits for the next peer and completes the handshake with it.
    ///
    /// A connection whose handshake fails (the peer hung up, sent garbage, or timed out) is
    /// logged and skipped: one broken client never ends the accept loop.
    pub async fn accept(&self) -> Result<ShmTransport> {
        loop {
            let (stream, _) = self.listener.accept().await?;
            let fd: OwnedFd = stream.into_std()?.into();
            match serve_handshake(fd, &self.config).await {
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

/// True when `path` is a socket file that nobody listens on (connecting is refused). A live
/// listener is never probed by a real connection here: the caller only asks after `bind`
/// failed, and a refused connect leaves nothing in anyone's accept queue.
pub(crate) fn is_stale_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    is_socket
        && matches!(
            std::os::unix::net::UnixStream::connect(path),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
        )
}

/// Connects to a listener at `path`.
pub async fn connect(path: impl AsRef<Path>) -> Result<ShmTransport> {
    connect_with(path, ShmConfig::default().spin).await
}

/// Connects to a listener at `path`, spinning for `spin` before parking.
pub async fn connect_with(path: impl AsRef<Path>, spin: Duration) -> Result<ShmTransport> {
    let path = path.as_ref();
    let stream = UnixStream::connect(path).await.map_err(|e| {
        TransportError::Io(std::io::Error::new(
            e.kind(),
            format!("shm: connecting to {}: {e}", path.display()),
        ))
    })?;
    let fd: OwnedFd = stream.into_std()?.into();
    let t = join_handshake(fd, spin).await?;
    tracing::info!(backend = "shm", path = %path.display(), "connected");
    Ok(t)
}

/// Environment variable through which [`spawn_peer`] tells the child which descriptor holds its
/// session socket.
pub const INHERIT_ENV: &str = "TRANSPORT_SHM_FD";

/// Spawns `cmd` as a peer that inherits a ready session socket (no path, no rendezvous race):
/// the child calls [`from_inherited`]. Returns the child and this side's endpoint once the child
/// attached. The socket is inherited only by this child (close-on-exec is cleared in the child
/// alone, just before exec).
pub async fn spawn_peer(
    cmd: &mut std::process::Command,
    config: ShmConfig,
) -> Result<(std::process::Child, ShmTransport)> {
    use std::os::fd::AsRawFd;
    let (ours, theirs) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC | rustix::net::SocketFlags::NONBLOCK,
        None,
    )
    .map_err(io)?;
    cmd.env(INHERIT_ENV, theirs.as_raw_fd().to_string());
    let hook = os::inherit_in_child(cmd, theirs.as_fd());
    let spawned = cmd.spawn();
    drop(hook);
    cmd.env_remove(INHERIT_ENV);
    let mut child = spawned?;
    drop(theirs);
    let started = serve_handshake(ours, &config).await.and_then(|mut t| {
        let pid = i32::try_from(child.id()).map_err(|_| {
            TransportError::Config(format!("child pid {} out of range", child.id()))
        })?;
        t.watch_process(pid)?;
        Ok(t)
    });
    match started {
        Ok(t) => Ok((child, t)),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

/// In a process started by [`spawn_peer`]: adopts the inherited session socket named by
/// [`INHERIT_ENV`] and attaches. Call it once.
pub async fn from_inherited() -> Result<ShmTransport> {
    let raw = std::env::var(INHERIT_ENV).map_err(|_| {
        TransportError::Config(format!(
            "{INHERIT_ENV} is not set: this process was not started by spawn_peer"
        ))
    })?;
    let fd: i32 = raw.parse().map_err(|_| {
        TransportError::Config(format!("{INHERIT_ENV}=`{raw}` is not a descriptor number"))
    })?;
    let sock = os::adopt_inherited_socket(fd).map_err(io)?;
    rustix::io::ioctl_fionbio(&sock, true).map_err(io)?;
    join_handshake(sock, ShmConfig::default().spin).await
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
    let serve = serve_handshake(a, &config);
    let join = join_handshake(b, config.spin);
    let (x, y) = tokio::try_join!(serve, join)?;
    Ok((x, y))
}

/// What a peer needs to reach a listener configured by `listen`: the same backend and address,
/// and the peer-side options (`spin_us`); the geometry is the listener's to choose.
pub(crate) fn peer_config(listen: &TransportConfig) -> TransportConfig {
    let mut c = TransportConfig::new(listen.backend.clone(), listen.address.clone());
    if let Some(v) = listen.options.get("spin_us") {
        c.options.insert("spin_us".into(), v.clone());
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
        Ok(Box::new(connect_with(&config.address, c.spin).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hellos_parse() {
        assert_eq!(parse_hello(HELLO), Some(HelloKind::Pair));
        let h = hub_hello(1 << 20, 8192);
        assert_eq!(
            parse_hello(&h),
            Some(HelloKind::Region {
                offset: 1 << 20,
                len: 8192
            })
        );
        assert_eq!(parse_hello(&h[..23]), None);
        assert_eq!(parse_hello(&h[..8]), None);
        assert_eq!(parse_hello(b"TSHM\x03\x00\x00\x00"), None);
    }
}
