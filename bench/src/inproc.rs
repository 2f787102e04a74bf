//! Running a [`Transport`] backend between two threads of this process, each pinned like the
//! two processes of the cross-process rows and each with its own current-thread runtime.

use super::cross::{Peer, TransportSession, runtime};
use super::generic;
use super::procs::{PlaceCtx, pin_current_thread};
use super::{BenchError, BenchResult};
use transport_api::Transport;

/// Starts `b`'s side ([`generic::serve`]) on a new thread pinned to the peer CPU and returns
/// the session driving `a` from the calling thread (already pinned to the parent CPU).
pub fn start<T: Transport + 'static>(
    place: &PlaceCtx,
    name: &str,
    a: T,
    b: T,
) -> BenchResult<TransportSession<T>> {
    let cpu = place.child_cpu;
    let handle = std::thread::Builder::new()
        .name(format!("{name}-peer"))
        .spawn(move || {
            if let Some(cpu) = cpu {
                pin_current_thread(cpu)
                    .map_err(|e| BenchError::new(format!("cannot pin to CPU {cpu}: {e}")))?;
            }
            let rt = runtime()?;
            rt.block_on(generic::serve(&b))
        })
        .map_err(|e| BenchError::new(format!("cannot start the peer thread: {e}")))?;
    Ok(TransportSession::new(a, runtime()?, Peer::Thread(handle)))
}
