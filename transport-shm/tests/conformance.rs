//! The conformance suite against the shared-memory backend.
transport_conformance::conformance_main!(transport_shm::conformance::ShmBackend);
