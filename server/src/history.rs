//! Durable message history: every accepted message, numbered per room, in an
//! embedded SQLite database (WAL) of its own (`messages.db`), so that message
//! writes never wait on account writes.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chat_protocol::ChatMessage;
use rusqlite::{params, Connection, OptionalExtension, Row};

/// File name of the message database inside the data directory.
pub const MESSAGES_FILE: &str = "messages.db";

/// Milliseconds since the Unix epoch, as message ages are stored.
pub(crate) fn unix_millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// How hard SQLite works to keep a committed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// `synchronous=NORMAL` in WAL mode: a committed message survives the
    /// process being killed; the last ones may be lost if the machine itself
    /// loses power. The usual choice for WAL.
    Normal,
    /// `synchronous=FULL`: every commit waits for the disk; survives power loss.
    Full,
}

/// Where messages are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Storage {
    /// `messages.db` in the data directory.
    File,
    /// An in-memory database: nothing survives a restart (for benchmarks).
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

/// Errors of the message store.
#[derive(Debug, thiserror::Error)]
#[error("message store: {0}")]
pub struct HistoryError(#[from] rusqlite::Error);

/// The outcome of storing a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Appended {
    /// The stored message (the earlier one, for a duplicate).
    pub(crate) message: ChatMessage,
    /// Whether the `client_id` had been seen: nothing new was stored.
    pub(crate) duplicate: bool,
}

/// A room as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredRoom {
    pub(crate) name: String,
    pub(crate) last_seq: u64,
    pub(crate) last_activity: Option<String>,
}

/// The message database. Calls block briefly (one indexed statement or one
/// small transaction); the room registry calls `append` under its lock so that
/// sequence order and delivery order are one and the same.
pub(crate) struct MessageStore {
    // std Mutex: never held across an `.await`; SQLite allows one writer anyway.
    conn: Mutex<Connection>,
    retention: Retention,
}

const SCHEMA: &str = "
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
";

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

impl MessageStore {
    /// Opens (creating if needed) the store in `data_dir`, or in memory.
    pub(crate) fn open(
        data_dir: &Path,
        storage: Storage,
        durability: Durability,
        retention: Retention,
    ) -> Result<Self, HistoryError> {
        let conn = match storage {
            Storage::File => Connection::open(data_dir.join(MESSAGES_FILE))?,
            Storage::Memory => Connection::open_in_memory()?,
        };
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let synchronous = match durability {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        };
        conn.pragma_update(None, "synchronous", synchronous)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Mutex::new(conn),
            retention,
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a message under the room's next sequence number, in one
    /// transaction; or, when `client_id` was already used by this sender in
    /// this room, returns the message stored then.
    pub(crate) fn append(
        &self,
        room: &str,
        sender: &str,
        client_id: Option<&str>,
        text: &str,
        sent_at: &str,
        sent_ms: i64,
    ) -> Result<Appended, HistoryError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if let Some(client_id) = client_id {
            let earlier = tx
                .query_row(
                    &format!(
                        "SELECT {COLUMNS} FROM messages WHERE room = ?1 AND sender = ?2 AND client_id = ?3"
                    ),
                    params![room, sender, client_id],
                    to_message,
                )
                .optional()?;
            if let Some(message) = earlier {
                return Ok(Appended {
                    message,
                    duplicate: true,
                });
            }
        }
        let seq: u64 = tx.query_row(
            "INSERT INTO rooms (name, last_seq, last_activity) VALUES (?1, 1, ?2)
             ON CONFLICT (name) DO UPDATE SET last_seq = last_seq + 1, last_activity = ?2
             RETURNING last_seq",
            params![room, sent_at],
            |row| row.get(0),
        )?;
        tx.execute(
            "INSERT INTO messages (room, seq, sender, client_id, text, sent_at, sent_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![room, seq, sender, client_id, text, sent_at, sent_ms],
        )?;
        let id = tx.last_insert_rowid();
        if let Some(keep) = self.retention.max_messages {
            tx.execute(
                "DELETE FROM messages WHERE room = ?1 AND seq <= ?2",
                params![room, seq.saturating_sub(keep)],
            )?;
        }
        tx.commit()?;
        Ok(Appended {
            message: ChatMessage {
                id: id.to_string(),
                room: room.to_owned(),
                seq,
                from: sender.to_owned(),
                text: text.to_owned(),
                sent_at: sent_at.to_owned(),
            },
            duplicate: false,
        })
    }

    /// The room's newest sequence number; 0 when it never had a message.
    pub(crate) fn last_seq(&self, room: &str) -> Result<u64, HistoryError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT last_seq FROM rooms WHERE name = ?1",
                params![room],
                |row| row.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    /// The oldest sequence number still stored for the room.
    pub(crate) fn first_seq(&self, room: &str) -> Result<Option<u64>, HistoryError> {
        Ok(self.conn().query_row(
            "SELECT MIN(seq) FROM messages WHERE room = ?1",
            params![room],
            |row| row.get(0),
        )?)
    }

    /// Up to `limit` messages with `seq > after`, oldest first.
    pub(crate) fn after(
        &self,
        room: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, HistoryError> {
        let conn = self.conn();
        let mut statement = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM messages WHERE room = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
        ))?;
        let rows = statement.query_map(params![room, after, limit as i64], to_message)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The `limit` newest messages with `seq < before` (all when `None`),
    /// returned oldest first.
    pub(crate) fn before(
        &self,
        room: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, HistoryError> {
        let conn = self.conn();
        let mut statement = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM messages WHERE room = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
        ))?;
        let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        let rows = statement.query_map(params![room, before, limit as i64], to_message)?;
        let mut messages: Vec<ChatMessage> = rows.collect::<Result<_, _>>()?;
        messages.reverse();
        Ok(messages)
    }

    /// Every room that ever had a message.
    pub(crate) fn rooms(&self) -> Result<Vec<StoredRoom>, HistoryError> {
        let conn = self.conn();
        let mut statement =
            conn.prepare_cached("SELECT name, last_seq, last_activity FROM rooms ORDER BY name")?;
        let rows = statement.query_map([], |row| {
            Ok(StoredRoom {
                name: row.get(0)?,
                last_seq: row.get(1)?,
                last_activity: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets messages older than the retention age; returns how many.
    pub(crate) fn prune_by_age(&self, now_ms: i64) -> Result<usize, HistoryError> {
        let Some(max_age) = self.retention.max_age else {
            return Ok(0);
        };
        let cutoff = now_ms.saturating_sub(i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX));
        Ok(self
            .conn()
            .execute("DELETE FROM messages WHERE sent_ms < ?1", params![cutoff])?)
    }

    /// How often age retention should run.
    pub(crate) fn prune_interval(&self) -> Option<Duration> {
        self.retention
            .max_age
            .map(|age| (age / 10).clamp(Duration::from_secs(1), Duration::from_secs(60)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(retention: Retention) -> MessageStore {
        MessageStore::open(
            Path::new("."),
            Storage::Memory,
            Durability::Normal,
            retention,
        )
        .expect("opens")
    }

    fn add(store: &MessageStore, room: &str, text: &str, client_id: Option<&str>) -> Appended {
        store
            .append(
                room,
                "alice",
                client_id,
                text,
                "2026-11-24T09:30:00.000Z",
                0,
            )
            .expect("appends")
    }

    #[test]
    fn sequence_numbers_are_per_room_and_gapless() {
        let store = store(Retention::default());
        let seqs: Vec<u64> = ["a", "b", "a", "a", "b"]
            .iter()
            .map(|room| add(&store, room, "x", None).message.seq)
            .collect();
        assert_eq!(seqs, [1, 1, 2, 3, 2]);
        assert_eq!(store.last_seq("a").expect("query"), 3);
        assert_eq!(store.last_seq("never").expect("query"), 0);
    }

    #[test]
    fn a_reused_client_id_returns_the_first_message() {
        let store = store(Retention::default());
        let first = add(&store, "r", "hello", Some("c1"));
        let again = add(&store, "r", "hello", Some("c1"));
        assert!(!first.duplicate && again.duplicate);
        assert_eq!(first.message, again.message);
        assert_eq!(store.last_seq("r").expect("query"), 1);
        assert!(
            !add(&store, "other", "hello", Some("c1")).duplicate,
            "per room"
        );
    }

    #[test]
    fn pages_in_both_directions() {
        let store = store(Retention::default());
        for i in 1..=10 {
            add(&store, "r", &format!("m{i}"), None);
        }
        let seqs = |m: Vec<ChatMessage>| m.iter().map(|m| m.seq).collect::<Vec<_>>();
        assert_eq!(seqs(store.before("r", None, 3).expect("q")), [8, 9, 10]);
        assert_eq!(seqs(store.before("r", Some(8), 3).expect("q")), [5, 6, 7]);
        assert_eq!(seqs(store.after("r", 7, 100).expect("q")), [8, 9, 10]);
        assert_eq!(
            seqs(store.after("r", 10, 100).expect("q")),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn retention_by_count_keeps_the_newest_and_never_reuses_numbers() {
        let store = store(Retention {
            max_messages: Some(3),
            max_age: None,
        });
        for i in 1..=7 {
            add(&store, "r", &format!("m{i}"), None);
        }
        assert_eq!(store.first_seq("r").expect("q"), Some(5));
        assert_eq!(add(&store, "r", "m8", None).message.seq, 8);
    }

    #[test]
    fn retention_by_age_forgets_old_messages() {
        let store = store(Retention {
            max_messages: None,
            max_age: Some(Duration::from_secs(60)),
        });
        store
            .append("r", "alice", None, "old", "t", 1_000)
            .expect("appends");
        store
            .append("r", "alice", None, "new", "t", 100_000)
            .expect("appends");
        assert_eq!(store.prune_by_age(100_000).expect("prunes"), 1);
        assert_eq!(store.first_seq("r").expect("q"), Some(2));
        assert_eq!(store.rooms().expect("q")[0].last_seq, 2, "the room remains");
    }
}
