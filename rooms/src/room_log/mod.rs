//! The room log: the one place a room's sequence numbers are assigned, and
//! where every message is committed before anyone hears of it.
//!
//! [`RoomLog`] is the boundary; [`SqliteLog`] is the embedded implementation
//! (one writer thread that group-commits, reads on connections of their own,
//! WAL checkpoints in the background); [`PgLog`] implements the same trait
//! on a PostgreSQL database that every node of a cluster shares. [`inspect`]
//! reads either store without writing, for an operator's tools.

pub mod inspect;
mod postgres;
mod sqlite;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chat_protocol::ChatMessage;

pub use postgres::PgLog;
pub use sqlite::SqliteLog;

/// File name of the message database inside the data directory.
pub const MESSAGES_FILE: &str = "messages.db";

/// Milliseconds since the Unix epoch, as message ages are stored.
pub fn unix_millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// How hard the log works to keep a committed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL mode: a committed message survives the
    /// process being killed; the last ones may be lost if the machine itself
    /// loses power. The usual choice for WAL.
    Normal,
    /// `synchronous=FULL`: every commit waits for the disk; survives power
    /// loss. Group commit shares one flush among every message queued meanwhile.
    Full,
}

/// Where messages are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Storage {
    /// `messages.db` in the data directory.
    File,
    /// A throwaway database, removed when the server stops and never flushed
    /// to disk: nothing survives a restart (for benchmarks and tests).
    Memory,
}

/// What to forget. Both limits apply; `None` keeps everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep at most this many messages per room.
    pub max_messages: Option<u64>,
    /// Forget messages older than this.
    pub max_age: Option<Duration>,
}

impl Retention {
    /// How often [`RoomLog::prune_by_age`] should run, if any retention is
    /// on: for age retention, a tenth of the age (1 s to 1 min); for count
    /// retention alone, hourly, to forget the `client_id`s of forgotten
    /// messages once [`CLIENT_ID_MEMORY`] is over.
    pub fn prune_interval(&self) -> Option<Duration> {
        match (self.max_age, self.max_messages) {
            (Some(age), _) => {
                Some((age / 10).clamp(Duration::from_secs(1), Duration::from_secs(60)))
            }
            (None, Some(_)) => Some(Duration::from_secs(60 * 60)),
            (None, None) => None,
        }
    }
}

/// Errors of the room log. Cheap to clone: one failed commit fails every
/// append of its batch with the same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    /// The database failed.
    #[error("message log: {0}")]
    Db(Arc<rusqlite::Error>),
    /// PostgreSQL failed, could not be reached, or did not answer in time.
    #[error("message log (PostgreSQL): {0}")]
    Postgres(Arc<sqlx::Error>),
    /// The log's files could not be set up, or their file system not asked
    /// for its free space.
    #[error("message log: {0}")]
    Io(Arc<std::io::Error>),
    /// The file system of the log's files has less free space than the log
    /// keeps in reserve, so appends are refused until space is freed. The
    /// directory is left out: the text reaches clients and `/readyz`.
    #[error("message log: disk full: {available} bytes free on the data directory's file system, less than the {reserve} the log keeps in reserve; messages are refused until space is freed")]
    DiskFull {
        /// Bytes free to unprivileged writers (`f_bavail`).
        available: u64,
        /// The reserve the log keeps: below it, appends are refused.
        reserve: u64,
    },
    /// The log has stopped (the server is shutting down).
    #[error("message log stopped")]
    Closed,
}

impl From<rusqlite::Error> for LogError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(Arc::new(e))
    }
}

impl From<sqlx::Error> for LogError {
    fn from(e: sqlx::Error) -> Self {
        Self::Postgres(Arc::new(e))
    }
}

impl From<std::io::Error> for LogError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(Arc::new(e))
    }
}

/// A message to append: the log numbers it and stamps its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The room.
    pub room: String,
    /// The authenticated sender.
    pub sender: String,
    /// The sender's id for this message, which makes a resend harmless.
    pub client_id: Option<String>,
    /// The text.
    pub text: String,
}

/// The outcome of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The stored message (the earlier one, for a duplicate; for a
    /// forgotten one, its number and id, with no text).
    pub message: ChatMessage,
    /// Whether the `client_id` had been seen: nothing new was stored.
    pub duplicate: bool,
    /// A duplicate of a message that retention has forgotten since: it is
    /// acked as the original was, and there is nothing to publish.
    pub forgotten: bool,
}

/// How long the `client_id` of a message retention forgot is still known,
/// so that a resend of it (a client back after a long absence) is acked as
/// the original rather than stored a second time.
pub const CLIENT_ID_MEMORY: Duration = Duration::from_secs(24 * 60 * 60);

/// Called once an append is committed (or has failed), on the log's writer,
/// in commit order: so it must be quick and must not block. It is how the
/// caller acks the sender and publishes the numbered message.
pub type Committed = Box<dyn FnOnce(Result<Appended, LogError>) + Send>;

/// A room's stored range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bounds {
    /// The oldest sequence number still stored (none: nothing stored).
    pub first_seq: Option<u64>,
    /// The newest sequence number ever given (0: never a message).
    pub last_seq: u64,
}

/// The newest messages of a room and its newest sequence number, read
/// together: every message up to `last_seq` is committed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recent {
    /// Oldest first.
    pub messages: Vec<ChatMessage>,
    /// The room's newest sequence number at the time of the read.
    pub last_seq: u64,
}

/// A room as the log knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRoom {
    /// The room name.
    pub name: String,
    /// Its newest sequence number.
    pub last_seq: u64,
    /// When its newest message was sent (RFC 3339).
    pub last_activity: Option<String>,
}

/// The durable, numbered history of every room.
///
/// Guarantees every implementation keeps: a room's sequence numbers are 1,
/// 2, 3, ... without gaps, never reused; an append is committed before
/// `committed` hears of it; a room's appends commit in sequence order, so a
/// reader that sees seq `n` also sees every seq below it.
#[async_trait::async_trait]
pub trait RoomLog: Send + Sync + 'static {
    /// Names this history: the same for as long as the store lasts, new when
    /// the store is new. Clients resume only within one epoch.
    fn epoch(&self) -> &str;

    /// What this log counts about its commits.
    fn metrics(&self) -> &crate::metrics::LogMetrics;

    /// Queues `message` for the room's next sequence number, or, when its
    /// `client_id` was already used by this sender in this room, for the
    /// message stored then (one check, in the same transaction). Waits only
    /// while the log's queue is full; `committed` is called after the commit.
    async fn append(&self, message: NewMessage, committed: Committed);

    /// Up to `limit` messages with `seq > after`, oldest first.
    async fn after(
        &self,
        room: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, LogError>;

    /// The `limit` newest messages with `seq < before` (all when `None`),
    /// oldest first.
    async fn before(
        &self,
        room: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, LogError>;

    /// The `limit` newest messages and the newest sequence number, in one read.
    async fn recent(&self, room: &str, limit: usize) -> Result<Recent, LogError>;

    /// The room's stored range.
    async fn bounds(&self, room: &str) -> Result<Bounds, LogError>;

    /// The first `limit` rooms that ever had a message whose names sort
    /// after `after` (from the first room when `None`), in the byte order of
    /// their UTF-8 names: one page of the directory, read through the name
    /// index, never the whole table.
    async fn rooms(&self, after: Option<&str>, limit: usize) -> Result<Vec<StoredRoom>, LogError>;

    /// Forgets messages older than the retention age, and the `client_id`s
    /// of messages forgotten more than [`CLIENT_ID_MEMORY`] ago; returns how
    /// many messages it forgot.
    async fn prune_by_age(&self, now_ms: i64) -> Result<usize, LogError>;

    /// The retention limits in force.
    fn retention(&self) -> Retention;

    /// Whether the log can serve requests now: its writer is running and can
    /// commit (what an append would meet: a store that refuses writes or a
    /// full disk fails it), and its store answers a cheap read.
    async fn ready(&self) -> Result<(), LogError>;
}

/// The `history_gap` to send when the first message available after `cursor`
/// is not the next one: retention has removed those in between.
pub fn gap_before(
    room: &str,
    cursor: u64,
    first_available: Option<&ChatMessage>,
) -> Option<chat_protocol::ServerEvent> {
    let first = first_available?.seq;
    (first > cursor + 1).then(|| chat_protocol::ServerEvent::HistoryGap {
        room: room.to_owned(),
        from: cursor + 1,
        to: first - 1,
    })
}

/// Appends `message` to `log` and waits for its commit, for the unit tests
/// that want an append's outcome in line.
#[cfg(test)]
pub(crate) async fn append_and_wait(
    log: &dyn RoomLog,
    message: NewMessage,
) -> Result<Appended, LogError> {
    let (done, outcome) = tokio::sync::oneshot::channel();
    log.append(
        message,
        Box::new(move |result| {
            let _ = done.send(result);
        }),
    )
    .await;
    outcome.await.unwrap_or(Err(LogError::Closed))
}
