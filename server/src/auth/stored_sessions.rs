//! The single-server [`SessionStore`]: sessions stored in `chat.db`, so that
//! they survive a restart, with a write-through cache of the live ones, so
//! that minting a ticket (`POST /api/ticket`) is a hash and a map lookup with
//! no I/O.

use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::accounts::{Accounts, StoredSession};
use super::session::{SessionError, SessionTable, TokenHash};
use super::stores::{BackendError, SessionStore};
use crate::clock::UnixMillis;

/// Sessions in `chat.db` and, for every live one, in memory.
pub(crate) struct StoredSessions {
    inner: Arc<Inner>,
}

struct Inner {
    db: Accounts,
    /// Every live session in the database, so lookups never touch the disk.
    // std Mutex: held for map operations only, never across an `.await`.
    cache: Mutex<SessionTable>,
    /// Serializes writes, so that the cache and the database apply them in
    /// one order: an issue reads the sessions it ends from the cache, writes
    /// the database, then the cache, and no other write may come between.
    // std Mutex: taken only on blocking-pool threads, never across an `.await`.
    writes: Mutex<()>,
}

impl Inner {
    fn cache(&self) -> MutexGuard<'_, SessionTable> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn writing(&self) -> MutexGuard<'_, ()> {
        self.writes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl StoredSessions {
    /// Loads the sessions of `db` live at `now`, forgetting expired ones.
    pub(crate) async fn load(db: Accounts, now: UnixMillis) -> Result<Self, BackendError> {
        let live = db
            .blocking(move |db| {
                db.delete_expired_sessions(now)?;
                db.live_sessions(now)
            })
            .await?;
        let mut cache = SessionTable::default();
        for session in live {
            cache.insert(session.hash, &session.user, session.expires, &[]);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                cache: Mutex::new(cache),
                writes: Mutex::new(()),
            }),
        })
    }

    /// Runs a write on the blocking pool. A write runs to its end even if the
    /// request that caused it goes away (a task on the blocking pool is not
    /// cancelled when its handle is dropped), so the cache and the database
    /// never disagree over half a write.
    async fn write<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<BackendError> + Send + 'static,
        F: FnOnce(&Inner) -> Result<T, E> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let _writing = inner.writing();
            work(&inner)
        })
        .await
        .map_err(BackendError::from)?
    }
}

#[async_trait]
impl SessionStore for StoredSessions {
    /// Tokens are 256 bits from the OS CSPRNG, hex-encoded.
    async fn issue(
        &self,
        user: &str,
        now: UnixMillis,
        expires: UnixMillis,
    ) -> Result<String, BackendError> {
        let token = super::random_token();
        let session = StoredSession {
            hash: TokenHash::of(&token),
            user: user.to_owned(),
            expires,
        };
        self.write(move |inner| {
            let ended = inner.cache().ended_by_issue(&session.user, now);
            inner.db.insert_session(&session, now, &ended)?;
            inner
                .cache()
                .insert(session.hash, &session.user, session.expires, &ended);
            Ok::<(), BackendError>(())
        })
        .await?;
        Ok(token)
    }

    async fn lookup(&self, token: &str, now: UnixMillis) -> Result<String, SessionError> {
        self.inner.cache().lookup(&TokenHash::of(token), now)
    }

    async fn revoke(&self, token: &str, now: UnixMillis) -> Result<String, SessionError> {
        let hash = TokenHash::of(token);
        // Unknown tokens cost no I/O: whoever sends garbage gets no disk work.
        if let Err(SessionError::Unknown) = self.inner.cache().peek(&hash, now) {
            return Err(SessionError::Unknown);
        }
        self.write(move |inner| {
            let answer = inner.cache().peek(&hash, now);
            if !matches!(answer, Err(SessionError::Unknown)) {
                // The database first: if it fails, the session stays live in
                // both places and the client may retry the logout.
                inner.db.delete_session(&hash).map_err(BackendError::from)?;
                inner.cache().remove(&hash);
            }
            answer
        })
        .await
    }

    async fn revoke_users(&self, users: &[String]) -> Result<usize, BackendError> {
        // The cache holds every live session, so a user without one in it
        // has none to end: the usual poll, with nothing to do, costs a map
        // lookup per disabled user and no I/O.
        if holding(&self.inner, users).is_empty() {
            return Ok(0);
        }
        let users = users.to_vec();
        self.write(move |inner| {
            let mut ended = 0;
            for user in holding(inner, &users) {
                let hashes = inner.cache().sessions_of(&user);
                // The database first, as a logout does: if it fails, the
                // sessions stay in both places and the next poll tries again.
                for hash in &hashes {
                    inner.db.delete_session(hash)?;
                }
                let mut cache = inner.cache();
                for hash in &hashes {
                    ended += usize::from(cache.remove(hash));
                }
            }
            Ok(ended)
        })
        .await
    }

    async fn prune(&self, now: UnixMillis) -> Result<usize, BackendError> {
        self.inner.cache().prune(now);
        // Counted in the database, which also holds the expired sessions
        // that lookups already dropped from the cache.
        self.inner
            .db
            .blocking(move |db| db.delete_expired_sessions(now))
            .await
    }
}

/// Of `users`, those holding sessions in the cache. Read once to skip the
/// blocking pool when none does, and again under the write lock, since an
/// issue may have come in between.
fn holding(inner: &Inner, users: &[String]) -> Vec<String> {
    let cache = inner.cache();
    users
        .iter()
        .filter(|user| !cache.sessions_of(user).is_empty())
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::auth::session::MAX_SESSIONS_PER_USER;

    const TTL: UnixMillis = 3_600_000;

    fn accounts(dir: &Path) -> Accounts {
        let accounts = Accounts::open_in(dir).expect("opens");
        for user in ["alice", "bob"] {
            if accounts.find(user).expect("query").is_none() {
                accounts.create_user(user, "hash").expect("creates");
            }
        }
        accounts
    }

    async fn load(dir: &Path, now: UnixMillis) -> StoredSessions {
        StoredSessions::load(accounts(dir), now)
            .await
            .expect("loads")
    }

    async fn issue(store: &StoredSessions, now: UnixMillis) -> String {
        store.issue("alice", now, now + TTL).await.expect("issues")
    }

    fn rows(dir: &Path) -> usize {
        let conn =
            rusqlite::Connection::open(dir.join(crate::auth::accounts::DB_FILE)).expect("opens");
        conn.query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
            .expect("counts")
    }

    #[tokio::test]
    async fn sessions_and_logouts_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = load(dir.path(), 0).await;
        let kept = issue(&store, 0).await;
        let ended = issue(&store, 0).await;
        assert_eq!(kept.len(), 64);
        assert!(kept.bytes().all(|b| b.is_ascii_hexdigit()), "{kept}");
        assert_eq!(store.lookup(&kept, 1).await.expect("live"), "alice");
        assert_eq!(store.revoke(&ended, 1).await.expect("live"), "alice");
        assert!(matches!(
            store.lookup(&ended, 1).await,
            Err(SessionError::Unknown)
        ));
        assert!(matches!(
            store.revoke(&ended, 1).await,
            Err(SessionError::Unknown)
        ));
        drop(store);

        let store = load(dir.path(), 2).await;
        assert_eq!(store.lookup(&kept, 2).await.expect("restored"), "alice");
        assert!(
            matches!(store.lookup(&ended, 2).await, Err(SessionError::Unknown)),
            "a logout is stored too"
        );
        assert_eq!(rows(dir.path()), 1);
    }

    #[tokio::test]
    async fn expiry_follows_the_given_time_across_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = load(dir.path(), 0).await;
        let early = issue(&store, 0).await;
        let late = issue(&store, 1_000).await;
        assert_eq!(store.lookup(&early, TTL - 1).await.expect("live"), "alice");
        assert!(matches!(
            store.lookup(&early, TTL).await,
            Err(SessionError::Expired)
        ));
        assert!(
            matches!(
                store.revoke(&late, TTL + 1_000).await,
                Err(SessionError::Expired)
            ),
            "revoking an expired session says so"
        );
        let other = issue(&store, 0).await;
        drop(store);

        let store = load(dir.path(), TTL).await;
        assert!(
            matches!(store.lookup(&other, TTL).await, Err(SessionError::Unknown)),
            "not loaded"
        );
        assert_eq!(rows(dir.path()), 0, "expired rows deleted at load");

        let fresh = issue(&store, TTL).await;
        let bob = store.issue("bob", TTL, 3 * TTL).await.expect("issues");
        assert_eq!(store.prune(2 * TTL).await.expect("prunes"), 1);
        assert_eq!(store.lookup(&bob, 2 * TTL).await.expect("live"), "bob");
        assert!(matches!(
            store.lookup(&fresh, 2 * TTL).await,
            Err(SessionError::Unknown)
        ));
        assert_eq!(rows(dir.path()), 1);
    }

    #[tokio::test]
    async fn the_per_user_cap_is_stored_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = load(dir.path(), 0).await;
        let mut tokens = Vec::new();
        for _ in 0..=MAX_SESSIONS_PER_USER {
            tokens.push(issue(&store, 0).await);
        }
        assert!(matches!(
            store.lookup(&tokens[0], 1).await,
            Err(SessionError::Unknown)
        ));
        assert_eq!(rows(dir.path()), MAX_SESSIONS_PER_USER);
        drop(store);

        let store = load(dir.path(), 1).await;
        assert!(matches!(
            store.lookup(&tokens[0], 1).await,
            Err(SessionError::Unknown)
        ));
        for token in &tokens[1..] {
            assert_eq!(store.lookup(token, 1).await.expect("live"), "alice");
        }
        // The order survived: the next issue ends the oldest of those loaded.
        issue(&store, 1).await;
        assert!(matches!(
            store.lookup(&tokens[1], 1).await,
            Err(SessionError::Unknown)
        ));
        assert_eq!(store.lookup(&tokens[2], 1).await.expect("live"), "alice");
    }

    #[tokio::test]
    async fn revoking_users_ends_their_sessions_in_memory_and_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = load(dir.path(), 0).await;
        let users = ["alice".to_owned()];
        assert_eq!(store.revoke_users(&users).await.expect("nothing"), 0);
        let alice = [issue(&store, 0).await, issue(&store, 0).await];
        let bob = store.issue("bob", 0, TTL).await.expect("issues");
        // As `chat-server admin disable` leaves it: the rows already gone,
        // the cache still holding them.
        accounts(dir.path())
            .set_disabled("alice", true)
            .expect("query");
        assert_eq!(store.lookup(&alice[0], 1).await.expect("cached"), "alice");

        assert_eq!(store.revoke_users(&users).await.expect("revokes"), 2);
        for token in &alice {
            assert!(matches!(
                store.lookup(token, 1).await,
                Err(SessionError::Unknown)
            ));
        }
        assert_eq!(store.lookup(&bob, 1).await.expect("kept"), "bob");
        assert_eq!(store.revoke_users(&users).await.expect("idempotent"), 0);
        drop(store);
        let store = load(dir.path(), 1).await;
        assert!(matches!(
            store.lookup(&alice[1], 1).await,
            Err(SessionError::Unknown)
        ));
        assert_eq!(rows(dir.path()), 1);
    }
}
