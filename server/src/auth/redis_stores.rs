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

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::Arc;

    use chat_test_engines::PrivateRedis;
    use tokio::time::{timeout, Instant};

    use super::*;

    const TTL: UnixMillis = 30_000;

    /// One node's view of the Redis at `url`: a connection of its own.
    async fn node(url: &str, prefix: &str) -> SharedRedis {
        SharedRedis {
            conn: connect_redis(url).await.expect("connects"),
            prefix: prefix.to_owned(),
        }
    }

    /// Waits until `condition` holds, polling; panics after `within`.
    async fn eventually<F, Fut>(within: Duration, what: &str, mut condition: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + within;
        while !condition().await {
            assert!(Instant::now() < deadline, "not within {within:?}: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Fails the test instead of hanging when a store call does not return.
    async fn soon<T>(call: impl Future<Output = T>) -> T {
        timeout(Duration::from_secs(10), call)
            .await
            .expect("returned within 10 s")
    }

    async fn keys(redis: &SharedRedis) -> Vec<String> {
        let mut conn = redis.conn.clone();
        conn.keys(format!("{}:*", redis.prefix))
            .await
            .expect("lists keys")
    }

    #[tokio::test]
    async fn a_ticket_minted_on_one_node_opens_once_on_any() {
        let Some(engine) = chat_test_engines::redis().await else {
            return;
        };
        let a = RedisTickets::new(node(&engine.url, &engine.prefix).await);
        let b = RedisTickets::new(node(&engine.url, &engine.prefix).await);
        let ticket = a.issue("alice", 0, TTL).await.expect("issues");
        assert_eq!(ticket.len(), 64);

        // Stored under its hash, never in the clear, expiring by itself.
        let stored = keys(&a.redis).await;
        assert_eq!(stored, [a.key(&ticket)]);
        assert!(!stored[0].contains(&ticket));
        let mut conn = a.redis.conn.clone();
        let ttl: i64 = conn.pttl(&stored[0]).await.expect("pttl");
        assert!(0 < ttl && ttl <= TTL, "{ttl}");

        assert_eq!(b.redeem(&ticket, 1).await.expect("redeems on b"), "alice");
        assert!(
            matches!(a.redeem(&ticket, 1).await, Err(TicketError::Unknown)),
            "used up everywhere"
        );
        assert!(matches!(
            b.redeem("made-up", 1).await,
            Err(TicketError::Unknown)
        ));
        assert!(keys(&a.redis).await.is_empty());
    }

    #[tokio::test]
    async fn concurrent_redeems_on_two_nodes_have_one_winner() {
        let Some(engine) = chat_test_engines::redis().await else {
            return;
        };
        let nodes = [
            Arc::new(RedisTickets::new(node(&engine.url, &engine.prefix).await)),
            Arc::new(RedisTickets::new(node(&engine.url, &engine.prefix).await)),
        ];
        for _ in 0..10 {
            let ticket = nodes[0].issue("alice", 0, TTL).await.expect("issues");
            let redeems: Vec<_> = (0..16)
                .map(|i| {
                    let (node, ticket) = (nodes[i % 2].clone(), ticket.clone());
                    tokio::spawn(async move { node.redeem(&ticket, 1).await })
                })
                .collect();
            let (mut won, mut refused) = (0, 0);
            for redeem in redeems {
                match redeem.await.expect("task") {
                    Ok(user) => {
                        assert_eq!(user, "alice");
                        won += 1;
                    }
                    Err(TicketError::Unknown) => refused += 1,
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
            assert_eq!((won, refused), (1, 15));
        }
    }

    #[tokio::test]
    async fn tickets_expire_by_the_callers_time_and_by_redis() {
        let Some(engine) = chat_test_engines::redis().await else {
            return;
        };
        let a = RedisTickets::new(node(&engine.url, &engine.prefix).await);
        let b = RedisTickets::new(node(&engine.url, &engine.prefix).await);
        let ticket = a.issue("alice", 0, TTL).await.expect("issues");
        assert!(matches!(
            b.redeem(&ticket, TTL).await,
            Err(TicketError::Expired)
        ));
        assert!(
            matches!(b.redeem(&ticket, 0).await, Err(TicketError::Unknown)),
            "an expired ticket is used up too"
        );

        // Redis forgets a ticket at its expiry, unused or not.
        let short = a.issue("alice", 0, 50).await.expect("issues");
        eventually(
            Duration::from_secs(5),
            "redis expires the ticket",
            || async { keys(&a.redis).await.is_empty() },
        )
        .await;
        assert!(matches!(
            b.redeem(&short, 1).await,
            Err(TicketError::Unknown)
        ));
        assert_eq!(a.prune(TTL).await.expect("prunes"), 0, "nothing to do");
    }

    #[tokio::test]
    async fn failures_count_together_across_nodes_until_the_window_ends() {
        let Some(engine) = chat_test_engines::redis().await else {
            return;
        };
        let window = Duration::from_millis(400);
        let a = RedisThrottle::new(node(&engine.url, &engine.prefix).await, window);
        let b = RedisThrottle::new(node(&engine.url, &engine.prefix).await, window);
        let limits = [("user:alice", 3), ("ip:10.0.0.1", 30)];
        let keys = ["user:alice", "ip:10.0.0.1"];

        a.record_failure(&keys).await.expect("records");
        b.record_failure(&keys).await.expect("records");
        a.check(&limits).await.expect("two of three");
        b.record_failure(&keys).await.expect("records");
        for node in [&a, &b] {
            match node.check(&limits).await {
                Err(LimitError::Limited(wait)) => {
                    assert!(Duration::ZERO < wait && wait <= window, "{wait:?}");
                }
                other => panic!("not limited: {other:?}"),
            }
        }
        a.check(&[("user:bob", 3)]).await.expect("per key");

        eventually(Duration::from_secs(5), "the window ends", || async {
            b.check(&limits).await.is_ok()
        })
        .await;
        // A new window: one failure does not reach a limit of two.
        a.record_failure(&keys).await.expect("records");
        b.check(&[("user:alice", 2)]).await.expect("counting anew");
    }

    #[tokio::test]
    async fn a_success_on_one_node_clears_the_count_on_all() {
        let Some(engine) = chat_test_engines::redis().await else {
            return;
        };
        let window = Duration::from_secs(60);
        let a = RedisThrottle::new(node(&engine.url, &engine.prefix).await, window);
        let b = RedisThrottle::new(node(&engine.url, &engine.prefix).await, window);
        a.record_failure(&["user:alice"]).await.expect("records");
        a.record_failure(&["user:alice"]).await.expect("records");
        assert!(matches!(
            b.check(&[("user:alice", 2)]).await,
            Err(LimitError::Limited(_))
        ));
        b.clear("user:alice").await.expect("clears");
        a.check(&[("user:alice", 2)]).await.expect("cleared");
        b.clear("user:alice")
            .await
            .expect("clearing nothing is fine");
    }

    #[tokio::test]
    async fn concurrent_failures_on_two_nodes_are_all_counted_in_one_window() {
        let Some(engine) = chat_test_engines::redis().await else {
            return;
        };
        let window = Duration::from_secs(60);
        let nodes = [
            Arc::new(RedisThrottle::new(
                node(&engine.url, &engine.prefix).await,
                window,
            )),
            Arc::new(RedisThrottle::new(
                node(&engine.url, &engine.prefix).await,
                window,
            )),
        ];
        let failures: Vec<_> = (0..20)
            .map(|i| {
                let node = nodes[i % 2].clone();
                tokio::spawn(async move { node.record_failure(&["user:alice"]).await })
            })
            .collect();
        for failure in failures {
            failure.await.expect("task").expect("records");
        }
        nodes[0]
            .check(&[("user:alice", 21)])
            .await
            .expect("20 < 21");
        match nodes[1].check(&[("user:alice", 20)]).await {
            Err(LimitError::Limited(wait)) => assert!(wait <= window, "{wait:?}"),
            other => panic!("not limited: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_killed_redis_gives_errors_then_the_same_stores_recover() {
        let Some(mut engine) = PrivateRedis::start().await else {
            return;
        };
        let redis = node(&engine.url(), "chat").await;
        let tickets = RedisTickets::new(redis.clone());
        let throttle = RedisThrottle::new(redis, Duration::from_secs(60));
        let before = tickets.issue("alice", 0, TTL).await.expect("issues");
        throttle
            .record_failure(&["user:alice"])
            .await
            .expect("records");

        engine.kill();
        assert!(soon(tickets.issue("alice", 0, TTL)).await.is_err());
        assert!(
            matches!(
                soon(tickets.redeem(&before, 1)).await,
                Err(TicketError::Backend(_))
            ),
            "a failure, not a refusal of the ticket"
        );
        assert!(matches!(
            soon(throttle.check(&[("user:alice", 1)])).await,
            Err(LimitError::Backend(_))
        ));
        assert!(soon(throttle.record_failure(&["user:alice"]))
            .await
            .is_err());
        assert!(soon(throttle.clear("user:alice")).await.is_err());

        engine.restart().await;
        eventually(Duration::from_secs(15), "the store reconnects", || async {
            tickets.issue("alice", 0, TTL).await.is_ok()
        })
        .await;
        // The restarted Redis is empty (no persistence in this test).
        assert!(matches!(
            tickets.redeem(&before, 1).await,
            Err(TicketError::Unknown)
        ));
        let after = tickets.issue("alice", 0, TTL).await.expect("issues");
        assert_eq!(tickets.redeem(&after, 1).await.expect("redeems"), "alice");
        // The scripts are loaded again into the new server.
        throttle.check(&[("user:alice", 1)]).await.expect("empty");
        throttle
            .record_failure(&["user:alice"])
            .await
            .expect("records");
        assert!(matches!(
            throttle.check(&[("user:alice", 1)]).await,
            Err(LimitError::Limited(_))
        ));
    }
}
