//! The lines of a chat pane: what they are, and how many screen rows each
//! takes at a terminal width. The app needs the heights to keep a scrolled
//! view steady and the renderer needs the rows to draw them; both ask here,
//! so neither depends on the other.

use crate::tui::text::{width, wrap};

/// Below this width the member list is hidden.
const MEMBERS_MIN_WIDTH: u16 = 70;
/// Below this width the room list is hidden too.
const ROOMS_MIN_WIDTH: u16 = 44;

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

/// The widths of the room list and the member list at a terminal width
/// (0: hidden, to leave the chat pane room on narrow terminals).
pub fn side_widths(total: u16) -> (u16, u16) {
    let rooms = if total >= ROOMS_MIN_WIDTH { 22 } else { 0 };
    let members = if total >= MEMBERS_MIN_WIDTH { 18 } else { 0 };
    (rooms, members)
}

/// `line` wrapped to a pane `pane` cells wide: the indent of its
/// continuation rows and the text of each row. A message's first row is its
/// text after the `time from: ` prefix; other lines carry their marker
/// (`— `, `! `) in the text.
pub fn wrap_parts(line: &ChatLine, pane: usize) -> (usize, Vec<String>) {
    match line {
        ChatLine::Message {
            time, from, text, ..
        } => {
            let indent = width(&format!("{time} {from}: ")).min(pane / 2);
            (indent, wrap(text, pane.saturating_sub(indent).max(1)))
        }
        ChatLine::Info(text) => (0, wrap(&format!("— {text}"), pane.max(1))),
        ChatLine::Error(text) => (0, wrap(&format!("! {text}"), pane.max(1))),
    }
}

/// How many screen rows `line` takes in the chat pane of a terminal
/// `terminal_width` cells wide.
pub fn line_height(line: &ChatLine, terminal_width: u16) -> usize {
    let (rooms, members) = side_widths(terminal_width);
    let pane = terminal_width.saturating_sub(rooms + members + 2);
    wrap_parts(line, usize::from(pane)).1.len()
}
