//! `chat-server`: chat rooms over WebSockets.
//!
//! A map of the modules, in the order a request travels through them:
//! - [`server`]: accept loop, TLS, graceful shutdown.
//! - `api`: HTTP routes (login, sessions, register, health) and the checked upgrade to `/ws`.
//! - `origin`, `auth`: the Origin check; passwords, login throttling, sessions and tickets.
//! - `session`: one connection: reader, event handler, writer task and heartbeat.
//! - `rooms`: the registry of connections and rooms, and fan-out.
//! - [`history`]: durable, numbered messages (SQLite), paging and retention.
//! - `ratelimit`: the per-connection token bucket.
//! - [`store`]: the embedded SQLite database.
//! - [`config`]: flags and `CHAT_*` variables; [`tls`]: certificates.
//! - `web`: the browser client (`web/`), embedded and served at `/`.

mod api;
mod auth;
pub mod config;
pub mod history;
mod origin;
mod ratelimit;
mod rooms;
pub mod server;
mod session;
pub mod store;
pub mod tls;
mod web;

pub use auth::add_user;
pub use config::Config;
pub use server::Server;
pub use store::Accounts;
