//! Limits on new accounts (issue 15, finding 4): each costs a password hash
//! and a row for good, and one address once made 5,815 a minute. A
//! per-address rate, so one client cannot flood, and a total rate, so many
//! addresses together cannot either. A single server counts them itself
//! (token buckets that refill evenly over the hour); the nodes of a cluster
//! count them together in Redis (hour-long windows), so that N nodes allow
//! what one does.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};

use super::stores::{Limit, LimitError, LoginLimiter};

/// The window of the shared counts: the rates are per hour.
pub(crate) const HOUR: Duration = Duration::from_secs(3600);

/// The registration rates a server allows.
pub(crate) struct RegistrationLimits {
    counter: Counter,
}

enum Counter {
    /// This server's own buckets.
    Local {
        // Boxed: the keyed limiter is large, and the shared variant small.
        per_address: Box<DefaultKeyedRateLimiter<IpAddr>>,
        total: DefaultDirectRateLimiter,
        clock: DefaultClock,
    },
    /// Counts every node of a cluster shares, in windows of [`HOUR`].
    Shared {
        counts: Arc<dyn LoginLimiter>,
        per_address: u32,
        total: u32,
    },
}

/// An hourly quota of `per_hour` (at least 1), all of which may come at once.
fn hourly(per_hour: u32) -> Quota {
    Quota::per_hour(NonZeroU32::new(per_hour).unwrap_or(NonZeroU32::MIN))
}

impl RegistrationLimits {
    /// `per_address` registrations an hour from one address, `total` from
    /// all, counted by this server.
    pub(crate) fn new(per_address: u32, total: u32) -> Self {
        Self {
            counter: Counter::Local {
                per_address: Box::new(DefaultKeyedRateLimiter::keyed(hourly(per_address))),
                total: DefaultDirectRateLimiter::direct(hourly(total)),
                clock: DefaultClock::default(),
            },
        }
    }

    /// The same rates counted in `counts` (whose windows last [`HOUR`]),
    /// which every node of a cluster shares.
    pub(crate) fn shared(counts: Arc<dyn LoginLimiter>, per_address: u32, total: u32) -> Self {
        Self {
            counter: Counter::Shared {
                counts,
                per_address: per_address.max(1),
                total: total.max(1),
            },
        }
    }

    /// Takes one registration for `peer`, or says how long until one is free.
    /// The address first: an address over its own rate takes nothing from
    /// the total, so one flooding address cannot use up everyone's.
    pub(crate) async fn take(&self, peer: IpAddr) -> Result<(), LimitError> {
        match &self.counter {
            Counter::Local {
                per_address,
                total,
                clock,
            } => {
                let now = clock.now();
                per_address
                    .check_key(&peer)
                    .map_err(|wait| LimitError::Limited(wait.wait_time_from(now)))?;
                total
                    .check()
                    .map_err(|wait| LimitError::Limited(wait.wait_time_from(now)))
            }
            // One step for both: all counted, or none.
            Counter::Shared {
                counts,
                per_address,
                total,
            } => {
                let address = format!("ip:{peer}");
                counts
                    .reserve(&[
                        Limit::fixed(&address, *per_address),
                        Limit::fixed("all", *total),
                    ])
                    .await
            }
        }
    }

    /// Forgets addresses whose rate is back to full, so the table holds only
    /// the addresses of the last hour (shared counts expire by themselves).
    pub(crate) fn forget_idle(&self) {
        if let Counter::Local { per_address, .. } = &self.counter {
            per_address.retain_recent();
            per_address.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn limited(result: Result<(), LimitError>) -> Duration {
        match result {
            Err(LimitError::Limited(wait)) => wait,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn each_address_and_all_together_have_their_rate() {
        let limits = RegistrationLimits::new(2, 3);
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        limits.take(a).await.expect("one");
        limits.take(a).await.expect("two");
        let wait = limited(limits.take(a).await);
        assert!(
            wait > Duration::from_secs(29 * 60) && wait <= Duration::from_secs(30 * 60),
            "one registration every 30 minutes: {wait:?}"
        );
        limits
            .take(b)
            .await
            .expect("a's refusals took nothing from the total");
        limited(limits.take(b).await);
        limits.forget_idle();
        limited(limits.take(a).await);
    }
}
