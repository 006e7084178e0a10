//! The room directory the selector lists, read from the server a page of
//! `room_list` at a time.

use chat_protocol::RoomInfo;

use crate::client::Command;
use crate::tui::app::App;

/// Most rooms the selector lists. Pages stop coming after this many (in
/// name order); a room beyond them is still joined by typing its name.
pub const MAX_DIRECTORY: usize = 1_000;

impl App {
    /// Starts reading the directory from its first page, unless a reading
    /// is under way (its pages would interleave with this one's).
    pub(super) fn list_rooms(&mut self) -> Vec<Command> {
        if self.listing.is_some() {
            return Vec::new();
        }
        self.listing = Some(Vec::new());
        vec![Command::ListRooms { after: None }]
    }

    /// One page came: asks for the next, or, after the last (or the
    /// [`MAX_DIRECTORY`]th room), shows the whole list at once, so the
    /// selector never shows half a list.
    pub(super) fn on_room_page(
        &mut self,
        rooms: Vec<RoomInfo>,
        next: Option<String>,
    ) -> Vec<Command> {
        let mut listing = self.listing.take().unwrap_or_default();
        listing.extend(rooms);
        match next {
            Some(after) if listing.len() < MAX_DIRECTORY => {
                self.listing = Some(listing);
                vec![Command::ListRooms { after: Some(after) }]
            }
            _ => {
                listing.truncate(MAX_DIRECTORY);
                self.directory = listing;
                Vec::new()
            }
        }
    }

    /// The reading under way will get no more answers (the connection was
    /// lost, or a page was refused): the next refresh starts afresh.
    pub(super) fn listing_ended(&mut self) {
        self.listing = None;
    }
}
