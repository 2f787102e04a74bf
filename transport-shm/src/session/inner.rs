//! The session's shared state and its operations that never wait: take a frame, lease a slot,
//! publish a frame. Each asks the endpoint ([`crate::core::endpoint`]) under the half's lock,
//! then, with the lock released, rings the peer's doorbell if the endpoint said so and wakes
//! local waiters.

use super::link::Link;
use super::rx::RxShared;
use super::spin::SpinHistory;
use super::tx::TxShared;
use crate::core::codec::{
    CONT_BYTES, Descriptor, INLINE_HEAD, INLINE_MAX, InlineUnit, Location, MAX_CONT, SlotRef,
    continuations, header_from_words, inline_small_bytes,
};
use crate::core::endpoint::gate::{CLOSED, FAILED, Status};
use crate::core::endpoint::tx::TxState;
use crate::core::ring::{PushError, RingError};
use crate::os::lease::{self, ReceivedSlot, SlotView};
use crate::os::mapping::SharedWords;
use bytes::Bytes;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;
use transport_api::{Frame, FrameHeader, LeaseOwner, Payload, Result, TransportError, TxBuf};

pub(crate) struct Inner {
    pub(crate) link: Arc<Link>,
    pub(crate) tx: Arc<TxShared>,
    pub(crate) rx: Arc<RxShared>,
    pub(crate) owner: Arc<dyn LeaseOwner>,
    pub(crate) bell: AsyncFd<OwnedFd>,
    /// Wakes local waiters on status changes and after a doorbell drain.
    pub(crate) local: Notify,
    pub(crate) waiters: AtomicUsize,
    pub(crate) status: Status,
    pub(crate) spin: Duration,
    /// How this end's spins have been going (see [`SpinHistory`]).
    pub(crate) spin_history: SpinHistory,
    pub(crate) max_payload: usize,
    /// Largest payload sent inline in the ring (see [`inline_max`]).
    pub(crate) inline_max: usize,
    /// The session's tracing span: its events (start, close, peer death, corrupt input) are
    /// recorded inside it.
    pub(crate) span: tracing::Span,
}

/// Largest payload this end sends inline through a ring of `capacity` entries: a frame takes at
/// most half the ring, so a sender never waits for more room than a ring can free at once.
pub(crate) fn inline_max(capacity: u32) -> usize {
    let entries = (capacity as usize / 2).max(1);
    INLINE_HEAD + (entries - 1).min(MAX_CONT) * CONT_BYTES
}

impl Inner {
    /// Wakes every local waiter (of a frame, of room, of a slot) to re-check the session after
    /// its status changed.
    pub(crate) fn wake_all_waiters(&self) {
        self.local.notify_waiters();
        self.tx.slot_freed.notify_waiters();
    }

    /// Records that the peer broke the protocol (`detail`) and wakes every local waiter.
    pub(crate) fn fail(&self, detail: String) {
        self.span.in_scope(|| self.status.fail(detail));
        self.wake_all_waiters();
    }

    /// This process can no longer wait on the session (`e`, from the doorbell): see
    /// [`Status::fail_wait`](crate::core::endpoint::gate::Status::fail_wait). Local waiters are
    /// told, so that each finds out on its own.
    pub(crate) fn fail_io(&self, e: &std::io::Error) -> TransportError {
        let err = self.span.in_scope(|| self.status.fail_wait(e));
        self.wake_all_waiters();
        err
    }

    pub(crate) fn fail_ring(&self, what: &str, e: RingError) -> TransportError {
        let detail = format!("{what}: {e}");
        self.fail(detail.clone());
        TransportError::corrupt(detail)
    }

    /// Wakes local waiters after this task published or took a frame, when there are any.
    pub(crate) fn kick_waiters(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.local.notify_waiters();
        }
    }

    /// Marks the session corrupt with `detail` and returns that error.
    fn corrupt<T>(&self, detail: String) -> Result<T> {
        self.fail(detail.clone());
        Err(TransportError::corrupt(detail))
    }

    /// One receive attempt that also ends the session's stream: `Some(Err)` once the peer is
    /// gone and everything it published was delivered.
    pub(crate) fn take_or_end(&self) -> Result<Option<Frame>> {
        match self.try_take(true) {
            Ok(None) => self.end_or_none(),
            r => r,
        }
    }

    /// The rest of [`Inner::take_or_end`] once the lock-free probe found nothing (out of
    /// line: keeps the receive that finds a frame short).
    #[inline(never)]
    fn end_or_none(&self) -> Result<Option<Frame>> {
        if let Some(end) = self.status.recv_end() {
            // The peer is gone or closed: deliver what it published, then report it (asking
            // the ring itself, not the lock-free hint, before ending the stream).
            return match self.try_take(false)? {
                Some(f) => Ok(Some(f)),
                None => Err(end),
            };
        }
        Ok(None)
    }

    /// Takes the next frame if one is published. `probe`: look with the lock-free hint first
    /// (cheap polling); without it the answer comes from the ring under the lock.
    #[inline(always)]
    pub(crate) fn try_take(&self, probe: bool) -> Result<Option<Frame>> {
        if self.status.is(CLOSED | FAILED) {
            return Err(self.status.take_blocker());
        }
        if probe && !self.rx.probe.maybe_ready() {
            return Ok(None);
        }
        let mut st = self.rx.lock();
        let words = match st.ring.peek() {
            Ok(Some(w)) => w,
            Ok(None) => return Ok(None),
            Err(e) => {
                drop(st);
                return self.corrupt(format!("receive ring: {e}"));
            }
        };
        let location = match Descriptor::locate(&words, self.link.seg.layout().geometry()) {
            Ok(l) => l,
            Err(e) => {
                drop(st);
                return self.corrupt(format!("descriptor: {e}"));
            }
        };
        let payload = match location {
            Location::Inline(len) => {
                let conts = continuations(len);
                let capacity = st.ring.capacity();
                if conts as u64 >= capacity {
                    drop(st);
                    return self.corrupt(format!(
                        "an inline payload of {len} bytes needs {} ring entries, the ring holds \
                         {capacity}",
                        1 + conts
                    ));
                }
                // Copied out before its entries are given back: from whole words into the
                // frame itself when it fits (no allocation), else onto the heap.
                if len <= TxBuf::INLINE_CAPACITY {
                    // Only the continuation words that carry these bytes are loaded.
                    let ring = &st.ring;
                    let cont = |i| if conts > 0 { ring.word(1, i) } else { 0 };
                    if let Some(b) = TxBuf::inline_from_array(inline_small_bytes(&words, cont), len)
                    {
                        let wake = self.rx.consumed(&mut st, 1 + conts as u64, len);
                        self.rx.unlock_and_wake(st, wake);
                        self.kick_waiters();
                        // Returned from here: the frame, the largest value on this path, is
                        // built once.
                        let header = header_from_words(&words);
                        return Ok(Some(Frame::with_header(header, Payload::Buf(b))));
                    }
                }
                let payload = Payload::Bytes(Bytes::from(st.read_inline(&words, len)));
                let wake = self.rx.consumed(&mut st, 1 + conts as u64, len);
                self.rx.unlock_and_wake(st, wake);
                payload
            }
            Location::Slot { slot, len } => {
                let Some(view) = SlotView::of(&self.link.seg, self.link.side.rx(), slot) else {
                    drop(st);
                    return self.corrupt(format!(
                        "descriptor names slot {slot:?} outside the segment"
                    ));
                };
                if let Err(e) = st.held.insert(slot) {
                    drop(st);
                    return self.corrupt(format!("descriptor reuses a held slot: {e}"));
                }
                st.held_bytes += view.size() as u64;
                let wake = self.rx.consumed(&mut st, 1, len as usize);
                self.rx.unlock_and_wake(st, wake);
                Payload::Bytes(Bytes::from_owner(ReceivedSlot::new(
                    self.rx.clone(),
                    slot,
                    view,
                    len as usize,
                )))
            }
        };
        self.kick_waiters();
        Ok(Some(Frame::with_header(header_from_words(&words), payload)))
    }

    /// The peer's death is noticed under the transmit lock (in-flight slots reclaimed) before
    /// its flag is published: a sender that passed `send_blocker` just before must not publish
    /// or lease after the reclaim, or its slot would stay in flight forever.
    fn check_not_reclaimed(&self, st: &TxState<SharedWords>) -> Result<()> {
        if st.reclaimed {
            return Err(self
                .status
                .send_blocker()
                .unwrap_or(TransportError::PeerDied));
        }
        Ok(())
    }

    /// Leases a slot for `len` bytes if one is free now.
    pub(crate) fn try_alloc(&self, len: usize) -> Result<Option<TxBuf>> {
        if let Some(e) = self.status.send_blocker() {
            return Err(e);
        }
        let mut st = self.tx.lock();
        self.check_not_reclaimed(&st)?;
        let mut drained = false;
        let slot = loop {
            match st.pool.alloc(len) {
                Ok(Some(s)) => break s,
                // Returned slots are taken back only when the class runs dry: one pass over
                // the completion ring then serves many allocations.
                Ok(None) if !drained => {
                    drained = true;
                    if let Err(e) = self.tx.drain(&mut st) {
                        drop(st);
                        self.fail(e.to_string());
                        return Err(e);
                    }
                }
                Ok(None) => return Ok(None),
                Err(_) => {
                    return Err(TransportError::PayloadTooLarge {
                        len,
                        max: self.max_payload,
                    });
                }
            }
        };
        drop(st);
        SlotView::of(&self.link.seg, self.link.side.tx(), slot)
            .and_then(|view| {
                lease::lease(view, len, view.size(), slot.to_entry(), self.owner.clone())
            })
            .map(Some)
            .ok_or_else(|| TransportError::corrupt("own slot outside the segment"))
    }

    /// Tries to publish a descriptor. For a slot payload, `buf` is the lease; it is taken only
    /// when the descriptor is published, so a failure or cancellation frees it.
    pub(crate) fn try_publish(&self, header: FrameHeader, body: &mut Body) -> Result<bool> {
        match body {
            Body::Inline(p) => self.try_publish_inline(&header, p),
            Body::Slot { buf, zero_copy } => {
                // The send blocker is checked under the lock, in `push_unit`; on an error the
                // lease stays in `buf` and is freed with it.
                let Some(b) = buf else {
                    return Err(TransportError::Closed);
                };
                let slot = SlotRef::from_entry(lease_token(b, &self.owner)?);
                let first = Descriptor::slot(header, slot, b.len() as u32).encode();
                let len = b.len();
                let zero_copy = *zero_copy;
                self.push_unit::<true>(1, |_, i| first[i], len, zero_copy, |st| {
                    if let Some(b) = buf.take() {
                        let _ = b.take_lease(&self.owner);
                    }
                    if let Err(e) = st.pool.mark_in_flight(slot) {
                        tracing::error!(backend = "shm", error = %e, "own slot in an unexpected state");
                    }
                })
            }
        }
    }

    /// Whether a frame with `payload` is published inline in the ring (`send` and `try_send`
    /// route it through [`Inner::try_publish_inline`]): small, and not a buffer leased from
    /// this session (that one is sent from its slot without a copy). `PayloadTooLarge` for a
    /// payload no route can carry.
    #[inline(always)]
    pub(crate) fn travels_inline(&self, payload: &Payload) -> Result<bool> {
        let len = payload.len();
        if len > self.max_payload {
            return Err(TransportError::PayloadTooLarge {
                len,
                max: self.max_payload,
            });
        }
        Ok(len <= self.inline_max && !is_lease_of(payload, &self.owner))
    }

    /// Tries to publish `bytes` (at most `INLINE_MAX`) inline in the ring, straight from the
    /// caller's memory: each ring word is computed from a padded copy sized for the unit
    /// ([`InlineUnit`]) and stored in place.
    /// The send blocker (closed, failed, peer gone) is checked under the transmit lock, in
    /// [`Inner::push_unit`].
    pub(crate) fn try_publish_inline(&self, header: &FrameHeader, bytes: &[u8]) -> Result<bool> {
        let len = bytes.len();
        // The padded copy is made before taking the lock.
        if len <= INLINE_HEAD {
            if let Some(u) = InlineUnit::<INLINE_HEAD>::new(header, bytes) {
                return self.push_unit::<false>(
                    u.entries(),
                    |e, i| u.word(e, i),
                    len,
                    false,
                    |_| {},
                );
            }
        } else if len <= INLINE_HEAD + CONT_BYTES {
            if let Some(u) = InlineUnit::<{ INLINE_HEAD + CONT_BYTES }>::new(header, bytes) {
                return self.push_unit::<false>(
                    u.entries(),
                    |e, i| u.word(e, i),
                    len,
                    false,
                    |_| {},
                );
            }
        } else if let Some(u) = InlineUnit::<INLINE_MAX>::new(header, bytes) {
            return self.push_unit::<false>(u.entries(), |e, i| u.word(e, i), len, false, |_| {});
        }
        Err(TransportError::PayloadTooLarge {
            len,
            max: INLINE_MAX,
        })
    }

    /// Publishes a unit through the endpoint ([`TxState::push_unit`]) if the ring has room now
    /// (`Ok(false)` if not), then rings the receiver's doorbell after unlocking if it sleeps.
    #[inline(always)]
    fn push_unit<const SLOT: bool>(
        &self,
        entries: usize,
        word: impl Fn(usize, usize) -> u64,
        len: usize,
        zero_copy: bool,
        published: impl FnOnce(&mut TxState<SharedWords>),
    ) -> Result<bool> {
        let mut st = self.tx.lock();
        // Only a slot must not be published after a reclaim (it would stay in flight forever);
        // an inline unit holds nothing of the pool, and one published to a receiver that is
        // gone needs no delivery.
        if SLOT {
            self.check_not_reclaimed(&st)?;
        }
        // `close` sets CLOSED under this lock: a unit is published either before the close
        // (and the peer drains it before it sees the close) or not at all.
        if let Some(e) = self.status.send_blocker() {
            return Err(e);
        }
        let wake = match st.push_unit(entries, word, published) {
            Ok(wake) => wake,
            Err(PushError::Full) => return Ok(false),
            Err(PushError::Corrupt(e)) => {
                drop(st);
                return self.corrupt(format!("transmit ring: {e}"));
            }
            // `inline_max` keeps every unit within half the ring.
            Err(e @ PushError::BadUnit { .. }) => {
                drop(st);
                return Err(TransportError::Config(format!("transmit ring: {e}")));
            }
        };
        st.count_sent(&self.link.counters, len, zero_copy);
        drop(st);
        if wake {
            self.link.ring_peer();
        }
        Ok(true)
    }

    /// Converts a payload into what goes on the ring without waiting: a buffer leased from this
    /// endpoint is sent as it is, a small payload goes inline, any other is copied into a slot
    /// if one is free now. `Err(payload)` when no slot is free.
    pub(crate) fn try_prepare(&self, payload: Payload) -> Result<Result<Body, Payload>> {
        match payload {
            Payload::Buf(b) if b.is_leased_from(&self.owner) => Ok(Ok(Body::Slot {
                buf: Some(b),
                zero_copy: true,
            })),
            p if p.len() <= self.inline_max => Ok(Ok(Body::Inline(p))),
            p => Ok(match self.try_alloc(p.len())? {
                Some(mut buf) => {
                    buf.copy_from_slice(&p);
                    Ok(Body::Slot {
                        buf: Some(buf),
                        zero_copy: false,
                    })
                }
                None => Err(p),
            }),
        }
    }
}

/// True when `p` is a buffer leased from `owner` (it is sent from its slot, without a copy).
fn is_lease_of(p: &Payload, owner: &Arc<dyn LeaseOwner>) -> bool {
    matches!(p, Payload::Buf(b) if b.is_leased_from(owner))
}

fn lease_token(b: &TxBuf, owner: &Arc<dyn LeaseOwner>) -> Result<u64> {
    // `take_lease` consumes; peek at the token by the documented encoding instead.
    b.lease_token(owner)
        .ok_or_else(|| TransportError::corrupt("buffer is not ours"))
}

/// A payload being sent.
pub(crate) enum Body {
    /// Up to `INLINE_MAX` bytes, carried in the descriptor and its continuation entries.
    Inline(Payload),
    /// A leased slot (`None` once published); `zero_copy` when the caller filled it in place.
    Slot { buf: Option<TxBuf>, zero_copy: bool },
}

impl Body {
    /// How many ring entries this body takes when published.
    pub(crate) fn ring_entries(&self) -> u64 {
        match self {
            Body::Inline(p) => 1 + continuations(p.len()) as u64,
            Body::Slot { .. } => 1,
        }
    }

    /// What the caller gave, back (for `TrySendError::Full`).
    pub(crate) fn into_payload(self) -> Payload {
        match self {
            Body::Inline(p) => p,
            Body::Slot { buf, .. } => buf.map(Payload::Buf).unwrap_or_default(),
        }
    }
}
