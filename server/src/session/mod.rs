//! One WebSocket connection, from the upgrade to the end of the close handshake.
//!
//! Data path: the reader (this module) decodes each frame into a
//! [`ClientEvent`] and handles it with one exhaustive `match`; the room
//! registry fans events out into each member's [`Outbox`]; the [writer] task,
//! which alone owns the socket's sink, writes them out, pings, and sends the
//! Close frame.

mod close;
mod outbox;
mod resume;
mod writer;

use axum::extract::ws::{Message, WebSocket};
use chat_protocol::names::validate_room_name;
use chat_protocol::{ClientEvent, ErrorCode, Limits, ServerEvent, PROTOCOL_VERSION};
use futures_util::stream::{SplitStream, StreamExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub(crate) use close::{CloseReason, Closer};
pub(crate) use outbox::Outbox;

use crate::ratelimit::TokenBucket;
use crate::rooms::{ConnId, RoomError};
use crate::server::AppState;

/// Serves one upgraded connection for `user` until it closes.
pub(crate) async fn run(socket: WebSocket, user: String, app: Arc<AppState>) {
    let config = &app.config;
    let closer = Closer::new(&app.shutdown);
    let (tx, rx) = mpsc::channel(config.send_queue);
    let outbox = Outbox::new(tx, closer.clone());
    // Queued before the connection is visible to any room, so it is always first.
    outbox.deliver(&welcome(&app, &user).to_json().into());
    let id = app.registry.connect(&user, outbox.clone());
    tracing::info!(conn = id, %user, "connected");

    let (sink, mut stream) = socket.split();
    let pongs = Arc::new(AtomicBool::new(false));
    let heartbeat = writer::Heartbeat {
        interval: config.ping_interval,
        timeout: config.pong_timeout,
    };
    let close_timeout = config.shutdown_grace;
    let writer = tokio::spawn(writer::run(
        sink,
        rx,
        closer.clone(),
        heartbeat,
        pongs.clone(),
        close_timeout,
    ));

    let mut session = Session {
        id,
        app: app.clone(),
        outbox,
        closer: closer.clone(),
        bucket: TokenBucket::new(config.rate, config.burst, Instant::now()),
    };
    session.read_until_closed(&mut stream, &pongs).await;

    // Leave the rooms at once, so members hear of it without waiting for the
    // close handshake below.
    app.registry.disconnect(id);
    let reason = closer.reason();
    tracing::info!(conn = id, %user, ?reason, "disconnected");

    if reason.close_frame().is_some() {
        // The writer sends our Close frame; read on until the client answers.
        let _ = tokio::time::timeout(close_timeout, async {
            while let Some(Ok(msg)) = stream.next().await {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
    if let Err(e) = writer.await {
        tracing::error!(conn = id, error = %e, "writer task failed");
    }
}

fn welcome(app: &AppState, user: &str) -> ServerEvent {
    let config = &app.config;
    ServerEvent::Welcome {
        protocol_version: PROTOCOL_VERSION,
        server: concat!("chat-server/", env!("CARGO_PKG_VERSION")).to_owned(),
        user: user.to_owned(),
        limits: Limits {
            max_message_bytes: config.max_message_size,
            max_rooms: config.max_rooms,
            messages_per_second: config.rate,
            message_burst: config.burst,
            ping_interval_ms: millis(config.ping_interval),
            pong_timeout_ms: millis(config.pong_timeout),
        },
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The reading half of a connection and what it needs to handle events.
struct Session {
    id: ConnId,
    app: Arc<AppState>,
    /// This connection's own queue, for direct replies.
    outbox: Outbox,
    closer: Closer,
    /// Every frame the client sends costs one token.
    bucket: TokenBucket,
}

/// An error answer: the code and the text of an `error` event.
type Refusal = (ErrorCode, String);

impl Session {
    async fn read_until_closed(&mut self, stream: &mut SplitStream<WebSocket>, pongs: &AtomicBool) {
        loop {
            let msg = tokio::select! {
                () = self.closer.closed() => return,
                msg = stream.next() => msg,
            };
            let msg = match msg {
                Some(Ok(msg)) => msg,
                Some(Err(e)) => {
                    let reason = classify(e);
                    tracing::debug!(conn = self.id, ?reason, "read failed");
                    self.closer.close(reason);
                    return;
                }
                None => {
                    self.closer.close(CloseReason::ConnectionLost);
                    return;
                }
            };
            match msg {
                Message::Text(text) => {
                    if self.take_token() {
                        self.on_text(&text);
                    }
                }
                Message::Binary(_) => {
                    if self.take_token() {
                        self.reply_error(
                            ErrorCode::BinaryNotSupported,
                            "binary frames are not supported; send JSON text frames".into(),
                        );
                    }
                }
                Message::Pong(_) => {
                    pongs.store(true, Ordering::Relaxed);
                }
                // The WebSocket layer answers pings itself.
                Message::Ping(_) => {}
                Message::Close(_) => {
                    self.closer.close(CloseReason::ClientClosed);
                    return;
                }
            }
        }
    }

    fn take_token(&mut self) -> bool {
        if self.bucket.try_take(Instant::now()) {
            return true;
        }
        self.reply_error(
            ErrorCode::RateLimited,
            "too many messages; this one was dropped, slow down and resend it".into(),
        );
        false
    }

    fn on_text(&mut self, text: &str) {
        let result = match ClientEvent::decode(text) {
            Ok(event) => self.handle(event),
            Err(e) => Err((e.code(), e.to_string())),
        };
        if let Err((code, message)) = result {
            self.reply_error(code, message);
        }
    }

    /// One arm per client event: adding an event to the protocol fails to
    /// compile until it is handled here.
    fn handle(&mut self, event: ClientEvent) -> Result<(), Refusal> {
        let registry = &self.app.registry;
        match event {
            ClientEvent::JoinRoom { room, since } => {
                validate_room_name(&room).map_err(|e| {
                    (
                        ErrorCode::InvalidRoomName,
                        format!("invalid room name {room:?}: {e}"),
                    )
                })?;
                let Some(since) = since else {
                    return registry.join(self.id, &room).map_err(refusal);
                };
                match registry.begin_resume(self.id, &room) {
                    // The backlog is paged out in its own task, so this
                    // connection keeps reading (pongs, other rooms) meanwhile.
                    Some(true) => {
                        tokio::spawn(resume::resume(
                            self.app.clone(),
                            self.id,
                            self.outbox.clone(),
                            room,
                            since,
                        ));
                        Ok(())
                    }
                    Some(false) => registry.join(self.id, &room).map_err(refusal),
                    None => Ok(()),
                }
            }
            ClientEvent::LeaveRoom { room } => registry.leave(self.id, &room).map_err(refusal),
            ClientEvent::SendMessage {
                room,
                text,
                client_id,
            } => {
                if text.trim().is_empty() {
                    return Err((ErrorCode::EmptyMessage, "message text is empty".into()));
                }
                if let Some(id) = &client_id {
                    if id.is_empty()
                        || id.chars().count() > MAX_CLIENT_ID
                        || id.chars().any(char::is_control)
                    {
                        return Err((
                            ErrorCode::InvalidPayload,
                            format!("client_id must be 1 to {MAX_CLIENT_ID} characters, without control characters"),
                        ));
                    }
                }
                registry
                    .send_message(self.id, &room, &text, client_id.as_deref())
                    .map_err(refusal)
            }
            ClientEvent::History {
                room,
                before,
                limit,
            } => {
                if !registry.is_member(self.id, &room) {
                    return Err(refusal(RoomError::NotInRoom(room)));
                }
                let limit =
                    limit.map_or(DEFAULT_HISTORY_PAGE, |l| (l as usize).min(MAX_HISTORY_PAGE));
                let store = registry.store();
                let storage = |e: crate::history::HistoryError| refusal(e.into());
                let messages = store.before(&room, before, limit).map_err(storage)?;
                let first_seq = store.first_seq(&room).map_err(storage)?;
                self.reply(&ServerEvent::HistoryPage {
                    room,
                    messages,
                    first_seq,
                });
                Ok(())
            }
            ClientEvent::ListRooms {} => {
                let rooms = registry.list_rooms().map_err(refusal)?;
                self.reply(&ServerEvent::RoomList { rooms });
                Ok(())
            }
        }
    }

    fn reply(&self, event: &ServerEvent) {
        self.outbox.deliver(&event.to_json().into());
    }

    fn reply_error(&self, code: ErrorCode, message: String) {
        tracing::debug!(conn = self.id, ?code, %message, "request refused");
        self.reply(&ServerEvent::Error { code, message });
    }
}

/// Longest `client_id`, in characters.
const MAX_CLIENT_ID: usize = 64;
/// Messages in a `history_page` when the request names no limit.
const DEFAULT_HISTORY_PAGE: usize = 50;
/// Most messages in one `history_page`.
const MAX_HISTORY_PAGE: usize = 200;

pub(crate) fn refusal(e: RoomError) -> Refusal {
    let code = match e {
        RoomError::NotInRoom(_) => ErrorCode::NotInRoom,
        RoomError::TooManyRooms(_) => ErrorCode::TooManyRooms,
        RoomError::Storage(_) => ErrorCode::Internal,
    };
    (code, e.to_string())
}

/// Maps a read error to the reason, and so the close code, it deserves.
fn classify(err: axum::Error) -> CloseReason {
    use tungstenite::error::ProtocolError;
    let Ok(err) = err.into_inner().downcast::<tungstenite::Error>() else {
        return CloseReason::ConnectionLost;
    };
    match *err {
        tungstenite::Error::Capacity(_) => CloseReason::MessageTooBig,
        tungstenite::Error::Utf8(_) => CloseReason::InvalidUtf8,
        tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            CloseReason::ConnectionLost
        }
        tungstenite::Error::Protocol(_) => CloseReason::ProtocolError,
        _ => CloseReason::ConnectionLost,
    }
}
