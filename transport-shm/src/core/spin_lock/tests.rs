//! Unit tests of `spin_lock`.

use super::*;
use std::sync::Arc;

#[test]
fn holders_are_mutually_exclusive() {
    // Non-atomic read-modify-writes under the lock: any overlap of two holders loses an
    // increment, which the final count would show.
    let m = Arc::new(SpinMutex::new((0u64, 0u64)));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for _ in 0..50_000 {
                    let mut g = m.lock();
                    let v = g.0;
                    std::hint::black_box(&mut *g);
                    g.0 = v + 1;
                    g.1 = g.1.wrapping_add(v);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let g = m.lock();
    assert_eq!(g.0, 200_000);
    assert_eq!(g.1, (0..200_000u64).sum::<u64>());
}

#[test]
fn a_panicking_holder_releases_the_lock() {
    let m = Arc::new(SpinMutex::new(1u32));
    let m2 = m.clone();
    let r = std::thread::spawn(move || {
        let _g = m2.lock();
        panic!("holder fails");
    })
    .join();
    assert!(r.is_err());
    *m.lock() += 1;
    assert_eq!(*m.lock(), 2);
}
