//! Frames: a fixed header and an owned payload.

use crate::buf::TxBuf;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The fixed header carried by every frame. It is opaque to transports: they deliver it as
/// given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FrameHeader {
    /// Message id chosen by the application (e.g. a request id to match a response).
    pub msg_id: u64,
    /// Channel (stream) id, for multiplexing.
    pub channel: u32,
    /// Method id, for RPC-style protocols.
    pub method: u32,
    /// Application flags.
    pub flags: u32,
    /// Flow-control credit granted to the peer.
    pub credit: u32,
    /// Deadline in nanoseconds since the Unix epoch; 0 means none.
    pub deadline_ns: u64,
}

impl FrameHeader {
    /// Size of the header on the wire and in shared-memory descriptors.
    pub const ENCODED_LEN: usize = 32;

    /// Little-endian fixed-size encoding used by backends that carry headers as bytes.
    pub fn to_bytes(&self) -> [u8; Self::ENCODED_LEN] {
        let mut b = [0u8; Self::ENCODED_LEN];
        b[0..8].copy_from_slice(&self.msg_id.to_le_bytes());
        b[8..12].copy_from_slice(&self.channel.to_le_bytes());
        b[12..16].copy_from_slice(&self.method.to_le_bytes());
        b[16..20].copy_from_slice(&self.flags.to_le_bytes());
        b[20..24].copy_from_slice(&self.credit.to_le_bytes());
        b[24..32].copy_from_slice(&self.deadline_ns.to_le_bytes());
        b
    }

    /// Inverse of [`FrameHeader::to_bytes`]. Every bit pattern is a valid header.
    pub fn from_bytes(b: &[u8; Self::ENCODED_LEN]) -> FrameHeader {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        FrameHeader {
            msg_id: u64_at(0),
            channel: u32_at(8),
            method: u32_at(12),
            flags: u32_at(16),
            credit: u32_at(20),
            deadline_ns: u64_at(24),
        }
    }
}

/// A frame's payload: shared immutable bytes, or a buffer from
/// [`Transport::alloc`](crate::Transport::alloc).
///
/// Received frames carry [`Payload::Bytes`], or, for payloads of at most
/// [`TxBuf::INLINE_CAPACITY`] bytes that a backend copied, a [`Payload::Buf`] holding them inside
/// the frame (no allocation). Either is an owned value that stays valid however long it is kept
/// (on shared memory a `Bytes` payload may pin its slot until dropped); read it through
/// [`Frame::bytes`] or `Deref`, or take it with [`Payload::into_bytes`].
pub enum Payload {
    /// Immutable shared bytes.
    Bytes(Bytes),
    /// A writable buffer, sent without a copy by the transport that allocated it.
    Buf(TxBuf),
}

impl Payload {
    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        match self {
            Payload::Bytes(b) => b.len(),
            Payload::Buf(b) => b.len(),
        }
    }

    /// True when empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload as `Bytes`; free except for a leased buffer, which is copied.
    pub fn into_bytes(self) -> Bytes {
        match self {
            Payload::Bytes(b) => b,
            Payload::Buf(b) => b.into_bytes(),
        }
    }
}

impl Default for Payload {
    fn default() -> Self {
        Payload::Bytes(Bytes::new())
    }
}

impl std::ops::Deref for Payload {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            Payload::Bytes(b) => b,
            Payload::Buf(b) => b,
        }
    }
}

impl AsRef<[u8]> for Payload {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl From<Bytes> for Payload {
    #[inline]
    fn from(b: Bytes) -> Self {
        Payload::Bytes(b)
    }
}
impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Self {
        Payload::Bytes(Bytes::from(v))
    }
}
impl From<&'static [u8]> for Payload {
    fn from(v: &'static [u8]) -> Self {
        Payload::Bytes(Bytes::from_static(v))
    }
}
impl From<&'static str> for Payload {
    fn from(v: &'static str) -> Self {
        Payload::Bytes(Bytes::from_static(v.as_bytes()))
    }
}
impl From<TxBuf> for Payload {
    #[inline]
    fn from(b: TxBuf) -> Self {
        Payload::Buf(b)
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Bytes(b) if b.len() <= 32 => write!(f, "Bytes({b:?})"),
            Payload::Bytes(b) => write!(f, "Bytes(<{} bytes>)", b.len()),
            Payload::Buf(b) => write!(f, "{b:?}"),
        }
    }
}

/// A frame: header plus payload.
///
/// # Examples
///
/// ```
/// use transport_api::{Frame, FrameHeader};
///
/// let frame = Frame::new("get /orders").msg_id(42).channel(1).method(3);
/// assert_eq!(frame.header.msg_id, 42);
/// assert_eq!(frame.bytes(), b"get /orders");
///
/// // Backends that carry headers as bytes use the fixed 32-byte encoding.
/// let wire = frame.header.to_bytes();
/// assert_eq!(FrameHeader::from_bytes(&wire), frame.header);
/// ```
#[derive(Debug, Default)]
pub struct Frame {
    /// The fixed header.
    pub header: FrameHeader,
    /// The payload.
    pub payload: Payload,
}

impl Frame {
    /// A frame with a default header and the given payload.
    #[inline]
    pub fn new(payload: impl Into<Payload>) -> Frame {
        Frame {
            header: FrameHeader::default(),
            payload: payload.into(),
        }
    }

    /// A frame with the given header and payload.
    #[inline]
    pub fn with_header(header: FrameHeader, payload: impl Into<Payload>) -> Frame {
        Frame {
            header,
            payload: payload.into(),
        }
    }

    /// Sets the message id.
    #[inline]
    pub fn msg_id(mut self, id: u64) -> Self {
        self.header.msg_id = id;
        self
    }

    /// Sets the channel id.
    #[inline]
    pub fn channel(mut self, channel: u32) -> Self {
        self.header.channel = channel;
        self
    }

    /// Sets the method id.
    #[inline]
    pub fn method(mut self, method: u32) -> Self {
        self.header.method = method;
        self
    }

    /// Sets the flags.
    #[inline]
    pub fn flags(mut self, flags: u32) -> Self {
        self.header.flags = flags;
        self
    }

    /// The payload bytes.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        &self.payload
    }

    /// Consumes the frame and returns its payload as `Bytes`.
    pub fn into_bytes(self) -> Bytes {
        self.payload.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn header_round_trips(msg_id: u64, channel: u32, method: u32, flags: u32, credit: u32, deadline_ns: u64) {
            let h = FrameHeader { msg_id, channel, method, flags, credit, deadline_ns };
            prop_assert_eq!(FrameHeader::from_bytes(&h.to_bytes()), h);
        }
    }

    #[test]
    fn builders_set_fields() {
        let f = Frame::new("hi").msg_id(3).channel(4).method(5).flags(6);
        assert_eq!(f.header.msg_id, 3);
        assert_eq!(f.header.channel, 4);
        assert_eq!(f.header.method, 5);
        assert_eq!(f.header.flags, 6);
        assert_eq!(f.bytes(), b"hi");
    }
}
