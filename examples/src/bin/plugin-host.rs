//! The plugin-host demo: one host process serves four plugin processes over a shared-memory hub,
//! survives one of them being killed, and lets a replacement take its place.
//!
//! `cargo run -p examples --bin plugin-host [--metrics ADDR]` (`RUST_LOG` overrides the default
//! `info` level of the log on stderr).
//!
//! * The host binds a [`HubHost`] at a temporary socket path with room for exactly four peers
//!   and starts four plugins: this binary re-executed with the hidden `--plugin PATH NAME`
//!   arguments (`kill_on_drop`, so none outlives the host). Each plugin connects with
//!   [`transport::shm::connect`] and introduces itself with a [`PluginMsg::Hello`].
//! * Protocol: the host sends typed [`Request`]s (postcard-encoded) to each plugin with
//!   [`HubHost::send_to`] and collects the [`Response`]s of all plugins with
//!   [`HubHost::recv_any`], checking every answer against its own computation.
//! * After a few rounds the host SIGKILLs one plugin and reports how long it took to notice
//!   (its session returning `PeerDied`, and [`HubHost::peers`] showing it `Dead`). A replacement
//!   plugin then attaches to the freed region once the hub has reclaimed it, and the host
//!   serves all four again.
//! * A per-peer table from [`HubHost::peers`] is printed at the start, after the kill and at
//!   the end. Shutdown closes the hub; the plugins see `Closed` and exit with status 0.
//!
//! * With `--metrics ADDR` (e.g. `127.0.0.1:9000`; port 0 picks one) every session's stats are
//!   exported through the `metrics` crate (label `session` = the peer id) and served for
//!   Prometheus at `http://ADDR/metrics`; after the demo the host keeps serving them until its
//!   standard input closes.
//!
//! Any failure prints a message and exits with status 1.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use transport::shm::{Geometry, HubConfig, HubHost, PeerId, PeerState, SlotClass};
use transport::{Frame, FrameHeader, Transport, TransportError, TypedTransport, decode};

/// Plugins served at once (also the hub's number of regions, so a replacement must reuse the
/// region of the plugin it replaces).
const PLUGINS: usize = 4;
/// Request rounds before the kill, and after the replacement attached.
const ROUNDS: u32 = 4;
/// Pause between rounds, so the demo reads like a service running for a little while.
const PACE: Duration = Duration::from_millis(25);
/// Upper bound for every single step (accept, a round, noticing the death, a plugin's exit).
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Which plugin (index into the served list) is killed.
const VICTIM: usize = 2;

/// An operation a plugin performs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Op {
    /// Upper-case a text (an empty text is an error, to exercise error answers).
    Upper(String),
    /// Add numbers up.
    Sum(Vec<u32>),
}

/// The value of a successful operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Answer {
    /// Result of [`Op::Upper`].
    Text(String),
    /// Result of [`Op::Sum`].
    Number(u64),
}

impl Op {
    /// Performs the operation (the plugins' implementation, and the host's reference).
    fn apply(&self) -> Result<Answer, String> {
        match self {
            Op::Upper(s) if s.is_empty() => Err("nothing to upper-case".into()),
            Op::Upper(s) => Ok(Answer::Text(s.to_uppercase())),
            Op::Sum(v) => Ok(Answer::Number(v.iter().map(|&n| u64::from(n)).sum())),
        }
    }
}

/// Host → plugin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Request {
    /// Unique per host run; echoed in the response (and in the frame header's `msg_id`).
    id: u64,
    /// What to do.
    op: Op,
}

/// Plugin → host: the answer to one [`Request`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Response {
    /// The request's id.
    id: u64,
    /// The outcome.
    result: Result<Answer, String>,
}

/// Everything a plugin sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum PluginMsg {
    /// First message of every plugin: who it is.
    Hello {
        /// The name the host gave it on the command line.
        name: String,
        /// Its process id.
        pid: u32,
    },
    /// An answer.
    Response(Response),
}

/// A plugin process the host serves.
struct Plugin {
    name: String,
    id: PeerId,
    child: Child,
}

/// Runs `fut`, failing after [`STEP_TIMEOUT`].
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(STEP_TIMEOUT, fut)
        .await
        .map_err(|_| format!("timed out after {STEP_TIMEOUT:?} {what}"))
}

// ---------------------------------------------------------------------------------------------
// Plugin side
// ---------------------------------------------------------------------------------------------

/// A plugin: connects, says hello, answers requests until the host closes the session.
async fn plugin(path: &Path, name: &str) -> Result<(), String> {
    let t = transport::shm::connect(path)
        .await
        .map_err(|e| format!("connecting to {}: {e}", path.display()))?;
    let hello = PluginMsg::Hello {
        name: name.to_string(),
        pid: std::process::id(),
    };
    t.send_msg(FrameHeader::default(), &hello)
        .await
        .map_err(|e| format!("sending hello: {e}"))?;
    tracing::info!(
        plugin = name,
        pid = std::process::id(),
        "plugin attached to the hub"
    );
    let mut served = 0u64;
    loop {
        let req = match t.recv_msg::<Request>().await {
            Ok((_, req)) => req,
            Err(TransportError::Closed) => break,
            Err(e) => return Err(format!("receiving a request: {e}")),
        };
        let resp = PluginMsg::Response(Response {
            id: req.id,
            result: req.op.apply(),
        });
        let header = FrameHeader {
            msg_id: req.id,
            ..FrameHeader::default()
        };
        match t.send_msg(header, &resp).await {
            Ok(()) => served += 1,
            Err(TransportError::Closed) => break,
            Err(e) => return Err(format!("answering request {}: {e}", req.id)),
        }
    }
    tracing::info!(
        plugin = name,
        served,
        "host closed the session; plugin exiting"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Host side
// ---------------------------------------------------------------------------------------------

/// Starts one plugin process (this binary with `--plugin PATH NAME`).
fn spawn_plugin(path: &Path, name: &str) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding this executable: {e}"))?;
    Command::new(exe)
        .arg("--plugin")
        .arg(path)
        .arg(name)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("spawning plugin {name}: {e}"))
}

/// Accepts the next peer and reads its hello; pairs it with the spawned process of that name.
async fn accept_plugin(
    hub: &HubHost,
    spawned: &mut HashMap<String, Child>,
) -> Result<Plugin, String> {
    let (id, session) = within("waiting for a plugin to attach", hub.accept())
        .await?
        .map_err(|e| format!("accept: {e}"))?;
    let (_, hello) = within(
        &format!("waiting for the hello of {id}"),
        session.recv_msg::<PluginMsg>(),
    )
    .await?
    .map_err(|e| format!("hello of {id}: {e}"))?;
    // The hub keeps its own reference; ours would keep the region from being reclaimed after
    // the plugin left, so it is not kept.
    drop(session);
    let PluginMsg::Hello { name, pid } = hello else {
        return Err(format!(
            "{id} did not start with a hello but with {hello:?}"
        ));
    };
    let child = spawned
        .remove(&name)
        .ok_or_else(|| format!("{id} says it is `{name}`, which was not started"))?;
    if child.id() != Some(pid) {
        return Err(format!(
            "{id} (`{name}`) says its pid is {pid}, but that process is {:?}",
            child.id()
        ));
    }
    Ok(Plugin { name, id, child })
}

/// Records every session's stats with the `metrics` recorder (a no-op without `--metrics`).
fn export_peers(hub: &HubHost) {
    for p in hub.peers() {
        transport::export_stats(&p.id.to_string(), &p.stats);
    }
}

/// Prints the hub's view of every peer: one row per peer from [`HubHost::peers`].
fn print_peers(title: &str, hub: &HubHost, names: &HashMap<PeerId, String>) {
    export_peers(hub);
    println!(
        "\n== peers: {title} (free regions: {}) ==",
        hub.free_regions()
    );
    println!(
        "{:<16} {:<9} {:>7} {:<9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "peer",
        "name",
        "pid",
        "state",
        "tx frames",
        "tx bytes",
        "rx frames",
        "rx bytes",
        "queued tx/rx",
        "buf bytes"
    );
    for p in hub.peers() {
        let s = p.stats;
        println!(
            "{:<16} {:<9} {:>7} {:<9} {:>9} {:>9} {:>9} {:>9} {:>12} {:>9}",
            p.id.to_string(),
            names.get(&p.id).map_or("?", String::as_str),
            p.pid.map_or_else(|| "-".into(), |p| p.to_string()),
            format!("{:?}", p.state),
            s.frames_sent,
            s.bytes_sent,
            s.frames_received,
            s.bytes_received,
            format!("{}/{}", s.tx_queued_frames, s.rx_queued_frames),
            s.buffer_bytes_in_use,
        );
    }
    println!();
}

/// The requests of one round for one plugin.
fn ops(round: u32, slot: usize, name: &str) -> Vec<Op> {
    let mut ops = vec![
        Op::Upper(format!("{name} round {round}")),
        // Grows by round: small payloads travel in 256-byte slots, later ones in 4 KiB slots.
        Op::Sum((0..(round * 40 + slot as u32)).collect()),
    ];
    if round % 3 == 2 {
        ops.push(Op::Upper(String::new()));
    }
    ops
}

/// One round: every plugin gets its requests through `send_to`; all answers are collected with
/// `recv_any` and checked (right peer, right id, right result).
async fn round(
    hub: &HubHost,
    plugins: &[Plugin],
    round: u32,
    next_id: &mut u64,
) -> Result<usize, String> {
    let mut pending: HashMap<u64, (PeerId, Result<Answer, String>)> = HashMap::new();
    for (slot, p) in plugins.iter().enumerate() {
        for op in ops(round, slot, &p.name) {
            let id = *next_id;
            *next_id += 1;
            pending.insert(id, (p.id, op.apply()));
            let req = Request { id, op };
            let bytes = postcard::to_allocvec(&req).map_err(|e| format!("encoding: {e}"))?;
            within(
                &format!("sending request {id} to {}", p.name),
                hub.send_to(p.id, Frame::new(bytes).msg_id(id)),
            )
            .await?
            .map_err(|e| format!("sending request {id} to {} ({}): {e}", p.name, p.id))?;
        }
    }
    let total = pending.len();
    while !pending.is_empty() {
        let (from, frame) = within(
            &format!("waiting for {} answers of round {round}", pending.len()),
            hub.recv_any(),
        )
        .await?
        .map_err(|e| format!("recv_any: {e}"))?;
        let resp = match decode::<PluginMsg>(frame.bytes()) {
            Ok(PluginMsg::Response(r)) => r,
            Ok(other) => return Err(format!("{from} sent {other:?} instead of a response")),
            Err(e) => return Err(format!("{from}: {e}")),
        };
        let (to, expected) = pending
            .remove(&resp.id)
            .ok_or_else(|| format!("{from} answered unknown or repeated request {}", resp.id))?;
        if to != from || frame.header.msg_id != resp.id || resp.result != expected {
            return Err(format!(
                "request {} (sent to {to}) was answered by {from} (header msg_id {}) with \
                 {:?}, expected {expected:?}",
                resp.id, frame.header.msg_id, resp.result
            ));
        }
    }
    Ok(total)
}

/// Several rounds, paced.
async fn serve(
    hub: &HubHost,
    plugins: &[Plugin],
    rounds: std::ops::Range<u32>,
    next_id: &mut u64,
) -> Result<(), String> {
    for r in rounds {
        let start = Instant::now();
        let n = round(hub, plugins, r, next_id).await?;
        export_peers(hub);
        println!(
            "round {r}: {n} requests to {} plugins answered and checked in {:?}",
            plugins.len(),
            start.elapsed()
        );
        tokio::time::sleep(PACE).await;
    }
    Ok(())
}

/// SIGKILLs the plugin at `plugins[VICTIM]`, waits until the host noticed (both its session
/// reporting `PeerDied` and the hub's table showing it dead), reaps the process and prints the
/// table while the dead peer is still in it.
async fn kill_one(
    hub: &HubHost,
    plugins: &mut [Plugin],
    names: &HashMap<PeerId, String>,
) -> Result<(), String> {
    let victim = &mut plugins[VICTIM];
    // Our own handle on the victim's session, to see what an application holding one sees.
    let session = hub
        .peer(victim.id)
        .ok_or_else(|| format!("{} is not attached", victim.id))?;
    println!(
        ">>> killing {} ({}, pid {}) with SIGKILL",
        victim.name,
        victim.id,
        victim.child.id().unwrap_or_default()
    );
    victim
        .child
        .start_kill()
        .map_err(|e| format!("killing {}: {e}", victim.name))?;
    let killed = Instant::now();
    let mut by_session = None;
    let mut by_table = None;
    {
        let recv = session.recv();
        tokio::pin!(recv);
        let deadline = tokio::time::sleep(STEP_TIMEOUT);
        tokio::pin!(deadline);
        while by_session.is_none() || by_table.is_none() {
            tokio::select! {
                r = &mut recv, if by_session.is_none() => match r {
                    Err(TransportError::PeerDied) => by_session = Some(killed.elapsed()),
                    other => {
                        return Err(format!("the killed plugin's session gave {other:?}"));
                    }
                },
                // The table has no change notification: look at it every millisecond.
                _ = tokio::time::sleep(Duration::from_millis(1)), if by_table.is_none() => {
                    let state = hub.peers().into_iter().find(|p| p.id == victim.id).map(|p| p.state);
                    match state {
                        Some(PeerState::Attached) => {}
                        Some(PeerState::Dead) => by_table = Some(killed.elapsed()),
                        other => return Err(format!("the killed plugin's state became {other:?}")),
                    }
                }
                _ = &mut deadline => {
                    return Err(format!("the host did not notice the death within {STEP_TIMEOUT:?}"));
                }
            }
        }
    }
    let (by_session, by_table) = (by_session.unwrap_or_default(), by_table.unwrap_or_default());
    println!(
        ">>> host noticed the death of {} after {:?}: its session returned PeerDied after {:?}, \
         peers() (polled every ms) showed it Dead after {:?}",
        victim.id,
        by_session.min(by_table),
        by_session,
        by_table
    );
    let status = within("reaping the killed plugin", victim.child.wait())
        .await?
        .map_err(|e| format!("waiting for the killed plugin: {e}"))?;
    if status.signal() != Some(9) {
        return Err(format!(
            "{} was not killed by SIGKILL: {status}",
            victim.name
        ));
    }
    println!(">>> {} reaped: {status}", victim.name);
    // Our handle keeps the region (and the dead peer's row) until here.
    print_peers("after the kill", hub, names);
    drop(session);
    Ok(())
}

/// The host program.
async fn host(metrics: Option<SocketAddr>) -> Result<(), String> {
    if let Some(addr) = metrics {
        let bound = examples::metrics_http::serve(addr).await?;
        println!("metrics: Prometheus text at http://{bound}/metrics");
    }
    // Unique among running processes; a stale socket left by a crashed run is replaced.
    let path: PathBuf =
        std::env::temp_dir().join(format!("plugin-host-{}.sock", std::process::id()));
    let config = HubConfig {
        max_peers: PLUGINS,
        // Small regions: this demo's messages are a few KiB at most.
        geometry: Geometry {
            ring_capacity: 64,
            classes: vec![
                SlotClass {
                    slot_size: 256,
                    slot_count: 64,
                },
                SlotClass {
                    slot_size: 4 << 10,
                    slot_count: 16,
                },
            ],
        },
        ..HubConfig::default()
    };
    let hub = HubHost::bind(&path, config).map_err(|e| format!("binding the hub: {e}"))?;
    println!(
        "host: hub at {} with {PLUGINS} regions of {} KiB; starting {PLUGINS} plugins",
        path.display(),
        hub.region_len() >> 10
    );

    let mut names: HashMap<PeerId, String> = HashMap::new();
    let mut spawned = HashMap::new();
    for i in 0..PLUGINS {
        let name = format!("plugin-{}", (b'a' + i as u8) as char);
        spawned.insert(name.clone(), spawn_plugin(&path, &name)?);
    }
    let mut plugins = Vec::new();
    for _ in 0..PLUGINS {
        let p = accept_plugin(&hub, &mut spawned).await?;
        println!(
            "host: {} attached as {} (pid {})",
            p.name,
            p.id,
            p.child.id().unwrap_or_default()
        );
        names.insert(p.id, p.name.clone());
        plugins.push(p);
    }
    // Accepted in connection order; served (and the victim picked) in name order.
    plugins.sort_by(|a, b| a.name.cmp(&b.name));
    let mut next_id = 1;
    print_peers("start", &hub, &names);

    serve(&hub, &plugins, 0..ROUNDS, &mut next_id).await?;

    kill_one(&hub, &mut plugins, &names).await?;

    let dead = plugins.remove(VICTIM);
    let name = format!("plugin-{}", (b'a' + PLUGINS as u8) as char);
    println!(
        ">>> starting replacement {name}; free regions now: {} (region {} is freed once every \
         reference to {} is gone)",
        hub.free_regions(),
        dead.id.region(),
        dead.id
    );
    let waiting = Instant::now();
    spawned.insert(name.clone(), spawn_plugin(&path, &name)?);
    let replacement = accept_plugin(&hub, &mut spawned).await?;
    if replacement.id.region() != dead.id.region() {
        return Err(format!(
            "the replacement got {}, not the freed region {}",
            replacement.id,
            dead.id.region()
        ));
    }
    println!(
        ">>> replacement {} attached as {} after {:?}, reusing region {} of {}",
        replacement.name,
        replacement.id,
        waiting.elapsed(),
        replacement.id.region(),
        dead.id
    );
    names.insert(replacement.id, replacement.name.clone());
    plugins.insert(VICTIM, replacement);

    serve(&hub, &plugins, ROUNDS..2 * ROUNDS, &mut next_id).await?;
    print_peers("end", &hub, &names);

    println!("host: closing the hub");
    hub.close();
    for p in &mut plugins {
        let status = within(&format!("waiting for {} to exit", p.name), p.child.wait())
            .await?
            .map_err(|e| format!("waiting for {}: {e}", p.name))?;
        if !status.success() {
            return Err(format!("{} exited with {status}", p.name));
        }
        println!("host: {} exited with {status}", p.name);
    }
    drop(hub);
    println!("host: done, {} requests served", next_id - 1);
    if metrics.is_some() {
        println!("metrics: still served until standard input closes");
        tokio::io::copy(&mut tokio::io::stdin(), &mut tokio::io::sink())
            .await
            .map_err(|e| format!("reading standard input: {e}"))?;
    }
    Ok(())
}

/// Sets up `tracing` (default level `info`, `RUST_LOG` overrides) on stderr.
fn init_tracing() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (who, result) = match args.as_slice() {
        [] => ("plugin-host", host(None).await),
        [flag, addr] if flag == "--metrics" => match addr.parse() {
            Ok(addr) => ("plugin-host", host(Some(addr)).await),
            Err(e) => ("plugin-host", Err(format!("--metrics `{addr}`: {e}"))),
        },
        [flag, path, name] if flag == "--plugin" => {
            (name.as_str(), plugin(path.as_ref(), name).await)
        }
        _ => (
            "plugin-host",
            Err("usage: plugin-host [--metrics ADDR]".to_string()),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{who}: {e}");
            ExitCode::FAILURE
        }
    }
}
