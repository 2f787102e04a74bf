//! Shared code of the example programs: the backend registry and the generic echo service.

use transport_api::{Registry, Transport, TransportError, TypedTransport};

/// Every backend this build knows, for configuration-driven selection.
pub fn registry() -> Registry {
    Registry::new()
        .with(transport_mem::MemFactory)
        .with(transport_shm::ShmFactory)
}

/// A request of the echo demo.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EchoRequest {
    /// Sequence number.
    pub seq: u64,
    /// Text to echo back.
    pub text: String,
}

/// The echo service: answers every request with the same request, on any transport, until the
/// peer closes. Written once, generic over the backend.
pub async fn echo_service<T: Transport + ?Sized>(t: &T) -> Result<u64, TransportError> {
    let mut served = 0;
    loop {
        match t.recv_msg::<EchoRequest>().await {
            Ok((header, req)) => {
                t.send_msg(header, &req).await?;
                served += 1;
            }
            Err(TransportError::Closed | TransportError::PeerDied) => return Ok(served),
            Err(e) => return Err(e),
        }
    }
}
