//! A mutual-exclusion lock for the endpoint's hot critical sections, whose unlock is a plain
//! store.
//!
//! `std::sync::Mutex` unlocks with an atomic swap (it must learn whether a thread sleeps on the
//! futex). On x86 that is a locked instruction: it waits until every earlier store of this core
//! is visible to the others. Right after a publish, that store is the ring entry the peer's CPU
//! is polling, so the unlock stalls for a cache-line round trip on every frame. A lock released
//! by a `Release` store (a plain `mov` on x86) lets the core go on while the line travels.
//!
//! The critical sections it guards are short and never `.await`: ring bookkeeping, a copy of at
//! most a few hundred bytes, a small allocation. Wake-up system calls (the peer's eventfd) are
//! made after the lock is released. A contender spins briefly, then yields its thread, then
//! sleeps in short steps; it never sleeps on a futex. Nothing here reads shared memory written by
//! the peer: the lock word is process-local.
//!
//! Under `--cfg loom` the lock word is a loom atomic, and a loom model
//! (`loom_spin_lock_excludes_and_publishes`) checks exclusion and the Acquire/Release hand-over.
//!
//! Like the endpoint's former `Mutex` use, a panic while the lock is held does not poison it:
//! every guarded state is consistent at each statement a panic could leave from.

use crate::core::sync::{AtomicBool, Ordering};
use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

/// A lock around a `T`, for sections that are short and never cross an `.await`.
#[derive(Debug, Default)]
pub(crate) struct SpinMutex<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to `value` to one holder at a time (the guard exists only
// while `locked` was set by this holder's successful compare-exchange, and is cleared only by
// its drop), exactly like `std::sync::Mutex`, which is `Sync` for `T: Send`.
unsafe impl<T: Send> Sync for SpinMutex<T> {}

/// Exclusive access to the value of a [`SpinMutex`]; unlocks when dropped.
///
/// Like `std::sync::MutexGuard` it is not `Send` (a future holding it across an `.await` cannot
/// be spawned on a multi-thread runtime, which keeps the "never across an await" rule checked by
/// the compiler), and it is `Sync` only when `T` is.
pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinMutex<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing `&SpinGuard` between threads shares only `&T` (through `Deref`), which is
// sound exactly when `T: Sync`; the raw-pointer marker above only serves to opt out of `Send`.
unsafe impl<T: Sync> Sync for SpinGuard<'_, T> {}

impl<T> SpinMutex<T> {
    /// A new, unlocked lock around `value`.
    pub(crate) fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock, spinning (then yielding the thread) while another holder has it.
    #[inline]
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        if self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        SpinGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    #[cold]
    fn lock_contended(&self) {
        let mut spins = 0u32;
        loop {
            while self.locked.load(Ordering::Relaxed) {
                backoff(&mut spins);
            }
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}

/// One round of waiting for the holder: a short spin, then yielding the thread (the holder may
/// have been preempted and need this CPU), and after that short sleeps: under real-time
/// priorities a yield never hands the CPU to a lower-priority holder, a sleep does.
#[cfg(not(loom))]
fn backoff(spins: &mut u32) {
    *spins = spins.saturating_add(1);
    if *spins <= 100 {
        std::hint::spin_loop();
    } else if *spins <= 200 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(std::time::Duration::from_micros(50));
    }
}

/// Under loom every wait round yields to the model's scheduler.
#[cfg(loom)]
fn backoff(_spins: &mut u32) {
    loom::thread::yield_now();
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard exists only while its holder owns the lock (see `lock`), so no
        // other reference to the value exists until the guard is dropped.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only access through the guard.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests;
