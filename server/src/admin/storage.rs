//! `chat-server admin storage`: the retention in force and what the stores
//! hold. Retention is a server flag, not stored anywhere: what is shown is
//! what the flags and `CHAT_*` variables given to this command say, so give
//! it the server's (or run it in the server's environment).

use std::path::Path;

use serde_json::json;

use super::exit::AdminError;
use super::format;
use super::store::Store;
use super::Report;
use crate::accounts::DB_FILE;
use crate::config::Config;
use crate::MESSAGES_FILE;

/// Shows retention, sizes and row counts.
pub(crate) fn show(store: &Store, config: &Config) -> Result<Report, AdminError> {
    let retention = config.retention();
    let kept = match retention.max_messages {
        Some(n) => format!("the newest {n} messages per room"),
        None => "every message".to_owned(),
    };
    let aged = match retention.max_age {
        Some(age) => format!(
            ", forgetting those older than {}",
            humantime::format_duration(age)
        ),
        None => ", whatever its age".to_owned(),
    };
    let mut human = vec![format!(
        "retention (as this command's flags and CHAT_* variables say): keeping {kept}{aged}"
    )];
    let mut json = json!({
        "backend": store.backend(),
        "retention": {
            "max_messages": retention.max_messages,
            "max_age_secs": retention.max_age.map(|age| age.as_secs()),
        },
    });

    if let Some(dir) = store.data_dir() {
        let mut files = serde_json::Map::new();
        let mut total = 0;
        for db in [DB_FILE, MESSAGES_FILE] {
            let main = file_size(&dir.join(db))?;
            let wal_name = format!("{db}-wal");
            let wal = file_size(&dir.join(&wal_name))?;
            total += main.unwrap_or(0) + wal.unwrap_or(0);
            human.push(match main {
                Some(bytes) => format!(
                    "{db}: {} (WAL {})",
                    format::bytes(bytes),
                    format::bytes(wal.unwrap_or(0))
                ),
                None => format!("{db}: none yet"),
            });
            files.insert(db.to_owned(), json!(main));
            files.insert(wal_name, json!(wal));
        }
        human.push(format!(
            "total: {} in {}",
            format::bytes(total),
            dir.display()
        ));
        json["data_dir"] = json!(dir.display().to_string());
        json["files"] = files.into();
        json["total_bytes"] = json!(total);
    }
    if let Some(bytes) = store.database_bytes()? {
        human.push(format!("PostgreSQL database: {}", format::bytes(bytes)));
        json["database_bytes"] = json!(bytes);
    }

    let rows = store.rows()?;
    let n = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    human.push(format!(
        "rows: {}, {}, {}, {}",
        format::count(n(rows.users), "user", "users"),
        format::count(n(rows.sessions), "session", "sessions"),
        format::count(n(rows.log.rooms), "room", "rooms"),
        format::count(n(rows.log.messages), "message", "messages"),
    ));
    json["rows"] = json!({
        "users": rows.users,
        "sessions": rows.sessions,
        "rooms": rows.log.rooms,
        "messages": rows.log.messages,
    });
    Ok(Report {
        human: human.join("\n"),
        json,
    })
}

/// The size of a file, or none when it does not exist.
fn file_size(path: &Path) -> Result<Option<u64>, AdminError> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(meta.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AdminError::Failed(format!("{}: {e}", path.display()))),
    }
}
