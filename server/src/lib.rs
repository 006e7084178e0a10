//! `chat-server`: chat rooms over WebSockets.
//!
//! A map of the modules, in the order a request travels through them:
//! - [`server`]: accept loop, TLS, graceful shutdown.
//! - `api`: HTTP routes (login, sessions, register, health) and the checked upgrade to `/ws`.
//! - `origin`, `auth`: the Origin check; passwords, login throttling, sessions and
//!   tickets, each store behind an interface.
//! - `session`: one connection: reader, event handler, writer task and heartbeat.
//! - `rooms`: the registry of connections and rooms, and fan-out.
//! - [`history`]: durable, numbered messages (SQLite), paging and retention.
//! - `ratelimit`: the per-connection token bucket.
//! - [`accounts`]: `chat.db`, the embedded SQLite database of accounts and sessions.
//! - [`clock`]: the wall clock that dates sessions and tickets, which tests move.
//! - [`config`]: flags and `CHAT_*` variables; [`tls`]: certificates.
//! - `web`: the browser client (`web/`), embedded and served at `/`.

pub mod accounts;
mod api;
mod auth;
pub mod clock;
pub mod config;
pub mod history;
mod origin;
mod ratelimit;
mod rooms;
pub mod server;
mod session;
pub mod tls;
mod web;

pub use accounts::Accounts;
pub use auth::{add_user, PasswordHashes};
pub use config::Config;
pub use server::Server;
