//! The input line: editing by character (never splitting a UTF-8 sequence),
//! its on-screen window, and the history of what was sent.

use crate::tui::text::{char_width, width};

/// A single-line text editor with a cursor counted in characters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LineEditor {
    text: String,
    /// Cursor position in characters (0..=char count).
    cursor: usize,
}

impl LineEditor {
    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The cursor, in characters from the start.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Whether nothing is typed.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Replaces the text, cursor at the end.
    pub fn set(&mut self, text: &str) {
        self.text = text.to_owned();
        self.cursor = self.text.chars().count();
    }

    /// Empties the line and returns what it held.
    pub fn take(&mut self) -> String {
        self.cursor = 0;
        std::mem::take(&mut self.text)
    }

    fn byte_index(&self, char_index: usize) -> usize {
        self.text
            .char_indices()
            .nth(char_index)
            .map_or(self.text.len(), |(i, _)| i)
    }

    /// Inserts at the cursor. Line breaks become spaces: the line is one line.
    pub fn insert_str(&mut self, s: &str) {
        let clean: String = s
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .filter(|c| !c.is_control())
            .collect();
        let at = self.byte_index(self.cursor);
        self.text.insert_str(at, &clean);
        self.cursor += clean.chars().count();
    }

    /// Inserts one character at the cursor.
    pub fn insert(&mut self, c: char) {
        self.insert_str(c.encode_utf8(&mut [0; 4]));
    }

    /// Deletes the character before the cursor.
    pub fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            let at = self.byte_index(self.cursor);
            self.text.remove(at);
        }
    }

    /// Deletes the character under the cursor.
    pub fn delete(&mut self) {
        if self.cursor < self.text.chars().count() {
            let at = self.byte_index(self.cursor);
            self.text.remove(at);
        }
    }

    /// Moves left one character.
    pub fn left(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }

    /// Moves right one character.
    pub fn right(&mut self) {
        self.cursor = (self.cursor + 1).min(self.text.chars().count());
    }

    /// Moves to the start.
    pub fn home(&mut self) {
        self.cursor = 0;
    }

    /// Moves to the end.
    pub fn end(&mut self) {
        self.cursor = self.text.chars().count();
    }

    /// Deletes from the start to the cursor (Ctrl+U).
    pub fn kill_to_start(&mut self) {
        let at = self.byte_index(self.cursor);
        self.text.replace_range(..at, "");
        self.cursor = 0;
    }

    /// Deletes the word before the cursor (Ctrl+W).
    pub fn delete_word(&mut self) {
        let end = self.byte_index(self.cursor);
        let before = &self.text[..end];
        let trimmed = before.trim_end_matches(' ');
        let start = trimmed.rfind(' ').map_or(0, |i| i + 1);
        let removed = self.text[start..end].chars().count();
        self.text.replace_range(start..end, "");
        self.cursor -= removed;
    }

    /// What to show in a field `field_width` cells wide, and the cursor's cell
    /// offset in it: the window scrolls so that the cursor stays visible.
    pub fn view(&self, field_width: usize) -> (String, usize) {
        let field_width = field_width.max(1);
        let chars: Vec<char> = self.text.chars().collect();
        let cursor_x = width(&chars[..self.cursor].iter().collect::<String>());
        // Start the window far enough right that the cursor cell fits.
        let mut start = 0;
        let mut skipped = 0;
        while cursor_x - skipped >= field_width {
            skipped += char_width(chars[start]);
            start += 1;
        }
        let mut shown = String::new();
        let mut used = 0;
        for &c in &chars[start..] {
            let w = char_width(c);
            if used + w > field_width {
                break;
            }
            shown.push(c);
            used += w;
        }
        (shown, cursor_x - skipped)
    }
}

/// Lines sent before, recalled with Up and Down.
#[derive(Debug, Default)]
pub struct History {
    entries: Vec<String>,
    /// Position while browsing; `None` when editing a new line.
    browsing: Option<usize>,
    /// The unsent line, restored when browsing past the newest entry.
    draft: String,
}

/// Most lines remembered.
const HISTORY_LIMIT: usize = 500;

impl History {
    /// Remembers a sent line (not repeating the previous one).
    pub fn push(&mut self, line: &str) {
        if !line.is_empty() && self.entries.last().map(String::as_str) != Some(line) {
            self.entries.push(line.to_owned());
            if self.entries.len() > HISTORY_LIMIT {
                self.entries.remove(0);
            }
        }
        self.browsing = None;
    }

    /// Recalls the previous line into `editor`.
    pub fn up(&mut self, editor: &mut LineEditor) {
        let next = match self.browsing {
            None if self.entries.is_empty() => return,
            None => {
                self.draft = editor.text().to_owned();
                self.entries.len() - 1
            }
            Some(0) => 0,
            Some(i) => i - 1,
        };
        self.browsing = Some(next);
        editor.set(&self.entries[next]);
    }

    /// Recalls the next line, or the draft after the newest.
    pub fn down(&mut self, editor: &mut LineEditor) {
        match self.browsing {
            None => {}
            Some(i) if i + 1 < self.entries.len() => {
                self.browsing = Some(i + 1);
                editor.set(&self.entries[i + 1]);
            }
            Some(_) => {
                self.browsing = None;
                editor.set(&self.draft);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(s: &str) -> LineEditor {
        let mut e = LineEditor::default();
        e.insert_str(s);
        e
    }

    #[test]
    fn edits_multibyte_text_by_character() {
        let mut e = typed("héllo 你好");
        e.left();
        e.backspace(); // removes 你
        assert_eq!(e.text(), "héllo 好");
        e.home();
        e.right();
        e.delete(); // removes é
        assert_eq!(e.text(), "hllo 好");
        e.insert('👋');
        assert_eq!(e.text(), "h👋llo 好");
        assert_eq!(e.cursor(), 2);
        e.end();
        e.delete_word();
        assert_eq!(e.text(), "h👋llo ");
        e.kill_to_start();
        assert_eq!((e.text(), e.cursor()), ("", 0));
    }

    #[test]
    fn pasted_newlines_and_controls_do_not_enter_the_line() {
        assert_eq!(typed("a\nb\x1b[31mc").text(), "a b[31mc");
    }

    #[test]
    fn the_view_keeps_the_cursor_visible_with_wide_characters() {
        let e = typed("你好世界");
        // 8 cells of text plus the cursor cell do not fit in 6.
        let (shown, x) = e.view(6);
        assert_eq!((shown.as_str(), x), ("世界", 4));
        let mut e = e;
        e.home();
        assert_eq!(e.view(6), ("你好世".to_owned(), 0));
    }

    #[test]
    fn history_recalls_lines_and_restores_the_draft() {
        let mut h = History::default();
        h.push("first");
        h.push("second");
        h.push("second");
        let mut e = typed("draft");
        h.up(&mut e);
        assert_eq!(e.text(), "second");
        h.up(&mut e);
        h.up(&mut e);
        assert_eq!(e.text(), "first");
        h.down(&mut e);
        assert_eq!(e.text(), "second");
        h.down(&mut e);
        assert_eq!(e.text(), "draft");
    }
}
