//! The silent-peer scenario: the peer process is stopped (SIGSTOP), so it neither closes nor
//! answers, and a backend that declares a liveness timeout must wake this side's blocked `send`
//! and `recv` with `PeerDied` within it. Resuming the peer (SIGCONT) does not bring the session
//! back.

use crate::scenario::{Cx, Scenario};
use crate::util::{Check, numbered};
use crate::xproc::{Role, died, settle_idle_one, start};
use crate::{Backend, PairOptions, ensure};
use rustix::process::{Pid, Signal, kill_process};
use std::sync::Arc;
use std::time::{Duration, Instant};
use transport_api::{Frame, Transport, TransportError, TrySendError};

/// Extra time over the declared liveness timeout before the scenario fails: the timeout is
/// measured from the peer's last sign of life, which may come a little after the stop, and a
/// loaded machine schedules late.
fn limit(liveness: Duration) -> Duration {
    liveness * 2 + Duration::from_secs(1)
}

fn signal(pid: Option<u32>, sig: Signal, name: &str) -> Check {
    let pid = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(Pid::from_raw)
        .ok_or("the peer has no pid (already reaped?)")?;
    kill_process(pid, sig).map_err(|e| format!("{name} to the peer: {e}"))
}

/// Waits until the peer is really stopped (the signal is delivered asynchronously), without
/// reaping it.
fn wait_stopped(pid: Option<u32>) -> Check {
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    let pid = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(Pid::from_raw)
        .ok_or("the peer has no pid (already reaped?)")?;
    waitid(
        WaitId::Pid(pid),
        WaitIdOptions::STOPPED | WaitIdOptions::NOWAIT,
    )
    .map_err(|e| format!("waiting for the peer to stop: {e}"))?;
    Ok(())
}

async fn silent_peer<B: Backend>(b: Arc<B>, cx: Cx) -> Check {
    let liveness = cx
        .caps
        .liveness
        .ok_or("the backend declares no liveness timeout")?;
    let (_l, mut peer, t) = start(&*b, PairOptions::SMALL, Role::Idle, &cx).await?;
    peer.expect_line("ready").await?;
    let t = Arc::new(t);
    cx.step("stopping the peer process (SIGSTOP)");
    signal(peer.child.id(), Signal::STOP, "SIGSTOP")?;
    let stopped = Instant::now();
    wait_stopped(peer.child.id())?;
    // Fill the way to the stopped peer, so that the next send has to wait.
    cx.step("filling the way to the stopped peer");
    let mut n = 0u64;
    loop {
        match t.try_send(numbered(n, 1000)) {
            Ok(()) => n += 1,
            Err(TrySendError::Full(_)) => break,
            Err(TrySendError::Failed(e)) => return Err(format!("try_send #{n}: {e}")),
        }
        ensure!(n < 10_000_000, "try_send never reported Full");
    }
    let before = t.stats();
    let sender = {
        let t = t.clone();
        tokio::spawn(async move { (t.send(numbered(n, 1000)).await, Instant::now()) })
    };
    let receiver = {
        let t = t.clone();
        tokio::spawn(async move { (t.recv().await, Instant::now()) })
    };
    cx.wait_until("a send and a recv are blocked", || {
        let s = t.stats();
        s.send_waits > before.send_waits && s.recv_waits > before.recv_waits
    })
    .await?;
    // Waiting for the liveness timeout is this scenario's progress: it is reported every half
    // second, so that the stall watchdog does not fire before the bounded wait below.
    let limit = limit(liveness);
    let joined = async {
        let mut both = std::pin::pin!(async { (sender.await, receiver.await) });
        loop {
            cx.step(format!(
                "waiting for the stopped peer to be declared dead ({:?} of at most {limit:?})",
                stopped.elapsed()
            ));
            if let Ok(r) = tokio::time::timeout(Duration::from_millis(500), &mut both).await {
                return r;
            }
        }
    };
    let (sent, received) = tokio::time::timeout(limit, joined).await.map_err(|_| {
        format!(
            "the blocked send and recv were not woken within {limit:?} of stopping the peer \
             (liveness {liveness:?})"
        )
    })?;
    let (sent, sent_at) = sent.map_err(|e| e.to_string())?;
    let (received, received_at) = received.map_err(|e| e.to_string())?;
    died(
        &sent.err().ok_or("a send to a stopped peer returned Ok")?,
        "blocked send",
    )?;
    died(
        &received
            .err()
            .ok_or("recv returned a frame from a stopped, idle peer")?,
        "blocked recv",
    )?;
    eprintln!(
        "stopped peer declared dead after {:?} (send) and {:?} (recv); liveness {liveness:?}",
        sent_at.saturating_duration_since(stopped),
        received_at.saturating_duration_since(stopped)
    );
    cx.step("resuming the peer process (SIGCONT)");
    signal(peer.child.id(), Signal::CONT, "SIGCONT")?;
    // The resumed peer writes again (keep-alives, anything queued); the session stays over.
    let r = t.recv().await;
    ensure!(
        matches!(r, Err(TransportError::PeerDied)),
        "recv after SIGCONT: {r:?}"
    );
    let r = t.send(Frame::new("after SIGCONT")).await;
    ensure!(
        matches!(r, Err(TransportError::PeerDied)),
        "send after SIGCONT: {r:?}"
    );
    peer.kill().await?;
    settle_idle_one(&*t, &cx).await
}

/// The scenario, run only by backends that declare [`Capabilities::liveness`](crate::Capabilities::liveness)
/// and a cross-process mode.
pub(crate) fn list<B: Backend>() -> Vec<Scenario<B>> {
    vec![
        Scenario::new(
            "xproc_silent_peer_sigstop_declared_dead",
            true,
            |b: Arc<B>, cx: Cx| Box::pin(silent_peer(b, cx)),
        )
        .needing_liveness(),
    ]
}
