//! The embedded SQLite database: user accounts.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, ErrorCode, OptionalExtension};

/// Errors of the account store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
}

/// A stored account.
#[derive(Debug, Clone)]
pub(crate) struct Account {
    /// The user name as registered (logins may use another letter case).
    pub(crate) username: String,
    /// argon2id PHC string.
    pub(crate) password_hash: String,
}

/// Handle to the account database. Cheap to clone; calls block, so async code
/// runs them on the blocking pool.
#[derive(Clone)]
pub struct Accounts {
    // One connection behind a std Mutex: account writes are rare and short, and
    // no `.await` happens while it is held (callers are on blocking threads).
    conn: Arc<Mutex<Connection>>,
}

const SCHEMA_VERSION: i32 = 1;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "chat.db";

impl Accounts {
    /// Opens the database in `data_dir`, creating the directory if needed.
    pub fn open_in(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
            path: data_dir.into(),
            source,
        })?;
        Self::open(&data_dir.join(DB_FILE))
    }

    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version < 1 {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS users (
                     id            INTEGER PRIMARY KEY,
                     username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
                     password_hash TEXT NOT NULL,
                     created_at    INTEGER NOT NULL DEFAULT (unixepoch())
                 );",
            )?;
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a user; the name must already be validated and the password hashed.
    pub fn create_user(&self, username: &str, password_hash: &str) -> Result<(), StoreError> {
        let result = self.conn().execute(
            "INSERT INTO users (username, password_hash) VALUES (?1, ?2)",
            params![username, password_hash],
        );
        match result {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::UsernameTaken)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Looks a user up by name, ignoring letter case.
    pub(crate) fn find(&self, username: &str) -> Result<Option<Account>, StoreError> {
        Ok(self
            .conn()
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
            .optional()?)
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
            Err(StoreError::UsernameTaken)
        ));
        drop(accounts);

        let accounts = Accounts::open(&path).expect("reopens");
        let found = accounts.find("ALICE").expect("query").expect("exists");
        assert_eq!(found.username, "Alice");
        assert_eq!(found.password_hash, "hash1");
        assert!(accounts.find("bob").expect("query").is_none());
    }
}
