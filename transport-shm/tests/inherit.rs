//! A spawned child inherits a ready session (no socket path): `spawn_peer` / `from_inherited`.

use std::process::Command;
use transport_api::{Frame, Transport, TransportError};
use transport_shm::{ShmConfig, from_inherited, spawn_peer};

const CHILD_ENV: &str = "TRANSPORT_SHM_INHERIT_CHILD";

/// In the child: echo until the parent closes. In the parent: spawn this test as the child,
/// exchange frames, close, and check the child exits cleanly.
#[test]
fn spawned_child_inherits_a_ready_session() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if std::env::var_os(CHILD_ENV).is_some() {
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
        .env(CHILD_ENV, "1");
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
