//! Running a [`Transport`] backend as a row: the parent side ([`TransportSession`], built by
//! [`parent`] for a peer process or by [`inproc::start`](super::inproc::start) for a peer
//! thread) and the child side ([`child`]).
//!
//! A cross-process backend needs exactly two calls, both in [`rows`](super::rows):
//! - parent: `cross::parent(place, "name", |path| async move { /* bind at path, accept one */ })`
//! - child: `cross::child(args, |path| async move { /* connect to path */ })`

use super::cli::ChildArgs;
use super::generic::{self, StreamOutcome};
use super::procs::{ChildProc, PlaceCtx, RendezvousDir, retry};
use super::proto::{Budget, MAX_SIZE, Pattern};
use super::session::Session;
use super::{BenchError, BenchResult};
use std::fmt::Display;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use transport_api::Transport;

/// How long connecting through a rendezvous may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A current-thread tokio runtime with I/O and timers.
pub fn runtime() -> BenchResult<tokio::runtime::Runtime> {
    runtime_of(Flavor::CurrentThread)
}

/// The tokio runtime a row's two sides run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `new_current_thread`: the task and the I/O driver share one thread.
    CurrentThread,
    /// `new_multi_thread` with its default worker count, as `#[tokio::main]` builds it: a
    /// wake-up may pass from the I/O driver's thread to a worker.
    MultiThread,
}

/// A runtime of `flavor` with I/O and timers.
pub fn runtime_of(flavor: Flavor) -> BenchResult<tokio::runtime::Runtime> {
    match flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build()
    .map_err(|e| BenchError::new(format!("cannot build a tokio runtime: {e}")))
}

/// Where the peer of a [`TransportSession`] runs.
pub enum Peer {
    /// Another process, with the directory holding its rendezvous path.
    Process(ChildProc, RendezvousDir),
    /// A thread of this process running [`generic::serve`].
    Thread(JoinHandle<BenchResult<()>>),
}

/// The parent side of a `Transport` row: the transport, a runtime to drive it, and the peer.
///
/// On a current-thread runtime the measurement runs in `block_on`; on a multi-thread runtime
/// it runs as a task spawned on the runtime (as a service's tasks run: on a worker, which also
/// polls the I/O driver), `block_on` only awaiting its end. A future run by a multi-thread
/// runtime's `block_on` lives on the calling thread, outside the workers, so every wake-up of
/// it is a hand-off between threads that no transport can avoid.
pub struct TransportSession<T: Transport> {
    t: Arc<T>,
    rt: tokio::runtime::Runtime,
    pattern: Arc<Pattern>,
    peer: Option<Peer>,
    wakes: Option<f64>,
    zero_copy: bool,
}

impl<T: Transport + 'static> TransportSession<T> {
    /// A session over `t` (driven by `rt`) whose peer runs [`generic::serve`].
    pub fn new(t: T, rt: tokio::runtime::Runtime, peer: Peer) -> Self {
        TransportSession {
            t: Arc::new(t),
            rt,
            pattern: Arc::new(Pattern::new(MAX_SIZE)),
            peer: Some(peer),
            wakes: None,
            zero_copy: false,
        }
    }

    /// Makes stream measurements zero-copy ([`generic::stream_send_zc`]: the sender writes
    /// only the sequence number into each `alloc`'d buffer, the peer reads only that).
    pub fn zero_copy(mut self) -> Self {
        self.zero_copy = true;
        self
    }

    /// Runs the measurement `f` on the runtime (see [`TransportSession`] for where) and records
    /// the wake system calls per frame sent meanwhile.
    fn measured<R, F>(&mut self, f: impl FnOnce(Arc<T>, Arc<Pattern>) -> F) -> BenchResult<R>
    where
        R: Send + 'static,
        F: Future<Output = BenchResult<R>> + Send + 'static,
    {
        let before = self.t.stats();
        let fut = f(self.t.clone(), self.pattern.clone());
        let r = drive(&self.rt, fut).and_then(|r| r);
        let after = self.t.stats();
        let frames = after.frames_sent.saturating_sub(before.frames_sent);
        let wakes = after.wake_syscalls.saturating_sub(before.wake_syscalls);
        self.wakes = (frames > 0).then(|| wakes as f64 / frames as f64);
        r
    }
}

impl<T: Transport + 'static> Session for TransportSession<T> {
    fn rtt(&mut self, size: usize, budget: &Budget) -> BenchResult<Vec<u64>> {
        let b = *budget;
        self.measured(|t, p| async move { generic::rtt(&*t, size, &b, &p).await })
    }

    fn stream(&mut self, size: usize, budget: &Budget) -> BenchResult<StreamOutcome> {
        let b = *budget;
        if self.zero_copy {
            self.measured(|t, _| async move { generic::stream_send_zc(&*t, size, &b).await })
        } else {
            self.measured(|t, p| async move { generic::stream_send(&*t, size, &b, &p).await })
        }
    }

    fn wakes_per_frame(&self) -> Option<f64> {
        self.wakes
    }

    fn finish(&mut self) -> BenchResult<()> {
        self.rt.block_on(generic::quit(&*self.t))?;
        match self.peer.take() {
            Some(Peer::Process(child, _dir)) => child.wait(Duration::from_secs(10)),
            Some(Peer::Thread(h)) => h
                .join()
                .map_err(|_| BenchError::new("the peer thread panicked"))?,
            None => Ok(()),
        }
    }
}

/// Parent side of a cross-process `Transport` row named `name`: creates a private directory,
/// starts this binary as `--child name --rendezvous PATH`, and awaits `accept(PATH)` (which
/// binds a listener at `PATH` and accepts one peer) for up to [`CONNECT_TIMEOUT`]. The child
/// side is [`child`], which connects to the same path with retries (so the order of bind and
/// connect does not matter).
pub fn parent<T, E, F, Fut>(
    place: &PlaceCtx,
    name: &str,
    accept: F,
) -> BenchResult<TransportSession<T>>
where
    T: Transport + 'static,
    E: Display,
    F: FnOnce(PathBuf) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    parent_on(place, name, Flavor::CurrentThread, accept)
}

/// [`parent`] on a runtime of `flavor`.
pub fn parent_on<T, E, F, Fut>(
    place: &PlaceCtx,
    name: &str,
    flavor: Flavor,
    accept: F,
) -> BenchResult<TransportSession<T>>
where
    T: Transport + 'static,
    E: Display,
    F: FnOnce(PathBuf) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let rt = runtime_of(flavor)?;
    let dir = RendezvousDir::new(name)?;
    let path = dir.join("rendezvous");
    let child = ChildProc::spawn(place, name, &[], Some(&path))?;
    let t = rt
        .block_on(async { tokio::time::timeout(CONNECT_TIMEOUT, accept(path)).await })
        .map_err(|_| {
            BenchError::new(format!(
                "no `{name}` peer connected within {CONNECT_TIMEOUT:?}"
            ))
        })?
        .map_err(|e| BenchError::new(format!("`{name}` accept failed: {e}")))?;
    Ok(TransportSession::new(t, rt, Peer::Process(child, dir)))
}

/// Child side of a cross-process `Transport` row: connects with `connect(PATH)` (retried until
/// [`CONNECT_TIMEOUT`]) and serves the parent ([`generic::serve`]) until it says quit.
pub fn child<T, E, F, Fut>(args: &ChildArgs, connect: F) -> BenchResult<()>
where
    T: Transport + 'static,
    E: Display,
    F: FnMut(PathBuf) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    child_on(args, Flavor::CurrentThread, connect)
}

/// [`child`] on a runtime of `flavor`.
pub fn child_on<T, E, F, Fut>(args: &ChildArgs, flavor: Flavor, mut connect: F) -> BenchResult<()>
where
    T: Transport + 'static,
    E: Display,
    F: FnMut(PathBuf) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let path = args
        .rendezvous
        .clone()
        .ok_or_else(|| BenchError::new("missing --rendezvous"))?;
    let rt = runtime_of(flavor)?;
    let t = rt.block_on(async {
        let t = retry(CONNECT_TIMEOUT, || connect(path.clone())).await?;
        Ok::<_, BenchError>(t)
    })?;
    drive(&rt, async move { generic::serve(&t).await })?
}

/// Runs `fut` on `rt` where every row's measurement runs (see [`TransportSession`]): in
/// `block_on` on a current-thread runtime, as a task spawned on a worker of a multi-thread one.
pub fn drive<R: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    fut: impl Future<Output = R> + Send + 'static,
) -> BenchResult<R> {
    match rt.handle().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => Ok(rt.block_on(fut)),
        _ => rt
            .block_on(rt.spawn(fut))
            .map_err(|e| BenchError::new(format!("a measuring task failed: {e}"))),
    }
}
