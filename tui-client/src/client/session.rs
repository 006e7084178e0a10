//! A session that stays connected: reconnects with backoff and jitter (a
//! fresh ticket each time, from the login session, so the password is sent
//! once) and rejoins its rooms. chat-tui and `chat-cli tail` talk to it only
//! through channels. It logs out when it ends.

use std::time::Duration;

use std::collections::HashMap;

use chat_protocol::{ClientEvent, ErrorCode, ServerEvent};
use tokio::sync::mpsc;

use crate::client::{Authenticator, ClientConfig, ClientError, Connection};

/// What the application asks of the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Join a room (and rejoin it after every reconnect).
    Join(String),
    /// Leave a room.
    Leave(String),
    /// Send a message.
    Send {
        /// Room.
        room: String,
        /// Text.
        text: String,
    },
    /// Ask for older messages of a joined room (answered by `history_page`).
    History {
        /// Room.
        room: String,
        /// Messages before this sequence number.
        before: u64,
    },
    /// Ask for a page of the room list (answered by `room_list`).
    ListRooms {
        /// Rooms after this name: the `next` of the page before; `None`:
        /// the first page.
        after: Option<String>,
    },
    /// Close the connection and end the session.
    Quit,
}

/// The connection's state, for a status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    /// First connection attempt under way.
    Connecting,
    /// Connected and authenticated.
    Connected,
    /// Lost; the next attempt starts after `delay`.
    Reconnecting {
        /// Attempt number, from 1.
        attempt: u32,
        /// Wait before it.
        delay: Duration,
        /// Why the last connection or attempt failed.
        reason: String,
    },
}

/// What the session tells the application.
#[derive(Debug)]
pub enum SessionEvent {
    /// The connection state changed.
    State(ConnState),
    /// An event from the server.
    Server(ServerEvent),
    /// The server refused a request (matched to it by its `ref`): the
    /// request had no effect. A refused `send_message` is not resent.
    Refused {
        /// The request as it was sent.
        request: ClientEvent,
        /// Why.
        code: ErrorCode,
        /// The server's explanation, for people.
        message: String,
    },
    /// A resume found the room's history replaced (the server's message store
    /// is new: its `epoch` changed): drop everything held for the room; the
    /// `joined` that follows starts the new history.
    HistoryReset {
        /// The room.
        room: String,
    },
    /// A message could not be sent because the connection is down.
    NotSent {
        /// Room.
        room: String,
        /// Text.
        text: String,
    },
    /// A problem retrying cannot fix (wrong password, say); the session ended.
    Fatal(ClientError),
}

/// The application's ends of the session's channels.
pub struct SessionHandle {
    /// Commands to the session.
    pub commands: mpsc::Sender<Command>,
    /// Events from the session.
    pub events: mpsc::Receiver<SessionEvent>,
}

/// Starts a session task that connects and joins `rooms`: each with the last
/// sequence number already seen, if any, to resume right after it.
pub fn spawn_session(config: ClientConfig, rooms: Vec<(String, Option<u64>)>) -> SessionHandle {
    start(Authenticator::new(config), rooms, None)
}

/// Like [`spawn_session`], but carries on with a connection the caller has
/// already made with `auth` (say, to fail fast on a wrong password) instead of
/// logging in again; reconnections use the session that `auth` holds.
pub fn spawn_session_on(
    auth: Authenticator,
    rooms: Vec<(String, Option<u64>)>,
    first: Connection,
) -> SessionHandle {
    start(auth, rooms, Some(first))
}

fn start(
    auth: Authenticator,
    rooms: Vec<(String, Option<u64>)>,
    first: Option<Connection>,
) -> SessionHandle {
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    // Bounded: if the application stops reading, the session stops reading
    // the socket, and the server's slow-client policy applies.
    let (ev_tx, ev_rx) = mpsc::channel(1024);
    let mut ordered = Rooms::default();
    for (room, since) in rooms {
        ordered.insert(room.clone());
        if let Some(seq) = since {
            ordered.seen(&room, seq);
        }
    }
    tokio::spawn(run(auth, ordered, first, cmd_rx, ev_tx));
    SessionHandle {
        commands: cmd_tx,
        events: ev_rx,
    }
}

/// Delay before reconnect attempt `attempt` (from 1): exponential from 0.5 s,
/// capped at 30 s, with jitter so that many clients do not return at once.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1 << attempt.saturating_sub(1).min(6));
    base.min(Duration::from_secs(30))
        .mul_f64(0.5 + fastrand::f64() * 0.5)
}

/// Joined rooms in the order they were asked for (so that the first room on
/// the command line is joined, and shown, first), each with where the client
/// is in it: a rejoin resumes right after the newest message received.
#[derive(Debug, Default)]
struct Rooms(Vec<Position>);

/// How far the client has read one room.
#[derive(Debug)]
struct Position {
    room: String,
    /// The newest sequence number received.
    since: Option<u64>,
    /// The history `since` counts in, from the room's last `joined`.
    epoch: Option<String>,
}

impl Rooms {
    fn insert(&mut self, room: String) {
        if !self.0.iter().any(|p| p.room == room) {
            self.0.push(Position {
                room,
                since: None,
                epoch: None,
            });
        }
    }

    fn remove(&mut self, room: &str) {
        self.0.retain(|p| p.room != room);
    }

    fn get(&mut self, room: &str) -> Option<&mut Position> {
        self.0.iter_mut().find(|p| p.room == room)
    }

    /// Records that everything up to `seq` of `room` was received.
    fn seen(&mut self, room: &str, seq: u64) {
        if let Some(p) = self.get(room) {
            p.since = Some(p.since.map_or(seq, |s| s.max(seq)));
        }
    }

    /// Records a `joined`. Returns whether it starts a new history: its epoch
    /// is not the one the held messages were numbered in, so `since` meant
    /// nothing and the room starts again from this `joined`.
    fn joined(&mut self, room: &str, last_seq: u64, epoch: &str) -> bool {
        self.insert(room.to_owned());
        let Some(p) = self.get(room) else {
            return false;
        };
        let reset = p.epoch.as_deref().is_some_and(|held| held != epoch);
        if reset {
            p.since = Some(last_seq);
        } else {
            p.since = Some(p.since.map_or(last_seq, |s| s.max(last_seq)));
        }
        p.epoch = Some(epoch.to_owned());
        reset
    }

    /// The join requests for a (re)connection.
    fn joins(&self) -> impl Iterator<Item = ClientEvent> + '_ {
        self.0.iter().map(|p| ClientEvent::JoinRoom {
            room: p.room.clone(),
            since: p.since,
            // Without a known epoch (a `since` from the command line), the
            // server trusts `since` as it is.
            epoch: p.since.and(p.epoch.clone()),
        })
    }
}

/// Requests sent on the current connection and not answered yet, by `ref`:
/// an `error` is matched to its request by that alone, never by order.
#[derive(Debug, Default)]
struct Pending {
    next: u64,
    requests: HashMap<String, ClientEvent>,
}

impl Pending {
    /// Records `request` under a fresh `ref` and returns the ref.
    fn add(&mut self, request: ClientEvent) -> String {
        self.next += 1;
        let reference = self.next.to_string();
        self.requests.insert(reference.clone(), request);
        reference
    }

    /// The request an answer with `reference` answers.
    fn answered(&mut self, reference: Option<&str>) -> Option<ClientEvent> {
        self.requests.remove(reference?)
    }
}

/// Messages sent but not yet acknowledged, by client id: after a reconnect
/// they are sent again with the same id, which the server stores only once.
#[derive(Debug, Default)]
struct Unacked(Vec<(String, String, String)>);

impl Unacked {
    fn add(&mut self, client_id: String, room: String, text: String) -> ClientEvent {
        self.0.push((client_id.clone(), room.clone(), text.clone()));
        ClientEvent::SendMessage {
            room,
            text,
            client_id: Some(client_id),
        }
    }

    fn acked(&mut self, client_id: &str) {
        self.0.retain(|(id, _, _)| id != client_id);
    }

    /// The resends for a room that has just been (re)joined.
    fn for_room(&self, room: &str) -> Vec<ClientEvent> {
        self.0
            .iter()
            .filter(|(_, r, _)| r == room)
            .map(|(id, room, text)| ClientEvent::SendMessage {
                room: room.clone(),
                text: text.clone(),
                client_id: Some(id.clone()),
            })
            .collect()
    }
}

/// A random client id: 64 bits are plenty to never collide within a room.
fn new_client_id() -> String {
    format!("{:016x}", fastrand::u64(..))
}

enum Ended {
    Quit,
    Lost(ClientError),
}

async fn run(
    mut auth: Authenticator,
    rooms: Rooms,
    first: Option<Connection>,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<SessionEvent>,
) {
    stay_connected(&mut auth, rooms, first, &mut commands, events).await;
    // Before `commands` drops: an application waits for that to know the
    // session is done, logout included.
    auth.logout().await;
}

/// Connects and reconnects until the application quits or a problem that
/// retrying cannot fix.
async fn stay_connected(
    auth: &mut Authenticator,
    mut rooms: Rooms,
    mut first: Option<Connection>,
    commands: &mut mpsc::Receiver<Command>,
    events: mpsc::Sender<SessionEvent>,
) {
    let emit = |event| {
        let events = events.clone();
        async move { events.send(event).await.is_ok() }
    };
    let mut attempt = 0u32;
    let mut unacked = Unacked::default();
    if !emit(SessionEvent::State(ConnState::Connecting)).await {
        return;
    }
    loop {
        let connected = match first.take() {
            Some(conn) => Ok(conn),
            None => auth.connect().await,
        };
        let error = match connected {
            Ok(conn) => {
                attempt = 0;
                match serve(conn, &mut rooms, &mut unacked, commands, &events).await {
                    Ended::Quit => return,
                    Ended::Lost(error) => error,
                }
            }
            Err(error) => error,
        };
        if !error.is_transient() {
            let _ = emit(SessionEvent::Fatal(error)).await;
            return;
        }
        attempt += 1;
        let mut delay = backoff(attempt);
        if let ClientError::Throttled(wait) | ClientError::Busy(wait) = &error {
            delay = delay.max(*wait);
        }
        let state = ConnState::Reconnecting {
            attempt,
            delay,
            reason: error.to_string(),
        };
        if !emit(SessionEvent::State(state)).await {
            return;
        }
        // While waiting, keep taking commands so the application never blocks.
        let wake = tokio::time::sleep(delay);
        tokio::pin!(wake);
        loop {
            tokio::select! {
                () = &mut wake => break,
                command = commands.recv() => match command {
                    None | Some(Command::Quit) => return,
                    Some(Command::Join(room)) => { rooms.insert(room); }
                    Some(Command::Leave(room)) => { rooms.remove(&room); }
                    Some(Command::Send { room, text }) => {
                        if !emit(SessionEvent::NotSent { room, text }).await {
                            return;
                        }
                    }
                    Some(Command::ListRooms { .. } | Command::History { .. }) => {}
                },
            }
        }
    }
}

/// Runs one connection until it is lost or the application quits.
async fn serve(
    mut conn: Connection,
    rooms: &mut Rooms,
    unacked: &mut Unacked,
    commands: &mut mpsc::Receiver<Command>,
    events: &mpsc::Sender<SessionEvent>,
) -> Ended {
    if events
        .send(SessionEvent::State(ConnState::Connected))
        .await
        .is_err()
    {
        conn.close().await;
        return Ended::Quit;
    }
    // Answers to an earlier connection's requests never come.
    let mut pending = Pending::default();
    let joins: Vec<ClientEvent> = rooms.joins().collect();
    for join in joins {
        if let Err(e) = request(&mut conn, &mut pending, join).await {
            return Ended::Lost(e);
        }
    }
    loop {
        tokio::select! {
            command = commands.recv() => {
                let event = match command {
                    None | Some(Command::Quit) => {
                        conn.close().await;
                        return Ended::Quit;
                    }
                    Some(Command::Join(room)) => ClientEvent::JoinRoom {
                        room,
                        since: None,
                        epoch: None,
                    },
                    Some(Command::Leave(room)) => ClientEvent::LeaveRoom { room },
                    Some(Command::Send { room, text }) => unacked.add(new_client_id(), room, text),
                    Some(Command::History { room, before }) => ClientEvent::History {
                        room,
                        before: Some(before),
                        limit: None,
                    },
                    Some(Command::ListRooms { after }) => ClientEvent::ListRooms { after, limit: None },
                };
                if let Err(e) = request(&mut conn, &mut pending, event).await {
                    return Ended::Lost(e);
                }
            }
            frame = conn.next_frame() => {
                let frame = match frame {
                    Ok(frame) => frame,
                    Err(e) => return Ended::Lost(e),
                };
                let answered = pending.answered(frame.reference.as_deref());
                let mut told = Vec::new();
                // Rooms are remembered as the server confirms them, with the
                // newest message seen, so a rejoin resumes exactly there.
                let mut resend = Vec::new();
                match (&frame.event, answered) {
                    (ServerEvent::Joined { room, last_seq, epoch, .. }, _) => {
                        if rooms.joined(room, *last_seq, epoch) {
                            told.push(SessionEvent::HistoryReset { room: room.clone() });
                        }
                        resend = unacked.for_room(room);
                    }
                    (ServerEvent::NewMessage(m), _) => rooms.seen(&m.room, m.seq),
                    (ServerEvent::Ack { client_id: Some(id), .. }, _) => unacked.acked(id),
                    (ServerEvent::Left { room }, _) => rooms.remove(room),
                    (ServerEvent::Error { code, message }, Some(request)) => {
                        if let ClientEvent::SendMessage { client_id: Some(id), .. } = &request {
                            // Refused, so not stored: resending it later
                            // would surprise the user; the application says so.
                            unacked.acked(id);
                        }
                        told.push(SessionEvent::Refused {
                            request,
                            code: *code,
                            message: message.clone(),
                        });
                    }
                    _ => {}
                }
                if !matches!(told.last(), Some(SessionEvent::Refused { .. })) {
                    told.push(SessionEvent::Server(frame.event));
                }
                for message in resend {
                    if let Err(e) = request(&mut conn, &mut pending, message).await {
                        return Ended::Lost(e);
                    }
                }
                for event in told {
                    if events.send(event).await.is_err() {
                        conn.close().await;
                        return Ended::Quit;
                    }
                }
            }
        }
    }
}

/// Sends `event` with a fresh `ref`, remembered until its answer.
async fn request(
    conn: &mut Connection,
    pending: &mut Pending,
    event: ClientEvent,
) -> Result<(), ClientError> {
    let reference = pending.add(event.clone());
    conn.send_with_ref(&event, &reference).await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn rooms_keep_their_order_and_resume_after_the_newest_message() {
        let mut rooms = Rooms::default();
        for room in ["general", "dev", "general", "ops"] {
            rooms.insert(room.to_owned());
        }
        rooms.remove("dev");
        assert!(!rooms.joined("general", 3, "e1"));
        rooms.seen("general", 7);
        rooms.seen("general", 5);
        let joins: Vec<ClientEvent> = rooms.joins().collect();
        assert_eq!(
            joins,
            [
                ClientEvent::JoinRoom {
                    room: "general".into(),
                    since: Some(7),
                    epoch: Some("e1".into()),
                },
                ClientEvent::JoinRoom {
                    room: "ops".into(),
                    since: None,
                    epoch: None,
                },
            ]
        );
    }

    #[test]
    fn a_new_epoch_starts_the_room_again_from_its_joined() {
        let mut rooms = Rooms::default();
        assert!(
            !rooms.joined("general", 40, "old"),
            "a first join resets nothing"
        );
        rooms.seen("general", 41);
        assert!(
            !rooms.joined("general", 41, "old"),
            "a resume in the same history"
        );
        assert!(rooms.joined("general", 2, "new"), "another history");
        let joins: Vec<ClientEvent> = rooms.joins().collect();
        assert_eq!(
            joins,
            [ClientEvent::JoinRoom {
                room: "general".into(),
                since: Some(2),
                epoch: Some("new".into()),
            }],
            "the position is the new history's, not the larger old one"
        );
    }

    #[test]
    fn answers_are_matched_by_ref_once() {
        let mut pending = Pending::default();
        let a = pending.add(ClientEvent::ListRooms {
            after: None,
            limit: None,
        });
        let b = pending.add(ClientEvent::LeaveRoom { room: "r".into() });
        assert_ne!(a, b);
        assert_eq!(
            pending.answered(Some(&b)),
            Some(ClientEvent::LeaveRoom { room: "r".into() })
        );
        assert_eq!(pending.answered(Some(&b)), None, "one answer per request");
        assert_eq!(pending.answered(None), None);
        assert_eq!(
            pending.answered(Some(&a)),
            Some(ClientEvent::ListRooms {
                after: None,
                limit: None
            })
        );
    }

    #[test]
    fn unacked_messages_are_resent_with_their_id_until_acked() {
        let mut unacked = Unacked::default();
        unacked.add("a".into(), "r".into(), "one".into());
        unacked.add("b".into(), "r".into(), "two".into());
        unacked.add("c".into(), "other".into(), "three".into());
        unacked.acked("a");
        assert_eq!(
            unacked.for_room("r"),
            [ClientEvent::SendMessage {
                room: "r".into(),
                text: "two".into(),
                client_id: Some("b".into())
            }]
        );
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        for attempt in 1..20 {
            let d = backoff(attempt);
            assert!(d <= Duration::from_secs(30), "{attempt}: {d:?}");
            assert!(d >= Duration::from_millis(250), "{attempt}: {d:?}");
        }
        assert!(backoff(1) <= Duration::from_millis(500));
        assert!(backoff(10) >= Duration::from_secs(15));
        let samples: BTreeSet<_> = (0..20).map(|_| backoff(5)).collect();
        assert!(samples.len() > 1, "jitter varies the delay");
    }
}
