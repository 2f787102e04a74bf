//! The conformance suite against the `tcp` backend.
transport_conformance::conformance_main!(transport_net::conformance::TcpBackend);
