//! Limits on new accounts (issue 15, finding 4): each costs a password hash
//! and a row for good, and one address once made 5,815 a minute. A
//! per-address rate, so one client cannot flood, and a total rate, so many
//! addresses together cannot either; both counted by this server.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};

/// The registration rates a server allows.
pub(crate) struct RegistrationLimits {
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    total: DefaultDirectRateLimiter,
    clock: DefaultClock,
}

/// An hourly quota of `per_hour` (at least 1), all of which may come at once.
fn hourly(per_hour: u32) -> Quota {
    Quota::per_hour(NonZeroU32::new(per_hour).unwrap_or(NonZeroU32::MIN))
}

impl RegistrationLimits {
    /// `per_address` registrations an hour from one address, `total` from all.
    pub(crate) fn new(per_address: u32, total: u32) -> Self {
        Self {
            per_address: DefaultKeyedRateLimiter::keyed(hourly(per_address)),
            total: DefaultDirectRateLimiter::direct(hourly(total)),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one registration for `peer`, or says how long until one is free.
    /// The address first: an address over its own rate takes nothing from
    /// the total, so one flooding address cannot use up everyone's.
    pub(crate) fn take(&self, peer: IpAddr) -> Result<(), Duration> {
        let now = self.clock.now();
        self.per_address
            .check_key(&peer)
            .map_err(|wait| wait.wait_time_from(now))?;
        self.total.check().map_err(|wait| wait.wait_time_from(now))
    }

    /// Forgets addresses whose rate is back to full, so the table holds only
    /// the addresses of the last hour.
    pub(crate) fn forget_idle(&self) {
        self.per_address.retain_recent();
        self.per_address.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn each_address_and_all_together_have_their_rate() {
        let limits = RegistrationLimits::new(2, 3);
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(limits.take(a), Ok(()));
        assert_eq!(limits.take(a), Ok(()));
        let wait = limits.take(a).expect_err("a third from a");
        assert!(
            wait > Duration::from_secs(29 * 60) && wait <= Duration::from_secs(30 * 60),
            "one registration every 30 minutes: {wait:?}"
        );
        assert_eq!(
            limits.take(b),
            Ok(()),
            "a's refusals took nothing from the total"
        );
        assert!(limits.take(b).is_err(), "the total of 3 is used up");
        limits.forget_idle();
        assert!(limits.take(a).is_err(), "a is still counted");
    }
}
