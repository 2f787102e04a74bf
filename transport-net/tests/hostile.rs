//! Hostile peers: raw sockets that write garbage, oversized lengths, truncated frames, or a
//! valid hello followed by garbage. The session under attack ends with a clear error, nothing
//! panics, and the listener goes on serving well-behaved peers.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use transport_api::{Frame, FrameHeader, Transport, TransportError};
use transport_net::wire::{self, HELLO_LEN, Hello};
use transport_net::{NetConfig, NetListener};

/// Hang guard for one step; healthy steps take milliseconds.
const GUARD: Duration = Duration::from_secs(20);

fn hello() -> [u8; HELLO_LEN] {
    Hello {
        max_payload: 1 << 20,
        keepalive_ms: 10_000,
        window: 1 << 20,
    }
    .encode()
}

/// Bytes of a deterministic pseudo-random stream (xorshift), so failures replay.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn listener() -> (NetListener, String) {
    let l = NetListener::bind_tcp("127.0.0.1:0", NetConfig::default())
        .await
        .unwrap();
    let a = l.local_address();
    (l, a)
}

/// A well-behaved peer still gets a working session from `listener`.
async fn still_serves(l: &NetListener, addr: &str) {
    let cfg = NetConfig::default();
    let (client, server) = tokio::time::timeout(GUARD, async {
        tokio::try_join!(transport_net::connect_tcp(addr, &cfg), l.accept())
    })
    .await
    .expect("a good peer was not served in time")
    .expect("a good peer was refused");
    client
        .send(Frame::new("still here").msg_id(7))
        .await
        .unwrap();
    let f = server.recv().await.unwrap();
    assert_eq!((f.header.msg_id, f.bytes()), (7, &b"still here"[..]));
}

/// Reads until the server drops the connection: it must, after hostile input.
async fn expect_dropped(mut s: TcpStream) {
    let mut sink = vec![0u8; 4096];
    let r = tokio::time::timeout(GUARD, async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(r.is_ok(), "the server kept a hostile connection open");
}

fn expect_corrupt(r: Result<Frame, TransportError>, words: &[&str]) {
    match r {
        Err(TransportError::Corrupt { detail }) => {
            for w in words {
                assert!(detail.contains(w), "`{detail}` does not mention `{w}`");
            }
        }
        other => panic!("expected Corrupt mentioning {words:?}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_instead_of_a_hello_are_dropped_and_the_listener_goes_on() {
    let (l, addr) = listener().await;
    for seed in 1..=5u64 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(&noise(seed, 200)).await.unwrap();
        // The listener skips this peer inside `accept`, which returns the good one.
        let (_, ()) = tokio::join!(still_serves(&l, &addr), expect_dropped(s));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_length_ends_the_session_with_corrupt_before_allocating() {
    let (l, addr) = listener().await;
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(&hello()).await.unwrap();
    let server = l.accept().await.unwrap();
    // A valid first frame, then a length of almost 4 GiB: refused from the length word.
    s.write_all(&wire::frame_head(&FrameHeader::default(), 3))
        .await
        .unwrap();
    s.write_all(b"abc").await.unwrap();
    s.write_all(&(wire::CONTROL_BASE - 1).to_le_bytes())
        .await
        .unwrap();
    assert_eq!(server.recv().await.unwrap().bytes(), b"abc");
    expect_corrupt(
        server.recv().await,
        &["frame length 4294967039", "max_payload"],
    );
    expect_dropped(s).await;
    still_serves(&l, &addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_frame_then_end_of_stream_is_peer_death_after_whole_frames() {
    let (l, addr) = listener().await;
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(&hello()).await.unwrap();
    let server = l.accept().await.unwrap();
    s.write_all(&wire::frame_head(&FrameHeader::default(), 2))
        .await
        .unwrap();
    s.write_all(b"ok").await.unwrap();
    s.write_all(&wire::frame_head(&FrameHeader::default(), 100))
        .await
        .unwrap();
    s.write_all(&[1u8; 40]).await.unwrap();
    // End of stream after everything written (a close with unread input would reset the
    // connection and let the kernel discard what was not yet sent).
    s.shutdown().await.unwrap();
    assert_eq!(server.recv().await.unwrap().bytes(), b"ok");
    let r = server.recv().await;
    assert!(matches!(r, Err(TransportError::PeerDied)), "{r:?}");
    assert!(server.stats().is_idle(), "{:?}", server.stats());
    expect_dropped(s).await;
    still_serves(&l, &addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_hello_then_garbage_ends_the_session_with_corrupt() {
    let (l, addr) = listener().await;
    // An unknown control word, and random bytes: both are protocol errors.
    let attacks = [
        wire::CONTROL_BASE.to_le_bytes().to_vec(),
        [u32::MAX.to_le_bytes().as_slice(), &noise(9, 500)].concat(),
    ];
    for attack in attacks {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(&hello()).await.unwrap();
        let server = l.accept().await.unwrap();
        s.write_all(&attack).await.unwrap();
        expect_corrupt(server.recv().await, &["control code"]);
        let r = server.send(Frame::new("to a corrupt peer")).await;
        assert!(matches!(r, Err(TransportError::Corrupt { .. })), "{r:?}");
        expect_dropped(s).await;
        still_serves(&l, &addr).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_beyond_the_window_or_unearned_credit_are_corrupt() {
    let cfg = NetConfig {
        window: 4096,
        max_payload: 1024,
        ..NetConfig::default()
    };
    let l = NetListener::bind_tcp("127.0.0.1:0", cfg).await.unwrap();
    let addr = l.local_address();

    // Never waiting for credit: 10 frames of 1 KiB overflow a 4 KiB window.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(&hello()).await.unwrap();
    let server = l.accept().await.unwrap();
    for _ in 0..10 {
        s.write_all(&wire::frame_head(&FrameHeader::default(), 1000))
            .await
            .unwrap();
        s.write_all(&[0u8; 1000]).await.unwrap();
    }
    // Nothing is consumed meanwhile, so the fourth frame (4 × 1036 bytes) breaks the window.
    expect_dropped(s).await;
    let mut delivered = 0;
    let err = loop {
        match server.recv().await {
            Ok(_) => delivered += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(delivered, 3, "frames within the window are delivered");
    match err {
        TransportError::Corrupt { detail } => assert!(detail.contains("window"), "{detail}"),
        other => panic!("expected Corrupt about the window, got {other:?}"),
    }

    // Credit for bytes this side never sent.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(&hello()).await.unwrap();
    let server = l.accept().await.unwrap();
    s.write_all(&wire::credit(1 << 40)).await.unwrap();
    expect_corrupt(server.recv().await, &["credit"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reports_a_bad_or_truncated_hello_clearly() {
    let raw = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = raw.local_addr().unwrap().to_string();
    let cases: [(Vec<u8>, &str); 3] = [
        (noise(3, HELLO_LEN), "magic"),
        (hello()[..10].to_vec(), "truncated hello"),
        (
            {
                let mut h = hello();
                h[8] = 2;
                h.to_vec()
            },
            "version 2",
        ),
    ];
    for (reply, word) in cases {
        let server = async {
            let (mut s, _) = raw.accept().await.unwrap();
            s.write_all(&reply).await.unwrap();
            s.shutdown().await.unwrap();
            // Hold the socket until the client gave up.
            let mut b = [0u8; 64];
            while s.read(&mut b).await.is_ok_and(|n| n > 0) {}
        };
        let cfg = NetConfig::default();
        let client = transport_net::connect_tcp(&addr, &cfg);
        let (r, ()) = tokio::join!(client, server);
        match r {
            Err(TransportError::Corrupt { detail }) => {
                assert!(detail.contains(word), "`{detail}` does not say `{word}`")
            }
            other => panic!("expected Corrupt naming `{word}`, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_fails_the_handshake_after_handshake_ms() {
    let dir = std::env::temp_dir().join(format!("net-hostile-{}.sock", std::process::id()));
    let l = NetListener::bind_unix(
        &dir,
        NetConfig {
            handshake_timeout: Duration::from_millis(100),
            ..NetConfig::default()
        },
    )
    .unwrap();
    let cfg = NetConfig {
        handshake_timeout: Duration::from_millis(100),
        ..NetConfig::default()
    };
    // A raw listener that never answers: the client gives up with TimedOut.
    let raw_path = std::env::temp_dir().join(format!("net-silent-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&raw_path);
    let raw = tokio::net::UnixListener::bind(&raw_path).unwrap();
    let (r, held) = tokio::join!(transport_net::connect_unix(&raw_path, &cfg), raw.accept());
    match r {
        Err(TransportError::Io(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
            assert!(e.to_string().contains("no hello within"), "{e}");
        }
        other => panic!("expected a TimedOut Io error, got {other:?}"),
    }
    drop(held);
    let _ = std::fs::remove_file(&raw_path);
    // A silent client does not block the listener for longer than the handshake timeout.
    let silent = UnixStream::connect(&dir).await.unwrap();
    let (client, server) = tokio::time::timeout(GUARD, async {
        tokio::try_join!(transport_net::connect_unix(&dir, &cfg), l.accept())
    })
    .await
    .expect("the listener stalled behind a silent client")
    .unwrap();
    client.send(Frame::new("x")).await.unwrap();
    assert_eq!(server.recv().await.unwrap().bytes(), b"x");
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_does_not_delay_the_next_one() {
    // With a handshake timeout far beyond the hang guard, a listener that handled handshakes
    // one at a time would stall behind the silent client and fail the guard.
    let l = NetListener::bind_tcp(
        "127.0.0.1:0",
        NetConfig {
            handshake_timeout: Duration::from_secs(600),
            ..NetConfig::default()
        },
    )
    .await
    .unwrap();
    let addr = l.local_address();
    let silent = TcpStream::connect(&addr).await.unwrap();
    still_serves(&l, &addr).await;
    drop(silent);
}
