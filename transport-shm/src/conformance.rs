//! This backend described for the conformance suite (feature `conformance`).

use crate::layout::{Geometry, SlotClass};
use crate::{INLINE_MAX, ShmConfig, ShmListener, ShmTransport};
use std::sync::atomic::{AtomicU64, Ordering};
use transport_api::Result;
use transport_conformance::{Backend, Capabilities, PairOptions};

/// The `shm` backend under test.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShmBackend;

/// Geometry of a [`PairOptions::SMALL`] session: few descriptors and few slots per class.
pub fn small_geometry() -> Geometry {
    Geometry {
        ring_capacity: 8,
        classes: vec![
            SlotClass {
                slot_size: 256,
                slot_count: 8,
            },
            SlotClass {
                slot_size: 4096,
                slot_count: 4,
            },
            SlotClass {
                slot_size: 64 << 10,
                slot_count: 2,
            },
            SlotClass {
                slot_size: 1 << 20,
                slot_count: 1,
            },
        ],
    }
}

fn config(opts: PairOptions) -> ShmConfig {
    if opts.small {
        ShmConfig {
            geometry: small_geometry(),
            ..ShmConfig::default()
        }
    } else {
        ShmConfig::default()
    }
}

impl Backend for ShmBackend {
    type T = ShmTransport;
    type Listener = ShmListener;

    fn name(&self) -> &'static str {
        "shm"
    }

    fn capabilities(&self) -> Capabilities {
        let g = Geometry::default();
        let mut boundaries = vec![INLINE_MAX];
        boundaries.extend(g.classes.iter().map(|c| c.slot_size as usize));
        let small = small_geometry();
        Capabilities {
            boundaries,
            zero_copy: true,
            cross_process: true,
            // Each endpoint holds at most its own pool (every slot of its direction) plus the
            // peer's slots it received; both are bounded by one direction's payload memory.
            small_memory_bound: 2 * small
                .classes
                .iter()
                .map(|c| u64::from(c.slot_size) * u64::from(c.slot_count))
                .sum::<u64>(),
        }
    }

    async fn pair(&self, opts: PairOptions) -> Result<(ShmTransport, ShmTransport)> {
        crate::pair(config(opts)).await
    }

    async fn listen(&self, opts: PairOptions) -> Result<(ShmListener, String)> {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "transport-shm-conformance-{}-{}.sock",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let l = ShmListener::bind(&path, config(opts))?;
        Ok((l, path.display().to_string()))
    }

    async fn accept(&self, listener: &ShmListener) -> Result<ShmTransport> {
        listener.accept().await
    }

    async fn connect(&self, address: &str) -> Result<ShmTransport> {
        crate::connect(address).await
    }
}
