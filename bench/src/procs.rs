//! Child processes, the watchdog and CPU pinning.
//!
//! Children never outlive the parent: each is owned by a [`ChildProc`] that kills and reaps it
//! on drop; the children ask the kernel to kill them if the parent dies
//! ([`child_prelude`]); and a watchdog thread ([`arm`]) kills every child and ends the run with
//! an error when a step overruns its time limit, so a stuck peer fails the run instead of
//! hanging it.

use super::cli::ChildArgs;
use super::{BenchError, BenchResult};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Watch {
    deadline: Option<Instant>,
    what: String,
    pids: Vec<u32>,
    dirs: Vec<PathBuf>,
    started: bool,
}

static WATCH: Mutex<Watch> = Mutex::new(Watch {
    deadline: None,
    what: String::new(),
    pids: Vec::new(),
    dirs: Vec::new(),
    started: false,
});

fn watch() -> std::sync::MutexGuard<'static, Watch> {
    WATCH.lock().unwrap_or_else(|p| p.into_inner())
}

fn kill_all(w: &mut Watch) {
    for pid in w.pids.drain(..) {
        if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
            // Not reaped yet (pids leave the list before `wait`), so the pid cannot be reused.
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Starts the watchdog thread (once per process).
pub fn start_watchdog() {
    let mut w = watch();
    if w.started {
        return;
    }
    w.started = true;
    drop(w);
    std::thread::Builder::new()
        .name("bench-watchdog".into())
        .spawn(|| {
            loop {
                std::thread::sleep(Duration::from_millis(100));
                let mut w = watch();
                if let Some(d) = w.deadline
                    && Instant::now() > d
                {
                    eprintln!(
                        "\ntransport-bench: error: `{}` overran its time limit; killing the peer \
                         process(es) and failing the run",
                        w.what
                    );
                    kill_all(&mut w);
                    for d in w.dirs.drain(..) {
                        let _ = std::fs::remove_dir_all(d);
                    }
                    std::process::exit(1);
                }
            }
        })
        .map(drop)
        .unwrap_or_else(|e| eprintln!("transport-bench: warning: no watchdog thread: {e}"));
}

/// Guard of an armed watchdog step; disarms on drop.
pub struct Armed(());

impl Drop for Armed {
    fn drop(&mut self) {
        watch().deadline = None;
    }
}

/// Arms the watchdog: if the returned guard is not dropped within `limit`, every child is
/// killed and the process exits with status 1 after printing `what`.
pub fn arm(what: impl Into<String>, limit: Duration) -> Armed {
    let mut w = watch();
    w.deadline = Some(Instant::now() + limit);
    w.what = what.into();
    Armed(())
}

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set)?;
    Ok(())
}

/// How the parent places itself and its peers, decided once at start.
#[derive(Clone, Debug)]
pub struct PlaceCtx {
    /// `split`, `same`, or `unpinned` when pinning failed.
    pub label: String,
    /// CPU of the parent (and of the parent-side thread of in-process rows).
    pub parent_cpu: Option<usize>,
    /// CPU of the peer.
    pub child_cpu: Option<usize>,
    /// True when both peers share a CPU (spinners must yield).
    pub same_cpu: bool,
}

/// A child process running the peer of a row; killed and reaped on drop.
pub struct ChildProc {
    child: Option<Child>,
    name: String,
}

impl ChildProc {
    /// Starts this binary as `--child backend` with the placement, the given inherited
    /// descriptors and rendezvous path.
    pub fn spawn(
        place: &PlaceCtx,
        backend: &str,
        fds: &[i32],
        rendezvous: Option<&Path>,
    ) -> BenchResult<ChildProc> {
        let exe = std::env::current_exe()
            .map_err(|e| BenchError::new(format!("cannot find this executable: {e}")))?;
        let mut args: Vec<OsString> = vec![
            "--child".into(),
            backend.into(),
            "--ppid".into(),
            std::process::id().to_string().into(),
            "--cpu".into(),
            place
                .child_cpu
                .map_or("none".to_string(), |c| c.to_string())
                .into(),
            "--placement".into(),
            if place.same_cpu { "same" } else { "split" }.into(),
        ];
        for fd in fds {
            args.push("--fd".into());
            args.push(fd.to_string().into());
        }
        if let Some(p) = rendezvous {
            args.push("--rendezvous".into());
            args.push(p.into());
        }
        let mut w = watch();
        let child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| BenchError::new(format!("cannot start the `{backend}` peer: {e}")))?;
        w.pids.push(child.id());
        Ok(ChildProc {
            child: Some(child),
            name: backend.to_string(),
        })
    }

    /// Fails if the child has already exited.
    pub fn check_alive(&mut self) -> BenchResult<()> {
        if let Some(c) = self.child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            let id = c.id();
            watch().pids.retain(|&p| p != id);
            self.child = None;
            return Err(BenchError::new(format!(
                "the `{}` peer exited early ({status})",
                self.name
            )));
        }
        Ok(())
    }

    /// Sends SIGKILL to the child (still reaped on drop).
    pub fn sigkill(&mut self) -> BenchResult<()> {
        match self.child.as_mut() {
            Some(c) => c
                .kill()
                .map_err(|e| BenchError::new(format!("cannot kill the `{}` peer: {e}", self.name))),
            None => Err(BenchError::new(format!("the `{}` peer is gone", self.name))),
        }
    }

    /// Waits up to `timeout` for the child to exit on its own; kills it past that. Fails unless
    /// it exited successfully in time.
    pub fn wait(mut self, timeout: Duration) -> BenchResult<()> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        let end = Instant::now() + timeout;
        loop {
            match c.try_wait() {
                Ok(Some(status)) => {
                    let id = c.id();
                    watch().pids.retain(|&p| p != id);
                    return if status.success() {
                        Ok(())
                    } else {
                        Err(BenchError::new(format!(
                            "the `{}` peer failed ({status})",
                            self.name
                        )))
                    };
                }
                Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(2)),
                _ => {
                    reap(c);
                    return Err(BenchError::new(format!(
                        "the `{}` peer did not exit within {timeout:?}; killed it",
                        self.name
                    )));
                }
            }
        }
    }
}

fn reap(mut c: Child) {
    let id = c.id();
    let _ = c.kill();
    let _ = c.wait();
    watch().pids.retain(|&p| p != id);
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            reap(c);
        }
    }
}

/// A private temporary directory for rendezvous paths, removed on drop.
pub struct RendezvousDir {
    path: PathBuf,
}

impl RendezvousDir {
    /// Creates a fresh directory under the system temporary directory.
    pub fn new(tag: &str) -> BenchResult<RendezvousDir> {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "transport-bench-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&path)
            .map_err(|e| BenchError::new(format!("cannot create {}: {e}", path.display())))?;
        watch().dirs.push(path.clone());
        Ok(RendezvousDir { path })
    }

    /// `dir/name`.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for RendezvousDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        watch().dirs.retain(|d| d != &self.path);
    }
}

/// What every child does first: ask to be killed when the parent dies, check that the parent
/// is still the one that started us, pin to the requested CPU.
pub fn child_prelude(args: &ChildArgs) -> BenchResult<()> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    let ppid = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32);
    if ppid != args.ppid {
        return Err(BenchError::new(format!(
            "parent {} is gone (our parent is now {ppid})",
            args.ppid
        )));
    }
    if let Some(cpu) = args.cpu {
        pin_current_thread(cpu)
            .map_err(|e| BenchError::new(format!("cannot pin to CPU {cpu}: {e}")))?;
    }
    Ok(())
}

/// Retries `f` every few milliseconds until it succeeds or `timeout` passes (for connecting to
/// a rendezvous the parent binds concurrently).
pub async fn retry<T, E: std::fmt::Display, F, Fut>(timeout: Duration, mut f: F) -> BenchResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let end = Instant::now() + timeout;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= end => {
                return Err(BenchError::new(format!("gave up after {timeout:?}: {e}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}
