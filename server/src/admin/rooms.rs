//! `chat-server admin rooms`: the rooms of the message log, read without
//! writing (a read-only connection to `messages.db`, or plain reads in
//! PostgreSQL), so a running server's log stays the only writer.

use serde_json::json;

use super::exit::AdminError;
use super::format;
use super::store::Store;
use super::Report;

/// Lists every room that ever had a message, by name.
pub(crate) fn list(store: &Store) -> Result<Report, AdminError> {
    let rooms = store.rooms()?;
    let dash = || "-".to_owned();
    let rows: Vec<Vec<String>> = rooms
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.messages.to_string(),
                r.first_seq.map_or_else(dash, |s| s.to_string()),
                r.last_seq.to_string(),
                r.last_message_at.clone().unwrap_or_else(dash),
            ]
        })
        .collect();
    let messages: u64 = rooms.iter().map(|r| r.messages).sum();
    let human = format!(
        "{}\n{}, {} stored",
        format::table(
            &["ROOM", "MESSAGES", "FIRST SEQ", "LAST SEQ", "LAST MESSAGE"],
            &rows
        ),
        format::count(rooms.len(), "room", "rooms"),
        format::count(
            usize::try_from(messages).unwrap_or(usize::MAX),
            "message",
            "messages"
        ),
    );
    let json = json!({
        "rooms": rooms.iter().map(|r| json!({
            "name": r.name,
            "messages": r.messages,
            "first_seq": r.first_seq,
            "last_seq": r.last_seq,
            "last_message_at": r.last_message_at,
        })).collect::<Vec<_>>(),
    });
    Ok(Report { human, json })
}
