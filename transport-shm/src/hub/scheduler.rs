//! The fair scheduler of [`HubHost::recv_any`]: round-robin over the peers that have frames,
//! a short spin over all of them, then one wait on every live session at once.

use super::host::HubHost;
use super::peer::PeerId;
use super::table::Shared;
use super::table::lock;
use crate::session::ShmTransport;
use crate::session::spin::answer_cap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Instant;
use transport_api::{Frame, Result, Transport};

/// What one lock-free pass over a [`Snapshot`] found.
enum Ready {
    /// A frame, from this peer.
    Frame(PeerId, Frame),
    /// No peer had a frame; this many were tried.
    Empty(usize),
    /// A session has ended (the pass stopped there).
    SessionEnded,
}

/// The live peers as they were at one value of [`Shared::members`], in `PeerId` order.
pub(super) struct Snapshot {
    members: u64,
    live: Vec<(PeerId, Arc<ShmTransport>)>,
}

impl Snapshot {
    /// The peers in rotation order: starting after the one served last.
    fn rotation(&self, sh: &Shared) -> impl Iterator<Item = &(PeerId, Arc<ShmTransport>)> {
        let last = sh.last_served.load(Ordering::Relaxed);
        let start = self.live.partition_point(|(id, _)| id.generation() <= last);
        self.live[start..].iter().chain(&self.live[..start])
    }

    /// One pass over the rotation, without the hub's lock: the first frame found (its peer
    /// recorded as served). A session found ended stops the pass: [`HubHost::recv_any`]'s full
    /// loop records the end and goes on with the others.
    fn take_ready(&self, sh: &Shared) -> Ready {
        let mut tried = 0;
        for (id, t) in self.rotation(sh) {
            tried += 1;
            match t.try_recv() {
                Ok(Some(f)) => {
                    sh.served(*id);
                    return Ready::Frame(*id, f);
                }
                Ok(None) => {}
                Err(_) => return Ready::SessionEnded,
            }
        }
        Ready::Empty(tried)
    }
}

impl HubHost {
    /// Receives the next frame from any peer, fairly (round-robin over the peers that have
    /// frames), waiting without polling until one arrives.
    ///
    /// Peers whose session ends are dropped from the rotation (with a `tracing` event) once
    /// their last frames were delivered; they never make `recv_any` fail. Returns `Closed` once
    /// the hub is closed, `Io` once the tokio runtime that bound it has shut down (nothing can
    /// admit a peer any more). With no peer attached it waits for one. Cancel-safe: a dropped
    /// `recv_any` consumes no frame.
    pub async fn recv_any(&self) -> Result<(PeerId, Frame)> {
        let sh = &self.shared;
        // Frames that are waiting, or arrive within the spin time, are taken by cheap passes
        // over a snapshot of the rotation (no waiter registration, no lock), yielding the
        // thread every few dozen tries as a session's own `recv` does, or on every pass when
        // the history says the peers share this CPU. When the spin time is over while the
        // answer to a host session's latest ring is due, the passes go on until then, as a
        // session's own `recv` does (see `AnswerWait`). A session found ended hands over to
        // the full loop below, which records it.
        let mut spin = sh.spin_history.start(sh.config.spin);
        let mut extended = false;
        let mut snap = sh.snapshot()?;
        loop {
            // One lock per call and per membership change, none per pass.
            if sh.members.load(Ordering::Acquire) != snap.members {
                snap = sh.snapshot()?;
            }
            match snap.take_ready(sh) {
                Ready::Frame(id, f) => {
                    sh.spin_history.succeeded(&spin);
                    if extended {
                        sh.answers
                            .hit(Instant::now(), answer_cap(sh.config.spin), None);
                    }
                    return Ok((id, f));
                }
                Ready::SessionEnded => {
                    // The rest of the spin is paced below; its answer would be timed there
                    // with this end's own wake-up in it.
                    if extended {
                        sh.answers.missed();
                    }
                    break;
                }
                Ready::Empty(_) if sh.config.spin.is_zero() => break,
                // The clock is read (and the thread yielded) every few dozen `try_recv`s, not
                // every pass: a pass tries every peer, so with many peers this is every pass.
                Ready::Empty(tried) => {
                    if !spin.pause(tried.max(1)) {
                        if extended {
                            sh.answers.missed();
                            break;
                        }
                        let more = sh
                            .answers
                            .remaining(Instant::now(), answer_cap(sh.config.spin));
                        if more.is_zero() {
                            break;
                        }
                        extended = true;
                        spin = sh.spin_history.start(more);
                    }
                }
            }
        }
        drop(snap);
        loop {
            let changed = sh.peers_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            // Only `live` is kept while parked: a peer that leaves is dropped from it at the
            // next wake-up, so no stale reference keeps its region from being reclaimed.
            let live: Vec<_> = sh.snapshot()?.rotation(sh).cloned().collect();
            let mut ended = false;
            for (id, t) in &live {
                match t.try_recv() {
                    Ok(Some(f)) => {
                        sh.served(*id);
                        sh.answered();
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
            // The rest of the spin, after a session ended mid-spin (rare): paced by the clock
            // alone, and not recorded in the history (its yields are not timed).
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
                        sh.answered();
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
    /// Records that `recv_any` got a frame past its lock-free spin (on a pass after a session
    /// ended, or after parking): the answer to the host sessions' latest ring, if one awaits
    /// it (see `AnswerWait`; the frames of many sessions are not counted, so any frame may
    /// be timed as the answer).
    fn answered(&self) {
        if self.answers.pending() {
            self.answers
                .answered(Instant::now(), answer_cap(self.config.spin), None);
        }
    }

    /// The live peers now, with the membership count they belong to.
    pub(super) fn snapshot(&self) -> Result<Snapshot> {
        let st = lock(&self.state);
        if st.closed {
            return Err(st.closed_error());
        }
        // Read under the lock: a change made after this snapshot moves the count after it, so
        // a stale snapshot is always noticed (one made just before may move it after too: one
        // refresh more than needed).
        let members = self.members.load(Ordering::Acquire);
        let live = st
            .peers
            .iter()
            .filter_map(|(id, e)| e.transport.clone().map(|t| (*id, t)))
            .collect();
        Ok(Snapshot { members, live })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::HubConfig;

    /// A pass over a snapshot takes a frame while another thread holds the hub's lock: the
    /// spinning part of `recv_any` takes no lock per pass.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pass_over_the_snapshot_takes_no_lock() {
        let path = std::env::temp_dir().join(format!(
            "transport-shm-sched-unit-{}.sock",
            std::process::id()
        ));
        let hub = HubHost::bind(&path, HubConfig::default()).unwrap();
        let (accepted, peer) = tokio::join!(hub.accept(), crate::connect(&path));
        let ((id, _host), peer) = (accepted.unwrap(), peer.unwrap());
        peer.send(Frame::new(vec![5u8; 300])).await.unwrap();
        let sh = hub.shared.clone();
        let snap = sh.snapshot().unwrap();
        assert_eq!(snap.members, sh.members.load(Ordering::Acquire));
        let (tx, rx) = std::sync::mpsc::channel();
        let held = lock(&sh.state);
        let pass = {
            let sh = sh.clone();
            std::thread::spawn(move || {
                let got = match snap.take_ready(&sh) {
                    Ready::Frame(from, f) => Some((from, f.bytes().to_vec())),
                    _ => None,
                };
                let _ = tx.send(got);
            })
        };
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the pass waited for the hub's lock");
        drop(held);
        pass.join().unwrap();
        assert_eq!(got, Some((id, vec![5u8; 300])));
        assert_eq!(sh.last_served.load(Ordering::Relaxed), id.generation());
        hub.close();
        let _ = std::fs::remove_file(&path);
    }
}
