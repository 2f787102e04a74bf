//! Spawned peers: a child inherits a ready session (no socket path) through `spawn_peer` and
//! `from_inherited`, and a `Command` used for several children hands each of them its own
//! session socket only.
//!
//! The children are this test binary run again with one test selected (`--exact`) and an
//! environment variable that makes that test play the child.
//!
//! `spawn_peer` registers a `pre_exec` hook that clears close-on-exec on the raw descriptor
//! number of that call's child socket. `Command` keeps every hook, so a `Command` used again
//! (a supervisor respawning a worker, a pool of identical workers) must not run an earlier
//! call's hook: by then that number is another descriptor of this process (an eventfd, a
//! memfd, another session's socket), which would leak into the new child (masking death and
//! stealing wake-ups, see docs/INVARIANTS.md), or a closed one, failing the spawn.

use std::process::Command;
use transport_api::{Frame, Transport, TransportError};
use transport_shm::{INHERIT_ENV, ShmConfig, from_inherited, spawn_peer};

/// Set in the child of `spawned_child_inherits_a_ready_session`.
const INHERIT_CHILD_ENV: &str = "TRANSPORT_SHM_INHERIT_CHILD";

/// In the child: echo until the parent closes. In the parent: spawn this test as the child,
/// exchange frames, close, and check the child exits cleanly.
#[test]
fn spawned_child_inherits_a_ready_session() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if std::env::var_os(INHERIT_CHILD_ENV).is_some() {
        rt.block_on(async {
            let t = from_inherited().await.expect("child attaches");
            loop {
                match t.recv().await {
                    Ok(f) => t.send(f).await.expect("echo"),
                    Err(TransportError::Closed) => break,
                    Err(e) => panic!("child: {e}"),
                }
            }
        });
        return;
    }
    rt.block_on(async {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "spawned_child_inherits_a_ready_session",
            "--nocapture",
        ])
        .env(INHERIT_CHILD_ENV, "1");
        let (mut child, t) = spawn_peer(&mut cmd, ShmConfig::default())
            .await
            .expect("spawn");
        for i in 0..100u64 {
            let payload = vec![i as u8; (i as usize * 97) % 5000];
            t.send(Frame::new(payload.clone()).msg_id(i)).await.unwrap();
            let f = t.recv().await.unwrap();
            assert_eq!((f.header.msg_id, f.bytes()), (i, payload.as_slice()));
        }
        t.close();
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "child exited with {status}");
    });
}

#[tokio::test]
async fn from_inherited_without_a_parent_explains_itself() {
    // SAFETY-free check: the variable is absent in a normally started test.
    if std::env::var_os(transport_shm::INHERIT_ENV).is_some() {
        return;
    }
    let e = from_inherited().await.err().expect("no inherited socket");
    assert!(e.to_string().contains(transport_shm::INHERIT_ENV), "{e}");
}

/// Set in the children of `reusing_a_command_does_not_leak_descriptors_into_later_children`.
const REUSE_CHILD_ENV: &str = "TRANSPORT_SHM_REVIEW_SPAWN_CHILD";

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
    if std::env::var_os(REUSE_CHILD_ENV).is_some() {
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
        .env(REUSE_CHILD_ENV, "1");
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
