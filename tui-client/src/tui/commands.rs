//! Slash commands and Tab completion.

/// A line typed into the input, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A chat message (a leading `//` sends a literal `/`).
    Message(String),
    /// `/join NAME`.
    Join(String),
    /// `/leave [NAME]`.
    Leave(Option<String>),
    /// `/rooms`.
    Rooms,
    /// `/who`.
    Who,
    /// `/help`.
    Help,
    /// `/quit`.
    Quit,
    /// Something starting with `/` that is not a command, with a hint.
    Invalid(String),
}

/// Every command, for completion and help.
pub const COMMANDS: [&str; 6] = ["/join", "/leave", "/rooms", "/who", "/help", "/quit"];

/// The help text, one line each.
pub const HELP: [&str; 14] = [
    "/join NAME      join a room, creating it if new",
    "/leave [NAME]   leave this room (or NAME)",
    "/rooms          pick from every room on the server",
    "/who            who is in this room",
    "/help           this help;  /quit  leave",
    "Esc             room selector: arrows + Enter, or type a new name",
    "Ctrl+N, Ctrl+P  next, previous room;  Alt+1..9  room N",
    "Tab             complete commands, rooms and names",
    "Up, Down        recall what you sent",
    "PgUp, PgDn      scroll (the mouse wheel too)",
    "Ctrl+A, Ctrl+E  start, end of line",
    "Ctrl+U, Ctrl+W  delete to start, delete word",
    "Ctrl+C          quit",
    "// at the start sends a line that begins with /",
];

/// Understands one line of input.
pub fn parse(line: &str) -> Input {
    if let Some(literal) = line.strip_prefix("//") {
        return Input::Message(format!("/{literal}"));
    }
    if !line.starts_with('/') {
        return Input::Message(line.to_owned());
    }
    let mut words = line.split_whitespace();
    let command = words.next().unwrap_or_default();
    let arg = words.next().map(str::to_owned);
    match (command, arg) {
        ("/join" | "/j", Some(room)) => Input::Join(room),
        ("/join" | "/j", None) => Input::Invalid("usage: /join NAME".into()),
        ("/leave" | "/part", room) => Input::Leave(room),
        ("/rooms" | "/list", _) => Input::Rooms,
        ("/who" | "/names", _) => Input::Who,
        ("/help" | "/?", _) => Input::Help,
        ("/quit" | "/exit", _) => Input::Quit,
        (other, _) => Input::Invalid(format!("unknown command {other}; /help lists them")),
    }
}

/// Completes the word before the cursor of `line` (cursor at the end).
/// Returns the new line, and the candidates when more than one matched.
pub fn complete<'a>(
    line: &str,
    rooms: impl Iterator<Item = &'a str>,
    members: impl Iterator<Item = &'a str>,
) -> (String, Vec<String>) {
    let start = line.rfind(' ').map_or(0, |i| i + 1);
    let (head, word) = line.split_at(start);
    let candidates: Vec<String> = if head.is_empty() && word.starts_with('/') {
        COMMANDS.iter().map(|c| c.to_string()).collect()
    } else if head.trim_end() == "/join" || head.trim_end() == "/leave" {
        rooms.map(str::to_owned).collect()
    } else {
        members.map(str::to_owned).collect()
    };
    let lower = word.to_lowercase();
    let mut matches: Vec<String> = candidates
        .into_iter()
        .filter(|c| c.to_lowercase().starts_with(&lower))
        .collect();
    matches.sort();
    matches.dedup();
    match matches.as_slice() {
        [] => (line.to_owned(), Vec::new()),
        [only] => {
            // A name alone at the start of a message addresses that person.
            let suffix = if head.is_empty() && !only.starts_with('/') {
                ": "
            } else {
                " "
            };
            (format!("{head}{only}{suffix}"), Vec::new())
        }
        many => {
            let prefix = common_prefix(many);
            let completed = if prefix.len() > word.len() {
                prefix
            } else {
                word.to_owned()
            };
            (format!("{head}{completed}"), many.to_vec())
        }
    }
}

fn common_prefix(words: &[String]) -> String {
    let first = &words[0];
    let mut end = first.len();
    for w in &words[1..] {
        end = first
            .char_indices()
            .zip(w.chars())
            .take_while(|((_, a), b)| a == b)
            .last()
            .map_or(0, |((i, a), _)| i + a.len_utf8())
            .min(end);
    }
    first[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_and_messages() {
        assert_eq!(parse("hello"), Input::Message("hello".into()));
        assert_eq!(
            parse("//join is a command"),
            Input::Message("/join is a command".into())
        );
        assert_eq!(parse("/join dev"), Input::Join("dev".into()));
        assert_eq!(parse("/leave"), Input::Leave(None));
        assert_eq!(parse("/leave dev"), Input::Leave(Some("dev".into())));
        assert_eq!(parse("/quit"), Input::Quit);
        assert!(matches!(parse("/join"), Input::Invalid(_)));
        assert!(matches!(parse("/dance"), Input::Invalid(_)));
    }

    #[test]
    fn completes_commands_rooms_and_members() {
        let rooms = ["general", "gaming", "dev"];
        let members = ["alice", "albert", "bob"];
        let run = |line: &str| complete(line, rooms.iter().copied(), members.iter().copied());
        assert_eq!(run("/jo"), ("/join ".into(), vec![]));
        assert_eq!(run("/join d"), ("/join dev ".into(), vec![]));
        let (line, many) = run("/join g");
        assert_eq!(line, "/join g");
        assert_eq!(many, ["gaming", "general"]);
        assert_eq!(run("bo"), ("bob: ".into(), vec![]));
        assert_eq!(run("hi bo"), ("hi bob ".into(), vec![]));
        assert_eq!(run("al").0, "al");
        assert_eq!(run("ali"), ("alice: ".into(), vec![]));
        assert_eq!(run("zz"), ("zz".into(), vec![]));
    }
}
