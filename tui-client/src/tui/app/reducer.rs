//! What the session's events do to the app: the reducer of server events.

use chat_protocol::{ChatMessage, ClientEvent, ServerEvent};

use crate::client::{Command, ConnState, SessionEvent};
use crate::tui::app::{App, ChatLine, Clock, Room, Status};
use crate::tui::text::sanitize;

impl App {
    // ----- session events -----

    pub(super) fn on_session(&mut self, event: SessionEvent) -> Vec<Command> {
        match event {
            SessionEvent::State(state) => {
                let mut commands = Vec::new();
                if state == ConnState::Connected {
                    if self.was_connected {
                        self.info_everywhere("reconnected; rejoining rooms");
                    }
                    self.was_connected = true;
                    self.listing_ended();
                    commands.extend(self.list_rooms());
                } else if let ConnState::Reconnecting { reason, .. } = &state {
                    if self.status == Status::Conn(ConnState::Connected) {
                        self.info_everywhere(&format!("connection lost: {reason}"));
                    }
                }
                self.status = Status::Conn(state);
                commands
            }
            SessionEvent::Server(event) => self.on_server(event),
            SessionEvent::NotSent { room, text } => {
                let line = ChatLine::Error(format!("not sent (offline): {}", sanitize(&text)));
                match self.room_index(&room) {
                    Some(i) => self.rooms[i].push(line, self.size.0),
                    None => self.lobby.push(line),
                }
                if self.input.is_empty() {
                    self.input.set(&text);
                }
                Vec::new()
            }
            SessionEvent::Refused {
                request, message, ..
            } => {
                self.on_refused(request, &message);
                Vec::new()
            }
            SessionEvent::HistoryReset { room } => {
                if let Some(i) = self.room_index(&room) {
                    let members = std::mem::take(&mut self.rooms[i].members);
                    self.rooms[i] = Room::new(&room);
                    self.rooms[i].members = members;
                    self.rooms[i].push(
                        ChatLine::Error(
                            "the server's message history was reset; earlier messages are gone"
                                .into(),
                        ),
                        self.size.0,
                    );
                }
                Vec::new()
            }
            SessionEvent::Fatal(error) => {
                self.status = Status::Failed(error.to_string());
                if !self.was_connected {
                    // Never got in (wrong password, say): say why and leave.
                    self.quit = Some(format!("chat-tui: {error}"));
                }
                Vec::new()
            }
        }
    }

    fn on_server(&mut self, event: ServerEvent) -> Vec<Command> {
        match event {
            ServerEvent::Welcome { user, .. } => self.me = user,
            ServerEvent::Joined {
                room,
                members,
                members_total,
                history,
                ..
            } => {
                let index = match self.room_index(&room) {
                    Some(i) => i,
                    None => {
                        self.rooms.push(Room::new(&room));
                        self.rooms.len() - 1
                    }
                };
                self.rooms[index].unlisted =
                    members_total.unwrap_or(0).saturating_sub(members.len());
                self.rooms[index].members = members.into_iter().collect();
                // Scrollback for a room that shows no message yet (just
                // opened, or its history was reset); a resume brought its
                // missed messages as new_message events instead. Whatever
                // the room shows already is notes, which came first.
                if self.rooms[index].oldest_seq.is_none() && !history.is_empty() {
                    let lines: Vec<ChatLine> =
                        history.iter().map(|m| self.message_line(m)).collect();
                    let width = self.size.0;
                    let room = &mut self.rooms[index];
                    room.oldest_seq = history.first().map(|m| m.seq);
                    room.history_complete = history.first().is_some_and(|m| m.seq <= 1);
                    for line in lines {
                        room.push(line, width);
                    }
                }
                if self.switch_to.as_deref() == Some(room.as_str()) || self.current.is_none() {
                    self.switch_to = None;
                    self.switch_to(index);
                }
                return self.list_rooms();
            }
            ServerEvent::Left { room } => {
                if let Some(index) = self.room_index(&room) {
                    self.rooms.remove(index);
                    self.current = match self.current {
                        _ if self.rooms.is_empty() => None,
                        Some(c) if c > index => Some(c - 1),
                        Some(c) => Some(c.min(self.rooms.len() - 1)),
                        None => None,
                    };
                }
                return self.list_rooms();
            }
            ServerEvent::MemberJoined { room, user } => {
                if let Some(i) = self.room_index(&room) {
                    self.rooms[i].members.insert(user.clone());
                    self.rooms[i].push(ChatLine::Info(format!("{user} joined")), self.size.0);
                }
            }
            ServerEvent::MemberLeft { room, user } => {
                if let Some(i) = self.room_index(&room) {
                    self.rooms[i].members.remove(&user);
                    self.rooms[i].push(ChatLine::Info(format!("{user} left")), self.size.0);
                }
            }
            ServerEvent::NewMessage(message) => self.on_message(message),
            ServerEvent::RoomList { rooms, next } => return self.on_room_page(rooms, next),
            ServerEvent::HistoryGap { room, from, to } => {
                if let Some(i) = self.room_index(&room) {
                    let note =
                        format!("messages {from} to {to} are no longer stored on the server");
                    self.rooms[i].push(ChatLine::Error(note), self.size.0);
                }
            }
            ServerEvent::HistoryPage {
                room,
                messages,
                first_seq,
            } => {
                if let Some(i) = self.room_index(&room) {
                    let lines = messages.iter().map(|m| self.message_line(m)).collect();
                    let room = &mut self.rooms[i];
                    room.history_pending = false;
                    if let Some(first) = messages.first() {
                        room.oldest_seq = Some(first.seq);
                    }
                    room.history_complete = messages.is_empty()
                        || first_seq.is_none_or(|f| messages.first().is_some_and(|m| m.seq <= f));
                    room.prepend(lines);
                }
            }
            // The session resends unacknowledged messages itself.
            ServerEvent::Ack { .. } => {}
            ServerEvent::Error { message, .. } => {
                let line = ChatLine::Error(sanitize(&message));
                let width = self.size.0;
                match self.current_room_mut() {
                    Some(room) => room.push(line, width),
                    None => self.lobby.push(line),
                }
            }
        }
        Vec::new()
    }

    /// Shows a refusal where its request was made: in the room it named, or
    /// in the room shown. A refused message goes back to the input line (if
    /// that is empty) so it can be sent again.
    fn on_refused(&mut self, request: ClientEvent, message: &str) {
        let (room, line) = match &request {
            ClientEvent::SendMessage { room, text, .. } => {
                if self.input.is_empty() {
                    self.input.set(text);
                }
                (
                    Some(room.as_str()),
                    format!("not sent: {} ({})", sanitize(text), sanitize(message)),
                )
            }
            ClientEvent::JoinRoom { room, .. }
            | ClientEvent::LeaveRoom { room }
            | ClientEvent::History { room, .. } => (Some(room.as_str()), sanitize(message)),
            ClientEvent::ListRooms { .. } => {
                self.listing_ended();
                (None, sanitize(message))
            }
        };
        let width = self.size.0;
        let line = ChatLine::Error(line);
        match room.and_then(|r| self.room_index(r)).or(self.current) {
            Some(i) => self.rooms[i].push(line, width),
            None => self.lobby.push(line),
        }
    }

    fn message_line(&self, m: &ChatMessage) -> ChatLine {
        let own = m.from == self.me;
        ChatLine::Message {
            time: self.format_time(&m.sent_at),
            from: m.from.clone(),
            text: sanitize(&m.text),
            own,
            mention: !own && mentions(&m.text, &self.me),
        }
    }

    fn on_message(&mut self, m: ChatMessage) {
        let Some(index) = self.room_index(&m.room) else {
            return;
        };
        let line = self.message_line(&m);
        let mention = matches!(line, ChatLine::Message { mention: true, .. });
        let shown = self.current == Some(index);
        let width = self.size.0;
        let room = &mut self.rooms[index];
        if room.oldest_seq.is_none() {
            room.oldest_seq = Some(m.seq);
        }
        if !shown {
            if room.unread == 0 {
                room.first_unread = Some(room.lines.len());
            }
            room.unread += 1;
            room.mentioned |= mention;
        }
        room.push(line, width);
    }

    fn format_time(&self, rfc3339: &str) -> String {
        let parsed = chrono::DateTime::parse_from_rfc3339(rfc3339);
        match (parsed, self.clock) {
            (Ok(t), Clock::Local) => t.with_timezone(&chrono::Local).format("%H:%M").to_string(),
            (Ok(t), Clock::Utc) => t.with_timezone(&chrono::Utc).format("%H:%M").to_string(),
            (Err(_), _) => "--:--".to_owned(),
        }
    }

    fn info_everywhere(&mut self, text: &str) {
        let width = self.size.0;
        for room in &mut self.rooms {
            room.push(ChatLine::Info(text.to_owned()), width);
        }
        self.lobby.push(ChatLine::Info(text.to_owned()));
    }
}

/// Whether `text` mentions `name` as a word, ignoring case.
pub fn mentions(text: &str, name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    let text = text.to_lowercase();
    let name = name.to_lowercase();
    let is_name_char = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | '.');
    text.match_indices(&name).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + name.len()..].chars().next();
        // A trailing '.' ends a sentence rather than continuing the name.
        !before.is_some_and(is_name_char) && !after.is_some_and(|c| is_name_char(c) && c != '.')
    })
}
