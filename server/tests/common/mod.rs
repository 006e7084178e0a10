//! The server's test support: the shared harness ([`chat_test_server`]: an
//! in-process server, HTTP and WebSocket clients, scraping), plus what only
//! the server's tests need: its binary and cluster processes.
#![allow(dead_code, unreachable_pub, missing_docs)]

pub use chat_test_server::*;

pub mod binary;
pub mod cluster;
