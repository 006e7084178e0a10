//! The cost of durability: messages per second the server accepts (stores,
//! acknowledges and relays) with its history on disk versus in memory, and
//! into PostgreSQL (cluster mode's room log, group-committed), on one node
//! and on two.
//!
//! Each run starts real servers in this process on 127.0.0.1:0, connects
//! listeners and senders over real sockets to one room, and has every sender
//! keep a window of messages in flight until it has all its acks.
//! Throughput is acks per second over the whole run. Writes a Markdown report
//! to the path given as the first argument, with the targets of the message
//! path redraw checked: `full` keeps at least half of `normal`'s throughput,
//! `normal` at least 80% of `memory`'s. The PostgreSQL rows (a fresh
//! database per run on `CHAT_BENCH_POSTGRES`, default the machine's, and a
//! private `redis-server` for two nodes) have no target; without the
//! engines the report says why they are missing.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context;
use chat_bench::engines::{EngineConfig, Engines, RedisEngine, TempDatabase};
use chat_bench::verdict::{Goal, Verdict};
use chat_protocol::{ClientEvent, ServerEvent};
use chat_server::{Config, Server};
use chat_server::{Durability, Storage};
use chat_tui::client::{self, ClientConfig, ServerUrl, TlsOptions};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const PASSWORD: &str = "benchmark password";

/// Clients and messages of one run.
#[derive(Debug, Clone, Copy)]
struct Load {
    senders: usize,
    subscribers: usize,
    per_sender: usize,
    window: usize,
    repeats: usize,
}

impl Load {
    fn messages(&self) -> usize {
        self.senders * self.per_sender
    }
}

/// The storage modes' load, as in every earlier report.
const FEW_SENDERS: Load = Load {
    senders: 4,
    subscribers: 16,
    per_sender: 2_500,
    window: 32,
    repeats: 5,
};

/// Many concurrent senders, for PostgreSQL's group commit: up to 1,024
/// messages in flight, enough to fill its batches (512 at most).
const MANY_SENDERS: Load = Load {
    senders: 32,
    subscribers: 16,
    per_sender: 400,
    window: 32,
    repeats: 3,
};

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

#[derive(Clone, Copy)]
struct Mode {
    name: &'static str,
    storage: Storage,
    durability: Durability,
}

/// Named by the server's public flags only: what `--storage memory` keeps
/// its history in is the server's business.
const MODES: [Mode; 3] = [
    Mode {
        name: "memory (`--storage memory`)",
        storage: Storage::Memory,
        durability: Durability::Normal,
    },
    Mode {
        name: "file, `--durability normal` (default)",
        storage: Storage::File,
        durability: Durability::Normal,
    },
    Mode {
        name: "file, `--durability full`",
        storage: Storage::File,
        durability: Durability::Full,
    },
];

async fn connect(addr: std::net::SocketAddr, user: &str) -> anyhow::Result<Ws> {
    let config = ClientConfig {
        server: ServerUrl::parse(&format!("http://{addr}"))?,
        user: user.to_owned(),
        password: PASSWORD.to_owned(),
        tls: TlsOptions::default(),
    };
    let ticket = client::login(&config).await?;
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (mut ws, _) = tokio_tungstenite::client_async(config.server.ws_url(&ticket), tcp).await?;
    let join = ClientEvent::JoinRoom {
        room: "bench".into(),
        since: None,
        epoch: None,
    };
    ws.send(Message::text(join.to_json())).await?;
    // Wait for our own joined: the room is then ready for this client.
    while let Some(frame) = ws.next().await {
        if let Message::Text(text) = frame? {
            if matches!(serde_json::from_str(&text), Ok(ServerEvent::Joined { .. })) {
                return Ok(ws);
            }
        }
    }
    anyhow::bail!("connection ended before joined")
}

/// Sends `per_sender` messages with `window` in flight; returns when all are acked.
async fn send_all(ws: Ws, sender: usize, per_sender: usize, window: usize) -> anyhow::Result<()> {
    let (mut sink, mut stream) = ws.split();
    let mut sent = 0;
    let mut acked = 0;
    while acked < per_sender {
        while sent < per_sender && sent - acked < window {
            let event = ClientEvent::SendMessage {
                room: "bench".into(),
                text: format!("sender {sender} message {sent}: a typical short chat line"),
                client_id: Some(format!("{sender}-{sent}")),
            };
            sink.feed(Message::text(event.to_json())).await?;
            sent += 1;
        }
        sink.flush().await?;
        match stream.next().await.context("connection ended")?? {
            Message::Text(text) if text.starts_with(r#"{"type":"ack""#) => acked += 1,
            Message::Text(text) if text.starts_with(r#"{"type":"error""#) => {
                anyhow::bail!("server refused: {text}")
            }
            _ => {}
        }
    }
    sink.close().await?;
    Ok(())
}

/// Reads until `expected` messages arrived.
async fn listen(ws: Ws, expected: usize) -> anyhow::Result<()> {
    let (_, mut stream) = ws.split();
    let mut got = 0;
    while got < expected {
        if let Message::Text(text) = stream.next().await.context("connection ended")?? {
            if text.starts_with(r#"{"type":"new_message""#) {
                got += 1;
            }
        }
    }
    Ok(())
}

/// Where the servers of a run keep their messages.
#[derive(Clone, Copy)]
enum Backend {
    /// One server with its own SQLite files (or memory).
    Embedded(Mode),
    /// `nodes` servers on one fresh PostgreSQL database; more than one
    /// share a private Redis as a cluster.
    Postgres { nodes: usize },
}

/// What a PostgreSQL run needs, made fresh for it and removed after.
struct RunEngines {
    database: TempDatabase,
    redis: Option<RedisEngine>,
}

/// The server's configuration for one node of `backend`.
fn node_config(
    backend: Backend,
    data_dir: &std::path::Path,
    engines: Option<&RunEngines>,
    node: usize,
) -> anyhow::Result<Config> {
    let mut config = Config::with_data_dir(data_dir);
    config.listen = "127.0.0.1:0".parse()?;
    config.rate = 1e9;
    config.burst = u32::MAX;
    config.send_queue = 65_536;
    config.history_on_join = 0;
    match backend {
        Backend::Embedded(mode) => {
            config.storage = mode.storage;
            config.durability = mode.durability;
        }
        Backend::Postgres { .. } => {
            let engines = engines.context("a PostgreSQL run without its engines")?;
            config.database_url = Some(engines.database.url());
            if let Some(redis) = &engines.redis {
                config.redis_url = Some(redis.url.clone());
                config.redis_prefix = redis.prefix.clone();
                config.node_id = Some(format!("node{node}"));
            }
        }
    }
    Ok(config)
}

/// One run; returns accepted messages per second.
async fn run(load: Load, backend: Backend, engines: Option<&Engines>) -> anyhow::Result<f64> {
    let run_engines = match (backend, engines) {
        (Backend::Postgres { nodes }, Some(engines)) => Some(RunEngines {
            database: engines.database().await?,
            redis: if nodes > 1 {
                Some(engines.redis(None).await?)
            } else {
                None
            },
        }),
        (Backend::Postgres { .. }, None) => anyhow::bail!("PostgreSQL runs need the engines"),
        (Backend::Embedded(_), _) => None,
    };
    let nodes = match backend {
        Backend::Embedded(_) => 1,
        Backend::Postgres { nodes } => nodes,
    };
    let mut dirs = Vec::new();
    let mut addrs = Vec::new();
    let mut running = Vec::new();
    // One after the other: the first node alone migrates a fresh database.
    for node in 0..nodes {
        let dir = tempfile::tempdir()?;
        let config = node_config(backend, dir.path(), run_engines.as_ref(), node)?;
        let server = Server::bind(config)
            .await
            .with_context(|| format!("starting node {node}"))?;
        addrs.push(server.local_addr()?);
        running.push((server.shutdown_token(), tokio::spawn(server.run())));
        dirs.push(dir);
    }
    let measured = drive(load, &addrs).await;
    for (shutdown, serving) in running {
        shutdown.cancel();
        serving.await??;
    }
    if let Some(engines) = run_engines {
        if let Some(redis) = engines.redis {
            redis.stop().await;
        }
        engines.database.remove().await?;
    }
    measured
}

/// Registers the users (on the first node: accounts are shared), connects
/// client `i` to node `i % nodes`, sends, and waits for every listener to
/// have every message.
async fn drive(load: Load, addrs: &[std::net::SocketAddr]) -> anyhow::Result<f64> {
    let users: Vec<String> = (0..load.senders + load.subscribers)
        .map(|i| format!("u{i}"))
        .collect();
    for user in &users {
        let config = ClientConfig {
            server: ServerUrl::parse(&format!("http://{}", addrs[0]))?,
            user: user.clone(),
            password: PASSWORD.to_owned(),
            tls: TlsOptions::default(),
        };
        client::register(&config).await?;
    }
    let node = |i: usize| addrs[i % addrs.len()];
    let mut listeners = Vec::new();
    for (i, user) in users[load.senders..].iter().enumerate() {
        let ws = connect(node(i), user).await?;
        listeners.push(tokio::spawn(listen(ws, load.messages())));
    }
    let mut senders = Vec::new();
    for (i, user) in users[..load.senders].iter().enumerate() {
        senders.push(connect(node(i), user).await?);
    }

    let start = Instant::now();
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, ws)| tokio::spawn(send_all(ws, i, load.per_sender, load.window)))
        .collect();
    for task in tasks {
        task.await??;
    }
    let elapsed = start.elapsed();
    for listener in listeners {
        tokio::time::timeout(Duration::from_secs(60), listener)
            .await
            .context("a listener did not get every message within 60 s")???;
    }
    Ok(load.messages() as f64 / elapsed.as_secs_f64())
}

/// Runs `backend` `load.repeats` times: the median, the least and the most.
async fn repeat(
    load: Load,
    backend: Backend,
    engines: Option<&Engines>,
) -> anyhow::Result<(f64, f64, f64)> {
    let mut rates = Vec::new();
    for _ in 0..load.repeats {
        rates.push(run(load, backend, engines).await?);
    }
    rates.sort_by(f64::total_cmp);
    Ok((rates[rates.len() / 2], rates[0], rates[rates.len() - 1]))
}

fn describe(load: Load) -> String {
    format!(
        "{} senders with {} messages in flight each, {} subscribers, one room, {} messages per run, {} runs per row",
        load.senders,
        load.window,
        load.subscribers,
        load.messages(),
        load.repeats
    )
}

/// The PostgreSQL section: SQLite's default at the same load for reference,
/// then one node and two on PostgreSQL.
async fn postgres_section(report: &mut String) -> anyhow::Result<()> {
    let load = MANY_SENDERS;
    let server = std::env::var("CHAT_BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
    let engines = Engines::probe(&EngineConfig {
        postgres: server.clone(),
        redis: None,
    })
    .await;
    let setting = |name: &'static str| {
        let engines = &engines;
        async move {
            engines
                .postgres_setting(name)
                .await
                .unwrap_or_else(|| "?".to_owned())
        }
    };
    writeln!(
        report,
        "\n### Into PostgreSQL (cluster mode's room log, group commit)\n"
    )?;
    writeln!(
        report,
        "Load: {}; two nodes get alternate clients (so half of each message's deliveries cross nodes through Redis). \
         Each run has a fresh database on {server}, and two nodes a private `redis-server`; the PostgreSQL server is \
         shared with the machine (`synchronous_commit={}`, `fsync={}`).\n",
        describe(load),
        setting("synchronous_commit").await,
        setting("fsync").await,
    )?;
    writeln!(
        report,
        "| room log | acked msg/s (median) | min | max | vs SQLite |"
    )?;
    writeln!(report, "|---|---:|---:|---:|---:|")?;
    let rows = [
        (
            "SQLite, `--durability normal` (the default, for reference)".to_owned(),
            Backend::Embedded(MODES[1]),
            None,
        ),
        (
            "PostgreSQL, one node (`--database-url`)".to_owned(),
            Backend::Postgres { nodes: 1 },
            engines.missing(true),
        ),
        (
            "PostgreSQL, two nodes (`--database-url`, `--redis-url`)".to_owned(),
            Backend::Postgres { nodes: 2 },
            engines.missing(true),
        ),
    ];
    let mut base = None;
    for (name, backend, missing) in rows {
        if let Some(why) = missing {
            let line = format!("| {name} | not run: {why} | | | |");
            println!("{line}");
            writeln!(report, "{line}")?;
            continue;
        }
        let (median, min, max) = repeat(load, backend, Some(&engines))
            .await
            .with_context(|| name.clone())?;
        let base = *base.get_or_insert(median);
        let line = format!(
            "| {name} | {median:.0} | {min:.0} | {max:.0} | {:.0}% |",
            100.0 * median / base
        );
        println!("{line}");
        writeln!(report, "{line}")?;
    }
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {}", kernel.trim())
}

/// The verdict lines, from the medians in `MODES` order (memory, normal,
/// full): each mode's throughput as a share of the mode it is compared with.
fn targets(medians: &[f64]) -> String {
    let [memory, normal, full] = medians else {
        return String::new();
    };
    [
        ("`normal` vs `memory`", normal, memory, 0.8),
        ("`full` vs `normal`", full, normal, 0.5),
    ]
    .iter()
    .map(|(what, mode, base, share)| {
        let verdict = Verdict::check(*mode / *base, Goal::AtLeast(*share));
        format!(
            "- Accepted msg/s, {what}: {:.0} vs {:.0} = {:.0}% (target ≥ {:.0}%): {verdict}\n",
            mode,
            base,
            verdict.value * 100.0,
            share * 100.0
        )
    })
    .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "bench/results/durability.md".into());
    let mut report = String::new();
    writeln!(report, "# Durability cost\n")?;
    writeln!(report, "Machine: {}  ", machine())?;
    writeln!(report, "Command: `make bench-durability` (release build; `cargo run --release -p chat-bench --bin durability`)  ")?;
    writeln!(
        report,
        "Load: {}; server and clients in one process over loopback.\n",
        describe(FEW_SENDERS)
    )?;
    writeln!(
        report,
        "| storage | accepted msg/s (median) | min | max | vs memory |"
    )?;
    writeln!(report, "|---|---:|---:|---:|---:|")?;
    let mut medians = Vec::new();
    for mode in MODES {
        let (median, min, max) = repeat(FEW_SENDERS, Backend::Embedded(mode), None).await?;
        let line = format!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0}% |",
            mode.name,
            median,
            min,
            max,
            100.0 * median / medians.first().copied().unwrap_or(median)
        );
        println!("{line}");
        writeln!(report, "{line}")?;
        medians.push(median);
    }
    let verdicts = targets(&medians);
    print!("{verdicts}");
    writeln!(report, "\n### Targets\n\n{verdicts}")?;
    postgres_section(&mut report).await?;
    std::fs::write(&out, report).with_context(|| format!("writing {out}"))?;
    println!("report written to {out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::targets;

    #[test]
    fn verdicts_compare_each_mode_with_the_one_before() {
        // The 2026-11-24 medians: memory, normal, full.
        let text = targets(&[30658.0, 17705.0, 6659.0]);
        assert_eq!(
            text,
            "- Accepted msg/s, `normal` vs `memory`: 17705 vs 30658 = 58% (target ≥ 80%): **missed** by 28%\n\
             - Accepted msg/s, `full` vs `normal`: 6659 vs 17705 = 38% (target ≥ 50%): **missed** by 25%\n"
        );
        assert!(targets(&[10.0, 9.0, 5.0]).ends_with("(target ≥ 50%): met, 11% to spare\n"));
        assert_eq!(targets(&[1.0]), "", "an incomplete run judges nothing");
    }
}
