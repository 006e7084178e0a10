//! The embedded room log: SQLite in WAL mode, in a database of its own
//! (`messages.db`), so that message writes never wait on account writes.
//!
//! Three kinds of thread touch it, each on its own connection:
//! - one **writer** thread takes every append queued while its last commit
//!   ran and commits them in one transaction (group commit), then completes
//!   each in commit order. Under `synchronous=FULL` a whole batch shares one
//!   flush, so the disk's flush rate no longer caps the message rate.
//! - a **checkpointer** thread moves the WAL into the database now and then
//!   (`wal_autocheckpoint` is off), so no append ever waits on a checkpoint.
//! - **reads** run on the blocking pool with pooled read-only connections, so
//!   joins, history pages and resumes neither wait for the writer nor block it.
//!
//! The writer refuses a batch while the database's file system has less than
//! [`MIN_FREE`] free, and readiness asks the writer itself (a probe queued
//! behind the appends, answered with the same check and a one-row commit), so
//! `/readyz` sees what an append would see.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use chat_protocol::ChatMessage;
use rand_core::{OsRng, RngCore};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, Transaction};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::metrics::LogMetrics;

use super::{
    unix_millis, Appended, Bounds, Committed, Durability, LogError, NewMessage, Recent, Retention,
    RoomLog, Storage, StoredRoom, CLIENT_ID_MEMORY, MESSAGES_FILE,
};

/// Appends waiting for the writer. When it is full, appenders wait (the
/// sending connection stops being read: TCP pushes back on the client)
/// instead of the queue growing without bound.
const QUEUE: usize = 8192;

/// Most appends in one transaction; bounds the time a batch's first
/// message waits for its last.
const MAX_BATCH: usize = 1024;

/// How often the checkpointer moves the WAL into the database. Often enough
/// that the WAL stays a few MB under heavy traffic; PASSIVE never blocks the
/// writer or readers.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Free bytes the writer keeps on the database's file system: below this,
/// a batch is refused (every append in it gets [`LogError::DiskFull`]) and
/// the log is not ready. SQLite alone would notice a full disk late and at
/// random: it reuses WAL space it already has, so commits go on succeeding
/// until a checkpoint must grow the database or the WAL must grow, and the
/// accounts database in the same directory would fail its session writes
/// meanwhile. Refusing at a fixed mark makes the failure prompt and the
/// same for every append, and leaves room for checkpoints to finish. 1 MiB
/// is far more than a commit of typical messages writes to the WAL (a 4 KiB
/// page for each table and index page it touches), and sixteen messages of
/// the largest size (64 KiB); a batch larger than what is left fails on
/// SQLite's own `SQLITE_FULL`, which rolls it back whole just the same.
const MIN_FREE: u64 = 1024 * 1024;

/// Reads at once. Each holds a connection and a blocking-pool thread; more
/// than the cores would only queue inside SQLite.
const READERS: usize = 4;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS rooms (
        name          TEXT PRIMARY KEY,
        last_seq      INTEGER NOT NULL,
        last_activity TEXT
    );
    CREATE TABLE IF NOT EXISTS messages (
        id        INTEGER PRIMARY KEY,
        room      TEXT NOT NULL,
        seq       INTEGER NOT NULL,
        sender    TEXT NOT NULL,
        client_id TEXT,
        text      TEXT NOT NULL,
        sent_at   TEXT NOT NULL,
        sent_ms   INTEGER NOT NULL,
        UNIQUE (room, seq)
    );
    CREATE UNIQUE INDEX IF NOT EXISTS messages_client_id
        ON messages (room, sender, client_id) WHERE client_id IS NOT NULL;
    CREATE INDEX IF NOT EXISTS messages_age ON messages (sent_ms);
    -- The client_ids of messages retention forgot, kept CLIENT_ID_MEMORY
    -- after the forget: a resend of one is acked as the original, not
    -- stored again.
    CREATE TABLE IF NOT EXISTS forgotten_client_ids (
        room         TEXT NOT NULL,
        sender       TEXT NOT NULL,
        client_id    TEXT NOT NULL,
        seq          INTEGER NOT NULL,
        id           INTEGER NOT NULL,
        sent_at      TEXT NOT NULL,
        forgotten_ms INTEGER NOT NULL,
        PRIMARY KEY (room, sender, client_id)
    );
    CREATE INDEX IF NOT EXISTS forgotten_client_ids_age ON forgotten_client_ids (forgotten_ms);
";

/// Keeps the `client_id`s of the messages a retention `DELETE` with the same
/// `WHERE` is about to forget (`?1` is the time of the forget).
const KEEP_CLIENT_IDS: &str = "
    INSERT OR IGNORE INTO forgotten_client_ids
        (room, sender, client_id, seq, id, sent_at, forgotten_ms)
    SELECT room, sender, client_id, seq, id, sent_at, ?1 FROM messages
    WHERE client_id IS NOT NULL AND ";

const COLUMNS: &str = "id, room, seq, sender, text, sent_at";

fn to_message(row: &Row<'_>) -> rusqlite::Result<ChatMessage> {
    Ok(ChatMessage {
        id: row.get::<_, i64>(0)?.to_string(),
        room: row.get(1)?,
        seq: row.get(2)?,
        from: row.get(3)?,
        text: row.get(4)?,
        sent_at: row.get(5)?,
    })
}

/// Work for the writer thread, in the order it was queued.
enum Command {
    Append(NewMessage, Committed),
    PruneByAge(i64, oneshot::Sender<Result<usize, LogError>>),
    /// A readiness probe: answered after the appends queued before it.
    Probe(oneshot::Sender<Result<(), LogError>>),
}

/// The SQLite room log. Dropping it lets the writer finish what is queued
/// and stop.
pub struct SqliteLog {
    epoch: String,
    retention: Retention,
    metrics: LogMetrics,
    writer: mpsc::Sender<Command>,
    reads: Arc<ReadPool>,
    /// Bounds concurrent reads to [`READERS`].
    readers: Arc<Semaphore>,
    /// Stops the checkpointer when dropped.
    stop_checkpointer: Option<std::sync::mpsc::Sender<()>>,
    /// The writer and checkpointer threads, joined on drop.
    threads: Vec<std::thread::JoinHandle<()>>,
    /// The throwaway directory of [`Storage::Memory`], removed on drop.
    _scratch: Option<tempfile::TempDir>,
}

impl Drop for SqliteLog {
    /// Lets the writer commit what is queued, stops both threads and waits
    /// for them: once the log is gone its files are closed, so a log opened
    /// next on the same directory never meets a connection of this one.
    fn drop(&mut self) {
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.writer, closed));
        self.stop_checkpointer.take();
        for thread in self.threads.drain(..) {
            // The last handle may go inside a completion, on the writer itself.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

impl SqliteLog {
    /// Opens (creating if needed) the log in `data_dir`, or a throwaway one,
    /// and starts its writer and checkpointer threads.
    pub fn open(
        data_dir: &Path,
        storage: Storage,
        durability: Durability,
        retention: Retention,
    ) -> Result<Self, LogError> {
        Self::open_reserving(data_dir, storage, durability, retention, MIN_FREE)
    }

    /// [`SqliteLog::open`] keeping `reserve` bytes free instead of
    /// [`MIN_FREE`]: tests make a disk look full with `u64::MAX`.
    fn open_reserving(
        data_dir: &Path,
        storage: Storage,
        durability: Durability,
        retention: Retention,
        reserve: u64,
    ) -> Result<Self, LogError> {
        let (path, scratch) = match storage {
            Storage::File => {
                std::fs::create_dir_all(data_dir)?;
                (data_dir.join(MESSAGES_FILE), None)
            }
            Storage::Memory => {
                // In RAM where the machine offers a tmpfs; never flushed either way.
                let shm = Path::new("/dev/shm");
                let dir = if shm.is_dir() {
                    tempfile::Builder::new().prefix("chat-log").tempdir_in(shm)
                } else {
                    tempfile::Builder::new().prefix("chat-log").tempdir()
                }?;
                (dir.path().join(MESSAGES_FILE), Some(dir))
            }
        };
        let conn = Connection::open(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let synchronous = match (storage, durability) {
            (Storage::Memory, _) => "OFF",
            (Storage::File, Durability::Normal) => "NORMAL",
            (Storage::File, Durability::Full) => "FULL",
        };
        conn.pragma_update(None, "synchronous", synchronous)?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        let epoch = epoch_of(&conn)?;

        let checkpointer = Connection::open(&path)?;
        checkpointer.busy_timeout(Duration::from_secs(5))?;
        let (stop, stopped) = std::sync::mpsc::channel();
        let checkpointing = std::thread::Builder::new()
            .name("room-log-checkpoint".into())
            .spawn(move || checkpoint_until_stopped(&checkpointer, &stopped))?;

        let (writer, queue) = mpsc::channel(QUEUE);
        let metrics = LogMetrics::default();
        let writer_state = Writer {
            conn,
            retention,
            dir: path.parent().unwrap_or(Path::new(".")).to_owned(),
            reserve,
            metrics: metrics.clone(),
        };
        let writing = std::thread::Builder::new()
            .name("room-log-writer".into())
            .spawn(move || writer_state.run(queue))?;

        Ok(Self {
            epoch,
            retention,
            metrics,
            writer,
            reads: Arc::new(ReadPool {
                path,
                idle: Mutex::new(Vec::new()),
            }),
            readers: Arc::new(Semaphore::new(READERS)),
            stop_checkpointer: Some(stop),
            threads: vec![writing, checkpointing],
            _scratch: scratch,
        })
    }

    /// Runs `read` on a pooled read connection on the blocking pool.
    async fn read<T, F>(&self, read: F) -> Result<T, LogError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let _permit = self.readers.acquire().await.map_err(|_| LogError::Closed)?;
        let pool = self.reads.clone();
        tokio::task::spawn_blocking(move || pool.with(read))
            .await
            .map_err(|_| LogError::Closed)?
    }
}

/// The log's epoch, made once when the database is new.
fn epoch_of(conn: &Connection) -> rusqlite::Result<String> {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    let fresh: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?1)",
        params![fresh],
    )?;
    conn.query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |row| {
        row.get(0)
    })
}

fn checkpoint_until_stopped(conn: &Connection, stopped: &std::sync::mpsc::Receiver<()>) {
    // The timeout is the checkpoint period; the channel only says "stop".
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
        stopped.recv_timeout(CHECKPOINT_EVERY)
    {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
        }
    }
}

/// Read-only connections, reused between reads.
struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    fn with<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, LogError> {
        // std Mutex: held only to pop or push, on a blocking-pool thread.
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let conn = Connection::open_with_flags(&self.path, flags)?;
                conn.busy_timeout(Duration::from_secs(5))?;
                conn
            }
        };
        let result = read(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < READERS {
            idle.push(conn);
        }
        Ok(result?)
    }
}

/// The writer thread's state.
struct Writer {
    conn: Connection,
    retention: Retention,
    metrics: LogMetrics,
    /// The directory of the database files: its file system's free space is
    /// checked before every commit.
    dir: PathBuf,
    /// Free bytes below which commits are refused ([`MIN_FREE`]).
    reserve: u64,
}

impl Writer {
    /// Takes what is queued, commits it as one batch, completes it; until
    /// every sender is gone.
    fn run(mut self, mut queue: mpsc::Receiver<Command>) {
        let mut batch: Vec<(NewMessage, Committed)> = Vec::new();
        let mut probes = Vec::new();
        while let Some(first) = queue.blocking_recv() {
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Append(message, committed) => batch.push((message, committed)),
                    Command::PruneByAge(now_ms, done) => {
                        // Appends queued before the prune commit first.
                        self.commit(std::mem::take(&mut batch));
                        let _ = done.send(self.prune_by_age(now_ms));
                    }
                    Command::Probe(done) => probes.push(done),
                }
                if batch.len() < MAX_BATCH {
                    next = queue.try_recv().ok();
                }
            }
            self.commit(std::mem::take(&mut batch));
            if !probes.is_empty() {
                // Every probe queued meanwhile shares one probe write.
                let outcome = self.probe();
                for done in probes.drain(..) {
                    let _ = done.send(outcome.clone());
                }
            }
        }
    }

    /// Refuses when the database's file system has less than the reserve free.
    fn check_space(&self) -> Result<(), LogError> {
        let stat = rustix::fs::statvfs(&self.dir).map_err(std::io::Error::from)?;
        // f_bavail, not f_bfree: what an unprivileged writer may still use;
        // root's share of ext4 is the operator's margin, not the log's.
        let available = stat.f_bavail.saturating_mul(stat.f_frsize);
        if available < self.reserve {
            return Err(LogError::DiskFull {
                available,
                reserve: self.reserve,
            });
        }
        Ok(())
    }

    /// Proves that an append would commit now: the same space check, then a
    /// one-row write committed on the writer's own connection, which fails
    /// as an append would on a store that cannot be written (I/O errors,
    /// `SQLITE_FULL`, a database SQLite finds read-only). The row keeps the
    /// time of the last probe.
    fn probe(&mut self) -> Result<(), LogError> {
        self.check_space()?;
        let now = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES ('ready_probe', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![now],
        )?;
        Ok(())
    }

    /// Commits a batch in one transaction and completes every append in it,
    /// in order, only after the commit. A failure fails the whole batch:
    /// nothing of it is stored, and every sender is told so.
    fn commit(&mut self, batch: Vec<(NewMessage, Committed)>) {
        if batch.is_empty() {
            return;
        }
        let now = SystemTime::now();
        let sent_ms = unix_millis(now);
        let sent_at = humantime::format_rfc3339_millis(now).to_string();
        let retention = self.retention;
        self.metrics.batch_size.observe(batch.len() as f64);
        let stored = self.check_space().and_then(|()| {
            let tx = self.conn.transaction()?;
            let mut out = Vec::with_capacity(batch.len());
            for (message, _) in &batch {
                out.push(append_one(&tx, message, &sent_at, sent_ms, retention)?);
            }
            tx.commit()?;
            Ok::<_, LogError>(out)
        });
        match stored {
            Ok(appended) => {
                for ((_, committed), appended) in batch.into_iter().zip(appended) {
                    committed(Ok(appended));
                }
            }
            Err(e) => {
                self.metrics.commit_failures.inc();
                tracing::error!(error = %e, messages = batch.len(), "commit failed");
                for (_, committed) in batch {
                    committed(Err(e.clone()));
                }
            }
        }
    }

    fn prune_by_age(&mut self, now_ms: i64) -> Result<usize, LogError> {
        let memory = i64::try_from(CLIENT_ID_MEMORY.as_millis()).unwrap_or(i64::MAX);
        let tx = self.conn.transaction()?;
        tx.execute(
            "DELETE FROM forgotten_client_ids WHERE forgotten_ms < ?1",
            params![now_ms.saturating_sub(memory)],
        )?;
        let mut forgot = 0;
        if let Some(max_age) = self.retention.max_age {
            let age = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
            let cutoff = now_ms.saturating_sub(age);
            tx.execute(
                &format!("{KEEP_CLIENT_IDS} sent_ms < ?2"),
                params![now_ms, cutoff],
            )?;
            forgot = tx.execute("DELETE FROM messages WHERE sent_ms < ?1", params![cutoff])?;
        }
        tx.commit()?;
        Ok(forgot)
    }
}

/// One append inside the batch's transaction.
fn append_one(
    tx: &Transaction<'_>,
    message: &NewMessage,
    sent_at: &str,
    sent_ms: i64,
    retention: Retention,
) -> rusqlite::Result<Appended> {
    let NewMessage {
        room,
        sender,
        client_id,
        text,
    } = message;
    if let Some(client_id) = client_id {
        let earlier = tx
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM messages WHERE room = ?1 AND sender = ?2 AND client_id = ?3"
            ))?
            .query_row(params![room, sender, client_id], to_message)
            .optional()?;
        if let Some(message) = earlier {
            return Ok(Appended {
                message,
                duplicate: true,
                forgotten: false,
            });
        }
        let forgotten = tx
            .prepare_cached(
                "SELECT id, seq, sent_at FROM forgotten_client_ids
                 WHERE room = ?1 AND sender = ?2 AND client_id = ?3",
            )?
            .query_row(params![room, sender, client_id], |row| {
                Ok(ChatMessage {
                    id: row.get::<_, i64>(0)?.to_string(),
                    room: room.clone(),
                    seq: row.get(1)?,
                    from: sender.clone(),
                    text: String::new(),
                    sent_at: row.get(2)?,
                })
            })
            .optional()?;
        if let Some(message) = forgotten {
            return Ok(Appended {
                message,
                duplicate: true,
                forgotten: true,
            });
        }
    }
    let seq: u64 = tx
        .prepare_cached(
            "INSERT INTO rooms (name, last_seq, last_activity) VALUES (?1, 1, ?2)
             ON CONFLICT (name) DO UPDATE SET last_seq = last_seq + 1, last_activity = ?2
             RETURNING last_seq",
        )?
        .query_row(params![room, sent_at], |row| row.get(0))?;
    tx.prepare_cached(
        "INSERT INTO messages (room, seq, sender, client_id, text, sent_at, sent_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        room, seq, sender, client_id, text, sent_at, sent_ms
    ])?;
    let id = tx.last_insert_rowid();
    if let Some(keep) = retention.max_messages {
        let up_to = seq.saturating_sub(keep);
        tx.prepare_cached(&format!("{KEEP_CLIENT_IDS} room = ?2 AND seq <= ?3"))?
            .execute(params![sent_ms, room, up_to])?;
        tx.prepare_cached("DELETE FROM messages WHERE room = ?1 AND seq <= ?2")?
            .execute(params![room, up_to])?;
    }
    Ok(Appended {
        message: ChatMessage {
            id: id.to_string(),
            room: room.clone(),
            seq,
            from: sender.clone(),
            text: text.clone(),
            sent_at: sent_at.to_owned(),
        },
        duplicate: false,
        forgotten: false,
    })
}

fn after(
    conn: &Connection,
    room: &str,
    after: u64,
    limit: usize,
) -> rusqlite::Result<Vec<ChatMessage>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM messages WHERE room = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
    ))?;
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let rows = statement.query_map(params![room, after, limit as i64], to_message)?;
    rows.collect()
}

fn before(
    conn: &Connection,
    room: &str,
    before: Option<u64>,
    limit: usize,
) -> rusqlite::Result<Vec<ChatMessage>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM messages WHERE room = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
    ))?;
    let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
    let rows = statement.query_map(params![room, before, limit as i64], to_message)?;
    let mut messages: Vec<ChatMessage> = rows.collect::<Result<_, _>>()?;
    messages.reverse();
    Ok(messages)
}

fn last_seq(conn: &Connection, room: &str) -> rusqlite::Result<u64> {
    Ok(conn
        .prepare_cached("SELECT last_seq FROM rooms WHERE name = ?1")?
        .query_row(params![room], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

#[async_trait::async_trait]
impl RoomLog for SqliteLog {
    fn epoch(&self) -> &str {
        &self.epoch
    }

    fn metrics(&self) -> &LogMetrics {
        &self.metrics
    }

    async fn append(&self, message: NewMessage, committed: Committed) {
        if let Err(mpsc::error::SendError(Command::Append(_, committed))) =
            self.writer.send(Command::Append(message, committed)).await
        {
            committed(Err(LogError::Closed));
        }
    }

    async fn after(
        &self,
        room: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, LogError> {
        let room = room.to_owned();
        self.read(move |conn| after(conn, &room, from, limit)).await
    }

    async fn before(
        &self,
        room: &str,
        until: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, LogError> {
        let room = room.to_owned();
        self.read(move |conn| before(conn, &room, until, limit))
            .await
    }

    async fn recent(&self, room: &str, limit: usize) -> Result<Recent, LogError> {
        let room = room.to_owned();
        self.read(move |conn| {
            // One read transaction: one snapshot for both statements.
            let tx = conn.unchecked_transaction()?;
            let last_seq = last_seq(&tx, &room)?;
            let messages = before(&tx, &room, None, limit)?;
            tx.finish()?;
            Ok(Recent { messages, last_seq })
        })
        .await
    }

    async fn bounds(&self, room: &str) -> Result<Bounds, LogError> {
        let room = room.to_owned();
        self.read(move |conn| {
            let tx = conn.unchecked_transaction()?;
            let last_seq = last_seq(&tx, &room)?;
            let first_seq = tx
                .prepare_cached("SELECT MIN(seq) FROM messages WHERE room = ?1")?
                .query_row(params![room], |row| row.get(0))?;
            tx.finish()?;
            Ok(Bounds {
                first_seq,
                last_seq,
            })
        })
        .await
    }

    async fn rooms(&self, after: Option<&str>, limit: usize) -> Result<Vec<StoredRoom>, LogError> {
        // Every room name is non-empty, so "" is before them all.
        let after = after.unwrap_or_default().to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT name, last_seq, last_activity FROM rooms WHERE name > ?1 \
                 ORDER BY name LIMIT ?2",
            )?;
            let rows = statement.query_map(params![after, limit], |row| {
                Ok(StoredRoom {
                    name: row.get(0)?,
                    last_seq: row.get(1)?,
                    last_activity: row.get(2)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn prune_by_age(&self, now_ms: i64) -> Result<usize, LogError> {
        let (done, result) = oneshot::channel();
        self.writer
            .send(Command::PruneByAge(now_ms, done))
            .await
            .map_err(|_| LogError::Closed)?;
        result.await.map_err(|_| LogError::Closed)?
    }

    fn retention(&self) -> Retention {
        self.retention
    }

    async fn ready(&self) -> Result<(), LogError> {
        // Through the writer's queue, behind the appends: a writer that is
        // gone, stuck or cannot commit fails this as it fails them.
        let (done, outcome) = oneshot::channel();
        self.writer
            .send(Command::Probe(done))
            .await
            .map_err(|_| LogError::Closed)?;
        outcome.await.map_err(|_| LogError::Closed)??;
        // A read on the read pool: the file opens and answers.
        self.read(|conn| conn.query_row("SELECT count(*) FROM meta", [], |_| Ok(())))
            .await
    }
}

// The behaviour every RoomLog shares is tested once for both logs, in
// tests/room_log/behaviour.rs; here is what only a file store has.
#[cfg(test)]
mod tests {
    use super::*;

    fn open(retention: Retention) -> SqliteLog {
        SqliteLog::open(
            Path::new("."),
            Storage::Memory,
            Durability::Normal,
            retention,
        )
        .expect("opens")
    }

    #[tokio::test]
    async fn the_epoch_lasts_as_long_as_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open_file = || {
            SqliteLog::open(
                dir.path(),
                Storage::File,
                Durability::Normal,
                Retention::default(),
            )
        };
        let first = open_file().expect("opens").epoch().to_owned();
        assert_eq!(open_file().expect("reopens").epoch(), first);
        assert!(!first.is_empty());
        let other = tempfile::tempdir().expect("tempdir");
        let fresh = SqliteLog::open(
            other.path(),
            Storage::File,
            Durability::Full,
            Retention::default(),
        )
        .expect("new store");
        assert_ne!(fresh.epoch(), first);
        assert_ne!(open(Retention::default()).epoch(), first);
    }

    async fn append(log: &SqliteLog, text: &str) -> Result<Appended, LogError> {
        let message = NewMessage {
            room: "r".into(),
            sender: "ann".into(),
            client_id: None,
            text: text.into(),
        };
        crate::room_log::append_and_wait(log, message).await
    }

    #[tokio::test]
    async fn below_the_free_space_reserve_appends_are_refused_and_the_log_is_not_ready() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = |reserve| {
            SqliteLog::open_reserving(
                dir.path(),
                Storage::File,
                Durability::Normal,
                Retention::default(),
                reserve,
            )
            .expect("opens")
        };
        let roomy = open(0);
        roomy.ready().await.expect("ready with room to spare");
        append(&roomy, "kept").await.expect("stored");
        drop(roomy);

        // No file system has u64::MAX bytes free: this one looks full.
        let full = open(u64::MAX);
        let not_ready = full.ready().await.expect_err("a full disk is not ready");
        assert!(
            matches!(
                not_ready,
                LogError::DiskFull {
                    reserve: u64::MAX,
                    ..
                }
            ),
            "{not_ready:?}"
        );
        assert!(not_ready.to_string().contains("disk full"), "{not_ready}");
        let refused = append(&full, "refused").await.expect_err("refused");
        assert!(matches!(refused, LogError::DiskFull { .. }), "{refused:?}");
        let stored = full.after("r", 0, 10).await.expect("reads still work");
        let texts: Vec<_> = stored.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["kept"], "the refused message was not stored");
    }
}
