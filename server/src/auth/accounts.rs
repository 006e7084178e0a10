//! `chat.db`, the embedded SQLite database of user accounts and the login
//! sessions they hold.
//!
//! Schema versions (`PRAGMA user_version`): 1 has `users`; 2 adds `sessions`,
//! so that sessions survive a restart.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension};

use super::session::TokenHash;
use super::stores::{Account, AccountError, AccountStore, BackendError};
use crate::clock::UnixMillis;

/// Errors of the account database.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// A user with that name (in any letter case) exists already.
    #[error("user name already taken")]
    UsernameTaken,
    /// The data directory could not be created.
    #[error("cannot create data directory {}: {source}", path.display())]
    Io {
        /// The directory.
        path: std::path::PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The database was written by a newer server, whose schema this one does not know.
    #[error("{DB_FILE} has schema version {found}, newer than this server's {SCHEMA_VERSION}; run a newer chat-server")]
    NewerSchema {
        /// The database's `user_version`.
        found: i32,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
}

/// Handle to the account database. Cheap to clone; calls block, so async code
/// runs them on the blocking pool.
#[derive(Clone)]
pub struct Accounts {
    // One connection behind a std Mutex: account and session writes are rare
    // and short (logins are paced by argon2; ticket minting reads a cache, not
    // this), and no `.await` happens while it is held (callers are on
    // blocking threads).
    conn: Arc<Mutex<Connection>>,
}

const SCHEMA_VERSION: i32 = 2;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "chat.db";

/// A session as stored: the hash of its token, never the token.
pub(crate) struct StoredSession {
    /// SHA-256 of the token.
    pub(crate) hash: TokenHash,
    /// The user's canonical name.
    pub(crate) user: String,
    /// Unix milliseconds.
    pub(crate) expires: UnixMillis,
}

impl Accounts {
    /// Opens the database in `data_dir`, creating the directory if needed.
    pub fn open_in(data_dir: &Path) -> Result<Self, AccountsError> {
        std::fs::create_dir_all(data_dir).map_err(|source| AccountsError::Io {
            path: data_dir.into(),
            source,
        })?;
        Self::open(&data_dir.join(DB_FILE))
    }

    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, AccountsError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Off by default in SQLite; sessions refer to their user.
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a user; the name must already be validated and the password hashed.
    pub fn create_user(&self, username: &str, password_hash: &str) -> Result<(), AccountsError> {
        let result = self.conn().execute(
            "INSERT INTO users (username, password_hash) VALUES (?1, ?2)",
            params![username, password_hash],
        );
        match result {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == ErrorCode::ConstraintViolation =>
            {
                Err(AccountsError::UsernameTaken)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Looks a user up by name, ignoring letter case.
    pub(crate) fn find(&self, username: &str) -> Result<Option<Account>, rusqlite::Error> {
        self.conn()
            .query_row(
                "SELECT username, password_hash FROM users WHERE username = ?1",
                params![username],
                |row| {
                    Ok(Account {
                        username: row.get(0)?,
                        password_hash: row.get(1)?,
                    })
                },
            )
            .optional()
    }

    /// Stores a new session of `session.user`, issued at `now`, and deletes
    /// `ended` (the sessions the per-user cap ends), in one transaction.
    pub(crate) fn insert_session(
        &self,
        session: &StoredSession,
        now: UnixMillis,
        ended: &[TokenHash],
    ) -> Result<(), rusqlite::Error> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut delete = tx.prepare_cached("DELETE FROM sessions WHERE token_hash = ?1")?;
            for hash in ended {
                delete.execute(params![hash.0])?;
            }
        }
        let inserted = tx.execute(
            "INSERT INTO sessions (token_hash, user_id, issued_at, expires_at)
             SELECT ?1, id, ?3, ?4 FROM users WHERE username = ?2",
            params![session.hash.0, session.user, now, session.expires],
        )?;
        if inserted != 1 {
            // No such user: sessions are only issued after finding the account.
            return Err(rusqlite::Error::QueryReturnedNoRows);
        }
        tx.commit()
    }

    /// Deletes a session; whether it was stored.
    pub(crate) fn delete_session(&self, hash: &TokenHash) -> Result<bool, rusqlite::Error> {
        let deleted = self.conn().execute(
            "DELETE FROM sessions WHERE token_hash = ?1",
            params![hash.0],
        )?;
        Ok(deleted > 0)
    }

    /// Deletes sessions expired at `now`; returns how many.
    pub(crate) fn delete_expired_sessions(
        &self,
        now: UnixMillis,
    ) -> Result<usize, rusqlite::Error> {
        self.conn()
            .execute("DELETE FROM sessions WHERE expires_at <= ?1", params![now])
    }

    /// The sessions live at `now`, each user's oldest first.
    pub(crate) fn live_sessions(
        &self,
        now: UnixMillis,
    ) -> Result<Vec<StoredSession>, rusqlite::Error> {
        let conn = self.conn();
        let mut query = conn.prepare(
            "SELECT s.token_hash, u.username, s.expires_at
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.expires_at > ?1
             ORDER BY s.id",
        )?;
        let rows = query.query_map(params![now], |row| {
            Ok(StoredSession {
                hash: TokenHash(row.get(0)?),
                user: row.get(1)?,
                expires: row.get(2)?,
            })
        })?;
        rows.collect()
    }

    /// Runs blocking database work on the blocking pool.
    pub(crate) async fn blocking<T, F>(&self, work: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&Accounts) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let accounts = self.clone();
        Ok(tokio::task::spawn_blocking(move || work(&accounts)).await??)
    }
}

/// Brings the schema from its `user_version` to [`SCHEMA_VERSION`], in one
/// transaction, so a failure leaves the previous version whole.
fn migrate(conn: &mut Connection) -> Result<(), AccountsError> {
    let found: i32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(AccountsError::NewerSchema { found });
    }
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction()?;
    if found < 1 {
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS users (
                 id            INTEGER PRIMARY KEY,
                 username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
                 password_hash TEXT NOT NULL,
                 created_at    INTEGER NOT NULL DEFAULT (unixepoch())
             );",
        )?;
    }
    if found < 2 {
        // `id` orders a user's sessions by issue, the order the per-user cap
        // ends them in. Times are unix milliseconds, as the clock gives them.
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS sessions (
                 id         INTEGER PRIMARY KEY,
                 token_hash BLOB NOT NULL UNIQUE,
                 user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                 issued_at  INTEGER NOT NULL,
                 expires_at INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions(user_id);
             CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions(expires_at);",
        )?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

#[async_trait]
impl AccountStore for Accounts {
    async fn find(&self, username: &str) -> Result<Option<Account>, BackendError> {
        let name = username.to_owned();
        self.blocking(move |db| db.find(&name)).await
    }

    async fn create(&self, username: &str, password_hash: &str) -> Result<(), AccountError> {
        let accounts = self.clone();
        let (name, hash) = (username.to_owned(), password_hash.to_owned());
        let created = tokio::task::spawn_blocking(move || accounts.create_user(&name, &hash))
            .await
            .map_err(BackendError::from)?;
        match created {
            Ok(()) => Ok(()),
            Err(AccountsError::UsernameTaken) => Err(AccountError::UsernameTaken),
            Err(e) => Err(BackendError::new(e).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_unique_ignoring_case_and_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("chat.db");
        let accounts = Accounts::open(&path).expect("opens");
        accounts.create_user("Alice", "hash1").expect("creates");
        assert!(matches!(
            accounts.create_user("alice", "hash2"),
            Err(AccountsError::UsernameTaken)
        ));
        drop(accounts);

        let accounts = Accounts::open(&path).expect("reopens");
        let found = accounts.find("ALICE").expect("query").expect("exists");
        assert_eq!(found.username, "Alice");
        assert_eq!(found.password_hash, "hash1");
        assert!(accounts.find("bob").expect("query").is_none());
    }

    fn user_version(path: &Path) -> i32 {
        Connection::open(path)
            .expect("opens")
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("user_version")
    }

    #[test]
    fn a_version_1_database_gains_sessions_and_keeps_its_users() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("chat.db");
        // Exactly what the version-1 opener created.
        let v1 = Connection::open(&path).expect("opens");
        v1.execute_batch(
            "CREATE TABLE users (
                 id            INTEGER PRIMARY KEY,
                 username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
                 password_hash TEXT NOT NULL,
                 created_at    INTEGER NOT NULL DEFAULT (unixepoch())
             );
             INSERT INTO users (username, password_hash) VALUES ('Alice', 'hash1');
             PRAGMA user_version = 1;",
        )
        .expect("v1 schema");
        drop(v1);

        let accounts = Accounts::open(&path).expect("migrates");
        assert_eq!(user_version(&path), 2);
        let alice = accounts.find("alice").expect("query").expect("kept");
        assert_eq!(alice.password_hash, "hash1");
        let session = StoredSession {
            hash: TokenHash::of("token"),
            user: alice.username,
            expires: 2_000,
        };
        accounts
            .insert_session(&session, 1_000, &[])
            .expect("sessions table");
        let live = accounts.live_sessions(1_999).expect("reads");
        assert_eq!(live.len(), 1);
        assert_eq!(
            (live[0].hash, live[0].user.as_str()),
            (session.hash, "Alice")
        );
        assert!(
            accounts.live_sessions(2_000).expect("reads").is_empty(),
            "expired"
        );
        drop(accounts);

        Accounts::open(&path).expect("a version-2 database opens as it is");
        assert_eq!(user_version(&path), 2);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("chat.db");
        Connection::open(&path)
            .expect("opens")
            .pragma_update(None, "user_version", 3)
            .expect("sets");
        assert!(matches!(
            Accounts::open(&path),
            Err(AccountsError::NewerSchema { found: 3 })
        ));
    }

    #[test]
    fn a_session_of_an_unknown_user_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let accounts = Accounts::open(&dir.path().join("chat.db")).expect("opens");
        let session = StoredSession {
            hash: TokenHash::of("token"),
            user: "nobody".into(),
            expires: 2_000,
        };
        assert!(accounts.insert_session(&session, 1_000, &[]).is_err());
    }
}
