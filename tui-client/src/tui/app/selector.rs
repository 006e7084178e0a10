//! The room selector: the list of rooms, filtered by what is typed, with an
//! entry to create a room no one has yet.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::client::Command;
use crate::tui::app::{App, Focus};

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

impl App {
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

    pub(super) fn on_selector_key(&mut self, key: KeyEvent) -> Vec<Command> {
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
