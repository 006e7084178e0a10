//! The servers under test: how to start each one, pinned to its own core,
//! and how much CPU and memory its process uses.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A server taking part in the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// This project's server, driven through its full protocol.
    ChatServer,
    /// uWebSockets.js (`bench/peers/node/uws.js`).
    Uws,
    /// Node's `ws` (`bench/peers/node/ws.js`).
    NodeWs,
    /// Socket.IO (`bench/peers/node/socketio.js`).
    SocketIo,
    /// Python `websockets` (`bench/peers/python/server.py`).
    Python,
    /// The axum chat example's pattern (`bench/peers/axum-relay`).
    AxumRelay,
}

/// How a load generator talks to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// chat-server's protocol: login, ticket, JSON events.
    Chat,
    /// The peers' minimal relay: `/ws?room=NAME`, text in, text out.
    Relay,
    /// Socket.IO over its WebSocket transport (Engine.IO v4 framing).
    SocketIo,
}

impl ServerKind {
    /// Every server, this one first.
    pub const ALL: [Self; 6] = [
        Self::ChatServer,
        Self::Uws,
        Self::NodeWs,
        Self::SocketIo,
        Self::Python,
        Self::AxumRelay,
    ];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::ChatServer => "chat-server",
            Self::Uws => "uWebSockets.js",
            Self::NodeWs => "Node ws",
            Self::SocketIo => "Socket.IO",
            Self::Python => "Python websockets",
            Self::AxumRelay => "axum relay",
        }
    }

    /// A short name for command lines and file names.
    pub fn id(self) -> &'static str {
        match self {
            Self::ChatServer => "chat-server",
            Self::Uws => "uws",
            Self::NodeWs => "ws",
            Self::SocketIo => "socketio",
            Self::Python => "python",
            Self::AxumRelay => "axum",
        }
    }

    /// Its place in [`Self::ALL`], which orders every report.
    pub fn index(self) -> usize {
        Self::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }

    /// Looks a server up by [`Self::id`].
    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.id() == id)
    }

    /// The protocol its clients speak.
    pub fn proto(self) -> Proto {
        match self {
            Self::ChatServer => Proto::Chat,
            Self::SocketIo => Proto::SocketIo,
            Self::Uws | Self::NodeWs | Self::Python | Self::AxumRelay => Proto::Relay,
        }
    }

    /// Whether it serves wss (axum has no TLS of its own; its chat example
    /// serves plain ws).
    pub fn supports_tls(self) -> bool {
        self != Self::AxumRelay
    }

    /// Why it cannot run on this machine, if it cannot.
    pub fn missing(self, paths: &Paths) -> Option<String> {
        let need = |p: PathBuf, what: &str| {
            (!p.exists()).then(|| format!("{} not found: {what}", p.display()))
        };
        match self {
            Self::ChatServer => need(paths.bin("chat-server"), "build with cargo build --release"),
            Self::AxumRelay => need(paths.bin("axum-relay"), "build with cargo build --release"),
            Self::Uws | Self::NodeWs | Self::SocketIo => need(
                paths.peers.join("node/node_modules"),
                "run bench/peers/setup.sh",
            ),
            Self::Python => need(paths.python(), "run bench/peers/setup.sh"),
        }
    }
}

/// Where the programs are.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `bench/peers` in the repository.
    pub peers: PathBuf,
    /// The directory of this benchmark's own binary, where cargo also put
    /// `chat-server` and `axum-relay`.
    pub bin_dir: PathBuf,
}

impl Paths {
    /// Paths relative to this crate and the running binary.
    pub fn discover() -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        Ok(Self {
            peers: Path::new(env!("CARGO_MANIFEST_DIR")).join("peers"),
            bin_dir: exe
                .parent()
                .context("binary without a directory")?
                .to_owned(),
        })
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    fn python(&self) -> PathBuf {
        self.peers.join("python/.venv/bin/python")
    }
}

/// A certificate and key in PEM files, for wss.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
    /// The certificate, for the client to trust.
    pub cert_pem: String,
}

impl CertFiles {
    /// A self-signed ECDSA P-256 certificate for `localhost`, written to `dir`.
    pub fn generate(dir: &Path) -> anyhow::Result<Self> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        let cert = params.self_signed(&key)?;
        let files = Self {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            cert_pem: cert.pem(),
        };
        std::fs::write(&files.cert, &files.cert_pem)?;
        std::fs::write(&files.key, key.serialize_pem())?;
        Ok(files)
    }
}

/// A running server process.
pub struct Running {
    child: Child,
    /// Its process id (taskset execs the server, so this is the server's).
    pub pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
    /// How it was started, to start it again the same way.
    launch: Launch,
    /// Its data directory, kept across restarts.
    data: tempfile::TempDir,
}

/// Flags that lift chat-server's per-client abuse limits, which a load
/// generator would otherwise hit by design; everything else stays default.
const CHAT_SERVER_FLAGS: &[&str] = &[
    "--rate",
    "1000000",
    "--burst",
    "1000000",
    "--send-queue",
    "4096",
    // Every load client registers from this one machine.
    "--registrations-per-address",
    "1000000",
    "--registrations-per-hour",
    "1000000",
    "--max-connections-per-address",
    "1000000",
    "--max-connections-per-user",
    "1000000",
];

/// What a server is started with.
struct Launch {
    kind: ServerKind,
    paths: Paths,
    tls: Option<CertFiles>,
    cpu: String,
    /// Arguments after the usual ones (a cluster node's, say).
    extra: Vec<String>,
}

impl Launch {
    /// Starts the server on `port` (0: any) with its data in `data`, and
    /// waits until it listens; returns the process, its id and its port.
    async fn spawn(&self, port: u16, data: &Path) -> anyhow::Result<(Child, u32, u16)> {
        let Self {
            kind,
            paths,
            tls,
            cpu,
            extra,
        } = self;
        let mut cmd = Command::new("taskset");
        cmd.arg("-c").arg(cpu);
        match kind {
            ServerKind::ChatServer => {
                cmd.arg(paths.bin("chat-server"))
                    .arg("--listen")
                    .arg(format!("127.0.0.1:{port}"))
                    .arg("--data-dir")
                    .arg(data)
                    .args(CHAT_SERVER_FLAGS)
                    // Info logs a line per connection; production setups
                    // that care about throughput log warnings only.
                    .env("RUST_LOG", "warn");
                if let Some(tls) = tls {
                    cmd.arg("--tls")
                        .arg("--cert")
                        .arg(&tls.cert)
                        .arg("--key")
                        .arg(&tls.key);
                }
            }
            ServerKind::AxumRelay => {
                cmd.arg(paths.bin("axum-relay"));
            }
            ServerKind::Uws | ServerKind::NodeWs | ServerKind::SocketIo => {
                let script = match kind {
                    ServerKind::Uws => "uws.js",
                    ServerKind::NodeWs => "ws.js",
                    _ => "socketio.js",
                };
                cmd.arg("node")
                    .arg(script)
                    .current_dir(paths.peers.join("node"));
            }
            ServerKind::Python => {
                cmd.arg(paths.python())
                    .arg(paths.peers.join("python/server.py"));
            }
        }
        if *kind != ServerKind::ChatServer {
            if port != 0 {
                cmd.arg("--port").arg(port.to_string());
            }
            if let Some(tls) = tls {
                cmd.arg("--cert").arg(&tls.cert).arg("--key").arg(&tls.key);
            }
        }
        cmd.args(extra);
        // Appended to, so that a restarted server's log follows the first one's.
        let log_path = data.join("stderr.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", kind.name()))?;
        let pid = child.id().context("server exited at once")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let port = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(port) = listening_port(&line) {
                    return Ok(port);
                }
            }
            bail!("{} exited before listening", kind.name())
        })
        .await
        .map_err(|_| anyhow::anyhow!("{} did not start within 30 s", kind.name()))?;
        let port = match port {
            Ok(port) => port,
            Err(e) => {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                bail!("{e}; its stderr:\n{log}");
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok((child, pid, port))
    }
}

impl Running {
    /// Starts `kind` pinned to `cpu` and waits until it listens.
    pub async fn start(
        kind: ServerKind,
        paths: &Paths,
        tls: Option<&CertFiles>,
        cpu: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with(kind, paths, tls, cpu, Vec::new()).await
    }

    /// [`Self::start`] with `extra` arguments after the usual ones.
    pub async fn start_with(
        kind: ServerKind,
        paths: &Paths,
        tls: Option<&CertFiles>,
        cpu: &str,
        extra: Vec<String>,
    ) -> anyhow::Result<Self> {
        let launch = Launch {
            kind,
            paths: paths.clone(),
            tls: tls.cloned(),
            cpu: cpu.to_owned(),
            extra,
        };
        let data = tempfile::tempdir()?;
        let (child, pid, port) = launch.spawn(0, data.path()).await?;
        Ok(Self {
            child,
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            launch,
            data,
        })
    }

    /// Kills the server with SIGKILL, as a crash would (no Close frames, no
    /// last flush), then starts it again on the same port with the same data
    /// directory; returns once it listens. [`Self::pid`] is then the new
    /// process's, whose CPU time starts from zero.
    pub async fn crash_and_restart(&mut self) -> anyhow::Result<()> {
        self.child.kill().await.context("killing the server")?;
        let (child, pid, _) = self
            .launch
            .spawn(self.addr.port(), self.data.path())
            .await
            .context("restarting the server")?;
        self.child = child;
        self.pid = pid;
        Ok(())
    }

    /// CPU time (user + system) the process has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        pid_cpu_seconds(self.pid)
    }

    /// Resident memory of the process now.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid));
        status
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kib| kib * 1024)
    }

    /// Stops the server.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// `LISTENING <port>` from a peer, or chat-server's
/// `chat-server listening on http://127.0.0.1:<port>`.
fn listening_port(line: &str) -> Option<u16> {
    if let Some(port) = line.strip_prefix("LISTENING ") {
        return port.trim().parse().ok();
    }
    let url = line.strip_prefix("chat-server listening on ")?;
    let authority = url.split("://").nth(1)?.split('/').next()?;
    authority.rsplit(':').next()?.parse().ok()
}

/// What a measurement charges server CPU time to: one process, or all of a
/// cluster's.
pub trait CpuTime {
    /// CPU seconds (user + system) used so far; NaN if unreadable.
    fn cpu_seconds(&self) -> f64;
}

impl CpuTime for Running {
    fn cpu_seconds(&self) -> f64 {
        Running::cpu_seconds(self)
    }
}

/// The CPU seconds process `pid` has used so far (NaN once it is gone).
pub fn pid_cpu_seconds(pid: u32) -> f64 {
    process_cpu_seconds(&format!("/proc/{pid}/stat")).unwrap_or(f64::NAN)
}

/// The CPU seconds of this benchmark process itself.
pub fn own_cpu_seconds() -> f64 {
    process_cpu_seconds("/proc/self/stat").unwrap_or(f64::NAN)
}

fn process_cpu_seconds(stat_path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the command name, which may itself hold spaces: the 12th
    // and 13th are utime and stime in clock ticks.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_port_from_either_startup_line() {
        assert_eq!(listening_port("LISTENING 4242"), Some(4242));
        assert_eq!(
            listening_port("chat-server listening on https://127.0.0.1:8443/"),
            Some(8443)
        );
        assert_eq!(
            listening_port("chat-server listening on http://127.0.0.1:80"),
            Some(80)
        );
        assert_eq!(listening_port("something else"), None);
    }

    #[test]
    fn reads_this_process_cpu_time() {
        let cpu = own_cpu_seconds();
        assert!(cpu.is_finite() && cpu >= 0.0, "cpu = {cpu}");
    }
}
