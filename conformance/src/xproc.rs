//! Cross-process scenarios: the peer is this test binary re-executed as a child process, told
//! its role and the address to connect to through environment variables, and killed with
//! SIGKILL at chosen or random points.

use crate::progress::{Probe, Progress};
use crate::scenario::{Cx, Scenario};
use crate::util::{Check, Rng, check_numbered, check_pattern, numbered, pattern};
use crate::{Backend, PairOptions, check_idle, ensure};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use transport_api::{Frame, Transport, TransportError};

const ROLE_ENV: &str = "TRANSPORT_CONFORMANCE_ROLE";
const ADDR_ENV: &str = "TRANSPORT_CONFORMANCE_ADDR";

/// How long a survivor may take to notice a killed peer before the scenario fails. Death is
/// reported through the kernel (socket hang-up), so this is a hang guard, not a latency target;
/// the measured latency is printed.
const DEATH_LIMIT: Duration = Duration::from_secs(2);

/// The roles a child process can play.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Send N numbered frames, print `sent`, then wait to be killed.
    SendThenHold,
    /// Send numbered frames of varied sizes forever; print `started` after the first 100.
    Stream,
    /// Print `ready` and do nothing (never reads).
    Idle,
    /// Allocate buffers and hold them unsent, send 10 frames, print `ready`, wait.
    HoldBuffers,
    /// Echo every frame back until the session ends, then exit 0.
    Echo,
    /// Receive and check numbered frames forever, printing nothing.
    Sink,
    /// Send N numbered frames, close, exit 0.
    SendThenClose,
}

const ROLES: [(Role, &str); 7] = [
    (Role::SendThenHold, "send-then-hold"),
    (Role::Stream, "stream"),
    (Role::Idle, "idle"),
    (Role::HoldBuffers, "hold-buffers"),
    (Role::Echo, "echo"),
    (Role::Sink, "sink"),
    (Role::SendThenClose, "send-then-close"),
];

const HELD_FRAMES: u64 = 1000;

/// How long the peer process may take to start, connect or report; the stall watchdog
/// usually ends a wait for a silent peer sooner.
const SETTLE: Duration = Duration::from_secs(20);

fn role_name(r: Role) -> &'static str {
    ROLES
        .iter()
        .find(|(x, _)| *x == r)
        .map(|(_, n)| *n)
        .unwrap_or("?")
}

/// In a child process (role set in the environment), runs the role and returns its exit code.
pub(crate) fn child_main<B: Backend>(backend: &B) -> Option<ExitCode> {
    let role = std::env::var(ROLE_ENV).ok()?;
    let addr = std::env::var(ADDR_ENV).unwrap_or_default();
    let Some(&(role, _)) = ROLES.iter().find(|(_, n)| *n == role) else {
        eprintln!("conformance child: unknown role `{role}`");
        return Some(ExitCode::from(3));
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("conformance child: runtime: {e}");
            return Some(ExitCode::from(3));
        }
    };
    let r = rt.block_on(async {
        let t = backend
            .connect(&addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        run_role(role, &t).await
    });
    Some(match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conformance child ({}): {e}", role_name(role));
            ExitCode::from(1)
        }
    })
}

fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn run_role<T: Transport>(role: Role, t: &T) -> Check {
    let e = |what: &'static str| move |e: TransportError| format!("{what}: {e}");
    match role {
        Role::SendThenHold | Role::SendThenClose => {
            for i in 0..HELD_FRAMES {
                t.send(numbered(i, 64 + (i as usize % 300)))
                    .await
                    .map_err(e("send"))?;
            }
            if role == Role::SendThenClose {
                t.close();
                return Ok(());
            }
            say("sent");
            std::future::pending::<()>().await;
            Ok(())
        }
        Role::Stream => {
            let sizes = [8usize, 64, 200, 1000, 5000];
            for i in 0.. {
                t.send(numbered(i, sizes[i as usize % sizes.len()]))
                    .await
                    .map_err(e("send"))?;
                if i == 100 {
                    say("started");
                }
            }
            Ok(())
        }
        Role::Idle => {
            say("ready");
            std::future::pending::<()>().await;
            Ok(())
        }
        Role::HoldBuffers => {
            let mut held = Vec::new();
            for len in [16usize, 300, 5000, 70_000] {
                if len <= t.max_payload() {
                    held.push(t.alloc(len).await.map_err(e("alloc"))?);
                }
            }
            for i in 0..10 {
                t.send(numbered(i, 100)).await.map_err(e("send"))?;
            }
            say("ready");
            std::future::pending::<()>().await;
            drop(held);
            Ok(())
        }
        Role::Echo => loop {
            match t.recv().await {
                Ok(f) => t.send(f).await.map_err(e("echo send"))?,
                Err(TransportError::Closed) => return Ok(()),
                Err(err) => return Err(format!("echo recv: {err}")),
            }
        },
        Role::Sink => {
            let mut i = 0;
            loop {
                let f = t.recv().await.map_err(e("sink recv"))?;
                check_numbered(&f, i)?;
                i += 1;
            }
        }
    }
}

/// A spawned peer process. Killed on drop, so no child outlives a failed scenario.
pub(crate) struct Peer {
    pub(crate) child: Child,
    lines: tokio::io::Lines<BufReader<ChildStdout>>,
    progress: Progress,
}

impl Peer {
    fn spawn(role: Role, addr: &str, progress: &Progress) -> Result<Peer, String> {
        progress.step(format!("spawning a `{}` peer process", role_name(role)));
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut child = Command::new(exe)
            .env(ROLE_ENV, role_name(role))
            .env(ADDR_ENV, addr)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("spawning the peer process: {e}"))?;
        let stdout = child.stdout.take().ok_or("the peer has no stdout")?;
        Ok(Peer {
            child,
            lines: BufReader::new(stdout).lines(),
            progress: progress.clone(),
        })
    }

    pub(crate) async fn expect_line(&mut self, want: &str) -> Check {
        self.progress
            .step(format!("waiting for the peer process to say `{want}`"));
        match tokio::time::timeout(SETTLE, self.lines.next_line()).await {
            Ok(Ok(Some(l))) if l == want => Ok(()),
            Ok(Ok(Some(l))) => Err(format!("the peer said `{l}`, expected `{want}`")),
            Ok(Ok(None)) => Err(format!("the peer exited before saying `{want}`")),
            Ok(Err(e)) => Err(format!("reading the peer's output: {e}")),
            Err(_) => Err(format!("the peer did not say `{want}` within {SETTLE:?}")),
        }
    }

    /// SIGKILL and reap; returns the instant of the kill.
    pub(crate) async fn kill(&mut self) -> Result<Instant, String> {
        self.progress.step("killing the peer process");
        self.child.start_kill().map_err(|e| format!("kill: {e}"))?;
        let at = Instant::now();
        self.child.wait().await.map_err(|e| format!("wait: {e}"))?;
        Ok(at)
    }

    async fn wait_success(&mut self) -> Check {
        self.progress.step("waiting for the peer process to exit");
        let st = tokio::time::timeout(SETTLE, self.child.wait())
            .await
            .map_err(|_| "the peer did not exit".to_string())?
            .map_err(|e| format!("wait: {e}"))?;
        ensure!(st.success(), "the peer exited with {st}");
        Ok(())
    }
}

pub(crate) async fn start<B: Backend>(
    b: &B,
    opts: PairOptions,
    role: Role,
    cx: &Cx,
) -> Result<(B::Listener, Peer, Probe<B::T>), String> {
    let (listener, addr) = b.listen(opts).await.map_err(|e| format!("listen: {e}"))?;
    let peer = Peer::spawn(role, &addr, &cx.progress)?;
    cx.step(format!(
        "waiting for the `{}` peer process to connect",
        role_name(role)
    ));
    let t = tokio::time::timeout(SETTLE, b.accept(&listener))
        .await
        .map_err(|_| format!("no peer connected within {SETTLE:?}"))?
        .map_err(|e| format!("accept: {e}"))?;
    Ok((listener, peer, cx.progress.probe("the local endpoint", t)))
}

/// Receives until the session ends, checking the numbering continues from `next`; returns the
/// next expected number and the error that ended it.
async fn drain_numbered<T: Transport>(
    t: &T,
    mut next: u64,
) -> Result<(u64, TransportError), String> {
    loop {
        match t.recv().await {
            Ok(f) => {
                check_numbered(&f, next)?;
                next += 1;
            }
            Err(e) => return Ok((next, e)),
        }
    }
}

pub(crate) async fn settle_idle_one<T: Transport>(t: &T, cx: &Cx) -> Check {
    let _ = cx
        .wait_until("the survivor is idle", || t.stats().is_idle())
        .await;
    check_idle("the survivor", &t.stats())
}

pub(crate) fn died(e: &TransportError, what: &str) -> Check {
    ensure!(
        matches!(e, TransportError::PeerDied),
        "{what}: expected PeerDied, got {e:?}"
    );
    Ok(())
}

async fn kill_after_send<B: Backend>(b: Arc<B>, cx: Cx) -> Check {
    let (_l, mut peer, t) = start(&*b, PairOptions::DEFAULT, Role::SendThenHold, &cx).await?;
    // Receive concurrently (the peer may need room to finish sending), kill it once every
    // one of its sends has returned Ok, and check that all of them arrive before PeerDied.
    let t = Arc::new(t);
    let receiver = {
        let t = t.clone();
        tokio::spawn(async move { drain_numbered(&*t, 0).await })
    };
    peer.expect_line("sent").await?;
    peer.kill().await?;
    let (n, e) = receiver.await.map_err(|e| e.to_string())??;
    ensure!(
        n == HELD_FRAMES,
        "{n} frames delivered, the dead peer had sent {HELD_FRAMES}"
    );
    died(&e, "after draining a killed peer")?;
    settle_idle_one(&*t, &cx).await
}

async fn kill_mid_stream<B: Backend>(b: Arc<B>, cx: Cx) -> Check {
    let seed = cx.seed;
    let mut rng = Rng::new(seed);
    for round in 0..3 {
        let (_l, mut peer, t) = start(&*b, PairOptions::DEFAULT, Role::Stream, &cx).await?;
        let stop = 1 + rng.below(20_000);
        let mut next = 0;
        while next < stop {
            let f = t
                .recv()
                .await
                .map_err(|e| format!("round {round}: recv #{next}: {e}"))?;
            check_numbered(&f, next)?;
            next += 1;
        }
        peer.kill().await?;
        let (n, e) = drain_numbered(&t, next).await?;
        died(
            &e,
            &format!("round {round} (seed {seed}): after {n} frames"),
        )?;
        settle_idle_one(&t, &cx).await?;
    }
    Ok(())
}

async fn kill_while_blocked_in_recv<B: Backend>(b: Arc<B>, cx: Cx) -> Check {
    let (_l, mut peer, t) = start(&*b, PairOptions::DEFAULT, Role::Idle, &cx).await?;
    peer.expect_line("ready").await?;
    let t = Arc::new(t);
    let rw = t.stats().recv_waits;
    let waiter = {
        let t = t.clone();
        tokio::spawn(async move { (t.recv().await, Instant::now()) })
    };
    cx.wait_until("the recv is blocked", || t.stats().recv_waits > rw)
        .await?;
    let killed = peer.kill().await?;
    let (r, woke) = tokio::time::timeout(DEATH_LIMIT, waiter)
        .await
        .map_err(|_| format!("the blocked recv was not woken within {DEATH_LIMIT:?} of the kill"))?
        .map_err(|e| e.to_string())?;
    died(
        &r.err().ok_or("recv returned a frame from an idle peer")?,
        "blocked recv",
    )?;
    eprintln!(
        "death noticed by a blocked recv after {:?}",
        woke.saturating_duration_since(killed)
    );
    settle_idle_one(&*t, &cx).await
}

async fn kill_while_blocked_in_send<B: Backend>(b: Arc<B>, cx: Cx) -> Check {
    let (_l, mut peer, t) = start(&*b, PairOptions::SMALL, Role::Idle, &cx).await?;
    peer.expect_line("ready").await?;
    let t = Arc::new(t);
    let sender = {
        let t = t.clone();
        tokio::spawn(async move {
            let mut i = 0;
            loop {
                if let Err(e) = t.send(numbered(i, 1000)).await {
                    return (e, Instant::now());
                }
                i += 1;
            }
        })
    };
    cx.wait_until("the send is blocked", || t.stats().send_waits > 0)
        .await?;
    let killed = peer.kill().await?;
    let (e, woke) = tokio::time::timeout(DEATH_LIMIT, sender)
        .await
        .map_err(|_| format!("the blocked send was not woken within {DEATH_LIMIT:?} of the kill"))?
        .map_err(|e| e.to_string())?;
    died(&e, "blocked send")?;
    eprintln!(
        "death noticed by a blocked send after {:?}",
        woke.saturating_duration_since(killed)
    );
    settle_idle_one(&*t, &cx).await
}

async fn kill_receiver_mid_stream<B: Backend>(b: Arc<B>, cx: Cx) -> Check {
    let seed = cx.seed;
    let mut rng = Rng::new(seed);
    let (_l, mut peer, t) = start(&*b, PairOptions::DEFAULT, Role::Sink, &cx).await?;
    let stop = 1 + rng.below(20_000);
    for i in 0..stop {
        t.send(numbered(i, 64 + (i as usize % 2000)))
            .await
            .map_err(|e| format!("send #{i} (seed {seed}): {e}"))?;
    }
    peer.kill().await?;
    let mut i = stop;
    let e = loop {
        match t.send(numbered(i, 64)).await {
            Ok(()) => i += 1,
            Err(e) => break e,
        }
        ensure!(
            i < stop + 10_000_000,
            "sends to a killed peer keep succeeding"
        );
    };
    died(&e, "send to a killed receiver")?;
    settle_idle_one(&t, &cx).await
}

async fn kill_while_holding_buffers<B: Backend>(b: Arc<B>, cx: Cx) -> Check {
    let (_l, mut peer, t) = start(&*b, PairOptions::DEFAULT, Role::HoldBuffers, &cx).await?;
    peer.expect_line("ready").await?;
    peer.kill().await?;
    let (n, e) = drain_numbered(&t, 0).await?;
    ensure!(n == 10, "{n} frames delivered, the dead peer had sent 10");
    died(&e, "after a peer holding buffers died")?;
    settle_idle_one(&t, &cx).await
}

async fn echo_exchange<T: Transport>(t: &T, sizes: &[usize]) -> Check {
    for (i, &len) in sizes.iter().enumerate() {
        t.send(Frame::new(pattern(len, i as u64)).msg_id(i as u64))
            .await
            .map_err(|e| format!("send of {len} bytes: {e}"))?;
        let f = t
            .recv()
            .await
            .map_err(|e| format!("echo of {len} bytes: {e}"))?;
        ensure!(
            f.header.msg_id == i as u64 && f.bytes().len() == len,
            "echo #{i}: wrong frame"
        );
        check_pattern(f.bytes(), i as u64)?;
    }
    Ok(())
}

async fn reconnect_after_death<B: Backend>(b: Arc<B>, cx: Cx) -> Check {
    let (listener, addr) = b
        .listen(PairOptions::DEFAULT)
        .await
        .map_err(|e| format!("listen: {e}"))?;
    for generation in 0..3 {
        let mut peer = Peer::spawn(Role::Idle, &addr, &cx.progress)?;
        let t = tokio::time::timeout(SETTLE, b.accept(&listener))
            .await
            .map_err(|_| format!("peer {generation} did not connect"))?
            .map_err(|e| format!("accept #{generation}: {e}"))?;
        let t = cx.progress.probe("the local endpoint", t);
        peer.expect_line("ready").await?;
        peer.kill().await?;
        let r = t.recv().await;
        died(
            &r.err().ok_or("a frame from an idle peer")?,
            "after the kill",
        )?;
        settle_idle_one(&t, &cx).await?;
    }
    let mut peer = Peer::spawn(Role::Echo, &addr, &cx.progress)?;
    let t = tokio::time::timeout(SETTLE, b.accept(&listener))
        .await
        .map_err(|_| "the replacement peer did not connect".to_string())?
        .map_err(|e| format!("accept of the replacement: {e}"))?;
    let t = cx.progress.probe("the local endpoint", t);
    echo_exchange(&t, &[0, 1, 100, 5000, 70_000.min(t.max_payload())]).await?;
    t.close();
    peer.wait_success().await?;
    settle_idle_one(&t, &cx).await
}

async fn echo_integrity<B: Backend>(b: Arc<B>, cx: Cx) -> Check {
    let (_l, mut peer, t) = start(&*b, PairOptions::DEFAULT, Role::Echo, &cx).await?;
    let sizes = crate::scenarios::sizes(&b.capabilities(), t.max_payload());
    echo_exchange(&t, &sizes).await?;
    t.close();
    peer.wait_success().await?;
    settle_idle_one(&t, &cx).await
}

async fn graceful_close<B: Backend>(b: Arc<B>, cx: Cx) -> Check {
    let (_l, mut peer, t) = start(&*b, PairOptions::DEFAULT, Role::SendThenClose, &cx).await?;
    let (n, e) = drain_numbered(&t, 0).await?;
    ensure!(
        n == HELD_FRAMES,
        "{n} frames delivered before Closed, {HELD_FRAMES} sent"
    );
    ensure!(
        matches!(e, TransportError::Closed),
        "a peer that closed and exited: expected Closed, got {e:?}"
    );
    peer.wait_success().await?;
    settle_idle_one(&t, &cx).await
}

/// Every cross-process scenario, in suite order.
pub(crate) fn list<B: Backend>() -> Vec<Scenario<B>> {
    macro_rules! xproc {
        ($name:literal => $f:path) => {
            Scenario::new($name, true, |b: Arc<B>, cx: Cx| Box::pin($f(b, cx)))
        };
    }
    vec![
        xproc!("xproc_echo_integrity" => echo_integrity),
        xproc!("xproc_graceful_close_then_exit" => graceful_close),
        xproc!("xproc_kill_after_send_delivers_everything" => kill_after_send),
        xproc!("xproc_kill_sender_mid_stream_random" => kill_mid_stream),
        xproc!("xproc_kill_receiver_mid_stream_random" => kill_receiver_mid_stream),
        xproc!("xproc_kill_while_blocked_in_recv" => kill_while_blocked_in_recv),
        xproc!("xproc_kill_while_blocked_in_send" => kill_while_blocked_in_send),
        xproc!("xproc_kill_while_peer_holds_buffers" => kill_while_holding_buffers),
        xproc!("xproc_reconnect_after_death" => reconnect_after_death),
    ]
}
