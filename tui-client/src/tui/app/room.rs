//! One joined room: its members, its chat pane and where the user is in it.

use std::collections::BTreeSet;

use crate::tui::lines::{line_height, ChatLine};

/// A room this client is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    /// Name.
    pub name: String,
    /// Members now.
    pub members: BTreeSet<String>,
    /// Members the last `joined` counted but did not list (a room too big
    /// for one frame lists the first by name): shown as "and N more".
    pub unlisted: usize,
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
    pub(super) first_unread: Option<usize>,
    /// The oldest sequence number shown, for asking for older history.
    pub oldest_seq: Option<u64>,
    /// Whether older history was asked for and has not arrived yet.
    pub(super) history_pending: bool,
    /// Whether the start of the room's stored history is shown.
    pub history_complete: bool,
}

/// Lines kept per room; older ones are dropped.
const SCROLLBACK: usize = 5_000;

impl Room {
    pub(super) fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            members: BTreeSet::new(),
            unlisted: 0,
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
    pub(super) fn push(&mut self, line: ChatLine, terminal_width: u16) {
        if self.scroll > 0 {
            self.scroll += line_height(&line, terminal_width);
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
    pub(super) fn prepend(&mut self, older: Vec<ChatLine>) {
        let n = older.len();
        self.lines.splice(0..0, older);
        self.first_unread = self.first_unread.map(|i| i + n);
        self.marker = self.marker.map(|(i, c)| (i + n, c));
    }
}
