//! Typed messages: serde values encoded with postcard straight into transport buffers.

use crate::{Frame, FrameHeader, Result, Transport, TransportError};
use serde::{Serialize, de::DeserializeOwned};

/// Sends and receives serde values over any [`Transport`].
///
/// Encoding measures the value first, then writes it directly into a buffer from
/// [`Transport::alloc`] — no intermediate `Vec` — so on shared memory the encoded bytes are
/// written once, into the slot that travels to the peer.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use serde::{Deserialize, Serialize};
/// use transport_api::{FrameHeader, TypedTransport};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct Order { id: u32, item: String }
///
/// let (a, b) = transport_mem::pair(Default::default());
/// let order = Order { id: 7, item: "tea".into() };
/// a.send_msg(FrameHeader { msg_id: 1, ..Default::default() }, &order).await?;
/// let (header, got) = b.recv_msg::<Order>().await?;
/// assert_eq!((header.msg_id, got), (1, order));
///
/// // A payload that is not an `Order` is consumed and reported; the session stays open.
/// a.send_msg(FrameHeader::default(), &[0xffu8; 3]).await?;
/// assert!(matches!(
///     b.recv_msg::<Order>().await,
///     Err(transport_api::TransportError::Decode { .. })
/// ));
/// # Ok::<(), transport_api::TransportError>(())
/// # }).unwrap();
/// ```
pub trait TypedTransport: Transport {
    /// Encodes `msg` and sends it with `header`.
    fn send_msg<M>(&self, header: FrameHeader, msg: &M) -> impl Future<Output = Result<()>> + Send
    where
        M: Serialize + Sync + ?Sized,
    {
        async move {
            let ty = std::any::type_name::<M>();
            let len = postcard::experimental::serialized_size(msg)
                .map_err(|source| TransportError::Encode { ty, source })?;
            if len > self.max_payload() {
                return Err(TransportError::PayloadTooLarge {
                    len,
                    max: self.max_payload(),
                });
            }
            let mut buf = self.alloc(len).await?;
            let used = postcard::to_slice(msg, &mut buf)
                .map_err(|source| TransportError::Encode { ty, source })?
                .len();
            buf.truncate(used);
            self.send(Frame::with_header(header, buf)).await
        }
    }

    /// Receives the next frame and decodes its payload as `M`.
    ///
    /// A payload that does not decode is consumed and reported as
    /// [`TransportError::Decode`]; the session stays open.
    fn recv_msg<M>(&self) -> impl Future<Output = Result<(FrameHeader, M)>> + Send
    where
        M: DeserializeOwned,
    {
        async move {
            let frame = self.recv().await?;
            let msg = decode::<M>(frame.bytes())?;
            Ok((frame.header, msg))
        }
    }
}

impl<T: Transport + ?Sized> TypedTransport for T {}

/// Decodes a payload as `M`, with an error that names the type and length.
pub fn decode<M: DeserializeOwned>(payload: &[u8]) -> Result<M> {
    postcard::from_bytes(payload).map_err(|source| TransportError::Decode {
        ty: std::any::type_name::<M>(),
        len: payload.len(),
        source,
    })
}
