//! One WebSocket connection, from the upgrade to the end of the close handshake.
//!
//! Data path: one task per connection reads each frame, decodes it into a
//! [`ClientFrame`] and handles its event with one exhaustive `match`, through
//! the [`Node`]; the hub fans room events out into each member's [`Outbox`];
//! the same task writes them out in batches, pings ([writer] has the
//! timing), and sends the Close frame. Each connection is listed in the
//! [`roster`] by user while it lasts.

pub(crate) mod roster;
mod writer;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use chat_protocol::names::validate_room_name;
use chat_protocol::{ClientEvent, ClientFrame, ErrorCode, Limits, ServerEvent, PROTOCOL_VERSION};
use chat_rooms::node::{storage_failure, Ref};
use chat_rooms::{CloseReason, Closer, Inbox, Node, Outbox, Peer};

use crate::admission::Admitted;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::metrics::{ConnectionMetrics, RequestKind, WriterTally};
use crate::ratelimit::TokenBucket;

/// What every connection of this server is held to.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Largest frame accepted, in bytes (enforced by the WebSocket layer).
    pub(crate) max_message_size: usize,
    /// Most rooms one connection may be in at once.
    pub(crate) max_rooms: usize,
    /// Sustained frames per second.
    pub(crate) rate: f64,
    /// Frames in a burst above the rate.
    pub(crate) burst: u32,
    /// Frames queued before the client counts as too slow.
    pub(crate) send_queue: usize,
    /// Bytes queued before the client counts as too slow.
    pub(crate) send_queue_bytes: usize,
    /// Time between pings.
    pub(crate) ping_interval: Duration,
    /// Time allowed for a pong.
    pub(crate) pong_timeout: Duration,
    /// Time a closing client gets to take its Close frame.
    pub(crate) close_timeout: Duration,
}

/// What a connection needs from the server: the rooms, its settings, and
/// the shutdown signal. Not the whole server state.
pub(crate) struct Context {
    pub(crate) node: Arc<Node>,
    pub(crate) settings: Settings,
    /// Cancelled once at shutdown; every connection's closer descends from it.
    pub(crate) shutdown: CancellationToken,
    /// What the sockets count.
    pub(crate) metrics: ConnectionMetrics,
    /// The live connections by user, to close a disabled user's.
    pub(crate) roster: roster::Roster,
}

/// Serves one upgraded connection for `user` until it closes.
///
/// One task per connection: it reads, writes and keeps the heartbeat, so an
/// idle connection costs one task's state rather than two. A handler that
/// waits (a join reading the log) holds up this connection's writes for that
/// long; fan-out meanwhile queues in its outbox.
///
/// `tracked` is held until the connection has ended, so that shutdown waits for it.
pub(crate) async fn run(
    mut socket: WebSocket,
    user: String,
    session: Option<String>,
    place: roster::Place,
    context: Arc<Context>,
    tracked: TaskTrackerToken,
    admitted: Admitted,
) {
    // Counted among the server's connections until this returns.
    let _admitted = admitted;
    let settings = &context.settings;
    let closer = Closer::new(&context.shutdown);
    // Listed until this function returns, so that a user's connections can be
    // closed from outside (an account disabled while connected).
    let _registered = place.register(session, closer.clone());
    let (outbox, rx) = Outbox::new(
        settings.send_queue,
        settings.send_queue_bytes,
        closer.clone(),
    );
    // Queued before the connection is visible to any room, so it is always first.
    outbox.deliver(&welcome(settings, &user).to_json().into());
    let peer = Peer {
        id: context.node.hub().next_conn_id(),
        user: user.into(),
        outbox,
    };
    tracing::info!(conn = peer.id, user = %peer.user, "connected");
    context.metrics.opened();

    let mut reader = Reader {
        peer,
        context: context.clone(),
        rooms: Arc::default(),
        closer: closer.clone(),
        bucket: TokenBucket::new(settings.rate, settings.burst, Instant::now()),
    };
    let mut pulse = writer::Pulse::new(
        writer::Heartbeat {
            interval: settings.ping_interval,
            timeout: settings.pong_timeout,
        },
        Instant::now(),
    );
    let timer = tokio::time::sleep_until(pulse.wake_at());
    tokio::pin!(timer);
    let closed = closer.closed();
    tokio::pin!(closed);

    let mut tally = WriterTally::default();
    // Not biased: a busy queue must not starve reading (pongs) or the timer.
    loop {
        tokio::select! {
            () = &mut closed => break,
            frame = rx.recv_async() => {
                let Ok(frame) = frame else { break };
                // A client that stops reading blocks this write; the closer
                // (fired by its full queue) cuts it short.
                if tally.samples() {
                    context.metrics.queue_depth(rx.len() + 1);
                }
                // A peer whose TCP window stays closed blocks the write with
                // its queue not yet full; meanwhile this loop pings no one, so
                // the write gets the pong's deadline instead.
                let written = tokio::select! {
                    r = writer::within(
                        settings.pong_timeout,
                        writer::write_batch(&mut socket, &rx, frame),
                    ) => r,
                    () = &mut closed => break,
                };
                match written {
                    Ok(bytes) => tally.wrote(bytes, &context.metrics),
                    Err(reason) => {
                        closer.close(reason);
                        break;
                    }
                }
            }
            msg = socket.recv() => {
                // Boxed: the handlers' states would otherwise sit, unused,
                // in every idle connection's future.
                if !Box::pin(reader.on_message(msg, &mut pulse)).await {
                    break;
                }
            }
            () = &mut timer => {
                match pulse.on_wake(Instant::now()) {
                    writer::Beat::Dead => {
                        closer.close(CloseReason::PongTimeout);
                        break;
                    }
                    writer::Beat::Ping => {
                        let sent = tokio::select! {
                            r = writer::within(
                                settings.pong_timeout,
                                socket.send(Message::Ping(Default::default())),
                            ) => r,
                            () = &mut closed => break,
                        };
                        if let Err(reason) = sent {
                            closer.close(reason);
                            break;
                        }
                    }
                    writer::Beat::Wait => {}
                }
                timer.as_mut().reset(pulse.wake_at());
            }
        }
    }

    // Boxed for the same reason as the handlers: it runs once, at the end.
    tally.flush(&context.metrics);
    Box::pin(close_down(socket, rx, reader, &closer)).await;
    drop(tracked);
}

/// Leaves the rooms, then sends what is queued and the Close frame and waits
/// for the client's answer, each within the close timeout.
async fn close_down(mut socket: WebSocket, rx: Inbox, reader: Reader, closer: &Closer) {
    let context = &reader.context;
    // Leave the rooms at once, so members hear of it without waiting for the
    // close handshake below.
    let rooms = std::mem::take(&mut *reader.rooms());
    for room in rooms.0 {
        context.node.leave(&reader.peer, &room).await;
    }
    let reason = closer.reason();
    // The close code as a field of its own (none when no Close frame is
    // sent), so that structured logs can count closes by code.
    let close_code = reason.close_frame().map(|(code, _)| code);
    tracing::info!(conn = reader.peer.id, user = %reader.peer.user, ?reason, close_code, "disconnected");
    context.metrics.ended(reason);

    let close_timeout = context.settings.close_timeout;
    let finished = tokio::time::timeout(close_timeout, writer::finish(&mut socket, rx, reason));
    if matches!(finished.await, Ok(Ok(()))) && reason.close_frame().is_some() {
        // Our Close frame is out; read on until the client answers it.
        let _ = tokio::time::timeout(close_timeout, async {
            while let Some(Ok(msg)) = socket.recv().await {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

fn welcome(settings: &Settings, user: &str) -> ServerEvent {
    ServerEvent::Welcome {
        protocol_version: PROTOCOL_VERSION,
        server: concat!("chat-server/", env!("CARGO_PKG_VERSION")).to_owned(),
        user: user.to_owned(),
        limits: Limits {
            max_message_bytes: settings.max_message_size,
            max_rooms: settings.max_rooms,
            messages_per_second: settings.rate,
            message_burst: settings.burst,
            ping_interval_ms: millis(settings.ping_interval),
            pong_timeout_ms: millis(settings.pong_timeout),
        },
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The rooms a connection is in or joining. Shared with the tasks that
/// resume rooms, which take a room out again when its resume fails. A Vec:
/// a connection is in few rooms (32 at most by default), and a B-tree node
/// would cost every idle connection a few hundred bytes.
type Rooms = Arc<Mutex<RoomSet>>;

/// A small set of room names.
#[derive(Default)]
struct RoomSet(Vec<String>);

impl RoomSet {
    fn contains(&self, room: &str) -> bool {
        self.0.iter().any(|r| r == room)
    }

    fn insert(&mut self, room: String) {
        if !self.contains(&room) {
            self.0.push(room);
        }
    }

    /// `false` if it was not there.
    fn remove(&mut self, room: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|r| r != room);
        self.0.len() != before
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// The reading half of a connection and what it needs to handle events.
struct Reader {
    peer: Peer,
    context: Arc<Context>,
    rooms: Rooms,
    closer: Closer,
    /// Every frame the client sends costs one token.
    bucket: TokenBucket,
}

/// An error answer: the code and the text of an `error` event.
type Refusal = (ErrorCode, String);

fn not_in_room(room: &str) -> Refusal {
    (
        ErrorCode::NotInRoom,
        format!("you are not in room {room:?}; join it first"),
    )
}

fn lock(rooms: &Rooms) -> MutexGuard<'_, RoomSet> {
    // std Mutex: set operations only, never held across an `.await`.
    rooms.lock().unwrap_or_else(|e| e.into_inner())
}

impl Reader {
    fn rooms(&self) -> MutexGuard<'_, RoomSet> {
        lock(&self.rooms)
    }

    /// Handles what one read brought; `false` once the connection ends.
    async fn on_message(
        &mut self,
        msg: Option<Result<Message, axum::Error>>,
        pulse: &mut writer::Pulse,
    ) -> bool {
        let msg = match msg {
            Some(Ok(msg)) => msg,
            Some(Err(e)) => {
                let reason = classify(e);
                tracing::debug!(conn = self.peer.id, ?reason, "read failed");
                self.closer.close(reason);
                return false;
            }
            None => {
                self.closer.close(CloseReason::ConnectionLost);
                return false;
            }
        };
        match msg {
            Message::Text(text) => self.on_text(&text).await,
            Message::Binary(_) => {
                if self.take_token(&None) {
                    self.reply_error(
                        ErrorCode::BinaryNotSupported,
                        "binary frames are not supported; send JSON text frames".into(),
                        &None,
                    );
                }
            }
            Message::Pong(_) => pulse.pong(),
            // The WebSocket layer answers pings itself.
            Message::Ping(_) => {}
            Message::Close(_) => {
                self.closer.close(CloseReason::ClientClosed);
                return false;
            }
        }
        true
    }

    fn take_token(&mut self, reference: &Ref) -> bool {
        if self.bucket.try_take(Instant::now()) {
            return true;
        }
        self.reply_error(
            ErrorCode::RateLimited,
            "too many messages; this one was dropped, slow down and resend it".into(),
            reference,
        );
        false
    }

    async fn on_text(&mut self, text: &str) {
        // Decoded before the rate check, so that even that refusal carries the `ref`.
        let (decoded, reference) = match ClientFrame::decode(text) {
            Ok(frame) => (Ok(frame.event), frame.reference),
            Err(refused) => (Err(refused.error), refused.reference),
        };
        let reference: Ref = reference.map(Into::into);
        let is_message = matches!(decoded, Ok(ClientEvent::SendMessage { .. }));
        if !self.take_token(&reference) {
            if is_message {
                self.context
                    .metrics
                    .message_rejected(ErrorCode::RateLimited);
            }
            return;
        }
        let result = match decoded {
            Ok(event) => {
                let kind = kind(&event);
                let started = Instant::now();
                let handled = self.handle(event, &reference).await;
                let seconds = started.elapsed().as_secs_f64();
                self.context.metrics.handled(kind, seconds);
                handled
            }
            Err(e) => Err((e.code(), e.to_string())),
        };
        if let Err((code, message)) = result {
            if is_message {
                self.context.metrics.message_rejected(code);
            }
            self.reply_error(code, message, &reference);
        }
    }

    /// One arm per client event: adding an event to the protocol fails to
    /// compile until it is handled here.
    async fn handle(&mut self, event: ClientEvent, reference: &Ref) -> Result<(), Refusal> {
        let node = &self.context.node;
        match event {
            ClientEvent::JoinRoom { room, since, epoch } => {
                validate_room_name(&room).map_err(|e| {
                    (
                        ErrorCode::InvalidRoomName,
                        format!("invalid room name {room:?}: {e}"),
                    )
                })?;
                {
                    let mut rooms = self.rooms();
                    if rooms.contains(&room) && !node.is_member(&self.peer, &room) {
                        // A resume of it is under way, and will answer.
                        return Ok(());
                    }
                    let max = self.context.settings.max_rooms;
                    if !rooms.contains(&room) && rooms.len() >= max {
                        return Err((
                            ErrorCode::TooManyRooms,
                            format!(
                                "you are already in {max} rooms, the most allowed; leave one first"
                            ),
                        ));
                    }
                    rooms.insert(room.clone());
                }
                let join = join(
                    self.context.clone(),
                    self.peer.clone(),
                    self.rooms.clone(),
                    room,
                    since,
                    epoch,
                    reference.clone(),
                );
                if since.is_some() {
                    // A backlog is sent at the client's pace in a task of its
                    // own, so this connection keeps reading (pongs, other rooms).
                    tokio::spawn(join);
                } else {
                    // Boxed: inline, its state would sit in every idle
                    // connection's reader future.
                    Box::pin(join).await;
                }
                Ok(())
            }
            ClientEvent::LeaveRoom { room } => {
                if !self.rooms().remove(&room) {
                    return Err(not_in_room(&room));
                }
                node.leave(&self.peer, &room).await;
                self.reply(&ServerEvent::Left { room }, reference);
                Ok(())
            }
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
                if !node.is_member(&self.peer, &room) {
                    return Err(not_in_room(&room));
                }
                node.send(&self.peer, &room, text, client_id, reference.clone())
                    .await;
                Ok(())
            }
            ClientEvent::History {
                room,
                before,
                limit,
            } => {
                if !node.is_member(&self.peer, &room) {
                    return Err(not_in_room(&room));
                }
                let limit =
                    limit.map_or(DEFAULT_HISTORY_PAGE, |l| (l as usize).min(MAX_HISTORY_PAGE));
                let (messages, bounds) = node
                    .history(&room, before, limit)
                    .await
                    .map_err(|e| (ErrorCode::Internal, storage_failure(&e)))?;
                let page = ServerEvent::HistoryPage {
                    room,
                    messages,
                    first_seq: bounds.first_seq,
                }
                .to_json_within(reference.as_deref(), node.max_frame());
                self.peer.outbox.deliver(&page.into());
                Ok(())
            }
            ClientEvent::ListRooms { after, limit } => {
                let limit = limit.map_or(DEFAULT_ROOM_PAGE, |l| (l as usize).min(MAX_ROOM_PAGE));
                let page = node
                    .list_rooms(after.as_deref(), limit)
                    .await
                    .map_err(|e| (ErrorCode::Internal, storage_failure(&e)))?;
                let list = ServerEvent::RoomList {
                    rooms: page.rooms,
                    next: page.next,
                }
                .to_json_within(reference.as_deref(), node.max_frame());
                self.peer.outbox.deliver(&list.into());
                Ok(())
            }
        }
    }

    fn reply(&self, event: &ServerEvent, reference: &Ref) {
        let frame = event.to_json_with_ref(reference.as_deref());
        self.peer.outbox.deliver(&frame.into());
    }

    fn reply_error(&self, code: ErrorCode, message: String, reference: &Ref) {
        tracing::debug!(conn = self.peer.id, ?code, %message, "request refused");
        self.context.metrics.rejected(code);
        self.reply(&ServerEvent::Error { code, message }, reference);
    }
}

/// Joins (or resumes) a room; on failure, tells the client and forgets the
/// room unless the connection was a member already.
async fn join(
    context: Arc<Context>,
    peer: Peer,
    rooms: Rooms,
    room: String,
    since: Option<u64>,
    epoch: Option<String>,
    reference: Ref,
) {
    let node = &context.node;
    tracing::debug!(conn = peer.id, user = %peer.user, %room, resume = since.is_some(), "join");
    if let Err(e) = node
        .join(&peer, &room, since, epoch.as_deref(), reference.clone())
        .await
    {
        if !node.is_member(&peer, &room) {
            lock(&rooms).remove(&room);
        }
        context.metrics.rejected(ErrorCode::Internal);
        let failed = ServerEvent::error(ErrorCode::Internal, storage_failure(&e));
        let frame = failed.to_json_with_ref(reference.as_deref());
        peer.outbox.deliver(&frame.into());
    }
}

/// A request's type, as the request-duration metric labels it.
fn kind(event: &ClientEvent) -> RequestKind {
    match event {
        ClientEvent::JoinRoom { since: None, .. } => RequestKind::Join,
        ClientEvent::JoinRoom { since: Some(_), .. } => RequestKind::Resume,
        ClientEvent::LeaveRoom { .. } => RequestKind::Leave,
        ClientEvent::SendMessage { .. } => RequestKind::Send,
        ClientEvent::History { .. } => RequestKind::History,
        ClientEvent::ListRooms { .. } => RequestKind::ListRooms,
    }
}

/// Longest `client_id`, in characters.
const MAX_CLIENT_ID: usize = 64;
/// Messages in a `history_page` when the request names no limit.
const DEFAULT_HISTORY_PAGE: usize = 50;
/// Most messages in one `history_page`.
const MAX_HISTORY_PAGE: usize = 200;
/// Rooms in a `room_list` when the request names no limit.
const DEFAULT_ROOM_PAGE: usize = 100;
/// Most rooms in one `room_list`: a page stays a few tens of KiB, read
/// through the name index, however many rooms the server has.
const MAX_ROOM_PAGE: usize = 200;

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
