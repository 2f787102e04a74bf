//! `transport-inspect hub` against a real hub: the table and JSON list the peers with their
//! pid, uid and counters; bad paths fail with one clear line.

use std::path::{Path, PathBuf};
use tokio::process::Command;
use transport_api::{Frame, Transport};
use transport_shm::{HubConfig, HubHost, connect};

fn inspect() -> Command {
    Command::new(env!("CARGO_BIN_EXE_transport-inspect"))
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tinspect-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir(&d).unwrap();
    d
}

async fn run(args: &[&str], path: &Path) -> (bool, String, String) {
    let out = inspect().args(args).arg(path).output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_a_running_hubs_peers_with_their_counters() {
    let dir = scratch("list");
    let path = dir.join("host.sock");
    let hub = HubHost::bind(&path, HubConfig::default()).unwrap();
    let (a, accepted_a) = tokio::join!(connect(&path), hub.accept());
    let (b, accepted_b) = tokio::join!(connect(&path), hub.accept());
    let (a, b) = (a.unwrap(), b.unwrap());
    let (id_a, id_b) = (accepted_a.unwrap().0, accepted_b.unwrap().0);
    for i in 0..3u8 {
        a.send(Frame::new(vec![i; 10])).await.unwrap();
    }
    b.send(Frame::new(vec![9; 100])).await.unwrap();
    for _ in 0..4 {
        hub.recv_any().await.unwrap();
    }

    let (ok, out, err) = run(&["hub", "--json"], &path).await;
    assert!(ok, "stderr: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let peers = v["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 2, "{out}");
    let me = u64::from(std::process::id());
    for (p, id, frames, bytes) in [(&peers[0], id_a, 3, 30), (&peers[1], id_b, 1, 100)] {
        assert_eq!(p["generation"].as_u64(), Some(id.generation()), "{out}");
        assert_eq!(p["pid"].as_u64(), Some(me), "{out}");
        assert_eq!(p["state"], "Attached", "{out}");
        assert_eq!(
            p["stats"]["frames_received"].as_u64(),
            Some(frames),
            "{out}"
        );
        assert_eq!(p["stats"]["bytes_received"].as_u64(), Some(bytes), "{out}");
    }

    let (ok, out, err) = run(
        &["hub", "--watch", "--count", "2", "--interval-ms", "100"],
        &path,
    )
    .await;
    assert!(ok, "stderr: {err}");
    assert_eq!(out.matches("2 of 64 regions in use").count(), 2, "{out}");
    let line_a = format!("peer#{}@region{}", id_a.generation(), id_a.region());
    assert_eq!(out.matches(&line_a).count(), 2, "{out}");

    drop(a);
    drop(b);
    drop(hub);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn bad_paths_fail_with_one_clear_line() {
    let dir = scratch("bad");
    let missing = dir.join("missing.sock");
    let (ok, _, err) = run(&["hub"], &missing).await;
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("no such socket") && err.contains("missing.sock"),
        "{err}"
    );

    let plain = dir.join("plain.sock");
    let _l = std::os::unix::net::UnixListener::bind(&plain).unwrap();
    let (ok, _, err) = run(&["hub"], &plain).await;
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not a hub"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
