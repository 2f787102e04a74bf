//! Descriptors (one 64-byte ring entry per frame) and slot references.
//!
//! # Descriptor words (little-endian `u64`s)
//!
//! ```text
//! w0..w3  frame header: the 32 bytes of `FrameHeader::to_bytes`
//! w4      payload len (bits 0..32) | kind (32..40) | class (40..48) | ring stamp (48..64)
//! w5      slot index (0..32) | generation (32..64)   — zero for inline payloads
//! w6..w7  inline payload bytes (kind 0: the first 16 bytes)
//! ```
//!
//! The top 16 bits of w4 belong to the ring ([`crate::core::ring::STAMP_WORD`]): it writes the lap
//! stamp there and clears it before the words are decoded.
//!
//! An inline payload longer than [`INLINE_HEAD`] continues in up to [`MAX_CONT`] *continuation
//! entries* that follow the descriptor in the ring and are published with it as one unit. Each
//! carries [`CONT_BYTES`] bytes in words 0..3 and 5..7 (word 4 is the ring's stamp word):
//! small frames are copied through the ring itself, with no slot, no completion and no
//! reference to return.
//!
//! [`Descriptor::decode`], and the receive path's `Descriptor::locate` on which it is built,
//! validate every field against the **local** geometry and return a typed [`DescriptorError`]
//! for anything out of range: they never panic whatever the words hold (INVARIANTS 23). The
//! receive path then reads the header and inline bytes from the words themselves.

use transport_api::FrameHeader;

use crate::core::layout::Geometry;

/// Payload bytes carried in the descriptor entry itself (words 6 and 7).
pub(crate) const INLINE_HEAD: usize = 16;
/// Payload bytes carried by one continuation entry (seven words; word 4 is the ring's).
pub(crate) const CONT_BYTES: usize = 56;
/// Most continuation entries an inline payload may use.
pub(crate) const MAX_CONT: usize = 4;
/// Largest payload carried inline in the ring (descriptor plus continuations). A session uses
/// less when its ring is small (at most half the ring per frame).
pub(crate) const INLINE_MAX: usize = INLINE_HEAD + MAX_CONT * CONT_BYTES;
/// Words of a continuation entry that carry payload, in order.
const CONT_WORDS: [usize; 7] = [0, 1, 2, 3, 5, 6, 7];

/// The frame header as descriptor words 0..4: the little-endian words of
/// [`FrameHeader::to_bytes`], built without going through bytes.
pub(crate) fn header_words(h: &FrameHeader) -> [u64; 4] {
    [
        h.msg_id,
        u64::from(h.channel) | u64::from(h.method) << 32,
        u64::from(h.flags) | u64::from(h.credit) << 32,
        h.deadline_ns,
    ]
}

/// Inverse of [`header_words`], from a descriptor's words 0..4 (every pattern is a header).
pub(crate) fn header_from_words(w: &[u64; 8]) -> FrameHeader {
    FrameHeader {
        msg_id: w[0],
        channel: w[1] as u32,
        method: (w[1] >> 32) as u32,
        flags: w[2] as u32,
        credit: (w[2] >> 32) as u32,
        deadline_ns: w[3],
    }
}

/// Bytes `8 * j .. 8 * j + 8` of `bytes` as a little-endian word, zero-padded past the end.
#[inline(always)]
fn payload_word(bytes: &[u8], j: usize) -> u64 {
    if let Some(c) = bytes.get(8 * j..8 * j + 8) {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        return u64::from_le_bytes(b);
    }
    // The last, partial word (or none): byte by byte, no call to `memcpy`.
    let rest = bytes.get(8 * j..).unwrap_or(&[]);
    rest.iter()
        .enumerate()
        .fold(0, |w, (k, &x)| w | u64::from(x) << (8 * k))
}

/// Where word `j` of an inline payload (its bytes `8 * j .. 8 * j + 8`) travels: the entry of
/// the unit (0: the descriptor, `1 + c`: continuation `c`) and the word within it.
const fn payload_word_at(j: usize) -> (usize, usize) {
    if j < 2 {
        (0, 6 + j)
    } else {
        (1 + (j - 2) / 7, CONT_WORDS[(j - 2) % 7])
    }
}

/// The ring words of an inline frame: the descriptor, and the continuation entries written to
/// the start of `conts` (their number is returned). `None` when `bytes` is longer than
/// [`INLINE_MAX`]. The descriptor is word-for-word what [`Descriptor::inline`] and
/// [`Descriptor::encode`] produce, without the intermediate byte arrays;
/// [`Descriptor::encode_continuations`] is built on this function, and both on [`InlineUnit`]
/// (which the send path writes into the ring directly).
#[cfg(test)]
pub(crate) fn encode_inline_unit(
    header: &FrameHeader,
    bytes: &[u8],
    conts: &mut [[u64; 8]; MAX_CONT],
) -> Option<([u64; 8], usize)> {
    let unit = InlineUnit::<INLINE_MAX>::new(header, bytes)?;
    let first = std::array::from_fn(|i| unit.word(0, i));
    for (c, entry) in conts.iter_mut().take(unit.entries() - 1).enumerate() {
        *entry = std::array::from_fn(|i| unit.word(1 + c, i));
    }
    Some((first, unit.entries() - 1))
}

/// An inline frame's ring unit (descriptor and continuation entries), produced word by word by
/// [`InlineUnit::word`] so that the send path stores each word straight into the ring. The
/// payload is held in a zero-padded copy of `N` bytes: a payload of more than
/// [`INLINE_HEAD`] bytes is copied once (fixed size, so the padding is a few stores); a shorter
/// one (`N` = [`INLINE_HEAD`]) is loaded as two words without a copy call.
pub(crate) struct InlineUnit<const N: usize> {
    /// Descriptor words 0..=4: the header, then length and kind.
    head: [u64; 5],
    /// The payload, zero-padded to `N` bytes.
    bytes: [u8; N],
    /// Entries of the unit (1 + continuations).
    entries: usize,
}

impl<const N: usize> InlineUnit<N> {
    /// The unit of `bytes`; `None` when they are longer than `N` or [`INLINE_MAX`].
    #[inline(always)]
    pub(crate) fn new(header: &FrameHeader, bytes: &[u8]) -> Option<Self> {
        // Whole words only (a partial last word would read as zero and lose bytes), and no
        // more than the largest unit.
        const {
            assert!(N % 8 == 0 && N >= INLINE_HEAD && N <= INLINE_MAX);
        }
        if bytes.len() > N.min(INLINE_MAX) {
            return None;
        }
        let mut b = [0u8; N];
        if N <= INLINE_HEAD {
            // At most two words: loaded from the slice, with no call to `memcpy`.
            for (j, chunk) in b.chunks_exact_mut(8).enumerate() {
                chunk.copy_from_slice(&payload_word(bytes, j).to_le_bytes());
            }
        } else if let Some(dst) = b.get_mut(..bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        let [h0, h1, h2, h3] = header_words(header);
        Some(InlineUnit {
            head: [
                h0,
                h1,
                h2,
                h3,
                bytes.len() as u64 | u64::from(KIND_INLINE) << 32,
            ],
            bytes: b,
            entries: 1 + continuations(bytes.len()),
        })
    }

    /// Entries of the unit: the descriptor and its continuations.
    #[inline(always)]
    pub(crate) fn entries(&self) -> usize {
        self.entries
    }

    /// Word `i` (0..8) of entry `e` of the unit (0: the descriptor, `1 + c`: continuation
    /// `c`). The stamp word of a continuation and the slot word of the descriptor are zero;
    /// positions past the payload read as zero padding.
    #[inline(always)]
    pub(crate) fn word(&self, e: usize, i: usize) -> u64 {
        let at = match (e, i) {
            (0, 0..5) => return self.head[i],
            (0, 5) => return 0,
            (0, _) => 8 * (i - 6),
            (_, 4) => return 0,
            // Continuation words 0..3 and 5..7 carry bytes in order (word 4 is the ring's).
            _ => INLINE_HEAD + (e - 1) * CONT_BYTES + 8 * (i - usize::from(i > 4)),
        };
        let mut w = [0u8; 8];
        if let Some(src) = self.bytes.get(at..at + 8) {
            w.copy_from_slice(src);
        }
        u64::from_le_bytes(w)
    }
}

/// The first [`TxBuf::INLINE_CAPACITY`](transport_api::TxBuf::INLINE_CAPACITY) bytes of an
/// inline payload, from its descriptor words `first` and word `i` of its first continuation
/// entry as `cont(i)` (called only for the words that carry payload; any value when the
/// payload has none). Bytes past the payload's length are whatever the words held: the caller
/// keeps only the length.
#[inline(always)]
pub(crate) fn inline_small_bytes(first: &[u64; 8], cont: impl Fn(usize) -> u64) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (j, chunk) in out.chunks_exact_mut(8).enumerate() {
        let w = match payload_word_at(j) {
            (0, i) => first[i],
            (_, i) => cont(i),
        };
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// Where a validated descriptor's payload is, without the header and inline bytes
/// (see [`Descriptor::decode`], which is built on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Location {
    /// An inline payload of this many bytes.
    Inline(usize),
    /// `len` bytes in `slot`.
    Slot {
        /// The slot.
        slot: SlotRef,
        /// Payload length.
        len: u32,
    },
}

/// Continuation entries an inline payload of `len` bytes needs.
pub(crate) const fn continuations(len: usize) -> usize {
    len.saturating_sub(INLINE_HEAD).div_ceil(CONT_BYTES)
}
/// Descriptor kind: payload inline in words 6 and 7.
pub(crate) const KIND_INLINE: u8 = 0;
/// Descriptor kind: payload in a slot of the sender's pool.
pub(crate) const KIND_SLOT: u8 = 1;

/// Width of the slot index in a completion entry.
pub(crate) const ENTRY_INDEX_BITS: u32 = 24;

/// A slot of a sender's pool, with the generation of its current allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SlotRef {
    /// Size class.
    pub class: u8,
    /// Slot index within the class.
    pub index: u32,
    /// Allocation generation (incremented on every allocation of the slot).
    pub generation: u32,
}

impl SlotRef {
    /// Packs into a completion entry / lease token: `class | index << 8 | generation << 32`.
    /// Indices are below 2^24 by the geometry limits; higher bits are dropped.
    pub(crate) fn to_entry(self) -> u64 {
        u64::from(self.class)
            | (u64::from(self.index & ((1 << ENTRY_INDEX_BITS) - 1)) << 8)
            | (u64::from(self.generation) << 32)
    }

    /// Unpacks a completion entry. Any `u64` unpacks; the pool validates the result.
    pub(crate) fn from_entry(entry: u64) -> SlotRef {
        SlotRef {
            class: entry as u8,
            index: ((entry >> 8) as u32) & ((1 << ENTRY_INDEX_BITS) - 1),
            generation: (entry >> 32) as u32,
        }
    }
}

/// Where a descriptor's payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DescPayload {
    /// Up to [`INLINE_MAX`] bytes in the ring: the first [`INLINE_HEAD`] in the descriptor,
    /// the rest in [`continuations`]`(len)` entries after it.
    Inline {
        /// Number of payload bytes.
        len: u8,
        /// The first `min(len, INLINE_HEAD)` bytes; the rest of the array is zero.
        data: [u8; INLINE_HEAD],
    },
    /// `len` bytes at the start of a slot.
    Slot {
        /// The slot.
        slot: SlotRef,
        /// Number of payload bytes.
        len: u32,
    },
}

/// A decoded ring entry: frame header plus payload location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Descriptor {
    /// The frame header.
    pub header: FrameHeader,
    /// Where the payload is.
    pub payload: DescPayload,
}

/// Why a descriptor from the peer is invalid. Each variant carries the offending values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DescriptorError {
    /// Unknown kind byte.
    #[error("unknown descriptor kind {kind}")]
    BadKind {
        /// The kind found.
        kind: u8,
    },
    /// Bits that must be zero are not.
    #[error("descriptor word {word} has reserved bits set: {value:#018x}")]
    ReservedBits {
        /// Word index in the descriptor.
        word: usize,
        /// The whole word.
        value: u64,
    },
    /// Inline length above [`INLINE_MAX`].
    #[error("inline payload length {len} exceeds {INLINE_MAX}")]
    InlineTooLong {
        /// The length found.
        len: u32,
    },
    /// Class index out of range.
    #[error("slot class {class} out of range (the geometry has {nclasses} classes)")]
    BadClass {
        /// The class found.
        class: u8,
        /// Number of classes in the local geometry.
        nclasses: usize,
    },
    /// Slot index out of range for its class.
    #[error("slot index {index} out of range for class {class} ({count} slots)")]
    BadIndex {
        /// The class.
        class: u8,
        /// The index found.
        index: u32,
        /// Slots in that class.
        count: u32,
    },
    /// Payload length larger than the slot.
    #[error("payload length {len} exceeds slot size {slot_size} of class {class}")]
    LenOverSlot {
        /// The length found.
        len: u32,
        /// The class.
        class: u8,
        /// Its slot size.
        slot_size: u32,
    },
}

impl Descriptor {
    /// An inline descriptor, or `None` when `bytes` is longer than [`INLINE_MAX`]. Bytes
    /// after the first [`INLINE_HEAD`] go in continuation entries ([`Descriptor::encode_continuations`]).
    #[cfg(test)]
    pub(crate) fn inline(header: FrameHeader, bytes: &[u8]) -> Option<Descriptor> {
        if bytes.len() > INLINE_MAX {
            return None;
        }
        let mut data = [0u8; INLINE_HEAD];
        let head = bytes.len().min(INLINE_HEAD);
        data[..head].copy_from_slice(&bytes[..head]);
        Some(Descriptor {
            header,
            payload: DescPayload::Inline {
                len: bytes.len() as u8,
                data,
            },
        })
    }

    /// A descriptor for `len` bytes in `slot`.
    pub(crate) fn slot(header: FrameHeader, slot: SlotRef, len: u32) -> Descriptor {
        Descriptor {
            header,
            payload: DescPayload::Slot { slot, len },
        }
    }

    /// Payload length in bytes.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        match self.payload {
            DescPayload::Inline { len, .. } => usize::from(len),
            DescPayload::Slot { len, .. } => len as usize,
        }
    }

    /// True when the payload is empty.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The inline payload bytes carried by the descriptor entry (all of them when the length
    /// is at most [`INLINE_HEAD`]), `None` for a slot descriptor.
    #[cfg(test)]
    pub(crate) fn inline_head(&self) -> Option<&[u8]> {
        match &self.payload {
            DescPayload::Inline { len, data } => data.get(..usize::from(*len).min(INLINE_HEAD)),
            DescPayload::Slot { .. } => None,
        }
    }

    /// Continuation entries that follow this descriptor in the ring (0 for slot payloads).
    pub(crate) fn continuations(&self) -> usize {
        match self.payload {
            DescPayload::Inline { len, .. } => continuations(usize::from(len)),
            DescPayload::Slot { .. } => 0,
        }
    }

    /// Fills `out` with the continuation entries of an inline payload `bytes` (the bytes after
    /// the first [`INLINE_HEAD`]) and returns how many it used (at most [`MAX_CONT`]; bytes
    /// beyond [`INLINE_MAX`] are not encoded).
    #[cfg(test)]
    pub(crate) fn encode_continuations(bytes: &[u8], out: &mut [[u64; 8]; MAX_CONT]) -> usize {
        let bytes = bytes.get(..INLINE_MAX).unwrap_or(bytes);
        encode_inline_unit(&FrameHeader::default(), bytes, out).map_or(0, |(_, n)| n)
    }

    /// Copies the payload bytes of one continuation entry to the start of `out`: as many as
    /// fit, at most [`CONT_BYTES`].
    pub(crate) fn read_continuation(entry: &[u64; 8], out: &mut [u8]) {
        let mut b = [0u8; CONT_BYTES];
        for (i, &w) in CONT_WORDS.iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&entry[w].to_le_bytes());
        }
        let n = out.len().min(CONT_BYTES);
        out[..n].copy_from_slice(&b[..n]);
    }

    /// The eight ring words of this descriptor.
    pub(crate) fn encode(&self) -> [u64; 8] {
        let mut w = [0u64; 8];
        w[..4].copy_from_slice(&header_words(&self.header));
        match self.payload {
            DescPayload::Inline { len, data } => {
                w[4] = u64::from(len) | (u64::from(KIND_INLINE) << 32);
                w[6] = payload_word(&data, 0);
                w[7] = payload_word(&data, 1);
            }
            DescPayload::Slot { slot, len } => {
                w[4] =
                    u64::from(len) | (u64::from(KIND_SLOT) << 32) | (u64::from(slot.class) << 40);
                w[5] = u64::from(slot.index) | (u64::from(slot.generation) << 32);
            }
        }
        w
    }

    /// Decodes and validates eight ring words against the local geometry. Never panics.
    pub(crate) fn decode(w: &[u64; 8], geometry: &Geometry) -> Result<Descriptor, DescriptorError> {
        let payload = match Self::locate(w, geometry)? {
            Location::Inline(len) => {
                let mut data = [0u8; INLINE_HEAD];
                let n = len.min(INLINE_HEAD);
                data[..n].copy_from_slice(&inline_small_bytes(w, |_| 0)[..n]);
                DescPayload::Inline {
                    len: len as u8,
                    data,
                }
            }
            Location::Slot { slot, len } => DescPayload::Slot { slot, len },
        };
        Ok(Descriptor {
            header: header_from_words(w),
            payload,
        })
    }

    /// Validates eight ring words against the local geometry and says where the payload is:
    /// what [`Descriptor::decode`] checks, without building the header and inline bytes (the
    /// receive path reads those from the words directly). Never panics.
    pub(crate) fn locate(w: &[u64; 8], geometry: &Geometry) -> Result<Location, DescriptorError> {
        let len = w[4] as u32;
        let kind = (w[4] >> 32) as u8;
        let class = (w[4] >> 40) as u8;
        if w[4] >> 48 != 0 {
            return Err(DescriptorError::ReservedBits {
                word: 4,
                value: w[4],
            });
        }
        match kind {
            KIND_INLINE => {
                if class != 0 {
                    return Err(DescriptorError::ReservedBits {
                        word: 4,
                        value: w[4],
                    });
                }
                if w[5] != 0 {
                    return Err(DescriptorError::ReservedBits {
                        word: 5,
                        value: w[5],
                    });
                }
                if len as usize > INLINE_MAX {
                    return Err(DescriptorError::InlineTooLong { len });
                }
                Ok(Location::Inline(len as usize))
            }
            KIND_SLOT => {
                let nclasses = geometry.classes.len();
                let c = geometry
                    .classes
                    .get(usize::from(class))
                    .ok_or(DescriptorError::BadClass { class, nclasses })?;
                let index = w[5] as u32;
                let generation = (w[5] >> 32) as u32;
                if index >= c.slot_count {
                    return Err(DescriptorError::BadIndex {
                        class,
                        index,
                        count: c.slot_count,
                    });
                }
                if len > c.slot_size {
                    return Err(DescriptorError::LenOverSlot {
                        len,
                        class,
                        slot_size: c.slot_size,
                    });
                }
                Ok(Location::Slot {
                    slot: SlotRef {
                        class,
                        index,
                        generation,
                    },
                    len,
                })
            }
            kind => Err(DescriptorError::BadKind { kind }),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
