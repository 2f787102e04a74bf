//! The hub's admin socket: a read-only report of the hub's peers for inspection tools.
//!
//! A [`HubHost`](crate::HubHost) bound at `PATH` also listens at [`admin_path`]`(PATH)`
//! (`PATH.admin`, mode `0600`). A client connects, sends [`ADMIN_MAGIC`] followed by one request
//! byte ([`REQ_REPORT`]), and reads one answer: a little-endian `u32` length, then that many
//! bytes of a postcard-encoded [`AdminAnswer`]. The host answers only processes running as its
//! own effective uid (checked with `SO_PEERCRED`); any other process gets
//! [`AdminAnswer::Refused`] and nothing else. The socket carries no descriptors, maps nothing
//! and changes nothing in the hub.

use super::peer::PeerState;
use crate::rendezvous::PeerCredentials;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use transport_api::Stats;

/// First bytes of an admin request.
pub const ADMIN_MAGIC: &[u8; 8] = b"TSHMADM1";
/// Request byte: send the hub's report.
pub const REQ_REPORT: u8 = 1;
/// Largest answer a client accepts, in bytes (a full hub of 4096 peers encodes in well under
/// this).
pub const MAX_ANSWER: u32 = 8 << 20;
/// How long either side waits for the other during one request.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The admin socket's path for a hub bound at `path`: the same path with `.admin` appended.
pub fn admin_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".admin");
    PathBuf::from(p)
}

/// One peer as the admin socket reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerReport {
    /// Attachment number, unique within the hub.
    pub generation: u64,
    /// The region the peer uses.
    pub region: usize,
    /// The peer's process id (`SO_PEERCRED`), when known.
    pub pid: Option<i32>,
    /// The peer's effective uid (`SO_PEERCRED`), when known.
    pub uid: Option<u32>,
    /// Where its session stands.
    pub state: PeerState,
    /// The host side's counters and occupancy for this peer.
    pub stats: Stats,
}

/// The hub as the admin socket reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubReport {
    /// The hub's socket path.
    pub path: PathBuf,
    /// The host's process id.
    pub host_pid: u32,
    /// Number of regions (the most peers attached at once).
    pub max_peers: usize,
    /// Regions no peer uses.
    pub free_regions: usize,
    /// Every peer the hub knows, in attach order.
    pub peers: Vec<PeerReport>,
}

/// The answer to an admin request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminAnswer {
    /// The hub's report.
    Report(HubReport),
    /// The request was refused; the text says why.
    Refused(String),
}

/// Why an admin query failed, in words a command line can print as one line.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Nothing exists at the hub path.
    #[error("{0}: no such socket (is the hub running?)")]
    Missing(PathBuf),
    /// The path exists but no hub admin socket answers beside it.
    #[error("{0}: not a hub (no admin socket at {1})")]
    NotAHub(PathBuf, PathBuf),
    /// The host refused the request.
    #[error("{0}: refused by the hub: {1}")]
    Refused(PathBuf, String),
    /// The host's answer broke the admin protocol.
    #[error("{0}: bad answer from the hub: {1}")]
    Protocol(PathBuf, String),
    /// A system call failed.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// Asks the hub bound at `path` for its report.
pub async fn query(path: &Path) -> Result<HubReport, AdminError> {
    let admin = admin_path(path);
    let path_buf = path.to_path_buf();
    if std::fs::symlink_metadata(path).is_err() {
        return Err(AdminError::Missing(path_buf));
    }
    let mut s = match UnixStream::connect(&admin).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(AdminError::NotAHub(path_buf, admin));
        }
        Err(e) => return Err(AdminError::Io(admin, e)),
    };
    let exchange = async {
        let mut req = ADMIN_MAGIC.to_vec();
        req.push(REQ_REPORT);
        s.write_all(&req).await?;
        let len = s.read_u32_le().await?;
        if len > MAX_ANSWER {
            return Ok(Err(format!("answer of {len} bytes exceeds {MAX_ANSWER}")));
        }
        let mut body = vec![0u8; len as usize];
        s.read_exact(&mut body).await?;
        Ok::<_, std::io::Error>(
            postcard::from_bytes::<AdminAnswer>(&body).map_err(|e| e.to_string()),
        )
    };
    let answer = match tokio::time::timeout(ADMIN_TIMEOUT, exchange).await {
        Err(_) => {
            return Err(AdminError::Protocol(
                path_buf,
                format!("no answer within {ADMIN_TIMEOUT:?}"),
            ));
        }
        Ok(Err(e)) => return Err(AdminError::Io(admin, e)),
        Ok(Ok(Err(why))) => return Err(AdminError::Protocol(path_buf, why)),
        Ok(Ok(Ok(a))) => a,
    };
    match answer {
        AdminAnswer::Report(r) => Ok(r),
        AdminAnswer::Refused(why) => Err(AdminError::Refused(path_buf, why)),
    }
}

/// Serves admin requests on `listener`, each on its own task so that a client that never
/// sends its request delays nobody. Runs until the task is aborted (the hub aborts it when it
/// is dropped).
pub(crate) async fn serve(
    listener: UnixListener,
    report: impl Fn() -> Option<HubReport> + Send + Sync + 'static,
) {
    let report = std::sync::Arc::new(report);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let report = report.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(ADMIN_TIMEOUT, answer(stream, &*report)).await;
                });
            }
            Err(e) => {
                // Out of descriptors or memory: back off instead of spinning on the error.
                tracing::warn!(backend = "hub", error = %e, "admin socket accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn answer(
    mut s: UnixStream,
    report: &(dyn Fn() -> Option<HubReport> + Send + Sync),
) -> std::io::Result<()> {
    let own = rustix::process::geteuid().as_raw();
    let answer = match PeerCredentials::of(&s) {
        Ok(c) if c.uid == own => {
            let mut req = [0u8; 9];
            s.read_exact(&mut req).await?;
            if &req[..8] != ADMIN_MAGIC || req[8] != REQ_REPORT {
                AdminAnswer::Refused(format!("unknown request {req:?}"))
            } else {
                match report() {
                    Some(r) => AdminAnswer::Report(r),
                    None => AdminAnswer::Refused("the hub is closing".into()),
                }
            }
        }
        Ok(c) => {
            tracing::warn!(
                backend = "hub",
                pid = c.pid,
                uid = c.uid,
                "admin request refused: not the host's uid"
            );
            AdminAnswer::Refused(format!(
                "uid {} may not inspect this hub (only uid {own})",
                c.uid
            ))
        }
        Err(e) => AdminAnswer::Refused(format!("credentials unavailable: {e}")),
    };
    let body = postcard::to_allocvec(&answer).map_err(std::io::Error::other)?;
    let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    s.write_u32_le(len).await?;
    s.write_all(&body).await?;
    s.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rendezvous::AccessPolicy;

    fn sample(path: &Path) -> HubReport {
        HubReport {
            path: path.to_path_buf(),
            host_pid: std::process::id(),
            max_peers: 4,
            free_regions: 3,
            peers: vec![PeerReport {
                generation: 1,
                region: 0,
                pid: Some(42),
                uid: Some(1000),
                state: PeerState::Attached,
                stats: Stats {
                    frames_sent: 7,
                    ..Stats::default()
                },
            }],
        }
    }

    #[tokio::test]
    async fn a_query_gets_the_report_and_bad_paths_are_explained() {
        let dir = std::env::temp_dir().join(format!("tshm-admin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let hub = dir.join("hub.sock");
        let _fake_hub = AccessPolicy::default().bind("hub", &hub).unwrap();
        let e = query(&hub).await.unwrap_err();
        assert!(matches!(e, AdminError::NotAHub(..)), "{e}");
        assert!(e.to_string().contains("not a hub"), "{e}");

        let l = AccessPolicy::default()
            .bind("hub", &admin_path(&hub))
            .unwrap();
        let want = sample(&hub);
        let served = want.clone();
        let task = tokio::spawn(serve(l, move || Some(served.clone())));
        assert_eq!(query(&hub).await.unwrap(), want);

        let e = query(&dir.join("nothing.sock")).await.unwrap_err();
        assert!(matches!(e, AdminError::Missing(_)), "{e}");
        assert!(e.to_string().contains("no such socket"), "{e}");
        task.abort();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_bad_request_is_refused() {
        let (a, b) = UnixStream::pair().unwrap();
        let server = tokio::spawn(answer(a, &|| None));
        let mut b = b;
        b.write_all(b"TSHMADM9\x01").await.unwrap();
        let len = b.read_u32_le().await.unwrap();
        let mut body = vec![0; len as usize];
        b.read_exact(&mut body).await.unwrap();
        let a: AdminAnswer = postcard::from_bytes(&body).unwrap();
        assert!(
            matches!(a, AdminAnswer::Refused(ref w) if w.contains("unknown request")),
            "{a:?}"
        );
        server.await.unwrap().unwrap();
    }
}
