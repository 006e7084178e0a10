//! Server settings: every one is a command-line flag and a `CHAT_*` variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;

use chat_rooms::{Durability, Retention, Storage};
use clap::{ArgAction, Parser};

/// Everything `chat-server` can be told. Defaults are the embedded setup:
/// plain HTTP on 127.0.0.1:8080, data in `./data`, registration open.
#[derive(Debug, Clone, Parser)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "CHAT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9090;
    /// port 0 picks one). Off by default: metrics are never public by
    /// accident, and belong on an address only the operator's scraper reaches.
    #[arg(long, env = "CHAT_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Directory for the account database and generated certificates.
    #[arg(long, env = "CHAT_DATA_DIR", default_value = "data", global = true)]
    pub data_dir: PathBuf,

    /// Serve HTTPS and wss. Without --cert/--key a self-signed certificate is
    /// generated once and kept in the data directory.
    #[arg(long, env = "CHAT_TLS", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub tls: bool,

    /// PEM certificate chain for --tls.
    #[arg(long, env = "CHAT_TLS_CERT", requires_all = ["key", "tls"])]
    pub cert: Option<PathBuf>,

    /// PEM private key for --tls.
    #[arg(long, env = "CHAT_TLS_KEY", requires_all = ["cert", "tls"])]
    pub key: Option<PathBuf>,

    /// Extra browser origins allowed to open sockets (e.g. https://chat.example.com);
    /// the server's own origin is always allowed. Repeat, or comma-separate in the variable.
    #[arg(
        long = "allowed-origin",
        env = "CHAT_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// Proxies (their IP addresses) whose connections start with a PROXY
    /// protocol header (HAProxy's `send-proxy`/`send-proxy-v2`) naming the
    /// client: its address then counts for the login throttle, the
    /// registration rates and the logs. Their connections must send one;
    /// others are served as they come. Repeat, or comma-separate.
    #[arg(
        long = "proxy-protocol-from",
        env = "CHAT_PROXY_PROTOCOL_FROM",
        value_delimiter = ','
    )]
    pub proxy_protocol_from: Vec<std::net::IpAddr>,

    /// The origin browsers reach this server at (`https://chat.example.com`),
    /// when it differs from what the `Host` header says, as behind a proxy.
    /// Once set, it alone is the server's own origin and `Host` is ignored:
    /// no name pointed at this server (DNS rebinding) passes as its own.
    #[arg(long, env = "CHAT_PUBLIC_URL", value_parser = crate::origin::parse_public_url)]
    pub public_url: Option<String>,

    /// Turn off `POST /api/register`; accounts are then made with `chat-server user add`.
    #[arg(long, env = "CHAT_DISABLE_REGISTRATION", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub disable_registration: bool,

    /// Registration needs a one-time invite, made on the server's machine
    /// with `chat-server admin invite`; without a live one, 403
    /// `invalid_invite`.
    #[arg(long, env = "CHAT_INVITE_ONLY", action = ArgAction::SetTrue, value_parser = BoolishValueParser::new())]
    pub invite_only: bool,

    /// Registrations an hour from one address (all of them may come at
    /// once); beyond, 429 `too_many_registrations` with Retry-After.
    #[arg(long, env = "CHAT_REGISTRATIONS_PER_ADDRESS", default_value_t = 5, value_parser = positive_u32)]
    pub registrations_per_address: u32,

    /// Registrations an hour from all addresses together, on this server.
    #[arg(long, env = "CHAT_REGISTRATIONS_PER_HOUR", default_value_t = 200, value_parser = positive_u32)]
    pub registrations_per_hour: u32,

    /// How long a login ticket stays valid if unused.
    #[arg(long, env = "CHAT_TICKET_TTL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub ticket_ttl: Duration,

    /// How long the session a login returns may mint tickets (`POST /api/ticket`)
    /// before the password is needed again; use does not extend it. Sessions
    /// are stored in chat.db (as hashes of their tokens), so they survive a
    /// restart; the live ones are also kept in memory.
    #[arg(long, env = "CHAT_SESSION_TTL", default_value = "24h", value_parser = nonzero_duration)]
    pub session_ttl: Duration,

    /// How often the server pings each client.
    #[arg(long, env = "CHAT_PING_INTERVAL", default_value = "20s", value_parser = nonzero_duration)]
    pub ping_interval: Duration,

    /// How long a client may take for each part of an HTTP request: the TLS
    /// handshake, the request head, and the whole body (then 408).
    #[arg(long, env = "CHAT_REQUEST_TIMEOUT", default_value = "10s", value_parser = nonzero_duration)]
    pub request_timeout: Duration,

    /// How long a client may take to answer a ping, and a write to it may
    /// stay blocked (its TCP window closed), before it is dropped.
    #[arg(long, env = "CHAT_PONG_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub pong_timeout: Duration,

    /// Largest accepted WebSocket message in bytes; larger ones close the connection with 1009.
    #[arg(long, env = "CHAT_MAX_MESSAGE_SIZE", default_value_t = 64 * 1024, value_parser = positive)]
    pub max_message_size: usize,

    /// Most rooms one connection may be in at once.
    #[arg(long, env = "CHAT_MAX_ROOMS", default_value_t = 32)]
    pub max_rooms: usize,

    /// Sustained frames per second one connection may send.
    #[arg(long, env = "CHAT_RATE", default_value_t = 5.0, value_parser = non_negative)]
    pub rate: f64,

    /// Frames a connection may send in a burst above the sustained rate.
    #[arg(long, env = "CHAT_BURST", default_value_t = 20)]
    pub burst: u32,

    /// Frames queued for one client before it counts as too slow and is dropped.
    #[arg(long, env = "CHAT_SEND_QUEUE", default_value_t = 256, value_parser = positive)]
    pub send_queue: usize,

    /// Connections (HTTP and WebSocket) served at once; 0: as many as the
    /// open-file limit allows, less 64 kept for the server itself. Beyond,
    /// a new connection gets 503 at once (`GET /healthz` still answers).
    #[arg(long, env = "CHAT_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,

    /// Connections at once from one client address; beyond, 429 at once.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 64, value_parser = positive)]
    pub max_connections_per_address: usize,

    /// WebSocket connections at once of one user on this server; beyond,
    /// the upgrade gets 429.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS_PER_USER", default_value_t = 16, value_parser = positive)]
    pub max_connections_per_user: usize,

    /// Bytes queued for one client before it counts as too slow and is
    /// dropped (a frame always fits an empty queue).
    #[arg(long, env = "CHAT_SEND_QUEUE_BYTES", default_value_t = 1 << 20, value_parser = positive)]
    pub send_queue_bytes: usize,

    /// Login attempts per user name from one address (and ten times as many
    /// per address over all names) before further attempts get 429 for the
    /// rest of --login-window. Counted before the password is checked; a
    /// right password gives its attempt back.
    #[arg(long, env = "CHAT_LOGIN_ATTEMPTS", default_value_t = 5)]
    pub login_attempts: u32,

    /// The window in which failed logins are counted.
    #[arg(long, env = "CHAT_LOGIN_WINDOW", default_value = "1m", value_parser = humantime::parse_duration)]
    pub login_window: Duration,

    /// Messages of recent history sent with each plain join.
    #[arg(long, env = "CHAT_HISTORY_ON_JOIN", default_value_t = 50)]
    pub history_on_join: usize,

    /// Keep at most this many messages per room (default: keep all).
    #[arg(long, env = "CHAT_RETAIN_MESSAGES", value_parser = clap::value_parser!(u64).range(1..), global = true)]
    pub retain_messages: Option<u64>,

    /// Forget messages older than this, e.g. 30d (default: keep all).
    #[arg(long, env = "CHAT_RETAIN_FOR", value_parser = nonzero_duration, global = true)]
    pub retain_for: Option<Duration>,

    /// normal: a stored message survives the server being killed; full: it
    /// also survives the machine losing power, at the cost of a disk flush per message.
    #[arg(long, value_enum, env = "CHAT_DURABILITY", default_value = "normal")]
    pub durability: Durability,

    /// file: messages.db in the data directory; memory: nothing survives a restart.
    #[arg(long, value_enum, env = "CHAT_STORAGE", default_value = "file")]
    pub storage: Storage,

    /// PostgreSQL for accounts, sessions and the room log (`postgres://...`),
    /// instead of the data directory's SQLite files. The schema is created
    /// and migrated on start. Alone, it runs one node on PostgreSQL; with
    /// --redis-url, one node of a cluster.
    #[arg(long, env = "CHAT_DATABASE_URL", value_parser = postgres_url, global = true)]
    pub database_url: Option<String>,

    /// Redis for what the nodes of a cluster share live: the bus between
    /// nodes, presence, tickets and the login throttle (`redis://...`).
    /// Needs --database-url, which stays the authority for every message.
    #[arg(long, env = "CHAT_REDIS_URL", requires = "database_url", value_parser = redis_url)]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key and channel, so that several clusters (or
    /// tests) can share one Redis.
    #[arg(long, env = "CHAT_REDIS_PREFIX", default_value = "chat", value_parser = redis_prefix)]
    pub redis_prefix: String,

    /// This node's name in the cluster (default: host name and listening port).
    #[arg(long, env = "CHAT_NODE_ID", value_parser = node_id)]
    pub node_id: Option<String>,

    /// How long a node that stops heartbeating keeps its members in the
    /// cluster's presence: a killed node's members leave, with member_left
    /// to the others, within this time.
    #[arg(long, env = "CHAT_PRESENCE_TTL", default_value = "30s", value_parser = presence_ttl)]
    pub presence_ttl: Duration,

    /// On shutdown, how long to wait for clients to take their Close frame.
    #[arg(long, env = "CHAT_SHUTDOWN_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// How the server logs to stderr: text for people, json (one object per
    /// line) for log collectors.
    #[arg(long, value_enum, env = "CHAT_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

/// The shape of the server's log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event: time, level, target, message, then
    /// the fields as `key=value`.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message`
    /// and the event's fields beside them at the top level.
    Json,
}

impl Config {
    /// Largest frame the server sends with messages in it (`joined`,
    /// `history_page`): 1 KiB above the largest message it accepts, as
    /// `docs/protocol.md` promises clients.
    pub fn max_frame(&self) -> usize {
        self.max_message_size.saturating_add(1024)
    }

    /// The retention limits, as the message store wants them.
    pub fn retention(&self) -> Retention {
        Retention {
            max_messages: self.retain_messages,
            max_age: self.retain_for,
        }
    }

    /// This node's name: --node-id, or the host name and listening port.
    pub fn node_name(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".to_owned());
            format!("{host}:{}", self.listen.port())
        })
    }

    /// The defaults with another data directory, as tests and embedders want.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let mut config = Self::parse_from(["chat-server"]);
        config.data_dir = data_dir.into();
        config
    }
}

fn nonzero_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

fn postgres_url(s: &str) -> Result<String, String> {
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        Ok(s.to_owned())
    } else {
        Err("must be a postgres:// or postgresql:// URL".into())
    }
}

fn redis_url(s: &str) -> Result<String, String> {
    if s.starts_with("redis://") || s.starts_with("rediss://") {
        Ok(s.to_owned())
    } else {
        Err("must be a redis:// or rediss:// URL".into())
    }
}

/// Prefixes and node ids end up in key names and in a hash tag's
/// neighbourhood: keep them to characters that cannot confuse either.
fn plain_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err("must be 1-64 of A-Z a-z 0-9 - _ . :".into())
    }
}

fn redis_prefix(s: &str) -> Result<String, String> {
    plain_name(s)
}

fn node_id(s: &str) -> Result<String, String> {
    plain_name(s)
}

fn presence_ttl(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d < Duration::from_millis(300) => Err("must be at least 300ms".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn positive_u32(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        Ok(_) => Err("must be a finite number, zero or more".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_embedded_setup() {
        let config = Config::parse_from(["chat-server"]);
        assert_eq!(config.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(config.data_dir, PathBuf::from("data"));
        assert!(!config.tls && !config.disable_registration && !config.invite_only);
        assert_eq!(config.ticket_ttl, Duration::from_secs(30));
        assert_eq!(config.session_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(config.max_message_size, 65536);
        assert_eq!(config.log_format, LogFormat::Text);
    }

    #[test]
    fn the_log_format_is_text_or_json() {
        let json = Config::parse_from(["chat-server", "--log-format", "json"]);
        assert_eq!(json.log_format, LogFormat::Json);
        let refused = Config::try_parse_from(["chat-server", "--log-format", "yaml"]);
        let message = refused.expect_err("--log-format yaml").to_string();
        assert!(
            message.contains("text") && message.contains("json"),
            "{message}"
        );
    }

    #[test]
    fn flags_parse_durations_and_lists() {
        let config = Config::parse_from([
            "chat-server",
            "--ticket-ttl",
            "250ms",
            "--session-ttl",
            "90m",
            "--allowed-origin",
            "https://a.example,https://b.example",
        ]);
        assert_eq!(config.ticket_ttl, Duration::from_millis(250));
        assert_eq!(config.session_ttl, Duration::from_secs(90 * 60));
        assert_eq!(
            config.allowed_origins,
            ["https://a.example", "https://b.example"]
        );
    }

    #[test]
    fn values_that_would_break_the_server_are_refused() {
        for args in [
            ["--send-queue", "0"],
            ["--ping-interval", "0s"],
            ["--session-ttl", "0s"],
            ["--rate", "-1"],
            ["--max-message-size", "0"],
            ["--database-url", "mysql://localhost/chat"],
            ["--node-id", "a b"],
            ["--redis-prefix", "{x}"],
            ["--presence-ttl", "10ms"],
        ] {
            let parsed = Config::try_parse_from(["chat-server", args[0], args[1]]);
            assert!(parsed.is_err(), "{args:?} was accepted");
        }
    }

    #[test]
    fn redis_needs_a_database() {
        let refused = Config::try_parse_from(["chat-server", "--redis-url", "redis://127.0.0.1"]);
        let message = refused.expect_err("--redis-url alone").to_string();
        assert!(message.contains("--database-url"), "{message}");
        let both = Config::try_parse_from([
            "chat-server",
            "--redis-url",
            "redis://127.0.0.1",
            "--database-url",
            "postgres://postgres@127.0.0.1/chat",
        ]);
        assert!(both.is_ok());
    }
}
