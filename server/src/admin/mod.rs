//! `chat-server admin`: an operator's commands on the data directory or the
//! PostgreSQL database of a server, also while it runs. It is another
//! process: it changes accounts in the store the server reads (the server
//! polls for disabled accounts every second) and only reads the message log
//! (a read-only connection to `messages.db`), so there is never a second
//! writer of the room log.
//!
//! One job per file: `users`, `toggle` (disable and enable),
//! `reset_password`, `invite`, `rooms`, `delete_message`, `storage`; `store` opens
//! either backend; `exit` has the exit codes; `format` the human output.

mod delete_message;
pub mod exit;
mod format;
mod invite;
mod reset_password;
mod rooms;
mod storage;
mod store;
mod toggle;
mod users;

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::config::Config;
use exit::AdminError;
use store::Store;

/// `chat-server admin`'s arguments.
#[derive(Debug, Args)]
#[command(after_long_help = exit::HELP, after_help = exit::HELP)]
pub struct AdminArgs {
    /// Print one JSON document on stdout instead of text for people.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// The admin subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// List the accounts: created, disabled, live sessions.
    Users,
    /// Disable an account: its sessions end, and a running server closes its
    /// connections (close code 4003) within about a second; logins get 403.
    Disable {
        /// The user name (any letter case).
        user: String,
    },
    /// Enable a disabled account again: logins work again.
    Enable {
        /// The user name (any letter case).
        user: String,
    },
    /// Set a new password. It is prompted for on a terminal, or read as one
    /// line from standard input otherwise. Sessions from before stay live.
    ResetPassword {
        /// The user name (any letter case).
        user: String,
    },
    /// Make a one-time invite for a server started with --invite-only: one
    /// account can be registered with it, until it expires.
    Invite {
        /// How long it stays valid (e.g. 7d, 12h).
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        valid_for: std::time::Duration,
    },
    /// List the rooms of the message log: messages stored, first and last
    /// sequence number, time of the last message.
    Rooms,
    /// Delete one message. Refused for now (exit code 5): chat-server cannot
    /// delete messages yet, so nothing is changed.
    DeleteMessage {
        /// The room.
        room: String,
        /// The message's sequence number in the room.
        seq: u64,
    },
    /// Show the retention these flags and CHAT_* variables give, the sizes
    /// of the databases and their row counts.
    Storage,
}

/// What a job produced, both ways: text for people, and the `--json` document.
pub(crate) struct Report {
    /// Printed without `--json`.
    pub(crate) human: String,
    /// Printed with `--json`.
    pub(crate) json: serde_json::Value,
}

/// Runs an admin command against the store `config` names, prints its
/// report (or its error) and returns the exit code.
pub fn run(config: &Config, args: &AdminArgs) -> ExitCode {
    match execute(config, &args.command) {
        Ok(report) => {
            if args.json {
                println!("{}", report.json);
            } else {
                println!("{}", report.human);
            }
            ExitCode::from(exit::code::OK)
        }
        Err(e) => {
            eprintln!("chat-server admin: {e}");
            if args.json {
                let error = serde_json::json!({
                    "error": { "code": e.name(), "message": e.to_string() }
                });
                println!("{error}");
            }
            ExitCode::from(e.code())
        }
    }
}

fn execute(config: &Config, command: &AdminCommand) -> Result<Report, AdminError> {
    // Refused before the store is opened: nothing is touched.
    if let AdminCommand::DeleteMessage { room, seq } = command {
        return Err(delete_message::refuse(room, *seq));
    }
    let store = Store::open(config)?;
    match command {
        AdminCommand::Users => users::list(&store),
        AdminCommand::Disable { user } => toggle::set(&store, user, true),
        AdminCommand::Enable { user } => toggle::set(&store, user, false),
        AdminCommand::ResetPassword { user } => reset_password::reset(&store, user),
        AdminCommand::Invite { valid_for } => invite::create(&store, *valid_for),
        AdminCommand::Rooms => rooms::list(&store),
        AdminCommand::Storage => storage::show(&store, config),
        AdminCommand::DeleteMessage { room, seq } => Err(delete_message::refuse(room, *seq)),
    }
}
