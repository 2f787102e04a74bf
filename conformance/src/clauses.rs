//! Which scenario checks which clause of the contract.
//!
//! The scenarios are grouped by clause in the `scenarios` module: delivery (order and
//! exactly-once), integrity (payloads, headers, `max_payload`), waiting (backpressure and
//! cancellation), closing, and memory (`alloc`, zero-copy, accounting); cross-process scenarios
//! (peer death) live in `xproc`.
