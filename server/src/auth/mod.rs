//! Authentication: accounts and passwords, login throttling, the sessions a
//! login leaves behind, and the one-time tickets that carry a login or a
//! session over to the WebSocket upgrade.
//!
//! [`Auth`] keeps its state in four stores behind the interfaces of
//! [`stores`]. [`Auth::open`] sets up a single server's: accounts and sessions
//! in `chat.db`, tickets and failed-login counts in memory.
//! [`Auth::open_cluster`] sets up a cluster node's: accounts and sessions in
//! PostgreSQL, tickets and failed-login counts in Redis (or, on a single node
//! without Redis, in memory).

pub mod accounts;
#[cfg(test)]
mod cluster_tests;
mod password;
mod postgres;
mod redis_stores;
mod registration;
pub(crate) mod session;
mod stored_sessions;
pub(crate) mod stores;
mod throttle;
mod ticket;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chat_protocol::names::validate_username;
use rand_core::{OsRng, RngCore};
use sqlx::PgPool;
use tokio::sync::Semaphore;

use crate::clock::{millis, Clock, UnixMillis};
use crate::config::Config;
use accounts::{Accounts, AccountsError};
pub(crate) use postgres::migrate;
pub(crate) use postgres::PgAccounts;
use postgres::PgSessions;
pub(crate) use redis_stores::connect_redis;
pub(crate) use redis_stores::SharedRedis;
use redis_stores::{RedisThrottle, RedisTickets};
use registration::RegistrationLimits;
pub(crate) use session::SessionError;
use session::TokenHash;
use stored_sessions::StoredSessions;
pub(crate) use stores::Redeemed;
use stores::{
    AccountError, AccountStore, BackendError, Limit, LimitError, LoginLimiter, SessionStore,
    TicketStore,
};
use throttle::{InFlight, MemoryThrottle};
use ticket::MemoryTickets;
pub(crate) use ticket::TicketError;

pub(crate) use password::hash as hash_password;

/// Shortest password accepted at registration.
pub(crate) const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted, in bytes; bounds the hashing work one request causes.
pub(crate) const MAX_PASSWORD_LEN: usize = 1024;
/// An address may make this many times a user name's login attempts per
/// window, over all names: enough for the many users of one NAT or proxy,
/// few enough that one address cannot spray guesses over every name.
pub(crate) const ADDRESS_ATTEMPTS_FACTOR: u32 = 10;
/// Logins of one user name being checked at once on one server.
pub(crate) const IN_FLIGHT_PER_USER: u32 = 2;
/// Logins from one address being checked at once on one server.
pub(crate) const IN_FLIGHT_PER_ADDRESS: u32 = 8;
/// Password hashes that may wait for a hashing slot, beyond one running per
/// CPU; past them a login or registration gets 503 at once instead of
/// queueing without end (each waiting request holds a connection).
pub(crate) const HASH_QUEUE: usize = 16;
/// What a registration on an invite-only server without an invite is told.
const INVITE_MISSING: &str =
    "this server registers by invite only; ask an operator for an invite (chat-server admin invite)";
/// What a registration with an unknown, used or expired invite is told.
const INVITE_UNKNOWN: &str =
    "invite unknown, already used or expired; ask an operator for a new one";
/// What a request turned away by a full hashing queue is told to wait.
const BUSY_RETRY: Duration = Duration::from_secs(1);

/// Why a login or registration failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthError {
    #[error("wrong user name or password")]
    InvalidCredentials,
    #[error("too many login attempts; retry in {} s", retry_secs(*.0))]
    TooManyAttempts(Duration),
    /// Every password-hashing slot and its short queue are taken: nothing
    /// was checked or counted, and the client may retry after the wait.
    #[error("the server is busy checking passwords; retry in {} s", retry_secs(*.0))]
    Busy(Duration),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("user name already taken")]
    UsernameTaken,
    /// An invite-only server got no live invite with a registration.
    #[error("{0}")]
    InvalidInvite(&'static str),
    /// This address, or the whole server, made its hour's registrations.
    #[error("too many registrations; retry in {} s", retry_secs(*.0))]
    TooManyRegistrations(Duration),
    /// The password was right, but an operator disabled the account.
    #[error("this account is disabled; ask an operator")]
    AccountDisabled,
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<BackendError> for AuthError {
    fn from(e: BackendError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<LimitError> for AuthError {
    fn from(e: LimitError) -> Self {
        match e {
            LimitError::Limited(wait) => Self::TooManyAttempts(wait),
            LimitError::Backend(e) => e.into(),
        }
    }
}

impl From<AccountError> for AuthError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::UsernameTaken => Self::UsernameTaken,
            AccountError::InvalidInvite => Self::InvalidInvite(INVITE_UNKNOWN),
            AccountError::Backend(e) => e.into(),
        }
    }
}

/// Why the stores could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// `chat.db` could not be opened or migrated.
    #[error(transparent)]
    Accounts(#[from] AccountsError),
    /// The stored sessions could not be loaded.
    #[error("loading sessions: {0}")]
    Sessions(#[from] BackendError),
    /// The PostgreSQL schema could not be brought up to date.
    #[error("migrating the accounts database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Whole seconds to wait, rounded up: never tells a client to come back early.
pub(crate) fn retry_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// A successful login.
pub(crate) struct Login {
    /// The canonical user name.
    pub(crate) user: String,
    /// The one-time ticket for the socket.
    pub(crate) ticket: String,
    /// Its lifetime.
    pub(crate) ttl: Duration,
    /// The session token, which mints further tickets without the password.
    pub(crate) session: String,
    /// The session's lifetime.
    pub(crate) session_ttl: Duration,
}

/// A ticket minted for a session.
pub(crate) struct SessionTicket {
    /// The session's user.
    pub(crate) user: String,
    /// The one-time ticket for the socket.
    pub(crate) ticket: String,
    /// Its lifetime.
    pub(crate) ttl: Duration,
}

/// What one pass of [`Auth::prune_expired`] forgot.
pub(crate) struct Pruned {
    /// Expired sessions.
    pub(crate) sessions: usize,
    /// Expired, unused tickets.
    pub(crate) tickets: usize,
}

/// How many argon2 computations (password checks, including the dummy ones
/// for unknown users, and hashes of new passwords) a server has made. Cheap to
/// clone; clones share the count. Tests read it to prove that a path, such as
/// minting a ticket with a session, needs no password work.
#[derive(Debug, Clone, Default)]
pub struct PasswordHashes(Arc<AtomicU64>);

impl PasswordHashes {
    /// The count so far.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add_one(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// The stores [`Auth`] keeps its state in.
pub(crate) struct Stores {
    /// User accounts.
    pub(crate) accounts: Arc<dyn AccountStore>,
    /// Login sessions.
    pub(crate) sessions: Arc<dyn SessionStore>,
    /// Socket tickets.
    pub(crate) tickets: Arc<dyn TicketStore>,
    /// Failed-login counts.
    pub(crate) limiter: Arc<dyn LoginLimiter>,
    /// Registration counts shared by a cluster's nodes (windows of
    /// [`registration::HOUR`]); `None`: this server counts its own.
    pub(crate) registrations: Option<Arc<dyn LoginLimiter>>,
}

/// The authentication service shared by the HTTP handlers.
pub(crate) struct Auth {
    accounts: Arc<dyn AccountStore>,
    sessions: Arc<dyn SessionStore>,
    tickets: Arc<dyn TicketStore>,
    /// Dates issues and expiries; injected so that tests move time.
    clock: Arc<dyn Clock>,
    ticket_ttl: Duration,
    session_ttl: Duration,
    limiter: Arc<dyn LoginLimiter>,
    attempts_per_user: u32,
    in_flight: InFlight,
    registrations: RegistrationLimits,
    /// Registration needs an invite (`--invite-only`).
    invite_only: bool,
    /// Admission to password hashing: a permit per running hash and per
    /// place in its queue, taken without waiting, so a flood gets 503s
    /// rather than an ever longer queue.
    admission: Arc<Semaphore>,
    /// argon2 costs tens of milliseconds of CPU and 19 MiB per check; bounding
    /// concurrent checks keeps a login flood from starving the chat relay.
    hashing: Arc<Semaphore>,
    password_hashes: PasswordHashes,
}

impl Auth {
    /// A single server's authentication: accounts and sessions in the data
    /// directory's `chat.db` (its live sessions loaded into memory), tickets in
    /// memory.
    pub(crate) async fn open(config: &Config, clock: Arc<dyn Clock>) -> Result<Self, OpenError> {
        let dir = config.data_dir.clone();
        let accounts = tokio::task::spawn_blocking(move || Accounts::open_in(&dir))
            .await
            .map_err(BackendError::from)??;
        let now = chat_rooms::room_log::unix_millis(clock.now());
        let sessions = StoredSessions::load(accounts.clone(), now).await?;
        let stores = Stores {
            accounts: Arc::new(accounts),
            sessions: Arc::new(sessions),
            tickets: Arc::new(MemoryTickets::new()),
            limiter: Arc::new(MemoryThrottle::new(config.login_window)),
            registrations: None,
        };
        Ok(Self::new(stores, config, clock))
    }

    /// A cluster node's authentication: accounts and sessions in `pool`'s
    /// PostgreSQL database (its schema migrated first), and with `redis`,
    /// tickets and failed-login counts in Redis under `redis.prefix`, so that
    /// every node shares them. Without `redis` (a single node on PostgreSQL)
    /// tickets and counts stay in this process's memory; nodes sharing the
    /// database must then not share clients, since a ticket opens a socket
    /// only on the node that minted it.
    pub(crate) async fn open_cluster(
        pool: PgPool,
        redis: Option<SharedRedis>,
        config: &Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, OpenError> {
        migrate(&pool).await?;
        type Shared = Option<Arc<dyn LoginLimiter>>;
        let (tickets, limiter, registrations): (
            Arc<dyn TicketStore>,
            Arc<dyn LoginLimiter>,
            Shared,
        ) = match redis {
            Some(redis) => (
                Arc::new(RedisTickets::new(redis.clone())),
                Arc::new(RedisThrottle::new(redis.clone(), config.login_window)),
                Some(Arc::new(RedisThrottle::counting(
                    "register",
                    redis,
                    registration::HOUR,
                ))),
            ),
            None => (
                Arc::new(MemoryTickets::new()),
                Arc::new(MemoryThrottle::new(config.login_window)),
                None,
            ),
        };
        let stores = Stores {
            accounts: Arc::new(PgAccounts::new(pool.clone())),
            sessions: Arc::new(PgSessions::new(pool)),
            tickets,
            limiter,
            registrations,
        };
        Ok(Self::new(stores, config, clock))
    }

    /// Authentication over any stores, with the lifetimes and login limits of `config`.
    pub(crate) fn new(stores: Stores, config: &Config, clock: Arc<dyn Clock>) -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            accounts: stores.accounts,
            sessions: stores.sessions,
            tickets: stores.tickets,
            clock,
            ticket_ttl: config.ticket_ttl,
            session_ttl: config.session_ttl,
            limiter: stores.limiter,
            attempts_per_user: config.login_attempts,
            in_flight: InFlight::default(),
            registrations: match stores.registrations {
                Some(shared) => RegistrationLimits::shared(
                    shared,
                    config.registrations_per_address,
                    config.registrations_per_hour,
                ),
                None => RegistrationLimits::new(
                    config.registrations_per_address,
                    config.registrations_per_hour,
                ),
            },
            invite_only: config.invite_only,
            admission: Arc::new(Semaphore::new(cpus + HASH_QUEUE)),
            hashing: Arc::new(Semaphore::new(cpus)),
            password_hashes: PasswordHashes::default(),
        }
    }

    /// The counter of this service's argon2 computations.
    pub(crate) fn password_hashes(&self) -> PasswordHashes {
        self.password_hashes.clone()
    }

    fn now(&self) -> UnixMillis {
        chat_rooms::room_log::unix_millis(self.clock.now())
    }

    /// Checks credentials and issues a ticket and a session.
    ///
    /// Every attempt counts against its user name *at its address* and
    /// against the address, before the password is checked (a right password
    /// gives it back): parallel guesses cannot all pass one check, and an
    /// attacker uses up only their own address's attempts, so the user still
    /// logs in from another. If the counts cannot be read or written, the
    /// login fails (an internal error) rather than go uncounted: a store that
    /// is down must not open the door to unlimited password guessing.
    pub(crate) async fn login(
        &self,
        username: &str,
        password: String,
        peer: IpAddr,
    ) -> Result<Login, AuthError> {
        let name = username.to_lowercase();
        let pair_key = format!("pair:{name}|{peer}");
        let ip_key = format!("ip:{peer}");
        let counted = [pair_key.as_str(), ip_key.as_str()];
        // The pair backs off (an attacker slows down only themselves); the
        // address does not, so that one guesser behind a NAT does not lock
        // out the others for ever longer.
        self.limiter
            .reserve(&[
                Limit::backing_off(&pair_key, self.attempts_per_user),
                Limit::fixed(
                    &ip_key,
                    self.attempts_per_user
                        .saturating_mul(ADDRESS_ATTEMPTS_FACTOR),
                ),
            ])
            .await?;
        // Turned away before the password check: the attempt is given back.
        let user_key = format!("user:{name}");
        let admitted = match self.in_flight.enter(&[
            (user_key.as_str(), IN_FLIGHT_PER_USER),
            (ip_key.as_str(), IN_FLIGHT_PER_ADDRESS),
        ]) {
            None => Err(AuthError::TooManyAttempts(BUSY_RETRY)),
            Some(guard) => self.admit().map(|permit| (guard, permit)),
        };
        let (_in_flight, _admitted) = match admitted {
            Ok(admitted) => admitted,
            Err(e) => {
                self.refund(&counted).await;
                return Err(e);
            }
        };

        let found = {
            // Held over the lookup too, so that a flood of logins queues here
            // rather than on the database.
            let _permit = self
                .hashing
                .acquire()
                .await
                .map_err(|e| AuthError::Internal(e.to_string()))?;
            let account = self.accounts.find(username).await?;
            let hashes = self.password_hashes.clone();
            tokio::task::spawn_blocking(move || {
                hashes.add_one();
                match account {
                    Some(account) if password::verify(&password, &account.password_hash) => {
                        Some(account)
                    }
                    Some(_) => None,
                    None => {
                        password::verify_dummy(&password);
                        None
                    }
                }
            })
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?
        };

        match found {
            // Said only after the password proved right, and after the
            // same hashing as any login: to anyone without the password a
            // disabled account looks like every other (401, same time), so
            // the 403 tells nothing to a guesser, and failures still count.
            Some(account) if account.disabled => Err(AuthError::AccountDisabled),
            Some(account) => {
                let user = account.username;
                self.refund(&counted).await;
                let now = self.now();
                // The session first: it is the write that may fail, and a
                // ticket issued before it would be wasted.
                let session = self
                    .sessions
                    .issue(&user, now, now + millis(self.session_ttl))
                    .await?;
                let ticket = self
                    .tickets
                    .issue(
                        &user,
                        &session_id(&session),
                        now,
                        now + millis(self.ticket_ttl),
                    )
                    .await?;
                Ok(Login {
                    user,
                    ticket,
                    ttl: self.ticket_ttl,
                    session,
                    session_ttl: self.session_ttl,
                })
            }
            None => Err(AuthError::InvalidCredentials),
        }
    }

    /// Creates an account after checking the name, the password length and
    /// the registration rates of `peer` and of the server (a request refused
    /// as malformed uses up no registration).
    pub(crate) async fn register(
        &self,
        username: &str,
        password: String,
        invite: Option<&str>,
        peer: IpAddr,
    ) -> Result<String, AuthError> {
        validate_username(username)
            .map_err(|e| AuthError::InvalidRequest(format!("invalid user name: {e}")))?;
        check_password(&password).map_err(AuthError::InvalidRequest)?;
        // An open server ignores an invite; an invite-only one checks it
        // before the rate and the hash, so made-up invites cost neither.
        let invite = match (self.invite_only, invite) {
            (false, _) => None,
            (true, None) => return Err(AuthError::InvalidInvite(INVITE_MISSING)),
            (true, Some(invite)) => {
                let invite = TokenHash::of(invite);
                if !self.accounts.invite_live(&invite, self.now()).await? {
                    return Err(AuthError::InvalidInvite(INVITE_UNKNOWN));
                }
                Some(invite)
            }
        };
        self.registrations.take(peer).await.map_err(|e| match e {
            LimitError::Limited(wait) => AuthError::TooManyRegistrations(wait),
            LimitError::Backend(e) => e.into(),
        })?;
        let hashes = self.password_hashes.clone();
        let hash = self
            .blocking(move || {
                hashes.add_one();
                password::hash(&password).map_err(|e| AuthError::Internal(e.to_string()))
            })
            .await?;
        self.accounts
            .create(username, &hash, invite.as_ref(), self.now())
            .await?;
        Ok(username.to_owned())
    }

    /// Uses up a socket ticket: its user and the session that minted it.
    pub(crate) async fn redeem(&self, ticket: &str) -> Result<Redeemed, TicketError> {
        self.tickets.redeem(ticket, self.now()).await
    }

    /// Mints a ticket for a session's user: a hash and two map operations with
    /// the single-server stores; no password work and no throttle, since the
    /// password was checked when the session began.
    pub(crate) async fn ticket_for_session(
        &self,
        session: &str,
    ) -> Result<SessionTicket, SessionError> {
        let now = self.now();
        let user = self.sessions.lookup(session, now).await?;
        let ticket = self
            .tickets
            .issue(
                &user,
                &session_id(session),
                now,
                now + millis(self.ticket_ttl),
            )
            .await?;
        Ok(SessionTicket {
            user,
            ticket,
            ttl: self.ticket_ttl,
        })
    }

    /// Ends a session and the tickets it minted that are not used yet;
    /// returns its user and its id, whose sockets the caller closes. The
    /// session ends first: if forgetting its tickets then fails, they still
    /// expire within their short lifetime, and the logout is reported.
    pub(crate) async fn logout(&self, session: &str) -> Result<(String, String), SessionError> {
        let user = self.sessions.revoke(session, self.now()).await?;
        let id = session_id(session);
        self.tickets.revoke_session(&id).await?;
        Ok((user, id))
    }

    /// Ends the sessions of every disabled account and returns those
    /// accounts' names, so the caller can close their connections. Every
    /// call ends all it finds (sessions a login racing the disable issued
    /// included), so calling it again and again is safe and is the point.
    pub(crate) async fn end_disabled(&self) -> Result<(Vec<String>, usize), BackendError> {
        let disabled = self.accounts.disabled_users().await?;
        let ended = self.sessions.revoke_users(&disabled).await?;
        Ok((disabled, ended))
    }

    /// The ids of the sessions logged out lately on any server (in a
    /// cluster; none otherwise), whose sockets this server must close too.
    pub(crate) async fn logged_out_sessions(&self) -> Result<Vec<String>, BackendError> {
        self.sessions.logged_out().await
    }

    /// Forgets expired sessions and tickets. Lookups refuse them regardless;
    /// this only gives their space back, so a failure is logged, not returned.
    pub(crate) async fn prune_expired(&self) -> Pruned {
        self.registrations.forget_idle();
        let now = self.now();
        let sessions = self.sessions.prune(now).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "forgetting expired sessions failed");
            0
        });
        let tickets = self.tickets.prune(now).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "forgetting expired tickets failed");
            0
        });
        Pruned { sessions, tickets }
    }

    /// Gives back attempts counted for a login that succeeded or was turned
    /// away unchecked. A failure is logged, not returned: this login goes on
    /// (or was refused already), and a count left behind only brings a later
    /// refusal closer.
    async fn refund(&self, keys: &[&str]) {
        if let Err(e) = self.limiter.refund(keys).await {
            tracing::warn!(error = %e, "giving back a login attempt failed");
        }
    }

    /// A place among the running and queued password hashes, or `Busy`.
    fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, AuthError> {
        self.admission
            .clone()
            .try_acquire_owned()
            .map_err(|_| AuthError::Busy(BUSY_RETRY))
    }

    /// Runs hashing work on the blocking pool, a bounded number at a time,
    /// after a place in the bounded queue.
    async fn blocking<T, F>(&self, work: F) -> Result<T, AuthError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, AuthError> + Send + 'static,
    {
        let _admitted = self.admit()?;
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?
    }
}

/// The id of a session: the hex of its token's hash. It names the session
/// (in ticket records, beside its sockets) without being a key to it.
pub(crate) fn session_id(token: &str) -> String {
    session::TokenHash::of(token).hex()
}

/// A new invite for `--invite-only` registration: the token to hand out and
/// the hash to store (`chat-server admin invite`).
pub(crate) fn new_invite() -> (String, TokenHash) {
    let token = random_token();
    let hash = TokenHash::of(&token);
    (token, hash)
}

/// A new secret token, as tickets and session tokens are: 256 bits from the
/// OS CSPRNG, hex-encoded (URL-safe, so a ticket needs no escaping in `/ws?ticket=`).
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a new password's length; the message is meant for people.
pub(crate) fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!(
            "password must be at least {MIN_PASSWORD_LEN} characters"
        ));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(format!("password must be at most {MAX_PASSWORD_LEN} bytes"));
    }
    Ok(())
}

/// Creates an account in a PostgreSQL database (`chat-server user add` with
/// `--database-url`), migrating its schema first if it is new.
pub async fn add_user_to_database(
    database_url: &str,
    username: &str,
    password: &str,
) -> anyhow::Result<()> {
    validate_username(username).map_err(|e| anyhow::anyhow!("invalid user name: {e}"))?;
    check_password(password).map_err(anyhow::Error::msg)?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect(database_url)
        .await?;
    migrate(&pool).await?;
    let owned = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || password::hash(&owned))
        .await?
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
    let created = postgres::PgAccounts::new(pool.clone())
        .create(username, &hash, None, 0)
        .await;
    pool.close().await;
    created.map_err(|e| anyhow::anyhow!("{e}"))
}

/// Creates an account from the command line (`chat-server user add`).
pub fn add_user(accounts: &Accounts, username: &str, password: &str) -> anyhow::Result<()> {
    validate_username(username).map_err(|e| anyhow::anyhow!("invalid user name: {e}"))?;
    check_password(password).map_err(anyhow::Error::msg)?;
    let hash = password::hash(password).map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
    accounts.create_user(username, &hash)?;
    Ok(())
}
