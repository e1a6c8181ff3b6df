//! Locks that outlive a panic.
//!
//! A std `Mutex` or `RwLock` whose holder panicked is *poisoned*: every later
//! `lock().unwrap()` panics too, so one bad request in a long-running server
//! becomes a failure of every request after it. The services take a poisoned
//! lock over instead ([`MutexExt::locked`], [`RwLockExt::read_locked`],
//! [`RwLockExt::write_locked`]): their critical sections are short and
//! validate before they write, so what a panic leaves behind is at worst one
//! half-applied update, never a state later requests cannot use, and the
//! panic itself is still logged and fails its own request.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// [`Mutex::lock`] that takes a poisoned lock over.
pub trait MutexExt<T: ?Sized> {
    /// Locks, whether or not an earlier holder panicked.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> MutexExt<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// [`RwLock::read`] and [`RwLock::write`] that take a poisoned lock over.
pub trait RwLockExt<T: ?Sized> {
    /// Shared access, whether or not an earlier writer panicked.
    fn read_locked(&self) -> RwLockReadGuard<'_, T>;
    /// Exclusive access, whether or not an earlier writer panicked.
    fn write_locked(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> RwLockExt<T> for RwLock<T> {
    fn read_locked(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_locked(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_under_the_lock_does_not_fail_later_users() {
        let m = Mutex::new(1);
        let rw = RwLock::new(1);
        let _ = std::panic::catch_unwind(|| {
            let _m = m.lock().unwrap();
            let _rw = rw.write().unwrap();
            panic!("a request handler panicked");
        });
        assert!(m.is_poisoned() && rw.is_poisoned());
        *m.locked() += 1;
        *rw.write_locked() += 1;
        assert_eq!((*m.locked(), *rw.read_locked()), (2, 2));
    }
}
