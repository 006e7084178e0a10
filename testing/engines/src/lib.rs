//! Real engines for tests: a PostgreSQL database of the test's own, the
//! machine's Redis with a key prefix of the test's own, a private
//! `redis-server` a test may kill and restart, and a TCP proxy a test may cut.
//!
//! When an engine is missing, [`postgres`] and [`redis`] return `None` after
//! printing what to install or start, and the test returns early; in CI
//! (`CI=true`) they panic instead, so a missing engine fails the run.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Connection;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The PostgreSQL server tests use: `CHAT_TEST_POSTGRES`, or the machine's.
pub fn postgres_server() -> String {
    std::env::var("CHAT_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// The Redis server tests share: `CHAT_TEST_REDIS`, or the machine's.
pub fn redis_server() -> String {
    std::env::var("CHAT_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Whether a missing engine must fail the run (in CI) rather than skip.
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Reports a missing engine: a panic in CI, a note naming the fix elsewhere.
pub fn missing(what: &str, fix: &str) {
    assert!(!required(), "{what} is required in CI: {fix}");
    eprintln!("SKIPPED: {what} is not available ({fix})");
}

/// A random lowercase name starting with `stem`, for databases and prefixes.
pub fn unique(stem: &str) -> String {
    let tail: String = (0..12).map(|_| fastrand::lowercase()).collect();
    format!("{stem}_{tail}")
}

/// A database of one test's own, dropped (with its connections) when this is.
pub struct TempDatabase {
    /// `postgres://...` of the database.
    pub url: String,
    server: String,
    name: String,
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        // Sync on purpose: Drop cannot await. `dropdb --force` ends the
        // connections a killed server process may have left behind.
        let (host, port) = host_port(&self.server);
        let _ = Command::new("dropdb")
            .args([
                "--if-exists",
                "--force",
                "-U",
                "postgres",
                "-h",
                &host,
                "-p",
                &port,
            ])
            .arg(&self.name)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn host_port(server: &str) -> (String, String) {
    let rest = server.rsplit('@').next().unwrap_or(server);
    let rest = rest.trim_start_matches("postgres://");
    let rest = rest.split('/').next().unwrap_or(rest);
    match rest.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.to_owned()),
        None => (rest.to_owned(), "5432".to_owned()),
    }
}

/// A new, empty database, or `None` (after [`missing`]) without PostgreSQL.
pub async fn postgres() -> Option<TempDatabase> {
    let server = postgres_server();
    let admin = format!("{server}/postgres");
    let connect = tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&admin));
    let mut conn = match connect.await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            missing(
                "PostgreSQL",
                &format!("start it on {server} or set CHAT_TEST_POSTGRES: {e}"),
            );
            return None;
        }
        Err(_) => {
            missing("PostgreSQL", &format!("{server} did not answer within 5 s"));
            return None;
        }
    };
    let name = unique("chat_test");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("CREATE DATABASE");
    let _ = conn.close().await;
    Some(TempDatabase {
        url: format!("{server}/{name}"),
        server,
        name,
    })
}

/// The shared Redis with a key and channel prefix of this test's own.
pub struct TestRedis {
    /// `redis://...`
    pub url: String,
    /// Prefix every key and channel of the test with this.
    pub prefix: String,
}

impl Drop for TestRedis {
    /// Deletes every key under the prefix, so the shared Redis is left as
    /// it was found. Sync on purpose: Drop cannot await.
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
            return;
        };
        let keys: Vec<String> = match redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut conn)
        {
            Ok(keys) => keys,
            Err(_) => return,
        };
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

/// The machine's Redis and a fresh prefix, or `None` (after [`missing`]).
pub async fn redis() -> Option<TestRedis> {
    let url = redis_server();
    match ping(&url).await {
        Ok(()) => Some(TestRedis {
            url,
            prefix: unique("chat_test"),
        }),
        Err(e) => {
            missing(
                "Redis",
                &format!("start redis-server on {url} or set CHAT_TEST_REDIS: {e}"),
            );
            None
        }
    }
}

async fn ping(url: &str) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let connect = tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    );
    let mut conn = connect
        .await
        .map_err(|_| "no answer within 5 s".to_owned())?
        .map_err(|e| e.to_string())?;
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// A `redis-server` of the test's own on a free port, which it may kill and
/// start again on the same port. Killed when dropped.
pub struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Starts one, or `None` (after [`missing`]) without `redis-server`.
    pub async fn start() -> Option<Self> {
        let port = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(addr) => addr.port(),
            Err(e) => panic!("no free port: {e}"),
        };
        let mut redis = Self { port, child: None };
        match redis.spawn() {
            Ok(()) => {}
            Err(e) => {
                missing(
                    "redis-server",
                    &format!("apt-get install -y redis-server: {e}"),
                );
                return None;
            }
        }
        redis.wait_ready().await;
        Some(redis)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while ping(&self.url()).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "private redis-server on port {} did not start",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL): every connection drops, and it forgets everything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again, empty, on the same port, and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().expect("restart redis-server");
        self.wait_ready().await;
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP proxy in front of a server (PostgreSQL, say) that a test can cut:
/// [`CutProxy::cut`] drops every proxied connection and refuses new ones
/// until [`CutProxy::restore`].
pub struct CutProxy {
    addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    accept: JoinHandle<()>,
}

#[derive(Default)]
struct ProxyState {
    cut: bool,
    pipes: Vec<JoinHandle<()>>,
}

impl CutProxy {
    /// Listens on 127.0.0.1:0 and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let shared = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut guard = shared.lock().unwrap_or_else(|e| e.into_inner());
                if guard.cut {
                    drop(inbound);
                    continue;
                }
                guard.pipes.retain(|p| !p.is_finished());
                guard.pipes.push(tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Self {
            addr,
            state,
            accept,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        guard.cut = true;
        for pipe in guard.pipes.drain(..) {
            pipe.abort();
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).cut = false;
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// A PostgreSQL URL for `database` that goes through `proxy`.
pub fn through(proxy: &CutProxy, database: &TempDatabase) -> String {
    let name = database.url.rsplit('/').next().unwrap_or_default();
    format!("postgres://postgres@{}/{name}", proxy.addr())
}
