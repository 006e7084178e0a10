//! Making received text safe and measuring it on screen.

use unicode_width::UnicodeWidthChar;

/// Replaces every character that could act on the terminal (C0 and C1
/// controls, DEL, bidirectional overrides) with a visible, inert stand-in,
/// so that a message can never move the cursor, change colours, retitle the
/// window or reorder text. Newlines stay (they separate lines); tabs become a
/// space.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push('\n'),
            '\t' => out.push(' '),
            // C0 controls have "control pictures" at U+2400 + code: ESC shows as ␛.
            '\0'..='\x1f' => out.push(char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}')),
            '\x7f' => out.push('\u{2421}'),
            '\u{80}'..='\u{9f}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{061c}' => out.push_str(&format!("<U+{:04X}>", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Display width of one character in terminal cells.
pub fn char_width(c: char) -> usize {
    c.width().unwrap_or(0)
}

/// Display width of a string in terminal cells.
pub fn width(text: &str) -> usize {
    text.chars().map(char_width).sum()
}

/// Wraps sanitized text into lines of at most `width` cells: at spaces where
/// possible, inside a word when it is longer than a line, and never splitting
/// a double-width character across lines. Explicit newlines start new lines.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(2);
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        let mut line_width = 0;
        for word in split_keeping_spaces(paragraph) {
            let word_width = self::width(word);
            if line_width + word_width <= width {
                line.push_str(word);
                line_width += word_width;
                continue;
            }
            if word.trim().is_empty() {
                // A space that does not fit just ends the line.
                flush(&mut lines, &mut line);
                line_width = 0;
                continue;
            }
            if !line.is_empty() && word_width <= width {
                flush(&mut lines, &mut line);
                line_width = 0;
            }
            for c in word.chars() {
                let w = char_width(c);
                if line_width + w > width {
                    flush(&mut lines, &mut line);
                    line_width = 0;
                }
                line.push(c);
                line_width += w;
            }
        }
        flush(&mut lines, &mut line);
    }
    lines
}

/// Ends a line; spaces at a break are not worth showing.
fn flush(lines: &mut Vec<String>, line: &mut String) {
    lines.push(line.trim_end().to_owned());
    line.clear();
}

/// Splits into words and single spaces, keeping both.
fn split_keeping_spaces(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c == ' ' {
            if start < i {
                parts.push(&text[start..i]);
            }
            parts.push(&text[i..i + 1]);
            start = i + 1;
        }
    }
    if start < text.len() {
        parts.push(&text[start..]);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_become_inert_text() {
        let hostile = "\x1b[2J\x1b]0;pwned\x07red\x1b[31m\u{9b}31m\u{202e}txt.exe\x7f";
        let safe = sanitize(hostile);
        assert!(!safe.chars().any(|c| c.is_control()), "{safe:?}");
        assert_eq!(safe, "␛[2J␛]0;pwned␇red␛[31m<U+009B>31m<U+202E>txt.exe␡");
        assert_eq!(sanitize("tab\there\nnext"), "tab here\nnext");
        assert_eq!(sanitize("héllo 你好 👋"), "héllo 你好 👋");
    }

    #[test]
    fn wraps_at_spaces_and_measures_wide_characters() {
        assert_eq!(wrap("the quick brown fox", 10), ["the quick", "brown fox"]);
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        // Each CJK character is two cells: three fit in 7 cells, not four.
        assert_eq!(wrap("你好世界你好", 7), ["你好世", "界你好"]);
        assert_eq!(width("你好👋"), 6);
        assert_eq!(wrap("one\ntwo", 10), ["one", "two"]);
        assert_eq!(wrap("", 10), [""]);
        for line in wrap("ab 你好世界 emoji👋👋👋 done", 5) {
            assert!(width(&line) <= 5, "{line:?}");
        }
    }
}
