//! The room log's guarantees, checked once and run against every
//! implementation (`behaviour`), and what only the shared PostgreSQL log
//! has to keep: several nodes on one database, a database that goes away
//! (`postgres`). `throughput` measures group commit (ignored by default).
#![allow(missing_docs, unreachable_pub)]

mod behaviour;
mod postgres;
mod sqlite;
mod throughput;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chat_rooms::room_log::{Appended, NewMessage};
use chat_rooms::{LogError, PgLog, Retention, RoomLog};
use sqlx::postgres::PgPoolOptions;
use tokio::sync::oneshot;

/// Longest any single wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(30);

/// Somewhere logs are opened.
pub trait Store {
    /// A log on this store. For PostgreSQL each is another node on the same
    /// database.
    fn open(&self, retention: Retention) -> impl Future<Output = Arc<dyn RoomLog>>;
}

/// A throwaway SQLite store per log.
pub struct Sqlite;

impl Store for Sqlite {
    async fn open(&self, retention: Retention) -> Arc<dyn RoomLog> {
        Arc::new(
            chat_rooms::SqliteLog::open(
                std::path::Path::new("."),
                chat_rooms::Storage::Memory,
                chat_rooms::Durability::Normal,
                retention,
            )
            .expect("SQLite log opens"),
        )
    }
}

/// A PostgreSQL database of the test's own, dropped with it.
pub struct Pg {
    pub db: chat_test_engines::TempDatabase,
}

impl Pg {
    /// `None` (the test is skipped) without PostgreSQL.
    pub async fn new() -> Option<Self> {
        Some(Self {
            db: chat_test_engines::postgres().await?,
        })
    }

    /// A log on this database with a small pool of its own.
    pub async fn node(&self, retention: Retention) -> PgLog {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&self.db.url)
            .await
            .expect("connects to the test database");
        PgLog::open(pool, retention).await.expect("PgLog opens")
    }
}

impl Store for Pg {
    async fn open(&self, retention: Retention) -> Arc<dyn RoomLog> {
        Arc::new(self.node(retention).await)
    }
}

pub fn message(room: &str, text: &str, client_id: Option<&str>) -> NewMessage {
    NewMessage {
        room: room.into(),
        sender: "alice".into(),
        client_id: client_id.map(Into::into),
        text: text.into(),
    }
}

/// Queues an append and returns where its outcome will arrive.
pub async fn queue(
    log: &dyn RoomLog,
    message: NewMessage,
) -> oneshot::Receiver<Result<Appended, LogError>> {
    let (done, outcome) = oneshot::channel();
    log.append(
        message,
        Box::new(move |r| {
            let _ = done.send(r);
        }),
    )
    .await;
    outcome
}

/// Waits for a queued append's outcome, failing the test if it never comes.
pub async fn outcome(
    pending: oneshot::Receiver<Result<Appended, LogError>>,
) -> Result<Appended, LogError> {
    tokio::time::timeout(WAIT, pending)
        .await
        .expect("the append completes in time")
        .expect("the append is completed, not dropped")
}

/// Appends and waits for the commit.
pub async fn add(log: &dyn RoomLog, room: &str, text: &str, client_id: Option<&str>) -> Appended {
    outcome(queue(log, message(room, text, client_id)).await)
        .await
        .expect("committed")
}

/// Sequence numbers of messages.
pub fn seqs(messages: &[chat_protocol::ChatMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}
