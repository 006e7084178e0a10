//! What keys, the mouse, pastes and typed commands do: terminal input to
//! actions on the app and commands for the session.

use chat_protocol::names::validate_room_name;
use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEventKind};

use std::collections::BTreeSet;

use crate::client::Command;
use crate::tui::app::{App, ChatLine, Focus};
use crate::tui::commands::{self, Input, HELP};
use crate::tui::input::LineEditor;
use crate::tui::lines::line_height;

impl App {
    // ----- terminal events -----

    pub(super) fn on_terminal(&mut self, event: Event) -> Vec<Command> {
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
                    self.list_rooms()
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
        let total: usize = room.lines.iter().map(|l| line_height(l, width)).sum();
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
                self.list_rooms()
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
    pub(super) fn join(&mut self, room: &str) -> Vec<Command> {
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
}
