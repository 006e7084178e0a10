//! The protocol implemented once in Rust, for chat-tui, chat-cli, tests and
//! benchmarks: server URLs, TLS trust, HTTP login, the typed WebSocket
//! connection, credentials that need the password once, and a session that
//! reconnects on its own.

mod auth;
mod connection;
mod http;
mod session;
mod tls;
mod transport;
mod url;

pub use auth::Authenticator;
pub use connection::{connect, Connection};
pub use http::{login, register};
pub use session::{
    spawn_session, spawn_session_on, Command, ConnState, SessionEvent, SessionHandle,
};
pub use tls::TlsOptions;
pub use url::ServerUrl;

use std::time::Duration;

/// Where and as whom to connect.
#[derive(Clone)]
pub struct ClientConfig {
    /// The server.
    pub server: ServerUrl,
    /// User name.
    pub user: String,
    /// Password (kept in memory to log in again if the server ends the session).
    pub password: String,
    /// Certificate trust for https/wss.
    pub tls: TlsOptions,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("server", &self.server)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Close code of a connection whose account an operator disabled: the
/// protocol says not to reconnect.
pub const ACCOUNT_DISABLED: u16 = 4003;

/// The close code of a socket whose session was logged out: reconnecting
/// with that session cannot work.
pub const LOGGED_OUT: u16 = 4001;

/// Everything that can go wrong talking to a server, grouped by what the user
/// should do about it (each group has its own exit code in chat-cli).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached (refused, timed out, TLS failed).
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
    /// The credentials were refused.
    #[error("login refused: {0}")]
    Auth(String),
    /// Too many failed logins; wait before trying again.
    #[error("too many login attempts; retry in {} s", .0.as_secs())]
    Throttled(Duration),
    /// The server is too busy checking passwords (503); retry after the wait.
    #[error("the server is busy; retry in {} s", .0.as_secs())]
    Busy(Duration),
    /// The server said or did something this client does not expect.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server closed the connection.
    #[error("connection closed by the server ({code}: {reason})")]
    Closed {
        /// WebSocket close code (1006 when the connection just dropped).
        code: u16,
        /// The server's reason text.
        reason: String,
    },
    /// A local problem (reading a certificate file, say).
    #[error("{0}")]
    Local(String),
}

impl ClientError {
    /// Whether trying again later might work (reconnect), as opposed to a
    /// problem that needs the user (wrong password, bad certificate file).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Closed { code, .. } => *code != ACCOUNT_DISABLED && *code != LOGGED_OUT,
            Self::Unreachable(_) | Self::Throttled(_) | Self::Busy(_) => true,
            Self::Auth(_) | Self::Protocol(_) | Self::Local(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_account_is_not_retried_other_closes_are() {
        let closed = |code| ClientError::Closed {
            code,
            reason: String::new(),
        };
        assert!(!closed(ACCOUNT_DISABLED).is_transient());
        assert!(!closed(LOGGED_OUT).is_transient());
        for code in [1001, 1006, 1008] {
            assert!(closed(code).is_transient(), "{code}");
        }
        assert!(!ClientError::Auth("this account is disabled".into()).is_transient());
    }
}
