//! How `chat-server admin` ends: an exit code for each kind of failure, as
//! chat-cli has (tui-client/src/cli.rs), so that scripts can tell them apart.

/// Exit codes of `chat-server admin`.
pub mod code {
    /// Done.
    pub const OK: u8 = 0;
    /// Any other failure (the database failed half-way, a terminal could not be read).
    pub const FAILURE: u8 = 1;
    /// Wrong usage: clap's own code, also for a new password that breaks the rules.
    pub const USAGE: u8 = 2;
    /// The named user does not exist.
    pub const NO_SUCH_USER: u8 = 3;
    /// The database cannot be reached: no `chat.db` in `--data-dir`, or
    /// `--database-url` does not answer.
    pub const UNREACHABLE: u8 = 4;
    /// The request is refused and nothing was changed (`delete-message`,
    /// until messages can be deleted).
    pub const REFUSED: u8 = 5;
}

/// The exit codes as `chat-server admin --help` lists them.
pub const HELP: &str = "\
Exit codes:
  0  done
  1  any other failure (the database failed part-way, standard input unreadable)
  2  usage: a wrong argument, or a new password that breaks the length rules
  3  no such user
  4  cannot reach the database: no chat.db in --data-dir, or --database-url does not answer
  5  refused, nothing changed (delete-message: chat-server cannot delete messages yet)

With --json, stdout holds one JSON document: the result, or {\"error\": {\"code\", \"message\"}}.
The data directory's files may be in use by a running server: accounts are changed
in chat.db as the server does, and messages.db is only read (read-only connection).";

/// Why an admin command failed; each kind has its exit code.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The named user does not exist.
    #[error("no such user: {0}")]
    NoSuchUser(String),
    /// The database cannot be reached or opened.
    #[error("cannot reach the database: {0}")]
    Unreachable(String),
    /// The request is refused; nothing was changed.
    #[error("refused: {0}")]
    Refused(String),
    /// An argument or input breaks the rules.
    #[error("{0}")]
    Usage(String),
    /// Anything else.
    #[error("{0}")]
    Failed(String),
}

impl AdminError {
    /// The exit code of this failure.
    pub fn code(&self) -> u8 {
        match self {
            Self::NoSuchUser(_) => code::NO_SUCH_USER,
            Self::Unreachable(_) => code::UNREACHABLE,
            Self::Refused(_) => code::REFUSED,
            Self::Usage(_) => code::USAGE,
            Self::Failed(_) => code::FAILURE,
        }
    }

    /// The `code` of the `--json` error document.
    pub fn name(&self) -> &'static str {
        match self {
            Self::NoSuchUser(_) => "no_such_user",
            Self::Unreachable(_) => "unreachable",
            Self::Refused(_) => "refused",
            Self::Usage(_) => "usage",
            Self::Failed(_) => "failed",
        }
    }
}

impl From<rusqlite::Error> for AdminError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Failed(format!("chat.db: {e}"))
    }
}

impl From<sqlx::Error> for AdminError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            // Could not get a connection at all, or lost it.
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Configuration(_) => Self::Unreachable(format!("PostgreSQL: {e}")),
            e => Self::Failed(format!("PostgreSQL: {e}")),
        }
    }
}

impl From<chat_rooms::LogError> for AdminError {
    fn from(e: chat_rooms::LogError) -> Self {
        match e {
            chat_rooms::LogError::Postgres(e) => match &*e {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => {
                    Self::Unreachable(format!("PostgreSQL: {e}"))
                }
                _ => Self::Failed(format!("message log: {e}")),
            },
            e => Self::Failed(e.to_string()),
        }
    }
}
