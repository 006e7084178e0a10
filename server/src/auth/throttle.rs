//! Throttling of logins, against password guessing: the in-process
//! [`LoginLimiter`] ([`MemoryThrottle`], which counts one server's attempts)
//! and [`InFlight`], which caps the logins being checked at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::stores::{backoff_factor, BackendError, Limit, LimitError, LoginLimiter, STRIKE_MEMORY};

/// Keys kept before expired windows are swept out, so that a stream of
/// attempts under ever new names cannot grow the map without end.
const SWEEP_ABOVE: usize = 10_000;

struct Window {
    ends: Instant,
    attempts: u32,
}

/// A backing-off key's full windows, and when it last filled one.
struct Strikes {
    count: u32,
    last: Instant,
}

#[derive(Default)]
struct Counts {
    windows: HashMap<String, Window>,
    strikes: HashMap<String, Strikes>,
}

/// Counts login attempts per key in fixed windows. Once a key reaches its
/// limit, every further attempt is refused until the window ends, without
/// checking the password at all; a key that backs off has each full window
/// last twice the one before ([`backoff_factor`]).
pub(crate) struct MemoryThrottle {
    window: Duration,
    // std Mutex: only map operations inside, never an `.await`.
    counts: Mutex<Counts>,
}

impl MemoryThrottle {
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window,
            counts: Mutex::default(),
        }
    }

    /// Counts one attempt against each key unless one of them is at its
    /// limit: then `Err(retry_after)` and nothing is counted. One lock over
    /// the check and the count, so that no attempt slips between them.
    pub(crate) fn reserve(&self, limits: &[Limit<'_>]) -> Result<(), Duration> {
        let now = Instant::now();
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let Counts { windows, strikes } = &mut *counts;
        let retry_after = limits
            .iter()
            .filter_map(|limit| {
                let w = windows.get(limit.key)?;
                (w.attempts >= limit.attempts && w.ends > now).then(|| w.ends - now)
            })
            .max();
        if let Some(wait) = retry_after {
            return Err(wait);
        }
        if windows.len() > SWEEP_ABOVE {
            windows.retain(|_, w| w.ends > now);
        }
        if strikes.len() > SWEEP_ABOVE {
            strikes.retain(|_, s| s.last + STRIKE_MEMORY > now);
        }
        for limit in limits {
            let w = windows.entry(limit.key.to_owned()).or_insert(Window {
                ends: now + self.window,
                attempts: 0,
            });
            if w.ends <= now {
                *w = Window {
                    ends: now + self.window,
                    attempts: 0,
                };
            }
            w.attempts += 1;
            if limit.backoff && w.attempts == limit.attempts {
                let s = strikes.entry(limit.key.to_owned()).or_insert(Strikes {
                    count: 0,
                    last: now,
                });
                if s.last + STRIKE_MEMORY <= now {
                    s.count = 0;
                }
                s.count += 1;
                s.last = now;
                let factor = backoff_factor(s.count);
                if factor > 1 {
                    w.ends = now + self.window * factor;
                }
            }
        }
        Ok(())
    }

    /// Gives back one attempt of each key still in its window.
    pub(crate) fn refund(&self, keys: &[&str]) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            if let Some(w) = counts.windows.get_mut(*key) {
                w.attempts = w.attempts.saturating_sub(1);
            }
        }
    }
}

#[async_trait]
impl LoginLimiter for MemoryThrottle {
    async fn reserve(&self, limits: &[Limit<'_>]) -> Result<(), LimitError> {
        MemoryThrottle::reserve(self, limits).map_err(LimitError::Limited)
    }

    async fn refund(&self, keys: &[&str]) -> Result<(), BackendError> {
        MemoryThrottle::refund(self, keys);
        Ok(())
    }
}

/// The logins this server is checking right now, per key (a user name, an
/// address). A cap on them keeps one name or one address from holding every
/// hashing slot; it counts this server only, since a login is in flight on
/// one server.
#[derive(Clone, Default)]
pub(crate) struct InFlight {
    counts: Arc<Mutex<HashMap<String, u32>>>,
}

/// One login in flight; its keys are counted until it is dropped.
pub(crate) struct InFlightGuard {
    counts: Arc<Mutex<HashMap<String, u32>>>,
    keys: Vec<String>,
}

impl InFlight {
    /// Counts a login under every key, unless one of them already has its
    /// `limit` of logins in flight (then `None`, counting nothing).
    pub(crate) fn enter(&self, limits: &[(&str, u32)]) -> Option<InFlightGuard> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if limits
            .iter()
            .any(|(key, limit)| counts.get(*key).is_some_and(|n| n >= limit))
        {
            return None;
        }
        for (key, _) in limits {
            *counts.entry((*key).to_owned()).or_insert(0) += 1;
        }
        Some(InFlightGuard {
            counts: self.counts.clone(),
            keys: limits.iter().map(|(key, _)| (*key).to_owned()).collect(),
        })
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        for key in &self.keys {
            if let Some(n) = counts.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::stores::MAX_BACKOFF;
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn refuses_past_the_limit_until_the_window_ends() {
        let throttle = MemoryThrottle::new(Duration::from_secs(60));
        let keys = [
            Limit::fixed("pair:alice|127.0.0.1", 3),
            Limit::fixed("ip:127.0.0.1", 30),
        ];
        for _ in 0..3 {
            assert_eq!(throttle.reserve(&keys), Ok(()));
        }
        assert_eq!(throttle.reserve(&keys), Err(Duration::from_secs(60)));
        assert_eq!(
            throttle.reserve(&[Limit::fixed("pair:bob|127.0.0.1", 3)]),
            Ok(()),
            "per key"
        );

        tokio::time::advance(Duration::from_secs(45)).await;
        assert_eq!(throttle.reserve(&keys), Err(Duration::from_secs(15)));
        tokio::time::advance(Duration::from_secs(15)).await;
        assert_eq!(throttle.reserve(&keys), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_backing_off_key_is_refused_twice_as_long_each_time_it_fills() {
        let window = Duration::from_secs(60);
        let throttle = MemoryThrottle::new(window);
        let pair = [
            Limit::backing_off("pair:alice|x", 2),
            Limit::fixed("ip:x", 1_000),
        ];
        let other = [Limit::backing_off("pair:alice|y", 2)];
        for factor in [1, 2, 4, 8] {
            throttle.reserve(&pair).expect("one");
            throttle.reserve(&pair).expect("two");
            assert_eq!(
                throttle.reserve(&pair),
                Err(window * factor),
                "strike {factor}"
            );
            assert_eq!(
                throttle.reserve(&other),
                Ok(()),
                "another pair is not slowed"
            );
            tokio::time::advance(window * factor).await;
        }
        // The address counted every attempt but never backs off.
        assert_eq!(throttle.reserve(&[Limit::fixed("ip:x", 1_000)]), Ok(()));
        // Capped, and forgotten a day after the last full window.
        for _ in 0..10 {
            throttle.reserve(&pair).expect("one");
            throttle.reserve(&pair).expect("two");
            let wait = throttle.reserve(&pair).expect_err("full");
            assert!(wait <= window * MAX_BACKOFF, "{wait:?}");
            tokio::time::advance(wait).await;
        }
        tokio::time::advance(STRIKE_MEMORY).await;
        throttle.reserve(&pair).expect("one");
        throttle.reserve(&pair).expect("two");
        assert_eq!(throttle.reserve(&pair), Err(window), "a fresh start");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_attempt_counts_against_no_key() {
        let throttle = MemoryThrottle::new(Duration::from_secs(60));
        throttle.reserve(&[Limit::fixed("a", 1)]).expect("first");
        // "b" is under its limit, but "a" is not: nothing is counted on "b".
        for _ in 0..5 {
            assert!(throttle
                .reserve(&[Limit::fixed("a", 1), Limit::fixed("b", 2)])
                .is_err());
        }
        assert_eq!(throttle.reserve(&[Limit::fixed("b", 2)]), Ok(()));
        assert_eq!(throttle.reserve(&[Limit::fixed("b", 2)]), Ok(()));
        assert!(throttle.reserve(&[Limit::fixed("b", 2)]).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_refund_gives_an_attempt_back() {
        let throttle = MemoryThrottle::new(Duration::from_secs(60));
        throttle.reserve(&[Limit::fixed("a", 2)]).expect("first");
        throttle.reserve(&[Limit::fixed("a", 2)]).expect("second");
        throttle.refund(&["a", "never-counted"]);
        assert_eq!(throttle.reserve(&[Limit::fixed("a", 2)]), Ok(()));
        assert!(throttle.reserve(&[Limit::fixed("a", 2)]).is_err());
    }

    #[test]
    fn in_flight_caps_each_key_and_frees_it_on_drop() {
        let in_flight = InFlight::default();
        let first = in_flight.enter(&[("user:a", 2), ("ip:x", 3)]).expect("1");
        let second = in_flight.enter(&[("user:a", 2), ("ip:x", 3)]).expect("2");
        assert!(in_flight.enter(&[("user:a", 2), ("ip:x", 3)]).is_none());
        let third = in_flight.enter(&[("user:b", 2), ("ip:x", 3)]).expect("3");
        assert!(in_flight.enter(&[("user:c", 2), ("ip:x", 3)]).is_none());
        drop(first);
        assert!(in_flight.enter(&[("user:a", 2), ("ip:x", 3)]).is_some());
        drop((second, third));
        assert!(in_flight.counts.lock().expect("not poisoned").is_empty());
    }
}
