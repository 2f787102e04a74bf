//! The bytes of the session socket, encoded and parsed without I/O: the listener's hello, the
//! connector's ready, and the graceful close. `rendezvous::handshake` performs the exchange;
//! the session writes [`MSG_CLOSE`] and its liveness watcher reads it.
//!
//! ```text
//! listener → connector  hello: "TSHM" 01 00 00 00                  (pair: map the whole memfd)
//!                              "TSHM" 02 00 00 00, offset, length  (hub: map one region;
//!                                                                   two little-endian u64s)
//!                       with three descriptors (SCM_RIGHTS): memfd, doorbell A, doorbell B
//!                  or   refusal: "TSHM" 03 00 00 00, code, a, b   (three little-endian u64s,
//!                       no descriptors; code 1: not allowed, uid a, gid b; code 2: full,
//!                       a = max_peers); the listener then closes the socket
//! connector → listener  'R'  the segment is mapped and valid
//! either way, later     'C'  closed gracefully; end-of-file: the process released the session
//! ```

use transport_api::Refusal;

/// The connector mapped the segment and starts its endpoint.
pub(crate) const MSG_READY: u8 = b'R';
/// The sender closed the session gracefully.
pub(crate) const MSG_CLOSE: u8 = b'C';

/// The hello of a pair: map the whole file.
pub(crate) const HELLO: &[u8; 8] = b"TSHM\x01\x00\x00\x00";
/// First 8 bytes of a hub's hello (then the region offset and length).
pub(crate) const HUB_HELLO: &[u8; 8] = b"TSHM\x02\x00\x00\x00";
/// Length of a hub's hello.
pub(crate) const HUB_HELLO_LEN: usize = 24;
/// First 8 bytes of a refusal (then the code and two values).
pub(crate) const REFUSAL: &[u8; 8] = b"TSHM\x03\x00\x00\x00";
/// Length of a refusal.
pub(crate) const REFUSAL_LEN: usize = 32;
/// The longest message a listener sends first.
pub(crate) const MAX_HELLO_LEN: usize = REFUSAL_LEN;

const REFUSED_NOT_ALLOWED: u64 = 1;
const REFUSED_FULL: u64 = 2;

/// The refusal message for `why`.
pub(crate) fn refusal(why: &Refusal) -> [u8; REFUSAL_LEN] {
    let (code, a, b) = match *why {
        Refusal::NotAllowed { uid, gid } => (REFUSED_NOT_ALLOWED, u64::from(uid), u64::from(gid)),
        Refusal::Full { max_peers } => (REFUSED_FULL, max_peers, 0),
        Refusal::Other(code) => (u64::from(code), 0, 0),
        // A reason added to the API later travels as its own code once this encoder learns it.
        _ => (0, 0, 0),
    };
    let mut m = [0u8; REFUSAL_LEN];
    m[..8].copy_from_slice(REFUSAL);
    m[8..16].copy_from_slice(&code.to_le_bytes());
    m[16..24].copy_from_slice(&a.to_le_bytes());
    m[24..32].copy_from_slice(&b.to_le_bytes());
    m
}

/// The hello of a hub: [`HUB_HELLO`] then the region's offset and length (little-endian
/// `u64`s) inside the memfd that travels with it.
pub(crate) fn hub_hello(offset: u64, len: u64) -> [u8; HUB_HELLO_LEN] {
    let mut h = [0u8; HUB_HELLO_LEN];
    h[..8].copy_from_slice(HUB_HELLO);
    h[8..16].copy_from_slice(&offset.to_le_bytes());
    h[16..24].copy_from_slice(&len.to_le_bytes());
    h
}

/// How many hello bytes a connector needs, given the first ones it read: a pair hello is
/// complete after 8 bytes, a hub hello after [`HUB_HELLO_LEN`].
pub(crate) fn hello_len(prefix: &[u8]) -> usize {
    match prefix.get(..8) {
        Some(p) if p == HUB_HELLO => HUB_HELLO_LEN,
        Some(p) if p == REFUSAL => REFUSAL_LEN,
        _ => 8,
    }
}

/// What the listener's hello asks the connector to map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HelloKind {
    /// The whole file (a pair segment).
    Pair,
    /// Only `len` bytes at `offset` (a hub region).
    Region { offset: u64, len: u64 },
    /// Nothing: the listener refused this connector.
    Refused(Refusal),
}

/// The hello's meaning; `None` for anything else.
pub(crate) fn parse_hello(hello: &[u8]) -> Option<HelloKind> {
    if hello == HELLO {
        return Some(HelloKind::Pair);
    }
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&hello[i..i + 8]);
        u64::from_le_bytes(b)
    };
    if hello.len() == HUB_HELLO_LEN && &hello[..8] == HUB_HELLO {
        return Some(HelloKind::Region {
            offset: word(8),
            len: word(16),
        });
    }
    if hello.len() == REFUSAL_LEN && &hello[..8] == REFUSAL {
        let id = |v: u64| u32::try_from(v).ok();
        let why = match (word(8), word(16), word(24)) {
            (REFUSED_NOT_ALLOWED, uid, gid) => match (id(uid), id(gid)) {
                (Some(uid), Some(gid)) => Refusal::NotAllowed { uid, gid },
                _ => return None,
            },
            (REFUSED_FULL, max_peers, _) => Refusal::Full { max_peers },
            (code, _, _) => Refusal::Other(u32::try_from(code).unwrap_or(u32::MAX)),
        };
        return Some(HelloKind::Refused(why));
    }
    None
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn hellos_parse() {
        assert_eq!(parse_hello(HELLO), Some(HelloKind::Pair));
        let h = hub_hello(1 << 20, 8192);
        assert_eq!(
            parse_hello(&h),
            Some(HelloKind::Region {
                offset: 1 << 20,
                len: 8192
            })
        );
        assert_eq!(parse_hello(&h[..23]), None);
        assert_eq!(parse_hello(&h[..8]), None);
        assert_eq!(parse_hello(b"TSHM\x03\x00\x00\x00"), None);
    }

    #[test]
    fn refusals_round_trip_and_odd_ones_are_named_by_code() {
        for why in [
            Refusal::NotAllowed {
                uid: 1000,
                gid: 100,
            },
            Refusal::Full { max_peers: 64 },
            Refusal::Other(77),
        ] {
            let m = refusal(&why);
            assert_eq!(hello_len(&m[..8]), REFUSAL_LEN);
            assert_eq!(parse_hello(&m), Some(HelloKind::Refused(why)));
            assert_eq!(parse_hello(&m[..31]), None);
        }
        let mut m = refusal(&Refusal::NotAllowed { uid: 1, gid: 2 });
        m[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            parse_hello(&m),
            None,
            "a uid beyond u32 is not a refusal we understand"
        );
        const { assert!(MAX_HELLO_LEN >= HUB_HELLO_LEN) };
    }
}
