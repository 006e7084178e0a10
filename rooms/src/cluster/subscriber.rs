//! The receiving half of the Redis bus: one RESP3 connection, subscribed
//! (`SSUBSCRIBE`) to the channel of every room this node has members in.
//!
//! Sharded pub/sub in redis-rs 1.8 is offered only by its cluster client;
//! on a single Redis the subscriber sends `SSUBSCRIBE`/`SUNSUBSCRIBE` as
//! ordinary commands on a multiplexed RESP3 connection, one channel per
//! command, so each is answered by exactly one confirmation (which the
//! connection takes as the reply), and messages arrive as push frames.
//! Push frames are handled on the connection's own driver as they are
//! read: decoding and [`Hub::publish`] never wait, so no queue sits between.
//!
//! After each subscription is confirmed the room is resynced from the log:
//! whatever was published before it took effect never arrives. When the
//! connection drops (a disconnection push, a failed command or ping) the
//! task reconnects with backoff, subscribes to every room of interest
//! again and resyncs each.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::aio::{AsyncPushSender, MultiplexedConnection, SendError};
use redis::{Client, PushInfo, PushKind, RedisError, Value};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::bus::Health;
use super::keys::Keys;
use super::link::{self, Backoff};
use super::wire::{self, Payload};
use crate::bus::RoomEvent;
use crate::hub::Hub;
use crate::interest::Interest;

/// How often an idle connection is checked: a dead one (its server gone
/// without a word) is found within this and the response timeout.
const PING_EVERY: Duration = Duration::from_secs(1);

/// Subscriptions sent in one pipeline at most.
const BATCH: usize = 256;

/// The subscriber task's parts.
pub(crate) struct Subscriber {
    pub(crate) client: Client,
    pub(crate) keys: Keys,
    pub(crate) origin: Arc<str>,
    pub(crate) hub: Weak<Hub>,
    pub(crate) interest: Arc<Interest>,
    pub(crate) health: Arc<Health>,
    pub(crate) stop: CancellationToken,
}

/// Why serving one connection ended.
enum Ended {
    /// Stop, or the hub is gone.
    Stopped,
    /// The connection failed; connect again.
    Lost(String),
}

impl From<RedisError> for Ended {
    fn from(e: RedisError) -> Self {
        Self::Lost(e.to_string())
    }
}

impl Subscriber {
    /// Connects, subscribes and serves, reconnecting until stopped.
    pub(crate) async fn run(self) {
        let mut backoff = Backoff::new();
        loop {
            let (dropped, lost) = oneshot::channel();
            let inbound = Inbound {
                keys: self.keys.clone(),
                origin: self.origin.clone(),
                hub: self.hub.clone(),
                health: self.health.clone(),
                dropped: Mutex::new(Some(dropped)),
            };
            let config = link::connection_config().set_push_sender(inbound);
            let connected = tokio::select! {
                () = self.stop.cancelled() => return,
                connected = self.client.get_multiplexed_async_connection_with_config(&config) => connected,
            };
            let ended = match connected {
                Ok(conn) => self.serve(conn, lost, &mut backoff).await,
                Err(e) => Ended::from(e),
            };
            if self.health.subscribed.swap(false, Ordering::Relaxed) {
                self.health.reconnects.inc();
            }
            match ended {
                Ended::Stopped => return,
                Ended::Lost(why) => {
                    tracing::warn!(error = %why, "bus subscriber lost Redis; reconnecting");
                }
            }
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(backoff.delay()) => {}
            }
        }
    }

    /// Subscribes to every room of interest, then follows the interest
    /// until the connection fails or the task is stopped.
    async fn serve(
        &self,
        mut conn: MultiplexedConnection,
        mut lost: oneshot::Receiver<()>,
        backoff: &mut Backoff,
    ) -> Ended {
        let mut subscribed = HashSet::new();
        // Every room now: marks made before this are covered by it.
        self.interest.take();
        let Some(rooms) = self.hub.upgrade().map(|hub| hub.rooms()) else {
            return Ended::Stopped;
        };
        if let Err(ended) = self.reconcile(&mut conn, &mut subscribed, rooms).await {
            return ended;
        }
        self.health.subscribed.store(true, Ordering::Relaxed);
        backoff.reset();
        tracing::info!(rooms = subscribed.len(), "bus subscriber connected");
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let step = tokio::select! {
                () = self.stop.cancelled() => return Ended::Stopped,
                _ = &mut lost => return Ended::Lost("connection closed".into()),
                rooms = self.interest.changed() => {
                    self.reconcile(&mut conn, &mut subscribed, rooms.into_iter().collect()).await
                }
                _ = ping.tick() => {
                    redis::cmd("PING").query_async::<()>(&mut conn).await.map_err(Ended::from)
                }
            };
            if let Err(ended) = step {
                return ended;
            }
        }
    }

    /// Brings the subscriptions of `rooms` in line with the hub: subscribes
    /// to those with members (then resyncs them), unsubscribes from those
    /// without, and resyncs those subscribed already (their state may be
    /// new, made after events this node dropped for want of members).
    async fn reconcile(
        &self,
        conn: &mut MultiplexedConnection,
        subscribed: &mut HashSet<Arc<str>>,
        rooms: Vec<Arc<str>>,
    ) -> Result<(), Ended> {
        let Some(hub) = self.hub.upgrade() else {
            return Err(Ended::Stopped);
        };
        let mut subscribe = Vec::new();
        let mut unsubscribe = Vec::new();
        for room in rooms {
            match (hub.has_room(&room), subscribed.contains(&room)) {
                (true, false) => subscribe.push(room),
                (true, true) => hub.resync(&room),
                (false, true) => unsubscribe.push(room),
                (false, false) => {}
            }
        }
        for chunk in subscribe.chunks(BATCH) {
            self.command(conn, "SSUBSCRIBE", chunk).await?;
            for room in chunk {
                subscribed.insert(room.clone());
                hub.resync(room);
            }
        }
        for chunk in unsubscribe.chunks(BATCH) {
            self.command(conn, "SUNSUBSCRIBE", chunk).await?;
            for room in chunk {
                subscribed.remove(room);
            }
        }
        Ok(())
    }

    /// `command` for each room's channel, one channel per command (see the
    /// module's comment), pipelined; done when every one is confirmed.
    async fn command(
        &self,
        conn: &mut MultiplexedConnection,
        command: &str,
        rooms: &[Arc<str>],
    ) -> Result<(), Ended> {
        let mut pipe = redis::pipe();
        for room in rooms {
            pipe.cmd(command).arg(self.keys.channel(room)).ignore();
        }
        tokio::select! {
            () = self.stop.cancelled() => Err(Ended::Stopped),
            done = pipe.query_async::<()>(conn) => done.map_err(Ended::from),
        }
    }
}

/// Takes the connection's push frames as they are read.
struct Inbound {
    keys: Keys,
    origin: Arc<str>,
    hub: Weak<Hub>,
    health: Arc<Health>,
    /// Fired once when the connection reports it is closed.
    dropped: Mutex<Option<oneshot::Sender<()>>>,
}

impl AsyncPushSender for Inbound {
    fn send(&self, info: PushInfo) -> Result<(), SendError> {
        match info.kind {
            PushKind::SMessage => self.message(info.data),
            PushKind::Disconnection => {
                let dropped = self
                    .dropped
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                if let Some(dropped) = dropped {
                    let _ = dropped.send(());
                }
            }
            // Confirmations (also answered as replies) and anything else.
            _ => {}
        }
        Ok(())
    }
}

impl Inbound {
    /// One `smessage`: `[channel, payload]`.
    fn message(&self, data: Vec<Value>) {
        let mut data = data.into_iter();
        let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
            (data.next(), data.next())
        else {
            self.malformed("not [channel, payload]");
            return;
        };
        let Some(room) = self.keys.room_of(&channel) else {
            self.malformed("a channel that is no room's");
            return;
        };
        let Some(hub) = self.hub.upgrade() else {
            return;
        };
        match wire::decode(payload) {
            Ok(Payload::Message { seq, frame }) => hub.publish(RoomEvent {
                room: room.into(),
                seq,
                frame,
            }),
            Ok(Payload::Notice { origin, frame }) => {
                // This node told its own members already.
                if *origin != *self.origin {
                    hub.notify(room, &frame, None);
                }
            }
            Err(e) => self.malformed(&e.to_string()),
        }
    }

    /// Logs and drops a payload: a lost event is filled from the log.
    fn malformed(&self, why: &str) {
        let seen = self.health.malformed.inc();
        if seen.is_multiple_of(1000) {
            tracing::warn!(
                why,
                malformed = seen + 1,
                "dropping a malformed bus payload"
            );
        }
    }
}
