//! Session tokens: what a login leaves behind so that each further socket
//! ticket costs a map lookup instead of a password check.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Most live sessions one user may hold; issuing another ends that user's
/// oldest. Every successful login makes a session and nothing else limits
/// successful logins (the throttle counts failures), so without a cap a client
/// that logs in on each reconnect and never logs out would grow the store for a
/// whole session TTL. 32 is more devices and programs than one person runs at
/// once, and small enough that one user can hold only a few KiB.
pub(crate) const MAX_SESSIONS_PER_USER: usize = 32;

/// Why a session token was refused. Clients get one code for all of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SessionError {
    /// Never issued, logged out, or pushed out by newer sessions of its user.
    #[error("session unknown or ended")]
    Unknown,
    /// Issued but older than the session TTL.
    #[error("session expired")]
    Expired,
}

struct Session {
    user: String,
    expires: Instant,
}

#[derive(Default)]
struct Sessions {
    by_token: HashMap<String, Session>,
    /// Each user's tokens, oldest first: the order the per-user cap evicts in.
    by_user: HashMap<String, VecDeque<String>>,
}

impl Sessions {
    /// Removes a session from both maps.
    fn remove(&mut self, token: &str) -> Option<Session> {
        let session = self.by_token.remove(token)?;
        if let Some(tokens) = self.by_user.get_mut(&session.user) {
            tokens.retain(|t| t != token);
            if tokens.is_empty() {
                self.by_user.remove(&session.user);
            }
        }
        Some(session)
    }
}

/// Live sessions. Memory only: a restart ends them all, which costs each
/// client one more password login.
pub(crate) struct SessionStore {
    ttl: Duration,
    // std Mutex: every critical section is map operations, never an `.await`.
    sessions: Mutex<Sessions>,
}

impl SessionStore {
    /// An empty store whose sessions last `ttl`.
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            sessions: Mutex::new(Sessions::default()),
        }
    }

    /// The session lifetime, counted from the login; use does not extend it.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Starts a session for `user` and returns its token: 256 bits from the
    /// OS CSPRNG, hex-encoded. Ends the user's oldest session when they would
    /// otherwise hold more than [`MAX_SESSIONS_PER_USER`].
    pub(crate) fn issue(&self, user: &str) -> String {
        let token = super::random_token();
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let Sessions { by_token, by_user } = &mut *sessions;
        let tokens = by_user.entry(user.to_owned()).or_default();
        // Expired sessions go first, so that they never push out live ones.
        tokens.retain(|t| match by_token.get(t) {
            Some(s) if s.expires > now => true,
            _ => {
                by_token.remove(t);
                false
            }
        });
        let excess = (tokens.len() + 1).saturating_sub(MAX_SESSIONS_PER_USER);
        for oldest in tokens.drain(..excess) {
            by_token.remove(&oldest);
        }
        tokens.push_back(token.clone());
        by_token.insert(
            token.clone(),
            Session {
                user: user.to_owned(),
                expires: now + self.ttl,
            },
        );
        token
    }

    /// The user of a live session. An expired one is forgotten on the way.
    pub(crate) fn lookup(&self, token: &str) -> Result<String, SessionError> {
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        match sessions.by_token.get(token) {
            None => Err(SessionError::Unknown),
            Some(s) if s.expires > now => Ok(s.user.clone()),
            Some(_) => {
                sessions.remove(token);
                Err(SessionError::Expired)
            }
        }
    }

    /// Ends a session, returning its user. An expired one is forgotten too,
    /// but reported as expired.
    pub(crate) fn revoke(&self, token: &str) -> Result<String, SessionError> {
        let removed = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token);
        match removed {
            None => Err(SessionError::Unknown),
            Some(s) if s.expires <= Instant::now() => Err(SessionError::Expired),
            Some(s) => Ok(s.user),
        }
    }

    /// Forgets every expired session; returns how many.
    pub(crate) fn prune(&self) -> usize {
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let Sessions { by_token, by_user } = &mut *sessions;
        let before = by_token.len();
        by_token.retain(|_, s| s.expires > now);
        by_user.retain(|_, tokens| {
            tokens.retain(|t| by_token.contains_key(t));
            !tokens.is_empty()
        });
        before - by_token.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(3600);

    /// Sessions held in each map, to check that none leaks.
    fn held(store: &SessionStore) -> (usize, usize) {
        let sessions = store.sessions.lock().expect("lock");
        let indexed = sessions.by_user.values().map(VecDeque::len).sum();
        (sessions.by_token.len(), indexed)
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_name_their_user_until_revoked() {
        let store = SessionStore::new(TTL);
        let a = store.issue("alice");
        let b = store.issue("alice");
        let c = store.issue("bob");
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, b);

        assert_eq!(store.lookup(&a), Ok("alice".to_owned()));
        assert_eq!(store.lookup(&a), Ok("alice".to_owned()), "not one-time");
        assert_eq!(store.lookup(&c), Ok("bob".to_owned()));
        assert_eq!(store.lookup("made-up"), Err(SessionError::Unknown));

        assert_eq!(store.revoke(&a), Ok("alice".to_owned()));
        assert_eq!(store.lookup(&a), Err(SessionError::Unknown));
        assert_eq!(store.revoke(&a), Err(SessionError::Unknown));
        assert_eq!(store.lookup(&b), Ok("alice".to_owned()), "others stay");
        assert_eq!(held(&store), (2, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_expire_and_are_forgotten() {
        let store = SessionStore::new(TTL);
        let a = store.issue("alice");
        let b = store.issue("alice");
        tokio::time::advance(TTL - Duration::from_secs(1)).await;
        let c = store.issue("bob");
        assert_eq!(store.lookup(&a), Ok("alice".to_owned()), "not yet");
        tokio::time::advance(Duration::from_secs(1)).await;

        assert_eq!(store.lookup(&a), Err(SessionError::Expired));
        assert_eq!(store.lookup(&a), Err(SessionError::Unknown), "forgotten");
        assert_eq!(store.revoke(&b), Err(SessionError::Expired));
        assert_eq!(held(&store), (1, 1));

        let d = store.issue("dave");
        tokio::time::advance(TTL).await;
        assert_eq!(store.prune(), 2, "bob's and dave's");
        assert_eq!(held(&store), (0, 0));
        assert_eq!(store.lookup(&c), Err(SessionError::Unknown));
        assert_eq!(store.lookup(&d), Err(SessionError::Unknown));
    }

    #[tokio::test(start_paused = true)]
    async fn a_user_past_the_cap_loses_their_oldest_session() {
        let store = SessionStore::new(TTL);
        let bob = store.issue("bob");
        let tokens: Vec<String> = (0..=MAX_SESSIONS_PER_USER)
            .map(|_| store.issue("alice"))
            .collect();
        assert_eq!(tokens.len(), 33);

        assert_eq!(store.lookup(&tokens[0]), Err(SessionError::Unknown));
        for token in &tokens[1..] {
            assert_eq!(store.lookup(token), Ok("alice".to_owned()));
        }
        assert_eq!(store.lookup(&bob), Ok("bob".to_owned()), "per user");
        assert_eq!(held(&store), (33, 33));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_sessions_do_not_count_against_the_cap() {
        let store = SessionStore::new(TTL);
        let old = store.issue("alice");
        tokio::time::advance(TTL).await;
        let live: Vec<String> = (0..MAX_SESSIONS_PER_USER)
            .map(|_| store.issue("alice"))
            .collect();
        assert_eq!(held(&store), (32, 32), "the expired one made room");
        assert_eq!(store.lookup(&old), Err(SessionError::Unknown));
        for token in &live {
            assert_eq!(store.lookup(token), Ok("alice".to_owned()));
        }
    }
}
