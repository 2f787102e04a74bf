//! The conformance suite against the shared-memory hub (host ↔ peer sessions).
transport_conformance::conformance_main!(transport_shm::conformance::HubBackend);
