//! The one task that changes this node's presence in Redis, in the order
//! the local counts changed.
//!
//! A join or leave that changes the local count (a user's first or last
//! connection here) queues its Redis change while it holds the local
//! count's lock, so Redis sees one node's changes in that order even though
//! they come from many connections; the task pipelines what is queued.
//!
//! The heartbeat goes through the same queue. It also re-registers the node
//! when Redis no longer knows it (Redis restarted empty, or the node was
//! reaped after a stall) or when an earlier change was lost (a failed
//! command, a full queue): under a new incarnation it enters every local
//! entry again, then deletes the old incarnation's heartbeat so that the
//! reaper removes the old entries at once. Users thereby new to a room are
//! announced as joined, except when Redis lost its data (nobody was told
//! they left); users whose leave was lost are announced as left by the
//! reaper. While Redis is away, joins and leaves still work, answering "not
//! first"/"not last": their notices wait for the re-registration, and are
//! missed if Redis comes back empty.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::RedisResult;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::keys::Keys;
use super::link;
use super::scripts;
use crate::presence::{Change, LocalPresence};

/// Requests queued at most; beyond, a change is lost and the node
/// re-registers at its next heartbeat.
pub(crate) const QUEUE: usize = 8192;

/// Changes pipelined at once at most.
const BATCH: usize = 256;

/// One queued request.
pub(crate) enum Op {
    /// A user's first connection in a room here; answers whether it is the
    /// user's first in the room anywhere.
    Join {
        room: String,
        user: String,
        done: oneshot::Sender<bool>,
    },
    /// A user's last connection in a room here; answers whether it was the
    /// user's last anywhere. `emptied`: the room has nobody left here.
    Leave {
        room: String,
        user: String,
        emptied: bool,
        done: oneshot::Sender<bool>,
    },
    /// Refresh the heartbeat; answers what re-registering found.
    Heartbeat { done: oneshot::Sender<Vec<Change>> },
    /// A graceful shutdown: stop heartbeating and delete the heartbeat, so
    /// that the other nodes reap whatever entries are left at once.
    Retire { done: oneshot::Sender<()> },
}

/// Who this node is in Redis, shared by the writer and the reaper.
pub(crate) struct Identity {
    pub(crate) node_id: String,
    /// The current incarnation: `<node id>#<random>`, new at each
    /// (re-)registration.
    current: Mutex<Arc<str>>,
    /// A change may not have reached Redis: re-register at the next
    /// heartbeat, and until then take Redis for away (answer from the local
    /// view at once rather than wait for another timeout).
    pub(crate) dirty: AtomicBool,
    /// Shut down gracefully: nothing more is written.
    retired: AtomicBool,
}

impl Identity {
    pub(crate) fn new(node_id: &str) -> Self {
        Self {
            node_id: node_id.to_owned(),
            current: Mutex::new(Self::fresh(node_id)),
            dirty: AtomicBool::new(false),
            retired: AtomicBool::new(false),
        }
    }

    fn fresh(node_id: &str) -> Arc<str> {
        format!("{node_id}#{}", link::token()).into()
    }

    /// Whether Redis is taken for away until the next heartbeat.
    pub(crate) fn suspect(&self) -> bool {
        self.dirty.load(Ordering::Relaxed)
    }

    pub(crate) fn current(&self) -> Arc<str> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set(&self, incarnation: Arc<str>) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = incarnation;
    }
}

/// Registers `incarnation`: its heartbeat first, then the registry, so a
/// reaper never finds it registered without a heartbeat.
pub(crate) async fn register(
    conn: &mut ConnectionManager,
    keys: &Keys,
    identity: &Identity,
    incarnation: &str,
    ttl: Duration,
) -> RedisResult<()> {
    redis::pipe()
        .cmd("SET")
        .arg(keys.heartbeat(incarnation))
        .arg(&identity.node_id)
        .arg("PX")
        .arg(millis(ttl))
        .ignore()
        .cmd("HSET")
        .arg(keys.registry())
        .arg(incarnation)
        .arg(&identity.node_id)
        .ignore()
        .query_async(conn)
        .await
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The writer task's parts.
pub(crate) struct Writer {
    pub(crate) conn: ConnectionManager,
    pub(crate) keys: Keys,
    pub(crate) identity: Arc<Identity>,
    pub(crate) local: Arc<LocalPresence>,
    pub(crate) ttl: Duration,
    /// The last incarnation whose registration succeeded: what a
    /// re-registration replaces (the current one may have failed to).
    pub(crate) registered: Arc<str>,
}

/// A queued join or leave with its answer.
type Pending = Vec<Op>;

/// Answers every join and leave "no".
fn answer_no(ops: Pending) {
    for op in ops {
        if let Op::Join { done, .. } | Op::Leave { done, .. } = op {
            let _ = done.send(false);
        }
    }
}

impl Writer {
    /// Takes queued requests in order until `stop` or every sender is gone.
    pub(crate) async fn run(mut self, mut ops: mpsc::Receiver<Op>, stop: CancellationToken) {
        loop {
            let first = tokio::select! {
                () = stop.cancelled() => return,
                op = ops.recv() => match op {
                    Some(op) => op,
                    None => return,
                },
            };
            let mut pending: Pending = Vec::new();
            let mut next = Some(first);
            while let Some(op) = next.take() {
                match op {
                    Op::Heartbeat { done } => {
                        // Changes queued before it go first.
                        self.apply(std::mem::take(&mut pending)).await;
                        let _ = done.send(self.heartbeat().await);
                    }
                    Op::Retire { done } => {
                        self.apply(std::mem::take(&mut pending)).await;
                        self.retire().await;
                        let _ = done.send(());
                    }
                    op => pending.push(op),
                }
                if pending.len() < BATCH {
                    next = ops.try_recv().ok();
                }
            }
            self.apply(pending).await;
        }
    }

    /// Runs the scripts of queued joins and leaves in one pipeline and
    /// answers each; on failure every answer is "no", and the node
    /// re-registers at its next heartbeat.
    async fn apply(&mut self, ops: Pending) {
        if ops.is_empty() {
            return;
        }
        if self.identity.dirty.load(Ordering::Relaxed)
            || self.identity.retired.load(Ordering::Relaxed)
        {
            // Redis is away (or this node is done): the re-registration
            // will reconcile, and announce, what these change.
            answer_no(ops);
            return;
        }
        let incarnation = self.identity.current();
        let rooms = self.keys.rooms_of(&incarnation);
        let mut pipe = redis::pipe();
        for op in &ops {
            match op {
                Op::Join { room, user, .. } => {
                    pipe.cmd("SADD").arg(&rooms).arg(room).ignore();
                    pipe.add_command(
                        scripts::eval(
                            scripts::JOIN,
                            &self.keys.entries(room),
                            &self.keys.users(room),
                        )
                        .arg(&*incarnation)
                        .arg(user)
                        .clone(),
                    );
                }
                Op::Leave {
                    room,
                    user,
                    emptied,
                    ..
                } => {
                    pipe.add_command(
                        scripts::eval(
                            scripts::LEAVE,
                            &self.keys.entries(room),
                            &self.keys.users(room),
                        )
                        .arg(&*incarnation)
                        .arg(user)
                        .clone(),
                    );
                    if *emptied {
                        pipe.cmd("SREM").arg(&rooms).arg(room).ignore();
                    }
                }
                Op::Heartbeat { .. } | Op::Retire { .. } => {}
            }
        }
        let answers: Vec<i64> = match pipe.query_async(&mut self.conn).await {
            Ok(answers) => answers,
            Err(e) => {
                self.identity.dirty.store(true, Ordering::Relaxed);
                tracing::warn!(error = %e, "presence cannot reach Redis; notices wait for it");
                Vec::new()
            }
        };
        let mut answers = answers.into_iter();
        for op in ops {
            let yes = answers.next() == Some(1);
            match op {
                Op::Join { done, .. } | Op::Leave { done, .. } => {
                    let _ = done.send(yes);
                }
                Op::Heartbeat { .. } | Op::Retire { .. } => {}
            }
        }
    }

    async fn retire(&mut self) {
        self.identity.retired.store(true, Ordering::Relaxed);
        let incarnation = self.identity.current();
        let deleted = redis::cmd("DEL")
            .arg(self.keys.heartbeat(&incarnation))
            .query_async::<()>(&mut self.conn)
            .await;
        if let Err(e) = deleted {
            tracing::warn!(error = %e, "presence cannot retire; the other nodes reap it after the TTL");
        }
    }

    /// Refreshes the heartbeat, re-registering when needed.
    async fn heartbeat(&mut self) -> Vec<Change> {
        if self.identity.retired.load(Ordering::Relaxed) {
            return Vec::new();
        }
        if !self.identity.dirty.swap(false, Ordering::Relaxed) {
            let incarnation = self.identity.current();
            let refreshed: RedisResult<Option<String>> = redis::cmd("SET")
                .arg(self.keys.heartbeat(&incarnation))
                .arg(&self.identity.node_id)
                .arg("PX")
                .arg(millis(self.ttl))
                .arg("GET")
                .query_async(&mut self.conn)
                .await;
            match refreshed {
                Ok(Some(_)) => return Vec::new(),
                // Expired (a stall, perhaps reaped) or forgotten (Redis
                // restarted empty).
                Ok(None) => {}
                Err(e) => {
                    self.identity.dirty.store(true, Ordering::Relaxed);
                    tracing::warn!(error = %e, "presence heartbeat failed");
                    return Vec::new();
                }
            }
        }
        match self.reregister().await {
            Ok(changes) => changes,
            Err(e) => {
                self.identity.dirty.store(true, Ordering::Relaxed);
                tracing::warn!(error = %e, "presence cannot re-register; trying again");
                Vec::new()
            }
        }
    }

    /// Registers a new incarnation and enters every local entry under it;
    /// the old one's heartbeat goes, so the reaper takes its entries. An
    /// attempt that fails part way leaves a new incarnation that nobody
    /// heartbeats: it is reaped like any dead one.
    async fn reregister(&mut self) -> RedisResult<Vec<Change>> {
        let old = self.registered.clone();
        let fresh = Identity::fresh(&self.identity.node_id);
        let (registered, reaped): (bool, bool) = redis::pipe()
            .cmd("HEXISTS")
            .arg(self.keys.registry())
            .arg(&*old)
            .cmd("EXISTS")
            .arg(self.keys.tombstone(&old))
            .query_async(&mut self.conn)
            .await?;
        register(&mut self.conn, &self.keys, &self.identity, &fresh, self.ttl).await?;
        // From here on, changes are written under the new incarnation.
        self.identity.set(fresh.clone());
        let snapshot = self.local.snapshot();
        let rooms = self.keys.rooms_of(&fresh);
        let mut pipe = redis::pipe();
        let mut entered = Vec::new();
        for (room, users) in &snapshot {
            pipe.cmd("SADD").arg(&rooms).arg(room).ignore();
            for user in users {
                pipe.add_command(
                    scripts::eval(
                        scripts::JOIN,
                        &self.keys.entries(room),
                        &self.keys.users(room),
                    )
                    .arg(&*fresh)
                    .arg(user)
                    .clone(),
                );
                entered.push((room, user));
            }
        }
        let firsts: Vec<i64> = if entered.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut self.conn).await?
        };
        redis::cmd("DEL")
            .arg(self.keys.heartbeat(&old))
            .query_async::<()>(&mut self.conn)
            .await?;
        self.registered = fresh.clone();
        // Redis forgot everything: nobody was told these users left.
        let announce = registered || reaped;
        tracing::info!(
            incarnation = %fresh,
            entries = entered.len(),
            lost_data = !announce,
            "presence re-registered"
        );
        Ok(entered
            .into_iter()
            .zip(firsts)
            .filter(|&(_, first)| announce && first == 1)
            .map(|((room, user), _)| Change::Joined {
                room: room.clone(),
                user: user.clone(),
            })
            .collect())
    }
}
