//! Isolation between hub peers, and access control at the listener.
//!
//! - A hostile peer process that speaks the handshake itself, reads and writes every byte of
//!   every descriptor it receives, finds nothing another peer sent, and its scribbles break
//!   only its own session.
//! - A process of another uid is refused (even when the socket file's mode lets it connect),
//!   with a typed reason, before anything is created for it.
//! - A full hub answers a connecting peer at once with "full"; a handshake that never
//!   completes fails after `handshake_ms`, naming the option; bad options are refused by name.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use transport_api::{Frame, Refusal, Registry, Transport, TransportError};
use transport_conformance::util::Rng;
use transport_shm::{
    AccessPolicy, HubConfig, HubFactory, HubHost, ShmConfig, ShmFactory, ShmListener, connect,
    connect_config,
};

const ROLE: &str = "TRANSPORT_SHM_ISOLATION_CHILD";
const GUARD: Duration = Duration::from_secs(30);
/// What the honest peer sends; the hostile peer must never see it.
const SECRET: &[u8] = b"honest-peer-secret-7f3a9c";
/// What the host sends to the hostile peer itself: it must see this (proof that its scan
/// reads the memory its own session uses).
const OWN: &[u8] = b"for-the-hostile-peer-only-51e2";

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tshm-iso-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir(&d).unwrap();
    d
}

async fn guard<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {GUARD:?}"))
}

fn child_command(test: &str, role: String) -> std::process::Command {
    let mut c = std::process::Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", test, "--nocapture"])
        .env(ROLE, role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    c
}

/// Receives the hello and every descriptor the listener sends, answering ready so that the
/// host starts the session. Speaks the wire protocol by hand, as a hostile peer would.
fn raw_handshake(sock: &std::os::unix::net::UnixStream) -> (Vec<u8>, Vec<OwnedFd>) {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
    let mut hello = Vec::new();
    let mut fds = Vec::new();
    while hello.len() < 24 {
        let mut buf = [0u8; 64];
        let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(8))];
        let mut anc = RecvAncillaryBuffer::new(&mut space);
        let r = recvmsg(
            sock,
            &mut [std::io::IoSliceMut::new(&mut buf[..24 - hello.len()])],
            &mut anc,
            RecvFlags::CMSG_CLOEXEC,
        )
        .expect("recvmsg");
        assert!(r.bytes > 0, "the hub hung up during the hello");
        hello.extend_from_slice(&buf[..r.bytes]);
        for m in anc.drain() {
            if let RecvAncillaryMessage::ScmRights(got) = m {
                fds.extend(got);
            }
        }
    }
    (&*sock).write_all(b"R").expect("ready");
    (hello, fds)
}

/// Occurrences of `needle` in `hay` (jumping between candidate first bytes keeps a pass over
/// a whole region quick in a debug build).
fn count(hay: &[u8], needle: &[u8]) -> usize {
    let mut n = 0;
    let mut at = 0;
    while let Some(p) = hay[at..].iter().position(|&b| b == needle[0]) {
        let start = at + p;
        if hay[start..].starts_with(needle) {
            n += 1;
        }
        at = start + 1;
    }
    n
}

/// The hostile peer: reads every received descriptor whole, many times, counting both
/// markers; then overwrites all of it with random bytes. Prints `secret=N own=M files=K`.
fn hostile_child(path: &str) {
    let sock = std::os::unix::net::UnixStream::connect(path).expect("connect");
    let (_hello, fds) = raw_handshake(&sock);
    let files: Vec<std::fs::File> = fds.into_iter().map(std::fs::File::from).collect();
    let sizes: Vec<u64> = files
        .iter()
        .map(|f| f.metadata().map_or(0, |m| m.len()))
        .collect();
    let (mut secret, mut own, mut rounds) = (0, 0, 0);
    // Scan until the host's frames to us show up, then 20 more whole passes while the honest
    // peer keeps streaming.
    while rounds < 20 {
        for (f, &len) in files.iter().zip(&sizes) {
            if len == 0 {
                continue; // an eventfd: nothing to read, and reading would take a wake-up
            }
            let mut bytes = vec![0u8; len as usize];
            if f.read_exact_at(&mut bytes, 0).is_ok() {
                secret += count(&bytes, SECRET);
                own += count(&bytes, OWN);
            }
        }
        if own > 0 {
            rounds += 1;
        }
        std::thread::yield_now();
    }
    // Now break everything this process can reach.
    let mut rng = Rng::new(0x5eed);
    for (f, &len) in files.iter().zip(&sizes) {
        let junk: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        let _ = f.write_all_at(&junk, 0);
    }
    println!(
        "secret={secret} own={own} files={}",
        sizes.iter().filter(|&&l| l > 0).count()
    );
    let _ = std::io::stdout().flush();
    // Stay until the parent has checked that the others still work, then leave.
    let mut b = [0u8; 1];
    let _ = std::io::stdin().read(&mut b);
}

#[test]
fn a_hostile_hub_peer_finds_no_other_peers_data_and_breaks_only_its_own_session() {
    if let Ok(role) = std::env::var(ROLE) {
        if let Some(path) = role.strip_prefix("hostile:") {
            hostile_child(path);
        }
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = scratch("hostile");
        let path = dir.join("hub.sock");
        let hub = Arc::new(HubHost::bind(&path, HubConfig::default()).unwrap());
        let (honest, accepted) = tokio::join!(connect(&path), hub.accept());
        let honest = Arc::new(honest.unwrap());
        let (honest_id, _) = accepted.unwrap();

        let mut cmd = child_command(
            "a_hostile_hub_peer_finds_no_other_peers_data_and_breaks_only_its_own_session",
            format!("hostile:{}", path.display()),
        );
        cmd.stdin(Stdio::piped());
        let mut kid = tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let (hostile_id, _) = guard("accept of the hostile peer", hub.accept())
            .await
            .unwrap();

        // The honest peer streams its secret (inline and slot sizes) and the host answers in
        // kind, while the host also sends the hostile peer frames of its own.
        let stop = Arc::new(AtomicBool::new(false));
        let traffic = {
            let (hub, honest, stop) = (hub.clone(), honest.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let len = if n % 2 == 0 { 40 } else { 3000 };
                    let mut p = SECRET.to_vec();
                    p.resize(len, b'.');
                    honest.send(Frame::new(p.clone())).await.unwrap();
                    let (from, f) = hub.recv_any().await.unwrap();
                    assert_eq!(from, honest_id);
                    hub.send_to(honest_id, f).await.unwrap();
                    honest.recv().await.unwrap();
                    let mut own = OWN.to_vec();
                    own.resize(len, b'_');
                    // The hostile peer never reads: a full ring is fine, try and move on.
                    if let Some(t) = hub.peer(hostile_id) {
                        let _ = t.try_send(Frame::new(own));
                    }
                    n += 1;
                    tokio::task::yield_now().await;
                }
                n
            })
        };
        let mut out = String::new();
        let mut stdout = kid.stdout.take().unwrap();
        guard("the hostile peer's report", async {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 256];
            // The harness prints its own lines first: wait for the whole report line.
            let done = |o: &str| o.find("secret=").is_some_and(|i| o[i..].contains('\n'));
            while !done(&out) {
                let n = stdout.read(&mut buf).await.unwrap();
                assert!(n > 0, "the hostile child ended without a report");
                out.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
        .await;
        stop.store(true, Ordering::Relaxed);
        let frames = guard("traffic", traffic).await.unwrap();
        let report = &out[out.find("secret=").unwrap()..];
        let field = |k: &str| -> usize {
            report
                .split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {k} in {report:?}"))
        };
        assert!(frames > 0);
        assert!(
            field("own=") > 0,
            "the scan never saw its own session's frames: {out}"
        );
        assert_eq!(
            field("files="),
            1,
            "a peer receives exactly one memory file: {out}"
        );
        assert_eq!(
            field("secret="),
            0,
            "another peer's payload was readable: {out}"
        );

        // The scribbles broke at most the hostile peer's own session: the honest one works
        // both ways, with intact content.
        honest
            .send(Frame::new(SECRET.to_vec()).msg_id(77))
            .await
            .unwrap();
        let (from, f) = guard("recv after the scribbles", hub.recv_any())
            .await
            .unwrap();
        assert_eq!((from, f.header.msg_id, f.bytes()), (honest_id, 77, SECRET));
        hub.send_to(honest_id, f).await.unwrap();
        assert_eq!(guard("reply", honest.recv()).await.unwrap().bytes(), SECRET);
        drop(kid.stdin.take());
        let _ = guard("hostile child exit", kid.wait()).await;
        let _ = std::fs::remove_dir_all(dir);
    });
}

/// The child of the other-uid test: tries to attach and prints what happened.
fn other_uid_child(path: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(connect(path));
    match r {
        Err(TransportError::Refused {
            reason: Refusal::NotAllowed { uid, gid },
            ..
        }) => println!("refused uid={uid} gid={gid}"),
        Err(e) => println!("error {e}"),
        Ok(_) => println!("attached"),
    }
}

#[test]
fn a_process_of_another_uid_is_refused_even_when_the_socket_mode_lets_it_connect() {
    if let Ok(role) = std::env::var(ROLE) {
        if let Some(path) = role.strip_prefix("other-uid:") {
            other_uid_child(path);
        }
        return;
    }
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("skipped: starting a process of another uid needs root");
        return;
    }
    const NOBODY: u32 = 65534;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = scratch("uid");
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let path = dir.join("app.sock");
        let config = ShmConfig {
            access: AccessPolicy::default().with_socket_mode(0o666),
            ..ShmConfig::default()
        };
        let listener = ShmListener::bind(&path, config).unwrap();
        let mut cmd = child_command(
            "a_process_of_another_uid_is_refused_even_when_the_socket_mode_lets_it_connect",
            format!("other-uid:{}", path.display()),
        );
        std::os::unix::process::CommandExt::uid(&mut cmd, NOBODY);
        std::os::unix::process::CommandExt::gid(&mut cmd, NOBODY);
        let kid = match tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .spawn()
        {
            Ok(k) => k,
            Err(e) => {
                eprintln!(
                    "skipped: uid {NOBODY} cannot run this test binary ({e}); the checkout's \
                     directories must be readable by other users"
                );
                return;
            }
        };
        // The listener must not hand out a session while (and after) the child tries.
        let accept = tokio::spawn(async move { listener.accept().await.map(|_| ()) });
        let out = guard("the other-uid child", kid.wait_with_output())
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() && text.is_empty() {
            eprintln!(
                "skipped: the child could not start as uid {NOBODY} ({:?}); the checkout's \
                 directories must be readable by other users",
                out.status
            );
            return;
        }
        assert!(
            text.contains(&format!("refused uid={NOBODY} gid={NOBODY}")),
            "the other uid was not refused: {text}"
        );
        assert!(
            !accept.is_finished(),
            "accept returned a session for a refused peer"
        );
        accept.abort();
        let _ = std::fs::remove_dir_all(dir);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_peer_gets_the_reason_and_the_listener_keeps_serving() {
    let dir = scratch("policy");
    let path = dir.join("app.sock");
    let me = rustix::process::geteuid().as_raw();
    // Admits only pids that are not ours: this process is refused, by credentials alone.
    let own_pid = std::process::id() as i32;
    let config = ShmConfig {
        access: AccessPolicy::default()
            .allow_uids([])
            .allow_if(move |c| c.pid != own_pid),
        ..ShmConfig::default()
    };
    let listener = Arc::new(ShmListener::bind(&path, config).unwrap());
    let accept = {
        let l = listener.clone();
        tokio::spawn(async move { l.accept().await.map(|_| ()) })
    };
    for _ in 0..3 {
        let e = guard("refused connect", connect(&path))
            .await
            .err()
            .unwrap();
        match e {
            TransportError::Refused {
                listener: ref l,
                reason: Refusal::NotAllowed { uid, .. },
            } => {
                assert_eq!(uid, me);
                assert!(l.contains("app.sock"), "{e}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    assert!(!accept.is_finished());
    accept.abort();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_hub_answers_at_once_with_its_size() {
    let dir = scratch("full");
    let path = dir.join("hub.sock");
    let hub = Arc::new(
        HubHost::bind(
            &path,
            HubConfig {
                max_peers: 1,
                ..HubConfig::default()
            },
        )
        .unwrap(),
    );
    let (first, accepted) = tokio::join!(connect(&path), hub.accept());
    let (_first, _) = (first.unwrap(), accepted.unwrap());
    let accepting = {
        let hub = hub.clone();
        tokio::spawn(async move { hub.accept().await.map(|_| ()) })
    };
    // A long handshake timeout: only the hub's answer can end this connect in time.
    let patient = ShmConfig {
        handshake_timeout: Duration::from_secs(600),
        ..ShmConfig::default()
    };
    let e = guard("connect to a full hub", connect_config(&path, &patient))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            e,
            TransportError::Refused {
                reason: Refusal::Full { max_peers: 1 },
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("full (1 peers"), "{e}");
    accepting.abort();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_handshake_that_never_completes_names_handshake_ms() {
    let dir = scratch("silent");
    let path = dir.join("silent.sock");
    // A socket whose owner never answers.
    let _silent = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let reg = Registry::new().with(ShmFactory);
    let url = format!("shm://{}?handshake_ms=100", path.display());
    let e = guard("connect", reg.connect(&url.parse().unwrap()))
        .await
        .err()
        .unwrap();
    let text = e.to_string();
    assert!(
        text.contains("handshake_ms=100") && text.contains("timed out"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn bad_options_and_empty_addresses_are_refused_by_name() {
    let reg = Registry::new().with(ShmFactory).with(HubFactory);
    for (url, words) in [
        ("shm://", &["empty address"][..]),
        ("hub://?max_peers=4", &["empty address"]),
        (
            "shm:///tmp/x.sock?spin_us=18446744073709551615",
            &["spin_us", "0..=1000000"],
        ),
        (
            "hub:///tmp/x.sock?spin_us=2000000",
            &["spin_us", "0..=1000000"],
        ),
        (
            "shm:///tmp/x.sock?handshake_ms=0",
            &["handshake_ms", "1..=600000"],
        ),
        (
            "hub:///tmp/x.sock?wait_ms=99999999999",
            &["wait_ms", "0..=3600000"],
        ),
        ("hub:///tmp/x.sock?max_peers=0", &["max_peers"]),
        ("shm:///tmp/x.sock?mode=999", &["mode"]),
        ("shm:///tmp/x.sock?allow_uids=root", &["allow_uids"]),
    ] {
        for connect_side in [false, true] {
            let cfg = url.parse().unwrap();
            let e = if connect_side {
                reg.connect(&cfg).await.err().unwrap()
            } else {
                reg.listen(&cfg).await.err().unwrap()
            };
            let text = e.to_string();
            assert!(matches!(e, TransportError::Config(_)), "{url}: {e:?}");
            assert!(words.iter().all(|w| text.contains(w)), "{url}: {text}");
        }
    }
}

#[tokio::test]
async fn sockets_are_private_by_default_and_shared_directories_are_refused() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = scratch("modes");
    let path = dir.join("hub.sock");
    let hub = HubHost::bind(&path, HubConfig::default()).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    let admin = transport_shm::hub_admin::admin_path(&path);
    assert_eq!(std::fs::metadata(&admin).unwrap().mode() & 0o777, 0o600);
    drop(hub);
    assert!(!path.exists() && !admin.exists());

    let open = scratch("open");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = ShmListener::bind(open.join("a.sock"), ShmConfig::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("allow_shared_dir"), "{e}");
    let e = HubHost::bind(open.join("h.sock"), HubConfig::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("allow_shared_dir"), "{e}");
    for d in [dir, open] {
        let _ = std::fs::remove_dir_all(d);
    }
}
