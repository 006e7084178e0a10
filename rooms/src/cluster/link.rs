//! How the cluster reaches Redis: clients, timeouts and the backoff between
//! reconnection attempts.

use std::time::Duration;

use rand_core::{OsRng, RngCore};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, ProtocolVersion, RedisResult};

/// A connection attempt gives up after this long.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A command gives up after this long: a Redis that does not answer is
/// treated as down, and joins and sends must not wait on it for longer.
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A client for `url`; `resp3` for the subscriber, whose messages arrive as
/// RESP3 push frames on an ordinary multiplexed connection.
pub(crate) fn client(url: &str, resp3: bool) -> RedisResult<Client> {
    let mut info = url.into_connection_info()?;
    if resp3 {
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        info = info.set_redis_settings(settings);
    }
    Client::open(info)
}

/// Timeouts for a connection of the cluster's own.
pub(crate) fn connection_config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
}

/// A shared, self-reconnecting connection (presence, publishing). Its
/// first connection is made here, so an unreachable Redis is an error at
/// start-up; afterwards a dropped connection is re-made in the background
/// and commands meanwhile fail fast.
pub(crate) async fn manager(client: Client) -> RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_with_config(client, config).await
}

/// Exponential backoff with jitter between reconnection attempts.
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_secs(2);

    pub(crate) fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// After a success: the next failure waits briefly again.
    pub(crate) fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// The wait before the next attempt: doubles up to [`Backoff::MAX`],
    /// between half and all of it, so that nodes do not retry in step.
    pub(crate) fn delay(&mut self) -> Duration {
        let full = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        let half = full / 2;
        let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_micros(OsRng.next_u64() % spread)
    }
}

/// A fresh random token (16 hex digits), to tell incarnations apart.
pub(crate) fn token() -> String {
    format!("{:016x}", OsRng.next_u64())
}
