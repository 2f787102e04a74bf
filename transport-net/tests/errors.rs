//! Bad input from the user: every mistake is a typed error that names the address or the
//! option, and nothing panics.

use std::io::ErrorKind;
use transport_api::{Registry, Transport, TransportConfig, TransportError};
use transport_net::{NetConfig, NetListener, TcpFactory, UnixFactory};

fn registry() -> Registry {
    Registry::new().with(TcpFactory).with(UnixFactory)
}

fn url(s: &str) -> TransportConfig {
    s.parse().unwrap()
}

/// The `Io` error's kind and message, or a panic naming what came instead.
fn io_error(r: Result<impl Sized, TransportError>) -> (ErrorKind, String) {
    match r {
        Err(TransportError::Io(e)) => (e.kind(), e.to_string()),
        Err(other) => panic!("expected an Io error, got {other:?}"),
        Ok(_) => panic!("expected an Io error, got a session"),
    }
}

fn config_error(r: Result<impl Sized, TransportError>) -> String {
    match r {
        Err(TransportError::Config(m)) => m,
        Err(other) => panic!("expected a Config error, got {other:?}"),
        Ok(_) => panic!("expected a Config error, got a session"),
    }
}

fn temp_socket(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("net-errors-{}-{tag}.sock", std::process::id()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_names_the_address() {
    // A port that was just free: bind, read it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let (kind, msg) = io_error(registry().connect(&url(&format!("tcp://{addr}"))).await);
    assert_eq!(kind, ErrorKind::ConnectionRefused, "{msg}");
    assert!(msg.contains(&addr), "{msg}");

    let path = temp_socket("absent");
    let (kind, msg) = io_error(
        registry()
            .connect(&url(&format!("unix://{}", path.display())))
            .await,
    );
    assert_eq!(kind, ErrorKind::NotFound, "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_host_names_the_host() {
    let (_, msg) = io_error(
        registry()
            .connect(&url("tcp://no-such-host.invalid:7000"))
            .await,
    );
    assert!(msg.contains("no-such-host.invalid"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_in_use_names_the_address() {
    let first = registry().listen(&url("tcp://127.0.0.1:0")).await.unwrap();
    let taken = first.connect_config().address;
    let (kind, msg) = io_error(registry().listen(&url(&format!("tcp://{taken}"))).await);
    assert_eq!(kind, ErrorKind::AddrInUse, "{msg}");
    assert!(msg.contains(&taken), "{msg}");

    // A live unix listener is never stolen.
    let path = temp_socket("live");
    let live = NetListener::bind_unix(&path, NetConfig::default()).unwrap();
    let (kind, msg) = io_error(NetListener::bind_unix(&path, NetConfig::default()));
    assert_eq!(kind, ErrorKind::AddrInUse, "{msg}");
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("live"),
        "{msg}"
    );
    drop(live);
    assert!(!path.exists(), "the listener removes its socket file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_unix_socket_is_reclaimed_and_other_files_are_left_alone() {
    let path = temp_socket("stale");
    let _ = std::fs::remove_file(&path);
    // A listener that died without removing its file (std's listener leaves it behind).
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let cfg = NetConfig::default();
    let l = NetListener::bind_unix(&path, cfg.clone()).unwrap();
    let (client, server) =
        tokio::try_join!(transport_net::connect_unix(&path, &cfg), l.accept()).unwrap();
    drop((client, server, l));

    let file = temp_socket("plain-file");
    std::fs::write(&file, b"not a socket").unwrap();
    let (kind, msg) = io_error(NetListener::bind_unix(&file, NetConfig::default()));
    assert_eq!(kind, ErrorKind::AddrInUse, "{msg}");
    assert!(msg.contains("not a socket"), "{msg}");
    assert_eq!(std::fs::read(&file).unwrap(), b"not a socket");
    std::fs::remove_file(&file).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ports_hosts_and_options_are_config_errors_naming_them() {
    let cases = [
        ("tcp://127.0.0.1:99999", "bad port `99999`"),
        ("tcp://127.0.0.1:http", "bad port `http`"),
        ("tcp://127.0.0.1", "has no port"),
        ("tcp://:7000", "has no host"),
        (
            "tcp://127.0.0.1:7000?colour=blue",
            "unknown option `colour`",
        ),
        ("unix:///tmp/x.sock?windw=5", "unknown option `windw`"),
        ("tcp://127.0.0.1:7000?keepalive_ms=5", "keepalive_ms"),
        ("tcp://127.0.0.1:7000?window=1", "window"),
        ("tcp://127.0.0.1:7000?max_payload=0", "max_payload"),
        ("tcp://127.0.0.1:7000?handshake_ms=-1", "handshake_ms"),
        ("unix://", "empty address"),
    ];
    for (u, want) in cases {
        for r in [
            registry().connect(&url(u)).await.map(drop),
            registry().listen(&url(u)).await.map(drop),
        ] {
            let msg = config_error(r);
            assert!(msg.contains(want), "{u}: `{msg}` does not say `{want}`");
        }
    }
    // Configurations built in code are checked too.
    let bad = NetConfig {
        window: 1,
        ..NetConfig::default()
    };
    let msg = config_error(NetListener::bind_tcp("127.0.0.1:0", bad).await);
    assert!(msg.contains("window 1"), "{msg}");
}

/// A session's reader and writer tasks run on the runtime that created it. When that runtime
/// shuts down, the session ends with an `Io` error naming the cause, whether or not the tasks
/// ever ran: a `recv` made from another runtime fails at once instead of waiting forever for
/// frames nothing reads, and so does a `send`. Checked for both ends of a pair made on one
/// runtime, and for a client whose runtime did nothing but connect (its tasks never ran).
#[test]
fn a_session_whose_runtime_shut_down_fails_instead_of_hanging() {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let cfg = NetConfig::default();
    let first = runtime();
    let (a, b) = first.block_on(async {
        let listener = NetListener::bind_tcp("127.0.0.1:0", cfg.clone())
            .await
            .unwrap();
        let addr = listener.local_address();
        let (a, b) = tokio::join!(listener.accept(), transport_net::connect_tcp(&addr, &cfg));
        (a.unwrap(), b.unwrap())
    });
    drop(first);
    // A server that keeps running, and a client made on a runtime that only connects.
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = server
        .block_on(NetListener::bind_tcp("127.0.0.1:0", cfg.clone()))
        .unwrap();
    let addr = listener.local_address();
    let accepted = server.spawn(async move { listener.accept().await });
    let connecting = runtime();
    let c = connecting
        .block_on(transport_net::connect_tcp(&addr, &cfg))
        .unwrap();
    drop(connecting);
    let _served = server.block_on(accepted).unwrap().unwrap();
    let later = runtime();
    for (name, t) in [("accepted", &a), ("connected", &b), ("connect-only", &c)] {
        let (recv, send) = later.block_on(async {
            let limit = std::time::Duration::from_secs(20);
            let recv = tokio::time::timeout(limit, t.recv())
                .await
                .unwrap_or_else(|_| panic!("{name}: recv waited for a reader that is gone"));
            let frame = transport_api::Frame::new(vec![1u8; 8]);
            let send = tokio::time::timeout(limit, t.send(frame))
                .await
                .unwrap_or_else(|_| panic!("{name}: send waited for a writer that is gone"));
            (recv, send)
        });
        let (_, message) = io_error(recv.map(|_| ()));
        assert!(message.contains("runtime"), "{name}: {message}");
        io_error(send);
    }
}
