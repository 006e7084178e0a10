//! Tickets and failed-login counts in Redis, shared by the servers of a
//! cluster: [`RedisTickets`] and [`RedisThrottle`]. Both live for seconds or
//! minutes and expire by themselves (`PX`), so Redis, which forgets keys on
//! time, suits them better than the database.
//!
//! Every key starts with the prefix the stores were given, so that clusters
//! (or tests) can share one Redis. Any failure to reach Redis is a
//! [`BackendError`]: a client then gets a 500, never a refusal that blames its
//! ticket or its password.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, RedisResult, Script};

use super::session::TokenHash;
use super::stores::{BackendError, LimitError, LoginLimiter, TicketError, TicketStore};
use crate::clock::{millis, UnixMillis};

/// Connects to the Redis at `url` with the reconnection policy the stores
/// want: a [`ConnectionManager`] reconnects by itself after Redis restarts or
/// the network heals, and these limits bound how long a login or a socket
/// upgrade waits while Redis is away (about a second and a half when the
/// connection is refused, a few seconds when packets are dropped) before it
/// fails with a 500.
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "cluster mode is not wired into server.rs yet; remove once Auth::open_cluster is called"
    )
)]
pub(crate) async fn connect_redis(url: &str) -> RedisResult<ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    ConnectionManager::new_with_config(client, config).await
}

/// The cluster's Redis, as the stores use it.
#[derive(Clone)]
pub(crate) struct SharedRedis {
    /// Cheap to clone; clones share one connection.
    pub(crate) conn: ConnectionManager,
    /// Starts every key the stores write, followed by `:`.
    pub(crate) prefix: String,
}

/// A ticket's value was not what [`RedisTickets::issue`] writes: something
/// else wrote the key.
#[derive(Debug, thiserror::Error)]
#[error("ticket value in Redis is malformed")]
struct MalformedTicket;

/// Tickets in Redis: `{prefix}:ticket:<SHA-256 of the ticket, hex>` holding
/// `<expiry in unix ms>:<user>`, with a `PX` expiry. A ticket minted on one
/// server opens a socket on any other.
pub(crate) struct RedisTickets {
    redis: SharedRedis,
}

impl RedisTickets {
    /// Tickets under `redis.prefix`.
    pub(crate) fn new(redis: SharedRedis) -> Self {
        Self { redis }
    }

    /// The key of a ticket. The ticket itself is not in it, so that neither
    /// a dump of Redis nor its command log (`MONITOR`, the slow log) holds a
    /// usable ticket.
    fn key(&self, ticket: &str) -> String {
        let hex: String = TokenHash::of(ticket)
            .0
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{}:ticket:{hex}", self.redis.prefix)
    }
}

#[async_trait]
impl TicketStore for RedisTickets {
    /// Tickets are 256 bits from the OS CSPRNG, hex-encoded.
    async fn issue(
        &self,
        user: &str,
        now: UnixMillis,
        expires: UnixMillis,
    ) -> Result<String, BackendError> {
        let ticket = super::random_token();
        // The TTL is relative, so that Redis's clock need not agree with
        // ours; the expiry in the value is what redeem compares with the
        // caller's `now`, as every other store does.
        let ttl = u64::try_from(expires.saturating_sub(now))
            .unwrap_or(0)
            .max(1);
        let mut conn = self.redis.conn.clone();
        let () = conn
            .pset_ex(self.key(&ticket), format!("{expires}:{user}"), ttl)
            .await?;
        Ok(ticket)
    }

    /// `GETDEL` is the single use: Redis runs one command at a time, so of
    /// concurrent redeems on any servers exactly one gets the value.
    ///
    /// A Redis failure is a [`TicketError::Backend`] (a 500), not
    /// [`TicketError::Unknown`]: the ticket may well be valid, and "log in
    /// again" would send every client of a cluster whose Redis hiccups into a
    /// login it cannot complete either. If the reply, not the command, is
    /// lost, the ticket is used up and the client needs a new one, as after
    /// any failed upgrade.
    async fn redeem(&self, ticket: &str, now: UnixMillis) -> Result<String, TicketError> {
        let mut conn = self.redis.conn.clone();
        let value: Option<String> = conn
            .get_del(self.key(ticket))
            .await
            .map_err(BackendError::from)?;
        let Some(value) = value else {
            return Err(TicketError::Unknown);
        };
        let (expires, user) = value
            .split_once(':')
            .and_then(|(expires, user)| Some((expires.parse::<UnixMillis>().ok()?, user)))
            .ok_or_else(|| BackendError::new(MalformedTicket))?;
        if expires <= now {
            return Err(TicketError::Expired);
        }
        Ok(user.to_owned())
    }

    /// Nothing to do: Redis forgets expired tickets by itself.
    async fn prune(&self, _now: UnixMillis) -> Result<usize, BackendError> {
        Ok(0)
    }
}

/// Counts one failure against each key: `INCR`, and a `PEXPIRE` of the window
/// when the key has no expiry yet (the failure that opened the window). One
/// script, so that no crash between the two leaves a count that never
/// expires, which would lock a user out for good.
const RECORD_FAILURE: &str = r"
for _, key in ipairs(KEYS) do
  redis.call('INCR', key)
  if redis.call('PTTL', key) < 0 then
    redis.call('PEXPIRE', key, ARGV[1])
  end
end
return 0
";

/// The longest time left (ms) in the window of a key at its limit, 0 when
/// none is. `KEYS[i]` has the limit `ARGV[i]`. One script, so that the count
/// and the time left are read together.
const CHECK: &str = r"
local wait = 0
for i, key in ipairs(KEYS) do
  local failures = tonumber(redis.call('GET', key) or '0')
  if failures >= tonumber(ARGV[i]) then
    local ttl = redis.call('PTTL', key)
    if ttl > wait then wait = ttl end
  end
end
return wait
";

/// Failed logins counted in Redis, under `{prefix}:login:<key>`, so that
/// every server of a cluster counts them together: N servers allow as many
/// failures per user name in a window as one server does. The window of a key
/// is the TTL of its counter, opened by its first failure, as in
/// [`super::throttle::MemoryThrottle`].
pub(crate) struct RedisThrottle {
    redis: SharedRedis,
    window: Duration,
    record: Script,
    check: Script,
}

impl RedisThrottle {
    /// Counts failures under `redis.prefix` in windows of `window`.
    pub(crate) fn new(redis: SharedRedis, window: Duration) -> Self {
        Self {
            redis,
            window,
            record: Script::new(RECORD_FAILURE),
            check: Script::new(CHECK),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}:login:{key}", self.redis.prefix)
    }
}

#[async_trait]
impl LoginLimiter for RedisThrottle {
    async fn check(&self, limits: &[(&str, u32)]) -> Result<(), LimitError> {
        let mut invocation = self.check.prepare_invoke();
        for (key, limit) in limits {
            invocation.key(self.key(key)).arg(*limit);
        }
        let mut conn = self.redis.conn.clone();
        let wait: i64 = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(BackendError::from)?;
        match u64::try_from(wait) {
            Ok(ms) if ms > 0 => Err(LimitError::Limited(Duration::from_millis(ms))),
            _ => Ok(()),
        }
    }

    async fn record_failure(&self, keys: &[&str]) -> Result<(), BackendError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut invocation = self.record.prepare_invoke();
        for key in keys {
            invocation.key(self.key(key));
        }
        // At least a millisecond: `PEXPIRE key 0` would delete the count.
        invocation.arg(millis(self.window).max(1));
        let mut conn = self.redis.conn.clone();
        let _: i64 = invocation.invoke_async(&mut conn).await?;
        Ok(())
    }

    async fn clear(&self, key: &str) -> Result<(), BackendError> {
        let mut conn = self.redis.conn.clone();
        let _: i64 = conn.del(self.key(key)).await?;
        Ok(())
    }
}
