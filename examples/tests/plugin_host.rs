//! Runs the `plugin-host` example end to end: four plugin processes over a shared-memory hub,
//! one of them SIGKILLed and replaced, clean shutdown.

use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;

/// Hang guard: the example finishes in well under a second when healthy.
const GUARD: Duration = Duration::from_secs(60);

#[tokio::test]
async fn plugin_host_survives_a_killed_plugin_and_exits_cleanly() {
    let child = Command::new(env!("CARGO_BIN_EXE_plugin-host"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning plugin-host");
    let out = tokio::time::timeout(GUARD, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("plugin-host did not finish within {GUARD:?}"))
        .expect("waiting for plugin-host");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(
        out.status.success(),
        "plugin-host failed: {}\n{all}",
        out.status
    );

    // The kill was noticed, by the session and by the hub's table.
    assert!(stdout.contains("with SIGKILL"), "no kill reported\n{all}");
    assert!(
        stdout.contains("host noticed the death of")
            && stdout.contains("returned PeerDied")
            && stdout.contains("showed it Dead"),
        "the death was not reported\n{all}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("plugin-c") && l.contains(" Dead ")),
        "the table after the kill does not show the dead plugin\n{all}"
    );
    // The hub's own log saw the death and the attachments (tracing, on stderr).
    assert!(stderr.contains("peer died"), "no `peer died` event\n{all}");
    assert_eq!(
        stderr.matches("peer attached").count(),
        5,
        "expected 4 + 1 `peer attached` events\n{all}"
    );
    // The replacement took the freed region and was served.
    assert!(
        stdout.contains("replacement plugin-e attached as peer#5@region")
            && stdout.contains(", reusing region "),
        "the replacement did not reuse the freed region\n{all}"
    );
    assert!(
        stdout.contains("round 7: ")
            && stdout.contains("host: plugin-e exited with exit status: 0"),
        "the replacement was not served to the end\n{all}"
    );
    // Three tables.
    for title in ["peers: start", "peers: after the kill", "peers: end"] {
        assert!(stdout.contains(title), "no `{title}` table\n{all}");
    }
}
