//! The hub: one host, many peers, one segment.
//!
//! [`config`] holds the parameters, [`peer`] what names and describes a peer, [`host`] the API
//! ([`HubHost`], [`HubPeer`]), [`table`] the hub segment's header and the
//! table of regions and peers, [`monitor`] the task that gives a region back, and [`scheduler`]
//! the fair [`HubHost::recv_any`].
//!
//! # Regions
//!
//! Every peer gets a *region* of its own: a sealed memfd laid out exactly like a pair segment
//! (its own pair header, both directions' rings and slot classes), so a hub session is a pair
//! session in every respect: the host's side of it is a
//! [`Segment`](crate::os::segment::Segment) over a guarded view of the region's mapping
//! ([`Mapping::region`](crate::os::mapping::Mapping::region)), and the peer maps its memfd with
//! [`Segment::attach_region`](crate::os::segment::Segment::attach_region) and runs an ordinary
//! pair side B. The ring, pool and session code is shared unchanged with pair sessions.
//! `max_peers` bounds how many regions exist at once; the table of regions only numbers them.
//!
//! # Isolation
//!
//! Each peer has its own rings and its own payload memory (both directions), so a slow, dead or
//! misbehaving peer cannot exhaust what the others need, and a peer scribbling over its own
//! region can only break its own session (the host validates every value it reads, as for a
//! pair). The isolation holds against malice too: the only descriptor a peer receives is its
//! own region's memfd (plus two eventfds), which holds nothing of any other peer, so there is no
//! offset, mapping or file through which it could reach another peer's memory. Who may attach
//! at all is decided from the connecting process's credentials
//! ([`AccessPolicy`](crate::AccessPolicy)) before anything is created for it.
//!
//! # Region life cycle
//!
//! [`HubHost::accept`] takes the next connection, checks its credentials, reserves a free
//! region number (refusing the peer with "full" when none frees up within
//! [`HubConfig::wait`]), creates the region's memfd with a fresh pair header and hands it to
//! the peer. A region becomes reusable only when **both**
//!
//! 1. the peer's end of the session socket is closed: its process released the session or
//!    died (the pair session keeps that socket open as long as it can touch the segment), and
//! 2. nothing in the host process refers to the region any more: every `Arc<ShmTransport>` of
//!    the session (the hub's and the application's), every received payload still borrowing a
//!    slot, every unsent leased buffer. The region's [`Mapping`](crate::os::mapping::Mapping) view carries a guard that is
//!    dropped with the last such reference.
//!
//! A small task per session watches both; then the host drops its last mapping of the region,
//! its memory returns to the system, and the region number is free for the next peer (which
//! gets a new memfd). When the host's references are gone first, the task shuts the
//! socket down so that the peer sees the same end-of-file a pair peer would.
//!
//! # Receiving from any peer
//!
//! The hub keeps an `Arc` of every live session (so [`HubHost::recv_any`] and
//! [`HubHost::send_to`] work without the application keeping handles). [`HubHost::recv_any`]
//! first sweeps all live peers with `try_recv`, starting after the peer it served last
//! (round-robin, so a flooding peer cannot starve the others), for up to [`HubConfig::spin`]
//! (each sweep one pass over a snapshot of the live peers, taken under the hub's lock once per
//! call and per membership change, so a sweep takes no lock and allocates nothing); then it
//! waits on all live peers' [`ShmTransport::readable`](crate::ShmTransport::readable) futures
//! at once (they park on the peers' eventfds without spinning or taking a frame), plus a
//! "peers changed" notification — no polling loop, no task per peer — and serves the peer that
//! woke it.
//!
//! The hub drops its own reference to a session when the session ended (the peer hung up, or
//! `recv`/`recv_any` reported `Closed`, `PeerDied` or `Corrupt`) and everything the peer
//! published has been received, so a peer's last frames are never lost.

pub(crate) mod admin;
mod config;
mod host;
mod monitor;
mod peer;
mod scheduler;
mod table;

pub(crate) use config::DEFAULT_MAX_PEERS;
pub use config::HubConfig;
pub use config::MAX_HUB_PEERS;
pub(crate) use config::bad_max_peers;
pub use host::{HubHost, HubPeer};
pub use peer::{PeerId, PeerInfo, PeerState};
