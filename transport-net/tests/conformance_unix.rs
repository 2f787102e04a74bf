//! The conformance suite against the `unix` backend.
transport_conformance::conformance_main!(transport_net::conformance::UnixBackend);
