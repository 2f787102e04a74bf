//! The wire format, as pure encode/decode functions (no I/O): the hello each side sends first,
//! and the messages that follow it. See the [crate documentation](crate) for the layout.

use transport_api::{FrameHeader, TransportError};

/// First bytes of every hello: identifies a `transport-net` peer.
pub const MAGIC: [u8; 8] = *b"TRNSPNET";
/// The protocol version this crate speaks.
pub const VERSION: u16 = 1;
/// Size of a hello on the wire.
pub const HELLO_LEN: usize = 24;
/// Length word plus the encoded frame header: the bytes before every frame's payload.
pub const FRAME_HEAD_LEN: usize = 4 + FrameHeader::ENCODED_LEN;
/// Length words at or above this value are control messages, not frame lengths.
pub const CONTROL_BASE: u32 = 0xFFFF_FF00;
/// Control: "I am alive" (no body).
pub const KEEPALIVE: u32 = 0xFFFF_FFF0;
/// Control: credit; body is the u64 count of frame bytes this side has consumed in total.
pub const CREDIT: u32 = 0xFFFF_FFF1;
/// Control: graceful close; nothing follows.
pub const CLOSE: u32 = 0xFFFF_FFF2;
/// Control: a send waits for credit; grant what is consumed (no body).
pub const WANT: u32 = 0xFFFF_FFF3;
/// Size of a credit message.
pub const CREDIT_LEN: usize = 12;

/// Largest `max_payload` a hello may announce (64 MiB).
pub const MAX_PAYLOAD_LIMIT: u32 = 64 << 20;
/// Accepted range of the keep-alive timeout a hello announces, in milliseconds.
pub const KEEPALIVE_RANGE_MS: std::ops::RangeInclusive<u32> = 20..=3_600_000;
/// Accepted range of the receive window a hello announces, in bytes.
pub const WINDOW_RANGE: std::ops::RangeInclusive<u32> = 4096..=(1 << 30);

/// What each side announces before anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Largest payload this side accepts.
    pub max_payload: u32,
    /// This side declares the peer dead after this many milliseconds without a byte; the peer
    /// sends keep-alives often enough to stay well inside it.
    pub keepalive_ms: u32,
    /// Frame bytes (payload plus [`FRAME_HEAD_LEN`]) the peer may have unconsumed at this side.
    pub window: u32,
}

impl Hello {
    /// The 24-byte encoding: magic, version, reserved (0), max_payload, keepalive_ms, window;
    /// integers little-endian.
    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.max_payload.to_le_bytes());
        b[16..20].copy_from_slice(&self.keepalive_ms.to_le_bytes());
        b[20..24].copy_from_slice(&self.window.to_le_bytes());
        b
    }

    /// Decodes and validates a peer's hello; a `Corrupt` error names what is wrong.
    pub fn decode(b: &[u8; HELLO_LEN]) -> Result<Hello, TransportError> {
        if b[0..8] != MAGIC {
            return Err(TransportError::corrupt(format!(
                "bad hello: magic {:02x?} is not {MAGIC:02x?}; the peer does not speak transport-net",
                &b[0..8]
            )));
        }
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let version = u16_at(8);
        if version != VERSION {
            return Err(TransportError::corrupt(format!(
                "bad hello: protocol version {version}, this side speaks {VERSION}"
            )));
        }
        let reserved = u16_at(10);
        if reserved != 0 {
            return Err(TransportError::corrupt(format!(
                "bad hello: reserved field is {reserved:#x}, must be 0"
            )));
        }
        let h = Hello {
            max_payload: u32_at(12),
            keepalive_ms: u32_at(16),
            window: u32_at(20),
        };
        if h.max_payload == 0 || h.max_payload > MAX_PAYLOAD_LIMIT {
            return Err(TransportError::corrupt(format!(
                "bad hello: max_payload {} is outside 1..={MAX_PAYLOAD_LIMIT}",
                h.max_payload
            )));
        }
        if !KEEPALIVE_RANGE_MS.contains(&h.keepalive_ms) {
            return Err(TransportError::corrupt(format!(
                "bad hello: keepalive_ms {} is outside {KEEPALIVE_RANGE_MS:?}",
                h.keepalive_ms
            )));
        }
        if !WINDOW_RANGE.contains(&h.window) {
            return Err(TransportError::corrupt(format!(
                "bad hello: window {} is outside {WINDOW_RANGE:?}",
                h.window
            )));
        }
        Ok(h)
    }
}

/// The bytes before a frame's payload: its length and its header.
pub fn frame_head(header: &FrameHeader, len: u32) -> [u8; FRAME_HEAD_LEN] {
    let mut b = [0u8; FRAME_HEAD_LEN];
    b[0..4].copy_from_slice(&len.to_le_bytes());
    b[4..].copy_from_slice(&header.to_bytes());
    b
}

/// A credit message granting the peer room up to `consumed` bytes in total.
pub fn credit(consumed: u64) -> [u8; CREDIT_LEN] {
    let mut b = [0u8; CREDIT_LEN];
    b[0..4].copy_from_slice(&CREDIT.to_le_bytes());
    b[4..].copy_from_slice(&consumed.to_le_bytes());
    b
}

/// Wire cost of a frame with `len` payload bytes, the unit of flow control.
pub fn cost(len: usize) -> u64 {
    (FRAME_HEAD_LEN + len) as u64
}

/// One message found at the start of a receive buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed; at least this many in total.
    Need(usize),
    /// A frame: its header and payload length; it occupies `FRAME_HEAD_LEN + len` bytes.
    Frame {
        /// The frame's header.
        header: FrameHeader,
        /// Payload length.
        len: usize,
    },
    /// A keep-alive (4 bytes).
    KeepAlive,
    /// A credit grant (12 bytes): the peer has consumed this many frame bytes in total.
    Credit(u64),
    /// A request for credit (4 bytes).
    Want,
    /// A graceful close (4 bytes).
    Close,
}

impl Parsed {
    /// Bytes the message occupies (0 for `Need`).
    pub fn wire_len(&self) -> usize {
        match self {
            Parsed::Need(_) => 0,
            Parsed::Frame { len, .. } => FRAME_HEAD_LEN + len,
            Parsed::KeepAlive | Parsed::Want | Parsed::Close => 4,
            Parsed::Credit(_) => CREDIT_LEN,
        }
    }
}

/// Looks at the start of `buf` for one message. A frame length above `max_payload` or an
/// unknown control code is `Corrupt`, decided from the 4-byte length word alone (before any
/// room for the payload is reserved).
pub fn parse(buf: &[u8], max_payload: usize) -> Result<Parsed, TransportError> {
    let Some(word) = buf.get(0..4) else {
        return Ok(Parsed::Need(4));
    };
    let word = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
    if word >= CONTROL_BASE {
        return match word {
            KEEPALIVE => Ok(Parsed::KeepAlive),
            WANT => Ok(Parsed::Want),
            CLOSE => Ok(Parsed::Close),
            CREDIT => match buf.get(4..CREDIT_LEN) {
                Some(b) => {
                    let mut v = [0u8; 8];
                    v.copy_from_slice(b);
                    Ok(Parsed::Credit(u64::from_le_bytes(v)))
                }
                None => Ok(Parsed::Need(CREDIT_LEN)),
            },
            other => Err(TransportError::corrupt(format!(
                "unknown control code {other:#010x}"
            ))),
        };
    }
    let len = word as usize;
    if len > max_payload {
        return Err(TransportError::corrupt(format!(
            "frame length {len} exceeds the agreed max_payload {max_payload}"
        )));
    }
    if buf.len() < FRAME_HEAD_LEN + len {
        return Ok(Parsed::Need(FRAME_HEAD_LEN + len));
    }
    let mut h = [0u8; FrameHeader::ENCODED_LEN];
    h.copy_from_slice(&buf[4..FRAME_HEAD_LEN]);
    Ok(Parsed::Frame {
        header: FrameHeader::from_bytes(&h),
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hello() -> Hello {
        Hello {
            max_payload: 1 << 20,
            keepalive_ms: 10_000,
            window: 1 << 20,
        }
    }

    #[test]
    fn hello_round_trips_and_bad_fields_are_named() {
        let h = hello();
        assert_eq!(Hello::decode(&h.encode()).unwrap(), h);
        let cases: [(usize, u8, &str); 5] = [
            (0, b'X', "magic"),
            (8, 9, "version"),
            (10, 1, "reserved"),
            (15, 0xFF, "max_payload"),
            (19, 0xFF, "keepalive_ms"),
        ];
        for (at, byte, word) in cases {
            let mut b = h.encode();
            b[at] = byte;
            let e = Hello::decode(&b).unwrap_err().to_string();
            assert!(e.contains(word), "byte {at}: {e}");
        }
        let mut small = h;
        small.window = 10;
        let e = Hello::decode(&small.encode()).unwrap_err().to_string();
        assert!(e.contains("window 10"), "{e}");
    }

    #[test]
    fn control_messages_and_limits() {
        assert_eq!(parse(&[], 10).unwrap(), Parsed::Need(4));
        assert_eq!(
            parse(&KEEPALIVE.to_le_bytes(), 10).unwrap(),
            Parsed::KeepAlive
        );
        assert_eq!(parse(&CLOSE.to_le_bytes(), 10).unwrap(), Parsed::Close);
        assert_eq!(parse(&WANT.to_le_bytes(), 10).unwrap(), Parsed::Want);
        assert_eq!(parse(&credit(77), 10).unwrap(), Parsed::Credit(77));
        assert_eq!(
            parse(&credit(77)[..5], 10).unwrap(),
            Parsed::Need(CREDIT_LEN)
        );
        let e = parse(&CONTROL_BASE.to_le_bytes(), 10).unwrap_err();
        assert!(e.to_string().contains("unknown control code"), "{e}");
        let e = parse(&11u32.to_le_bytes(), 10).unwrap_err();
        assert!(e.to_string().contains("frame length 11"), "{e}");
        // A huge announced length is refused from the length word alone.
        let e = parse(&(CONTROL_BASE - 1).to_le_bytes(), 10).unwrap_err();
        assert!(matches!(e, TransportError::Corrupt { .. }), "{e}");
    }

    proptest! {
        #[test]
        fn frames_round_trip(msg_id: u64, channel: u32, flags: u32,
                             payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let header = FrameHeader { msg_id, channel, flags, ..Default::default() };
            let mut wire = frame_head(&header, payload.len() as u32).to_vec();
            wire.extend_from_slice(&payload);
            // Every proper prefix asks for more; the whole message parses back.
            for cut in 0..wire.len() {
                prop_assert!(matches!(parse(&wire[..cut], 300).unwrap(), Parsed::Need(n) if n > cut));
            }
            let p = parse(&wire, 300).unwrap();
            prop_assert_eq!(p.wire_len(), wire.len());
            prop_assert_eq!(p, Parsed::Frame { header, len: payload.len() });
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), max in 0usize..100) {
            match parse(&bytes, max) {
                Ok(Parsed::Need(n)) => prop_assert!(n > bytes.len()),
                Ok(p) => {
                    prop_assert!(p.wire_len() <= bytes.len());
                    if let Parsed::Frame { len, .. } = p { prop_assert!(len <= max); }
                }
                Err(e) => prop_assert!(matches!(e, TransportError::Corrupt { .. }), "{}", e),
            }
            if let Ok(b) = <[u8; HELLO_LEN]>::try_from(&bytes[..bytes.len().min(HELLO_LEN)]) {
                let _ = Hello::decode(&b);
            }
        }

        #[test]
        fn valid_hellos_round_trip(max_payload in 1..=MAX_PAYLOAD_LIMIT,
                                   keepalive_ms in KEEPALIVE_RANGE_MS,
                                   window in WINDOW_RANGE) {
            let h = Hello { max_payload, keepalive_ms, window };
            prop_assert_eq!(Hello::decode(&h.encode()).unwrap(), h);
        }
    }
}
