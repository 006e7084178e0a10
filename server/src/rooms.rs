//! The room registry: which connections exist, which rooms they are in, and
//! fan-out of events to a room's members.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use axum::extract::ws::Utf8Bytes;
use chat_protocol::{ChatMessage, RoomInfo, ServerEvent};
use tokio::sync::mpsc;

use crate::history::{unix_millis, HistoryError, MessageStore};
use crate::session::Outbox;

/// Identifies one connection for its lifetime.
pub(crate) type ConnId = u64;

/// Why a room operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RoomError {
    #[error("you are not in room {0:?}; join it first")]
    NotInRoom(String),
    #[error("you are already in {0} rooms, the most allowed; leave one first")]
    TooManyRooms(usize),
    #[error("the message store failed; nothing was stored or sent ({0})")]
    Storage(String),
}

impl From<HistoryError> for RoomError {
    fn from(e: HistoryError) -> Self {
        tracing::error!(error = %e, "message store failed");
        Self::Storage(e.to_string())
    }
}

/// Most messages handed over under the registry lock when a resume ends; the
/// session pages everything before that itself, at the client's pace.
pub(crate) const RESUME_TAIL: usize = 64;

/// Queue slots a resume reserves for its last step: the tail, a possible
/// `history_gap`, and `joined`.
pub(crate) const RESUME_SLOTS: usize = RESUME_TAIL + 2;

/// How a resume's last step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resumed {
    /// The connection is a member; live messages follow.
    Admitted,
    /// More arrived than the last step may carry: page on from `cursor`.
    NotYet,
}

struct Client {
    user: Arc<str>,
    outbox: Outbox,
    rooms: BTreeSet<String>,
    /// Rooms whose resume is catching up: a second resume of one would
    /// deliver its backlog twice, so it is ignored until the first ends.
    resuming: BTreeSet<String>,
}

#[derive(Default)]
struct Room {
    /// Member connections. One user may be here through several connections;
    /// they count and are announced as one member.
    members: HashMap<ConnId, Arc<str>>,
}

impl Room {
    fn has_user(&self, user: &str) -> bool {
        self.members.values().any(|u| &**u == user)
    }

    fn member_names(&self) -> BTreeSet<&str> {
        self.members.values().map(|u| &**u).collect()
    }
}

#[derive(Default)]
struct State {
    next_id: ConnId,
    clients: HashMap<ConnId, Client>,
    rooms: HashMap<String, Room>,
}

impl State {
    /// Sends one frame to every connection in `room` except `skip`.
    fn broadcast(&self, room: &Room, frame: &Utf8Bytes, skip: Option<ConnId>) {
        for id in room.members.keys().filter(|id| Some(**id) != skip) {
            if let Some(client) = self.clients.get(id) {
                client.outbox.deliver(frame);
            }
        }
    }
}

/// All connections and the members of each room. A room's messages outlive
/// its members (they are in the [`MessageStore`]); its membership exists while
/// it has members.
///
/// One std `Mutex` guards it. Every critical section is map updates,
/// `try_send`s (which never wait) and, for a message, its SQLite commit: the
/// lock is never held across an `.await`, a slow client can never stall a
/// room (its full queue disconnects it), and storing under the lock makes a
/// room's sequence order the order every member receives it in.
pub(crate) struct Registry {
    state: Mutex<State>,
    max_rooms: usize,
    store: Arc<MessageStore>,
    /// Messages of history in a plain `joined`.
    history_on_join: usize,
}

impl Registry {
    pub(crate) fn new(max_rooms: usize, store: Arc<MessageStore>, history_on_join: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            max_rooms,
            store,
            history_on_join,
        }
    }

    /// The message store behind the rooms.
    pub(crate) fn store(&self) -> &MessageStore {
        &self.store
    }

    /// Starts a resume of `room` for `id`: `Some(true)` to go ahead,
    /// `Some(false)` when it is a member already (answer like a plain join),
    /// `None` when a resume of that room is under way (it will answer).
    pub(crate) fn begin_resume(&self, id: ConnId, room: &str) -> Option<bool> {
        let mut state = self.state();
        let client = state.clients.get_mut(&id)?;
        if client.rooms.contains(room) {
            return Some(false);
        }
        client.resuming.insert(room.to_owned()).then_some(true)
    }

    /// Ends a resume that failed before `finish_resume` admitted it.
    pub(crate) fn abort_resume(&self, id: ConnId, room: &str) {
        if let Some(client) = self.state().clients.get_mut(&id) {
            client.resuming.remove(room);
        }
    }

    /// Whether connection `id` is in `room`.
    pub(crate) fn is_member(&self, id: ConnId, room: &str) -> bool {
        self.state()
            .clients
            .get(&id)
            .is_some_and(|c| c.rooms.contains(room))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in
        // a way that matters more than stopping the whole relay would.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new connection.
    pub(crate) fn connect(&self, user: &str, outbox: Outbox) -> ConnId {
        let mut state = self.state();
        state.next_id += 1;
        let id = state.next_id;
        state.clients.insert(
            id,
            Client {
                user: user.into(),
                outbox,
                rooms: BTreeSet::new(),
                resuming: BTreeSet::new(),
            },
        );
        id
    }

    /// Removes a connection from every room, telling the remaining members.
    pub(crate) fn disconnect(&self, id: ConnId) {
        let mut state = self.state();
        let Some(client) = state.clients.remove(&id) else {
            return;
        };
        for room in &client.rooms {
            Self::remove_member(&mut state, id, &client.user, room);
        }
    }

    /// Adds a connection to a room with the recent history. Joining again is
    /// harmless and repeats the confirmation.
    pub(crate) fn join(&self, id: ConnId, room_name: &str) -> Result<(), RoomError> {
        let mut guard = self.state();
        // Read under the lock: no message can be stored between this history
        // and the membership, so the live stream continues exactly after it.
        let last_seq = self.store.last_seq(room_name)?;
        let history = self.store.before(room_name, None, self.history_on_join)?;
        let joined = self.admit(&mut guard, id, room_name, last_seq, history)?;
        if let Some(client) = guard.clients.get(&id) {
            client.outbox.deliver(&joined.to_json().into());
        }
        Ok(())
    }

    /// Ends a resume: hands over the messages after `cursor` that the session
    /// has not paged out itself, then makes the connection a member, all under
    /// the lock, so that live messages continue exactly after them. The frames
    /// go through `slots` reserved beforehand, so they can neither wait nor
    /// overflow the client's queue; if the tail is larger than that, nothing
    /// happens and the session pages on.
    pub(crate) fn finish_resume(
        &self,
        id: ConnId,
        room_name: &str,
        cursor: u64,
        slots: &mut mpsc::PermitIterator<'_, Utf8Bytes>,
    ) -> Result<Resumed, RoomError> {
        let mut guard = self.state();
        let Some(client) = guard.clients.get(&id) else {
            return Ok(Resumed::Admitted);
        };
        let mut send = |event: &ServerEvent| {
            if let Some(slot) = slots.next() {
                slot.send(event.to_json().into());
            }
        };
        if !client.rooms.contains(room_name) {
            if client.rooms.len() >= self.max_rooms {
                return Err(RoomError::TooManyRooms(self.max_rooms));
            }
            let tail = self.store.after(room_name, cursor, RESUME_TAIL + 1)?;
            if tail.len() > RESUME_TAIL {
                return Ok(Resumed::NotYet);
            }
            if let Some(gap) = gap_before(room_name, cursor, tail.first()) {
                send(&gap);
            }
            for message in tail {
                send(&ServerEvent::NewMessage(message));
            }
        }
        let last_seq = self.store.last_seq(room_name)?;
        let joined = self.admit(&mut guard, id, room_name, last_seq, Vec::new())?;
        if let Some(client) = guard.clients.get_mut(&id) {
            client.resuming.remove(room_name);
        }
        send(&joined);
        Ok(Resumed::Admitted)
    }

    /// Makes `id` a member of the room (telling the others) and returns the
    /// `joined` confirmation for the caller to deliver.
    fn admit(
        &self,
        state: &mut State,
        id: ConnId,
        room_name: &str,
        last_seq: u64,
        history: Vec<ChatMessage>,
    ) -> Result<ServerEvent, RoomError> {
        let Some(client) = state.clients.get_mut(&id) else {
            return Err(RoomError::NotInRoom(room_name.to_owned()));
        };
        if !client.rooms.contains(room_name) {
            if client.rooms.len() >= self.max_rooms {
                return Err(RoomError::TooManyRooms(self.max_rooms));
            }
            client.rooms.insert(room_name.to_owned());
            let user = client.user.clone();
            let room = state.rooms.entry(room_name.to_owned()).or_default();
            let is_new_user = !room.has_user(&user);
            room.members.insert(id, user.clone());
            if is_new_user {
                let notice = ServerEvent::MemberJoined {
                    room: room_name.to_owned(),
                    user: user.to_string(),
                };
                let room = &state.rooms[room_name];
                state.broadcast(room, &notice.to_json().into(), Some(id));
            }
        }
        let room = &state.rooms[room_name];
        Ok(ServerEvent::Joined {
            room: room_name.to_owned(),
            members: room.member_names().into_iter().map(String::from).collect(),
            last_seq,
            history,
        })
    }

    /// Takes a connection out of a room and confirms it.
    pub(crate) fn leave(&self, id: ConnId, room_name: &str) -> Result<(), RoomError> {
        let mut state = self.state();
        let Some(client) = state.clients.get_mut(&id) else {
            return Ok(());
        };
        if !client.rooms.remove(room_name) {
            return Err(RoomError::NotInRoom(room_name.to_owned()));
        }
        let user = client.user.clone();
        let left = ServerEvent::Left {
            room: room_name.to_owned(),
        };
        client.outbox.deliver(&left.to_json().into());
        Self::remove_member(&mut state, id, &user, room_name);
        Ok(())
    }

    fn remove_member(state: &mut State, id: ConnId, user: &str, room_name: &str) {
        let Some(room) = state.rooms.get_mut(room_name) else {
            return;
        };
        room.members.remove(&id);
        if room.members.is_empty() {
            state.rooms.remove(room_name);
        } else if !room.has_user(user) {
            let notice = ServerEvent::MemberLeft {
                room: room_name.to_owned(),
                user: user.to_owned(),
            };
            state.broadcast(&state.rooms[room_name], &notice.to_json().into(), None);
        }
    }

    /// Stores a message, acknowledges it to the sender, and relays it to
    /// every member of the room, the sender included. A resend with a known
    /// `client_id` is acknowledged again and not relayed a second time.
    pub(crate) fn send_message(
        &self,
        id: ConnId,
        room_name: &str,
        text: &str,
        client_id: Option<&str>,
    ) -> Result<(), RoomError> {
        let state = self.state();
        let not_in_room = || RoomError::NotInRoom(room_name.to_owned());
        let client = state.clients.get(&id).ok_or_else(not_in_room)?;
        if !client.rooms.contains(room_name) {
            return Err(not_in_room());
        }
        let room = state.rooms.get(room_name).ok_or_else(not_in_room)?;
        let now = SystemTime::now();
        let sent_ms = unix_millis(now);
        let sent_at = humantime::format_rfc3339_millis(now).to_string();
        // Stored (committed) before anyone hears of it: nobody ever sees a
        // message that a crash could lose.
        let appended =
            self.store
                .append(room_name, &client.user, client_id, text, &sent_at, sent_ms)?;
        let ack = ServerEvent::Ack {
            room: room_name.to_owned(),
            seq: appended.message.seq,
            id: appended.message.id.clone(),
            client_id: client_id.map(str::to_owned),
        };
        client.outbox.deliver(&ack.to_json().into());
        if !appended.duplicate {
            let event = ServerEvent::NewMessage(appended.message);
            state.broadcast(room, &event.to_json().into(), None);
        }
        Ok(())
    }

    /// Every room with members or stored messages, sorted by name, with its
    /// distinct user count and last activity.
    pub(crate) fn list_rooms(&self) -> Result<Vec<RoomInfo>, RoomError> {
        let mut rooms: BTreeMap<String, RoomInfo> = self
            .store
            .rooms()?
            .into_iter()
            .map(|r| {
                let info = RoomInfo {
                    name: r.name.clone(),
                    members: 0,
                    last_seq: r.last_seq,
                    last_activity: r.last_activity,
                };
                (r.name, info)
            })
            .collect();
        let state = self.state();
        for (name, room) in &state.rooms {
            rooms
                .entry(name.clone())
                .or_insert_with(|| RoomInfo {
                    name: name.clone(),
                    members: 0,
                    last_seq: 0,
                    last_activity: None,
                })
                .members = room.member_names().len();
        }
        Ok(rooms.into_values().collect())
    }
}

/// The `history_gap` to send when the first message available after `cursor`
/// is not the next one: retention has removed those in between.
pub(crate) fn gap_before(
    room: &str,
    cursor: u64,
    first_available: Option<&ChatMessage>,
) -> Option<ServerEvent> {
    let first = first_available?.seq;
    (first > cursor + 1).then(|| ServerEvent::HistoryGap {
        room: room.to_owned(),
        from: cursor + 1,
        to: first - 1,
    })
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::history::{Durability, Retention, Storage};
    use crate::session::Closer;

    fn registry(max_rooms: usize) -> Registry {
        let store = MessageStore::open(
            std::path::Path::new("."),
            Storage::Memory,
            Durability::Normal,
            Retention::default(),
        )
        .expect("store");
        Registry::new(max_rooms, Arc::new(store), 50)
    }

    struct Conn {
        id: ConnId,
        rx: mpsc::Receiver<Utf8Bytes>,
        closer: Closer,
    }

    impl Conn {
        fn open(registry: &Registry, user: &str, queue: usize) -> Self {
            let (tx, rx) = mpsc::channel(queue);
            let closer = Closer::new(&CancellationToken::new());
            let id = registry.connect(user, Outbox::new(tx, closer.clone()));
            Self { id, rx, closer }
        }

        fn events(&mut self) -> Vec<ServerEvent> {
            let mut out = Vec::new();
            while let Ok(frame) = self.rx.try_recv() {
                out.push(serde_json::from_str(&frame).expect("valid event"));
            }
            out
        }
    }

    #[test]
    fn join_notices_go_to_others_and_confirmation_to_the_joiner() {
        let registry = registry(8);
        let mut alice = Conn::open(&registry, "alice", 16);
        let mut bob = Conn::open(&registry, "bob", 16);
        registry.join(alice.id, "general").expect("joins");
        registry.join(bob.id, "general").expect("joins");

        let alice_events = alice.events();
        assert_eq!(alice_events.len(), 2, "{alice_events:?}");
        assert_eq!(
            alice_events[1],
            ServerEvent::MemberJoined {
                room: "general".into(),
                user: "bob".into()
            }
        );
        assert_eq!(
            bob.events(),
            [ServerEvent::Joined {
                room: "general".into(),
                members: vec!["alice".into(), "bob".into()],
                last_seq: 0,
                history: vec![],
            }]
        );
    }

    #[test]
    fn a_second_connection_of_the_same_user_is_one_member() {
        let registry = registry(8);
        let mut alice = Conn::open(&registry, "alice", 16);
        let phone = Conn::open(&registry, "alice", 16);
        registry.join(alice.id, "r").expect("joins");
        registry.join(phone.id, "r").expect("joins");
        registry.disconnect(phone.id);
        assert_eq!(alice.events().len(), 1, "only alice's own joined");
        assert_eq!(
            registry.list_rooms().expect("rooms"),
            [RoomInfo {
                name: "r".into(),
                members: 1,
                last_seq: 0,
                last_activity: None,
            }]
        );
        registry.disconnect(alice.id);
        assert!(
            registry.list_rooms().expect("rooms").is_empty(),
            "a room without members or messages is forgotten"
        );
    }

    #[test]
    fn messages_are_acked_numbered_and_stay_in_the_room_list() {
        let registry = registry(8);
        let mut alice = Conn::open(&registry, "alice", 64);
        let mut bob = Conn::open(&registry, "bob", 64);
        registry.join(alice.id, "r").expect("joins");
        registry.join(bob.id, "r").expect("joins");
        alice.events();
        bob.events();
        registry
            .send_message(alice.id, "r", "one", Some("c1"))
            .expect("sends");
        registry
            .send_message(alice.id, "r", "one", Some("c1"))
            .expect("resends");
        let to_alice = alice.events();
        assert!(matches!(&to_alice[0], ServerEvent::Ack { seq: 1, .. }));
        assert!(matches!(&to_alice[1], ServerEvent::NewMessage(m) if m.seq == 1));
        assert!(
            matches!(&to_alice[2], ServerEvent::Ack { seq: 1, .. }),
            "same seq again"
        );
        assert_eq!(to_alice.len(), 3, "the resend is not relayed: {to_alice:?}");
        assert_eq!(bob.events().len(), 1);

        registry.disconnect(alice.id);
        registry.disconnect(bob.id);
        let rooms = registry.list_rooms().expect("rooms");
        assert_eq!(
            (rooms[0].members, rooms[0].last_seq),
            (0, 1),
            "kept for its history"
        );

        // A later join gets the history and the last sequence number.
        let mut carol = Conn::open(&registry, "carol", 64);
        registry.join(carol.id, "r").expect("joins");
        match &carol.events()[0] {
            ServerEvent::Joined {
                last_seq, history, ..
            } => {
                assert_eq!(*last_seq, 1);
                assert_eq!(history[0].text, "one");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn room_limit_and_membership_are_enforced() {
        let registry = registry(2);
        let conn = Conn::open(&registry, "alice", 16);
        registry.join(conn.id, "a").expect("joins");
        registry.join(conn.id, "b").expect("joins");
        registry.join(conn.id, "a").expect("rejoining is fine");
        assert_eq!(registry.join(conn.id, "c"), Err(RoomError::TooManyRooms(2)));
        assert_eq!(
            registry.send_message(conn.id, "c", "hi", None),
            Err(RoomError::NotInRoom("c".into()))
        );
        assert_eq!(
            registry.leave(conn.id, "c"),
            Err(RoomError::NotInRoom("c".into()))
        );
    }

    #[test]
    fn a_full_queue_closes_that_client_only() {
        let registry = registry(8);
        let mut fast = Conn::open(&registry, "fast", 64);
        let slow = Conn::open(&registry, "slow", 2);
        registry.join(slow.id, "r").expect("joins");
        registry.join(fast.id, "r").expect("joins");
        for i in 0..5 {
            registry
                .send_message(fast.id, "r", &format!("m{i}"), None)
                .expect("sends");
        }
        assert!(slow.closer.is_closing());
        assert_eq!(
            slow.closer.reason(),
            crate::session::CloseReason::SlowConsumer
        );
        let messages = fast
            .events()
            .into_iter()
            .filter(|e| matches!(e, ServerEvent::NewMessage(_)))
            .count();
        assert_eq!(messages, 5);
        assert!(!fast.closer.is_closing());
    }
}
