//! `chat-server admin delete-message`: refused until chat-server can delete
//! a message. Deleting the row behind the server's back would leave every
//! client that has the message showing it, and resumes and history pages
//! disagreeing with them; a deletion has to go through the room log, as an
//! event members receive, and the protocol has no such event yet.

use super::exit::AdminError;

/// The refusal; nothing is opened or changed.
pub(crate) fn refuse(room: &str, seq: u64) -> AdminError {
    AdminError::Refused(format!(
        "cannot delete message {seq} of room {room:?}: chat-server has no message deletion yet \
         (it must go through the room log, so that members see the message go, and the protocol \
         has no event for that); nothing was changed"
    ))
}
