//! Baseline `eventfd`: the cost of a kernel wake. Two processes, two blocking eventfds; each
//! side writes the other's eventfd and blocks reading its own. Only the 8-byte round trip
//! applies (an eventfd carries one 8-byte counter).
//!
//! Baselines `eventfd-rt` and `eventfd-rt-mt`: the same ping-pong written as a tokio user
//! writes it, on a current-thread / multi-thread runtime: non-blocking eventfds in `AsyncFd`,
//! each side writing the other's and awaiting its own readiness, then reading it (the
//! measurement runs where [`cross::drive`] runs every row's).

use super::cli::ChildArgs;
use super::cross::{self, Flavor, runtime_of};
use super::generic::StreamOutcome;
use super::procs::{ChildProc, PlaceCtx};
use super::proto::Budget;
use super::session::Session;
use super::shmem::{async_readable, take_inherited_fd};
use super::{BenchError, BenchResult};
use rustix::event::{EventfdFlags, eventfd};
use rustix::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;

/// Value the parent writes to tell the child to exit (a ping is 1).
const QUIT: u64 = 1 << 40;

fn post(fd: impl AsFd, v: u64) -> BenchResult<()> {
    rustix::io::write(fd, &v.to_ne_bytes())?;
    Ok(())
}

fn take(fd: impl AsFd) -> BenchResult<u64> {
    let mut b = [0u8; 8];
    let n = rustix::io::read(fd, &mut b)?;
    if n != 8 {
        return Err(BenchError::new(format!("eventfd read returned {n} bytes")));
    }
    Ok(u64::from_ne_bytes(b))
}

/// Parent side of the `eventfd` rows.
pub struct EventfdSession {
    to_child: Arc<OwnedFd>,
    to_parent: Answers,
    child: Option<ChildProc>,
}

/// Where the parent waits for the child's answers.
enum Answers {
    /// In a blocking read.
    Blocking(OwnedFd),
    /// Through the reactor of a runtime (`eventfd-rt` rows).
    Runtime(tokio::runtime::Runtime, Arc<AsyncFd<OwnedFd>>),
}

impl EventfdSession {
    /// Creates the two eventfds (inherited by the child) and starts the peer of the blocking
    /// row.
    pub fn start(place: &PlaceCtx) -> BenchResult<EventfdSession> {
        Self::start_as(place, "eventfd", None)
    }

    /// As [`EventfdSession::start`] for row `name`, with both sides on runtimes of `flavor`
    /// (`None`: blocking).
    pub fn start_as(
        place: &PlaceCtx,
        name: &str,
        flavor: Option<Flavor>,
    ) -> BenchResult<EventfdSession> {
        // No close-on-exec: the child inherits them and is told their numbers. Non-blocking
        // (a flag of the open file, so for both processes) where a runtime waits on them.
        let flags = match flavor {
            None => EventfdFlags::empty(),
            Some(_) => EventfdFlags::NONBLOCK,
        };
        let to_child = eventfd(0, flags)?;
        let to_parent = eventfd(0, flags)?;
        let fds = [to_child.as_raw_fd(), to_parent.as_raw_fd()];
        let child = ChildProc::spawn(place, name, &fds, None)?;
        let to_parent = match flavor {
            None => Answers::Blocking(to_parent),
            Some(f) => {
                let rt = runtime_of(f)?;
                let fd = {
                    let _in = rt.enter();
                    async_readable(to_parent)?
                };
                Answers::Runtime(rt, Arc::new(fd))
            }
        };
        Ok(EventfdSession {
            to_child: Arc::new(to_child),
            to_parent,
            child: Some(child),
        })
    }
}

/// Waits, through the runtime, until `fd` (non-blocking) holds a count, and takes it.
async fn take_async(fd: &AsyncFd<OwnedFd>) -> BenchResult<u64> {
    loop {
        let mut g = fd.readable().await?;
        let read = g.try_io(|fd| {
            let mut b = [0u8; 8];
            let n = rustix::io::read(fd.get_ref(), &mut b).map_err(std::io::Error::from)?;
            Ok((n, u64::from_ne_bytes(b)))
        });
        match read {
            Ok(Ok((8, v))) => {
                // The read emptied the counter: nothing is left to read until the next write,
                // which raises a new readiness edge. Clearing spares the next wait a read that
                // would fail with `WouldBlock` (transport-shm does not read at all).
                g.clear_ready();
                return Ok(v);
            }
            Ok(Ok((n, _))) => {
                return Err(BenchError::new(format!("eventfd read returned {n} bytes")));
            }
            Ok(Err(e)) => return Err(e.into()),
            // Would block: the readiness is cleared; wait again.
            Err(_) => continue,
        }
    }
}

impl Session for EventfdSession {
    fn rtt(&mut self, _size: usize, budget: &Budget) -> BenchResult<Vec<u64>> {
        let rx = match &self.to_parent {
            Answers::Blocking(fd) => fd,
            Answers::Runtime(rt, rx) => {
                let (tx, rx, budget) = (self.to_child.clone(), rx.clone(), *budget);
                return cross::drive(rt, async move {
                    let warm_end = Instant::now() + budget.warmup;
                    let end = warm_end + budget.measure;
                    let mut samples = Vec::with_capacity(4096);
                    loop {
                        budget.idle();
                        let t0 = Instant::now();
                        post(&*tx, 1)?;
                        let v = take_async(&rx).await?;
                        let t1 = Instant::now();
                        if v != 1 {
                            return Err(BenchError::new(format!("eventfd: peer posted {v}")));
                        }
                        if budget.record(&mut samples, t0, t1, warm_end, end) {
                            return Ok(samples);
                        }
                    }
                })?;
            }
        };
        let warm_end = Instant::now() + budget.warmup;
        let end = warm_end + budget.measure;
        let mut samples = Vec::with_capacity(4096);
        loop {
            budget.idle();
            let t0 = Instant::now();
            post(&*self.to_child, 1)?;
            let v = take(rx)?;
            let t1 = Instant::now();
            if v != 1 {
                return Err(BenchError::new(format!(
                    "eventfd: peer posted {v}, expected 1"
                )));
            }
            if budget.record(&mut samples, t0, t1, warm_end, end) {
                return Ok(samples);
            }
        }
    }

    fn stream(&mut self, _size: usize, _budget: &Budget) -> BenchResult<StreamOutcome> {
        Err(BenchError::new("eventfd has no stream mode"))
    }

    fn finish(&mut self) -> BenchResult<()> {
        post(&*self.to_child, QUIT)?;
        match self.child.take() {
            Some(c) => c.wait(Duration::from_secs(10)),
            None => Ok(()),
        }
    }
}

/// Peer side of the blocking row: answers each ping until told to quit.
pub fn child(args: &ChildArgs) -> BenchResult<()> {
    let (rx, tx) = inherited(args)?;
    loop {
        let v = take(&rx)?;
        if v >= QUIT {
            return Ok(());
        }
        post(&tx, v)?;
    }
}

/// Peer side of an `eventfd-rt` row: as [`child`], waiting through a runtime of `flavor`.
pub fn child_on(args: &ChildArgs, flavor: Flavor) -> BenchResult<()> {
    let (rx, tx) = inherited(args)?;
    let rt = runtime_of(flavor)?;
    cross::drive(&rt, async move {
        let rx = async_readable(rx)?;
        loop {
            let v = take_async(&rx).await?;
            if v >= QUIT {
                return Ok(());
            }
            post(&tx, v)?;
        }
    })?
}

/// The two eventfds the parent passed down: (its pings, our answers).
fn inherited(args: &ChildArgs) -> BenchResult<(OwnedFd, OwnedFd)> {
    let [rx, tx] = args.fds[..] else {
        return Err(BenchError::new("eventfd child needs two --fd"));
    };
    Ok((take_inherited_fd(rx)?, take_inherited_fd(tx)?))
}
