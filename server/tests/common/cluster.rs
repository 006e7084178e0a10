//! Test support for cluster mode: real `chat-server` processes sharing one
//! PostgreSQL database and one Redis (the machine's with a prefix of the
//! test's own, or a private `redis-server` a test may kill).

use std::net::SocketAddr;
use std::process::Stdio;

use chat_test_engines::TempDatabase;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use chat_test_server::{Remote, WAIT};

const BIN: &str = env!("CARGO_BIN_EXE_chat-server");

/// Where a cluster keeps its state.
#[derive(Clone)]
pub struct Engines {
    pub database_url: String,
    /// `None`: one node on PostgreSQL alone.
    pub redis_url: Option<String>,
    pub redis_prefix: String,
}

impl Engines {
    /// A database of the test's own (kept alive by the caller) and the shared Redis.
    pub fn new(db: &TempDatabase, redis_url: &str, redis_prefix: &str) -> Self {
        Self {
            database_url: db.url.clone(),
            redis_url: Some(redis_url.to_owned()),
            redis_prefix: redis_prefix.to_owned(),
        }
    }

    /// The database alone, no Redis.
    pub fn postgres_only(db: &TempDatabase) -> Self {
        Self {
            database_url: db.url.clone(),
            redis_url: None,
            redis_prefix: "chat".to_owned(),
        }
    }
}

/// One node: a `chat-server` process on a free port.
pub struct Node {
    pub id: String,
    pub remote: Remote,
    /// The `--metrics-listen` address, when the test asked for one.
    pub metrics: Option<SocketAddr>,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Node {
    type Target = Remote;
    fn deref(&self) -> &Remote {
        &self.remote
    }
}

/// Flags every test node gets on top of the engines: no rate limit in the
/// way of the tests' traffic, a short presence TTL.
const TEST_FLAGS: &[&str] = &[
    "--rate",
    "1000000",
    "--burst",
    "1000000",
    "--presence-ttl",
    "2s",
    "--registrations-per-address",
    "100000",
    "--registrations-per-hour",
    "100000",
    "--max-connections-per-address",
    "100000",
];

impl Node {
    /// Starts node `id` on `engines`, with `extra` flags.
    pub async fn start(id: &str, engines: &Engines, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("server.log");
        let mut command = Command::new(BIN);
        command
            .args(["--listen", "127.0.0.1:0", "--node-id", id, "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--database-url", &engines.database_url]);
        if let Some(redis_url) = &engines.redis_url {
            command
                .args(["--redis-url", redis_url])
                .args(["--redis-prefix", &engines.redis_prefix]);
        }
        let mut child = command
            .args(TEST_FLAGS)
            .args(extra)
            .env("RUST_LOG", "info,chat_rooms=debug,chat_server=debug")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn chat-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut metrics = None;
        let found = tokio::time::timeout(WAIT * 3, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("metrics on http://") {
                    let addr = url.trim_end_matches("/metrics");
                    metrics = Some(addr.parse().expect("metrics address"));
                }
                if let Some(url) = line.strip_prefix("chat-server listening on http://") {
                    return Some(url.parse().expect("address"));
                }
            }
            None
        })
        .await;
        let addr = match found {
            Ok(Some(addr)) => addr,
            _ => panic!(
                "node {id} did not start:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        };
        // Keep reading stdout so the node never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            id: id.to_owned(),
            remote: Remote {
                addr,
                tls_cert: None,
            },
            metrics,
            child: Some(child),
            _dir: dir,
        }
    }

    /// SIGKILL: the node gets no chance to clean up.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill node");
        }
    }
}

impl Drop for Node {
    /// Kills the process and waits (briefly) until it is gone, so that it
    /// writes nothing more to Redis once the test empties its prefix.
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
}

/// Starts nodes `n1`, `n2`, ... on `engines`.
pub async fn start(count: usize, engines: &Engines) -> Vec<Node> {
    let mut nodes = Vec::new();
    for i in 1..=count {
        nodes.push(Node::start(&format!("n{i}"), engines, &[]).await);
    }
    nodes
}
