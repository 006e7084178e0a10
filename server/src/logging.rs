//! The text log's field formatting. Values that come from clients (user and
//! room names as typed at login, Origin headers, error texts that quote
//! them) are written with every control character escaped, so that none can
//! start a line of its own (`\n`) or reach a terminal as an escape sequence
//! (`\u{1b}`). The JSON log needs nothing of this: JSON escapes them itself.

use std::fmt::{self, Debug, Write};

use tracing::field::Field;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{debug_fn, Writer};
use tracing_subscriber::fmt::FormatFields;

/// Fields as `name=value`, space separated, the message first and unnamed
/// (as tracing-subscriber's default), with control characters escaped.
pub fn escaped_fields() -> impl for<'w> FormatFields<'w> + Send + Sync + 'static {
    debug_fn(write_field).delimited(" ")
}

fn write_field(writer: &mut Writer<'_>, field: &Field, value: &dyn Debug) -> fmt::Result {
    if field.name() != "message" {
        write!(writer, "{}=", field.name())?;
    }
    // A `%`-recorded value's Debug is its Display: the text as given.
    let mut escaping = Escaping(writer);
    write!(escaping, "{value:?}")
}

/// Writes through, with control characters in Rust's escaped form.
struct Escaping<'a, 'w>(&'a mut Writer<'w>);

impl Write for Escaping<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if c.is_control() {
                write!(self.0, "{}", c.escape_debug())?;
            } else {
                self.0.write_char(c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(value: &str) -> String {
        let mut out = String::new();
        let mut writer = Writer::new(&mut out);
        Escaping(&mut writer).write_str(value).expect("writes");
        out
    }

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(format("x\nFORGED"), "x\\nFORGED");
        assert_eq!(format("\u{1b}[31mred\r\t"), "\\u{1b}[31mred\\r\\t");
        assert_eq!(format("grüße 你好 👋 \"q\""), "grüße 你好 👋 \"q\"");
        assert_eq!(format("\u{85}\u{9b}"), "\\u{85}\\u{9b}", "C1 controls too");
    }
}
