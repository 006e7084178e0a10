//! `chat-server`: chat rooms over WebSockets.
//!
//! A map of the modules, in the order a request travels through them:
//! - [`server`]: accept loop, TLS, graceful shutdown.
//! - `backend`: where state is kept (embedded SQLite, PostgreSQL, or a cluster on
//!   PostgreSQL and Redis), chosen by the flags.
//! - `api`: HTTP routes (login, sessions, register, health and readiness) and the checked upgrade to `/ws`.
//! - `origin`, `auth`: the Origin check; passwords, login throttling, sessions and
//!   tickets, each store behind an interface.
//! - `connection`: one socket: reader, event handler, writer task and
//!   heartbeat; its `roster` lists the live ones by user.
//! - `proxy_header`: the PROXY protocol header of trusted proxies' connections.
//! - `revocations`: the poll that ends a disabled account's sessions and
//!   connections, and closes those of sessions logged out on other nodes.
//! - `chat_rooms` (its own crate): the room log, bus, hub and presence that
//!   number, store and deliver messages.
//! - `ratelimit`: the per-connection token bucket.
//! - `readiness`: the engine checks behind `/readyz`.
//! - `metrics`: what the server counts, served to Prometheus on `--metrics-listen`.
//! - [`accounts`] (inside `auth`): `chat.db`, the embedded SQLite database of accounts and sessions.
//! - [`clock`]: the wall clock that dates sessions and tickets, which tests move.
//! - `state`: what the HTTP routes share.
//! - [`config`]: flags and `CHAT_*` variables; [`tls`]: certificates.
//! - `web`: the browser client (`web/`), embedded and served at `/`.
//! - [`admin`]: `chat-server admin`, an operator's commands on the same
//!   store, also while a server runs; [`prompt`]: reading a new password.

pub mod admin;
mod admission;
mod api;
mod auth;
mod backend;
pub mod clock;
pub mod config;
mod connection;
pub mod logging;
mod metrics;
mod origin;
pub mod prompt;
mod proxy_header;
mod ratelimit;
mod readiness;
mod revocations;
pub mod server;
mod state;
pub mod tls;
mod web;

pub use chat_rooms::room_log::MESSAGES_FILE;
pub use chat_rooms::{Durability, Retention, Storage};

pub use auth::accounts;
pub use auth::accounts::Accounts;
pub use auth::{add_user, add_user_to_database, PasswordHashes};
pub use config::Config;
pub use server::Server;
