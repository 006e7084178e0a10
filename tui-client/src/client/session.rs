//! A session that stays connected: reconnects with backoff and jitter (a
//! fresh ticket each time, from the login session, so the password is sent
//! once) and rejoins its rooms. chat-tui and `chat-cli tail` talk to it only
//! through channels. It logs out when it ends.

use std::time::Duration;

use chat_protocol::{ClientEvent, ServerEvent};
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
    /// Ask for the room list.
    ListRooms,
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
/// the command line is joined, and shown, first), each with the newest
/// sequence number received: a rejoin resumes right after it.
#[derive(Debug, Default)]
struct Rooms(Vec<(String, Option<u64>)>);

impl Rooms {
    fn insert(&mut self, room: String) {
        if !self.0.iter().any(|(r, _)| *r == room) {
            self.0.push((room, None));
        }
    }

    fn remove(&mut self, room: &str) {
        self.0.retain(|(r, _)| r != room);
    }

    /// Records that everything up to `seq` of `room` was received.
    fn seen(&mut self, room: &str, seq: u64) {
        if let Some((_, position)) = self.0.iter_mut().find(|(r, _)| r == room) {
            *position = Some(position.map_or(seq, |p| p.max(seq)));
        }
    }

    /// The join requests for a (re)connection.
    fn joins(&self) -> impl Iterator<Item = ClientEvent> + '_ {
        self.0.iter().map(|(room, since)| ClientEvent::JoinRoom {
            room: room.clone(),
            since: *since,
            epoch: None,
        })
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
        if let ClientError::Throttled(wait) = &error {
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
                    Some(Command::ListRooms | Command::History { .. }) => {}
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
    let joins: Vec<ClientEvent> = rooms.joins().collect();
    for join in joins {
        if let Err(e) = conn.send(&join).await {
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
                    Some(Command::ListRooms) => ClientEvent::ListRooms {},
                };
                if let Err(e) = conn.send(&event).await {
                    return Ended::Lost(e);
                }
            }
            event = conn.next_event() => {
                let event = match event {
                    Ok(event) => event,
                    Err(e) => return Ended::Lost(e),
                };
                // Rooms are remembered as the server confirms them, with the
                // newest message seen, so a rejoin resumes exactly there.
                let mut resend = Vec::new();
                match &event {
                    ServerEvent::Joined { room, last_seq, .. } => {
                        rooms.insert(room.clone());
                        rooms.seen(room, *last_seq);
                        resend = unacked.for_room(room);
                    }
                    ServerEvent::NewMessage(m) => rooms.seen(&m.room, m.seq),
                    ServerEvent::Ack { client_id: Some(id), .. } => unacked.acked(id),
                    ServerEvent::Left { room } => rooms.remove(room),
                    _ => {}
                }
                for message in resend {
                    if let Err(e) = conn.send(&message).await {
                        return Ended::Lost(e);
                    }
                }
                if events.send(SessionEvent::Server(event)).await.is_err() {
                    conn.close().await;
                    return Ended::Quit;
                }
            }
        }
    }
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
        rooms.seen("general", 7);
        rooms.seen("general", 5);
        let joins: Vec<ClientEvent> = rooms.joins().collect();
        assert_eq!(
            joins,
            [
                ClientEvent::JoinRoom {
                    room: "general".into(),
                    since: Some(7),
                    epoch: None,
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
