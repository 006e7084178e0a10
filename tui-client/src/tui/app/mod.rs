//! chat-tui's state and its update function. Nothing here touches a terminal
//! or a socket: events come in, commands for the session go out. The state
//! is here; what server events do to it is in [`reducer`], what keys do in
//! [`keys`], the room selector in [`selector`], and a room's pane in [`room`].

mod directory;
mod keys;
mod reducer;
mod room;
mod selector;

use crossterm::event::Event;

use crate::client::{Command, ConnState, SessionEvent};
use crate::tui::commands::HELP;
use crate::tui::input::{History, LineEditor};
use chat_protocol::RoomInfo;

pub use crate::tui::lines::ChatLine;
pub use directory::MAX_DIRECTORY;
pub use reducer::mentions;
pub use room::Room;
pub use selector::Entry;

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
    /// Every room on the server (up to [`MAX_DIRECTORY`]), from the last
    /// complete reading of `room_list` pages.
    pub directory: Vec<RoomInfo>,
    /// The pages of a reading under way.
    listing: Option<Vec<RoomInfo>>,
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
            listing: None,
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
                    self.list_rooms()
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
}
