//! `chat-server admin disable` and `enable`.
//!
//! The change is made in the store; a running server learns of a disable
//! within about a second (it polls the disabled accounts), then ends the
//! user's sessions it holds in memory and closes the user's connections with
//! 4003. Disabling also deletes the sessions from the store at once.

use serde_json::json;

use super::exit::AdminError;
use super::store::Store;
use super::Report;

/// Disables (`disabled`) or enables `user`. Doing it twice is no error: the
/// report says nothing changed.
pub(crate) fn set(store: &Store, user: &str, disabled: bool) -> Result<Report, AdminError> {
    let done = store.set_disabled(user, disabled)?;
    let name = &done.user;
    let human = match (disabled, done.changed) {
        (true, changed) => {
            let head = if changed {
                format!("disabled {name}")
            } else {
                format!("{name} was disabled already")
            };
            format!(
                "{head}: {} ended; a running server closes {name}'s connections \
                 (close code 4003) within about a second, and logins get 403 account_disabled",
                super::format::count(done.sessions_ended, "session", "sessions"),
            )
        }
        (false, true) => format!("enabled {name}: logins work again"),
        (false, false) => format!("{name} was not disabled; nothing changed"),
    };
    let mut json = json!({
        "user": name,
        "disabled": disabled,
        "changed": done.changed,
    });
    if disabled {
        json["sessions_ended"] = json!(done.sessions_ended);
    }
    Ok(Report { human, json })
}
