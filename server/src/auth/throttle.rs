//! Throttling of failed logins, against password guessing: the in-process
//! [`LoginLimiter`], which counts one server's failures.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::stores::{BackendError, LimitError, LoginLimiter};

struct Window {
    started: Instant,
    failures: u32,
}

/// Counts failed logins per key (a user name, a client address) in fixed
/// windows. Once a key reaches its limit, every further attempt is refused
/// until the window ends, without checking the password at all.
pub(crate) struct MemoryThrottle {
    window: Duration,
    // std Mutex: only map operations inside, never an `.await`.
    windows: Mutex<HashMap<String, Window>>,
}

impl MemoryThrottle {
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` when any of the `(key, limit)` pairs is at its limit.
    pub(crate) fn check(&self, keys: &[(&str, u32)]) -> Result<(), Duration> {
        let now = Instant::now();
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let retry_after = keys
            .iter()
            .filter_map(|(key, limit)| {
                let w = windows.get(*key)?;
                let ends = w.started + self.window;
                (w.failures >= *limit && ends > now).then(|| ends - now)
            })
            .max();
        retry_after.map_or(Ok(()), Err)
    }

    /// Counts one failure against each key.
    pub(crate) fn record_failure(&self, keys: &[&str]) {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() > 10_000 {
            windows.retain(|_, w| w.started + self.window > now);
        }
        for key in keys {
            let w = windows.entry((*key).to_owned()).or_insert(Window {
                started: now,
                failures: 0,
            });
            if w.started + self.window <= now {
                *w = Window {
                    started: now,
                    failures: 0,
                };
            }
            w.failures += 1;
        }
    }

    /// Forgets the failures of a key, after a successful login.
    pub(crate) fn clear(&self, key: &str) {
        self.windows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[async_trait]
impl LoginLimiter for MemoryThrottle {
    async fn check(&self, limits: &[(&str, u32)]) -> Result<(), LimitError> {
        MemoryThrottle::check(self, limits).map_err(LimitError::Limited)
    }

    async fn record_failure(&self, keys: &[&str]) -> Result<(), BackendError> {
        MemoryThrottle::record_failure(self, keys);
        Ok(())
    }

    async fn clear(&self, key: &str) -> Result<(), BackendError> {
        MemoryThrottle::clear(self, key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn locks_after_the_limit_until_the_window_ends() {
        let throttle = MemoryThrottle::new(Duration::from_secs(60));
        let keys = [("user:alice", 3), ("ip:127.0.0.1", 30)];
        for _ in 0..3 {
            assert_eq!(throttle.check(&keys), Ok(()));
            throttle.record_failure(&["user:alice", "ip:127.0.0.1"]);
        }
        assert_eq!(throttle.check(&keys), Err(Duration::from_secs(60)));
        assert_eq!(throttle.check(&[("user:bob", 3)]), Ok(()), "per key");

        tokio::time::advance(Duration::from_secs(45)).await;
        assert_eq!(throttle.check(&keys), Err(Duration::from_secs(15)));
        tokio::time::advance(Duration::from_secs(15)).await;
        assert_eq!(throttle.check(&keys), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn success_clears_the_user_key() {
        let throttle = MemoryThrottle::new(Duration::from_secs(60));
        throttle.record_failure(&["user:alice"]);
        throttle.record_failure(&["user:alice"]);
        throttle.clear("user:alice");
        throttle.record_failure(&["user:alice"]);
        assert_eq!(throttle.check(&[("user:alice", 2)]), Ok(()));
    }
}
