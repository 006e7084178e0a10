//! JSON bodies of the HTTP endpoints that come before the WebSocket.

use serde::{Deserialize, Serialize};

use crate::ErrorCode;

/// Body of `POST /api/login` and `POST /api/register`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The user name (case-insensitive for login).
    pub username: String,
    /// The password, in clear over the (ideally TLS) connection.
    pub password: String,
    /// Register only: the one-time invite an invite-only server asks for
    /// (`chat-server admin invite` makes them); login ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<String>,
}

// Hand-written so that a password never reaches a log line through `{:?}`.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("invite", &self.invite.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Answer of a successful `POST /api/login` (200).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResponse {
    /// One-time ticket for `GET /ws?ticket=...`.
    pub ticket: String,
    /// Seconds until the ticket expires if unused.
    pub expires_in: u64,
    /// Session token: sent as `Authorization: Bearer <session>` to
    /// `POST /api/ticket` for further tickets without the password, and to
    /// `POST /api/logout` to end the session.
    pub session: String,
    /// Seconds until the session expires; using it does not extend it.
    pub session_expires_in: u64,
}

// Hand-written so that neither secret reaches a log line through `{:?}`.
impl std::fmt::Debug for LoginResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginResponse")
            .field("ticket", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("session", &"<redacted>")
            .field("session_expires_in", &self.session_expires_in)
            .finish()
    }
}

/// Answer of a successful `POST /api/ticket` (200).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketResponse {
    /// One-time ticket for `GET /ws?ticket=...`.
    pub ticket: String,
    /// Seconds until the ticket expires if unused.
    pub expires_in: u64,
}

// Hand-written so that a ticket never reaches a log line through `{:?}`.
impl std::fmt::Debug for TicketResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketResponse")
            .field("ticket", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Answer of a successful `POST /api/register` (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    /// The user name as stored.
    pub username: String,
}

/// Body of every HTTP error answer (4xx and 5xx).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpError {
    /// Machine-readable reason.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_bodies_match_the_documented_json() {
        let creds: Credentials =
            serde_json::from_str(r#"{"username":"alice","password":"s3cret-pass"}"#)
                .expect("valid body");
        assert_eq!(creds.username, "alice");
        assert_eq!(creds.password, "s3cret-pass");
        assert!(!format!("{creds:?}").contains("s3cret"));

        let resp = LoginResponse {
            ticket: "abc".into(),
            expires_in: 30,
            session: "def".into(),
            session_expires_in: 86400,
        };
        assert_eq!(
            serde_json::to_string(&resp).expect("serializes"),
            r#"{"ticket":"abc","expires_in":30,"session":"def","session_expires_in":86400}"#
        );
        let shown = format!("{resp:?}");
        assert!(!shown.contains("abc") && !shown.contains("def"), "{shown}");

        let resp = TicketResponse {
            ticket: "abc".into(),
            expires_in: 30,
        };
        assert_eq!(
            serde_json::to_string(&resp).expect("serializes"),
            r#"{"ticket":"abc","expires_in":30}"#
        );
        assert!(!format!("{resp:?}").contains("abc"));

        let err = HttpError {
            code: ErrorCode::InvalidTicket,
            message: "ticket expired".into(),
        };
        assert_eq!(
            serde_json::to_string(&err).expect("serializes"),
            r#"{"code":"invalid_ticket","message":"ticket expired"}"#
        );

        let err = HttpError {
            code: ErrorCode::InvalidSession,
            message: "session expired; log in again".into(),
        };
        assert_eq!(
            serde_json::to_string(&err).expect("serializes"),
            r#"{"code":"invalid_session","message":"session expired; log in again"}"#
        );

        let err = HttpError {
            code: ErrorCode::AccountDisabled,
            message: "this account is disabled".into(),
        };
        let json = r#"{"code":"account_disabled","message":"this account is disabled"}"#;
        assert_eq!(serde_json::to_string(&err).expect("serializes"), json);
        let back: HttpError = serde_json::from_str(json).expect("deserializes");
        assert_eq!(back.code, ErrorCode::AccountDisabled);
    }
}
