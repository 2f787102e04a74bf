//! A hostile peer in another process: the child connects, streams frames, and scribbles random
//! values over the whole segment it mapped (headers, ring indices and flags, descriptors,
//! completion entries, payload bytes), then is killed. The parent keeps sending and receiving
//! and must end every run with progress or a typed error (`Corrupt`, `PeerDied`, `Closed`):
//! never a panic, a hang or a crash.
//!
//! `HOSTILE_CHILD_SEEDS=<n>` (default 150) sets the number of child processes.

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;
use transport_api::{Frame, Transport, TransportError};
use transport_shm::{ShmConfig, ShmListener, connect};

const ROLE: &str = "TRANSPORT_SHM_HOSTILE_CHILD";

use transport_conformance::util::Rng;

async fn child(path: &str, seed: u64) {
    let t = match connect(path).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("hostile child: connect failed: {e}");
            return;
        }
    };
    // Scribble only once the parent's endpoint is up: a peer that corrupts the segment during
    // the handshake is simply refused by `accept` (which then waits for the next peer), a
    // case covered by the unit tests of the handshake.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !t.segment().side_state(transport_shm::Side::A).attached {
        if std::time::Instant::now() > deadline {
            return;
        }
        tokio::task::yield_now().await;
    }
    let words = t
        .segment()
        .mapping()
        .words(0, t.segment().layout().total_len() / 8)
        .expect("whole-segment view");
    let read_only = t.segment().mapping().read_only().unwrap_or_default();
    let mut rng = Rng::new(seed | 1);
    let header_and_rings = (t
        .segment()
        .layout()
        .dir(transport_shm::Direction::AToB)
        .classes[0]
        .offset
        / 8)
    .max(1);
    for i in 0u64.. {
        let _ = t.try_send(Frame::new(vec![i as u8; (i % 700) as usize]).msg_id(i));
        let _ = t.try_recv();
        if rng.next_u64() % 4 == 0 {
            // Mostly control structures, sometimes anywhere.
            let w = if rng.next_u64() % 3 == 0 {
                rng.next_u64() as usize % words.len()
            } else {
                rng.next_u64() as usize % header_and_rings
            };
            // The parent's payload memory is mapped read-only here (the session protects what
            // only the peer writes); bytes the parent only writes cannot hurt it anyway.
            let v = match rng.next_u64() % 4 {
                0 => 0,
                1 => u64::MAX,
                2 => rng.next_u64() % 1024,
                _ => rng.next_u64(),
            };
            if !read_only.contains(&(w * 8)) {
                words[w].store(v, Ordering::Relaxed);
            }
        }
        if i % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
}

async fn parent_run(seed: u64) -> Result<&'static str, String> {
    let dir = std::env::temp_dir();
    let path = dir.join(format!("tshm-hostile-{}-{seed}.sock", std::process::id()));
    let l = ShmListener::bind(&path, ShmConfig::default()).map_err(|e| e.to_string())?;
    let mut kid = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "hostile_child_process_never_breaks_the_survivor",
            "--nocapture",
        ])
        .env(ROLE, format!("{}|{seed}", path.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| e.to_string())?;
    let t = tokio::time::timeout(Duration::from_secs(10), l.accept())
        .await
        .map_err(|_| format!("seed {seed}: child never connected"))?
        .map_err(|e| e.to_string())?;
    let mut outcome = "progress";
    let run = async {
        for i in 0..2000u64 {
            if i % 64 == 0 {
                // Walks the queued units from the tail the child publishes (best effort,
                // must not panic or hang whatever it wrote).
                let _ = t.stats();
            }
            let r = if i % 2 == 0 {
                t.send(Frame::new(vec![1u8; (i % 3000) as usize]))
                    .await
                    .map(|_| ())
            } else {
                match t.try_recv() {
                    Ok(Some(f)) => {
                        let _: u64 = f.bytes().iter().map(|&b| u64::from(b)).sum();
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                }
            };
            r?;
        }
        Ok(())
    };
    // A hostile live peer may legitimately stall us (it can simply stop reading); the run
    // stops after a while and the child is killed, which must end every wait.
    let r = tokio::time::timeout(Duration::from_millis(300), run).await;
    let _ = kid.start_kill();
    let _ = kid.wait().await;
    match r {
        Ok(Ok(())) | Err(_) => {}
        Ok(Err(e)) => outcome = classify(&e, seed)?,
    }
    // After the kill every operation ends promptly with a typed error (or drains frames).
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match t.recv().await {
                Ok(_) => continue,
                Err(e) => return e,
            }
        }
    })
    .await
    .map_err(|_| format!("seed {seed}: recv hung after the hostile child was killed"))?;
    let o = classify(&end, seed)?;
    if outcome == "progress" {
        outcome = o;
    }
    let s = tokio::time::timeout(Duration::from_secs(5), t.send(Frame::new(vec![0u8; 100])))
        .await
        .map_err(|_| format!("seed {seed}: send hung after the hostile child was killed"))?;
    if let Err(e) = s {
        classify(&e, seed)?;
    }
    Ok(outcome)
}

fn classify(e: &TransportError, seed: u64) -> Result<&'static str, String> {
    match e {
        TransportError::Corrupt { .. } => Ok("corrupt"),
        TransportError::PeerDied => Ok("died"),
        TransportError::Closed => Ok("closed"),
        other => Err(format!("seed {seed}: unexpected error {other:?}")),
    }
}

#[test]
fn hostile_child_process_never_breaks_the_survivor() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Ok(role) = std::env::var(ROLE) {
        let (path, seed) = role.split_once('|').expect("path|seed");
        rt.block_on(child(path, seed.parse().expect("seed")));
        return;
    }
    let seeds: u64 = std::env::var("HOSTILE_CHILD_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    let mut tally = std::collections::BTreeMap::new();
    for seed in 1..=seeds {
        let o = rt
            .block_on(parent_run(seed))
            .unwrap_or_else(|e| panic!("{e}"));
        *tally.entry(o).or_insert(0) += 1;
    }
    eprintln!("hostile child outcomes over {seeds} runs: {tally:?}");
    if seeds >= 20 {
        assert!(
            tally.contains_key("corrupt"),
            "no run detected the scribbles: {tally:?}"
        );
    }
}
