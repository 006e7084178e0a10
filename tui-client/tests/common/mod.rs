//! Test support: a real chat-server in this process, restartable on the same
//! address and data directory, and helpers to run the real client binaries.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chat_protocol::{ClientEvent, ServerEvent};
use chat_server::clock::ManualClock;
use chat_server::{Config, PasswordHashes, Server};
use chat_tui::client::{self, ClientConfig, Connection, ServerUrl, TlsOptions};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(15);
pub const PASSWORD: &str = "correct horse battery";

/// A chat server running in this test process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub data_dir: tempfile::TempDir,
    /// Serving https/wss with a generated certificate.
    pub tls: bool,
    /// Dates sessions and tickets; stands still until a test advances it.
    pub clock: ManualClock,
    hashes: PasswordHashes,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(false).await
    }

    /// A server speaking https/wss with the certificate it generates.
    pub async fn start_tls() -> Self {
        Self::start_with(true).await
    }

    async fn start_with(tls: bool) -> Self {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let listen = "127.0.0.1:0".parse().expect("addr");
        let clock = ManualClock::default();
        let (addr, hashes, shutdown, handle) = run(data_dir.path(), listen, tls, &clock).await;
        Self {
            addr,
            data_dir,
            tls,
            clock,
            hashes,
            shutdown,
            handle: Some(handle),
        }
    }

    /// The certificate a TLS server generated.
    pub fn cert(&self) -> PathBuf {
        self.data_dir.path().join("tls").join("cert.pem")
    }

    pub fn url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// Stops gracefully (clients get 1001) and waits until it has.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(WAIT, handle)
                .await
                .expect("server stops")
                .expect("server task")
                .expect("server ran cleanly");
        }
    }

    /// Starts again on the same address, data directory and clock.
    pub async fn restart(&mut self) {
        let (addr, hashes, shutdown, handle) =
            run(self.data_dir.path(), self.addr, self.tls, &self.clock).await;
        assert_eq!(addr, self.addr);
        self.hashes = hashes;
        self.shutdown = shutdown;
        self.handle = Some(handle);
    }

    /// Password checks and hashes the running server has computed since it started.
    pub fn password_hashes(&self) -> u64 {
        self.hashes.count()
    }

    pub fn config(&self, user: &str) -> ClientConfig {
        ClientConfig {
            server: ServerUrl::parse(&self.url()).expect("url"),
            user: user.to_owned(),
            password: PASSWORD.to_owned(),
            tls: TlsOptions {
                ca_cert: self.tls.then(|| self.cert()),
                insecure: false,
            },
        }
    }

    pub async fn register(&self, user: &str) {
        client::register(&self.config(user))
            .await
            .expect("register");
    }

    /// A connected client already in `room` (its own `joined` consumed).
    pub async fn member(&self, user: &str, room: &str) -> Connection {
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
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn run(
    data_dir: &Path,
    listen: SocketAddr,
    tls: bool,
    clock: &ManualClock,
) -> (
    SocketAddr,
    PasswordHashes,
    CancellationToken,
    JoinHandle<anyhow::Result<()>>,
) {
    let mut config = Config::with_data_dir(data_dir);
    config.listen = listen;
    config.tls = tls;
    config.shutdown_grace = Duration::from_secs(2);
    let server = Server::bind_with_clock(config, Arc::new(clock.clone()))
        .await
        .expect("server binds");
    let addr = server.local_addr().expect("addr");
    let hashes = server.password_hashes();
    let shutdown = server.shutdown_token();
    (addr, hashes, shutdown, tokio::spawn(server.run()))
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

impl TestServer {
    /// A plain (no TLS) server on a config that `tweak` adjusted first, e.g. retention.
    /// `restart` brings it back on the plain config.
    pub async fn start_tweaked(tweak: impl FnOnce(&mut Config)) -> Self {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::default();
        let mut config = Config::with_data_dir(data_dir.path());
        config.listen = "127.0.0.1:0".parse().expect("addr");
        config.shutdown_grace = Duration::from_secs(2);
        tweak(&mut config);
        let server = Server::bind_with_clock(config, Arc::new(clock.clone()))
            .await
            .expect("server binds");
        let addr = server.local_addr().expect("addr");
        let hashes = server.password_hashes();
        let shutdown = server.shutdown_token();
        Self {
            addr,
            data_dir,
            tls: false,
            clock,
            hashes,
            shutdown,
            handle: Some(tokio::spawn(server.run())),
        }
    }
}
