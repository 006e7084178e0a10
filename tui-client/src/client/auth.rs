//! Authentication for a client that connects more than once. The password
//! costs the server an argon2 check (tens of milliseconds of CPU), so it is
//! used once, for the login; every later connection gets its ticket from the
//! session that login started, and only a session the server says has ended
//! (401 `invalid_session`) sends the client back to the password.

use std::time::Duration;

use crate::client::connection::open_with_ticket;
use crate::client::http::{login_session, logout, session_ticket, SessionTicket};
use crate::client::{ClientConfig, ClientError, Connection};

/// Longest a logout may hold up a client that is exiting.
const LOGOUT_TIMEOUT: Duration = Duration::from_secs(1);

/// A user's credentials for one server: the password from the config, and the
/// session token once a login has given one.
pub struct Authenticator {
    config: ClientConfig,
    /// The session token: a bearer credential, never printed.
    session: Option<String>,
    /// Logins with the password so far.
    password_logins: u32,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("config", &self.config)
            .field("session", &self.session.as_ref().map(|_| "<redacted>"))
            .field("password_logins", &self.password_logins)
            .finish()
    }
}

impl Authenticator {
    /// Credentials from `config`, with no session yet.
    pub fn new(config: ClientConfig) -> Self {
        Self {
            config,
            session: None,
            password_logins: 0,
        }
    }

    /// Where and as whom it connects.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// How many times it has logged in with the password.
    pub fn password_logins(&self) -> u32 {
        self.password_logins
    }

    /// A one-time socket ticket: from the session while the server takes it,
    /// otherwise from a password login, which starts a new session.
    pub async fn ticket(&mut self) -> Result<String, ClientError> {
        if let Some(session) = &self.session {
            match session_ticket(&self.config, session).await? {
                SessionTicket::Ticket(ticket) => return Ok(ticket),
                SessionTicket::Ended => self.session = None,
            }
        }
        self.password_logins += 1;
        let login = login_session(&self.config).await?;
        self.session = Some(login.session);
        Ok(login.ticket)
    }

    /// Opens an authenticated connection.
    pub async fn connect(&mut self) -> Result<Connection, ClientError> {
        let ticket = self.ticket().await?;
        open_with_ticket(&self.config, &ticket).await
    }

    /// Ends the session on the server, so that it does not count against the
    /// user's 32 until it expires. Best effort and bounded: a client that is
    /// exiting does not wait long for a server that has gone.
    pub async fn logout(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = tokio::time::timeout(LOGOUT_TIMEOUT, logout(&self.config, &session)).await;
        }
    }
}
