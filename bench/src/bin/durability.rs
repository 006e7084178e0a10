//! The cost of durability: messages per second the server accepts (stores,
//! acknowledges and relays) with its history on disk versus in memory.
//!
//! Each run starts a real server in this process on 127.0.0.1:0, connects
//! `SUBSCRIBERS` listeners and `SENDERS` senders over real sockets to one
//! room, and has every sender keep `WINDOW` messages in flight until it has
//! `PER_SENDER` acks. Throughput is acks per second over the whole run.
//! Writes a Markdown report to the path given as the first argument, with
//! the targets of the message path redraw checked: `full` keeps at least
//! half of `normal`'s throughput, `normal` at least 80% of `memory`'s.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context;
use chat_bench::verdict::{Goal, Verdict};
use chat_protocol::{ClientEvent, ServerEvent};
use chat_server::{Config, Server};
use chat_server::{Durability, Storage};
use chat_tui::client::{self, ClientConfig, ServerUrl, TlsOptions};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const SENDERS: usize = 4;
const SUBSCRIBERS: usize = 16;
const PER_SENDER: usize = 2_500;
const WINDOW: usize = 32;
const REPEATS: usize = 5;
const PASSWORD: &str = "benchmark password";

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

/// Sends `PER_SENDER` messages with `WINDOW` in flight; returns when all are acked.
async fn send_all(ws: Ws, sender: usize) -> anyhow::Result<()> {
    let (mut sink, mut stream) = ws.split();
    let mut sent = 0;
    let mut acked = 0;
    while acked < PER_SENDER {
        while sent < PER_SENDER && sent - acked < WINDOW {
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

/// One run; returns accepted messages per second.
async fn run(mode: Mode) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let mut config = Config::with_data_dir(dir.path());
    config.listen = "127.0.0.1:0".parse()?;
    config.storage = mode.storage;
    config.durability = mode.durability;
    config.rate = 1e9;
    config.burst = u32::MAX;
    config.send_queue = 65_536;
    config.history_on_join = 0;
    let server = Server::bind(config).await?;
    let addr = server.local_addr()?;
    let shutdown = server.shutdown_token();
    let serving = tokio::spawn(server.run());

    let users: Vec<String> = (0..SENDERS + SUBSCRIBERS)
        .map(|i| format!("u{i}"))
        .collect();
    for user in &users {
        let config = ClientConfig {
            server: ServerUrl::parse(&format!("http://{addr}"))?,
            user: user.clone(),
            password: PASSWORD.to_owned(),
            tls: TlsOptions::default(),
        };
        client::register(&config).await?;
    }
    let mut listeners = Vec::new();
    for user in &users[SENDERS..] {
        let ws = connect(addr, user).await?;
        listeners.push(tokio::spawn(listen(ws, SENDERS * PER_SENDER)));
    }
    let mut senders = Vec::new();
    for user in &users[..SENDERS] {
        senders.push(connect(addr, user).await?);
    }

    let start = Instant::now();
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, ws)| tokio::spawn(send_all(ws, i)))
        .collect();
    for task in tasks {
        task.await??;
    }
    let elapsed = start.elapsed();
    for listener in listeners {
        tokio::time::timeout(Duration::from_secs(60), listener).await???;
    }
    shutdown.cancel();
    serving.await??;
    Ok((SENDERS * PER_SENDER) as f64 / elapsed.as_secs_f64())
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
        "Load: {SENDERS} senders with {WINDOW} messages in flight each, {SUBSCRIBERS} subscribers, one room, \
         {} messages per run, {REPEATS} runs per mode; server and clients in one process over loopback.\n",
        SENDERS * PER_SENDER
    )?;
    writeln!(
        report,
        "| storage | accepted msg/s (median) | min | max | vs memory |"
    )?;
    writeln!(report, "|---|---:|---:|---:|---:|")?;
    let mut medians = Vec::new();
    for mode in MODES {
        let mut rates = Vec::new();
        for _ in 0..REPEATS {
            rates.push(run(mode).await?);
        }
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        let line = format!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.0}% |",
            mode.name,
            median,
            rates[0],
            rates[rates.len() - 1],
            100.0 * median / medians.first().copied().unwrap_or(median)
        );
        println!("{line}");
        writeln!(report, "{line}")?;
        medians.push(median);
    }
    let verdicts = targets(&medians);
    print!("{verdicts}");
    writeln!(report, "\n### Targets\n\n{verdicts}")?;
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
