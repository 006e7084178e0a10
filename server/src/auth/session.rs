//! Session tokens: what a login leaves behind so that each further socket
//! ticket costs a map lookup instead of a password check. This module keeps
//! the rules (expiry, the per-user cap) in a plain table that knows nothing of
//! storage; `stored_sessions` persists it.

use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

use super::stores::BackendError;
use crate::clock::UnixMillis;

/// Most live sessions one user may hold; issuing another ends that user's
/// oldest. Every successful login makes a session and nothing else limits
/// successful logins (the throttle counts failures), so without a cap a client
/// that logs in on each reconnect and never logs out would grow the store for a
/// whole session TTL. 32 is more devices and programs than one person runs at
/// once, and small enough that one user can hold only a few KiB.
pub(crate) const MAX_SESSIONS_PER_USER: usize = 32;

/// Why a session token was refused. Clients get one code for the refusals.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    /// Never issued, logged out, or pushed out by newer sessions of its user.
    #[error("session unknown or ended")]
    Unknown,
    /// Issued but older than the session TTL.
    #[error("session expired")]
    Expired,
    /// The store failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// The SHA-256 of a session token: what is stored and indexed instead of the
/// token. A token is 256 random bits, so a fast unsalted hash is enough: no
/// dictionary covers it, and a stolen copy of the table opens no session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TokenHash(pub(crate) [u8; 32]);

impl TokenHash {
    pub(crate) fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// The hash in lowercase hex: how it names a ticket's key in Redis, or
    /// a session beside its tickets and sockets.
    pub(crate) fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

struct Session {
    user: String,
    expires: UnixMillis,
}

/// Live sessions by token hash, and each user's in the order they began.
#[derive(Default)]
pub(crate) struct SessionTable {
    by_hash: HashMap<TokenHash, Session>,
    /// Each user's sessions, oldest first: the order the per-user cap ends them in.
    by_user: HashMap<String, VecDeque<TokenHash>>,
}

impl SessionTable {
    /// The sessions that issuing one more to `user` at `now` ends: the user's
    /// expired ones (so that they never push out live ones), then the oldest
    /// live ones beyond [`MAX_SESSIONS_PER_USER`]. Changes nothing, so that a
    /// store can first make the change durable, then [`Self::insert`].
    pub(crate) fn ended_by_issue(&self, user: &str, now: UnixMillis) -> Vec<TokenHash> {
        let Some(hashes) = self.by_user.get(user) else {
            return Vec::new();
        };
        let (live, mut ended): (Vec<TokenHash>, Vec<TokenHash>) = hashes
            .iter()
            .partition(|h| self.by_hash.get(h).is_some_and(|s| s.expires > now));
        let excess = (live.len() + 1).saturating_sub(MAX_SESSIONS_PER_USER);
        ended.extend_from_slice(&live[..excess]);
        ended
    }

    /// Adds a session as the user's newest, after removing `ended` (what
    /// [`Self::ended_by_issue`] named).
    pub(crate) fn insert(
        &mut self,
        hash: TokenHash,
        user: &str,
        expires: UnixMillis,
        ended: &[TokenHash],
    ) {
        for old in ended {
            self.remove(old);
        }
        self.by_user
            .entry(user.to_owned())
            .or_default()
            .push_back(hash);
        self.by_hash.insert(
            hash,
            Session {
                user: user.to_owned(),
                expires,
            },
        );
    }

    /// The user of a live session. An expired one is forgotten on the way.
    pub(crate) fn lookup(
        &mut self,
        hash: &TokenHash,
        now: UnixMillis,
    ) -> Result<String, SessionError> {
        match self.by_hash.get(hash) {
            None => Err(SessionError::Unknown),
            Some(s) if s.expires > now => Ok(s.user.clone()),
            Some(_) => {
                self.remove(hash);
                Err(SessionError::Expired)
            }
        }
    }

    /// What revoking the session at `now` would answer, without revoking it.
    pub(crate) fn peek(&self, hash: &TokenHash, now: UnixMillis) -> Result<String, SessionError> {
        match self.by_hash.get(hash) {
            None => Err(SessionError::Unknown),
            Some(s) if s.expires > now => Ok(s.user.clone()),
            Some(_) => Err(SessionError::Expired),
        }
    }

    /// Removes a session from both maps; whether it was there.
    pub(crate) fn remove(&mut self, hash: &TokenHash) -> bool {
        let Some(session) = self.by_hash.remove(hash) else {
            return false;
        };
        if let Some(hashes) = self.by_user.get_mut(&session.user) {
            hashes.retain(|h| h != hash);
            if hashes.is_empty() {
                self.by_user.remove(&session.user);
            }
        }
        true
    }

    /// Every session of `user` (the name as registered), oldest first.
    pub(crate) fn sessions_of(&self, user: &str) -> Vec<TokenHash> {
        self.by_user
            .get(user)
            .map(|hashes| hashes.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Forgets every expired session; returns how many.
    pub(crate) fn prune(&mut self, now: UnixMillis) -> usize {
        let Self { by_hash, by_user } = self;
        let before = by_hash.len();
        by_hash.retain(|_, s| s.expires > now);
        by_user.retain(|_, hashes| {
            hashes.retain(|h| by_hash.contains_key(h));
            !hashes.is_empty()
        });
        before - by_hash.len()
    }

    /// Sessions held in each map, to check that none leaks.
    #[cfg(test)]
    pub(crate) fn held(&self) -> (usize, usize) {
        let indexed = self.by_user.values().map(VecDeque::len).sum();
        (self.by_hash.len(), indexed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: UnixMillis = 3_600_000;

    /// A table and a counter to name its sessions: hashes of "0", "1", ...
    #[derive(Default)]
    struct Fixture {
        table: SessionTable,
        issued: u32,
    }

    impl Fixture {
        fn issue(&mut self, user: &str, now: UnixMillis) -> TokenHash {
            let hash = TokenHash::of(&self.issued.to_string());
            self.issued += 1;
            let ended = self.table.ended_by_issue(user, now);
            self.table.insert(hash, user, now + TTL, &ended);
            hash
        }

        fn lookup(&mut self, hash: TokenHash, now: UnixMillis) -> Result<String, SessionError> {
            self.table.lookup(&hash, now)
        }
    }

    #[test]
    fn the_hash_is_sha256_of_the_token() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(TokenHash::of("abc").hex(), expected);
    }

    #[test]
    fn sessions_name_their_user_until_removed() {
        let mut f = Fixture::default();
        let a = f.issue("alice", 0);
        let b = f.issue("alice", 0);
        let c = f.issue("bob", 0);
        assert_eq!(f.lookup(a, 1).expect("live"), "alice");
        assert_eq!(f.lookup(a, 1).expect("live"), "alice", "not one-time");
        assert_eq!(f.lookup(c, 1).expect("live"), "bob");
        assert!(matches!(
            f.lookup(TokenHash::of("made-up"), 1),
            Err(SessionError::Unknown)
        ));

        assert_eq!(f.table.peek(&a, 1).expect("live"), "alice");
        assert!(f.table.remove(&a));
        assert!(!f.table.remove(&a));
        assert!(matches!(f.lookup(a, 1), Err(SessionError::Unknown)));
        assert_eq!(f.lookup(b, 1).expect("live"), "alice", "others stay");
        assert_eq!(f.table.held(), (2, 2));
    }

    #[test]
    fn sessions_expire_and_are_forgotten() {
        let mut f = Fixture::default();
        let a = f.issue("alice", 0);
        let b = f.issue("alice", 0);
        let c = f.issue("bob", TTL - 1);
        assert_eq!(f.lookup(a, TTL - 1).expect("live"), "alice", "not yet");

        assert!(matches!(f.lookup(a, TTL), Err(SessionError::Expired)));
        assert!(
            matches!(f.lookup(a, TTL), Err(SessionError::Unknown)),
            "forgotten"
        );
        assert!(matches!(f.table.peek(&b, TTL), Err(SessionError::Expired)));
        assert_eq!(f.table.prune(TTL), 1, "alice's second");
        assert_eq!(f.table.held(), (1, 1));

        let d = f.issue("dave", TTL);
        assert_eq!(f.table.prune(3 * TTL), 2, "bob's and dave's");
        assert_eq!(f.table.held(), (0, 0));
        assert!(matches!(f.lookup(c, 3 * TTL), Err(SessionError::Unknown)));
        assert!(matches!(f.lookup(d, 3 * TTL), Err(SessionError::Unknown)));
    }

    #[test]
    fn a_user_past_the_cap_loses_their_oldest_session() {
        let mut f = Fixture::default();
        let bob = f.issue("bob", 0);
        let hashes: Vec<TokenHash> = (0..=MAX_SESSIONS_PER_USER)
            .map(|_| f.issue("alice", 0))
            .collect();
        assert_eq!(hashes.len(), 33);

        assert!(matches!(f.lookup(hashes[0], 1), Err(SessionError::Unknown)));
        for hash in &hashes[1..] {
            assert_eq!(f.lookup(*hash, 1).expect("live"), "alice");
        }
        assert_eq!(f.lookup(bob, 1).expect("live"), "bob", "per user");
        assert_eq!(f.table.held(), (33, 33));
    }

    #[test]
    fn expired_sessions_do_not_count_against_the_cap() {
        let mut f = Fixture::default();
        let old = f.issue("alice", 0);
        assert_eq!(f.table.ended_by_issue("alice", TTL), [old]);
        let live: Vec<TokenHash> = (0..MAX_SESSIONS_PER_USER)
            .map(|_| f.issue("alice", TTL))
            .collect();
        assert_eq!(f.table.held(), (32, 32), "the expired one made room");
        assert!(matches!(f.lookup(old, TTL), Err(SessionError::Unknown)));
        for hash in &live {
            assert_eq!(f.lookup(*hash, TTL).expect("live"), "alice");
        }
    }
}
