//! The chat wire protocol, shared by the server and every Rust client.
//!
//! Every WebSocket frame is one JSON text message of the form
//! `{"type": "<snake_case name>", "payload": {...}}`. [`ClientEvent`] is what a
//! client may send, [`ServerEvent`] what the server sends; [`http`] holds the JSON
//! bodies of the HTTP endpoints that come before the socket (login, register).
//! `docs/protocol.md` is the language-neutral description of the same contract.
//!
//! - [`client`]: client-to-server events and their decoding with precise errors.
//! - [`server`]: server-to-client events.
//! - [`error`]: the error codes carried by `error` events and HTTP error bodies.
//! - [`names`]: the rules for room and user names.

pub mod client;
pub mod error;
pub mod http;
pub mod names;
pub mod schema;
pub mod server;

pub use client::{ClientEvent, ClientFrame, DecodeError, RefusedFrame};
pub use error::ErrorCode;
pub use server::{ChatMessage, Limits, RoomInfo, ServerEvent, ServerFrame};

/// Version of the protocol this crate speaks, announced in the server's first
/// frame (`welcome`). It changes only when an existing event changes meaning or
/// shape; new optional fields and new event types keep the version.
pub const PROTOCOL_VERSION: u32 = 1;
