//! Why a connection ends, and the one-shot signal that ends it.

use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

/// Why a connection is being closed; decides the Close frame the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent a Close frame (the WebSocket layer answers it).
    ClientClosed,
    /// The transport failed or ended without a close handshake.
    ConnectionLost,
    /// The server is shutting down.
    Shutdown,
    /// The client's send queue was full: it reads too slowly for its rooms.
    SlowConsumer,
    /// The client did not answer a ping in time.
    PongTimeout,
    /// A write to the client stayed blocked longer than the pong timeout:
    /// its TCP window is closed (it reads nothing), though its queue is not
    /// full yet.
    WriteStalled,
    /// The client sent a message above the size limit.
    MessageTooBig,
    /// The client sent a text frame that is not UTF-8.
    InvalidUtf8,
    /// The client broke the WebSocket protocol.
    ProtocolError,
    /// An operator disabled the user's account (`chat-server admin disable`):
    /// the client must not reconnect as that user.
    AccountDisabled,
    /// The session the socket was opened with was ended (`POST
    /// /api/logout`): the client must log in again rather than reconnect.
    LoggedOut,
}

impl CloseReason {
    /// A name for logs and metric labels (`slow_consumer`, ...).
    pub fn label(self) -> &'static str {
        match self {
            Self::ClientClosed => "client_closed",
            Self::ConnectionLost => "connection_lost",
            Self::Shutdown => "shutdown",
            Self::SlowConsumer => "slow_consumer",
            Self::PongTimeout => "pong_timeout",
            Self::WriteStalled => "write_stalled",
            Self::MessageTooBig => "message_too_big",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::ProtocolError => "protocol_error",
            Self::AccountDisabled => "account_disabled",
            Self::LoggedOut => "logged_out",
        }
    }

    /// The Close frame to send (RFC 6455 section 7.4.1), if one is to be sent.
    pub fn close_frame(self) -> Option<(u16, &'static str)> {
        match self {
            Self::ClientClosed | Self::ConnectionLost => None,
            Self::Shutdown => Some((1001, "server shutting down")),
            Self::SlowConsumer => Some((1008, "send queue full: client reads too slowly")),
            Self::PongTimeout => Some((1008, "no pong received in time")),
            Self::WriteStalled => Some((1008, "writes stalled: client reads too slowly")),
            Self::MessageTooBig => Some((1009, "message too big")),
            Self::InvalidUtf8 => Some((1007, "text frame is not valid UTF-8")),
            Self::ProtocolError => Some((1002, "WebSocket protocol error")),
            // 4000-4999 are for applications (RFC 6455 section 7.4.2); 4003
            // echoes HTTP's 403, which the same user's login now gets.
            Self::AccountDisabled => Some((4003, "account disabled")),
            // 4001 echoes HTTP's 401, which the ended session now gets.
            Self::LoggedOut => Some((4001, "logged out")),
        }
    }

    /// Whether frames already queued are still worth writing before the Close
    /// frame: not when the peer is gone, closed, or known not to be reading,
    /// nor when its account was disabled (what is queued is no longer its to read).
    pub fn flush_queue(self) -> bool {
        match self {
            Self::Shutdown | Self::MessageTooBig | Self::InvalidUtf8 | Self::ProtocolError => true,
            Self::ClientClosed
            | Self::ConnectionLost
            | Self::SlowConsumer
            | Self::PongTimeout
            | Self::WriteStalled
            | Self::AccountDisabled
            | Self::LoggedOut => false,
        }
    }
}

/// Ends one connection, once, recording the first reason given. Cloned into
/// the reader, the writer and the connection's [`crate::Outbox`], which the
/// hub holds for each member.
#[derive(Clone)]
pub struct Closer {
    token: CancellationToken,
    reason: Arc<OnceLock<CloseReason>>,
}

impl Closer {
    /// A closer that also fires when `shutdown` is cancelled (reason: shutdown).
    pub fn new(shutdown: &CancellationToken) -> Self {
        Self {
            token: shutdown.child_token(),
            reason: Arc::new(OnceLock::new()),
        }
    }

    /// Starts closing the connection; later calls keep the first reason.
    pub fn close(&self, reason: CloseReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    /// Why it closed; a cancelled token with no reason means server shutdown.
    pub fn reason(&self) -> CloseReason {
        self.reason.get().copied().unwrap_or(CloseReason::Shutdown)
    }

    /// Whether closing has begun.
    pub fn is_closing(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes when closing has begun.
    pub async fn closed(&self) {
        self.token.cancelled().await;
    }
}
