//! `chat-server admin users`: every account, with its state and sessions.

use serde_json::json;

use super::exit::AdminError;
use super::format;
use super::store::Store;
use super::Report;

/// Lists the accounts, by name.
pub(crate) fn list(store: &Store) -> Result<Report, AdminError> {
    let users = store.users()?;
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            let status = match u.disabled_at {
                None => "enabled".to_owned(),
                Some(since) => format!("disabled since {}", format::unix_secs(since)),
            };
            vec![
                u.name.clone(),
                format::unix_secs(u.created_at),
                status,
                u.sessions.to_string(),
            ]
        })
        .collect();
    let disabled = users.iter().filter(|u| u.disabled_at.is_some()).count();
    let human = format!(
        "{}\n{}, {disabled} disabled",
        format::table(&["USER", "CREATED", "STATUS", "SESSIONS"], &rows),
        format::count(users.len(), "user", "users"),
    );
    let json = json!({
        "users": users.iter().map(|u| json!({
            "name": u.name,
            "created_at": format::unix_secs(u.created_at),
            "disabled": u.disabled_at.is_some(),
            "disabled_at": u.disabled_at.map(format::unix_secs),
            "sessions": u.sessions,
        })).collect::<Vec<_>>(),
    });
    Ok(Report { human, json })
}
