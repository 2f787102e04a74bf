//! Baseline `eventfd`: the cost of a kernel wake. Two processes, two blocking eventfds; each
//! side writes the other's eventfd and blocks reading its own. Only the 8-byte round trip
//! applies (an eventfd carries one 8-byte counter).
//!
//! Baselines `eventfd-rt` and `eventfd-rt-mt`: the same ping-pong written as a tokio user
//! writes it, on a current-thread / multi-thread runtime: non-blocking eventfds in `AsyncFd`,
//! each side writing the other's and awaiting its own readiness, then reading it (the
//! measurement runs where [`cross::drive`] runs every row's). The blocking row runs the same
//! loop inside a current-thread runtime's `block_on`, where it never waits on the runtime.
//!
//! Baseline `eventfd-spin`: the parent spins on a non-blocking eventfd for the answer (on one
//! CPU yielding the thread between tries, so that the peer runs) while the peer blocks reading
//! its own, so a round trip takes one kernel wake (the peer's) and no runtime. Its idle-gap
//! round trip is the reference for any transport that must wake a parked peer once: what the
//! kernel and the machine charge for that wake alone (a reference rather than a strict floor:
//! the parent's tries are system calls).

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

/// Reads the count of `fd` (an error of kind `WouldBlock` when a non-blocking one is at zero).
fn read_count(fd: impl AsFd) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    let n = rustix::io::read(fd, &mut b).map_err(std::io::Error::from)?;
    if n != 8 {
        return Err(std::io::Error::other(format!(
            "eventfd read returned {n} bytes"
        )));
    }
    Ok(u64::from_ne_bytes(b))
}

/// Where one side waits for the other's posts.
#[derive(Clone)]
enum Inbox {
    /// A blocking read (the `eventfd` row).
    Blocking(Arc<OwnedFd>),
    /// Through the reactor of the runtime it was registered with (`eventfd-rt` rows).
    Reactor(Arc<AsyncFd<OwnedFd>>),
    /// Non-blocking reads in a loop until one finds a count (the parent of `eventfd-spin`);
    /// with `yields`, the thread is yielded between them, so that a peer on the same CPU runs
    /// (across CPUs a yield per try costs the spinner a system call, and the vCPU's idle
    /// behaviour changes with it: there the loop only spins).
    Spinning { fd: Arc<OwnedFd>, yields: bool },
}

impl Inbox {
    /// Wraps `fd` for rows of `flavor` (`None`: blocking); inside that runtime for a flavour.
    fn new(fd: OwnedFd, flavor: Option<Flavor>) -> BenchResult<Inbox> {
        Ok(match flavor {
            None => Inbox::Blocking(Arc::new(fd)),
            Some(_) => Inbox::Reactor(Arc::new(async_readable(fd)?)),
        })
    }

    /// Waits until the other side posted, and takes the count.
    async fn take(&self) -> BenchResult<u64> {
        let fd = match self {
            Inbox::Blocking(fd) => return Ok(read_count(&**fd)?),
            Inbox::Spinning { fd, yields } => loop {
                match read_count(&**fd) {
                    Ok(v) => return Ok(v),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => match yields {
                        true => std::thread::yield_now(),
                        false => std::hint::spin_loop(),
                    },
                    Err(e) => return Err(e.into()),
                }
            },
            Inbox::Reactor(fd) => fd,
        };
        loop {
            let mut g = fd.readable().await?;
            match g.try_io(|fd| read_count(fd.get_ref())) {
                Ok(r) => {
                    // The read emptied the counter: nothing is left until the next write,
                    // which raises a new readiness edge. Clearing spares the next wait a read
                    // that would fail with `WouldBlock` (transport-shm does not read at all).
                    g.clear_ready();
                    return Ok(r?);
                }
                // Would block: the readiness is cleared; wait again.
                Err(_) => continue,
            }
        }
    }
}

/// Parent side of the `eventfd` rows.
pub struct EventfdSession {
    to_child: Arc<OwnedFd>,
    inbox: Inbox,
    rt: tokio::runtime::Runtime,
    child: Option<ChildProc>,
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
        Self::start_with(place, name, flavor, false)
    }

    /// The parent of the `eventfd-spin` row: it spins for the answer, the peer (the blocking
    /// row's) blocks.
    pub fn start_spinning(place: &PlaceCtx) -> BenchResult<EventfdSession> {
        Self::start_with(place, "eventfd-spin", None, true)
    }

    fn start_with(
        place: &PlaceCtx,
        name: &str,
        flavor: Option<Flavor>,
        parent_spins: bool,
    ) -> BenchResult<EventfdSession> {
        // No close-on-exec: the child inherits them and is told their numbers. Non-blocking
        // (a flag of the open file, so for both processes) where a runtime or the spinning
        // parent waits on them.
        let flags = match flavor {
            None => EventfdFlags::empty(),
            Some(_) => EventfdFlags::NONBLOCK,
        };
        let to_child = eventfd(0, flags)?;
        let to_parent = match parent_spins {
            true => eventfd(0, EventfdFlags::NONBLOCK)?,
            false => eventfd(0, flags)?,
        };
        let fds = [to_child.as_raw_fd(), to_parent.as_raw_fd()];
        let child = ChildProc::spawn(place, name, &fds, None)?;
        let rt = runtime_of(flavor.unwrap_or(Flavor::CurrentThread))?;
        let inbox = {
            let _in = rt.enter();
            match parent_spins {
                true => Inbox::Spinning {
                    fd: Arc::new(to_parent),
                    yields: place.same_cpu,
                },
                false => Inbox::new(to_parent, flavor)?,
            }
        };
        Ok(EventfdSession {
            to_child: Arc::new(to_child),
            inbox,
            rt,
            child: Some(child),
        })
    }
}

impl Session for EventfdSession {
    fn rtt(&mut self, _size: usize, budget: &Budget) -> BenchResult<Vec<u64>> {
        let (tx, rx, budget) = (self.to_child.clone(), self.inbox.clone(), *budget);
        cross::drive(&self.rt, async move {
            let warm_end = Instant::now() + budget.warmup;
            let end = warm_end + budget.measure;
            let mut samples = Vec::with_capacity(4096);
            loop {
                budget.idle();
                let t0 = Instant::now();
                post(&*tx, 1)?;
                let v = rx.take().await?;
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
        })?
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
    child_on(args, None)
}

/// Peer side of a row of `flavor` (`None`: blocking): as [`child`], waiting through a runtime of
/// that flavour.
pub fn child_on(args: &ChildArgs, flavor: Option<Flavor>) -> BenchResult<()> {
    let [rx, tx] = args.fds[..] else {
        return Err(BenchError::new("eventfd child needs two --fd"));
    };
    let (rx, tx) = (take_inherited_fd(rx)?, take_inherited_fd(tx)?);
    let rt = runtime_of(flavor.unwrap_or(Flavor::CurrentThread))?;
    cross::drive(&rt, async move {
        let rx = Inbox::new(rx, flavor)?;
        loop {
            let v = rx.take().await?;
            if v >= QUIT {
                return Ok(());
            }
            post(&tx, v)?;
        }
    })?
}
