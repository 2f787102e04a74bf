//! Baseline `eventfd`: the cost of a kernel wake. Two processes, two blocking eventfds; each
//! side writes the other's eventfd and blocks reading its own. Only the 8-byte round trip
//! applies (an eventfd carries one 8-byte counter).

use super::cli::ChildArgs;
use super::generic::StreamOutcome;
use super::procs::{ChildProc, PlaceCtx};
use super::proto::Budget;
use super::session::Session;
use super::shmem::take_inherited_fd;
use super::{BenchError, BenchResult};
use rustix::event::{EventfdFlags, eventfd};
use rustix::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

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

/// Parent side of the `eventfd` row.
pub struct EventfdSession {
    to_child: OwnedFd,
    to_parent: OwnedFd,
    child: Option<ChildProc>,
}

impl EventfdSession {
    /// Creates the two eventfds (inherited by the child) and starts the peer.
    pub fn start(place: &PlaceCtx) -> BenchResult<EventfdSession> {
        // No close-on-exec: the child inherits them and is told their numbers.
        let to_child = eventfd(0, EventfdFlags::empty())?;
        let to_parent = eventfd(0, EventfdFlags::empty())?;
        let fds = [to_child.as_raw_fd(), to_parent.as_raw_fd()];
        let child = ChildProc::spawn(place, "eventfd", &fds, None)?;
        Ok(EventfdSession {
            to_child,
            to_parent,
            child: Some(child),
        })
    }
}

impl Session for EventfdSession {
    fn rtt(&mut self, _size: usize, budget: &Budget) -> BenchResult<Vec<u64>> {
        let warm_end = Instant::now() + budget.warmup;
        let end = warm_end + budget.measure;
        let mut samples = Vec::with_capacity(4096);
        loop {
            budget.idle();
            let t0 = Instant::now();
            post(&self.to_child, 1)?;
            let v = take(&self.to_parent)?;
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
        post(&self.to_child, QUIT)?;
        match self.child.take() {
            Some(c) => c.wait(Duration::from_secs(10)),
            None => Ok(()),
        }
    }
}

/// Peer side: answers each ping until told to quit.
pub fn child(args: &ChildArgs) -> BenchResult<()> {
    let [rx, tx] = args.fds[..] else {
        return Err(BenchError::new("eventfd child needs two --fd"));
    };
    let rx = take_inherited_fd(rx)?;
    let tx = take_inherited_fd(tx)?;
    loop {
        let v = take(&rx)?;
        if v >= QUIT {
            return Ok(());
        }
        post(&tx, v)?;
    }
}
