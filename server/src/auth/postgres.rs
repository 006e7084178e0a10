//! Accounts and sessions in PostgreSQL, shared by the servers of a cluster:
//! [`PgAccounts`] and [`PgSessions`], with the rules of `chat.db`'s (user
//! names unique ignoring case, sessions stored as token hashes, a per-user
//! cap) kept by the database itself, so that they hold across servers.
//!
//! Unlike the single-server store, sessions have no cache in the process: a
//! logout on one server must refuse the session on every other at once, and a
//! lookup is one primary-key read.

use async_trait::async_trait;
use sqlx::migrate::MigrateError;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use super::session::{SessionError, TokenHash, MAX_SESSIONS_PER_USER};
use super::stores::{
    Account, AccountError, AccountStore, BackendError, SessionStore, Toggled, UserInfo,
    LOGOUT_MEMORY,
};
use crate::clock::UnixMillis;

/// The table that records which of `migrations/` ran. Not sqlx's default
/// `_sqlx_migrations`: the room log keeps its own migrations in the same
/// database, and each migrator must see only its own versions.
pub(crate) const MIGRATIONS_TABLE: &str = "_chat_auth_migrations";

/// Brings the accounts and sessions schema up to date. Safe to run from
/// several servers at once: sqlx holds an advisory lock on the database while
/// it migrates.
pub(crate) async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator.run(pool).await
}

/// A session was issued to a user the database does not know; sessions are
/// only issued after finding the account, so this is a broken invariant.
#[derive(Debug, thiserror::Error)]
#[error("no account {0:?} to issue a session to")]
struct NoSuchUser(String);

/// User accounts in PostgreSQL. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub(crate) struct PgAccounts {
    pool: PgPool,
}

impl PgAccounts {
    /// Accounts in `pool`'s database, whose schema [`migrate`] made.
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl AccountStore for PgAccounts {
    async fn find(&self, username: &str) -> Result<Option<Account>, BackendError> {
        let row = sqlx::query(
            "SELECT username, password_hash, disabled_at IS NOT NULL
             FROM users WHERE lower(username) = lower($1)",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(Account {
                username: row.try_get(0)?,
                password_hash: row.try_get(1)?,
                disabled: row.try_get(2)?,
            })
        })
        .transpose()
    }

    async fn disabled_users(&self) -> Result<Vec<String>, BackendError> {
        // Answered from the partial index `users_disabled`.
        Ok(
            sqlx::query_scalar("SELECT username FROM users WHERE disabled_at IS NOT NULL")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn create(
        &self,
        username: &str,
        password_hash: &str,
        invite: Option<&TokenHash>,
        now: UnixMillis,
    ) -> Result<(), AccountError> {
        let mut tx = self.pool.begin().await.map_err(BackendError::from)?;
        if let Some(invite) = invite {
            // The row lock makes a second registration with this invite wait
            // for the first, then find it gone.
            let used = sqlx::query("DELETE FROM invites WHERE token_hash = $1 AND expires_at > $2")
                .bind(&invite.0[..])
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(BackendError::from)?;
            if used.rows_affected() == 0 {
                return Err(AccountError::InvalidInvite);
            }
        }
        // The unique index decides, in one statement: of two servers inserting
        // one name at once, the second waits for the first and then inserts
        // nothing (and its transaction gives the invite back).
        let inserted = sqlx::query(
            "INSERT INTO users (username, password_hash) VALUES ($1, $2)
             ON CONFLICT ((lower(username))) DO NOTHING",
        )
        .bind(username)
        .bind(password_hash)
        .execute(&mut *tx)
        .await
        .map_err(BackendError::from)?;
        if inserted.rows_affected() == 0 {
            return Err(AccountError::UsernameTaken);
        }
        tx.commit().await.map_err(BackendError::from)?;
        Ok(())
    }

    async fn invite_live(&self, invite: &TokenHash, now: UnixMillis) -> Result<bool, BackendError> {
        Ok(sqlx::query_scalar::<_, i32>(
            "SELECT 1 FROM invites WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(&invite.0[..])
        .bind(now)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }
}

impl PgAccounts {
    /// Stores a new invite, live until `expires`; forgets expired ones.
    pub(crate) async fn create_invite(
        &self,
        invite: &TokenHash,
        now: UnixMillis,
        expires: UnixMillis,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM invites WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query("INSERT INTO invites (token_hash, created_at, expires_at) VALUES ($1, $2, $3)")
            .bind(&invite.0[..])
            .bind(now)
            .bind(expires)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every account, by name, with its live sessions at `now`.
    pub(crate) async fn users(&self, now: UnixMillis) -> Result<Vec<UserInfo>, sqlx::Error> {
        let rows = sqlx::query_as::<_, (String, i64, Option<i64>, i64)>(
            "SELECT u.username,
                    extract(epoch FROM u.created_at)::bigint,
                    extract(epoch FROM u.disabled_at)::bigint,
                    (SELECT count(*) FROM sessions s WHERE s.user_id = u.id AND s.expires_at > $1)
             FROM users u ORDER BY lower(u.username)",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(name, created_at, disabled_at, sessions)| UserInfo {
                name,
                created_at,
                disabled_at,
                sessions: u64::try_from(sessions).unwrap_or(0),
            })
            .collect())
    }

    /// Disables (`disabled`) or enables an account; none when there is no
    /// such user. Disabling also deletes the user's sessions in the same
    /// transaction: every node's next lookup refuses them at once.
    pub(crate) async fn set_disabled(
        &self,
        username: &str,
        disabled: bool,
    ) -> Result<Option<Toggled>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let found: Option<(i64, String, bool)> = sqlx::query_as(
            "SELECT id, username, disabled_at IS NOT NULL FROM users
             WHERE lower(username) = lower($1) FOR UPDATE",
        )
        .bind(username)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((id, name, was_disabled)) = found else {
            return Ok(None);
        };
        let mut sessions_ended = 0;
        if disabled {
            if !was_disabled {
                sqlx::query("UPDATE users SET disabled_at = now() WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            let deleted = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sessions_ended = usize::try_from(deleted.rows_affected()).unwrap_or(usize::MAX);
        } else if was_disabled {
            sqlx::query("UPDATE users SET disabled_at = NULL WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Some(Toggled {
            user: name,
            changed: was_disabled != disabled,
            sessions_ended,
        }))
    }

    /// Replaces a user's password hash; the canonical name, or none when
    /// there is no such user.
    pub(crate) async fn set_password_hash(
        &self,
        username: &str,
        password_hash: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar(
            "UPDATE users SET password_hash = $2 WHERE lower(username) = lower($1)
             RETURNING username",
        )
        .bind(username)
        .bind(password_hash)
        .fetch_optional(&self.pool)
        .await
    }

    /// Rows in `users` and `sessions`.
    pub(crate) async fn counts(&self) -> Result<(u64, u64), sqlx::Error> {
        let (users, sessions): (i64, i64) =
            sqlx::query_as("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM sessions)")
                .fetch_one(&self.pool)
                .await?;
        Ok((
            u64::try_from(users).unwrap_or(0),
            u64::try_from(sessions).unwrap_or(0),
        ))
    }
}

/// Login sessions in PostgreSQL, stored as the SHA-256 of their token.
/// Cheap to clone (the pool is shared).
#[derive(Clone)]
pub(crate) struct PgSessions {
    pool: PgPool,
}

impl PgSessions {
    /// Sessions in `pool`'s database, whose schema [`migrate`] made.
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// How a stored session answers at `now`.
/// The answer for a session row of (user name, expiry), or none.
fn answer(row: Option<PgRow>, now: UnixMillis) -> Result<String, SessionError> {
    let Some(row) = row else {
        return Err(SessionError::Unknown);
    };
    let user: String = row.try_get(0).map_err(BackendError::from)?;
    let expires: i64 = row.try_get(1).map_err(BackendError::from)?;
    if expires > now {
        Ok(user)
    } else {
        Err(SessionError::Expired)
    }
}

#[async_trait]
impl SessionStore for PgSessions {
    /// Tokens are 256 bits from the OS CSPRNG, hex-encoded.
    async fn issue(
        &self,
        user: &str,
        now: UnixMillis,
        expires: UnixMillis,
    ) -> Result<String, BackendError> {
        let token = super::random_token();
        let hash = TokenHash::of(&token);
        // A dropped transaction rolls back, so a request that goes away
        // half-way leaves nothing behind.
        let mut tx = self.pool.begin().await?;
        // Locking the user's row makes the issues of one user take turns
        // across servers; without it, two issues could each count 31 live
        // sessions and together leave 33. Statements after the lock see what
        // the previous holder committed (each statement of a read-committed
        // transaction takes a new snapshot), which is why the lock is a
        // statement of its own.
        let user_id: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM users WHERE lower(username) = lower($1) FOR NO KEY UPDATE",
        )
        .bind(user)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(user_id) = user_id else {
            return Err(BackendError::new(NoSuchUser(user.to_owned())));
        };
        // The user's expired sessions go (they never count against the cap),
        // and so do the live ones beyond the newest MAX - 1, to make room.
        let keep = i64::try_from(MAX_SESSIONS_PER_USER - 1).unwrap_or(i64::MAX);
        sqlx::query(
            "DELETE FROM sessions
             WHERE user_id = $1
               AND (expires_at <= $2
                    OR token_hash IN (SELECT token_hash FROM sessions
                                      WHERE user_id = $1 AND expires_at > $2
                                      ORDER BY seq DESC OFFSET $3))",
        )
        .bind(user_id)
        .bind(now)
        .bind(keep)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, issued_at, expires_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&hash.0[..])
        .bind(user_id)
        .bind(now)
        .bind(expires)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(token)
    }

    async fn lookup(&self, token: &str, now: UnixMillis) -> Result<String, SessionError> {
        let hash = TokenHash::of(token);
        // A disabled user's session is refused here at once, on every node,
        // even one a login racing the disable issued after it (the poll of
        // disabled accounts deletes it within a second).
        let row = sqlx::query(
            "SELECT u.username, s.expires_at
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = $1 AND u.disabled_at IS NULL",
        )
        .bind(&hash.0[..])
        .fetch_optional(&self.pool)
        .await
        .map_err(BackendError::from)?;
        // An expired row stays until pruned, answering "expired" meanwhile:
        // deleting it here would make every refused lookup a write.
        answer(row, now)
    }

    async fn revoke(&self, token: &str, now: UnixMillis) -> Result<String, SessionError> {
        let hash = TokenHash::of(token);
        // One statement: of two logouts of one session, on any servers, one
        // deletes the row and the other finds none; the one that deletes it
        // notes it for every node's sockets.
        let row = sqlx::query(
            "WITH gone AS (
                 DELETE FROM sessions s USING users u
                 WHERE s.token_hash = $1 AND u.id = s.user_id
                 RETURNING s.token_hash, u.username, s.expires_at
             ), noted AS (
                 INSERT INTO ended_sessions (token_hash, ended_at)
                 SELECT token_hash, (extract(epoch FROM clock_timestamp()) * 1000)::bigint
                 FROM gone
                 ON CONFLICT (token_hash) DO UPDATE SET ended_at = EXCLUDED.ended_at
             )
             SELECT username, expires_at FROM gone",
        )
        .bind(&hash.0[..])
        .fetch_optional(&self.pool)
        .await
        .map_err(BackendError::from)?;
        answer(row, now)
    }

    async fn logged_out(&self) -> Result<Vec<String>, BackendError> {
        // Every node forgets what is older than the memory, by the
        // database's clock; a row read twice only closes nothing twice.
        let memory = i64::try_from(LOGOUT_MEMORY.as_millis()).unwrap_or(i64::MAX);
        sqlx::query(
            "DELETE FROM ended_sessions
             WHERE ended_at < (extract(epoch FROM clock_timestamp()) * 1000)::bigint - $1",
        )
        .bind(memory)
        .execute(&self.pool)
        .await?;
        let hashes: Vec<Vec<u8>> = sqlx::query_scalar("SELECT token_hash FROM ended_sessions")
            .fetch_all(&self.pool)
            .await?;
        Ok(hashes
            .iter()
            .filter_map(|hash| <[u8; 32]>::try_from(hash.as_slice()).ok())
            .map(|hash| TokenHash(hash).hex())
            .collect())
    }

    async fn revoke_users(&self, users: &[String]) -> Result<usize, BackendError> {
        if users.is_empty() {
            return Ok(0);
        }
        // One statement for them all, through the index on lower(username)
        // and then sessions_by_user: a few index reads per disabled user.
        let lowered: Vec<String> = users.iter().map(|u| u.to_lowercase()).collect();
        let deleted = sqlx::query(
            "DELETE FROM sessions
             WHERE user_id IN (SELECT id FROM users WHERE lower(username) = ANY($1))",
        )
        .bind(lowered)
        .execute(&self.pool)
        .await?;
        Ok(usize::try_from(deleted.rows_affected()).unwrap_or(usize::MAX))
    }

    async fn prune(&self, now: UnixMillis) -> Result<usize, BackendError> {
        let deleted = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(usize::try_from(deleted.rows_affected()).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chat_test_engines::TempDatabase;
    use sqlx::postgres::PgPoolOptions;

    use super::*;

    const TTL: UnixMillis = 3_600_000;

    async fn pool(db: &TempDatabase) -> PgPool {
        PgPoolOptions::new()
            .max_connections(4)
            .connect(&db.url)
            .await
            .expect("connects")
    }

    /// Two servers' pools on one database, migrated by both at once, as
    /// nodes starting together do.
    async fn two_nodes(db: &TempDatabase) -> (PgPool, PgPool) {
        let (a, b) = (pool(db).await, pool(db).await);
        let (ra, rb) = tokio::join!(migrate(&a), migrate(&b));
        ra.expect("migrates on a");
        rb.expect("migrates on b");
        (a, b)
    }

    /// Both nodes' session stores, with alice and bob registered.
    async fn two_session_stores(db: &TempDatabase) -> (PgSessions, PgSessions, PgPool) {
        let (a, b) = two_nodes(db).await;
        let accounts = PgAccounts::new(a.clone());
        for user in ["alice", "bob"] {
            accounts
                .create(user, "hash", None, 0)
                .await
                .expect("creates");
        }
        (PgSessions::new(a.clone()), PgSessions::new(b), a)
    }

    /// Sixteen account creations at once, `create(node, i)` on the two
    /// nodes in turn; their outcomes.
    async fn race<F, Fut>(nodes: &[Arc<PgAccounts>; 2], create: F) -> Vec<Result<(), AccountError>>
    where
        F: Fn(Arc<PgAccounts>, usize) -> Fut,
        Fut: std::future::Future<Output = Result<(), AccountError>> + Send + 'static,
    {
        let tasks: Vec<_> = (0..16)
            .map(|i| tokio::spawn(create(nodes[i % 2].clone(), i)))
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.expect("task"));
        }
        outcomes
    }

    /// How many `outcomes` won and how many lost as `lost` says; any other
    /// error fails the test.
    fn winners(
        outcomes: Vec<Result<(), AccountError>>,
        lost: impl Fn(&AccountError) -> bool,
    ) -> (usize, usize) {
        let (mut won, mut lost_count) = (0, 0);
        for outcome in outcomes {
            match outcome {
                Ok(()) => won += 1,
                Err(e) if lost(&e) => lost_count += 1,
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        (won, lost_count)
    }

    async fn rows(pool: &PgPool, user: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE u.username = $1",
        )
        .bind(user)
        .fetch_one(pool)
        .await
        .expect("counts")
    }

    #[tokio::test]
    async fn migrations_run_once_in_their_own_table() {
        let Some(db) = chat_test_engines::postgres().await else {
            return;
        };
        let (a, b) = two_nodes(&db).await;
        migrate(&b).await.expect("runs again as a no-op");
        let applied: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {MIGRATIONS_TABLE}"
        )))
        .fetch_one(&a)
        .await
        .expect("own table");
        assert_eq!(
            applied,
            i64::try_from(sqlx::migrate!("./migrations").iter().count()).expect("few")
        );
        let default_table: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
                .fetch_one(&a)
                .await
                .expect("query");
        assert_eq!(
            default_table, None,
            "sqlx's default table is the room log's"
        );
    }

    #[tokio::test]
    async fn user_names_are_unique_ignoring_case_across_nodes() {
        let Some(db) = chat_test_engines::postgres().await else {
            return;
        };
        let (a, b) = two_nodes(&db).await;
        let (a, b) = (PgAccounts::new(a), PgAccounts::new(b));
        a.create("Alice", "hash1", None, 0).await.expect("creates");
        assert!(matches!(
            b.create("aLICE", "hash2", None, 0).await,
            Err(AccountError::UsernameTaken)
        ));
        let found = b.find("ALICE").await.expect("query").expect("exists");
        assert_eq!(
            (found.username.as_str(), found.password_hash.as_str()),
            ("Alice", "hash1")
        );
        assert!(a.find("bob").await.expect("query").is_none());
    }

    /// `--invite-only` across nodes: one invite, sixteen registrations of
    /// different names at once on two nodes, one account.
    #[tokio::test]
    async fn an_invite_registers_one_account_across_nodes() {
        let Some(db) = chat_test_engines::postgres().await else {
            return;
        };
        let (a, b) = two_nodes(&db).await;
        let nodes = [
            Arc::new(PgAccounts::new(a.clone())),
            Arc::new(PgAccounts::new(b)),
        ];
        let now = 1_000_000;
        let (_, invite) = crate::auth::new_invite();
        nodes[0]
            .create_invite(&invite, now, now + TTL)
            .await
            .expect("stores the invite");
        assert!(nodes[1].invite_live(&invite, now).await.expect("reads"));
        let outcomes = race(&nodes, move |node, i| async move {
            node.create(&format!("user{i}"), "hash", Some(&invite), now)
                .await
        })
        .await;
        assert_eq!(
            winners(outcomes, |e| matches!(e, AccountError::InvalidInvite)),
            (1, 15)
        );
        assert!(
            !nodes[1].invite_live(&invite, now).await.expect("reads"),
            "used up"
        );

        // A name already taken leaves the invite as it was; an expired one
        // registers no one.
        let (_, second) = crate::auth::new_invite();
        nodes[1]
            .create_invite(&second, now, now + TTL)
            .await
            .expect("stores");
        let taken: String = sqlx::query_scalar("SELECT username FROM users LIMIT 1")
            .fetch_one(&a)
            .await
            .expect("the winner");
        assert!(matches!(
            nodes[0].create(&taken, "hash", Some(&second), now).await,
            Err(AccountError::UsernameTaken)
        ));
        assert!(matches!(
            nodes[0]
                .create("late", "hash", Some(&second), now + TTL)
                .await,
            Err(AccountError::InvalidInvite)
        ));
        nodes[0]
            .create("fresh", "hash", Some(&second), now + 1)
            .await
            .expect("the invite was kept");
    }

    #[tokio::test]
    async fn concurrent_registrations_of_one_name_have_one_winner() {
        let Some(db) = chat_test_engines::postgres().await else {
            return;
        };
        let (a, b) = two_nodes(&db).await;
        let nodes = [
            Arc::new(PgAccounts::new(a.clone())),
            Arc::new(PgAccounts::new(b)),
        ];
        let names = ["Carol", "carol", "CAROL", "cArOl"];
        let outcomes = race(&nodes, move |node, i| async move {
            node.create(names[i % names.len()], "hash", None, 0).await
        })
        .await;
        assert_eq!(
            winners(outcomes, |e| matches!(e, AccountError::UsernameTaken)),
            (1, 15)
        );
        let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&a)
            .await
            .expect("counts");
        assert_eq!(users, 1);
    }

    #[tokio::test]
    async fn sessions_are_shared_and_a_logout_ends_them_everywhere() {
        let Some(db) = chat_test_engines::postgres().await else {
            return;
        };
        let (a, b, pool) = two_session_stores(&db).await;
        let token = a.issue("alice", 0, TTL).await.expect("issues");
        let other = a.issue("alice", 0, TTL).await.expect("issues");
        assert_eq!(token.len(), 64);
        assert_eq!(b.lookup(&token, 1).await.expect("live on b"), "alice");
        assert!(matches!(
            b.lookup("made-up", 1).await,
            Err(SessionError::Unknown)
        ));

        // Only the hash is stored.
        let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT token_hash FROM sessions")
            .fetch_all(&pool)
            .await
            .expect("reads");
        assert!(stored.contains(&TokenHash::of(&token).0.to_vec()));
        assert!(stored.iter().all(|h| h.len() == 32));

        assert_eq!(b.revoke(&token, 1).await.expect("revokes on b"), "alice");
        assert!(
            matches!(a.lookup(&token, 1).await, Err(SessionError::Unknown)),
            "refused on a at once"
        );
        assert!(matches!(
            a.revoke(&token, 1).await,
            Err(SessionError::Unknown)
        ));
        assert_eq!(a.lookup(&other, 1).await.expect("others stay"), "alice");
    }

    #[tokio::test]
    async fn sessions_expire_by_the_callers_time() {
        let Some(db) = chat_test_engines::postgres().await else {
            return;
        };
        let (a, b, pool) = two_session_stores(&db).await;
        let early = a.issue("alice", 0, TTL).await.expect("issues");
        let late = a.issue("alice", 1_000, 1_000 + TTL).await.expect("issues");
        let bob = a.issue("bob", 0, 3 * TTL).await.expect("issues");
        assert_eq!(b.lookup(&early, TTL - 1).await.expect("live"), "alice");
        assert!(matches!(
            b.lookup(&early, TTL).await,
            Err(SessionError::Expired)
        ));
        assert!(
            matches!(
                b.revoke(&late, TTL + 1_000).await,
                Err(SessionError::Expired)
            ),
            "revoking an expired session says so"
        );
        assert!(
            matches!(a.lookup(&late, 0).await, Err(SessionError::Unknown)),
            "and ends it"
        );

        assert_eq!(a.prune(2 * TTL).await.expect("prunes"), 1, "early");
        assert!(matches!(
            b.lookup(&early, 0).await,
            Err(SessionError::Unknown)
        ));
        assert_eq!(b.lookup(&bob, 2 * TTL).await.expect("live"), "bob");
        assert_eq!(rows(&pool, "alice").await, 0);
    }

    #[tokio::test]
    async fn the_per_user_cap_ends_the_oldest_across_nodes() {
        let Some(db) = chat_test_engines::postgres().await else {
            return;
        };
        let (a, b, pool) = two_session_stores(&db).await;
        let bob = a.issue("bob", 0, TTL).await.expect("issues");
        let mut tokens = Vec::new();
        for i in 0..=MAX_SESSIONS_PER_USER {
            let node = if i % 2 == 0 { &a } else { &b };
            tokens.push(node.issue("alice", 0, TTL).await.expect("issues"));
        }
        assert!(matches!(
            a.lookup(&tokens[0], 1).await,
            Err(SessionError::Unknown)
        ));
        for token in &tokens[1..] {
            assert_eq!(b.lookup(token, 1).await.expect("live"), "alice");
        }
        assert_eq!(a.lookup(&bob, 1).await.expect("per user"), "bob");
        assert_eq!(
            rows(&pool, "alice").await,
            i64::try_from(MAX_SESSIONS_PER_USER).expect("small")
        );

        // Expired sessions make room rather than push out live ones.
        let live: Vec<String> = {
            let mut live = Vec::new();
            for _ in 0..MAX_SESSIONS_PER_USER {
                live.push(b.issue("alice", TTL, 2 * TTL).await.expect("issues"));
            }
            live
        };
        for token in &live {
            assert_eq!(a.lookup(token, TTL).await.expect("live"), "alice");
        }
        assert_eq!(
            rows(&pool, "alice").await,
            i64::try_from(MAX_SESSIONS_PER_USER).expect("small")
        );
    }

    #[tokio::test]
    async fn concurrent_issues_never_exceed_the_cap() {
        let Some(db) = chat_test_engines::postgres().await else {
            return;
        };
        let (a, b, pool) = two_session_stores(&db).await;
        let nodes = [Arc::new(a), Arc::new(b)];
        let tasks: Vec<_> = (0..3 * MAX_SESSIONS_PER_USER)
            .map(|i| {
                let node = nodes[i % 2].clone();
                tokio::spawn(async move { node.issue("alice", 0, TTL).await })
            })
            .collect();
        let mut tokens = Vec::new();
        for task in tasks {
            tokens.push(task.await.expect("task").expect("issues"));
        }
        assert_eq!(
            rows(&pool, "alice").await,
            i64::try_from(MAX_SESSIONS_PER_USER).expect("small")
        );
        let mut live = 0;
        for token in &tokens {
            live += usize::from(nodes[0].lookup(token, 1).await.is_ok());
        }
        assert_eq!(live, MAX_SESSIONS_PER_USER);
    }

    #[tokio::test]
    async fn a_disabled_users_sessions_are_refused_everywhere_and_revoked() {
        let Some(db) = chat_test_engines::postgres().await else {
            return;
        };
        let (a, b, pool) = two_session_stores(&db).await;
        let accounts = PgAccounts::new(pool.clone());
        let before = a.issue("alice", 0, TTL).await.expect("issues");
        let bob = a.issue("bob", 0, TTL).await.expect("issues");
        let toggled = accounts
            .set_disabled("ALICE", true)
            .await
            .expect("query")
            .expect("found");
        assert_eq!(
            (toggled.user.as_str(), toggled.sessions_ended),
            ("alice", 1)
        );
        assert_eq!(accounts.disabled_users().await.expect("reads"), ["alice"]);
        // As a login that checked the password just before the disable.
        let raced = b.issue("alice", 0, TTL).await.expect("issues");
        for token in [&before, &raced] {
            assert!(matches!(
                a.lookup(token, 1).await,
                Err(SessionError::Unknown)
            ));
        }
        assert_eq!(
            rows(&pool, "alice").await,
            1,
            "the raced one, until the poll"
        );
        let disabled = accounts.disabled_users().await.expect("reads");
        assert_eq!(b.revoke_users(&disabled).await.expect("revokes"), 1);
        assert_eq!(rows(&pool, "alice").await, 0);
        assert_eq!(b.revoke_users(&disabled).await.expect("idempotent"), 0);
        assert_eq!(b.lookup(&bob, 1).await.expect("kept"), "bob");

        let enabled = accounts
            .set_disabled("alice", false)
            .await
            .expect("query")
            .expect("found");
        assert!(enabled.changed);
        assert!(accounts.disabled_users().await.expect("reads").is_empty());
        let after = a.issue("alice", 0, TTL).await.expect("issues");
        assert_eq!(b.lookup(&after, 1).await.expect("live"), "alice");
    }

    #[tokio::test]
    async fn a_session_of_an_unknown_user_is_refused() {
        let Some(db) = chat_test_engines::postgres().await else {
            return;
        };
        let (a, _b, pool) = two_session_stores(&db).await;
        assert!(a.issue("nobody", 0, TTL).await.is_err());
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
            .fetch_one(&pool)
            .await
            .expect("counts");
        assert_eq!(total, 0);
    }
}
