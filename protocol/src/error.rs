//! Machine-readable error codes.

use serde::{Deserialize, Serialize};

/// The `code` of an `error` event or of an HTTP error body.
///
/// Clients must treat a code they do not know like a generic error: newer servers
/// may add codes without changing the protocol version ([`ErrorCode::Other`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not valid JSON.
    InvalidJson,
    /// The frame was JSON but not an object with a string `type`.
    InvalidFrame,
    /// The `type` is not one this server knows.
    UnknownType,
    /// The `type` is known but its `payload` does not have the required fields.
    InvalidPayload,
    /// A binary frame arrived; the protocol uses text frames only.
    BinaryNotSupported,
    /// A room name breaks the naming rules.
    InvalidRoomName,
    /// The request names a room the client has not joined.
    NotInRoom,
    /// Joining would exceed the per-connection room limit.
    TooManyRooms,
    /// The message text is empty or only white space.
    EmptyMessage,
    /// Too many messages too fast; the message was dropped, retry later.
    RateLimited,
    /// HTTP: user name or password wrong (deliberately not saying which).
    InvalidCredentials,
    /// HTTP: the login or register body is malformed, or a name breaks the rules.
    InvalidRequest,
    /// HTTP: the user name is already registered.
    UsernameTaken,
    /// HTTP: registration is turned off on this server.
    RegistrationDisabled,
    /// HTTP 403: this server registers by invite only, and the `invite` of
    /// `POST /api/register` is missing, unknown, used or expired.
    InvalidInvite,
    /// HTTP: too many login attempts; wait for `Retry-After` seconds.
    TooManyAttempts,
    /// HTTP 429: too many registrations from this address, or on this server;
    /// wait for `Retry-After` seconds.
    TooManyRegistrations,
    /// HTTP: the WebSocket ticket is missing, unknown, used or expired.
    InvalidTicket,
    /// HTTP: the session token of `POST /api/ticket` or `POST /api/logout` is
    /// missing, malformed, unknown, revoked or expired; log in again with the password.
    InvalidSession,
    /// HTTP: the browser's `Origin` is not allowed to open a socket.
    OriginNotAllowed,
    /// HTTP: the password is right but an operator disabled the account; do
    /// not retry until the operator enables it again.
    AccountDisabled,
    /// HTTP 503: every password-hashing slot and its queue are taken; nothing
    /// was checked or counted. Retry after `Retry-After` seconds.
    ServerBusy,
    /// HTTP 429 or 503: too many connections from your address (429), of
    /// your user (429), or on the server (503); retry after `Retry-After`.
    TooManyConnections,
    /// Something failed on the server; the request may be retried.
    Internal,
    /// A code this version of the crate does not know. Never sent, so not in
    /// the published schema.
    #[serde(other)]
    #[schemars(skip)]
    Other,
}

impl ErrorCode {
    /// The code as it is written on the wire (`rate_limited`, ...): for logs
    /// and metric labels, which must not depend on a serializer.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::InvalidFrame => "invalid_frame",
            Self::UnknownType => "unknown_type",
            Self::InvalidPayload => "invalid_payload",
            Self::BinaryNotSupported => "binary_not_supported",
            Self::InvalidRoomName => "invalid_room_name",
            Self::NotInRoom => "not_in_room",
            Self::TooManyRooms => "too_many_rooms",
            Self::EmptyMessage => "empty_message",
            Self::RateLimited => "rate_limited",
            Self::InvalidCredentials => "invalid_credentials",
            Self::InvalidRequest => "invalid_request",
            Self::UsernameTaken => "username_taken",
            Self::RegistrationDisabled => "registration_disabled",
            Self::InvalidInvite => "invalid_invite",
            Self::TooManyAttempts => "too_many_attempts",
            Self::InvalidTicket => "invalid_ticket",
            Self::InvalidSession => "invalid_session",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::AccountDisabled => "account_disabled",
            Self::ServerBusy => "server_busy",
            Self::TooManyConnections => "too_many_connections",
            Self::TooManyRegistrations => "too_many_registrations",
            Self::Internal => "internal",
            Self::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_str_is_the_wire_name() {
        for code in [
            ErrorCode::InvalidJson,
            ErrorCode::BinaryNotSupported,
            ErrorCode::RateLimited,
            ErrorCode::OriginNotAllowed,
            ErrorCode::AccountDisabled,
            ErrorCode::ServerBusy,
            ErrorCode::TooManyConnections,
            ErrorCode::TooManyRegistrations,
            ErrorCode::InvalidInvite,
            ErrorCode::Internal,
            ErrorCode::Other,
        ] {
            let wire = serde_json::to_value(code).expect("serializes");
            assert_eq!(wire, code.as_str(), "{code:?}");
        }
    }
}
