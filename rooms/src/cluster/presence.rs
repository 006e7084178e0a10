//! Presence shared by every node through Redis.
//!
//! Each node counts its own connections in memory (a [`LocalPresence`]);
//! only a user's first connection in a room on a node, and its last, change
//! Redis. Per room, a hash of entries (`<incarnation>|<user>`) and a hash
//! of users (user -> number of node incarnations with an entry) say who is
//! there on which node; small Lua scripts keep the two in step atomically
//! (see [`super::scripts`]). Per node incarnation, a set of its rooms (for
//! the reaper), a heartbeat key that expires after the presence TTL unless
//! refreshed every third of it, and an entry in the node registry.
//!
//! A node that stops heartbeating (it died, or stalled) is reaped by the
//! others (see [`super::reaper`]): its users who are on no other node are
//! announced as having left. A node that finds Redis no longer knows it
//! (Redis restarted empty, or it was reaped) re-registers all its local
//! entries (see [`super::presence_writer`]).
//!
//! Redis errors never fail a join or a leave: they work locally, the
//! member lists and room counts fall back to this node's own, and notices
//! may be late (sent once Redis is back) or missed (when it comes back
//! empty). Redis errors are logged, never panicked on.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::RedisResult;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::keys::Keys;
use super::link;
use super::presence_writer::{self, Identity, Op, Writer};
use super::reaper;
use crate::presence::{Change, LocalPresence, Presence};

/// Presence across every node of a cluster, through one Redis.
pub struct RedisPresence {
    local: Arc<LocalPresence>,
    keys: Keys,
    /// For reads and reaping; the writer has a clone.
    conn: ConnectionManager,
    ops: mpsc::Sender<Op>,
    identity: Arc<Identity>,
    ttl: Duration,
    /// Upkeep skipped, as in a stall (tests).
    suspended: AtomicBool,
}

/// What [`RedisPresence::start`] needs.
pub(crate) struct PresenceConfig {
    pub(crate) url: String,
    pub(crate) keys: Keys,
    pub(crate) node_id: String,
    pub(crate) ttl: Duration,
    /// Stops the writer.
    pub(crate) stop: CancellationToken,
}

impl RedisPresence {
    /// Connects (an error if Redis cannot be reached now), registers this
    /// node and starts the task that writes its changes.
    pub(crate) async fn start(config: PresenceConfig) -> RedisResult<Arc<Self>> {
        let PresenceConfig {
            url,
            keys,
            node_id,
            ttl,
            stop,
        } = config;
        let mut conn = link::manager(link::client(&url, false)?).await?;
        let identity = Arc::new(Identity::new(&node_id));
        presence_writer::register(&mut conn, &keys, &identity, &identity.current(), ttl).await?;
        let local = Arc::new(LocalPresence::default());
        let (ops, queue) = mpsc::channel(presence_writer::QUEUE);
        tokio::spawn(
            Writer {
                conn: conn.clone(),
                keys: keys.clone(),
                identity: identity.clone(),
                local: local.clone(),
                ttl,
                registered: identity.current(),
            }
            .run(queue, stop),
        );
        Ok(Arc::new(Self {
            local,
            keys,
            conn,
            ops,
            identity,
            ttl,
            suspended: AtomicBool::new(false),
        }))
    }

    /// Skips upkeep (no heartbeat, no reaping) while `suspended`, as a
    /// stalled process would: for tests of what the other nodes do then.
    #[doc(hidden)]
    pub fn suspend_upkeep(&self, suspended: bool) {
        self.suspended.store(suspended, Ordering::Relaxed);
    }

    /// For a graceful shutdown, once the connections have left: writes
    /// what is queued, then deletes this node's heartbeat and stops
    /// heartbeating, so that the other nodes reap (and announce) whatever
    /// entries are left at once rather than after the TTL.
    pub async fn retire(&self) {
        let (done, retired) = oneshot::channel();
        if self.ops.send(Op::Retire { done }).await.is_ok() {
            let _ = retired.await;
        }
    }

    /// This node's current incarnation (`<node id>#<random>`), new each
    /// time it re-registers.
    pub fn incarnation(&self) -> Arc<str> {
        self.identity.current()
    }

    /// Queues `op`, made under the local count's lock; a full or closed
    /// queue loses it (the node re-registers at its next heartbeat).
    fn queue(
        &self,
        op: impl FnOnce(oneshot::Sender<bool>) -> Op,
    ) -> Option<oneshot::Receiver<bool>> {
        let (done, answer) = oneshot::channel();
        match self.ops.try_send(op(done)) {
            Ok(()) => Some(answer),
            Err(_) => {
                self.identity.dirty.store(true, Ordering::Relaxed);
                tracing::warn!("presence queue full; this node re-registers at its next heartbeat");
                None
            }
        }
    }

    async fn users(&self, room: &str) -> RedisResult<Vec<String>> {
        let mut conn = self.conn.clone();
        redis::cmd("HKEYS")
            .arg(self.keys.users(room))
            .query_async(&mut conn)
            .await
    }

    /// [`Presence::occupied`] over every node's entries.
    async fn occupied_everywhere(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> RedisResult<BTreeMap<String, usize>> {
        let mut conn = self.conn.clone();
        let incarnations: Vec<String> = redis::cmd("HKEYS")
            .arg(self.keys.registry())
            .query_async(&mut conn)
            .await?;
        let mut page = BTreeMap::new();
        if incarnations.is_empty() {
            return Ok(page);
        }
        let mut pipe = redis::pipe();
        for incarnation in &incarnations {
            pipe.cmd("SMEMBERS").arg(self.keys.rooms_of(incarnation));
        }
        let per_node: Vec<Vec<String>> = pipe.query_async(&mut conn).await?;
        let candidates: BTreeSet<String> = per_node
            .into_iter()
            .flatten()
            .filter(|room| after.is_none_or(|after| room.as_str() > after))
            .collect();
        // A node's set may still name a room its last user just left: count
        // a page's worth at a time until the page is full of occupied rooms.
        let candidates: Vec<String> = candidates.into_iter().collect();
        for chunk in candidates.chunks(limit.max(1)) {
            let mut pipe = redis::pipe();
            for room in chunk {
                pipe.cmd("HLEN").arg(self.keys.users(room));
            }
            let counts: Vec<usize> = pipe.query_async(&mut conn).await?;
            page.extend(
                chunk
                    .iter()
                    .zip(counts)
                    .filter(|&(_, n)| n > 0)
                    .map(|(room, n)| (room.clone(), n)),
            );
            if page.len() >= limit {
                break;
            }
        }
        while page.len() > limit {
            page.pop_last();
        }
        Ok(page)
    }
}

#[async_trait::async_trait]
impl Presence for RedisPresence {
    async fn join(&self, room: &str, user: &str) -> bool {
        let answer = self.local.join_then(room, user, |first| {
            // Not the first here: the user is in the room already.
            first.then(|| {
                self.queue(|done| Op::Join {
                    room: room.to_owned(),
                    user: user.to_owned(),
                    done,
                })
            })
        });
        match answer.flatten() {
            Some(answer) => answer.await.unwrap_or(false),
            None => false,
        }
    }

    async fn leave(&self, room: &str, user: &str) -> bool {
        let answer = self.local.leave_then(room, user, |last, emptied| {
            // Not the last here: the user stays in the room.
            last.then(|| {
                self.queue(|done| Op::Leave {
                    room: room.to_owned(),
                    user: user.to_owned(),
                    emptied,
                    done,
                })
            })
        });
        match answer.flatten().flatten() {
            Some(answer) => answer.await.unwrap_or(false),
            None => false,
        }
    }

    async fn members(&self, room: &str) -> Vec<String> {
        if self.identity.suspect() {
            return self.local.members(room).await;
        }
        match self.users(room).await {
            Ok(mut users) => {
                users.sort();
                users
            }
            Err(e) => {
                tracing::warn!(error = %e, %room, "presence cannot list members; this node's only");
                self.local.members(room).await
            }
        }
    }

    async fn occupied(&self, after: Option<&str>, limit: usize) -> BTreeMap<String, usize> {
        if self.identity.suspect() {
            return self.local.occupied(after, limit).await;
        }
        match self.occupied_everywhere(after, limit).await {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, "presence cannot count members; this node's only");
                self.local.occupied(after, limit).await
            }
        }
    }

    /// Refreshes the heartbeat (re-registering when needed), then reaps the
    /// nodes that stopped heartbeating.
    async fn maintain(&self) -> Vec<Change> {
        if self.suspended.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let (done, answer) = oneshot::channel();
        if self.ops.send(Op::Heartbeat { done }).await.is_err() {
            return Vec::new();
        }
        let mut changes = answer.await.unwrap_or_default();
        let mut conn = self.conn.clone();
        match reaper::reap(&mut conn, &self.keys, &self.identity.current()).await {
            Ok(departed) => changes.extend(departed),
            Err(e) => tracing::warn!(error = %e, "presence cannot reap dead nodes"),
        }
        changes
    }

    fn maintain_every(&self) -> Option<Duration> {
        Some(self.ttl / 3)
    }
}
