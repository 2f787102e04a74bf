//! The conformance suite against the in-process backend.
transport_conformance::conformance_main!(transport_mem::conformance::MemBackend);
