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
use super::stores::{
    BackendError, Limit, LimitError, LoginLimiter, Redeemed, TicketError, TicketStore, MAX_BACKOFF,
    STRIKE_MEMORY,
};
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
        format!(
            "{}:ticket:{}",
            self.redis.prefix,
            TokenHash::of(ticket).hex()
        )
    }

    /// The key of the set of a session's ticket keys, so that a logout on
    /// any node finds them.
    fn of_session(&self, session: &str) -> String {
        format!("{}:session-tickets:{session}", self.redis.prefix)
    }
}

/// Stores a ticket (`KEYS[1]`, value `ARGV[1]`, TTL `ARGV[2]` ms) and adds
/// its key to its session's set (`KEYS[2]`), which lives as long as the
/// session's newest ticket. One script, so that no ticket exists that its
/// session's logout could miss.
const ISSUE: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], KEYS[1])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 0
";

/// Deletes the tickets of a session's set (`KEYS[1]`) and the set; returns
/// how many tickets were still unused.
const REVOKE_SESSION: &str = r"
local revoked = 0
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  revoked = revoked + redis.call('DEL', key)
end
redis.call('DEL', KEYS[1])
return revoked
";

#[async_trait]
impl TicketStore for RedisTickets {
    /// Tickets are 256 bits from the OS CSPRNG, hex-encoded.
    async fn issue(
        &self,
        user: &str,
        session: &str,
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
        let _: i64 = Script::new(ISSUE)
            .key(self.key(&ticket))
            .key(self.of_session(session))
            .arg(format!("{expires}:{user}:{session}"))
            .arg(ttl)
            .invoke_async(&mut conn)
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
    async fn redeem(&self, ticket: &str, now: UnixMillis) -> Result<Redeemed, TicketError> {
        let mut conn = self.redis.conn.clone();
        let value: Option<String> = conn
            .get_del(self.key(ticket))
            .await
            .map_err(BackendError::from)?;
        let Some(value) = value else {
            return Err(TicketError::Unknown);
        };
        // `expires:user:session`; `expires:user` from servers before the
        // session was recorded. Neither a name nor a session id has a `:`.
        let mut parts = value.splitn(3, ':');
        let (Some(expires), Some(user)) = (
            parts.next().and_then(|e| e.parse::<UnixMillis>().ok()),
            parts.next(),
        ) else {
            return Err(BackendError::new(MalformedTicket).into());
        };
        if expires <= now {
            return Err(TicketError::Expired);
        }
        Ok(Redeemed {
            user: user.to_owned(),
            session: parts.next().map(str::to_owned),
        })
    }

    async fn revoke_session(&self, session: &str) -> Result<usize, BackendError> {
        let mut conn = self.redis.conn.clone();
        let revoked: i64 = Script::new(REVOKE_SESSION)
            .key(self.of_session(session))
            .invoke_async(&mut conn)
            .await?;
        Ok(usize::try_from(revoked).unwrap_or(0))
    }

    /// Nothing to do: Redis forgets expired tickets by itself.
    async fn prune(&self, _now: UnixMillis) -> Result<usize, BackendError> {
        Ok(0)
    }
}

/// Counts one attempt against every key (of the `n` limits, `KEYS[i]` has
/// the limit `ARGV[i]` and backs off when `ARGV[n + i]` is 1, counting its
/// full windows under `KEYS[n + i]`; then come the window, the largest
/// backoff factor and the strikes' memory, in ms), or none when one is at its
/// limit: then the longest time left (ms) in the windows of the keys at their
/// limit. 0 when counted. A backing-off key's `k`th full window is made to
/// last 2^(k-1) windows from the attempt that filled it. One script, so that the check and the count are one step
/// for every server sharing this Redis, and so that no crash between the
/// `INCR` and the `PEXPIRE` of a window's first attempt leaves a count that
/// never expires, which would lock a key out for good.
const RESERVE: &str = r"
local n = #KEYS / 2
local wait = 0
for i = 1, n do
  local key = KEYS[i]
  local attempts = tonumber(redis.call('GET', key) or '0')
  if attempts >= tonumber(ARGV[i]) then
    local ttl = redis.call('PTTL', key)
    if ttl > 0 then
      if ttl > wait then wait = ttl end
    else
      -- Its window ends within the millisecond: this attempt opens the
      -- next one, rather than pass uncounted on a key about to expire.
      redis.call('DEL', key)
    end
  end
end
if wait > 0 then return wait end
local window = tonumber(ARGV[2 * n + 1])
local most = tonumber(ARGV[2 * n + 2])
local memory = ARGV[2 * n + 3]
for i = 1, n do
  local key = KEYS[i]
  local attempts = redis.call('INCR', key)
  if redis.call('PTTL', key) < 0 then
    redis.call('PEXPIRE', key, window)
  end
  if ARGV[n + i] == '1' and attempts == tonumber(ARGV[i]) then
    local strikes = redis.call('INCR', KEYS[n + i])
    redis.call('PEXPIRE', KEYS[n + i], memory)
    local factor = math.min(2 ^ (strikes - 1), most)
    if factor > 1 then
      redis.call('PEXPIRE', key, window * factor)
    end
  end
end
return 0
";

/// Gives back one attempt of each key that has one (`DECR` keeps the TTL).
const REFUND: &str = r"
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') > 0 then
    redis.call('DECR', key)
  end
end
return 0
";

/// Login attempts counted in Redis, under `{prefix}:login:<key>`, so that
/// every server of a cluster counts them together: N servers allow as many
/// guesses per user name and address in a window as one server does. The
/// window of a key is the TTL of its counter, opened by its first attempt, as in
/// [`super::throttle::MemoryThrottle`].
pub(crate) struct RedisThrottle {
    redis: SharedRedis,
    /// What is counted: the middle of the keys' names (`login`).
    namespace: &'static str,
    window: Duration,
    reserve: Script,
    refund: Script,
}

impl RedisThrottle {
    /// Counts login attempts under `redis.prefix` in windows of `window`.
    pub(crate) fn new(redis: SharedRedis, window: Duration) -> Self {
        Self::counting("login", redis, window)
    }

    /// Counts something else than logins, under `{prefix}:{namespace}:<key>`.
    pub(crate) fn counting(namespace: &'static str, redis: SharedRedis, window: Duration) -> Self {
        Self {
            redis,
            namespace,
            window,
            reserve: Script::new(RESERVE),
            refund: Script::new(REFUND),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{}:{key}", self.redis.prefix, self.namespace)
    }
}

#[async_trait]
impl LoginLimiter for RedisThrottle {
    async fn reserve(&self, limits: &[Limit<'_>]) -> Result<(), LimitError> {
        let mut invocation = self.reserve.prepare_invoke();
        for limit in limits {
            invocation.key(self.key(limit.key)).arg(limit.attempts);
        }
        for limit in limits {
            invocation
                .key(self.key(&format!("strikes:{}", limit.key)))
                .arg(u8::from(limit.backoff));
        }
        // At least a millisecond: `PEXPIRE key 0` would delete the count.
        invocation
            .arg(millis(self.window).max(1))
            .arg(MAX_BACKOFF)
            .arg(millis(STRIKE_MEMORY));
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

    async fn refund(&self, keys: &[&str]) -> Result<(), BackendError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut invocation = self.refund.prepare_invoke();
        for key in keys {
            invocation.key(self.key(key));
        }
        let mut conn = self.redis.conn.clone();
        let _: i64 = invocation.invoke_async(&mut conn).await?;
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
        let ticket = a.issue("alice", "s1", 0, TTL).await.expect("issues");
        assert_eq!(ticket.len(), 64);

        // Stored under its hash, never in the clear, expiring by itself, as
        // does its session's list of tickets.
        let mut stored = keys(&a.redis).await;
        stored.sort();
        let mut expected = vec![a.key(&ticket), a.of_session("s1")];
        expected.sort();
        assert_eq!(stored, expected);
        let mut conn = a.redis.conn.clone();
        for key in &stored {
            assert!(!key.contains(&ticket));
            let ttl: i64 = conn.pttl(key).await.expect("pttl");
            assert!(0 < ttl && ttl <= TTL, "{key}: {ttl}");
        }

        assert_eq!(
            b.redeem(&ticket, 1).await.expect("redeems on b"),
            Redeemed {
                user: "alice".into(),
                session: Some("s1".into())
            }
        );
        assert!(
            matches!(a.redeem(&ticket, 1).await, Err(TicketError::Unknown)),
            "used up everywhere"
        );
        assert!(matches!(
            b.redeem("made-up", 1).await,
            Err(TicketError::Unknown)
        ));
        assert_eq!(
            keys(&a.redis).await,
            [a.of_session("s1")],
            "only the session's list is left, expiring"
        );
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
            let ticket = nodes[0].issue("alice", "s1", 0, TTL).await.expect("issues");
            let redeems: Vec<_> = (0..16)
                .map(|i| {
                    let (node, ticket) = (nodes[i % 2].clone(), ticket.clone());
                    tokio::spawn(async move { node.redeem(&ticket, 1).await })
                })
                .collect();
            let (mut won, mut refused) = (0, 0);
            for redeem in redeems {
                match redeem.await.expect("task") {
                    Ok(redeemed) => {
                        assert_eq!(redeemed.user, "alice");
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
    async fn a_logout_on_one_node_ends_the_sessions_unused_tickets_on_all() {
        let Some(engine) = chat_test_engines::redis().await else {
            return;
        };
        let a = RedisTickets::new(node(&engine.url, &engine.prefix).await);
        let b = RedisTickets::new(node(&engine.url, &engine.prefix).await);
        let used = a.issue("alice", "s1", 0, TTL).await.expect("issues");
        let unused = a.issue("alice", "s1", 0, TTL).await.expect("issues");
        let minted_on_b = b.issue("alice", "s1", 0, TTL).await.expect("issues");
        let other = a.issue("alice", "s2", 0, TTL).await.expect("issues");
        a.redeem(&used, 1).await.expect("redeems");

        assert_eq!(b.revoke_session("s1").await.expect("revokes"), 2);
        for ticket in [&unused, &minted_on_b] {
            assert!(matches!(
                a.redeem(ticket, 1).await,
                Err(TicketError::Unknown)
            ));
        }
        assert_eq!(
            a.redeem(&other, 1)
                .await
                .expect("another session's")
                .session
                .as_deref(),
            Some("s2")
        );
        assert_eq!(a.revoke_session("s1").await.expect("again"), 0);
    }

    #[tokio::test]
    async fn tickets_expire_by_the_callers_time_and_by_redis() {
        let Some(engine) = chat_test_engines::redis().await else {
            return;
        };
        let a = RedisTickets::new(node(&engine.url, &engine.prefix).await);
        let b = RedisTickets::new(node(&engine.url, &engine.prefix).await);
        let ticket = a.issue("alice", "s1", 0, TTL).await.expect("issues");
        assert!(matches!(
            b.redeem(&ticket, TTL).await,
            Err(TicketError::Expired)
        ));
        assert!(
            matches!(b.redeem(&ticket, 0).await, Err(TicketError::Unknown)),
            "an expired ticket is used up too"
        );

        // Redis forgets a ticket at its expiry, unused or not.
        // Its session's list of tickets goes with its last ticket.
        let short = a.issue("alice", "s2", 0, 50).await.expect("issues");
        eventually(
            Duration::from_secs(5),
            "redis expires the ticket",
            || async {
                let left = keys(&a.redis).await;
                !left.contains(&a.key(&short)) && !left.contains(&a.of_session("s2"))
            },
        )
        .await;
        assert!(matches!(
            b.redeem(&short, 1).await,
            Err(TicketError::Unknown)
        ));
        assert_eq!(a.prune(TTL).await.expect("prunes"), 0, "nothing to do");
    }

    /// The pair's backoff counts across nodes too: its second full window
    /// is twice as long, wherever the attempts came from.
    #[tokio::test]
    async fn a_backing_off_key_is_refused_longer_on_every_node() {
        let Some(engine) = chat_test_engines::redis().await else {
            return;
        };
        let window = Duration::from_secs(1);
        let a = RedisThrottle::new(node(&engine.url, &engine.prefix).await, window);
        let b = RedisThrottle::new(node(&engine.url, &engine.prefix).await, window);
        let pair = [Limit::backing_off("pair:alice|10.0.0.9", 2)];
        a.reserve(&pair).await.expect("one");
        b.reserve(&pair).await.expect("two");
        match b.reserve(&pair).await {
            Err(LimitError::Limited(wait)) => assert!(wait <= window, "{wait:?}"),
            other => panic!("first strike: {other:?}"),
        }
        eventually(
            Duration::from_secs(5),
            "the first window to end",
            || async { a.reserve(&pair).await.is_ok() },
        )
        .await;
        b.reserve(&pair).await.expect("two");
        match a.reserve(&pair).await {
            Err(LimitError::Limited(wait)) => {
                assert!(wait > window && wait <= window * 2, "{wait:?}");
            }
            other => panic!("second strike: {other:?}"),
        }
        assert!(
            a.reserve(&[Limit::backing_off("pair:alice|10.0.0.10", 2)])
                .await
                .is_ok(),
            "another pair is not slowed"
        );
    }

    #[tokio::test]
    async fn attempts_count_together_across_nodes_until_the_window_ends() {
        let Some(engine) = chat_test_engines::redis().await else {
            return;
        };
        // Long enough for the steps between two checks on a loaded machine,
        // short enough to wait out.
        let window = Duration::from_secs(2);
        let a = RedisThrottle::new(node(&engine.url, &engine.prefix).await, window);
        let b = RedisThrottle::new(node(&engine.url, &engine.prefix).await, window);
        let limits = [
            Limit::fixed("pair:alice|10.0.0.1", 3),
            Limit::fixed("ip:10.0.0.1", 30),
        ];

        a.reserve(&limits).await.expect("one of three");
        b.reserve(&limits).await.expect("two of three");
        a.reserve(&limits).await.expect("three of three");
        for node in [&a, &b] {
            match node.reserve(&limits).await {
                Err(LimitError::Limited(wait)) => {
                    assert!(Duration::ZERO < wait && wait <= window, "{wait:?}");
                }
                other => panic!("not limited: {other:?}"),
            }
        }
        // The refused reserves counted nothing on the address, which is under its limit.
        b.reserve(&[Limit::fixed("ip:10.0.0.1", 4)])
            .await
            .expect("3 < 4");
        a.reserve(&[Limit::fixed("pair:bob|10.0.0.1", 3)])
            .await
            .expect("per key");

        eventually(Duration::from_secs(10), "the window ends", || async {
            b.reserve(&[Limit::fixed("pair:alice|10.0.0.1", 1)])
                .await
                .is_ok()
        })
        .await;
        // A new window, opened by that reserve: a limit of one is now reached.
        assert!(matches!(
            a.reserve(&[Limit::fixed("pair:alice|10.0.0.1", 1)]).await,
            Err(LimitError::Limited(_))
        ));
    }

    #[tokio::test]
    async fn a_refund_on_one_node_gives_the_attempt_back_on_all() {
        let Some(engine) = chat_test_engines::redis().await else {
            return;
        };
        let window = Duration::from_secs(60);
        let a = RedisThrottle::new(node(&engine.url, &engine.prefix).await, window);
        let b = RedisThrottle::new(node(&engine.url, &engine.prefix).await, window);
        a.reserve(&[Limit::fixed("pair:alice|x", 2)])
            .await
            .expect("one");
        a.reserve(&[Limit::fixed("pair:alice|x", 2)])
            .await
            .expect("two");
        assert!(matches!(
            b.reserve(&[Limit::fixed("pair:alice|x", 2)]).await,
            Err(LimitError::Limited(_))
        ));
        b.refund(&["pair:alice|x", "never-counted"])
            .await
            .expect("refunds");
        a.reserve(&[Limit::fixed("pair:alice|x", 2)])
            .await
            .expect("given back");
        assert!(matches!(
            b.reserve(&[Limit::fixed("pair:alice|x", 2)]).await,
            Err(LimitError::Limited(_))
        ));
    }

    #[tokio::test]
    async fn concurrent_reserves_on_two_nodes_pass_exactly_the_limit() {
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
        let attempts: Vec<_> = (0..40)
            .map(|i| {
                let node = nodes[i % 2].clone();
                tokio::spawn(async move { node.reserve(&[Limit::fixed("pair:alice|x", 7)]).await })
            })
            .collect();
        let mut passed = 0;
        for attempt in attempts {
            match attempt.await.expect("task") {
                Ok(()) => passed += 1,
                Err(LimitError::Limited(wait)) => assert!(wait <= window, "{wait:?}"),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(passed, 7, "40 at once, a limit of 7");
    }

    #[tokio::test]
    async fn a_killed_redis_gives_errors_then_the_same_stores_recover() {
        let Some(mut engine) = PrivateRedis::start().await else {
            return;
        };
        let redis = node(&engine.url(), "chat").await;
        let tickets = RedisTickets::new(redis.clone());
        let throttle = RedisThrottle::new(redis, Duration::from_secs(60));
        let before = tickets.issue("alice", "s1", 0, TTL).await.expect("issues");
        throttle
            .reserve(&[Limit::fixed("user:alice", 5)])
            .await
            .expect("counts");

        engine.kill();
        assert!(soon(tickets.issue("alice", "s1", 0, TTL)).await.is_err());
        assert!(
            matches!(
                soon(tickets.redeem(&before, 1)).await,
                Err(TicketError::Backend(_))
            ),
            "a failure, not a refusal of the ticket"
        );
        assert!(matches!(
            soon(throttle.reserve(&[Limit::fixed("user:alice", 5)])).await,
            Err(LimitError::Backend(_))
        ));
        assert!(soon(throttle.refund(&["user:alice"])).await.is_err());

        engine.restart().await;
        eventually(Duration::from_secs(15), "the store reconnects", || async {
            tickets.issue("alice", "s1", 0, TTL).await.is_ok()
        })
        .await;
        // The restarted Redis is empty (no persistence in this test).
        assert!(matches!(
            tickets.redeem(&before, 1).await,
            Err(TicketError::Unknown)
        ));
        let after = tickets.issue("alice", "s1", 0, TTL).await.expect("issues");
        assert_eq!(
            tickets.redeem(&after, 1).await.expect("redeems").user,
            "alice"
        );
        // The scripts are loaded again into the new server.
        throttle
            .reserve(&[Limit::fixed("user:alice", 1)])
            .await
            .expect("empty");
        assert!(matches!(
            throttle.reserve(&[Limit::fixed("user:alice", 1)]).await,
            Err(LimitError::Limited(_))
        ));
    }
}
