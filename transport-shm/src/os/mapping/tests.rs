//! Unit tests of `mapping`.

use super::*;
use std::sync::atomic::Ordering;

fn anon(len: usize) -> Arc<Mapping> {
    Mapping::new(
        memmap2::MmapOptions::new()
            .len(len)
            .map_anon()
            .unwrap()
            .into(),
    )
}

#[test]
fn views_are_checked() {
    let m = anon(4096);
    assert_eq!(
        m.words(4, 1).unwrap_err(),
        MappingError::Misaligned { offset: 4 }
    );
    assert!(m.words(4096 - 8, 1).is_ok());
    assert!(matches!(
        m.words(4096 - 8, 2),
        Err(MappingError::OutOfBounds { .. })
    ));
    assert!(matches!(
        m.words(8, usize::MAX / 4),
        Err(MappingError::OutOfBounds { .. })
    ));
    assert!(matches!(
        m.bytes(usize::MAX, 2),
        Err(MappingError::OutOfBounds { .. })
    ));
    let w = m.words(64, 2).unwrap();
    w[1].store(7, Ordering::Relaxed);
    let b = m.bytes(72, 8).unwrap();
    assert_eq!(b.to_vec(8).unwrap(), 7u64.to_ne_bytes());
    b.write(0, &9u64.to_ne_bytes()).unwrap();
    assert_eq!(w[1].load(Ordering::Relaxed), 9);
    assert!(b.write(1, &[0; 8]).is_err());
    assert!(b.read(8, &mut [0; 1]).is_err());
    assert!(b.read(8, &mut []).is_ok());
}

#[test]
fn region_views_are_relative_checked_and_signal_their_end() {
    struct Flag(Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let m = anon(3 * 4096);
    let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
    assert!(matches!(
        m.region(8, 64, Box::new(())),
        Err(MappingError::Misaligned { offset: 8 })
    ));
    assert!(matches!(
        m.region(4096, 3 * 4096, Box::new(())),
        Err(MappingError::OutOfBounds { .. })
    ));
    let r = m.region(4096, 4096, Box::new(Flag(gone.clone()))).unwrap();
    assert_eq!(r.len(), 4096);
    // Offsets are relative to the region; its bounds are its own.
    r.words(0, 1).unwrap()[0].store(0xabcd, Ordering::Relaxed);
    assert_eq!(m.words(4096, 1).unwrap()[0].load(Ordering::Relaxed), 0xabcd);
    assert!(r.words(4096 - 8, 2).is_err());
    assert!(r.bytes(4096, 1).is_err());
    let b = r.bytes(4095, 1).unwrap();
    b.write(0, &[7]).unwrap();
    assert_eq!(m.bytes(2 * 4096 - 1, 1).unwrap().to_vec(1).unwrap(), [7]);
    // A region of a region nests.
    let rr = r.region(64, 128, Box::new(())).unwrap();
    rr.bytes(0, 1).unwrap().write(0, &[9]).unwrap();
    assert_eq!(m.bytes(4096 + 64, 1).unwrap().to_vec(1).unwrap(), [9]);
    drop(rr);
    // The guard goes with the last view into the region.
    drop(r);
    assert!(!gone.load(Ordering::SeqCst));
    drop(b);
    assert!(gone.load(Ordering::SeqCst));
}
