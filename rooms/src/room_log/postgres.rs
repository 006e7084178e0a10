//! The cluster's room log: one PostgreSQL database that every node shares.
//!
//! - Each node runs one **writer** task. It takes every append queued while
//!   its last commit ran (up to [`MAX_BATCH`]) and commits them in one
//!   transaction (group commit), then completes each in commit order, only
//!   after `COMMIT` succeeded.
//! - Inside that transaction the `rooms` row of every room in the batch is
//!   locked first, then `client_id`s are checked, then seqs are given and the
//!   messages inserted. The row lock makes another node's batch for the same
//!   room wait until this one has committed, so a room's seqs are contiguous
//!   and commit in seq order across nodes; and since the duplicate check runs
//!   after the lock, in a statement of its own (READ COMMITTED: a fresh
//!   snapshot), it sees whatever the other node committed meanwhile.
//!   Rooms are locked in byte order of their names, the same on every node,
//!   so two batches do not wait for each other in a cycle. (One rare case
//!   can: two nodes creating the same new room while locking others.
//!   PostgreSQL then aborts one batch, which is certain to have stored
//!   nothing and is retried.)
//! - A batch costs a fixed number of statements whatever its size: lock, check,
//!   insert (one `unnest` of arrays for the whole batch) and, with a count
//!   limit, one retention delete.
//! - **Reads** run on the pool, each in one statement (one snapshot).
//!
//! Failure: every wait on PostgreSQL is bounded. When it cannot be reached or
//! the transaction fails, every append of the batch gets the error and none
//! is acked; the writer then takes a new connection from the pool for the
//! next batch, so it works again as soon as the database does. When a
//! connection cannot even be had, the appends queued meanwhile fail at once
//! too instead of each waiting out its own timeout.
//!
//! The ambiguous case: the connection is lost while `COMMIT` is on its way,
//! so the batch may or may not have been committed. Its appends get an error
//! all the same (the writer cannot know), and a client that resends with its
//! `client_id` gets the stored message back as a duplicate: the duplicate
//! check makes the resend safe. Such a message was never published by the
//! node; members receive it when the hub fills the gap before the room's
//! next message. A failure before `COMMIT` was sent is certain (nothing was
//! stored) and is retried on a fresh connection a few times before it fails
//! the batch.

use crate::metrics::LogMetrics;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chat_protocol::ChatMessage;
use rand_core::{OsRng, RngCore};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgPoolOptions, PgRow, PgSeverity};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Row};
use tokio::sync::mpsc;

use super::{
    unix_millis, Appended, Bounds, Committed, LogError, NewMessage, Recent, Retention, RoomLog,
    StoredRoom, CLIENT_ID_MEMORY,
};

/// Appends waiting for the writer. When it is full, appenders wait (the
/// sending connection stops being read: TCP pushes back on the client)
/// instead of the queue growing without bound.
const QUEUE: usize = 8192;

/// Most appends in one transaction; bounds the time a batch's first
/// message waits for its last, and the size of the statements' arrays.
const MAX_BATCH: usize = 512;

/// Connections of a pool made by [`PgLog::connect`]: the writer holds one,
/// reads share the rest.
const POOL_SIZE: u32 = 8;

/// Longest wait for a connection, including making a new one: a database
/// that is down fails requests after this rather than holding them.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest the writer waits for a batch's transaction: past it the batch
/// fails and its connection is closed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens each batch's transaction. The server ends a statement, or an idle
/// transaction, a little before [`WRITE_TIMEOUT`]: a batch waiting on a room
/// locked for too long fails with a clear error and leaves a usable
/// connection, and the `rooms` rows of a node that died mid-batch are not
/// held for longer.
const BEGIN: &str = "BEGIN; \
    SET LOCAL statement_timeout = '8s'; \
    SET LOCAL idle_in_transaction_session_timeout = '8s'";

/// Longest a read may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest the readiness probe waits. Shorter than the 2 s `/readyz` gives
/// each check, so that this log's own error, naming PostgreSQL, reaches the
/// operator rather than the server's anonymous "no answer".
const READY_TIMEOUT: Duration = Duration::from_millis(1500);

/// Longest a prune by age, or setting up the schema, may take: both may
/// touch many rows or wait for another node.
const SLOW_TIMEOUT: Duration = Duration::from_secs(60);

/// Tries of one batch when it failed before `COMMIT` was sent.
const ATTEMPTS: usize = 3;

/// This log's migrations table, apart from the server's own migrator.
const MIGRATIONS_TABLE: &str = "_chat_log_migrations";

/// Locks the batch's rooms that exist, in name order (`rooms.name` is
/// `COLLATE "C"`: byte order, as the writer sorts them), returning each
/// one's newest seq as last committed. `FOR UPDATE` rather than an upsert
/// for every room: no new row version each batch.
const LOCK_ROOMS: &str = "
    SELECT name, last_seq FROM rooms WHERE name = ANY($1) ORDER BY name FOR UPDATE";

/// Creates the batch's new rooms (in the order of the sorted array),
/// returning those it created; a room another node created meanwhile is
/// left out, and locked next with [`LOCK_ROOMS`].
const CREATE_ROOMS: &str = "
    INSERT INTO rooms (name, last_seq)
    SELECT name, 0 FROM unnest($1::text[]) AS u(name)
    ON CONFLICT (name) DO NOTHING
    RETURNING name";

/// The messages stored earlier under the batch's `client_id`s; `ord` is the
/// 1-based place of the key in the arrays. A lateral lookup (`LIMIT 1`
/// keeps the planner from flattening it into a join) probes the unique
/// index once per key under any plan, even one cached while the table was
/// small and not yet analysed, where a join would scan the whole table.
const EARLIER: &str = "
    SELECT u.ord, m.id, m.seq, m.text, m.sent_ms, m.forgotten
    FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
        AS u(room, sender, client_id, ord)
    CROSS JOIN LATERAL (
        (SELECT id, seq, text, sent_ms, false AS forgotten FROM messages
         WHERE room = u.room AND sender = u.sender AND client_id = u.client_id
         LIMIT 1)
        UNION ALL
        (SELECT id, seq, ''::bytea, sent_ms, true FROM forgotten_client_ids
         WHERE room = u.room AND sender = u.sender AND client_id = u.client_id
         LIMIT 1)
        LIMIT 1
    ) m";

/// Stores the batch's new messages and moves each room's `last_seq`.
const STORE: &str = "
    WITH stored AS (
        INSERT INTO messages (room, seq, sender, client_id, text, sent_ms)
        SELECT room, seq, sender, client_id, text, $6
        FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bytea[])
            AS u(room, seq, sender, client_id, text)
        RETURNING room, seq, id
    ), moved AS (
        UPDATE rooms SET last_seq = u.last_seq, last_activity_ms = $6
        FROM unnest($7::text[], $8::bigint[]) AS u(name, last_seq)
        WHERE rooms.name = u.name
    )
    SELECT room, seq, id FROM stored";

/// Retention by count: forgets each room's messages up to a seq, keeping
/// their `client_id`s (`$3` is the time of the forget).
const FORGET_UP_TO: &str = "
    WITH gone AS (
        DELETE FROM messages AS m
        USING unnest($1::text[], $2::bigint[]) AS u(room, up_to)
        WHERE m.room = u.room AND m.seq <= u.up_to
        RETURNING m.room, m.sender, m.client_id, m.seq, m.id, m.sent_ms
    )
    INSERT INTO forgotten_client_ids (room, sender, client_id, seq, id, sent_ms, forgotten_ms)
    SELECT room, sender, client_id, seq, id, sent_ms, $3 FROM gone
    WHERE client_id IS NOT NULL
    ON CONFLICT DO NOTHING";

/// Retention by age: forgets the messages sent before `$1`, keeping their
/// `client_id`s (`$2` is the time of the forget); the number forgotten.
const FORGET_BEFORE: &str = "
    WITH gone AS (
        DELETE FROM messages WHERE sent_ms < $1
        RETURNING room, sender, client_id, seq, id, sent_ms
    ), kept AS (
        INSERT INTO forgotten_client_ids (room, sender, client_id, seq, id, sent_ms, forgotten_ms)
        SELECT room, sender, client_id, seq, id, sent_ms, $2 FROM gone
        WHERE client_id IS NOT NULL
        ON CONFLICT DO NOTHING
    )
    SELECT count(*) AS forgotten FROM gone";

const AFTER: &str = "
    SELECT id, seq, sender, text, sent_ms FROM messages
    WHERE room = $1 AND seq > $2 ORDER BY seq LIMIT $3";

const BEFORE: &str = "
    SELECT id, seq, sender, text, sent_ms FROM messages
    WHERE room = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3";

/// The newest messages and `last_seq` in one statement, so one snapshot:
/// no row for a room never used, one row of NULL columns for a room whose
/// messages are all gone.
const RECENT: &str = "
    SELECT r.last_seq, m.id, m.seq, m.sender, m.text, m.sent_ms
    FROM rooms r
    LEFT JOIN LATERAL (
        SELECT id, seq, sender, text, sent_ms FROM messages
        WHERE room = r.name ORDER BY seq DESC LIMIT $2
    ) m ON true
    WHERE r.name = $1
    ORDER BY m.seq DESC";

const BOUNDS: &str = "
    SELECT (SELECT last_seq FROM rooms WHERE name = $1),
           (SELECT min(seq) FROM messages WHERE room = $1)";

/// A page of rooms; `name` is `COLLATE "C"`, so this is byte order, as in
/// SQLite and in Rust.
const ROOMS: &str = "
    SELECT name, last_seq, last_activity_ms FROM rooms WHERE name > $1
    ORDER BY name LIMIT $2";

/// An append waiting for the writer.
type Pending = (NewMessage, Committed);

/// The PostgreSQL room log of one node; any number of nodes may open one
/// on the same database. Dropping it lets the writer finish what is queued
/// and stop.
pub struct PgLog {
    epoch: String,
    retention: Retention,
    metrics: LogMetrics,
    pool: PgPool,
    writer: mpsc::Sender<Pending>,
}

impl PgLog {
    /// Connects to `url` with a pool of its own (a few connections; every
    /// wait for one, connecting included, bounded to a few seconds) and
    /// opens the log on it.
    pub async fn connect(url: &str, retention: Retention) -> Result<Self, LogError> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options.application_name("chat-room-log"))
            .await?;
        Self::open(pool, retention).await
    }

    /// Brings the schema up to date (safe while other nodes do the same),
    /// reads the epoch, creating it when the database is new, and starts
    /// the writer. Must be called inside a Tokio runtime, which runs the
    /// writer.
    pub async fn open(pool: PgPool, retention: Retention) -> Result<Self, LogError> {
        migrate(&pool).await?;
        let epoch = epoch_of(&pool).await?;
        let (writer, queue) = mpsc::channel(QUEUE);
        let metrics = LogMetrics::default();
        let task = Writer {
            pool: pool.clone(),
            retention,
            metrics: metrics.clone(),
            conn: None,
        };
        tokio::spawn(task.run(queue));
        Ok(Self {
            epoch,
            retention,
            metrics,
            pool,
            writer,
        })
    }
}

/// Runs the embedded migrations under sqlx's advisory lock, which every
/// migrator of this database takes (the lock is named after the database):
/// nodes starting at once apply each migration once, one after the other.
///
/// On a connection of its own (made with the pool's connect options, not
/// its hooks), closed afterwards whatever happened: sqlx does not unlock
/// when a migration fails, and a session left holding the lock in the pool
/// would stop every other node's migrations.
async fn migrate(pool: &PgPool) -> Result<(), LogError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    let alone = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_lazy_with((*pool.connect_options()).clone());
    let outcome = tokio::time::timeout(SLOW_TIMEOUT, migrator.run(&alone)).await;
    let _ = tokio::time::timeout(CONNECT_TIMEOUT, alone.close()).await;
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(sqlx::Error::Migrate(Box::new(e)).into()),
        Err(_) => Err(timed_out("setting up the room log").into()),
    }
}

/// The log's epoch, made once when the database is new. The first node to
/// insert wins; a node inserting at the same time waits for it and reads
/// its epoch.
async fn epoch_of(pool: &PgPool) -> Result<String, LogError> {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    let fresh: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let read = async {
        sqlx::query("INSERT INTO meta (key, value) VALUES ('epoch', $1) ON CONFLICT DO NOTHING")
            .bind(fresh)
            .execute(pool)
            .await?;
        sqlx::query_scalar("SELECT value FROM meta WHERE key = 'epoch'")
            .fetch_one(pool)
            .await
    };
    Ok(bounded(READ_TIMEOUT, "reading the epoch", read).await?)
}

/// A connection from the pool, waiting at most [`CONNECT_TIMEOUT`] whatever
/// the pool's own setting (the pool may be the caller's).
async fn acquire(pool: &PgPool) -> Result<PoolConnection<Postgres>, sqlx::Error> {
    tokio::time::timeout(CONNECT_TIMEOUT, pool.acquire())
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
}

/// `work`, failing with a timeout after `limit`.
async fn bounded<T>(
    limit: Duration,
    what: &str,
    work: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| timed_out(what))?
}

/// A timeout, told as the I/O failure it is.
fn timed_out(what: &str) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what}: PostgreSQL did not answer in time"),
    ))
}

/// Whether a batch that failed this way before `COMMIT` certainly stored
/// nothing and may go again: its connection was lost (perhaps it went
/// stale while idle: PostgreSQL restarted, or ended the session), or
/// PostgreSQL chose it as a deadlock victim.
fn worth_retrying(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let session_ended = db
                .try_downcast_ref::<PgDatabaseError>()
                .is_some_and(|e| matches!(e.severity(), PgSeverity::Fatal | PgSeverity::Panic));
            let code = db.code();
            let code = code.as_deref().unwrap_or_default();
            session_ended || code.starts_with("08") || matches!(code, "40P01" | "40001")
        }
        _ => false,
    }
}

/// RFC 3339 with milliseconds, as SQLite stores `sent_at`.
fn rfc3339(ms: i64) -> String {
    let since_epoch = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(UNIX_EPOCH + since_epoch).to_string()
}

fn decode_error(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

fn seq_of(value: i64) -> Result<u64, sqlx::Error> {
    u64::try_from(value).map_err(decode_error)
}

fn text_of(bytes: Vec<u8>) -> Result<String, sqlx::Error> {
    String::from_utf8(bytes).map_err(decode_error)
}

/// A bound for a `bigint` column.
fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A row of `id, seq, sender, text, sent_ms` as a message of `room`.
fn to_message(room: &str, row: &PgRow) -> Result<ChatMessage, sqlx::Error> {
    Ok(ChatMessage {
        id: row.try_get::<i64, _>("id")?.to_string(),
        room: room.to_owned(),
        seq: seq_of(row.try_get("seq")?)?,
        from: row.try_get("sender")?,
        text: text_of(row.try_get("text")?)?,
        sent_at: rfc3339(row.try_get("sent_ms")?),
    })
}

/// The writer task's state.
struct Writer {
    pool: PgPool,
    retention: Retention,
    metrics: LogMetrics,
    /// Kept from batch to batch, which spares the pool's check of an idle
    /// connection each time; dropped after any failure.
    conn: Option<PoolConnection<Postgres>>,
}

/// Why a batch failed.
struct Failure {
    error: sqlx::Error,
    /// No connection could be had: the database is down or out of reach.
    unreachable: bool,
}

impl Writer {
    /// Takes what is queued, commits it as one batch, completes it; until
    /// every sender is gone.
    async fn run(mut self, mut queue: mpsc::Receiver<Pending>) {
        let mut pending = Vec::with_capacity(MAX_BATCH);
        while queue.recv_many(&mut pending, MAX_BATCH).await > 0 {
            let (batch, callbacks): (Vec<_>, Vec<_>) = pending.drain(..).unzip();
            self.metrics.batch_size.observe(batch.len() as f64);
            match self.commit(&batch).await {
                Ok(appended) => {
                    for (committed, appended) in callbacks.into_iter().zip(appended) {
                        committed(Ok(appended));
                    }
                }
                Err(failure) => {
                    self.metrics.commit_failures.inc();
                    tracing::error!(error = %failure.error, messages = batch.len(), "commit failed");
                    let e = LogError::from(failure.error);
                    for committed in callbacks {
                        committed(Err(e.clone()));
                    }
                    if failure.unreachable {
                        // Queued while the connection was awaited in vain:
                        // fail them now rather than one timeout per batch.
                        for _ in 0..queue.len() {
                            let Ok((_, committed)) = queue.try_recv() else {
                                break;
                            };
                            committed(Err(e.clone()));
                        }
                    }
                }
            }
        }
    }

    /// Commits `batch` in one transaction, retrying a failure that certainly
    /// stored nothing. The results are in batch order.
    async fn commit(&mut self, batch: &[NewMessage]) -> Result<Vec<Appended>, Failure> {
        let sent_ms = unix_millis(SystemTime::now());
        let mut attempt = 1;
        loop {
            let mut conn = match self.conn.take() {
                Some(conn) => conn,
                None => acquire(&self.pool).await.map_err(|error| Failure {
                    error,
                    unreachable: true,
                })?,
            };
            let written = tokio::time::timeout(
                WRITE_TIMEOUT,
                write(&mut conn, batch, sent_ms, self.retention),
            )
            .await;
            let error = match written {
                Ok(Ok(appended)) => {
                    self.conn = Some(conn);
                    return Ok(appended);
                }
                Ok(Err(Written::Before(error))) if attempt < ATTEMPTS && worth_retrying(&error) => {
                    tracing::warn!(%error, attempt, "batch failed before its commit; trying again");
                    attempt += 1;
                    // Back to the pool, which tests it (and drops it if broken).
                    drop(conn);
                    continue;
                }
                Ok(Err(Written::Before(error) | Written::Committing(error))) => error,
                Err(_) => {
                    // Cut off mid-statement: the connection's state is unknown.
                    conn.close_on_drop();
                    timed_out("committing a batch")
                }
            };
            return Err(Failure {
                error,
                unreachable: false,
            });
        }
    }
}

/// How a batch's transaction failed.
enum Written {
    /// Before `COMMIT` was sent: rolled back, nothing stored.
    Before(sqlx::Error),
    /// On `COMMIT`: perhaps stored, perhaps not.
    Committing(sqlx::Error),
}

/// The batch's transaction.
async fn write(
    conn: &mut PgConnection,
    batch: &[NewMessage],
    sent_ms: i64,
    retention: Retention,
) -> Result<Vec<Appended>, Written> {
    let mut tx = conn.begin_with(BEGIN).await.map_err(Written::Before)?;
    let appended = number_and_store(&mut tx, batch, sent_ms, retention)
        .await
        .map_err(Written::Before)?;
    tx.commit().await.map_err(Written::Committing)?;
    Ok(appended)
}

/// What an append of the batch turns out to be.
enum Outcome {
    /// New: the index among the batch's new messages.
    New(usize),
    /// A resend of a message stored before this batch (and whether
    /// retention has forgotten it since).
    Earlier(ChatMessage, bool),
    /// A resend of the batch's new message of this index.
    SameBatch(usize),
}

/// Locks the batch's rooms, checks its `client_id`s, numbers and stores its
/// new messages, applies the count limit; inside the transaction.
async fn number_and_store(
    tx: &mut PgConnection,
    batch: &[NewMessage],
    sent_ms: i64,
    retention: Retention,
) -> Result<Vec<Appended>, sqlx::Error> {
    // Byte order, as on every node: see the module's doc.
    let mut rooms: Vec<&str> = batch.iter().map(|m| m.room.as_str()).collect();
    rooms.sort_unstable();
    rooms.dedup();
    let locked = lock_rooms(tx, &rooms).await?;
    // Per room: (last_seq when locked, last_seq given so far).
    let mut last: HashMap<String, (i64, i64)> = locked
        .into_iter()
        .map(|(name, seq)| (name, (seq, seq)))
        .collect();

    // Each distinct (room, sender, client_id) of the batch, once.
    let mut keys: HashMap<(&str, &str, &str), usize> = HashMap::new();
    let mut key_of = Vec::with_capacity(batch.len());
    for m in batch {
        key_of.push(m.client_id.as_deref().map(|client_id| {
            let next = keys.len();
            *keys
                .entry((m.room.as_str(), m.sender.as_str(), client_id))
                .or_insert(next)
        }));
    }
    let earlier = earlier_messages(tx, &keys).await?;

    let mut outcomes = Vec::with_capacity(batch.len());
    let mut first_new_of_key: Vec<Option<usize>> = vec![None; keys.len()];
    let mut new: Vec<(&NewMessage, i64)> = Vec::new();
    for (m, key) in batch.iter().zip(&key_of) {
        if let Some(key) = *key {
            if let Some((message, forgotten)) = &earlier[key] {
                outcomes.push(Outcome::Earlier(message.clone(), *forgotten));
                continue;
            }
            if let Some(index) = first_new_of_key[key] {
                outcomes.push(Outcome::SameBatch(index));
                continue;
            }
            first_new_of_key[key] = Some(new.len());
        }
        let (_, given) = last
            .get_mut(m.room.as_str())
            .ok_or(sqlx::Error::RowNotFound)?;
        *given += 1;
        outcomes.push(Outcome::New(new.len()));
        new.push((m, *given));
    }

    let ids = store(tx, &new, &last, sent_ms).await?;
    if let Some(keep) = retention.max_messages {
        forget_beyond(tx, &last, keep, sent_ms).await?;
    }

    let sent_at = rfc3339(sent_ms);
    let stored: Vec<ChatMessage> = new
        .iter()
        .zip(ids)
        .map(|((m, seq), id)| ChatMessage {
            id: id.to_string(),
            room: m.room.clone(),
            seq: u64::try_from(*seq).unwrap_or(0),
            from: m.sender.clone(),
            text: m.text.clone(),
            sent_at: sent_at.clone(),
        })
        .collect();
    Ok(outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Outcome::New(index) => Appended {
                message: stored[index].clone(),
                duplicate: false,
                forgotten: false,
            },
            Outcome::SameBatch(index) => Appended {
                message: stored[index].clone(),
                duplicate: true,
                forgotten: false,
            },
            Outcome::Earlier(message, forgotten) => Appended {
                message,
                duplicate: true,
                forgotten,
            },
        })
        .collect())
}

/// Locks `rooms` (sorted, distinct), creating those that are new; each
/// room's `last_seq` as last committed.
async fn lock_rooms(
    tx: &mut PgConnection,
    rooms: &[&str],
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let mut locked: Vec<(String, i64)> = sqlx::query_as(LOCK_ROOMS)
        .bind(rooms)
        .fetch_all(&mut *tx)
        .await?;
    if locked.len() == rooms.len() {
        return Ok(locked);
    }
    let known: HashSet<&str> = locked.iter().map(|(name, _)| name.as_str()).collect();
    let missing: Vec<&str> = rooms
        .iter()
        .copied()
        .filter(|r| !known.contains(r))
        .collect();
    let created: Vec<String> = sqlx::query_scalar(CREATE_ROOMS)
        .bind(&missing)
        .fetch_all(&mut *tx)
        .await?;
    let created: HashSet<String> = created.into_iter().collect();
    let raced: Vec<&str> = missing
        .iter()
        .copied()
        .filter(|r| !created.contains(*r))
        .collect();
    locked.extend(created.into_iter().map(|name| (name, 0)));
    if !raced.is_empty() {
        let more: Vec<(String, i64)> = sqlx::query_as(LOCK_ROOMS)
            .bind(&raced)
            .fetch_all(&mut *tx)
            .await?;
        locked.extend(more);
    }
    Ok(locked)
}

/// The stored message of each key, by the key's index.
async fn earlier_messages(
    tx: &mut PgConnection,
    keys: &HashMap<(&str, &str, &str), usize>,
) -> Result<Vec<Option<(ChatMessage, bool)>>, sqlx::Error> {
    let mut earlier = vec![None; keys.len()];
    if keys.is_empty() {
        return Ok(earlier);
    }
    let mut ordered = vec![("", "", ""); keys.len()];
    for (&key, &index) in keys {
        ordered[index] = key;
    }
    let rows = sqlx::query(EARLIER)
        .bind(ordered.iter().map(|k| k.0).collect::<Vec<_>>())
        .bind(ordered.iter().map(|k| k.1).collect::<Vec<_>>())
        .bind(ordered.iter().map(|k| k.2).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
    for row in rows {
        let ord: i64 = row.try_get("ord")?;
        let index = usize::try_from(ord - 1).map_err(decode_error)?;
        let Some(&(room, sender, _)) = ordered.get(index) else {
            return Err(sqlx::Error::RowNotFound);
        };
        let message = ChatMessage {
            id: row.try_get::<i64, _>("id")?.to_string(),
            room: room.to_owned(),
            seq: seq_of(row.try_get("seq")?)?,
            from: sender.to_owned(),
            text: text_of(row.try_get("text")?)?,
            sent_at: rfc3339(row.try_get("sent_ms")?),
        };
        earlier[index] = Some((message, row.try_get("forgotten")?));
    }
    Ok(earlier)
}

/// Inserts the new messages and moves the rooms' `last_seq`; the ids of the
/// new messages, in their order.
async fn store(
    tx: &mut PgConnection,
    new: &[(&NewMessage, i64)],
    last: &HashMap<String, (i64, i64)>,
    sent_ms: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    if new.is_empty() {
        return Ok(Vec::new());
    }
    let (moved, moved_to): (Vec<&str>, Vec<i64>) = last
        .iter()
        .filter(|(_, (locked, given))| given > locked)
        .map(|(name, (_, given))| (name.as_str(), *given))
        .unzip();
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(STORE)
        .bind(new.iter().map(|(m, _)| m.room.as_str()).collect::<Vec<_>>())
        .bind(new.iter().map(|(_, seq)| *seq).collect::<Vec<_>>())
        .bind(
            new.iter()
                .map(|(m, _)| m.sender.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            new.iter()
                .map(|(m, _)| m.client_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            new.iter()
                .map(|(m, _)| m.text.as_bytes())
                .collect::<Vec<_>>(),
        )
        .bind(sent_ms)
        .bind(moved)
        .bind(moved_to)
        .fetch_all(&mut *tx)
        .await?;
    // RETURNING promises no order: match the ids up by (room, seq).
    let id_of: HashMap<(String, i64), i64> = rows
        .into_iter()
        .map(|(room, seq, id)| ((room, seq), id))
        .collect();
    new.iter()
        .map(|(m, seq)| {
            id_of
                .get(&(m.room.clone(), *seq))
                .copied()
                .ok_or(sqlx::Error::RowNotFound)
        })
        .collect()
}

/// Retention by count: keeps the newest `keep` messages of each room that
/// got new ones.
async fn forget_beyond(
    tx: &mut PgConnection,
    last: &HashMap<String, (i64, i64)>,
    keep: u64,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let keep = as_i64(keep);
    let (rooms, up_to): (Vec<&str>, Vec<i64>) = last
        .iter()
        .filter(|(_, (locked, given))| given > locked && *given > keep)
        .map(|(name, (_, given))| (name.as_str(), given - keep))
        .unzip();
    if rooms.is_empty() {
        return Ok(());
    }
    sqlx::query(FORGET_UP_TO)
        .bind(rooms)
        .bind(up_to)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// PostgreSQL `text` cannot hold U+0000, which would fail the whole batch
/// the append joins; the message text is stored as bytes and may.
fn unstorable(message: &NewMessage) -> bool {
    message.room.contains('\0')
        || message.sender.contains('\0')
        || message.client_id.as_ref().is_some_and(|c| c.contains('\0'))
}

#[async_trait::async_trait]
impl RoomLog for PgLog {
    fn epoch(&self) -> &str {
        &self.epoch
    }

    fn metrics(&self) -> &LogMetrics {
        &self.metrics
    }

    async fn append(&self, message: NewMessage, committed: Committed) {
        if unstorable(&message) {
            let refused =
                sqlx::Error::Encode("room, sender and client_id cannot hold U+0000".into());
            committed(Err(refused.into()));
            return;
        }
        if let Err(mpsc::error::SendError((_, committed))) =
            self.writer.send((message, committed)).await
        {
            committed(Err(LogError::Closed));
        }
    }

    async fn after(
        &self,
        room: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, LogError> {
        let rows = sqlx::query(AFTER)
            .bind(room)
            .bind(as_i64(after))
            .bind(as_i64(limit as u64))
            .fetch_all(&self.pool);
        let rows = bounded(READ_TIMEOUT, "reading messages", rows).await?;
        Ok(rows
            .iter()
            .map(|row| to_message(room, row))
            .collect::<Result<_, _>>()?)
    }

    async fn before(
        &self,
        room: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, LogError> {
        let rows = sqlx::query(BEFORE)
            .bind(room)
            .bind(before.map_or(i64::MAX, as_i64))
            .bind(as_i64(limit as u64))
            .fetch_all(&self.pool);
        let rows = bounded(READ_TIMEOUT, "reading messages", rows).await?;
        let mut messages = rows
            .iter()
            .map(|row| to_message(room, row))
            .collect::<Result<Vec<_>, _>>()?;
        messages.reverse();
        Ok(messages)
    }

    async fn recent(&self, room: &str, limit: usize) -> Result<Recent, LogError> {
        let rows = sqlx::query(RECENT)
            .bind(room)
            .bind(as_i64(limit as u64))
            .fetch_all(&self.pool);
        let rows = bounded(READ_TIMEOUT, "reading recent messages", rows).await?;
        let Some(first) = rows.first() else {
            return Ok(Recent::default());
        };
        let last_seq = seq_of(first.try_get("last_seq")?)?;
        let mut messages = Vec::with_capacity(rows.len());
        for row in rows.iter().rev() {
            // The one row of a room whose messages are all gone.
            if row.try_get::<Option<i64>, _>("seq")?.is_some() {
                messages.push(to_message(room, row)?);
            }
        }
        Ok(Recent { messages, last_seq })
    }

    async fn bounds(&self, room: &str) -> Result<Bounds, LogError> {
        let read = sqlx::query_as::<_, (Option<i64>, Option<i64>)>(BOUNDS)
            .bind(room)
            .fetch_one(&self.pool);
        let (last_seq, first_seq) = bounded(READ_TIMEOUT, "reading bounds", read).await?;
        Ok(Bounds {
            first_seq: first_seq.map(seq_of).transpose()?,
            last_seq: last_seq.map(seq_of).transpose()?.unwrap_or(0),
        })
    }

    async fn rooms(&self, after: Option<&str>, limit: usize) -> Result<Vec<StoredRoom>, LogError> {
        let read = sqlx::query_as::<_, (String, i64, Option<i64>)>(ROOMS)
            .bind(after.unwrap_or_default())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool);
        let rows = bounded(READ_TIMEOUT, "reading rooms", read).await?;
        Ok(rows
            .into_iter()
            .map(|(name, last_seq, last_activity)| {
                Ok(StoredRoom {
                    name,
                    last_seq: seq_of(last_seq)?,
                    last_activity: last_activity.map(rfc3339),
                })
            })
            .collect::<Result<_, sqlx::Error>>()?)
    }

    async fn prune_by_age(&self, now_ms: i64) -> Result<usize, LogError> {
        let memory = i64::try_from(CLIENT_ID_MEMORY.as_millis()).unwrap_or(i64::MAX);
        let remembered = sqlx::query("DELETE FROM forgotten_client_ids WHERE forgotten_ms < $1")
            .bind(now_ms.saturating_sub(memory))
            .execute(&self.pool);
        bounded(SLOW_TIMEOUT, "forgetting old client_ids", remembered).await?;
        let Some(max_age) = self.retention.max_age else {
            return Ok(0);
        };
        let cutoff = now_ms.saturating_sub(i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX));
        let prune = sqlx::query(FORGET_BEFORE)
            .bind(cutoff)
            .bind(now_ms)
            .fetch_one(&self.pool);
        let row = bounded(SLOW_TIMEOUT, "pruning by age", prune).await?;
        let forgotten: i64 = row.try_get("forgotten")?;
        Ok(usize::try_from(forgotten).unwrap_or(0))
    }

    fn retention(&self) -> Retention {
        self.retention
    }

    async fn ready(&self) -> Result<(), LogError> {
        if self.writer.is_closed() {
            return Err(LogError::Closed);
        }
        let probe = sqlx::query("SELECT 1").execute(&self.pool);
        bounded(READY_TIMEOUT, "readiness probe", probe).await?;
        Ok(())
    }
}
