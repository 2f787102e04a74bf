//! Every session has its own `session` span carrying the backend, a session number and the
//! address; connect, accept and close are recorded in it, and frames are not (above `trace`).

use transport_api::{Frame, Transport};
use transport_conformance::util::CapturedLog;
use transport_mem::{MemConfig, MemListener, connect};

#[tokio::test]
async fn session_events_are_recorded_in_the_session_span_and_frames_are_not() {
    let out = CapturedLog::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let listener = MemListener::bind("traced", MemConfig::default()).unwrap();
    let client = connect("traced").unwrap();
    let server = listener.accept().await.unwrap();
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
        "frames were recorded above trace level:\n{}",
        out.text()
    );
    client.close();
    drop(server);

    let text = out.text();
    let line = |what: &str| {
        text.lines()
            .find(|l| l.contains(what) && l.contains("session{"))
            .unwrap_or_else(|| panic!("no `{what}` event in a session span:\n{text}"))
            .to_string()
    };
    let connected = line("connected");
    let accepted = line("accepted");
    for l in [&connected, &accepted] {
        assert!(
            l.contains("backend=\"mem\"") && l.contains("local=traced"),
            "{l}"
        );
    }
    let session_of = |l: &str| {
        let at = l.find("session=").unwrap() + "session=".len();
        l[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .to_string()
    };
    assert_ne!(
        session_of(&connected),
        session_of(&accepted),
        "each end has its own session id"
    );
    assert_eq!(text.matches("session closed").count(), 2, "{text}");
}
