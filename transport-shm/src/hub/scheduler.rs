//! The fair scheduler of [`HubHost::recv_any`]: round-robin over the peers that have frames,
//! a short spin over all of them, then one wait on every live session at once.

use super::host::HubHost;
use super::peer::PeerId;
use super::table::lock;
use super::table::{Entry, Shared};
use crate::session::ShmTransport;
use crate::session::waiter::Spin;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use transport_api::{Frame, Result, Transport, TransportError};

/// What one pass of [`Shared::take_ready`] found.
pub(super) enum Ready {
    /// A frame, from this peer.
    Frame(PeerId, Frame),
    /// No peer had a frame; this many were tried.
    Empty(usize),
    /// A session has ended (the pass stopped there).
    SessionEnded,
}

impl HubHost {
    /// Receives the next frame from any peer, fairly (round-robin over the peers that have
    /// frames), waiting without polling until one arrives.
    ///
    /// Peers whose session ends are dropped from the rotation (with a `tracing` event) once
    /// their last frames were delivered; they never make `recv_any` fail. Returns `Closed` once
    /// the hub is closed. With no peer attached it waits for one. Cancel-safe: a dropped
    /// `recv_any` consumes no frame.
    pub async fn recv_any(&self) -> Result<(PeerId, Frame)> {
        let sh = &self.shared;
        // Frames that are waiting, or arrive within the spin time, are taken by cheap passes
        // over the rotation (no waiter registration, no snapshot), yielding the thread every
        // few dozen tries as a session's own `recv` does. A session found ended hands over to
        // the full loop below, which records it.
        let mut spin = Spin::new(sh.config.spin);
        loop {
            match sh.take_ready()? {
                Ready::Frame(id, f) => return Ok((id, f)),
                Ready::SessionEnded => break,
                Ready::Empty(_) if sh.config.spin.is_zero() => break,
                // The clock is read (and the thread yielded) every few dozen `try_recv`s, not
                // every pass: a pass tries every peer, so with many peers this is every pass.
                Ready::Empty(tried) => {
                    if !spin.pause(tried.max(1)) {
                        break;
                    }
                }
            }
        }
        loop {
            let changed = sh.peers_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let live = sh.rotation()?;
            let mut ended = false;
            for (id, t) in &live {
                match t.try_recv() {
                    Ok(Some(f)) => {
                        sh.served(*id);
                        return Ok((*id, f));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        sh.session_ended(*id, &e);
                        ended = true;
                    }
                }
            }
            if ended {
                continue;
            }
            if spin.pause_timed() {
                continue;
            }
            // Park on every live peer at once (`readable` neither spins nor takes a frame),
            // plus membership changes; then take the frame with `try_recv` above.
            let mut futs: Vec<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = live
                .iter()
                .map(|(_, t)| Box::pin(t.readable()) as _)
                .collect();
            let woke = std::future::poll_fn(|cx| {
                for (i, f) in futs.iter_mut().enumerate() {
                    if let Poll::Ready(r) = f.as_mut().poll(cx) {
                        return Poll::Ready(Some((i, r)));
                    }
                }
                if changed.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                Poll::Pending
            })
            .await;
            drop(futs);
            if let Some((i, ())) = woke {
                // Serve the peer that woke us first, then the rotation continues as usual.
                let (id, t) = &live[i];
                match t.try_recv() {
                    Ok(Some(f)) => {
                        sh.served(*id);
                        return Ok((*id, f));
                    }
                    Ok(None) => {}
                    Err(e) => sh.session_ended(*id, &e),
                }
            }
        }
    }
}

impl Shared {
    /// The live peers, starting after the one served last.
    pub(super) fn rotation(&self) -> Result<Vec<(PeerId, Arc<ShmTransport>)>> {
        let st = lock(&self.state);
        if st.closed {
            return Err(TransportError::Closed);
        }
        let live = |(id, e): (&PeerId, &Entry)| e.transport.clone().map(|t| (*id, t));
        Ok(match st.last_served {
            Some(last) => st
                .peers
                .range((std::ops::Bound::Excluded(last), std::ops::Bound::Unbounded))
                .chain(st.peers.range(..=last))
                .filter_map(live)
                .collect(),
            None => st.peers.iter().filter_map(live).collect(),
        })
    }

    /// One pass over the rotation under the hub's lock, in the same order as [`Self::rotation`]:
    /// the first frame found (its peer recorded as served). A session found ended stops the
    /// pass: [`HubHost::recv_any`]'s full loop records the end (outside this lock) and goes on
    /// with the others.
    pub(super) fn take_ready(&self) -> Result<Ready> {
        let mut st = lock(&self.state);
        if st.closed {
            return Err(TransportError::Closed);
        }
        let (after, up_to) = match st.last_served {
            Some(last) => (
                st.peers
                    .range((std::ops::Bound::Excluded(last), std::ops::Bound::Unbounded)),
                Some(st.peers.range(..=last)),
            ),
            None => (st.peers.range::<PeerId, _>(..), None),
        };
        let (mut found, mut tried) = (None, 0);
        for (id, e) in after.chain(up_to.into_iter().flatten()) {
            let Some(t) = &e.transport else {
                continue;
            };
            tried += 1;
            match t.try_recv() {
                Ok(Some(f)) => {
                    found = Some((*id, f));
                    break;
                }
                Ok(None) => {}
                Err(_) => return Ok(Ready::SessionEnded),
            }
        }
        Ok(match found {
            Some((id, f)) => {
                st.last_served = Some(id);
                Ready::Frame(id, f)
            }
            None => Ready::Empty(tried),
        })
    }
}
