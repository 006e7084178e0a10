//! Cluster mode: several server processes (nodes) sharing one room log (a
//! shared database) and one Redis, which carries room events between them
//! ([`RedisBus`]) and holds who is where ([`RedisPresence`]).
//!
//! [`connect`] assembles a [`Node`] from these, as the server uses it.
//!
//! # Redis
//!
//! Every room has its own sharded pub/sub channel, `<prefix>:room:{<room>}`,
//! and its presence lives in `<prefix>:presence:{<room>}:n` and `...:u`: all
//! three carry the room as their hash tag, so they map to one Redis Cluster
//! slot and each presence script touches one slot only.
//!
//! What was tested: a single Redis 7 server (`SPUBLISH`, `SSUBSCRIBE` and
//! `SUNSUBSCRIBE` sent as ordinary commands on a RESP3 connection), including
//! it being killed and restarted empty. What a Redis Cluster would need in
//! addition: a cluster-aware client that sends each `SSUBSCRIBE` to the
//! shard owning the channel's slot (one subscriber connection per shard),
//! follows `MOVED` redirections, and subscribes again when a slot migrates
//! (Redis then sends an unsolicited `sunsubscribe`, which the single-server
//! subscriber does not expect); the publisher's and the presence's pipelines
//! would have to be split per slot, since they mix rooms (and the per-node
//! keys, which have no hash tag). redis-rs's `cluster-async` client offers
//! sharded subscriptions; it is not used here because it cannot be tested
//! against a single server.
//!
//! # Failure
//!
//! The log is the authority. While Redis is down, messages are still
//! stored and acked; the bus keeps a bounded backlog and publishes it once
//! Redis is back, and every node resyncs its rooms from the log when its
//! subscription is back, so every member gets every message once, in order.
//! Presence degrades to this node's own view and notices may be late or
//! missed. [`Cluster::ready`] says whether the bus works right now.

mod bus;
mod keys;
mod link;
mod presence;
mod presence_writer;
mod publisher;
mod reaper;
mod scripts;
mod subscriber;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::{CancellationToken, DropGuard};

pub use bus::{BusStats, RedisBus};
pub use presence::RedisPresence;

use crate::hub::{Hub, HubOptions};
use crate::interest::Interest;
use crate::metrics::NodeMetrics;
use crate::node::{Node, Parts};
use crate::room_log::RoomLog;

/// The default [`ClusterSettings::gap_grace`]: a few times what two
/// publishers' messages to one Redis are ever seen to be reordered by.
pub const DEFAULT_GAP_GRACE: Duration = Duration::from_millis(50);

/// The default [`ClusterSettings::bus_backlog`]: a few seconds of a busy
/// node's traffic, a few tens of MB at worst.
pub const DEFAULT_BUS_BACKLOG: usize = 65_536;

/// The default [`ClusterSettings::presence_ttl`].
pub const DEFAULT_PRESENCE_TTL: Duration = Duration::from_secs(15);

/// The shortest [`ClusterSettings::presence_ttl`] accepted.
pub const MIN_PRESENCE_TTL: Duration = Duration::from_millis(300);

/// What a cluster node is made of.
pub struct ClusterSettings {
    /// The room log every node shares.
    pub log: Arc<dyn RoomLog>,
    /// `redis://...` (or `rediss://...`).
    pub redis_url: String,
    /// Prefixes every Redis key and channel, so that several clusters (or
    /// tests) can share one Redis. No braces: they would change hash tags.
    pub prefix: String,
    /// Names this node, unique in the cluster; in logs and in Redis. No
    /// `|` or `#`, which Redis entries use as separators.
    pub node_id: String,
    /// A node that has not refreshed its heartbeat for this long is
    /// considered dead: the others remove its members and announce their
    /// departure. It refreshes every third of it.
    pub presence_ttl: Duration,
    /// Each connection's send queue (live events held for a catching-up
    /// member are bounded by it).
    pub send_queue: usize,
    /// Messages of history in a plain `joined`.
    pub history_on_join: usize,
    /// Largest frame of history sent ([`Node::with_max_frame`]).
    pub max_frame: usize,
    /// How long a gap in a room's events waits for the missing one to
    /// arrive before it is read from the log.
    pub gap_grace: Duration,
    /// Payloads the bus keeps while Redis is away; beyond, the oldest go.
    pub bus_backlog: usize,
}

impl ClusterSettings {
    /// Settings with the defaults for everything but what has none.
    pub fn new(log: Arc<dyn RoomLog>, redis_url: &str, prefix: &str, node_id: &str) -> Self {
        Self {
            log,
            redis_url: redis_url.to_owned(),
            prefix: prefix.to_owned(),
            node_id: node_id.to_owned(),
            presence_ttl: DEFAULT_PRESENCE_TTL,
            send_queue: 256,
            history_on_join: 50,
            max_frame: crate::node::DEFAULT_MAX_FRAME,
            gap_grace: DEFAULT_GAP_GRACE,
            bus_backlog: DEFAULT_BUS_BACKLOG,
        }
    }

    fn check(&self) -> Result<(), ClusterError> {
        let bad = |why: &str| Err(ClusterError::Setting(why.to_owned()));
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return bad("the Redis prefix must be non-empty, without braces");
        }
        if self.node_id.is_empty() || self.node_id.contains(['|', '#']) {
            return bad("the node id must be non-empty, without '|' or '#'");
        }
        if self.presence_ttl < MIN_PRESENCE_TTL {
            return bad("the presence TTL must be at least 300 ms");
        }
        if self.send_queue == 0 {
            return bad("the send queue must hold at least one frame");
        }
        Ok(())
    }
}

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A setting is out of range.
    #[error("cluster settings: {0}")]
    Setting(String),
    /// Redis is unreachable or refused (at start-up; later failures are
    /// retried, not returned).
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// A running cluster node. Its background tasks (publisher, subscriber,
/// presence writer) stop when this is dropped or [`Cluster::stop`] is
/// called (or the [`Cluster::stopping`] token is cancelled), without
/// cleaning up: to the other nodes that is a node that died, whose members
/// they remove after the presence TTL. A graceful shutdown closes the
/// connections first (each leave is announced), then calls
/// [`Cluster::shutdown`].
pub struct Cluster {
    node: Arc<Node>,
    bus: Arc<RedisBus>,
    presence: Arc<RedisPresence>,
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
}

impl Cluster {
    /// The node the connections use.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// The bus, for its health.
    pub fn bus(&self) -> &Arc<RedisBus> {
        &self.bus
    }

    /// The presence.
    pub fn presence(&self) -> &Arc<RedisPresence> {
        &self.presence
    }

    /// Whether the node can reach the other nodes right now: for `/readyz`.
    pub fn ready(&self) -> bool {
        self.bus.ready()
    }

    /// Stops the background tasks now (as dropping does).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// A graceful end, once the connections have left their rooms: retires
    /// this node's presence (the other nodes reap whatever is left at once,
    /// announcing it), publishes what the bus still holds (the last
    /// notices) for at most `grace`, then stops the background tasks.
    pub async fn shutdown(self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        if tokio::time::timeout(grace, self.presence.retire())
            .await
            .is_err()
        {
            tracing::warn!("presence did not retire in time");
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if !self.bus.flush(left).await {
            tracing::warn!(
                backlog = self.bus.stats().backlog,
                "bus not flushed in time"
            );
        }
        self.stop();
    }
}

/// Connects to Redis and assembles a cluster node over `settings.log`.
/// Fails when a setting is out of range or Redis cannot be reached now;
/// once running, Redis failures are retried in the background. Needs a
/// tokio runtime.
pub async fn connect(settings: ClusterSettings) -> Result<Cluster, ClusterError> {
    settings.check()?;
    let ClusterSettings {
        log,
        redis_url,
        prefix,
        node_id,
        presence_ttl,
        send_queue,
        history_on_join,
        max_frame,
        gap_grace,
        bus_backlog,
    } = settings;
    let keys = keys::Keys::new(&prefix);
    let stop = CancellationToken::new();
    // Stops what has started should a later step fail.
    let stop_on_drop = stop.clone().drop_guard();
    let interest = Interest::new();
    let hub = Hub::with_options(
        log.clone(),
        HubOptions {
            hold_at_most: send_queue,
            gap_grace,
            interest: Some(interest.clone()),
            metrics: NodeMetrics::default(),
        },
    );
    let bus = RedisBus::start(bus::BusConfig {
        url: redis_url.clone(),
        keys: keys.clone(),
        node_id: node_id.clone(),
        backlog: bus_backlog,
        hub: Arc::downgrade(&hub),
        interest,
        stop: stop.clone(),
    })
    .await?;
    let presence = RedisPresence::start(presence::PresenceConfig {
        url: redis_url,
        keys,
        node_id,
        ttl: presence_ttl,
        stop: stop.clone(),
    })
    .await?;
    let node = Arc::new(
        Node::from_parts(
            Parts {
                log,
                bus: bus.clone(),
                hub,
                presence: presence.clone(),
            },
            history_on_join,
        )
        .with_max_frame(max_frame),
    );
    Ok(Cluster {
        node,
        bus,
        presence,
        stop,
        _stop_on_drop: stop_on_drop,
    })
}
