//! Every shm and hub session has its own `session` span (backend, session number, local
//! address and side, peer pid); its start, close and the peer's end are recorded inside it, and
//! frames are not (above `trace` level).

mod common;

use common::*;
use transport_api::{Frame, Transport};
use transport_conformance::util::CapturedLog;
use transport_shm::{HubConfig, HubHost, ShmConfig, ShmListener, connect};

fn lines_with<'a>(text: &'a str, what: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.contains(what) && l.contains("session{"))
        .collect()
}

#[tokio::test]
async fn session_events_are_recorded_in_their_span_and_frames_are_not() {
    let out = CapturedLog::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let path = sock_path("traced");
    let listener = ShmListener::bind(&path, ShmConfig::default()).unwrap();
    let (client, server) = tokio::join!(connect(&path), listener.accept());
    let (client, server) = (client.unwrap(), server.unwrap());
    let started = out.text();
    let starts = lines_with(&started, "session started");
    assert_eq!(starts.len(), 2, "one start per side:\n{started}");
    let path_text = path.display().to_string();
    for l in &starts {
        assert!(
            l.contains("backend=\"shm\"") && l.contains(&path_text),
            "{l}"
        );
        assert!(
            l.contains(&format!("peer=pid {}", std::process::id())),
            "{l}"
        );
    }
    let before_frames = out.text().lines().count();
    for i in 0..100u32 {
        client
            .send(Frame::new(i.to_le_bytes().to_vec()))
            .await
            .unwrap();
        server.recv().await.unwrap();
    }
    assert_eq!(
        out.text().lines().count(),
        before_frames,
        "frames were recorded above debug level:\n{}",
        out.text()
    );
    client.close();
    let text = out.text();
    let closed = lines_with(&text, "session closed");
    assert_eq!(closed.len(), 1, "{text}");
    // The close is recorded in the client's span, not the server's.
    let session_of = |l: &str| {
        let at = l.find("session=").unwrap() + "session=".len();
        l[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .to_string()
    };
    let client_session = session_of(closed[0]);
    assert!(
        starts
            .iter()
            .any(|l| session_of(l) == client_session && l.contains("side B")),
        "the close is not in the connecting side's span:\n{text}"
    );
    drop(server);
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn hub_sessions_are_labelled_hub_with_their_region() {
    let out = CapturedLog::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let path = sock_path("traced-hub");
    let hub = HubHost::bind(&path, HubConfig::default()).unwrap();
    let (peer, accepted) = tokio::join!(connect(&path), hub.accept());
    let (_peer, _accepted) = (peer.unwrap(), accepted.unwrap());
    let text = out.text();
    let starts = lines_with(&text, "session started");
    assert_eq!(starts.len(), 2, "{text}");
    assert!(
        starts.iter().all(|l| l.contains("backend=\"hub\"")),
        "{text}"
    );
    assert!(
        starts.iter().any(|l| l.contains("region 0")),
        "the host side names the region:\n{text}"
    );
}
