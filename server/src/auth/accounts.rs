//! `chat.db`, the embedded SQLite database of user accounts and the login
//! sessions they hold.
//!
//! Schema versions (`PRAGMA user_version`): 1 has `users`; 2 adds `sessions`,
//! so that sessions survive a restart; 3 adds `users.disabled_at`, set while
//! an operator has disabled the account (`chat-server admin disable`); 4
//! adds `invites` (`chat-server admin invite`), for `--invite-only`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension};

use super::session::TokenHash;
use super::stores::{Account, AccountError, AccountStore, BackendError, Toggled, UserInfo};
use crate::clock::UnixMillis;

/// Errors of the account database.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// A user with that name (in any letter case) exists already.
    #[error("user name already taken")]
    UsernameTaken,
    /// The invite a registration was to use up is unknown, used or expired.
    #[error("invite unknown, used or expired")]
    InvalidInvite,
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

const SCHEMA_VERSION: i32 = 4;

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
        insert_user(&self.conn(), username, password_hash)
    }

    /// Adds a user as [`Self::create_user`] does, using up `invite` (live at
    /// `now`) in the same transaction: a name already taken leaves the
    /// invite as it was.
    pub(crate) fn create_invited_user(
        &self,
        username: &str,
        password_hash: &str,
        invite: &TokenHash,
        now: UnixMillis,
    ) -> Result<(), AccountsError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let used = tx.execute(
            "DELETE FROM invites WHERE token_hash = ?1 AND expires_at > ?2",
            params![&invite.0[..], now],
        )?;
        if used == 0 {
            return Err(AccountsError::InvalidInvite);
        }
        insert_user(&tx, username, password_hash)?;
        tx.commit()?;
        Ok(())
    }

    /// Stores a new invite, live until `expires`; forgets expired ones.
    pub(crate) fn create_invite(
        &self,
        invite: &TokenHash,
        now: UnixMillis,
        expires: UnixMillis,
    ) -> Result<(), rusqlite::Error> {
        let conn = self.conn();
        conn.execute("DELETE FROM invites WHERE expires_at <= ?1", params![now])?;
        conn.execute(
            "INSERT INTO invites (token_hash, created_at, expires_at) VALUES (?1, ?2, ?3)",
            params![&invite.0[..], now, expires],
        )?;
        Ok(())
    }

    /// Whether `invite` is live at `now`.
    pub(crate) fn invite_live(
        &self,
        invite: &TokenHash,
        now: UnixMillis,
    ) -> Result<bool, rusqlite::Error> {
        self.conn()
            .query_row(
                "SELECT 1 FROM invites WHERE token_hash = ?1 AND expires_at > ?2",
                params![&invite.0[..], now],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
    }

    /// Looks a user up by name, ignoring letter case.
    pub(crate) fn find(&self, username: &str) -> Result<Option<Account>, rusqlite::Error> {
        self.conn()
            .query_row(
                "SELECT username, password_hash, disabled_at IS NOT NULL
                 FROM users WHERE username = ?1",
                params![username],
                |row| {
                    Ok(Account {
                        username: row.get(0)?,
                        password_hash: row.get(1)?,
                        disabled: row.get(2)?,
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

    /// Every account, by name, with its live sessions at `now`.
    pub(crate) fn users(&self, now: UnixMillis) -> Result<Vec<UserInfo>, rusqlite::Error> {
        let conn = self.conn();
        let mut query = conn.prepare(
            "SELECT u.username, u.created_at, u.disabled_at,
                    (SELECT count(*) FROM sessions s WHERE s.user_id = u.id AND s.expires_at > ?1)
             FROM users u ORDER BY u.username",
        )?;
        let rows = query.query_map(params![now], |row| {
            Ok(UserInfo {
                name: row.get(0)?,
                created_at: row.get(1)?,
                disabled_at: row.get(2)?,
                sessions: row.get(3)?,
            })
        })?;
        rows.collect()
    }

    /// Disables (`disabled`) or enables an account; none when there is no
    /// such user. Disabling also deletes the user's sessions, in the same
    /// transaction, so that they are gone from the file at once, whether a
    /// server runs or not; a running server drops them from its memory when
    /// it next polls [`Self::disabled_users`].
    pub(crate) fn set_disabled(
        &self,
        username: &str,
        disabled: bool,
    ) -> Result<Option<Toggled>, rusqlite::Error> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let found: Option<(i64, String, bool)> = tx
            .query_row(
                "SELECT id, username, disabled_at IS NOT NULL FROM users WHERE username = ?1",
                params![username],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()?;
        let Some((id, name, was_disabled)) = found else {
            return Ok(None);
        };
        let mut sessions_ended = 0;
        if disabled {
            if !was_disabled {
                tx.execute(
                    "UPDATE users SET disabled_at = unixepoch() WHERE id = ?1",
                    params![id],
                )?;
            }
            sessions_ended = tx.execute("DELETE FROM sessions WHERE user_id = ?1", params![id])?;
        } else if was_disabled {
            tx.execute(
                "UPDATE users SET disabled_at = NULL WHERE id = ?1",
                params![id],
            )?;
        }
        tx.commit()?;
        Ok(Some(Toggled {
            user: name,
            changed: was_disabled != disabled,
            sessions_ended,
        }))
    }

    /// Replaces a user's password hash; the canonical name, or none when
    /// there is no such user.
    pub(crate) fn set_password_hash(
        &self,
        username: &str,
        password_hash: &str,
    ) -> Result<Option<String>, rusqlite::Error> {
        self.conn()
            .query_row(
                "UPDATE users SET password_hash = ?2 WHERE username = ?1 RETURNING username",
                params![username, password_hash],
                |row| row.get(0),
            )
            .optional()
    }

    /// The names of the disabled accounts. The partial index keeps this a
    /// read of the disabled ones only, however many accounts there are, as a
    /// query every second needs.
    pub(crate) fn disabled_users(&self) -> Result<Vec<String>, rusqlite::Error> {
        let conn = self.conn();
        let mut query = conn.prepare_cached(
            "SELECT username FROM users INDEXED BY users_disabled WHERE disabled_at IS NOT NULL",
        )?;
        let rows = query.query_map([], |row| row.get(0))?;
        rows.collect()
    }

    /// Rows in `users` and `sessions`.
    pub(crate) fn counts(&self) -> Result<(u64, u64), rusqlite::Error> {
        self.conn().query_row(
            "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM sessions)",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
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

/// Inserts a user on `conn` (a connection or a transaction); a name taken
/// in any letter case is [`AccountsError::UsernameTaken`].
fn insert_user(
    conn: &Connection,
    username: &str,
    password_hash: &str,
) -> Result<(), AccountsError> {
    let result = conn.execute(
        "INSERT INTO users (username, password_hash) VALUES (?1, ?2)",
        params![username, password_hash],
    );
    match result {
        Ok(_) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::ConstraintViolation => {
            Err(AccountsError::UsernameTaken)
        }
        Err(e) => Err(e.into()),
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
    if found < 3 {
        // Unix seconds, as `created_at`; NULL while the account is enabled.
        // The partial index holds the disabled accounts only, which servers
        // poll every second.
        tx.execute_batch(
            "ALTER TABLE users ADD COLUMN disabled_at INTEGER;
             CREATE INDEX IF NOT EXISTS users_disabled ON users(disabled_at)
                 WHERE disabled_at IS NOT NULL;",
        )?;
    }
    if found < 4 {
        // One-time invites of `--invite-only`, as SHA-256 of the token (as
        // sessions are kept); times in unix milliseconds.
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS invites (
                 token_hash BLOB PRIMARY KEY,
                 created_at INTEGER NOT NULL,
                 expires_at INTEGER NOT NULL
             );",
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

    async fn create(
        &self,
        username: &str,
        password_hash: &str,
        invite: Option<&TokenHash>,
        now: UnixMillis,
    ) -> Result<(), AccountError> {
        let accounts = self.clone();
        let (name, hash, invite) = (
            username.to_owned(),
            password_hash.to_owned(),
            invite.copied(),
        );
        let created = tokio::task::spawn_blocking(move || match invite {
            Some(invite) => accounts.create_invited_user(&name, &hash, &invite, now),
            None => accounts.create_user(&name, &hash),
        })
        .await
        .map_err(BackendError::from)?;
        match created {
            Ok(()) => Ok(()),
            Err(AccountsError::UsernameTaken) => Err(AccountError::UsernameTaken),
            Err(AccountsError::InvalidInvite) => Err(AccountError::InvalidInvite),
            Err(e) => Err(BackendError::new(e).into()),
        }
    }

    async fn invite_live(&self, invite: &TokenHash, now: UnixMillis) -> Result<bool, BackendError> {
        let invite = *invite;
        self.blocking(move |db| db.invite_live(&invite, now)).await
    }

    async fn disabled_users(&self) -> Result<Vec<String>, BackendError> {
        self.blocking(Accounts::disabled_users).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invite_registers_one_account_and_a_taken_name_keeps_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let accounts = Accounts::open(&dir.path().join("chat.db")).expect("opens");
        let (now, ttl) = (1_000_000, 3_600_000);
        let (_, invite) = crate::auth::new_invite();
        accounts
            .create_invite(&invite, now, now + ttl)
            .expect("stores the invite");
        assert!(accounts.invite_live(&invite, now).expect("reads"));
        assert!(
            !accounts.invite_live(&invite, now + ttl).expect("reads"),
            "expired"
        );
        accounts.create_user("alice", "hash").expect("creates");
        assert!(matches!(
            accounts.create_invited_user("ALICE", "hash", &invite, now),
            Err(AccountsError::UsernameTaken)
        ));
        assert!(
            accounts.invite_live(&invite, now).expect("reads"),
            "kept by the failed registration"
        );
        assert!(matches!(
            accounts.create_invited_user("late", "hash", &invite, now + ttl),
            Err(AccountsError::InvalidInvite)
        ));
        accounts
            .create_invited_user("bob", "hash", &invite, now)
            .expect("registers");
        assert!(matches!(
            accounts.create_invited_user("carol", "hash", &invite, now),
            Err(AccountsError::InvalidInvite)
        ));
        assert!(accounts.find("carol").expect("reads").is_none());
    }

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
        assert_eq!(user_version(&path), SCHEMA_VERSION);
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

        Accounts::open(&path).expect("a current database opens as it is");
        assert_eq!(user_version(&path), SCHEMA_VERSION);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("chat.db");
        Connection::open(&path)
            .expect("opens")
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("sets");
        assert!(matches!(
            Accounts::open(&path),
            Err(AccountsError::NewerSchema { found }) if found == SCHEMA_VERSION + 1
        ));
    }

    #[test]
    fn a_version_2_database_gains_the_disabled_flag_with_every_account_enabled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("chat.db");
        let v2 = Connection::open(&path).expect("opens");
        v2.execute_batch(
            "CREATE TABLE users (
                 id            INTEGER PRIMARY KEY,
                 username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
                 password_hash TEXT NOT NULL,
                 created_at    INTEGER NOT NULL DEFAULT (unixepoch())
             );
             CREATE TABLE sessions (
                 id         INTEGER PRIMARY KEY,
                 token_hash BLOB NOT NULL UNIQUE,
                 user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                 issued_at  INTEGER NOT NULL,
                 expires_at INTEGER NOT NULL
             );
             INSERT INTO users (username, password_hash) VALUES ('Alice', 'hash1');
             PRAGMA user_version = 2;",
        )
        .expect("v2 schema");
        drop(v2);

        let accounts = Accounts::open(&path).expect("migrates");
        assert_eq!(user_version(&path), SCHEMA_VERSION);
        let alice = accounts.find("alice").expect("query").expect("kept");
        assert!(!alice.disabled);
        assert!(accounts.disabled_users().expect("reads").is_empty());
    }

    #[test]
    fn disabling_ends_the_sessions_and_enabling_restores_logins_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let accounts = Accounts::open(&dir.path().join("chat.db")).expect("opens");
        accounts.create_user("Alice", "hash1").expect("creates");
        accounts.create_user("bob", "hash2").expect("creates");
        for (user, token) in [("Alice", "a"), ("bob", "b")] {
            let session = StoredSession {
                hash: TokenHash::of(token),
                user: user.into(),
                expires: 2_000,
            };
            accounts
                .insert_session(&session, 1_000, &[])
                .expect("stores");
        }
        assert!(accounts
            .set_disabled("carol", true)
            .expect("query")
            .is_none());

        let toggled = accounts
            .set_disabled("ALICE", true)
            .expect("query")
            .expect("found");
        assert_eq!(
            (
                toggled.user.as_str(),
                toggled.changed,
                toggled.sessions_ended
            ),
            ("Alice", true, 1)
        );
        assert!(
            accounts
                .find("alice")
                .expect("query")
                .expect("kept")
                .disabled
        );
        assert_eq!(accounts.disabled_users().expect("reads"), ["Alice"]);
        let again = accounts
            .set_disabled("alice", true)
            .expect("query")
            .expect("found");
        assert!(!again.changed, "disabling twice changes nothing");
        let live: Vec<String> = accounts
            .live_sessions(1_500)
            .expect("reads")
            .into_iter()
            .map(|s| s.user)
            .collect();
        assert_eq!(live, ["bob"], "only the disabled user's sessions ended");

        let users = accounts.users(1_500).expect("lists");
        let summary: Vec<_> = users
            .iter()
            .map(|u| (u.name.as_str(), u.disabled_at.is_some(), u.sessions))
            .collect();
        assert_eq!(summary, [("Alice", true, 0), ("bob", false, 1)]);

        let enabled = accounts
            .set_disabled("alice", false)
            .expect("query")
            .expect("found");
        assert!(enabled.changed && enabled.sessions_ended == 0);
        assert!(
            !accounts
                .find("alice")
                .expect("query")
                .expect("kept")
                .disabled
        );
        assert!(accounts.disabled_users().expect("reads").is_empty());

        assert_eq!(
            accounts
                .set_password_hash("ALICE", "hash3")
                .expect("query")
                .as_deref(),
            Some("Alice")
        );
        assert_eq!(
            accounts
                .find("alice")
                .expect("query")
                .expect("kept")
                .password_hash,
            "hash3"
        );
        assert!(accounts
            .set_password_hash("carol", "x")
            .expect("query")
            .is_none());
        assert_eq!(accounts.counts().expect("counts"), (2, 1));
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
