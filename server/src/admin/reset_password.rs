//! `chat-server admin reset-password`: a new password for an account, read as
//! `chat-server user add` reads one and held to the same rules.

use serde_json::json;

use super::exit::AdminError;
use super::store::Store;
use super::Report;
use crate::auth;

/// Sets a new password for `user`. The user is looked up first, so that an
/// unknown name fails before anyone types a password. Sessions are left as
/// they are (disable and enable the user to end them).
pub(crate) fn reset(store: &Store, user: &str) -> Result<Report, AdminError> {
    let name = store.canonical_name(user)?;
    let password = crate::prompt::new_password().map_err(|e| AdminError::Failed(e.to_string()))?;
    auth::check_password(&password).map_err(AdminError::Usage)?;
    let hash = auth::hash_password(&password)
        .map_err(|e| AdminError::Failed(format!("hashing failed: {e}")))?;
    let name = store.set_password_hash(&name, &hash)?;
    Ok(Report {
        human: format!(
            "password of {name} reset: the old one is refused from now on; \
             sessions from before stay live"
        ),
        json: json!({ "user": name, "password_reset": true }),
    })
}
