//! The clients' test support: the shared harness ([`chat_test_server`]: a
//! real chat-server in this process, restartable on the same address and data
//! directory; the cutting proxy), seen through this crate's client library,
//! and helpers to run the real client binaries.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

use chat_protocol::{ChatMessage, ClientEvent, ServerEvent};
use chat_tui::client::{self, ClientConfig, Connection, ServerUrl, TlsOptions};

pub use chat_test_server::{TestServer, PASSWORD};

pub mod csharp;
pub mod tmux;

/// Longer than the server tests' wait: these tests start whole programs
/// (Mono, Chromium, a terminal) besides the server.
pub const WAIT: Duration = Duration::from_secs(15);

/// A server speaking https/wss with the certificate it generates.
pub async fn start_tls() -> TestServer {
    TestServer::with(|config| config.tls = true).await
}

/// The test server as this crate's client library sees it.
pub trait ClientSide {
    /// The certificate a TLS server generated.
    fn cert(&self) -> PathBuf;
    /// How `user` connects with [`PASSWORD`].
    fn config(&self, user: &str) -> ClientConfig;
    /// A connected client already in `room` (its own `joined` consumed).
    async fn member(&self, user: &str, room: &str) -> Connection;
    /// What the server stores of `room` (its newest 200), oldest first, as
    /// `user` reads it with `history`.
    async fn stored(&self, user: &str, room: &str) -> Vec<ChatMessage>;
}

impl ClientSide for TestServer {
    fn cert(&self) -> PathBuf {
        self.data_dir.path().join("tls").join("cert.pem")
    }

    fn config(&self, user: &str) -> ClientConfig {
        ClientConfig {
            server: ServerUrl::parse(&self.url()).expect("url"),
            user: user.to_owned(),
            password: PASSWORD.to_owned(),
            tls: TlsOptions {
                ca_cert: self.tls_cert.clone(),
                insecure: false,
            },
        }
    }

    async fn member(&self, user: &str, room: &str) -> Connection {
        let mut conn = client::connect(&self.config(user)).await.expect("connect");
        conn.send(&ClientEvent::JoinRoom {
            room: room.into(),
            since: None,
            epoch: None,
        })
        .await
        .expect("join");
        wait_event(&mut conn, |e| matches!(e, ServerEvent::Joined { .. })).await;
        conn
    }

    async fn stored(&self, user: &str, room: &str) -> Vec<ChatMessage> {
        let mut conn = self.member(user, room).await;
        conn.send(&ClientEvent::History {
            room: room.into(),
            before: None,
            limit: Some(200),
        })
        .await
        .expect("history");
        let page = wait_event(&mut conn, |e| matches!(e, ServerEvent::HistoryPage { .. })).await;
        conn.close().await;
        match page {
            ServerEvent::HistoryPage { messages, .. } => messages,
            _ => unreachable!("waited for a history_page"),
        }
    }
}

/// Reads events until one matches, failing after [`WAIT`].
pub async fn wait_event(conn: &mut Connection, what: impl Fn(&ServerEvent) -> bool) -> ServerEvent {
    tokio::time::timeout(WAIT, async {
        loop {
            let event = conn.next_event().await.expect("event");
            if what(&event) {
                return event;
            }
        }
    })
    .await
    .expect("the expected event arrived in time")
}

pub fn bin(name: &str) -> PathBuf {
    match name {
        "chat-cli" => PathBuf::from(env!("CARGO_BIN_EXE_chat-cli")),
        "chat-tui" => PathBuf::from(env!("CARGO_BIN_EXE_chat-tui")),
        other => panic!("no binary {other}"),
    }
}

/// A `chat-cli` command for `user` against `server`, password in the environment.
pub fn chat_cli(server: &TestServer, user: &str) -> tokio::process::Command {
    chat_cli_at(&server.url(), user)
}

/// A `chat-cli` command for `user` against any server URL.
pub fn chat_cli_at(url: &str, user: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(bin("chat-cli"));
    command
        .args(["--server", url, "--user", user])
        .env("CHAT_PASSWORD", PASSWORD)
        .env_remove("CHAT_SERVER")
        .env_remove("CHAT_USER")
        .kill_on_drop(true);
    command
}

/// Runs a command to the end: its exit code and its standard error.
pub async fn outcome(command: &mut tokio::process::Command) -> (Option<i32>, String) {
    let out = command.output().await.expect("the command runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
