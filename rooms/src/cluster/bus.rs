//! The Redis bus: each room's events and notices travel on the room's own
//! sharded pub/sub channel (`SPUBLISH`/`SSUBSCRIBE`), which only the nodes
//! with members in the room subscribe to.
//!
//! Sending: [`Bus::publish`] runs on the room log's writer, so it only
//! appends the encoded payload to a bounded, in-order backlog that a
//! publisher task drains (see [`super::publisher`] for what happens while
//! Redis is away). Receiving: a subscriber task keeps one RESP3 connection
//! subscribed to the rooms of this node's interest and hands what arrives
//! to the hub (see [`super::subscriber`]).
//!
//! Pub/sub is at most once: what is published while a node is not
//! subscribed, or while its connection is down, never reaches it. The log
//! is the authority: a hub fills a gap the next event of its room shows,
//! and resyncs a room from the log after every (re)subscription.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use super::keys::Keys;
use super::link;
use super::publisher::{self, Backlog, Outgoing};
use super::subscriber::Subscriber;
use super::wire;
use crate::bus::{Bus, RoomEvent};
use crate::hub::Hub;
use crate::interest::Interest;
use crate::outbox::Frame;

/// How the bus is doing, for readiness checks and operators.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// The subscriber is connected and subscribed to every room of interest.
    pub(crate) subscribed: AtomicBool,
    /// The last attempt to publish succeeded (or none failed yet).
    pub(crate) publishing: AtomicBool,
    /// Payloads published (events and notices).
    pub(crate) published: Counter,
    /// Payloads dropped because the backlog was full (the oldest went).
    pub(crate) dropped: Counter,
    /// Attempts to publish that failed.
    pub(crate) publish_failures: Counter,
    /// Payloads that arrived and could not be decoded.
    pub(crate) malformed: Counter,
    /// Times the subscriber's connection was lost (each followed by a
    /// resubscription and a resync of every room).
    pub(crate) reconnects: Counter,
}

/// A snapshot of the bus's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusStats {
    /// Connected and subscribed to every room of interest.
    pub subscribed: bool,
    /// The last attempt to publish succeeded.
    pub publishing: bool,
    /// Payloads waiting to be published.
    pub backlog: usize,
    /// Payloads dropped because the backlog overflowed.
    pub dropped: u64,
    /// Attempts to publish that failed (each is retried).
    pub publish_failures: u64,
    /// Payloads received that could not be decoded.
    pub malformed: u64,
    /// Times the subscriber's connection was lost.
    pub reconnects: u64,
}

/// The bus of a cluster node, over one Redis.
pub struct RedisBus {
    keys: Keys,
    /// This bus's name in its notices: the node id and a random token, so
    /// that even two processes given one node id tell their notices apart.
    origin: Arc<str>,
    backlog: Arc<Backlog>,
    health: Arc<Health>,
}

/// What [`RedisBus::start`] needs.
pub(crate) struct BusConfig {
    pub(crate) url: String,
    pub(crate) keys: Keys,
    pub(crate) node_id: String,
    /// Payloads kept while Redis is away.
    pub(crate) backlog: usize,
    /// Where arriving events go; the bus does not keep the hub alive.
    pub(crate) hub: Weak<Hub>,
    /// The hub's rooms of interest.
    pub(crate) interest: Arc<Interest>,
    /// Stops both tasks.
    pub(crate) stop: CancellationToken,
}

impl RedisBus {
    /// Connects the publisher (an error if Redis cannot be reached now) and
    /// starts the publisher and subscriber tasks; they run until `stop`.
    pub(crate) async fn start(config: BusConfig) -> Result<Arc<Self>, redis::RedisError> {
        let BusConfig {
            url,
            keys,
            node_id,
            backlog,
            hub,
            interest,
            stop,
        } = config;
        let publishing = link::manager(link::client(&url, false)?).await?;
        let subscribing = link::client(&url, true)?;
        let origin: Arc<str> = format!("{node_id}.{}", link::token()).into();
        let health = Arc::new(Health {
            publishing: AtomicBool::new(true),
            ..Health::default()
        });
        let backlog = Arc::new(Backlog::new(backlog, health.clone()));
        tokio::spawn(publisher::run(
            publishing,
            backlog.clone(),
            health.clone(),
            stop.clone(),
        ));
        tokio::spawn(
            Subscriber {
                client: subscribing,
                keys: keys.clone(),
                origin: origin.clone(),
                hub,
                interest,
                health: health.clone(),
                stop,
            }
            .run(),
        );
        Ok(Arc::new(Self {
            keys,
            origin,
            backlog,
            health,
        }))
    }

    /// Whether the bus works right now: subscribed, and publishing. What a
    /// server's readiness check reports; while it is false, messages are
    /// still stored and acked, and reach the other nodes once Redis is back.
    pub fn ready(&self) -> bool {
        self.health.subscribed.load(Ordering::Relaxed)
            && self.health.publishing.load(Ordering::Relaxed)
    }

    /// Waits until everything queued so far is published, for at most
    /// `within`: for a graceful shutdown, so that the last notices go out.
    /// `false` if something was still waiting.
    pub async fn flush(&self, within: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        // Polled: this runs once, at shutdown.
        while !self.backlog.is_drained() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        true
    }

    /// How the bus is doing.
    pub fn stats(&self) -> BusStats {
        BusStats {
            subscribed: self.health.subscribed.load(Ordering::Relaxed),
            publishing: self.health.publishing.load(Ordering::Relaxed),
            backlog: self.backlog.len(),
            dropped: self.health.dropped.get(),
            publish_failures: self.health.publish_failures.get(),
            malformed: self.health.malformed.get(),
            reconnects: self.health.reconnects.get(),
        }
    }

    /// Registers the bus's counters in `registry`; the backlog, a value
    /// read when asked, is [`RedisBus::stats`]'s.
    pub fn register(&self, registry: &mut Registry) {
        let health = &self.health;
        registry.register(
            "bus_published",
            "Payloads (events and notices) published to Redis",
            health.published.clone(),
        );
        registry.register(
            "bus_publish_failures",
            "Attempts to publish a batch to Redis that failed (each is retried from the backlog)",
            health.publish_failures.clone(),
        );
        registry.register(
            "bus_dropped",
            "Payloads dropped because the backlog overflowed while Redis was away",
            health.dropped.clone(),
        );
        registry.register(
            "bus_malformed",
            "Payloads received from Redis that could not be decoded",
            health.malformed.clone(),
        );
        registry.register(
            "bus_resubscriptions",
            "Times the bus subscriber lost Redis and subscribed again (each resyncs every room)",
            health.reconnects.clone(),
        );
    }

    /// Queues a payload exactly as given, for tests of what receivers make
    /// of a bad one.
    #[doc(hidden)]
    pub fn publish_raw(&self, room: &str, payload: Vec<u8>) {
        self.backlog.push(Outgoing {
            channel: self.keys.channel(room),
            payload,
        });
    }
}

impl Bus for RedisBus {
    fn publish(&self, event: RoomEvent) {
        self.backlog.push(Outgoing {
            channel: self.keys.channel(&event.room),
            payload: wire::message(event.seq, &event.frame),
        });
    }

    fn notify(&self, room: &str, frame: Frame) {
        self.backlog.push(Outgoing {
            channel: self.keys.channel(room),
            payload: wire::notice(&self.origin, &frame),
        });
    }
}
