//! Which scenario checks which clause of the contract.
//!
//! The contract is the one of [`transport_api`] (crate docs and [`Transport`]). Each row names
//! the scenarios that fail when a backend breaks that clause; `boxed_` variants run the same
//! scenario through the object-safe `BoxTransport`. The self-test (`tests/broken_backends.rs`)
//! proves each row on a deliberately broken backend.
//!
//! Every scenario also checks, at its end, that both endpoints are idle (nothing queued, no
//! buffer memory held), and runs under the progress watchdog: a scenario that stops making
//! progress fails within `CONFORMANCE_STALL_MS`, naming what it waits for.
//!
//! | Clause | Scenarios |
//! |---|---|
//! | Frames arrive in the order they were sent, each exactly once | `ordering_single_channel_100k`, `boxed_ordering_single_channel_100k`, `ordering_interleaved_64_channels` |
//! | … per sending task, with many senders and receivers on a multi-thread runtime | `concurrency_8_senders_2_receivers`, `random_interleavings_mixed_paths` |
//! | … through `try_send`/`try_recv` alone (100 000 frames, scaled) | `exactly_once_try_send_try_recv`, `boxed_exactly_once_try_send_try_recv` |
//! | … with every path mixed (`send`, `try_send`, `alloc`; `recv`, `try_recv`, cancelled `recv`), both directions, from a replayable seed | `random_interleavings_mixed_paths` |
//! | Payloads arrive intact at every size the backend treats differently | `integrity_payload_sizes`, `boxed_integrity_payload_sizes`, `xproc_echo_integrity` |
//! | Headers are opaque: every `FrameHeader` field arrives as given, on every send path | `header_fields_round_trip`, `boxed_header_fields_round_trip` |
//! | `max_payload` bytes are accepted by `send`, `try_send` and `alloc`; one more is refused with `PayloadTooLarge { len, max }`, nothing sent, counted or held | `max_payload_exact_and_one_over` |
//! | `send` waits for room; `try_send` hands the same frame back in `Full`; memory stays within the configured bound | `backpressure_send_waits_try_send_full`, `boxed_backpressure_send_waits_try_send_full`, `exactly_once_try_send_try_recv` |
//! | Dropping a `send`, `recv` or `alloc` future loses, duplicates and leaks nothing | `cancellation_dropped_futures`, `random_interleavings_mixed_paths` |
//! | `close()` wakes local waiters with `Closed`; later operations fail with `Closed`; it is idempotent | `close_wakes_local_waiters`, `close_peer_drains_then_closed` |
//! | The peer of a closed endpoint receives every frame sent before (through `recv` and `try_recv`), then `Closed`, even while blocked in `recv` | `close_peer_drains_then_closed`, `close_wakes_blocked_peer_recv`, `xproc_graceful_close_then_exit` |
//! | Drop is a graceful close | `drop_without_close_peer_drains`, `peer_drop_races_concurrent_sends` |
//! | No frame whose `send` returned `Ok` is lost while its receiver lives, even when `close()` races the send; a send that fails does not deliver | `close_races_concurrent_sends` |
//! | Sends to a peer that closed or went away fail with `Closed` (blocked ones wake) | `peer_drop_races_concurrent_sends`, `close_peer_drains_then_closed`, `drop_without_close_peer_drains` |
//! | Peer death is reported as `PeerDied` after every frame the peer fully sent | `xproc_kill_after_send_delivers_everything`, `xproc_kill_sender_mid_stream_random`, `xproc_kill_while_peer_holds_buffers` |
//! | Blocked operations wake on peer death; sends to a dead receiver fail | `xproc_kill_while_blocked_in_recv`, `xproc_kill_while_blocked_in_send`, `xproc_kill_receiver_mid_stream_random` |
//! | A peer that stops answering without closing (SIGSTOP) is declared dead within the backend's declared liveness timeout; blocked `send` and `recv` wake with `PeerDied` and resuming the peer does not revive the session (backends with `Capabilities::liveness`) | `xproc_silent_peer_sigstop_declared_dead` |
//! | A listener serves a new peer after one died (its resources are reclaimed) | `xproc_reconnect_after_death` |
//! | `alloc` returns exactly the length asked for; its buffers are sent intact (zero-copy where declared) | `zero_copy_alloc_buffers`, `max_payload_exact_and_one_over`, `random_interleavings_mixed_paths` |
//! | `alloc` buffers dropped unsent (or truncated) give their memory back | `alloc_dropped_unsent_returns_memory`, `zero_copy_alloc_buffers` |
//! | `Stats` counters match the traffic: frames and bytes each way, each send counted once, queued frames shown | `stats_counters_match_traffic`, `boxed_stats_counters_match_traffic` |
//! | Typed messages round-trip; undecodable payloads are a typed `Decode` error | `typed_messages` |
//!
//! Not checked here: that nothing panics on hostile input from another process or shared
//! memory (each backend tests its own wire format, e.g. `transport-shm`'s hostile-peer tests).
//!
//! [`Transport`]: transport_api::Transport
