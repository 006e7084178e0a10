//! What the message path counts, for an operator's metrics.
//!
//! The handles are prometheus-client's: cheap to clone, and clones share
//! their value, so each part of the path keeps the handles it counts with
//! and a server registers the same handles in its registry ([`register`]
//! methods) without the path knowing of the registry or of HTTP. Tests read
//! them with `get()`.
//!
//! No label here carries a client's words (a room or user name): their
//! number is unbounded. Labels are closed sets, named in each doc comment.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// A counter per value of one label.
pub type LabelledCounter = Family<[(&'static str, &'static str); 1], Counter>;

/// How a resume (a join with `since`) went: the label `outcome` of
/// [`NodeMetrics::resumes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeOutcome {
    /// Every message after `since` was sent: nothing missing.
    Exact,
    /// Retention had removed some of them: a `history_gap` was sent.
    Gap,
    /// The client's epoch is not the store's: answered as a plain join.
    NewEpoch,
}

impl ResumeOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Gap => "gap",
            Self::NewEpoch => "new_epoch",
        }
    }
}

/// What one node's rooms count: delivery, catch-ups and the hub's repairs.
/// Shared by the node, its hub and its catch-ups.
#[derive(Debug, Clone)]
pub struct NodeMetrics {
    /// New messages stored (a resent `client_id` is not counted again).
    pub stored: Counter,
    /// Appends the log failed (each answered with an `internal` error).
    pub append_failures: Counter,
    /// Time from an append to its commit (queueing included), in seconds.
    pub append_seconds: Histogram,
    /// `new_message` frames queued to members: live, handed over after a
    /// catch-up, or replayed by a resume.
    pub deliveries: Counter,
    /// Resumes, by `outcome` (`exact`, `gap`, `new_epoch`).
    pub resumes: LabelledCounter,
    /// Messages sent by resumes (a subset of the deliveries).
    pub replayed: Counter,
    /// Events the bus brought twice (or late), dropped by the hub.
    pub duplicates_dropped: Counter,
    /// Events read from the log because the bus had not brought them.
    pub gaps_filled: Counter,
    /// Events delivered by a resync, after the bus may have lost some.
    pub resync_delivered: Counter,
    /// Rooms with members on this node.
    pub rooms: Gauge,
    /// Memberships on this node (connections times their rooms).
    pub memberships: Gauge,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self {
            stored: Counter::default(),
            append_failures: Counter::default(),
            // 100 us to about 13 s: a group commit on a quiet SQLite takes
            // well under a millisecond, an fsync or a remote PostgreSQL tens.
            append_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            deliveries: Counter::default(),
            resumes: LabelledCounter::default(),
            replayed: Counter::default(),
            duplicates_dropped: Counter::default(),
            gaps_filled: Counter::default(),
            resync_delivered: Counter::default(),
            rooms: Gauge::default(),
            memberships: Gauge::default(),
        }
    }
}

impl NodeMetrics {
    /// Counts a resume that went as `outcome`.
    pub fn resumed(&self, outcome: ResumeOutcome) {
        self.resumes
            .get_or_create(&[("outcome", outcome.as_str())])
            .inc();
    }

    /// Registers every handle in `registry` (names without the server's prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "messages_stored",
            "New messages stored and acked (a resent client_id is not counted again)",
            self.stored.clone(),
        );
        registry.register(
            "message_append_failures",
            "Appends the message log failed, each answered with an internal error",
            self.append_failures.clone(),
        );
        registry.register_with_unit(
            "message_append",
            "Time from a send to its commit in the message log, queueing included",
            Unit::Seconds,
            self.append_seconds.clone(),
        );
        registry.register(
            "deliveries",
            "new_message frames queued to connections: live, after a catch-up, or replayed by a resume",
            self.deliveries.clone(),
        );
        registry.register(
            "resumes",
            "Joins with since, by outcome: exact, gap (history_gap sent), new_epoch (answered as a plain join)",
            self.resumes.clone(),
        );
        registry.register(
            "resume_replayed_messages",
            "Messages sent by resumes",
            self.replayed.clone(),
        );
        registry.register(
            "hub_duplicates_dropped",
            "Events that reached the hub again (or late) and were dropped",
            self.duplicates_dropped.clone(),
        );
        registry.register(
            "hub_gaps_filled",
            "Events the hub read from the message log because the bus had not brought them",
            self.gaps_filled.clone(),
        );
        registry.register(
            "hub_resync_delivered",
            "Events delivered by a resync from the message log, after the bus may have lost some",
            self.resync_delivered.clone(),
        );
        registry.register(
            "rooms_active",
            "Rooms with members on this node",
            self.rooms.clone(),
        );
        registry.register(
            "room_memberships",
            "Memberships on this node: connections times the rooms each is in",
            self.memberships.clone(),
        );
    }
}

/// What a message log counts about its commits.
#[derive(Debug, Clone)]
pub struct LogMetrics {
    /// Appends per commit (group commit).
    pub batch_size: Histogram,
    /// Commits that failed (each fails every append of its batch).
    pub commit_failures: Counter,
}

impl Default for LogMetrics {
    fn default() -> Self {
        Self {
            // 1 to 1,024: the SQLite writer's largest batch.
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            commit_failures: Counter::default(),
        }
    }
}

impl LogMetrics {
    /// Registers every handle in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "log_commit_batch_size",
            "Appends committed together in one transaction of the message log",
            self.batch_size.clone(),
        );
        registry.register(
            "log_commit_failures",
            "Transactions of the message log that failed, failing every append in them",
            self.commit_failures.clone(),
        );
    }
}
