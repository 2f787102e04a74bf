//! Review finding: `spawn_peer` leaves its `pre_exec` closure in the caller's `Command`.
//!
//! `os::inherit_in_child` registers a `pre_exec` hook that clears close-on-exec on the raw
//! descriptor number of *that call's* child socket. `Command` keeps every hook, so when the same
//! `Command` is used again (a supervisor respawning a worker, a pool of identical workers), the
//! next child also runs the old hook on the old number, which by then is another descriptor of
//! this process (an eventfd, a memfd, a session socket of the first worker...): it leaks into the
//! new child (LESSONS 20: masking death, stealing wake-ups), or, if the number is closed, the
//! hook fails with EBADF and the spawn fails.

use std::process::Command;
use transport_api::{Frame, Transport, TransportError};
use transport_shm::{INHERIT_ENV, ShmConfig, from_inherited, spawn_peer};

const CHILD_ENV: &str = "TRANSPORT_SHM_REVIEW_SPAWN_CHILD";

/// Descriptors open in this process besides stdio, the inherited session socket and the
/// directory being listed.
fn unexpected_fds() -> Vec<String> {
    let inherited = std::env::var(INHERIT_ENV).unwrap_or_default();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let target = std::fs::read_link(e.path())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if ["0", "1", "2"].contains(&name.as_str())
            || name == inherited
            || (target.starts_with("/proc/") && target.ends_with("/fd"))
        {
            continue;
        }
        out.push(format!("{name} -> {target}"));
    }
    out
}

#[test]
fn reusing_a_command_does_not_leak_descriptors_into_later_children() {
    if std::env::var_os(CHILD_ENV).is_some() {
        // Before anything else opens a descriptor.
        let extra = unexpected_fds().join(", ");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let t = from_inherited().await.expect("child attaches");
            t.send(Frame::new(extra.into_bytes())).await.unwrap();
            loop {
                match t.recv().await {
                    Ok(_) => {}
                    Err(TransportError::Closed | TransportError::PeerDied) => break,
                    Err(e) => panic!("child: {e}"),
                }
            }
        });
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "reusing_a_command_does_not_leak_descriptors_into_later_children",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1");
        let mut sessions = Vec::new();
        // Descriptors the test process itself inherited without close-on-exec (e.g. a
        // jobserver pipe from cargo) reach every child: worker 0 gives that baseline.
        let mut baseline = None;
        for worker in 0..3 {
            let (child, t) = spawn_peer(&mut cmd, ShmConfig::default())
                .await
                .unwrap_or_else(|e| panic!("spawning worker {worker} with the same Command: {e}"));
            let f = t.recv().await.unwrap();
            let extra = String::from_utf8_lossy(f.bytes()).into_owned();
            let base = baseline.get_or_insert_with(|| extra.clone());
            assert_eq!(
                &extra, base,
                "worker {worker} inherited descriptors worker 0 did not have"
            );
            sessions.push((child, t));
        }
        for (mut child, t) in sessions {
            t.close();
            drop(t);
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        }
    });
}
