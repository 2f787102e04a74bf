//! Peer baselines (feature `peers`): [iceoryx2](https://iceoryx.io) 0.10 publish-subscribe
//! between two processes, the peer being this binary re-executed like every other row.
//!
//! One service per direction (`a2b`: parent → peer, `b2a`: peer → parent), `[u8]` slices, one
//! publisher and one subscriber each, history 0, no safe overflow and the publisher's
//! `RetryUntilDelivered` backpressure (a stream never loses a message; a full subscriber
//! buffer makes the sender wait in iceoryx2's own adaptive wait). Each measured cell gets fresh
//! services sized for it: `initial_max_slice_len` is the payload size (iceoryx2's defaults do
//! not fit 1 MiB otherwise) and the subscriber buffer holds one message for round trips and a
//! ring's worth (up to 4 MiB, at most 1024 messages) for streams. Three flavours ([`Flavor`]):
//!
//! - `iox2-poll`: the receiver busy-polls `receive()`, as iceoryx2's own benchmark does (when
//!   both processes share a CPU it yields after a few polls, like `spin`); the sender copies
//!   the payload into the loaned sample and the receiver reads every byte (stream: checksum;
//!   rtt: the responder copies the received payload into its answer);
//! - `iox2-poll-zc`: the same, zero-copy: the sender writes only the sequence number into the
//!   loaned sample and the receiver reads only that;
//! - `iox2-event`: as `iox2-poll`, but each message is followed by an iceoryx2 `event`
//!   notification and the receiver blocks in `Listener::blocking_wait` when no sample is
//!   there (the blocking, kernel-wake variant).
//!
//! Commands (which cell to set up, its end, quit) and the stream tally travel over two pipes,
//! outside the measured path; the end of a phase is a message carrying [`END`] as its sequence
//! number.

use super::cli::ChildArgs;
use super::generic::StreamOutcome;
use super::procs::{ChildProc, PlaceCtx};
use super::proto::{Budget, Deadline, MAX_SIZE, Pattern, Tally, check, read_seq, stamp};
use super::session::Session;
use super::shmem::take_inherited_fd;
use super::spin::Spinner;
use super::{BenchError, BenchResult};
use iceoryx2::port::listener::Listener;
use iceoryx2::port::notifier::Notifier;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;
use iceoryx2::sample::Sample;
use rustix::fd::{AsRawFd, OwnedFd};
use std::fmt::Debug;
use std::fs::File;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// The `peer` field of the records of these rows.
pub const PEER: &str = "iceoryx2";

/// Sequence number marking the end of a phase.
pub const END: u64 = u64::MAX;

type Svc = ipc::Service;
type Pub = Publisher<Svc, [u8], ()>;
type Sub = Subscriber<Svc, [u8], ()>;

const CMD_RTT: u64 = 1;
const CMD_STREAM: u64 = 2;
const CMD_QUIT: u64 = 3;
const REPLY_READY: u64 = 0x5EAD;
const REPLY_DONE: u64 = 0xD0E;

/// Bytes of the stream subscriber buffer (as the `spin` ring), and its bounds in messages.
const RING_BYTES: usize = 4 * MAX_SIZE;

/// Which iceoryx2 variant a row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Busy-polling receive; payload copied in and fully read.
    Poll,
    /// Busy-polling receive; zero-copy loans carrying only the sequence number.
    PollZc,
    /// Event notification per message, blocking wait; payload copied in and fully read.
    Event,
}

impl Flavor {
    /// The row name.
    pub fn row(self) -> &'static str {
        match self {
            Flavor::Poll => "iox2-poll",
            Flavor::PollZc => "iox2-poll-zc",
            Flavor::Event => "iox2-event",
        }
    }

    fn zero_copy(self) -> bool {
        self == Flavor::PollZc
    }

    fn events(self) -> bool {
        self == Flavor::Event
    }
}

fn err<E: Debug>(what: &'static str) -> impl FnOnce(E) -> BenchError {
    move |e| BenchError::new(format!("iceoryx2: {what}: {e:?}"))
}

/// The node of this process: no signal handlers (the benchmark owns the process), errors only
/// in the log.
fn node() -> BenchResult<Node<Svc>> {
    set_log_level(LogLevel::Error);
    NodeBuilder::new()
        .signal_handling_mode(SignalHandlingMode::Disabled)
        .create::<Svc>()
        .map_err(err("cannot create a node"))
}

/// Subscriber buffer (messages) of a cell.
fn depth(stream: bool, size: usize) -> usize {
    if stream {
        (RING_BYTES / size.max(1)).clamp(4, 1024)
    } else {
        1
    }
}

/// The ports of one side of one cell; dropped (ports first) when the cell is over, which
/// removes the services once both sides have let go.
struct Ports {
    tx: Option<Pub>,
    notifier: Option<Notifier<Svc>>,
    rx: Option<Sub>,
    listener: Option<Listener<Svc>>,
}

/// What a side sets up for a cell.
struct CellSpec<'a> {
    node: &'a Node<Svc>,
    /// Service name prefix, unique per cell and run.
    base: String,
    flavor: Flavor,
    size: usize,
    stream: bool,
    /// The parent creates the services; the peer opens them.
    parent: bool,
}

impl CellSpec<'_> {
    fn name(&self, suffix: &str) -> BenchResult<ServiceName> {
        ServiceName::new(&format!("{}/{suffix}", self.base)).map_err(err("bad service name"))
    }

    fn pubsub(
        &self,
        dir: &str,
    ) -> BenchResult<iceoryx2::service::port_factory::publish_subscribe::PortFactory<Svc, [u8], ()>>
    {
        let b = self
            .node
            .service_builder(&self.name(dir)?)
            .publish_subscribe::<[u8]>()
            .max_publishers(1)
            .max_subscribers(1)
            .history_size(0)
            .subscriber_max_buffer_size(depth(self.stream, self.size))
            .enable_safe_overflow(false);
        if self.parent {
            b.create().map_err(err("cannot create a service"))
        } else {
            b.open().map_err(err("cannot open a service"))
        }
    }

    fn event(
        &self,
        dir: &str,
    ) -> BenchResult<iceoryx2::service::port_factory::event::PortFactory<Svc>> {
        let b = self
            .node
            .service_builder(&self.name(&format!("{dir}-ev"))?)
            .event()
            .max_notifiers(1)
            .max_listeners(1);
        if self.parent {
            b.create().map_err(err("cannot create an event service"))
        } else {
            b.open().map_err(err("cannot open an event service"))
        }
    }

    /// Creates (parent) or opens (peer) the services of the cell and this side's ports: `a2b`
    /// (the parent publishes, the peer subscribes) and, for round trips, `b2a` (the other way
    /// round). The parent creates every service before the peer opens any.
    fn ports(&self) -> BenchResult<Ports> {
        let mut ports = Ports {
            tx: None,
            notifier: None,
            rx: None,
            listener: None,
        };
        let dirs: &[&str] = if self.stream {
            &["a2b"]
        } else {
            &["a2b", "b2a"]
        };
        for &dir in dirs {
            let ps = self.pubsub(dir)?;
            let ev = if self.flavor.events() {
                Some(self.event(dir)?)
            } else {
                None
            };
            if (dir == "a2b") == self.parent {
                ports.tx = Some(
                    ps.publisher_builder()
                        .initial_max_slice_len(self.size)
                        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
                        .create()
                        .map_err(err("cannot create a publisher"))?,
                );
                if let Some(ev) = ev {
                    ports.notifier = Some(
                        ev.notifier_builder()
                            .create()
                            .map_err(err("cannot create a notifier"))?,
                    );
                }
            } else {
                ports.rx = Some(
                    ps.subscriber_builder()
                        .buffer_size(depth(self.stream, self.size))
                        .create()
                        .map_err(err("cannot create a subscriber"))?,
                );
                if let Some(ev) = ev {
                    ports.listener = Some(
                        ev.listener_builder()
                            .create()
                            .map_err(err("cannot create a listener"))?,
                    );
                }
            }
        }
        Ok(ports)
    }
}

impl Ports {
    fn tx(&self) -> BenchResult<&Pub> {
        self.tx
            .as_ref()
            .ok_or_else(|| BenchError::new("iceoryx2: no publisher on this side"))
    }

    fn rx(&self) -> BenchResult<&Sub> {
        self.rx
            .as_ref()
            .ok_or_else(|| BenchError::new("iceoryx2: no subscriber on this side"))
    }

    /// Sends a `size`-byte message stamped with `seq`: the pattern copied in and stamped
    /// ([`stamp`]), or with `zero_copy` only the sequence number written into the loan.
    fn send(&self, flavor: Flavor, pattern: &Pattern, size: usize, seq: u64) -> BenchResult<()> {
        let tx = self.tx()?;
        let loan = tx
            .loan_slice_uninit(size)
            .map_err(err("cannot loan a sample"))?;
        if flavor.zero_copy() {
            send_seq_only(loan, seq)?;
        } else {
            let mut sample = loan.write_from_slice(pattern.bytes(size));
            stamp(sample.payload_mut(), seq);
            sample.send().map_err(err("cannot send"))?;
        }
        self.notify()
    }

    /// Answers a round-trip message: copies its payload into a new loan (zero-copy: writes its
    /// sequence number only).
    fn echo(&self, flavor: Flavor, got: &[u8]) -> BenchResult<()> {
        let tx = self.tx()?;
        let loan = tx
            .loan_slice_uninit(got.len())
            .map_err(err("cannot loan a sample"))?;
        if flavor.zero_copy() {
            send_seq_only(loan, read_seq(got).unwrap_or(0))?;
        } else {
            loan.write_from_slice(got)
                .send()
                .map_err(err("cannot send"))?;
        }
        self.notify()
    }

    fn notify(&self) -> BenchResult<()> {
        if let Some(n) = &self.notifier {
            n.notify().map_err(err("cannot notify"))?;
        }
        Ok(())
    }

    /// Waits for the next message: busy-polls `receive()` (through `sp`), or with a listener
    /// blocks in `blocking_wait` whenever no sample is there.
    fn wait<F: FnMut() -> BenchResult<()>>(
        &self,
        sp: &mut Spinner<F>,
    ) -> BenchResult<Sample<Svc, [u8], ()>> {
        let rx = self.rx()?;
        sp.reset();
        loop {
            if let Some(s) = rx.receive().map_err(err("cannot receive"))? {
                return Ok(s);
            }
            match &self.listener {
                Some(l) => {
                    l.blocking_wait(|_| {})
                        .map_err(err("cannot wait for an event"))?;
                }
                None => sp.pause()?,
            }
        }
    }
}

/// Writes `seq` into the first 8 bytes of a loaned slice and sends it, leaving the other bytes
/// as they are in the shared segment (zero-copy rows).
fn send_seq_only(
    mut loan: iceoryx2::sample_mut_uninit::SampleMutUninit<Svc, [std::mem::MaybeUninit<u8>], ()>,
    seq: u64,
) -> BenchResult<()> {
    for (dst, b) in loan.payload_mut().iter_mut().zip(seq.to_le_bytes()) {
        dst.write(b);
    }
    // SAFETY: the slice lies in iceoryx2's data segment, a shared-memory mapping: its bytes
    // are kernel-zeroed pages or bytes written by earlier messages, never uninitialised
    // compiler memory, and every bit pattern is a valid `u8`. Leaving them unwritten is the
    // point of the zero-copy row (iceoryx2's own benchmark sends loans the same way).
    let sample = unsafe { loan.assume_init() };
    sample.send().map_err(err("cannot send"))?;
    Ok(())
}

fn msg_write(f: &mut File, words: [u64; 4]) -> BenchResult<()> {
    let mut b = [0u8; 32];
    for (i, w) in words.into_iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    f.write_all(&b)?;
    Ok(())
}

fn msg_read(f: &mut File) -> BenchResult<[u64; 4]> {
    let mut b = [0u8; 32];
    f.read_exact(&mut b)
        .map_err(|e| BenchError::new(format!("control pipe: {e}")))?;
    let mut w = [0u64; 4];
    for (i, x) in w.iter_mut().enumerate() {
        *x = read_seq(&b[i * 8..]).unwrap_or(0);
    }
    Ok(w)
}

/// A pipe whose read end is `.0` and write end `.1`, neither closed on exec.
fn pipe() -> BenchResult<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::empty())?)
}

fn cloexec(fd: OwnedFd) -> BenchResult<File> {
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
    Ok(File::from(fd))
}

/// Parent side of an `iox2-*` row.
pub struct Iox2Session {
    flavor: Flavor,
    node: Node<Svc>,
    to_child: File,
    from_child: File,
    child: Option<ChildProc>,
    pattern: Pattern,
    same_cpu: bool,
    cell: u64,
}

impl Iox2Session {
    /// Creates the node and the control pipes and starts the peer process.
    pub fn start(place: &PlaceCtx, flavor: Flavor) -> BenchResult<Iox2Session> {
        let node = node()?;
        let (cmd_r, cmd_w) = pipe()?;
        let (rep_r, rep_w) = pipe()?;
        let child = ChildProc::spawn(
            place,
            flavor.row(),
            &[cmd_r.as_raw_fd(), rep_w.as_raw_fd()],
            None,
        )?;
        // The peer's ends are its own now: closing ours makes a dead peer read as EOF.
        drop((cmd_r, rep_w));
        Ok(Iox2Session {
            flavor,
            node,
            to_child: cloexec(cmd_w)?,
            from_child: cloexec(rep_r)?,
            child: Some(child),
            pattern: Pattern::new(MAX_SIZE),
            same_cpu: place.same_cpu,
            cell: 0,
        })
    }

    /// Sets up a cell: services and our ports, then the peer's, acknowledged.
    fn setup(&mut self, size: usize, stream: bool) -> BenchResult<Ports> {
        self.cell += 1;
        let spec = CellSpec {
            node: &self.node,
            base: base_name(std::process::id(), self.flavor, self.cell),
            flavor: self.flavor,
            size,
            stream,
            parent: true,
        };
        let ports = spec.ports()?;
        let kind = if stream { CMD_STREAM } else { CMD_RTT };
        msg_write(&mut self.to_child, [kind, size as u64, self.cell, 0])?;
        match msg_read(&mut self.from_child)? {
            [REPLY_READY, ..] => Ok(ports),
            w => Err(BenchError::new(format!(
                "iceoryx2 peer: expected ready, got {w:?}"
            ))),
        }
    }
}

fn base_name(parent_pid: u32, flavor: Flavor, cell: u64) -> String {
    format!("transport-bench/{parent_pid}/{}/{cell}", flavor.row())
}

impl Session for Iox2Session {
    fn rtt(&mut self, size: usize, budget: &Budget) -> BenchResult<Vec<u64>> {
        let ports = self.setup(size, false)?;
        let Iox2Session {
            flavor,
            child,
            pattern,
            same_cpu,
            ..
        } = self;
        let flavor = *flavor;
        let mut sp = Spinner::new(*same_cpu, || match child {
            Some(c) => c.check_alive(),
            None => Err(BenchError::new("the iceoryx2 peer is gone")),
        });
        let warm_end = Instant::now() + budget.warmup;
        let end = warm_end + budget.measure;
        let mut samples = Vec::with_capacity(4096);
        let mut seq = 0u64;
        loop {
            seq += 1;
            budget.idle();
            let t0 = Instant::now();
            ports.send(flavor, pattern, size, seq)?;
            let echo = ports.wait(&mut sp)?;
            let b = echo.payload();
            let ok = b.len() == size
                && if flavor.zero_copy() {
                    read_seq(b) == Some(seq)
                } else {
                    check(b, seq)
                };
            drop(echo);
            let t1 = Instant::now();
            if !ok {
                return Err(BenchError::new(format!(
                    "iceoryx2 rtt: bad echo for ping {seq}"
                )));
            }
            if budget.record(&mut samples, t0, t1, warm_end, end) {
                break;
            }
        }
        ports.send(flavor, pattern, size, END)?;
        match msg_read(&mut self.from_child)? {
            [REPLY_DONE, ..] => Ok(samples),
            w => Err(BenchError::new(format!(
                "iceoryx2 peer: expected done, got {w:?}"
            ))),
        }
    }

    fn stream(&mut self, size: usize, budget: &Budget) -> BenchResult<StreamOutcome> {
        let ports = self.setup(size, true)?;
        let deadline = Deadline::new(budget, size);
        let start = Instant::now();
        let mut sent = 0u64;
        while !deadline.reached(sent) {
            sent += 1;
            ports.send(self.flavor, &self.pattern, size, sent)?;
        }
        ports.send(self.flavor, &self.pattern, size, END)?;
        let [count, bytes, errors, checksum] = msg_read(&mut self.from_child)?;
        let elapsed = start.elapsed();
        drop(ports);
        let tally = Tally {
            count,
            bytes,
            errors,
            checksum,
        };
        tally.verify(sent, size)?;
        Ok(StreamOutcome {
            msgs: sent,
            bytes,
            elapsed,
        })
    }

    fn finish(&mut self) -> BenchResult<()> {
        msg_write(&mut self.to_child, [CMD_QUIT, 0, 0, 0])?;
        match self.child.take() {
            Some(c) => c.wait(Duration::from_secs(10)),
            None => Ok(()),
        }
    }
}

/// Peer side of an `iox2-*` row: obeys the parent's commands until quit.
pub fn child(args: &ChildArgs, flavor: Flavor) -> BenchResult<()> {
    let [cmd, rep] = args.fds[..] else {
        return Err(BenchError::new("iceoryx2 child needs two --fd"));
    };
    let mut from_parent = File::from(take_inherited_fd(cmd)?);
    let mut to_parent = File::from(take_inherited_fd(rep)?);
    let node = node()?;
    let ppid = args.ppid;
    let mut sp = Spinner::new(args.same_cpu, move || match rustix::process::getppid() {
        Some(p) if p.as_raw_nonzero().get() as u32 == ppid => Ok(()),
        _ => Err(BenchError::new("the parent is gone")),
    });
    loop {
        let [kind, size, cell, _] = msg_read(&mut from_parent)?;
        let size = size as usize;
        if kind == CMD_QUIT {
            return Ok(());
        }
        if !(8..=MAX_SIZE).contains(&size) {
            return Err(BenchError::new(format!("iceoryx2: bad size {size}")));
        }
        let stream = match kind {
            CMD_RTT => false,
            CMD_STREAM => true,
            k => return Err(BenchError::new(format!("iceoryx2: bad command {k}"))),
        };
        let spec = CellSpec {
            node: &node,
            base: base_name(ppid, flavor, cell),
            flavor,
            size,
            stream,
            parent: false,
        };
        let ports = spec.ports()?;
        msg_write(&mut to_parent, [REPLY_READY, 0, 0, 0])?;
        if stream {
            let mut tally = Tally::default();
            loop {
                let s = ports.wait(&mut sp)?;
                let b = s.payload();
                let seq = read_seq(b);
                if seq == Some(END) {
                    break;
                }
                if flavor.zero_copy() {
                    tally.take_seq(seq, b.len());
                } else {
                    tally.take(b);
                }
            }
            drop(ports);
            msg_write(
                &mut to_parent,
                [tally.count, tally.bytes, tally.errors, tally.checksum],
            )?;
        } else {
            loop {
                let s = ports.wait(&mut sp)?;
                if read_seq(s.payload()) == Some(END) {
                    break;
                }
                ports.echo(flavor, s.payload())?;
            }
            drop(ports);
            msg_write(&mut to_parent, [REPLY_DONE, 0, 0, 0])?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_carry_stamped_messages() {
        let node = node().expect("node");
        let pattern = Pattern::new(4096);
        let size = 1024;
        for flavor in [Flavor::Poll, Flavor::PollZc, Flavor::Event] {
            for stream in [false, true] {
                let base = format!(
                    "transport-bench-test/{}/{}/{stream}",
                    std::process::id(),
                    flavor.row()
                );
                let spec = |parent| CellSpec {
                    node: &node,
                    base: base.clone(),
                    flavor,
                    size,
                    stream,
                    parent,
                };
                let a = spec(true).ports().expect("parent ports");
                let b = spec(false).ports().expect("peer ports");
                let mut sp = Spinner::new(false, || Ok(()));
                a.send(flavor, &pattern, size, 7).expect("send");
                let s = b.wait(&mut sp).expect("receive");
                assert_eq!(s.payload().len(), size);
                assert_eq!(read_seq(s.payload()), Some(7));
                assert_eq!(check(s.payload(), 7), !flavor.zero_copy());
                if stream {
                    assert!(b.tx.is_none() && a.rx.is_none());
                } else {
                    b.echo(flavor, s.payload()).expect("echo");
                    drop(s);
                    let e = a.wait(&mut sp).expect("echo received");
                    assert_eq!(read_seq(e.payload()), Some(7));
                }
            }
        }
        assert_eq!(depth(false, 8), 1);
        assert_eq!(depth(true, 8), 1024);
        assert_eq!(depth(true, MAX_SIZE), 4);
    }
}
