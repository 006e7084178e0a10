//! `make bench`: chat-server and the servers people use today, driven
//! through the same scenarios by one load generator, on the same machine, in
//! the same run.
//!
//! - [`servers`] starts each server (this one, or a peer from `bench/peers/`)
//!   pinned to its own core and reads its CPU time and memory;
//! - [`wire`] and [`http`] are the load generator's lean WebSocket and HTTP
//!   clients; [`load`] puts connections in rooms, paces senders and records
//!   deliveries and latencies;
//! - [`scenarios`] runs fan-out, many rooms, idle memory and handshakes;
//!   [`storm`] crashes chat-server under its clients and times their return;
//!   [`cluster`] runs fan-out through two nodes of chat-server or
//!   Socket.IO, on the [`engines`] (PostgreSQL, Redis) it finds;
//! - [`report`] writes CSV, Markdown, the chart and `BENCHMARKS.md`, judging
//!   each target with [`verdict`].

pub mod cluster;
pub mod engines;
pub mod http;
pub mod load;
pub mod report;
pub mod scenarios;
pub mod servers;
pub mod storm;
pub mod verdict;
pub mod wire;
