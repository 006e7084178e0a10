//! `chat-server admin invite`: a one-time invite for a server started with
//! `--invite-only`. Only its SHA-256 is stored; the token is shown once.

use std::time::Duration;

use serde_json::json;

use super::exit::AdminError;
use super::store::Store;
use super::Report;

/// Makes an invite live for `valid_for`.
pub(crate) fn create(store: &Store, valid_for: Duration) -> Result<Report, AdminError> {
    if valid_for.is_zero() {
        return Err(AdminError::Usage(
            "--valid-for must be longer than 0".into(),
        ));
    }
    let (token, expires_ms) = store.create_invite(valid_for)?;
    let expires = super::format::unix_secs(expires_ms / 1000);
    Ok(Report {
        human: format!(
            "invite {token}\nvalid once, until {expires}: the new user gives it when \
             registering (the sign-in page's invite field, or \"invite\" in POST /api/register)"
        ),
        json: json!({ "invite": token, "expires_at_ms": expires_ms }),
    })
}
