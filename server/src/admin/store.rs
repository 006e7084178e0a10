//! The store `chat-server admin` acts on: the data directory (`chat.db`, and
//! `messages.db` read-only) or, with `--database-url`, PostgreSQL. One
//! blocking interface over both: the admin command is a short-lived process
//! with nothing else to do while it waits.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chat_rooms::room_log::inspect::{self, LogCounts, RoomStats};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use super::exit::AdminError;
use crate::accounts::{Accounts, DB_FILE};
use crate::auth::stores::{Toggled, UserInfo};
use crate::auth::{self, PgAccounts};
use crate::clock::UnixMillis;
use crate::config::Config;

/// How long connecting to PostgreSQL may take before the database counts as
/// unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Row counts of every table an operator cares about.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rows {
    pub(crate) users: u64,
    pub(crate) sessions: u64,
    pub(crate) log: LogCounts,
}

/// An open store.
pub(crate) enum Store {
    /// The data directory of a single server.
    Embedded {
        /// `chat.db`, read and written as the server does (WAL, busy timeout).
        accounts: Accounts,
        /// Where `messages.db` is, opened read-only for each read.
        data_dir: PathBuf,
    },
    /// The PostgreSQL database of `--database-url`.
    Postgres {
        /// Runs the queries; the admin command does nothing else meanwhile.
        runtime: tokio::runtime::Runtime,
        pool: PgPool,
        /// The accounts and sessions on `pool`.
        accounts: PgAccounts,
    },
}

impl Store {
    /// Opens the store `config` names. A data directory without `chat.db` is
    /// refused rather than created: it is most likely not the server's.
    pub(crate) fn open(config: &Config) -> Result<Self, AdminError> {
        if let Some(url) = &config.database_url {
            return Self::postgres(url);
        }
        let data_dir = config.data_dir.clone();
        let path = data_dir.join(DB_FILE);
        if !path.is_file() {
            return Err(AdminError::Unreachable(format!(
                "no {DB_FILE} in {}: give the server's --data-dir (or --database-url)",
                data_dir.display()
            )));
        }
        let accounts = Accounts::open(&path)
            .map_err(|e| AdminError::Unreachable(format!("{}: {e}", path.display())))?;
        Ok(Self::Embedded { accounts, data_dir })
    }

    fn postgres(url: &str) -> Result<Self, AdminError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| AdminError::Failed(format!("starting the runtime: {e}")))?;
        let pool = runtime.block_on(async {
            let options: PgConnectOptions = url
                .parse()
                .map_err(|e| AdminError::Usage(format!("--database-url: {e}")))?;
            let pool = PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(CONNECT_TIMEOUT)
                .connect_with(options.application_name("chat-admin"))
                .await
                .map_err(|e| AdminError::Unreachable(format!("PostgreSQL: {e}")))?;
            // As the servers do on start: the admin command may be newer.
            auth::migrate(&pool)
                .await
                .map_err(|e| AdminError::Failed(format!("migrating the accounts schema: {e}")))?;
            Ok::<_, AdminError>(pool)
        })?;
        let accounts = PgAccounts::new(pool.clone());
        Ok(Self::Postgres {
            runtime,
            pool,
            accounts,
        })
    }

    /// Which store this is, for people and for `--json`.
    pub(crate) fn backend(&self) -> &'static str {
        match self {
            Self::Embedded { .. } => "sqlite",
            Self::Postgres { .. } => "postgresql",
        }
    }

    /// The data directory, for the embedded store.
    pub(crate) fn data_dir(&self) -> Option<&Path> {
        match self {
            Self::Embedded { data_dir, .. } => Some(data_dir),
            Self::Postgres { .. } => None,
        }
    }

    /// Every account, by name, with its live sessions.
    pub(crate) fn users(&self) -> Result<Vec<UserInfo>, AdminError> {
        let now = now_ms();
        match self {
            Self::Embedded { accounts, .. } => Ok(accounts.users(now)?),
            Self::Postgres {
                runtime, accounts, ..
            } => Ok(runtime.block_on(accounts.users(now))?),
        }
    }

    /// Disables or enables `user`.
    pub(crate) fn set_disabled(&self, user: &str, disabled: bool) -> Result<Toggled, AdminError> {
        let toggled = match self {
            Self::Embedded { accounts, .. } => accounts.set_disabled(user, disabled)?,
            Self::Postgres {
                runtime, accounts, ..
            } => runtime.block_on(accounts.set_disabled(user, disabled))?,
        };
        toggled.ok_or_else(|| AdminError::NoSuchUser(user.to_owned()))
    }

    /// The name of `user` as registered, or [`AdminError::NoSuchUser`].
    pub(crate) fn canonical_name(&self, user: &str) -> Result<String, AdminError> {
        use crate::auth::stores::AccountStore;
        let found = match self {
            Self::Embedded { accounts, .. } => accounts.find(user)?,
            Self::Postgres {
                runtime, accounts, ..
            } => runtime
                .block_on(accounts.find(user))
                .map_err(|e| AdminError::Failed(e.to_string()))?,
        };
        found
            .map(|account| account.username)
            .ok_or_else(|| AdminError::NoSuchUser(user.to_owned()))
    }

    /// Stores a new password hash for `user`; its name as registered.
    pub(crate) fn set_password_hash(&self, user: &str, hash: &str) -> Result<String, AdminError> {
        let updated = match self {
            Self::Embedded { accounts, .. } => accounts.set_password_hash(user, hash)?,
            Self::Postgres {
                runtime, accounts, ..
            } => runtime.block_on(accounts.set_password_hash(user, hash))?,
        };
        updated.ok_or_else(|| AdminError::NoSuchUser(user.to_owned()))
    }

    /// Stores a new invite for `--invite-only` registration, live for
    /// `valid_for`; returns the token to hand out and its expiry (unix ms).
    pub(crate) fn create_invite(
        &self,
        valid_for: Duration,
    ) -> Result<(String, UnixMillis), AdminError> {
        let (token, hash) = auth::new_invite();
        let now = now_ms();
        let expires = now.saturating_add(i64::try_from(valid_for.as_millis()).unwrap_or(i64::MAX));
        match self {
            Self::Embedded { accounts, .. } => accounts.create_invite(&hash, now, expires)?,
            Self::Postgres {
                runtime, accounts, ..
            } => runtime.block_on(accounts.create_invite(&hash, now, expires))?,
        }
        Ok((token, expires))
    }

    /// Every room of the message log, by name.
    pub(crate) fn rooms(&self) -> Result<Vec<RoomStats>, AdminError> {
        match self {
            Self::Embedded { data_dir, .. } => Ok(inspect::sqlite_rooms(data_dir)?),
            Self::Postgres { runtime, pool, .. } => Ok(runtime.block_on(inspect::pg_rooms(pool))?),
        }
    }

    /// Row counts of accounts, sessions, rooms and messages.
    pub(crate) fn rows(&self) -> Result<Rows, AdminError> {
        match self {
            Self::Embedded { accounts, data_dir } => {
                let (users, sessions) = accounts.counts()?;
                let log = inspect::sqlite_counts(data_dir)?;
                Ok(Rows {
                    users,
                    sessions,
                    log,
                })
            }
            Self::Postgres {
                runtime,
                pool,
                accounts,
            } => runtime.block_on(async {
                let (users, sessions) = accounts.counts().await?;
                let log = inspect::pg_counts(pool).await?;
                Ok(Rows {
                    users,
                    sessions,
                    log,
                })
            }),
        }
    }

    /// The size of the PostgreSQL database, in bytes.
    pub(crate) fn database_bytes(&self) -> Result<Option<u64>, AdminError> {
        let Self::Postgres { runtime, pool, .. } = self else {
            return Ok(None);
        };
        let bytes: i64 = runtime.block_on(
            sqlx::query_scalar("SELECT pg_database_size(current_database())").fetch_one(pool),
        )?;
        Ok(u64::try_from(bytes).ok())
    }
}

impl Drop for Store {
    /// Closes the pool's connections inside the runtime that made them, so
    /// that PostgreSQL sees them end rather than drop.
    fn drop(&mut self) {
        if let Self::Postgres { runtime, pool, .. } = self {
            runtime.block_on(pool.close());
        }
    }
}

fn now_ms() -> UnixMillis {
    chat_rooms::room_log::unix_millis(SystemTime::now())
}
