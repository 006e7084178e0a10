//! Terminal clients for chat-server.
//!
//! - [`client`]: the protocol in Rust (login, connect, typed events,
//!   reconnecting session), shared by both binaries, tests and benchmarks.
//! - [`tui`]: chat-tui's state, input handling and drawing, kept apart from
//!   the terminal and the network so each can be tested alone.
//! - [`cli`]: chat-cli's commands.
//! - [`args`]: the command-line options both binaries share.

pub mod args;
pub mod cli;
pub mod client;
pub mod tui;
