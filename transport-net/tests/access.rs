//! Who may connect to a `unix://` listener: the connecting process's credentials pass the
//! configuration's access policy before any byte is exchanged, and the socket file is created
//! with the policy's mode in a directory not every user can write to.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use transport_access::AccessPolicy;
use transport_api::{Frame, Registry, Transport, TransportConfig, TransportError};
use transport_net::{NetConfig, NetListener, TcpFactory, UnixFactory};

fn temp_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("net-access-{}-{tag}", std::process::id()))
}

/// A listener whose policy refuses the first peer (by its credentials) and admits the next:
/// the refused peer gets no session and an error, and the listener goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_peer_gets_no_session_and_the_listener_serves_the_next() {
    let path = temp_path("refuse.sock");
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let access = AccessPolicy::default()
        .allow_uids([])
        .allow_if(move |c| c.pid == me && s.fetch_add(1, Ordering::SeqCst) > 0);
    let cfg = NetConfig {
        access,
        ..NetConfig::default()
    };
    let l = NetListener::bind_unix(&path, cfg.clone()).unwrap();
    let accepted = tokio::spawn(async move {
        let t = l.accept().await?;
        let f = t.recv().await?;
        Ok::<_, TransportError>((l, f))
    });
    let refused = transport_net::connect_unix(&path, &cfg).await;
    assert!(
        refused.is_err(),
        "the first peer got a session: {refused:?}"
    );
    let admitted = transport_net::connect_unix(&path, &cfg).await.unwrap();
    admitted.send(Frame::new("second")).await.unwrap();
    let (l, f) = accepted.await.unwrap().unwrap();
    assert_eq!(f.bytes(), b"second");
    assert_eq!(seen.load(Ordering::SeqCst), 2, "each peer was checked once");
    drop(l);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_file_gets_the_policy_mode() {
    let path = temp_path("mode.sock");
    let l = NetListener::bind_unix(&path, NetConfig::default()).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    drop(l);

    let url: TransportConfig = format!("unix://{}?mode=0660", path.display())
        .parse()
        .unwrap();
    let registry = Registry::new().with(UnixFactory).with(TcpFactory);
    let l = registry.listen(&url).await.unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    drop(l);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_every_user_can_write_is_refused_unless_allowed() {
    let dir = temp_path("open-dir");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.join("s.sock");
    match NetListener::bind_unix(&path, NetConfig::default()) {
        Err(TransportError::Config(m)) => {
            assert!(
                m.contains("allow_shared_dir") && m.contains("open-dir"),
                "{m}"
            )
        }
        other => panic!("expected a Config error, got {other:?}"),
    }
    let cfg = NetConfig {
        access: AccessPolicy::default().with_shared_dir(true),
        ..NetConfig::default()
    };
    drop(NetListener::bind_unix(&path, cfg).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_options_belong_to_unix_urls_only() {
    let registry = Registry::new().with(UnixFactory).with(TcpFactory);
    let tcp: TransportConfig = "tcp://127.0.0.1:0?allow_uids=0".parse().unwrap();
    match registry.listen(&tcp).await {
        Err(TransportError::Config(m)) => assert!(m.contains("allow_uids"), "{m}"),
        Err(other) => panic!("expected a Config error, got {other:?}"),
        Ok(_) => panic!("tcp:// accepted an access option"),
    }
    let bad: TransportConfig = format!("unix://{}?allow_gids=x", temp_path("bad.sock").display())
        .parse()
        .unwrap();
    match registry.listen(&bad).await {
        Err(TransportError::Config(m)) => assert!(m.contains("allow_gids"), "{m}"),
        Err(other) => panic!("expected a Config error, got {other:?}"),
        Ok(_) => panic!("a bad gid list was accepted"),
    }
}
