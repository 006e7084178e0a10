//! Authentication: accounts and passwords, login throttling, the sessions a
//! login leaves behind, and the one-time tickets that carry a login or a
//! session over to the WebSocket upgrade.

mod password;
mod session;
mod throttle;
mod ticket;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chat_protocol::names::validate_username;
use rand_core::{OsRng, RngCore};
use tokio::sync::Semaphore;

use crate::store::{Accounts, StoreError};
pub(crate) use session::SessionError;
use session::SessionStore;
use throttle::LoginThrottle;
pub(crate) use ticket::TicketError;
use ticket::TicketStore;

/// Shortest password accepted at registration.
pub(crate) const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted, in bytes; bounds the hashing work one request causes.
pub(crate) const MAX_PASSWORD_LEN: usize = 1024;

/// Why a login or registration failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthError {
    #[error("wrong user name or password")]
    InvalidCredentials,
    #[error("too many failed logins; retry in {} s", retry_secs(*.0))]
    TooManyAttempts(Duration),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("user name already taken")]
    UsernameTaken,
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UsernameTaken => Self::UsernameTaken,
            e => Self::Internal(e.to_string()),
        }
    }
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

/// The authentication service shared by the HTTP handlers.
pub(crate) struct Auth {
    accounts: Accounts,
    tickets: TicketStore,
    sessions: SessionStore,
    throttle: LoginThrottle,
    attempts_per_user: u32,
    /// argon2 costs tens of milliseconds of CPU and 19 MiB per check; bounding
    /// concurrent checks keeps a login flood from starving the chat relay.
    hashing: Arc<Semaphore>,
}

impl Auth {
    pub(crate) fn new(
        accounts: Accounts,
        ticket_ttl: Duration,
        session_ttl: Duration,
        attempts_per_user: u32,
        window: Duration,
    ) -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            accounts,
            tickets: TicketStore::new(ticket_ttl),
            sessions: SessionStore::new(session_ttl),
            throttle: LoginThrottle::new(window),
            attempts_per_user,
            hashing: Arc::new(Semaphore::new(cpus)),
        }
    }

    /// Checks credentials and issues a ticket and a session. Failures count
    /// against both the user name and the client address.
    pub(crate) async fn login(
        &self,
        username: &str,
        password: String,
        peer: IpAddr,
    ) -> Result<Login, AuthError> {
        let user_key = format!("user:{}", username.to_lowercase());
        let ip_key = format!("ip:{peer}");
        let limits = [
            (user_key.as_str(), self.attempts_per_user),
            (ip_key.as_str(), self.attempts_per_user.saturating_mul(10)),
        ];
        self.throttle
            .check(&limits)
            .map_err(AuthError::TooManyAttempts)?;

        let accounts = self.accounts.clone();
        let name = username.to_owned();
        let found = self
            .blocking(move || match accounts.find(&name)? {
                Some(account) if password::verify(&password, &account.password_hash) => {
                    Ok(Some(account.username))
                }
                Some(_) => Ok(None),
                None => {
                    password::verify_dummy(&password);
                    Ok(None)
                }
            })
            .await?;

        match found {
            Some(user) => {
                self.throttle.clear(&user_key);
                let ticket = self.tickets.issue(&user);
                let session = self.sessions.issue(&user);
                Ok(Login {
                    user,
                    ticket,
                    ttl: self.tickets.ttl(),
                    session,
                    session_ttl: self.sessions.ttl(),
                })
            }
            None => {
                self.throttle.record_failure(&[&user_key, &ip_key]);
                Err(AuthError::InvalidCredentials)
            }
        }
    }

    /// Creates an account after checking the name and the password length.
    pub(crate) async fn register(
        &self,
        username: &str,
        password: String,
    ) -> Result<String, AuthError> {
        validate_username(username)
            .map_err(|e| AuthError::InvalidRequest(format!("invalid user name: {e}")))?;
        check_password(&password).map_err(AuthError::InvalidRequest)?;
        let accounts = self.accounts.clone();
        let name = username.to_owned();
        self.blocking(move || {
            let hash = password::hash(&password).map_err(|e| AuthError::Internal(e.to_string()))?;
            Ok(accounts.create_user(&name, &hash)?)
        })
        .await?;
        Ok(username.to_owned())
    }

    /// Uses up a socket ticket.
    pub(crate) fn redeem(&self, ticket: &str) -> Result<String, TicketError> {
        self.tickets.redeem(ticket)
    }

    /// Mints a ticket for a session's user. Two map operations: no hashing
    /// and no throttle, since the password was checked when the session began.
    pub(crate) fn ticket_for_session(&self, session: &str) -> Result<SessionTicket, SessionError> {
        let user = self.sessions.lookup(session)?;
        let ticket = self.tickets.issue(&user);
        Ok(SessionTicket {
            user,
            ticket,
            ttl: self.tickets.ttl(),
        })
    }

    /// Ends a session, returning its user. Tickets it minted stay valid until
    /// used or expired: each opens one socket within the short ticket lifetime,
    /// and revoking them would need a session-to-ticket index for little gain.
    pub(crate) fn logout(&self, session: &str) -> Result<String, SessionError> {
        self.sessions.revoke(session)
    }

    /// Forgets expired sessions and tickets. Lookups refuse them regardless;
    /// this only gives their memory back.
    pub(crate) fn prune_expired(&self) -> Pruned {
        Pruned {
            sessions: self.sessions.prune(),
            tickets: self.tickets.prune(),
        }
    }

    /// Runs store and hashing work on the blocking pool, a bounded number at a time.
    async fn blocking<T, F>(&self, work: F) -> Result<T, AuthError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, AuthError> + Send + 'static,
    {
        let _permit = self
            .hashing
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?
    }
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

/// Creates an account from the command line (`chat-server user add`).
pub fn add_user(accounts: &Accounts, username: &str, password: &str) -> anyhow::Result<()> {
    validate_username(username).map_err(|e| anyhow::anyhow!("invalid user name: {e}"))?;
    check_password(password).map_err(anyhow::Error::msg)?;
    let hash = password::hash(password).map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
    accounts.create_user(username, &hash)?;
    Ok(())
}
