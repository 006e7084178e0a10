//! The room registry: which connections exist, which rooms they are in, and
//! fan-out of events to a room's members.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use chat_protocol::{ChatMessage, RoomInfo, ServerEvent};

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
}

struct Client {
    user: Arc<str>,
    outbox: Outbox,
    rooms: BTreeSet<String>,
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

/// All connections and rooms. Rooms exist while they have members.
///
/// One std `Mutex` guards it. Every critical section is map updates plus
/// `try_send`s, which never wait, so the lock is never held across an `.await`
/// and a slow client can never stall a room: its full queue disconnects it.
pub(crate) struct Registry {
    state: Mutex<State>,
    max_rooms: usize,
    /// Message ids are `<boot time in ms>-<counter>` in hex, unique across restarts.
    id_prefix: String,
    next_message: AtomicU64,
}

impl Registry {
    pub(crate) fn new(max_rooms: usize) -> Self {
        let boot_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Self {
            state: Mutex::new(State::default()),
            max_rooms,
            id_prefix: format!("{boot_ms:x}"),
            next_message: AtomicU64::new(1),
        }
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

    /// Adds a connection to a room, creating the room if needed. Joining again
    /// is harmless and repeats the confirmation.
    pub(crate) fn join(&self, id: ConnId, room_name: &str) -> Result<(), RoomError> {
        let mut guard = self.state();
        let state = &mut *guard;
        let Some(client) = state.clients.get_mut(&id) else {
            return Ok(());
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
        let joined = ServerEvent::Joined {
            room: room_name.to_owned(),
            members: room.member_names().into_iter().map(String::from).collect(),
        };
        if let Some(client) = state.clients.get(&id) {
            client.outbox.deliver(&joined.to_json().into());
        }
        Ok(())
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

    /// Relays a message to every member of the room, the sender included.
    pub(crate) fn send_message(
        &self,
        id: ConnId,
        room_name: &str,
        text: String,
    ) -> Result<(), RoomError> {
        let state = self.state();
        let not_in_room = || RoomError::NotInRoom(room_name.to_owned());
        let client = state.clients.get(&id).ok_or_else(not_in_room)?;
        if !client.rooms.contains(room_name) {
            return Err(not_in_room());
        }
        let room = state.rooms.get(room_name).ok_or_else(not_in_room)?;
        // Numbered and stamped under the lock, so ids and times follow the
        // order in which every member receives the messages.
        let seq = self.next_message.fetch_add(1, Ordering::Relaxed);
        let event = ServerEvent::NewMessage(ChatMessage {
            id: format!("{}-{seq:x}", self.id_prefix),
            room: room_name.to_owned(),
            from: client.user.to_string(),
            text,
            sent_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        });
        state.broadcast(room, &event.to_json().into(), None);
        Ok(())
    }

    /// Rooms with members, sorted by name, with their distinct user counts.
    pub(crate) fn list_rooms(&self) -> Vec<RoomInfo> {
        let state = self.state();
        let mut rooms: Vec<RoomInfo> = state
            .rooms
            .iter()
            .map(|(name, room)| RoomInfo {
                name: name.clone(),
                members: room.member_names().len(),
            })
            .collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        rooms
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::session::Closer;

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
        let registry = Registry::new(8);
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
                members: vec!["alice".into(), "bob".into()]
            }]
        );
    }

    #[test]
    fn a_second_connection_of_the_same_user_is_one_member() {
        let registry = Registry::new(8);
        let mut alice = Conn::open(&registry, "alice", 16);
        let phone = Conn::open(&registry, "alice", 16);
        registry.join(alice.id, "r").expect("joins");
        registry.join(phone.id, "r").expect("joins");
        registry.disconnect(phone.id);
        assert_eq!(alice.events().len(), 1, "only alice's own joined");
        assert_eq!(
            registry.list_rooms(),
            [RoomInfo {
                name: "r".into(),
                members: 1
            }]
        );
        registry.disconnect(alice.id);
        assert!(
            registry.list_rooms().is_empty(),
            "empty rooms are forgotten"
        );
    }

    #[test]
    fn room_limit_and_membership_are_enforced() {
        let registry = Registry::new(2);
        let conn = Conn::open(&registry, "alice", 16);
        registry.join(conn.id, "a").expect("joins");
        registry.join(conn.id, "b").expect("joins");
        registry.join(conn.id, "a").expect("rejoining is fine");
        assert_eq!(registry.join(conn.id, "c"), Err(RoomError::TooManyRooms(2)));
        assert_eq!(
            registry.send_message(conn.id, "c", "hi".into()),
            Err(RoomError::NotInRoom("c".into()))
        );
        assert_eq!(
            registry.leave(conn.id, "c"),
            Err(RoomError::NotInRoom("c".into()))
        );
    }

    #[test]
    fn a_full_queue_closes_that_client_only() {
        let registry = Registry::new(8);
        let mut fast = Conn::open(&registry, "fast", 64);
        let slow = Conn::open(&registry, "slow", 2);
        registry.join(slow.id, "r").expect("joins");
        registry.join(fast.id, "r").expect("joins");
        for i in 0..5 {
            registry
                .send_message(fast.id, "r", format!("m{i}"))
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
