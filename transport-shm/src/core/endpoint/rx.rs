//! The receive half of an endpoint: taking units from the descriptor ring, holding the slots
//! of received payloads, and returning them through the completion ring.

use super::bump;
use crate::core::codec::{
    CONT_BYTES, DescPayload, Descriptor, INLINE_HEAD, SlotRef, continuations, inline_small_bytes,
};
use crate::core::layout::Geometry;
use crate::core::pool::HeldSet;
use crate::core::ring::{
    CompletionProducer, DESC_WORDS, DescConsumer, PushError, RingError, StampProbe,
};
use crate::core::sync::AtomicU64 as SharedWord;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use transport_api::Counters;

/// The receive half's state, behind the endpoint's receive lock.
pub(crate) struct RxState<S> {
    pub(crate) ring: DescConsumer<S>,
    completions: CompletionProducer<S>,
    pub(crate) held: HeldSet,
    /// Bytes of the slots in `held` (received payloads not dropped yet).
    pub(crate) held_bytes: u64,
    /// `bytes_received` and `frames_received` when a receive last had to wait; touched only
    /// on that slow path (the session's spin extension after large frames).
    pub(crate) waited_at: (u64, u64),
}

/// Reads the receive ring's stamps without the lock, so that polling an empty ring costs two
/// plain loads instead of a lock round trip.
pub(crate) struct RxProbe<S> {
    probe: StampProbe<S, DESC_WORDS>,
    /// The consumer's tail, mirrored after every change under the lock.
    next: AtomicU64,
}

impl<S: Deref<Target = [SharedWord]>> RxProbe<S> {
    /// A probe of `st`'s ring.
    pub(crate) fn new(st: &RxState<S>) -> Self
    where
        S: Clone,
    {
        RxProbe {
            probe: st.ring.probe(),
            next: AtomicU64::new(st.ring.tail()),
        }
    }

    /// False when the next entry is certainly not published yet, read without the lock. A true
    /// answer is only a hint (another receiver may take the entry first); a false one may also
    /// be stale when another task consumed concurrently, and then the next poll sees the new
    /// tail. Decisions to sleep are made under the lock ([`DescConsumer::prepare_park`]).
    #[inline]
    pub(crate) fn maybe_ready(&self) -> bool {
        self.probe.is_published(self.next.load(Ordering::Acquire))
    }

    /// Publishes the consumer's tail to [`RxProbe::maybe_ready`]; called under the lock.
    #[inline]
    pub(crate) fn mirror_tail(&self, st: &RxState<S>) {
        self.next.store(st.ring.tail(), Ordering::Release);
    }
}

impl<S: Deref<Target = [SharedWord]>> RxState<S> {
    /// The receive half over its two rings, with a held set for `geometry`.
    pub(crate) fn new(
        ring: DescConsumer<S>,
        completions: CompletionProducer<S>,
        geometry: &Geometry,
    ) -> Self {
        RxState {
            ring,
            completions,
            held: HeldSet::new(geometry),
            held_bytes: 0,
            waited_at: (0, 0),
        }
    }

    /// Gives a slot back to the sender through the completion ring. `true` when the sender
    /// waits for it: the caller rings its doorbell once the receive lock is released.
    #[must_use]
    pub(crate) fn give_back(&mut self, slot: SlotRef) -> bool {
        let _ = self.held.remove(slot);
        match self.completions.try_push(&[slot.to_entry()]) {
            Ok(()) => self.completions.consumer_needs_wake(),
            // The ring holds every slot of the direction, so it can only be full if the peer
            // stopped draining it while also publishing more slots than exist: it is broken or
            // gone, and the slot is simply not returned.
            Err(PushError::Full | PushError::Corrupt(_) | PushError::BadUnit { .. }) => {
                tracing::debug!(
                    backend = "shm",
                    ?slot,
                    "completion ring unusable; slot not returned"
                );
                false
            }
        }
    }

    /// A received payload of `size` slot bytes was dropped: its slot goes back to the sender.
    /// `true` when the sender must be woken (see [`RxState::give_back`]).
    #[must_use]
    pub(crate) fn release(&mut self, slot: SlotRef, size: usize) -> bool {
        self.held_bytes = self.held_bytes.saturating_sub(size as u64);
        self.give_back(slot)
    }

    /// Gives the `entries` of a frame of `len` bytes back to the producer and counts the frame
    /// (receive counters are written only here, under the receive lock). `true` when the
    /// producer waits for this room: the caller rings its doorbell once the lock is released.
    /// `entries` is at most the ring's capacity: the caller checked the unit against the ring
    /// before reading it.
    #[must_use]
    #[inline(always)]
    pub(crate) fn consumed(
        &mut self,
        probe: &RxProbe<S>,
        entries: u64,
        len: usize,
        counters: &Counters,
    ) -> bool {
        self.ring.advance(entries);
        probe.mirror_tail(self);
        let wake = self.ring.producer_needs_wake();
        bump(&counters.frames_received, 1);
        bump(&counters.bytes_received, len as u64);
        wake
    }

    /// The `len` bytes of an inline payload longer than a `TxBuf` holds, from the descriptor
    /// `first` at the tail and the continuation entries after it (checked to be in the ring).
    #[cold]
    pub(crate) fn read_inline(&self, first: &[u64; 8], len: usize) -> Vec<u8> {
        #[expect(
            clippy::slow_vector_initialization,
            reason = "`vec![0; len]` calls calloc, which bypasses glibc's per-thread \
                      cache and costs about twice a malloc plus a fill at this size"
        )]
        let mut v = Vec::with_capacity(len);
        v.resize(len, 0);
        let head = len.min(INLINE_HEAD);
        v[..head].copy_from_slice(&inline_small_bytes(first, |_| 0)[..head]);
        for k in 0..continuations(len) {
            if let Some(rest) = v.get_mut(INLINE_HEAD + k * CONT_BYTES..) {
                Descriptor::read_continuation(&self.ring.read(1 + k as u64), rest);
            }
        }
        v
    }

    /// Discards every published unit (at most one ring's worth: a peer that keeps publishing
    /// cannot keep the caller here), returning the slots they name to the sender. Stops at
    /// anything broken: there is nothing to return past it. `true` when the sender must be
    /// woken (it waits for ring room or for a slot).
    #[must_use]
    pub(crate) fn discard_all(&mut self, probe: &RxProbe<S>, geometry: &Geometry) -> bool {
        let mut wake = false;
        let mut budget = self.ring.capacity();
        while let Ok(Some(words)) = self.ring.peek() {
            let Ok(desc) = Descriptor::decode(&words, geometry) else {
                break;
            };
            let entries = 1 + desc.continuations() as u64;
            if entries > budget {
                break;
            }
            budget -= entries;
            self.ring.advance(entries);
            if let DescPayload::Slot { slot, .. } = desc.payload {
                if self.held.insert(slot).is_ok() {
                    wake |= self.give_back(slot);
                }
            }
        }
        probe.mirror_tail(self);
        wake | self.ring.producer_needs_wake()
    }

    /// Frames published and not taken yet (walking the units from the tail).
    pub(crate) fn queued(&self, geometry: &Geometry) -> u64 {
        self.ring.ready_units(|w| {
            Descriptor::decode(w, geometry)
                .ok()
                .map(|d| 1 + d.continuations() as u64)
        })
    }

    /// Announces that a receiver waits for the next unit; `Ok(true)` when it may sleep (see
    /// [`DescConsumer::prepare_park`]).
    pub(crate) fn prepare_park(&mut self) -> std::result::Result<bool, RingError> {
        self.ring.prepare_park()
    }
}
