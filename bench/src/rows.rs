//! The rows of the table and the driver that measures them.
//!
//! # Adding a backend
//! A `Transport` backend between two processes is one [`Row`] entry in [`ROWS`]:
//! ```text
//! Row {
//!     name: "shm",
//!     about: "transport-shm between two processes",
//!     rtt_sizes: &SIZES,
//!     stream_sizes: &SIZES,
//!     gaps: true,  // also the idle-gap round trips (rtt-gap10us, rtt-gap100us, rtt-gap1ms)
//!     peer: None,  // or Some("library") for a peer library's row
//!     start: |p| Ok(Box::new(cross::parent(p, "shm", |path| async move {
//!         /* bind a listener at `path`, accept one peer, return the Transport */
//!     })?)),
//!     child: Some(|a| cross::child(a, |path| async move { /* connect to `path` */ })),
//!     costs: &[], // one-off costs (`attach`, `death`, `reclaim`), see `Session::cost`
//! },
//! ```
//! An in-process backend uses [`inproc::start`] with both ends and `child: None` (see `mem`).
//! Rows named `spin` and `unix` are the baselines the ratios divide by. Rows of peer libraries
//! (`iox2-*`, feature `peers`) come from the `iox2` module.

use super::cli::ChildArgs;
use super::cross::Flavor;
#[cfg(feature = "peers")]
use super::iox2;
use super::procs::PlaceCtx;
use super::proto::SIZES;
use super::report::Mode;
use super::senders::{Family, Framing, ManySenders};
pub use super::session::Session;
use super::unix_transport::UnixFramed;
use super::{BenchResult, codec, cross, eventfd, hub, inproc, spin, unix};
use std::time::Duration;

/// Starts the parent side of a row (and its peer).
pub type StartFn = fn(&PlaceCtx) -> BenchResult<Box<dyn Session>>;
/// Runs the peer side of a row in the child process.
pub type ChildFn = fn(&ChildArgs) -> BenchResult<()>;

/// One backend or baseline.
pub struct Row {
    /// Name in the table, in JSON, in `--only` and in `--child`.
    pub name: &'static str,
    /// One line of description.
    pub about: &'static str,
    /// Sizes measured in rtt mode.
    pub rtt_sizes: &'static [usize],
    /// Sizes measured in stream mode.
    pub stream_sizes: &'static [usize],
    /// Also measure the idle-gap round trips ([`GAPS`](crate::proto::GAPS),
    /// [`GAP_SIZE`](crate::proto::GAP_SIZE) payloads).
    pub gaps: bool,
    /// The peer library the row measures (`None`: this workspace or a baseline written here).
    pub peer: Option<&'static str>,
    /// Parent side.
    pub start: StartFn,
    /// Peer side when the peer is a process (`None` for in-process rows).
    pub child: Option<ChildFn>,
    /// One-off costs measured after the rest ([`Session::cost`]), one record per mode.
    pub costs: &'static [Mode],
}

/// Every row, in the order they run and appear.
pub const ROWS: &[Row] = &[
    Row {
        name: "spin",
        about: "shared-memory spin ping-pong / SPSC ring, two processes (lower bound)",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: false,
        peer: None,
        start: |p| Ok(Box::new(spin::SpinSession::start(p)?)),
        child: Some(spin::child),
        costs: &[],
    },
    Row {
        name: "eventfd",
        about: "blocking eventfd ping-pong, two processes (one kernel wake each way)",
        rtt_sizes: &[8],
        stream_sizes: &[],
        gaps: true,
        peer: None,
        start: |p| Ok(Box::new(eventfd::EventfdSession::start(p)?)),
        child: Some(eventfd::child),
        costs: &[],
    },
    Row {
        name: "eventfd-spin",
        about: "eventfd, the parent spinning for the answer: one kernel wake per round trip",
        rtt_sizes: &[8],
        stream_sizes: &[],
        gaps: true,
        peer: None,
        start: |p| Ok(Box::new(eventfd::EventfdSession::start_spinning(p)?)),
        child: Some(eventfd::child),
        costs: &[],
    },
    eventfd_rt(
        "eventfd-rt",
        "eventfd ping-pong through tokio AsyncFd, current-thread runtimes, two processes",
        CT,
    ),
    eventfd_rt(
        "eventfd-rt-mt",
        "eventfd ping-pong through tokio AsyncFd, multi-thread runtimes, two processes",
        MT,
    ),
    Row {
        name: "unix",
        about: "tokio UnixStream, length-prefixed frames, two processes",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: true,
        peer: None,
        start: |p| Ok(Box::new(unix::UnixSession::start(p)?)),
        child: Some(unix::child),
        costs: &[],
    },
    Row {
        name: "unix-mt",
        about: "tokio UnixStream as `unix`, both sides on multi-thread runtimes",
        rtt_sizes: &[8],
        stream_sizes: &[],
        gaps: true,
        peer: None,
        start: |p| Ok(Box::new(unix::UnixSession::start_on(p, "unix-mt", MT)?)),
        child: Some(|a| unix::child_on(a, MT)),
        costs: &[],
    },
    Row {
        name: "unix-t",
        about: "the Transport trait over a Unix socket (bench-only adapter), two processes",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: false,
        peer: None,
        start: |p| {
            Ok(Box::new(cross::parent(p, "unix-t", |path| async move {
                UnixFramed::accept_one(&path).await
            })?))
        },
        child: Some(|a| cross::child(a, |path| async move { UnixFramed::connect(&path).await })),
        costs: &[],
    },
    Row {
        name: "tcp-codec",
        about: "tokio TcpStream + tokio_util LengthDelimitedCodec by hand, two processes \
                (baseline of `tcp`)",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: false,
        peer: None,
        start: |p| Ok(Box::new(codec::start_tcp(p)?)),
        child: Some(codec::tcp_child),
        costs: &[],
    },
    Row {
        name: "unix-codec",
        about: "tokio UnixStream + tokio_util LengthDelimitedCodec by hand, two processes \
                (baseline of `unix-net`)",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: false,
        peer: None,
        start: |p| Ok(Box::new(codec::start_unix(p)?)),
        child: Some(codec::unix_child),
        costs: &[],
    },
    Row {
        name: "tcp",
        about: "transport-net tcp:// over loopback, two processes",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: false,
        peer: None,
        start: |p| {
            Ok(Box::new(cross::parent(p, "tcp", |path| async move {
                let config = transport_net::NetConfig::default();
                let l = transport_net::NetListener::bind_tcp("127.0.0.1:0", config).await?;
                codec::publish(&path, &l.local_address())
                    .map_err(|e| transport_api::TransportError::Config(e.to_string()))?;
                l.accept().await
            })?))
        },
        child: Some(|a| {
            cross::child(a, |path| async move {
                let addr = std::fs::read_to_string(&path)?;
                transport_net::connect_tcp(addr.trim(), &transport_net::NetConfig::default()).await
            })
        }),
        costs: &[],
    },
    Row {
        name: "unix-net",
        about: "transport-net unix:// (stream socket), two processes",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: false,
        peer: None,
        start: |p| {
            Ok(Box::new(cross::parent(p, "unix-net", |path| async move {
                let config = transport_net::NetConfig::default();
                transport_net::NetListener::bind_unix(&path, config)?
                    .accept()
                    .await
            })?))
        },
        child: Some(|a| {
            cross::child(a, |path| async move {
                transport_net::connect_unix(&path, &transport_net::NetConfig::default()).await
            })
        }),
        costs: &[],
    },
    many_senders(
        "tcp-4tx",
        "transport-net tcp://, 4 tasks sending on one connection (one process)",
        Family::Tcp,
        Framing::Net,
    ),
    many_senders(
        "tcp-codec-4tx",
        "tcp-codec shared by 4 sending tasks behind a tokio Mutex (baseline of `tcp-4tx`)",
        Family::Tcp,
        Framing::Codec,
    ),
    many_senders(
        "unix-net-4tx",
        "transport-net unix://, 4 tasks sending on one connection (one process)",
        Family::Unix,
        Framing::Net,
    ),
    many_senders(
        "unix-codec-4tx",
        "unix-codec shared by 4 sending tasks behind a tokio Mutex (baseline of `unix-net-4tx`)",
        Family::Unix,
        Framing::Codec,
    ),
    Row {
        name: "mem",
        about: "transport-mem, two pinned threads of one process",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: false,
        peer: None,
        start: |p| {
            let (a, b) = transport_mem::pair(transport_mem::MemConfig::default());
            Ok(Box::new(inproc::start(p, "mem", a, b)?))
        },
        child: None,
        costs: &[],
    },
    Row {
        name: "shm",
        about: "transport-shm, two processes through a rendezvous path",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: true,
        peer: None,
        start: |p| {
            let config = transport_shm::ShmConfig::default();
            Ok(Box::new(cross::parent(p, "shm", |path| async move {
                let listener = transport_shm::ShmListener::bind(&path, config)?;
                listener.accept().await
            })?))
        },
        child: Some(shm_child),
        costs: &[],
    },
    Row {
        name: "shm-ro",
        about: "transport-shm with `read_only_payloads` on both sides (the peer's slots mapped \
                read-only), two processes",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: false,
        peer: None,
        start: |p| {
            let config = transport_shm::ShmConfig {
                read_only_payloads: true,
                ..transport_shm::ShmConfig::default()
            };
            Ok(Box::new(cross::parent(p, "shm-ro", |path| async move {
                let listener = transport_shm::ShmListener::bind(&path, config)?;
                listener.accept().await
            })?))
        },
        child: Some(|a| {
            cross::child(a, |path| async move {
                let config = transport_shm::ShmConfig {
                    read_only_payloads: true,
                    ..transport_shm::ShmConfig::default()
                };
                transport_shm::connect_config(&path, &config).await
            })
        }),
        costs: &[],
    },
    Row {
        name: "shm-park",
        about: "transport-shm with no spin on either side (always parked), current-thread runtimes",
        rtt_sizes: &[8],
        stream_sizes: &[],
        gaps: true,
        peer: None,
        start: |p| shm_start(p, "shm-park", Duration::ZERO, CT),
        child: Some(|a| shm_child_on(a, Duration::ZERO, CT)),
        costs: &[],
    },
    Row {
        name: "shm-mt",
        about: "transport-shm with the default spin, multi-thread runtimes",
        rtt_sizes: &[8],
        stream_sizes: &[],
        gaps: true,
        peer: None,
        start: |p| shm_start(p, "shm-mt", DEFAULT_SPIN, MT),
        child: Some(|a| shm_child_on(a, DEFAULT_SPIN, MT)),
        costs: &[],
    },
    Row {
        name: "shm-park-mt",
        about: "transport-shm with no spin on either side (always parked), multi-thread runtimes",
        rtt_sizes: &[8],
        stream_sizes: &[],
        gaps: true,
        peer: None,
        start: |p| shm_start(p, "shm-park-mt", Duration::ZERO, MT),
        child: Some(|a| shm_child_on(a, Duration::ZERO, MT)),
        costs: &[],
    },
    Row {
        name: "hub",
        about: "transport-shm hub: host (HubHost, 16 regions) <-> one peer process, host receives \
                through the peer's session",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: true,
        peer: None,
        start: |p| Ok(Box::new(hub::start_pair(p, "hub", false)?)),
        child: Some(hub::pair_child),
        costs: &[],
    },
    Row {
        name: "hub-any",
        about: "transport-shm hub: host <-> one peer process, host receives through recv_any",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: true,
        peer: None,
        start: |p| Ok(Box::new(hub::start_pair(p, "hub-any", true)?)),
        child: Some(hub::pair_child),
        costs: &[],
    },
    Row {
        name: "shm-zc",
        about: "transport-shm, zero-copy stream: alloc'd buffer filled in place (sequence number)",
        rtt_sizes: &[],
        stream_sizes: &SIZES,
        gaps: false,
        peer: None,
        start: |p| {
            let config = transport_shm::ShmConfig::default();
            let session = cross::parent(p, "shm-zc", |path| async move {
                let listener = transport_shm::ShmListener::bind(&path, config)?;
                listener.accept().await
            })?;
            Ok(Box::new(session.zero_copy()))
        },
        child: Some(shm_child),
        costs: &[],
    },
    Row {
        name: "hub-fanin-1",
        about: "transport-shm hub: 1 peer process streaming to the host (recv_any)",
        rtt_sizes: &[],
        stream_sizes: &FANIN_SIZES,
        gaps: false,
        peer: None,
        start: |p| Ok(Box::new(hub::FaninSession::start(p, "hub-fanin-1", 1)?)),
        child: Some(hub::fanin_child),
        costs: &[],
    },
    Row {
        name: "hub-fanin-4",
        about: "transport-shm hub: 4 peer processes streaming to the host (recv_any)",
        rtt_sizes: &[],
        stream_sizes: &FANIN_SIZES,
        gaps: false,
        peer: None,
        start: |p| Ok(Box::new(hub::FaninSession::start(p, "hub-fanin-4", 4)?)),
        child: Some(hub::fanin_child),
        costs: &[],
    },
    Row {
        name: "hub-fanin-16",
        about: "transport-shm hub: 16 peer processes streaming to the host (recv_any)",
        rtt_sizes: &[],
        stream_sizes: &FANIN_SIZES,
        gaps: false,
        peer: None,
        start: |p| Ok(Box::new(hub::FaninSession::start(p, "hub-fanin-16", 16)?)),
        child: Some(hub::fanin_child),
        costs: &[],
    },
    Row {
        name: "hub-attach",
        about: "transport-shm hub: cost of a peer attach, of noticing its death and reclaiming \
                its region",
        rtt_sizes: &[],
        stream_sizes: &[],
        gaps: false,
        peer: None,
        start: |p| Ok(Box::new(hub::AttachSession::start(p, "hub-attach")?)),
        child: Some(hub::attach_child),
        costs: &[Mode::Attach, Mode::Death, Mode::Reclaim],
    },
    #[cfg(feature = "peers")]
    Row {
        name: "iox2-poll",
        about: "iceoryx2 publish-subscribe, busy-polling receive, payload copied in and read",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: true,
        peer: Some(iox2::PEER),
        start: |p| Ok(Box::new(iox2::Iox2Session::start(p, iox2::Flavor::Poll)?)),
        child: Some(|a| iox2::child(a, iox2::Flavor::Poll)),
        costs: &[],
    },
    #[cfg(feature = "peers")]
    Row {
        name: "iox2-poll-zc",
        about: "iceoryx2 publish-subscribe, busy-polling, zero-copy loans (sequence number only)",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: true,
        peer: Some(iox2::PEER),
        start: |p| Ok(Box::new(iox2::Iox2Session::start(p, iox2::Flavor::PollZc)?)),
        child: Some(|a| iox2::child(a, iox2::Flavor::PollZc)),
        costs: &[],
    },
    #[cfg(feature = "peers")]
    Row {
        name: "iox2-event",
        about: "iceoryx2 publish-subscribe + event notifier/listener, blocking wait per message",
        rtt_sizes: &SIZES,
        stream_sizes: &SIZES,
        gaps: true,
        peer: Some(iox2::PEER),
        start: |p| Ok(Box::new(iox2::Iox2Session::start(p, iox2::Flavor::Event)?)),
        child: Some(|a| iox2::child(a, iox2::Flavor::Event)),
        costs: &[],
    },
];

/// Payload sizes of the hub fan-in rows.
const FANIN_SIZES: [usize; 2] = [64, 64 * 1024];

const CT: Flavor = Flavor::CurrentThread;
const MT: Flavor = Flavor::MultiThread;

/// The spin of `ShmConfig::default()`, for the rows that name their spin.
const DEFAULT_SPIN: Duration = Duration::from_micros(20);

/// Parent side of the `shm-*` rows with a chosen spin and runtime flavour.
fn shm_start(
    p: &PlaceCtx,
    name: &str,
    spin: Duration,
    flavor: Flavor,
) -> BenchResult<Box<dyn Session>> {
    let config = transport_shm::ShmConfig {
        spin,
        ..transport_shm::ShmConfig::default()
    };
    Ok(Box::new(cross::parent_on(
        p,
        name,
        flavor,
        |path| async move {
            let listener = transport_shm::ShmListener::bind(&path, config)?;
            listener.accept().await
        },
    )?))
}

/// Peer side of the `shm-*` rows with a chosen spin and runtime flavour.
fn shm_child_on(a: &ChildArgs, spin: Duration, flavor: Flavor) -> BenchResult<()> {
    cross::child_on(a, flavor, |path| async move {
        transport_shm::connect_with(&path, spin).await
    })
}

/// Peer side of the `shm` and `shm-zc` rows.
fn shm_child(a: &ChildArgs) -> BenchResult<()> {
    // The backend's defaults serve both placements: its spin yields the CPU every few dozen
    // tries, so a peer sharing the CPU is not delayed.
    cross::child(a, |path| async move { transport_shm::connect(&path).await })
}

/// Names of all rows.
pub fn known_names() -> Vec<&'static str> {
    ROWS.iter().map(|r| r.name).collect()
}

/// Sizes of the many-sender rows: small frames, where sharing writes matters.
const MANY_SENDER_SIZES: [usize; 1] = [64];

/// A row of 4 tasks streaming over one connection ([`ManySenders`]); senders and receiver are
/// two threads of the parent process, placed like the two processes of other rows.
const fn many_senders(
    name: &'static str,
    about: &'static str,
    family: Family,
    framing: Framing,
) -> Row {
    Row {
        name,
        about,
        rtt_sizes: &[],
        stream_sizes: &MANY_SENDER_SIZES,
        gaps: false,
        peer: None,
        start: match (family, framing) {
            (Family::Tcp, Framing::Net) => {
                |p| Ok(Box::new(ManySenders::new(p, Family::Tcp, Framing::Net, 4)))
            }
            (Family::Tcp, Framing::Codec) => |p| {
                Ok(Box::new(ManySenders::new(
                    p,
                    Family::Tcp,
                    Framing::Codec,
                    4,
                )))
            },
            (Family::Unix, Framing::Net) => {
                |p| Ok(Box::new(ManySenders::new(p, Family::Unix, Framing::Net, 4)))
            }
            (Family::Unix, Framing::Codec) => |p| {
                Ok(Box::new(ManySenders::new(
                    p,
                    Family::Unix,
                    Framing::Codec,
                    4,
                )))
            },
        },
        child: None,
        costs: &[],
    }
}

/// A row of the eventfd ping-pong through tokio on runtimes of `flavor`.
const fn eventfd_rt(name: &'static str, about: &'static str, flavor: Flavor) -> Row {
    Row {
        name,
        about,
        rtt_sizes: &[8],
        stream_sizes: &[],
        gaps: true,
        peer: None,
        start: match flavor {
            CT => |p| {
                let s = eventfd::EventfdSession::start_as(p, "eventfd-rt", Some(CT))?;
                Ok(Box::new(s))
            },
            MT => |p| {
                let s = eventfd::EventfdSession::start_as(p, "eventfd-rt-mt", Some(MT))?;
                Ok(Box::new(s))
            },
        },
        child: match flavor {
            CT => Some(|a| eventfd::child_on(a, Some(CT))),
            MT => Some(|a| eventfd::child_on(a, Some(MT))),
        },
        costs: &[],
    }
}
