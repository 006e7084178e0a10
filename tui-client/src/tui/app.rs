//! chat-tui's state and its update function. Nothing here touches a terminal
//! or a socket: events come in, commands for the session go out.

use std::collections::BTreeSet;

use chat_protocol::names::validate_room_name;
use chat_protocol::{ChatMessage, RoomInfo, ServerEvent};
use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEventKind};

use crate::client::{Command, ConnState, SessionEvent};
use crate::tui::commands::{self, Input, HELP};
use crate::tui::input::{History, LineEditor};
use crate::tui::text::sanitize;

/// Everything that can happen to the app.
#[derive(Debug)]
pub enum AppEvent {
    /// Terminal input (keys, mouse, paste, resize).
    Terminal(Event),
    /// Something from the network session.
    Session(SessionEvent),
    /// A second passed (for refreshing the room list).
    Tick,
}

/// How timestamps are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// In the machine's time zone.
    Local,
    /// In UTC (for tests and snapshots).
    Utc,
}

/// Where keys go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Focus {
    /// The message line.
    Input,
    /// The room selector: `filter` narrows the list or names a new room.
    Rooms {
        /// What was typed.
        filter: LineEditor,
        /// The highlighted entry of [`App::selector_entries`].
        selected: usize,
    },
}

/// The connection as the status line shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// A session state.
    Conn(ConnState),
    /// The session ended for good.
    Failed(String),
}

/// One line of a room's chat pane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatLine {
    /// A message.
    Message {
        /// `HH:MM`.
        time: String,
        /// Sender.
        from: String,
        /// Sanitized text.
        text: String,
        /// Sent by me.
        own: bool,
        /// Mentions my name.
        mention: bool,
    },
    /// Something that happened (joins, leaves, reconnects).
    Info(String),
    /// Something that went wrong.
    Error(String),
}

/// A room this client is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    /// Name.
    pub name: String,
    /// Members now.
    pub members: BTreeSet<String>,
    /// Chat pane contents, oldest first.
    pub lines: Vec<ChatLine>,
    /// Messages arrived while another room was shown.
    pub unread: usize,
    /// One of them mentions me.
    pub mentioned: bool,
    /// Lines scrolled up from the bottom (0: following new messages).
    pub scroll: usize,
    /// Where the unread messages began while the room was not shown, and how
    /// many there were: drawn as a "N new messages" marker once it is shown.
    pub marker: Option<(usize, usize)>,
    /// Index in `lines` of the first message not yet seen while away.
    first_unread: Option<usize>,
    /// The oldest sequence number shown, for asking for older history.
    pub oldest_seq: Option<u64>,
    /// Whether older history was asked for and has not arrived yet.
    history_pending: bool,
    /// Whether the start of the room's stored history is shown.
    pub history_complete: bool,
}

/// Lines kept per room; older ones are dropped.
const SCROLLBACK: usize = 5_000;

impl Room {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            members: BTreeSet::new(),
            lines: Vec::new(),
            unread: 0,
            mentioned: false,
            scroll: 0,
            marker: None,
            first_unread: None,
            oldest_seq: None,
            history_pending: false,
            history_complete: false,
        }
    }

    /// Adds a line; a view scrolled up stays on what it showed.
    fn push(&mut self, line: ChatLine, terminal_width: u16) {
        if self.scroll > 0 {
            self.scroll += crate::tui::ui::line_height(&line, terminal_width);
        }
        self.lines.push(line);
        if self.lines.len() > SCROLLBACK {
            let dropped = self.lines.len() - SCROLLBACK;
            self.lines.drain(..dropped);
            self.first_unread = self.first_unread.map(|i| i.saturating_sub(dropped));
            self.marker = self.marker.map(|(i, n)| (i.saturating_sub(dropped), n));
            self.history_complete = false;
        }
    }

    /// Puts older messages above what is shown (history paging).
    fn prepend(&mut self, older: Vec<ChatLine>) {
        let n = older.len();
        self.lines.splice(0..0, older);
        self.first_unread = self.first_unread.map(|i| i + n);
        self.marker = self.marker.map(|(i, c)| (i + n, c));
    }
}

/// An entry of the room selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Room name.
    pub name: String,
    /// Distinct members, when known.
    pub members: Option<usize>,
    /// Whether I am in it.
    pub joined: bool,
    /// Offer to create this (typed) room.
    pub create: bool,
}

/// The whole state of chat-tui.
#[derive(Debug)]
pub struct App {
    /// My user name.
    pub me: String,
    /// The server, for the status line.
    pub server: String,
    /// Connection state.
    pub status: Status,
    /// Joined rooms in the order they were joined (Alt+1 is the first).
    pub rooms: Vec<Room>,
    /// Index of the shown room in `rooms`.
    pub current: Option<usize>,
    /// Every room on the server, from the last `room_list`.
    pub directory: Vec<RoomInfo>,
    /// The message line.
    pub input: LineEditor,
    /// Sent lines.
    pub history: History,
    /// Where keys go.
    pub focus: Focus,
    /// A one-line note in the status bar (completion candidates, hints).
    pub note: Option<String>,
    /// Shown while no room is open: help and errors.
    pub lobby: Vec<ChatLine>,
    /// Terminal size, for paging.
    pub size: (u16, u16),
    /// Set when the app should exit; the text is printed after the terminal is restored.
    pub quit: Option<String>,
    clock: Clock,
    /// A room the user asked to join, to show once it is confirmed.
    switch_to: Option<String>,
    /// Whether the next `Connected` is a reconnection.
    was_connected: bool,
    ticks: u32,
}

/// Seconds between room list refreshes.
const ROOM_LIST_REFRESH_TICKS: u32 = 30;

impl App {
    /// A new app for `me` on `server`.
    pub fn new(me: &str, server: &str, clock: Clock) -> Self {
        Self {
            me: me.to_owned(),
            server: server.to_owned(),
            status: Status::Conn(ConnState::Connecting),
            rooms: Vec::new(),
            current: None,
            directory: Vec::new(),
            input: LineEditor::default(),
            history: History::default(),
            focus: Focus::Input,
            note: None,
            lobby: HELP
                .iter()
                .map(|l| ChatLine::Info((*l).to_owned()))
                .collect(),
            size: (80, 24),
            quit: None,
            clock,
            switch_to: None,
            was_connected: false,
            ticks: 0,
        }
    }

    /// The shown room.
    pub fn current_room(&self) -> Option<&Room> {
        self.current.and_then(|i| self.rooms.get(i))
    }

    fn current_room_mut(&mut self) -> Option<&mut Room> {
        self.current.and_then(|i| self.rooms.get_mut(i))
    }

    fn room_index(&self, name: &str) -> Option<usize> {
        self.rooms.iter().position(|r| r.name == name)
    }

    /// Whether messages can be sent now.
    pub fn connected(&self) -> bool {
        self.status == Status::Conn(ConnState::Connected)
    }

    /// Handles one event; returns the commands for the session.
    pub fn update(&mut self, event: AppEvent) -> Vec<Command> {
        match event {
            AppEvent::Terminal(event) => self.on_terminal(event),
            AppEvent::Session(event) => self.on_session(event),
            AppEvent::Tick => {
                self.ticks += 1;
                if self.ticks.is_multiple_of(ROOM_LIST_REFRESH_TICKS) && self.connected() {
                    vec![Command::ListRooms]
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// Shows room `index`, turning its unread count into a "new messages" marker.
    pub fn switch_to(&mut self, index: usize) {
        if let Some(previous) = self.current.and_then(|i| self.rooms.get_mut(i)) {
            previous.marker = None;
        }
        if let Some(room) = self.rooms.get_mut(index) {
            room.marker = room.first_unread.take().map(|line| (line, room.unread));
            room.unread = 0;
            room.mentioned = false;
            self.current = Some(index);
        }
    }

    // ----- session events -----

    fn on_session(&mut self, event: SessionEvent) -> Vec<Command> {
        match event {
            SessionEvent::State(state) => {
                let mut commands = Vec::new();
                if state == ConnState::Connected {
                    if self.was_connected {
                        self.info_everywhere("reconnected; rejoining rooms");
                    }
                    self.was_connected = true;
                    commands.push(Command::ListRooms);
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
                self.rooms[index].members = members.into_iter().collect();
                // Scrollback for a room just opened; a resume brought its
                // missed messages as new_message events instead.
                if self.rooms[index].lines.is_empty() && !history.is_empty() {
                    let lines = history.iter().map(|m| self.message_line(m)).collect();
                    let room = &mut self.rooms[index];
                    room.oldest_seq = history.first().map(|m| m.seq);
                    room.history_complete = history.first().is_some_and(|m| m.seq <= 1);
                    room.prepend(lines);
                }
                if self.switch_to.as_deref() == Some(room.as_str()) || self.current.is_none() {
                    self.switch_to = None;
                    self.switch_to(index);
                }
                return vec![Command::ListRooms];
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
                return vec![Command::ListRooms];
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
            ServerEvent::RoomList { rooms } => self.directory = rooms,
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

    // ----- terminal events -----

    fn on_terminal(&mut self, event: Event) -> Vec<Command> {
        match event {
            Event::Key(key) if key.kind != KeyEventKind::Release => self.on_key(key),
            Event::Paste(text) => {
                match &mut self.focus {
                    Focus::Input => self.input.insert_str(&text),
                    Focus::Rooms { filter, selected } => {
                        filter.insert_str(&text);
                        *selected = 0;
                    }
                }
                Vec::new()
            }
            Event::Mouse(mouse) => {
                match mouse.kind {
                    MouseEventKind::ScrollUp => {
                        self.scroll_by(3);
                        return self.more_history();
                    }
                    MouseEventKind::ScrollDown => self.scroll_by(-3),
                    _ => {}
                }
                Vec::new()
            }
            Event::Resize(w, h) => {
                self.size = (w, h);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn on_key(&mut self, key: KeyEvent) -> Vec<Command> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        // Keys that work everywhere.
        match key.code {
            KeyCode::Char('c') if ctrl => {
                self.quit = Some(String::new());
                return vec![Command::Quit];
            }
            KeyCode::Char('n') if ctrl => return self.cycle(1),
            KeyCode::Char('p') if ctrl => return self.cycle(-1),
            KeyCode::Char(d @ '1'..='9') if alt => {
                let index = d as usize - '1' as usize;
                if index < self.rooms.len() {
                    self.switch_to(index);
                }
                return Vec::new();
            }
            KeyCode::PageUp => {
                self.scroll_by(self.page() as isize);
                return self.more_history();
            }
            KeyCode::PageDown => {
                self.scroll_by(-(self.page() as isize));
                return Vec::new();
            }
            _ => {}
        }
        if matches!(self.focus, Focus::Rooms { .. }) {
            return self.on_selector_key(key);
        }
        self.note = None;
        match key.code {
            KeyCode::Enter => return self.submit(),
            KeyCode::Esc => {
                self.focus = Focus::Rooms {
                    filter: LineEditor::default(),
                    selected: 0,
                };
                return if self.connected() {
                    vec![Command::ListRooms]
                } else {
                    Vec::new()
                };
            }
            KeyCode::Tab => self.complete(),
            KeyCode::Up => self.history.up(&mut self.input),
            KeyCode::Down => self.history.down(&mut self.input),
            KeyCode::Left => self.input.left(),
            KeyCode::Right => self.input.right(),
            KeyCode::Home => self.input.home(),
            KeyCode::End => self.input.end(),
            KeyCode::Backspace => self.input.backspace(),
            KeyCode::Delete => self.input.delete(),
            KeyCode::Char('a') if ctrl => self.input.home(),
            KeyCode::Char('e') if ctrl => self.input.end(),
            KeyCode::Char('u') if ctrl => self.input.kill_to_start(),
            KeyCode::Char('w') if ctrl => self.input.delete_word(),
            KeyCode::Char(c) if !ctrl && !alt => self.input.insert(c),
            _ => {}
        }
        Vec::new()
    }

    fn cycle(&mut self, step: isize) -> Vec<Command> {
        if !self.rooms.is_empty() {
            let n = self.rooms.len() as isize;
            let from = self.current.map_or(0, |c| c as isize);
            self.switch_to((from + step).rem_euclid(n) as usize);
        }
        Vec::new()
    }

    /// Lines per page of the chat pane.
    fn page(&self) -> usize {
        usize::from(self.size.1.saturating_sub(8)).max(1)
    }

    /// Asks for older messages once the view has reached the top of what is loaded.
    fn more_history(&mut self) -> Vec<Command> {
        let width = self.size.0;
        let page = self.page();
        let Some(room) = self.current_room_mut() else {
            return Vec::new();
        };
        let total: usize = room
            .lines
            .iter()
            .map(|l| crate::tui::ui::line_height(l, width))
            .sum();
        let at_top = room.scroll + page >= total;
        match room.oldest_seq {
            Some(before)
                if at_top && !room.history_pending && !room.history_complete && before > 1 =>
            {
                room.history_pending = true;
                vec![Command::History {
                    room: room.name.clone(),
                    before,
                }]
            }
            _ => Vec::new(),
        }
    }

    fn scroll_by(&mut self, lines: isize) {
        if let Some(room) = self.current_room_mut() {
            room.scroll = room.scroll.saturating_add_signed(lines);
        }
    }

    fn complete(&mut self) {
        if self.input.cursor() != self.input.text().chars().count() {
            return;
        }
        let rooms: BTreeSet<&str> = self
            .directory
            .iter()
            .map(|r| r.name.as_str())
            .chain(self.rooms.iter().map(|r| r.name.as_str()))
            .collect();
        let members = self
            .current_room()
            .map(|r| r.members.clone())
            .unwrap_or_default();
        let (line, candidates) = commands::complete(
            self.input.text(),
            rooms.into_iter(),
            members.iter().map(String::as_str),
        );
        self.input.set(&line);
        if !candidates.is_empty() {
            self.note = Some(candidates.join("  "));
        }
    }

    fn submit(&mut self) -> Vec<Command> {
        let line = self.input.text().to_owned();
        if line.trim().is_empty() {
            return Vec::new();
        }
        match commands::parse(&line) {
            Input::Message(text) => {
                let Some(room) = self.current_room().map(|r| r.name.clone()) else {
                    self.note = Some("join a room first: /join NAME, or Esc to pick one".into());
                    return Vec::new();
                };
                if !self.connected() {
                    self.note =
                        Some("offline: the message stays here until the connection is back".into());
                    return Vec::new();
                }
                self.history.push(&line);
                self.input.take();
                if let Some(room) = self.current_room_mut() {
                    room.scroll = 0;
                    room.marker = None;
                }
                vec![Command::Send { room, text }]
            }
            other => {
                self.history.push(&line);
                self.input.take();
                self.run_command(other)
            }
        }
    }

    fn run_command(&mut self, input: Input) -> Vec<Command> {
        match input {
            Input::Message(_) => Vec::new(),
            Input::Join(room) => self.join(&room),
            Input::Leave(room) => {
                match room.or_else(|| self.current_room().map(|r| r.name.clone())) {
                    Some(room) => vec![Command::Leave(room)],
                    None => {
                        self.note = Some("not in a room".into());
                        Vec::new()
                    }
                }
            }
            Input::Rooms => {
                self.focus = Focus::Rooms {
                    filter: LineEditor::default(),
                    selected: 0,
                };
                vec![Command::ListRooms]
            }
            Input::Who => {
                let line = match self.current_room() {
                    Some(room) => {
                        let names: Vec<&str> = room.members.iter().map(String::as_str).collect();
                        ChatLine::Info(format!("in {}: {}", room.name, names.join(", ")))
                    }
                    None => ChatLine::Error("not in a room".into()),
                };
                self.push_here(line);
                Vec::new()
            }
            Input::Help => {
                for line in HELP {
                    self.push_here(ChatLine::Info(line.to_owned()));
                }
                Vec::new()
            }
            Input::Quit => {
                self.quit = Some(String::new());
                vec![Command::Quit]
            }
            Input::Invalid(hint) => {
                self.note = Some(hint);
                Vec::new()
            }
        }
    }

    fn push_here(&mut self, line: ChatLine) {
        let width = self.size.0;
        match self.current_room_mut() {
            Some(room) => {
                room.scroll = 0;
                room.push(line, width);
            }
            None => self.lobby.push(line),
        }
    }

    /// Joins (or, if joined already, shows) a room by name.
    fn join(&mut self, room: &str) -> Vec<Command> {
        if let Some(index) = self.room_index(room) {
            self.switch_to(index);
            return Vec::new();
        }
        if let Err(e) = validate_room_name(room) {
            self.note = Some(format!("invalid room name {room:?}: {e}"));
            return Vec::new();
        }
        self.switch_to = Some(room.to_owned());
        vec![Command::Join(room.to_owned())]
    }

    // ----- the room selector -----

    /// The selector's entries for its current filter: a "create" entry for a
    /// typed name no room has, then every matching room.
    pub fn selector_entries(&self) -> Vec<Entry> {
        let filter = match &self.focus {
            Focus::Rooms { filter, .. } => filter.text().to_owned(),
            Focus::Input => String::new(),
        };
        let mut entries: Vec<Entry> = self.room_overview();
        let needle = filter.to_lowercase();
        entries.retain(|e| e.name.to_lowercase().contains(&needle));
        if !filter.is_empty() && !entries.iter().any(|e| e.name == filter) {
            entries.insert(
                0,
                Entry {
                    name: filter,
                    members: None,
                    joined: false,
                    create: true,
                },
            );
        }
        entries
    }

    /// Every known room, sorted: the server's list plus joined rooms.
    pub fn room_overview(&self) -> Vec<Entry> {
        let mut entries: Vec<Entry> = self
            .directory
            .iter()
            .map(|r| Entry {
                name: r.name.clone(),
                members: Some(r.members),
                joined: self.room_index(&r.name).is_some(),
                create: false,
            })
            .collect();
        for room in &self.rooms {
            match entries.iter_mut().find(|e| e.name == room.name) {
                // My own rooms' counts are known exactly and live.
                Some(e) => e.members = Some(room.members.len()),
                None => entries.push(Entry {
                    name: room.name.clone(),
                    members: Some(room.members.len()),
                    joined: true,
                    create: false,
                }),
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries
    }

    fn on_selector_key(&mut self, key: KeyEvent) -> Vec<Command> {
        let entries = self.selector_entries();
        let count = entries.len();
        let Focus::Rooms { filter, selected } = &mut self.focus else {
            return Vec::new();
        };
        match key.code {
            KeyCode::Esc => self.focus = Focus::Input,
            KeyCode::Up => *selected = selected.saturating_sub(1),
            KeyCode::Down => *selected = (*selected + 1).min(count.saturating_sub(1)),
            KeyCode::Backspace => {
                filter.backspace();
                *selected = 0;
            }
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                filter.insert(c);
                *selected = 0;
            }
            KeyCode::Enter => {
                if let Some(name) = entries.get(*selected).map(|e| e.name.clone()) {
                    self.focus = Focus::Input;
                    return self.join(&name);
                }
            }
            _ => {}
        }
        Vec::new()
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
