//! The interfaces of the four stores authentication keeps its state in:
//! accounts, sessions, tickets and the counts of failed logins.
//! [`super::Auth`] holds each as an `Arc<dyn ...>`, so a store shared by a
//! cluster (PostgreSQL, Redis) replaces the single-server one without
//! changing a caller.
//!
//! Every method takes the current date (`now`, unix milliseconds) from the
//! caller rather than reading a clock: one clock per server, which tests move.

use std::time::Duration;

use async_trait::async_trait;

use crate::clock::UnixMillis;

use super::session::TokenHash;

pub(crate) use super::session::SessionError;
pub(crate) use super::ticket::TicketError;

/// A store's backend failed: the database, a blocking-pool task, or the network
/// to a shared store. Says nothing about the request, so clients get a 500.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub(crate) struct BackendError(Box<dyn std::error::Error + Send + Sync>);

impl BackendError {
    pub(crate) fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(e))
    }
}

impl From<rusqlite::Error> for BackendError {
    fn from(e: rusqlite::Error) -> Self {
        Self::new(e)
    }
}

/// A shared engine's failure, named, so that a log line says which engine
/// ("Redis: broken pipe") rather than only what went wrong.
#[derive(Debug, thiserror::Error)]
enum EngineError {
    #[error("PostgreSQL: {0}")]
    Postgres(sqlx::Error),
    #[error("Redis: {0}")]
    Redis(redis::RedisError),
}

impl From<sqlx::Error> for BackendError {
    fn from(e: sqlx::Error) -> Self {
        Self::new(EngineError::Postgres(e))
    }
}

impl From<redis::RedisError> for BackendError {
    fn from(e: redis::RedisError) -> Self {
        Self::new(EngineError::Redis(e))
    }
}

impl From<tokio::task::JoinError> for BackendError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::new(e)
    }
}

/// A stored account.
#[derive(Debug, Clone)]
pub(crate) struct Account {
    /// The user name as registered (logins may use another letter case).
    pub(crate) username: String,
    /// argon2id PHC string.
    pub(crate) password_hash: String,
    /// An operator disabled it: a right password gets 403, not a session.
    pub(crate) disabled: bool,
}

/// An account as an operator sees it (`chat-server admin users`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserInfo {
    /// The name as registered.
    pub(crate) name: String,
    /// When it was created, in unix seconds.
    pub(crate) created_at: i64,
    /// Since when it is disabled, in unix seconds; none while enabled.
    pub(crate) disabled_at: Option<i64>,
    /// Its live sessions.
    pub(crate) sessions: u64,
}

/// What disabling or enabling an account did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Toggled {
    /// The name as registered.
    pub(crate) user: String,
    /// Whether it was in the other state before.
    pub(crate) changed: bool,
    /// Sessions deleted from the store (disabling only).
    pub(crate) sessions_ended: usize,
}

/// Why an account was not created.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AccountError {
    /// A user with that name (in any letter case) exists already.
    #[error("user name already taken")]
    UsernameTaken,
    /// The invite it was to use up is unknown, used or expired.
    #[error("invite unknown, used or expired")]
    InvalidInvite,
    /// The store failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// User accounts.
#[async_trait]
pub(crate) trait AccountStore: Send + Sync {
    /// The account named `username`, ignoring letter case.
    async fn find(&self, username: &str) -> Result<Option<Account>, BackendError>;

    /// Adds an account; the name must already be validated and the password
    /// hashed. With `invite`, only while that invite is live at `now`, and
    /// the invite is used up by the same transaction: of two registrations
    /// with one invite, one gets the account; a name already taken leaves
    /// the invite as it was.
    async fn create(
        &self,
        username: &str,
        password_hash: &str,
        invite: Option<&TokenHash>,
        now: UnixMillis,
    ) -> Result<(), AccountError>;

    /// Whether `invite` is live at `now` (a cheap read, so that a made-up
    /// invite costs no password hash).
    async fn invite_live(&self, invite: &TokenHash, now: UnixMillis) -> Result<bool, BackendError>;

    /// The names (as registered) of the accounts an operator disabled.
    /// Servers ask every second, so it must cost a read of those only.
    async fn disabled_users(&self) -> Result<Vec<String>, BackendError>;
}

/// How long a shared store remembers a logout for [`SessionStore::logged_out`]:
/// many polls' worth, so a node that missed some still closes the sockets.
pub(crate) const LOGOUT_MEMORY: Duration = Duration::from_secs(30);

/// Login sessions: bearer tokens that mint tickets without the password.
/// Implementations never keep the token itself where it outlives the
/// process, only a hash of it: a copy of the store is then no key to anyone's
/// account.
#[async_trait]
pub(crate) trait SessionStore: Send + Sync {
    /// Starts a session for `user` lasting until `expires` and returns its
    /// token. Ends the user's oldest live sessions beyond
    /// [`super::session::MAX_SESSIONS_PER_USER`]; expired ones never count.
    async fn issue(
        &self,
        user: &str,
        now: UnixMillis,
        expires: UnixMillis,
    ) -> Result<String, BackendError>;

    /// The user of a live session.
    async fn lookup(&self, token: &str, now: UnixMillis) -> Result<String, SessionError>;

    /// Ends a session, returning its user. An expired one is ended too, but
    /// reported as expired.
    async fn revoke(&self, token: &str, now: UnixMillis) -> Result<String, SessionError>;

    /// Forgets expired sessions; returns how many. Lookups refuse them
    /// regardless: this only gives their space back.
    async fn prune(&self, now: UnixMillis) -> Result<usize, BackendError>;

    /// The sessions logged out on any server in the last [`LOGOUT_MEMORY`],
    /// as session ids ([`TokenHash::hex`]), so that every server closes
    /// their sockets. Servers ask every second. A store of one server alone
    /// has none to tell: that server closed the sockets at the logout.
    async fn logged_out(&self) -> Result<Vec<String>, BackendError> {
        Ok(Vec::new())
    }

    /// Ends every session of each of `users` (names as registered); returns
    /// how many ended. Called every second with the disabled accounts, so
    /// with nothing to end it should cost no I/O, or one statement.
    async fn revoke_users(&self, users: &[String]) -> Result<usize, BackendError>;
}

/// A ticket used up: whose it was, and the session it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Redeemed {
    /// The user the socket is for.
    pub(crate) user: String,
    /// The session that minted it ([`super::session_id`]); `None` only for a
    /// ticket a server issued before tickets recorded their session.
    pub(crate) session: Option<String>,
}

/// One-time tickets, each opening one socket.
#[async_trait]
pub(crate) trait TicketStore: Send + Sync {
    /// Issues a ticket for `user`, minted by the session `session` (its id,
    /// not its token), valid until `expires`.
    async fn issue(
        &self,
        user: &str,
        session: &str,
        now: UnixMillis,
        expires: UnixMillis,
    ) -> Result<String, BackendError>;

    /// Uses up a ticket. Atomic: of two redeems of one ticket, however
    /// concurrent, at most one succeeds.
    async fn redeem(&self, ticket: &str, now: UnixMillis) -> Result<Redeemed, TicketError>;

    /// Forgets the unused tickets `session` minted (it ended); returns how many.
    async fn revoke_session(&self, session: &str) -> Result<usize, BackendError>;

    /// Forgets expired tickets; returns how many.
    async fn prune(&self, now: UnixMillis) -> Result<usize, BackendError>;
}

/// How often a key that keeps filling its window is refused for longer:
/// its `n`th full window (within [`STRIKE_MEMORY`]) lasts 2^(n-1) windows,
/// up to this many.
pub(crate) const MAX_BACKOFF: u32 = 64;

/// How long a backing-off key's full windows are remembered after its last.
pub(crate) const STRIKE_MEMORY: Duration = Duration::from_secs(24 * 3600);

/// One count of [`LoginLimiter::reserve`]: at most `attempts` a window under
/// `key`. A key that backs off has each full window (a strike) last twice
/// the one before, up to [`MAX_BACKOFF`] windows: a guesser is slowed ever
/// more, and only under that key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limit<'a> {
    pub(crate) key: &'a str,
    pub(crate) attempts: u32,
    pub(crate) backoff: bool,
}

impl<'a> Limit<'a> {
    /// `attempts` a window, every window alike.
    pub(crate) fn fixed(key: &'a str, attempts: u32) -> Self {
        Self {
            key,
            attempts,
            backoff: false,
        }
    }

    /// `attempts` a window, each full window longer than the last.
    pub(crate) fn backing_off(key: &'a str, attempts: u32) -> Self {
        Self {
            key,
            attempts,
            backoff: true,
        }
    }
}

/// How many windows a backing-off key's `strikes`th full window lasts.
pub(crate) fn backoff_factor(strikes: u32) -> u32 {
    1u32.checked_shl(strikes.saturating_sub(1))
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF)
}

/// Why a login attempt was not let through to the password check.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LimitError {
    /// A key is at its limit; the window it counts in ends after this long.
    #[error("too many login attempts; retry in {0:?}")]
    Limited(Duration),
    /// The store failed, so the attempts are unknown: the attempt is refused
    /// too (fail closed), since letting it through would allow unlimited
    /// password guessing for as long as the store is down.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Counts of login attempts per key (a user name at an address, an address)
/// in fixed windows of a length the limiter was made with: the first attempt
/// of a key opens its window, and the key's count is forgotten when the window
/// ends. An attempt is counted *before* its password is checked and given back
/// if the password was right, so that parallel guesses cannot all pass one
/// check while the first ones are still hashing. Shared stores count the
/// attempts of every server together, so that a cluster allows as many
/// guesses as one server does.
#[async_trait]
pub(crate) trait LoginLimiter: Send + Sync {
    /// Counts one attempt against every limit's key, all or none, in one
    /// atomic step: `Err(Limited(retry_after))`, counting nothing, when any
    /// key has reached its limit in its current window (`retry_after` is the
    /// longest wait among them).
    async fn reserve(&self, limits: &[Limit<'_>]) -> Result<(), LimitError>;

    /// Gives back one attempt of each key: the login succeeded, or was turned
    /// away before its password was checked.
    async fn refund(&self, keys: &[&str]) -> Result<(), BackendError>;
}
