//! The engines a cluster runs on: a PostgreSQL database of the run's own
//! (created with `createdb`, dropped with `dropdb` after) and a Redis, either
//! a private `redis-server` the suite starts (preferred: nothing else
//! publishes on it or competes for it) or a shared one under a key prefix of
//! the run's own.
//!
//! [`Engines::probe`] looks once, before the suite starts, for what is
//! there, so that a missing engine skips the cluster scenario with a note
//! instead of failing it.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::servers::pid_cpu_seconds;

/// Where the engines are, from the suite's command line.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The PostgreSQL server, `postgres://USER@HOST:PORT` (no database: each
    /// run creates its own).
    pub postgres: String,
    /// A Redis to use under a prefix of the run's own; `None` starts a
    /// private `redis-server` (or, without one, uses `127.0.0.1:6379`).
    pub redis: Option<String>,
}

/// Which Redis the clusters get.
#[derive(Debug, Clone)]
enum RedisPlan {
    /// A `redis-server` of each cluster's own, pinned to the servers' core.
    Private,
    /// This one, under a fresh prefix per cluster.
    Shared(String),
}

/// What the probe found.
#[derive(Debug, Clone)]
pub struct Engines {
    /// The PostgreSQL server, or why it cannot be used.
    postgres: Result<String, String>,
    /// The Redis plan, or why there is none.
    redis: Result<RedisPlan, String>,
}

impl Engines {
    /// Looks for PostgreSQL (`psql` answering `select 1`) and Redis (a
    /// `redis-server` to start, or a server answering `PING`).
    pub async fn probe(config: &EngineConfig) -> Self {
        let postgres = match run_tool(
            "psql",
            &[
                &format!("{}/postgres", config.postgres),
                "-Atqc",
                "select 1",
            ],
        )
        .await
        {
            Ok(_) => Ok(config.postgres.clone()),
            Err(e) => Err(format!(
                "PostgreSQL at {} is not usable: {e:#}",
                config.postgres
            )),
        };
        let redis = match &config.redis {
            Some(url) => match ping(url).await {
                Ok(()) => Ok(RedisPlan::Shared(url.clone())),
                Err(e) => Err(format!("Redis at {url} does not answer: {e:#}")),
            },
            None => match run_tool("redis-server", &["--version"]).await {
                Ok(_) => Ok(RedisPlan::Private),
                Err(private) => {
                    let url = "redis://127.0.0.1:6379";
                    match ping(url).await {
                        Ok(()) => Ok(RedisPlan::Shared(url.to_owned())),
                        Err(shared) => Err(format!(
                            "no Redis: no redis-server to start ({private:#}; apt-get install redis-server) \
                             and none answering on {url} ({shared:#})"
                        )),
                    }
                }
            },
        };
        Self { postgres, redis }
    }

    /// Why a cluster needing PostgreSQL (if `postgres`) and Redis cannot
    /// run, if it cannot.
    pub fn missing(&self, postgres: bool) -> Option<String> {
        let mut why = Vec::new();
        if let Err(e) = &self.redis {
            why.push(e.clone());
        }
        if let (true, Err(e)) = (postgres, &self.postgres) {
            why.push(e.clone());
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// A description of the Redis the clusters use, for the report.
    pub fn redis_note(&self) -> Option<String> {
        match &self.redis {
            Ok(RedisPlan::Shared(url)) => Some(format!(
                "The cluster scenario used the shared Redis at {url} under a prefix of its own \
                 (no redis-server to start a private one): other users of it may have disturbed it."
            )),
            _ => None,
        }
    }

    /// A setting of the PostgreSQL server (`SHOW name`), for a report.
    pub async fn postgres_setting(&self, name: &str) -> Option<String> {
        let server = self.postgres.as_ref().ok()?;
        let out = run_tool(
            "psql",
            &[
                &format!("{server}/postgres"),
                "-Atqc",
                &format!("show {name}"),
            ],
        )
        .await
        .ok()?;
        Some(out.trim().to_owned())
    }

    /// A fresh database on the PostgreSQL server.
    pub async fn database(&self) -> anyhow::Result<TempDatabase> {
        let server = self.postgres.clone().map_err(anyhow::Error::msg)?;
        TempDatabase::create(server).await
    }

    /// A Redis for one cluster, pinned to the `cpu` list (`taskset -c`) if
    /// given and if the suite starts it.
    pub async fn redis(&self, cpu: Option<&str>) -> anyhow::Result<RedisEngine> {
        let prefix = unique("chat_bench");
        match self.redis.clone().map_err(anyhow::Error::msg)? {
            RedisPlan::Shared(url) => Ok(RedisEngine {
                url,
                prefix,
                private: None,
            }),
            RedisPlan::Private => RedisEngine::start_private(cpu, prefix).await,
        }
    }
}

/// A random lowercase name starting with `stem`.
fn unique(stem: &str) -> String {
    let tail: String = (0..12).map(|_| fastrand::lowercase()).collect();
    format!("{stem}_{tail}")
}

/// Runs a client tool with a timeout; its stdout, or its stderr as the error.
async fn run_tool(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = tokio::time::timeout(
        Duration::from_secs(15),
        Command::new(program)
            .args(args)
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("{program} did not finish within 15 s"))?
    .with_context(|| format!("running {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} failed ({}): {}",
            output.status,
            // One line, for a note in a Markdown list.
            String::from_utf8_lossy(&output.stderr)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A database of one run's own, dropped afterwards: with [`Self::remove`],
/// or when dropped (on a failure's way out).
pub struct TempDatabase {
    server: String,
    name: String,
    removed: bool,
}

impl TempDatabase {
    async fn create(server: String) -> anyhow::Result<Self> {
        let name = unique("chat_bench");
        run_tool(
            "createdb",
            &[&format!("--maintenance-db={server}/postgres"), &name],
        )
        .await
        .with_context(|| format!("creating database {name}"))?;
        Ok(Self {
            server,
            name,
            removed: false,
        })
    }

    /// `postgres://...` of the database.
    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    fn dropdb_args(&self) -> [String; 4] {
        [
            "--if-exists".into(),
            // Ends the connections a killed server may have left behind.
            "--force".into(),
            format!("--maintenance-db={}/postgres", self.server),
            self.name.clone(),
        ]
    }

    /// Drops the database, waiting for `dropdb`.
    pub async fn remove(mut self) -> anyhow::Result<()> {
        self.removed = true;
        let args = self.dropdb_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_tool("dropdb", &args).await.map(drop)
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        // Started, not waited for: Drop cannot await, and the runtime's
        // thread must not block on it.
        let _ = std::process::Command::new("dropdb")
            .args(self.dropdb_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }
}

/// The Redis of one cluster.
pub struct RedisEngine {
    /// `redis://HOST:PORT`
    pub url: String,
    /// Prefix of every key and channel of this cluster.
    pub prefix: String,
    private: Option<Child>,
}

impl RedisEngine {
    /// Starts `redis-server` (pinned to `cpu`, if given) on a free port,
    /// persisting nothing, and waits until it answers.
    async fn start_private(cpu: Option<&str>, prefix: String) -> anyhow::Result<Self> {
        // A port the OS just handed out and took back: another process
        // could take it in between, which the wait below would show.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut command = match cpu {
            Some(cpu) => {
                let mut taskset = Command::new("taskset");
                taskset.args(["-c", cpu, "redis-server"]);
                taskset
            }
            None => Command::new("redis-server"),
        };
        let child = command
            .arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting redis-server")?;
        let engine = Self {
            url: format!("redis://127.0.0.1:{port}"),
            prefix,
            private: Some(child),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match ping(&engine.url).await {
                Ok(()) => return Ok(engine),
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(e.context(format!("private redis-server on port {port}")))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// CPU seconds of the private server (0 for a shared one, whose CPU
    /// time is not this run's to count).
    pub fn cpu_seconds(&self) -> f64 {
        match self.private.as_ref().and_then(Child::id) {
            Some(pid) => pid_cpu_seconds(pid),
            None => 0.0,
        }
    }

    /// Stops the private server, if there is one.
    pub async fn stop(mut self) {
        if let Some(mut child) = self.private.take() {
            let _ = child.kill().await;
        }
    }
}

/// Sends `PING` to the Redis at `url` (`redis://HOST:PORT`, no password)
/// and expects `+PONG`.
async fn ping(url: &str) -> anyhow::Result<()> {
    let authority = url
        .strip_prefix("redis://")
        .with_context(|| format!("{url} is not a redis:// URL"))?
        .trim_end_matches('/');
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut tcp = TcpStream::connect(authority).await?;
        tcp.write_all(b"PING\r\n").await?;
        let mut answer = [0u8; 7];
        tcp.read_exact(&mut answer).await?;
        if &answer != b"+PONG\r\n" {
            bail!("answered {:?}", String::from_utf8_lossy(&answer));
        }
        Ok(())
    })
    .await
    .context("no answer within 5 s")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_engine_is_named_in_the_note() {
        let engines = Engines {
            postgres: Err("PostgreSQL at postgres://x is not usable: refused".into()),
            redis: Ok(RedisPlan::Private),
        };
        assert_eq!(
            engines.missing(false),
            None,
            "Socket.IO needs no PostgreSQL"
        );
        assert_eq!(
            engines.missing(true).as_deref(),
            Some("PostgreSQL at postgres://x is not usable: refused")
        );
        let no_redis = Engines {
            redis: Err("no Redis".into()),
            ..engines
        };
        assert!(no_redis.missing(false).is_some_and(|m| m == "no Redis"));
        assert!(no_redis
            .missing(true)
            .is_some_and(|m| m.starts_with("no Redis; PostgreSQL")));
    }

    /// The probe against the machine's engines, or `None` (after saying
    /// so; a failure in CI) when `postgres` (or Redis) is missing.
    async fn machine(postgres: bool) -> Option<Engines> {
        let engines = Engines::probe(&EngineConfig {
            postgres: chat_test_engines::postgres_server(),
            redis: None,
        })
        .await;
        match engines.missing(postgres) {
            Some(why) => {
                chat_test_engines::missing("the cluster's engines", &why);
                None
            }
            None => Some(engines),
        }
    }

    async fn database_exists(server: &str, name: &str) -> bool {
        let query = format!("select count(*) from pg_database where datname = '{name}'");
        let out = run_tool("psql", &[&format!("{server}/postgres"), "-Atqc", &query])
            .await
            .expect("psql");
        out.trim() == "1"
    }

    async fn gone_within(server: &str, name: &str, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while database_exists(server, name).await {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }

    #[tokio::test]
    async fn a_database_lives_until_removed_or_dropped() {
        let Some(engines) = machine(true).await else {
            return;
        };
        let db = engines.database().await.expect("createdb");
        let (server, name) = (db.server.clone(), db.name.clone());
        assert!(db.url().ends_with(&format!("/{name}")));
        assert!(database_exists(&server, &name).await);
        db.remove().await.expect("dropdb");
        assert!(!database_exists(&server, &name).await);

        // On a failure's way out, Drop starts dropdb without waiting for it.
        let db = engines.database().await.expect("createdb");
        let name = db.name.clone();
        drop(db);
        assert!(gone_within(&server, &name, Duration::from_secs(10)).await);
    }

    #[tokio::test]
    async fn a_private_redis_answers_until_stopped() {
        let Some(engines) = machine(false).await else {
            return;
        };
        let redis = engines.redis(Some("0")).await.expect("private redis");
        assert!(redis.prefix.starts_with("chat_bench_"));
        ping(&redis.url).await.expect("answers");
        if redis.private.is_some() {
            assert!(redis.cpu_seconds().is_finite(), "its CPU time is counted");
            let url = redis.url.clone();
            redis.stop().await;
            assert!(ping(&url).await.is_err(), "stopped");
        }
    }

    #[tokio::test]
    async fn a_closed_port_is_no_redis() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        assert!(ping(&format!("redis://127.0.0.1:{port}")).await.is_err());
        assert!(ping("http://127.0.0.1:1").await.is_err());
    }
}
