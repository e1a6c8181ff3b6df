//! What time it is, for everything that compares against now: sign-in token
//! and access token expiry, sign-out records, password changes ending
//! sessions, member keepalives and their expiry, cached answer TTLs.
//!
//! Production uses [`Clock::system`]. Tests use a [`ManualClock`]: its time
//! stands still until the test moves it, so a test of a 1-second expiry
//! advances the clock by a second instead of waiting for one, and "valid just
//! before" is checked at an exact instant rather than raced against.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::store::Timestamp;

/// A source of the current time; cheap to clone (clones share the time).
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// `None`: the system clock.
    manual: Option<ManualClock>,
}

impl Clock {
    /// The system clock (wall clock and monotonic clock).
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// The wall-clock time now.
    pub fn now(&self) -> SystemTime {
        match &self.manual {
            None => SystemTime::now(),
            Some(m) => m.start_wall + m.offset(),
        }
    }

    /// The monotonic time now (for durations measured in this process).
    pub fn instant(&self) -> Instant {
        match &self.manual {
            None => Instant::now(),
            Some(m) => m.start_instant + m.offset(),
        }
    }

    /// [`Clock::now`] as the store keeps time (milliseconds since the epoch).
    pub fn timestamp(&self) -> Timestamp {
        let ms = self.now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
    }
}

/// A clock that moves only when told to; starts at the system time of its
/// creation. Clones share the time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    start_wall: SystemTime,
    start_instant: Instant,
    /// How far the clock was moved since its creation.
    moved: Arc<Mutex<Duration>>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A clock standing at the current system time.
    pub fn new() -> Self {
        Self { start_wall: SystemTime::now(), start_instant: Instant::now(), moved: Arc::default() }
    }

    /// Moves the time forward by `d`.
    pub fn advance(&self, d: Duration) {
        *self.moved.lock().unwrap_or_else(|e| e.into_inner()) += d;
    }

    /// A [`Clock`] reading this clock's time.
    pub fn clock(&self) -> Clock {
        Clock { manual: Some(self.clone()) }
    }

    fn offset(&self) -> Duration {
        *self.moved.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl From<ManualClock> for Clock {
    fn from(m: ManualClock) -> Self {
        m.clock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let manual = ManualClock::new();
        let clock = manual.clock();
        let (wall, mono, ts) = (clock.now(), clock.instant(), clock.timestamp());
        std::thread::yield_now();
        assert_eq!((clock.now(), clock.instant()), (wall, mono), "time stood still");
        manual.advance(Duration::from_millis(1500));
        assert_eq!(clock.now().duration_since(wall).unwrap(), Duration::from_millis(1500));
        assert_eq!(clock.instant() - mono, Duration::from_millis(1500));
        assert_eq!(clock.timestamp().0 - ts.0, 1500);
    }

    #[test]
    fn the_system_clock_follows_the_system() {
        let clock = Clock::system();
        let before = SystemTime::now();
        let now = clock.now();
        assert!(now >= before && now <= SystemTime::now());
        let before = Timestamp::now();
        let ts = clock.timestamp();
        assert!(before <= ts && ts <= Timestamp::now());
    }
}
