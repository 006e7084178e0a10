//! Wall-clock time for expiry that is stored and shared: sessions outlive the
//! process that issued them, and a cluster compares expiry times written by
//! other processes, so they are dates (unix milliseconds), not `Instant`s.
//! The server reads the time only through [`Clock`], so tests move it instead
//! of sleeping.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Where the server gets the current date.
pub trait Clock: Send + Sync + 'static {
    /// The current date.
    fn now(&self) -> SystemTime;
}

/// The operating system's clock: what a real server uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to, for tests. Clones share one time, so
/// a test keeps a clone and advances the clock a server reads.
#[derive(Debug, Clone)]
pub struct ManualClock {
    // std Mutex: held for one read or one addition, never across an `.await`.
    now: Arc<Mutex<SystemTime>>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn at(start: SystemTime) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Default for ManualClock {
    /// A clock standing at the present moment.
    fn default() -> Self {
        Self::at(SystemTime::now())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A date as stored: milliseconds since the unix epoch.
pub(crate) type UnixMillis = i64;

/// A lifetime in the milliseconds that dates are stored in, saturating
/// (a lifetime of centuries is "never", not an overflow).
pub(crate) fn millis(d: Duration) -> UnixMillis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let clock = ManualClock::at(start);
        let other = clock.clone();
        assert_eq!(clock.now(), start);
        other.advance(Duration::from_millis(1500));
        assert_eq!(clock.now(), start + Duration::from_millis(1500));
    }

    #[test]
    fn lifetimes_in_millis_saturate() {
        assert_eq!(millis(Duration::from_secs(30)), 30_000);
        assert_eq!(millis(Duration::MAX), i64::MAX);
    }
}
