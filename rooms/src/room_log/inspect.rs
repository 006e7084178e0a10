//! Read-only looks at a room log's store, for an operator's tools (`chat-server
//! admin`) while a server writes it: no writer, no migrations, no epoch made,
//! nothing written. A server's log stays the only writer of its store.
//!
//! For SQLite that means a read-only connection to `messages.db`: in WAL mode
//! a reader neither blocks the server's writer nor waits for it, and sees the
//! last commit. For PostgreSQL, plain reads on the caller's pool.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use sqlx::PgPool;

use super::{LogError, MESSAGES_FILE};

/// A room and what the log holds of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomStats {
    /// The room name.
    pub name: String,
    /// Messages stored now (retention may have forgotten older ones).
    pub messages: u64,
    /// The oldest sequence number stored (none: every message is gone).
    pub first_seq: Option<u64>,
    /// The newest sequence number ever given.
    pub last_seq: u64,
    /// When its newest message was sent (RFC 3339, milliseconds).
    pub last_message_at: Option<String>,
}

/// Rows in the log's tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogCounts {
    /// Rooms that ever had a message.
    pub rooms: u64,
    /// Messages stored now.
    pub messages: u64,
}

/// How long a read waits for SQLite's locks (only a checkpoint's brief one
/// can be in its way) or for PostgreSQL.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Every room of the `messages.db` in `data_dir`, sorted by name; none when
/// the file does not exist (no server has stored a message there yet).
/// Blocking: call it off any async runtime's threads.
pub fn sqlite_rooms(data_dir: &Path) -> Result<Vec<RoomStats>, LogError> {
    let Some(conn) = open_read_only(data_dir)? else {
        return Ok(Vec::new());
    };
    // One statement, so one snapshot: the counts and bounds agree with each
    // other even while the server appends. The (room, seq) index answers
    // count and min without reading the messages themselves.
    let mut statement = conn.prepare(
        "SELECT r.name, r.last_seq, r.last_activity, count(m.seq), min(m.seq)
         FROM rooms r LEFT JOIN messages m ON m.room = r.name
         GROUP BY r.name ORDER BY r.name",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(RoomStats {
            name: row.get(0)?,
            last_seq: row.get(1)?,
            last_message_at: row.get(2)?,
            messages: row.get(3)?,
            first_seq: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The row counts of the `messages.db` in `data_dir` (zero without the file).
/// Blocking, as [`sqlite_rooms`].
pub fn sqlite_counts(data_dir: &Path) -> Result<LogCounts, LogError> {
    let Some(conn) = open_read_only(data_dir)? else {
        return Ok(LogCounts::default());
    };
    Ok(conn.query_row(
        "SELECT (SELECT count(*) FROM rooms), (SELECT count(*) FROM messages)",
        [],
        |row| {
            Ok(LogCounts {
                rooms: row.get(0)?,
                messages: row.get(1)?,
            })
        },
    )?)
}

/// A read-only connection to the log's file, or none when there is no file.
/// Read-only flags never create it, so a wrong `--data-dir` is not filled
/// with an empty database.
fn open_read_only(data_dir: &Path) -> Result<Option<Connection>, LogError> {
    let path = data_dir.join(MESSAGES_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(READ_TIMEOUT)?;
    Ok(Some(conn))
}

/// Every room of the PostgreSQL log in `pool`'s database, sorted by name
/// (byte order, as the log lists them); none when no log was ever made there.
pub async fn pg_rooms(pool: &PgPool) -> Result<Vec<RoomStats>, LogError> {
    if !pg_has_log(pool).await? {
        return Ok(Vec::new());
    }
    // The lateral count walks each room's primary-key range (room, seq).
    let read = sqlx::query_as::<_, (String, i64, Option<i64>, i64, Option<i64>)>(
        "SELECT r.name, r.last_seq, r.last_activity_ms, m.count, m.first
         FROM rooms r
         LEFT JOIN LATERAL (
             SELECT count(*) AS count, min(seq) AS first FROM messages WHERE room = r.name
         ) m ON true
         ORDER BY r.name",
    )
    .fetch_all(pool);
    let rows = bounded(read).await?;
    rows.into_iter()
        .map(|(name, last_seq, last_ms, count, first)| {
            Ok(RoomStats {
                name,
                messages: unsigned(count)?,
                first_seq: first.map(unsigned).transpose()?,
                last_seq: unsigned(last_seq)?,
                last_message_at: last_ms.map(rfc3339),
            })
        })
        .collect()
}

/// The row counts of the PostgreSQL log (zero when none was ever made).
pub async fn pg_counts(pool: &PgPool) -> Result<LogCounts, LogError> {
    if !pg_has_log(pool).await? {
        return Ok(LogCounts::default());
    }
    let read = sqlx::query_as::<_, (i64, i64)>(
        "SELECT (SELECT count(*) FROM rooms), (SELECT count(*) FROM messages)",
    )
    .fetch_one(pool);
    let (rooms, messages) = bounded(read).await?;
    Ok(LogCounts {
        rooms: unsigned(rooms)?,
        messages: unsigned(messages)?,
    })
}

/// Whether the log's tables exist in `pool`'s database.
async fn pg_has_log(pool: &PgPool) -> Result<bool, LogError> {
    let read = sqlx::query_scalar::<_, bool>(
        "SELECT to_regclass('rooms') IS NOT NULL AND to_regclass('messages') IS NOT NULL",
    )
    .fetch_one(pool);
    bounded(read).await
}

async fn bounded<T>(
    read: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, LogError> {
    match tokio::time::timeout(READ_TIMEOUT, read).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(sqlx::Error::PoolTimedOut.into()),
    }
}

fn unsigned(n: i64) -> Result<u64, LogError> {
    u64::try_from(n).map_err(|e| sqlx::Error::Decode(Box::new(e)).into())
}

/// RFC 3339 with milliseconds, as SQLite stores a message's time.
fn rfc3339(ms: i64) -> String {
    let since_epoch = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + since_epoch).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room_log::{append_and_wait, NewMessage, Retention, RoomLog, SqliteLog};
    use crate::{Durability, Storage};

    async fn append(log: &dyn RoomLog, room: &str, text: &str) {
        let message = NewMessage {
            room: room.into(),
            sender: "alice".into(),
            client_id: None,
            text: text.into(),
        };
        append_and_wait(log, message).await.expect("stored");
    }

    #[tokio::test]
    async fn a_reader_sees_a_running_logs_rooms_and_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(sqlite_rooms(dir.path()).expect("no file"), []);
        assert!(
            !dir.path().join(MESSAGES_FILE).exists(),
            "reading created nothing"
        );

        let retention = Retention {
            max_messages: Some(2),
            max_age: None,
        };
        let log = SqliteLog::open(dir.path(), Storage::File, Durability::Normal, retention)
            .expect("opens");
        for text in ["one", "two", "three"] {
            append(&log, "ops", text).await;
        }
        append(&log, "dev", "hello").await;

        // While the log (its writer thread, its connections) is open.
        let path = dir.path().to_owned();
        let rooms = tokio::task::spawn_blocking(move || sqlite_rooms(&path))
            .await
            .expect("task")
            .expect("reads");
        let summary: Vec<_> = rooms
            .iter()
            .map(|r| (r.name.as_str(), r.messages, r.first_seq, r.last_seq))
            .collect();
        assert_eq!(
            summary,
            [("dev", 1, Some(1), 1), ("ops", 2, Some(2), 3)],
            "retention kept the newest two of ops"
        );
        let stored = log.rooms(None, 10).await.expect("rooms");
        assert_eq!(
            rooms[1].last_message_at, stored[1].last_activity,
            "the same time the log reports"
        );
        let counts = sqlite_counts(dir.path()).expect("counts");
        assert_eq!(
            counts,
            LogCounts {
                rooms: 2,
                messages: 3
            }
        );
    }

    #[tokio::test]
    async fn a_reader_sees_a_postgresql_logs_rooms_and_counts() {
        let Some(db) = chat_test_engines::postgres().await else {
            return;
        };
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&db.url)
            .await
            .expect("connects");
        assert_eq!(pg_rooms(&pool).await.expect("no log yet"), []);
        assert_eq!(
            pg_counts(&pool).await.expect("no log yet"),
            LogCounts::default()
        );

        let log = crate::PgLog::connect(&db.url, Retention::default())
            .await
            .expect("opens");
        for text in ["one", "two"] {
            append(&log, "ops", text).await;
        }
        append(&log, "Dev", "hello").await;
        let rooms = pg_rooms(&pool).await.expect("reads");
        let summary: Vec<_> = rooms
            .iter()
            .map(|r| (r.name.as_str(), r.messages, r.first_seq, r.last_seq))
            .collect();
        assert_eq!(summary, [("Dev", 1, Some(1), 1), ("ops", 2, Some(1), 2)]);
        let stored = log.rooms(None, 10).await.expect("rooms");
        assert_eq!(rooms[1].last_message_at, stored[1].last_activity);
        assert_eq!(
            pg_counts(&pool).await.expect("counts"),
            LogCounts {
                rooms: 2,
                messages: 3
            }
        );
    }
}
