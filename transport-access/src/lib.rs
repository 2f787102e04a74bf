//! Who may connect to a listener's Unix socket, and how its socket file is created: the access
//! rules shared by the `shm`/`hub` backends (transport-shm) and `unix://` (transport-net).
//!
//! A listener's Unix socket is the only way into its sessions, so it is the access boundary:
//! - the socket file is created with mode `0600` by default (only the owner can connect), and
//!   binding refuses a directory that any user can write to without the sticky bit (anyone
//!   could replace the socket file there), unless the configuration allows it;
//! - every connecting process's credentials (`SO_PEERCRED`: pid, uid, gid, as the kernel saw
//!   them at `connect`) are checked against an [`AccessPolicy`] before anything is created,
//!   mapped or sent for it. By default only the listener's own effective uid is admitted.
//!
//! The credential check is the gate; the file mode is defence in depth (a file mode can be
//! widened by anyone who owns the file, and a process that already holds a connected socket
//! keeps it).

// Under `--cfg loom` (the workspace's loom models) tokio leaves out its `net` module; the crate
// is then empty, as the parts of transport-shm that use it are.
#![cfg(not(loom))]

use std::fmt;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use tokio::net::UnixListener;
use transport_api::{Result, TransportConfig, TransportError};

/// The identity of a connecting process, as the kernel recorded it when it connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCredentials {
    /// Process id (in the listener's pid namespace; 0 when the kernel could not map it).
    pub pid: i32,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

impl fmt::Display for PeerCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} uid {} gid {}", self.pid, self.uid, self.gid)
    }
}

impl PeerCredentials {
    /// Reads the credentials of the process at the other end of a connected Unix socket.
    pub fn of(sock: impl AsFd) -> Result<PeerCredentials> {
        let c = rustix::net::sockopt::socket_peercred(sock).map_err(|e| {
            TransportError::Io(std::io::Error::new(
                std::io::Error::from(e).kind(),
                format!("reading the connecting peer's credentials (SO_PEERCRED): {e}"),
            ))
        })?;
        Ok(PeerCredentials {
            pid: c.pid.as_raw_nonzero().get(),
            uid: c.uid.as_raw(),
            gid: c.gid.as_raw(),
        })
    }
}

/// A caller-supplied admission check (see [`AccessPolicy::allow_if`]).
pub type PeerCheck = Arc<dyn Fn(&PeerCredentials) -> bool + Send + Sync>;

/// Which connecting processes a listener admits, and how it creates its socket file.
///
/// A peer is admitted when its uid is in the allowed uids, or its gid in the allowed gids, or
/// the check given to [`allow_if`](Self::allow_if) returns `true`. The default admits only the
/// listener's own effective uid and creates the socket file with mode `0600`.
///
/// # Examples
///
/// ```
/// use transport_access::AccessPolicy;
/// use transport_api::TransportConfig;
///
/// let cfg: TransportConfig = "hub:///run/app/host.sock?allow_gids=1200&mode=0660".parse().unwrap();
/// let policy = AccessPolicy::from_config(&cfg).unwrap();
/// assert_eq!(policy.socket_mode(), 0o660);
/// assert!(policy.allowed_gids().contains(&1200));
/// ```
#[derive(Clone)]
pub struct AccessPolicy {
    uids: Vec<u32>,
    gids: Vec<u32>,
    check: Option<PeerCheck>,
    mode: u32,
    allow_shared_dir: bool,
}

impl fmt::Debug for AccessPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessPolicy")
            .field("allow_uids", &self.uids)
            .field("allow_gids", &self.gids)
            .field("check", &self.check.as_ref().map(|_| "fn"))
            .field("mode", &format_args!("{:#o}", self.mode))
            .field("allow_shared_dir", &self.allow_shared_dir)
            .finish()
    }
}

impl PartialEq for AccessPolicy {
    fn eq(&self, o: &Self) -> bool {
        let same_check = match (&self.check, &o.check) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        self.uids == o.uids
            && self.gids == o.gids
            && same_check
            && self.mode == o.mode
            && self.allow_shared_dir == o.allow_shared_dir
    }
}

impl Eq for AccessPolicy {}

impl Default for AccessPolicy {
    fn default() -> Self {
        AccessPolicy {
            uids: vec![rustix::process::geteuid().as_raw()],
            gids: Vec::new(),
            check: None,
            mode: 0o600,
            allow_shared_dir: false,
        }
    }
}

impl AccessPolicy {
    /// Option names this policy reads from a configuration.
    pub const OPTIONS: &'static [&'static str] =
        &["allow_uids", "allow_gids", "mode", "allow_shared_dir"];

    /// Reads `allow_uids=UID,UID…` (replacing the default of the own uid), `allow_gids=GID,…`,
    /// `mode=OCTAL` (the socket file's permission bits, `0600` by default, at most `0777`) and
    /// `allow_shared_dir=true` (bind even in a directory others can write to without the
    /// sticky bit). Other options are left to the caller.
    pub fn from_config(cfg: &TransportConfig) -> Result<AccessPolicy> {
        let mut p = AccessPolicy::default();
        if let Some(list) = cfg.get::<String>("allow_uids")? {
            p.uids = parse_ids(cfg, "allow_uids", &list)?;
        }
        if let Some(list) = cfg.get::<String>("allow_gids")? {
            p.gids = parse_ids(cfg, "allow_gids", &list)?;
        }
        if let Some(m) = cfg.get::<String>("mode")? {
            let digits = m.trim_start_matches("0o");
            p.mode = match u32::from_str_radix(digits, 8) {
                Ok(v) if v <= 0o777 => v,
                _ => {
                    return Err(TransportError::Config(format!(
                        "option `mode` of `{cfg}`: `{m}` is not an octal file mode in 0..=0777"
                    )));
                }
            };
        }
        if let Some(b) = cfg.get::<bool>("allow_shared_dir")? {
            p.allow_shared_dir = b;
        }
        Ok(p)
    }

    /// Admits exactly these uids (replacing the default of the own uid).
    pub fn allow_uids(mut self, uids: impl IntoIterator<Item = u32>) -> Self {
        self.uids = uids.into_iter().collect();
        self
    }

    /// Also admits every process whose effective gid is one of `gids`.
    pub fn allow_gids(mut self, gids: impl IntoIterator<Item = u32>) -> Self {
        self.gids = gids.into_iter().collect();
        self
    }

    /// Also admits every process for which `check` returns `true`.
    pub fn allow_if(
        mut self,
        check: impl Fn(&PeerCredentials) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.check = Some(Arc::new(check));
        self
    }

    /// The socket file's permission bits.
    pub fn socket_mode(&self) -> u32 {
        self.mode
    }

    /// Uses `mode` for the socket file's permission bits (masked to `0o777`).
    pub fn with_socket_mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o777;
        self
    }

    /// Lets [`bind`](Self::bind) use a directory that others can write to without the sticky
    /// bit (anyone there could replace the socket file).
    pub fn with_shared_dir(mut self, allow: bool) -> Self {
        self.allow_shared_dir = allow;
        self
    }

    /// The admitted uids.
    pub fn allowed_uids(&self) -> &[u32] {
        &self.uids
    }

    /// The admitted gids.
    pub fn allowed_gids(&self) -> &[u32] {
        &self.gids
    }

    /// True when `peer` may attach.
    pub fn admits(&self, peer: &PeerCredentials) -> bool {
        self.uids.contains(&peer.uid)
            || self.gids.contains(&peer.gid)
            || self.check.as_ref().is_some_and(|c| c(peer))
    }

    /// Binds a listening socket at `path` under this policy: the directory is checked, a stale
    /// socket file that nobody listens on is replaced (a live one never is), and the file gets
    /// the policy's mode. `who` names the backend in errors (`"shm"`, `"hub"`, `"unix"`).
    pub fn bind(&self, who: &str, path: &Path) -> Result<UnixListener> {
        self.check_dir(who, path)?;
        let io_err = |e: std::io::Error, what: &str| {
            TransportError::Io(std::io::Error::new(
                e.kind(),
                format!("{who}: {what} {}: {e}", path.display()),
            ))
        };
        let listener = match UnixListener::bind(path) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && is_stale_socket(path) => {
                std::fs::remove_file(path).map_err(|e| io_err(e, "removing the stale socket"))?;
                UnixListener::bind(path).map_err(|e| io_err(e, "binding"))?
            }
            Err(e) => return Err(io_err(e, "binding")),
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(self.mode))
            .map_err(|e| io_err(e, "setting the mode of"))?;
        Ok(listener)
    }

    /// Refuses a socket directory that any user can write to without the sticky bit, unless
    /// the policy allows it (a `Config` error naming the directory and its mode).
    /// [`bind`](Self::bind) checks it; a listener that binds by its own means calls it first.
    pub fn check_dir(&self, who: &str, path: &Path) -> Result<()> {
        if self.allow_shared_dir {
            return Ok(());
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let Ok(meta) = std::fs::metadata(dir) else {
            // A missing directory makes `bind` fail with a clearer error of its own.
            return Ok(());
        };
        let (others_write, sticky) = (0o002, 0o1000);
        if meta.mode() & others_write != 0 && meta.mode() & sticky == 0 {
            return Err(TransportError::Config(format!(
                "{who}: refusing to bind {}: its directory {} (mode {:o}) is writable by every \
                 user without the sticky bit, so anyone could replace the socket; use a private \
                 directory or set allow_shared_dir=true",
                path.display(),
                dir.display(),
                meta.mode() & 0o7777
            )));
        }
        Ok(())
    }
}

fn parse_ids(cfg: &TransportConfig, key: &str, list: &str) -> Result<Vec<u32>> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u32>().map_err(|_| {
                TransportError::Config(format!(
                    "option `{key}` of `{cfg}`: `{s}` is not a numeric id (expected ID,ID,…)"
                ))
            })
        })
        .collect()
}

/// True when `path` is a socket file that nobody listens on (connecting is refused). A live
/// listener is never probed by a real connection here: the caller only asks after `bind`
/// failed, and a refused connect leaves nothing in anyone's accept queue.
pub fn is_stale_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    is_socket
        && matches!(
            std::os::unix::net::UnixStream::connect(path),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(uid: u32, gid: u32) -> PeerCredentials {
        PeerCredentials { pid: 1, uid, gid }
    }

    fn tmpdir(tag: &str, mode: u32) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("taccess-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
        d
    }

    #[test]
    fn default_admits_only_the_own_uid() {
        let me = rustix::process::geteuid().as_raw();
        let p = AccessPolicy::default();
        assert!(p.admits(&creds(me, 12345)));
        assert!(!p.admits(&creds(me.wrapping_add(1), 12345)));
        assert_eq!(p.socket_mode(), 0o600);
    }

    #[test]
    fn options_parse_and_bad_values_are_named() {
        let c: TransportConfig = "shm:///x?allow_uids=7,8&allow_gids=9&mode=0640"
            .parse()
            .unwrap();
        let p = AccessPolicy::from_config(&c).unwrap();
        assert!(p.admits(&creds(8, 0)) && p.admits(&creds(100, 9)) && !p.admits(&creds(100, 0)));
        assert_eq!(p.socket_mode(), 0o640);
        for (url, word) in [
            ("shm:///x?allow_uids=me", "allow_uids"),
            ("shm:///x?allow_gids=1,x", "allow_gids"),
            ("shm:///x?mode=0999", "mode"),
            ("shm:///x?mode=01777", "mode"),
        ] {
            let e = AccessPolicy::from_config(&url.parse().unwrap()).unwrap_err();
            assert!(e.to_string().contains(word), "{url}: {e}");
        }
    }

    #[test]
    fn a_closure_can_admit_more() {
        let p = AccessPolicy::default()
            .allow_uids([])
            .allow_if(|c| c.pid == 1 && c.uid == 4242);
        assert!(p.admits(&creds(4242, 0)));
        assert!(!p.admits(&creds(4243, 0)));
    }

    #[tokio::test]
    async fn bind_sets_the_mode_and_refuses_shared_directories() {
        let private = tmpdir("private", 0o700);
        let sock = private.join("s.sock");
        let _l = AccessPolicy::default().bind("shm", &sock).unwrap();
        let mode = std::fs::metadata(&sock).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let open = tmpdir("open", 0o777);
        let e = AccessPolicy::default()
            .bind("hub", &open.join("s.sock"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("allow_shared_dir") && e.contains("777"), "{e}");
        let _l2 = AccessPolicy::default()
            .with_shared_dir(true)
            .with_socket_mode(0o666)
            .bind("hub", &open.join("s.sock"))
            .unwrap();
        assert_eq!(
            std::fs::metadata(open.join("s.sock")).unwrap().mode() & 0o777,
            0o666
        );

        let sticky = tmpdir("sticky", 0o1777);
        let _l3 = AccessPolicy::default()
            .bind("hub", &sticky.join("s.sock"))
            .unwrap();
        for d in [private, open, sticky] {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    #[tokio::test]
    async fn a_live_socket_is_never_replaced_and_a_stale_one_is() {
        let d = tmpdir("live", 0o700);
        let sock = d.join("s.sock");
        let live = AccessPolicy::default().bind("shm", &sock).unwrap();
        let e = AccessPolicy::default().bind("shm", &sock).unwrap_err();
        assert!(e.to_string().contains("binding"), "{e}");
        drop(live);
        // The file stays behind (nobody removed it): it is stale and gets replaced.
        assert!(sock.exists());
        let _again = AccessPolicy::default().bind("shm", &sock).unwrap();
        let _ = std::fs::remove_dir_all(d);
    }

    #[tokio::test]
    async fn credentials_of_a_connected_socket_are_our_own() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let c = PeerCredentials::of(&a).unwrap();
        assert_eq!(c.uid, rustix::process::geteuid().as_raw());
        assert_eq!(c.pid, std::process::id() as i32);
        assert!(AccessPolicy::default().admits(&c));
    }
}
