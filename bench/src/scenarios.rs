//! The scenarios, each run against one server at a time: fan-out, many
//! rooms, idle memory and handshakes (the reconnect storm, chat-server only,
//! is in [`crate::storm`]). Every run starts a fresh server process.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::AsyncWriteExt;

use crate::load::{self, Connector, Recorder, Step, StepResult};
use crate::servers::{CertFiles, CpuTime, Paths, Proto, Running, ServerKind};
use crate::storm::StormRow;
use crate::wire::{self, Io, Target, Tls};

/// The core the servers run on; the load generator is pinned to the other.
pub const SERVER_CPU: &str = "0";

/// Users chat-server's connections are spread over.
pub(crate) const USERS: usize = 10;
/// Connections opened at the same time while setting up.
pub(crate) const CONNECT_CONCURRENCY: usize = 64;

/// Sizes and durations of a run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Repetitions of each measured point.
    pub reps: usize,
    /// Subscribers in the fan-out room.
    pub subscribers: usize,
    /// Senders in the fan-out room.
    pub senders: usize,
    /// Text sizes for fan-out.
    pub sizes: Vec<usize>,
    /// Offered fan-out rates, messages per second, rising: each server is
    /// offered them in turn until it delivers under [`DELIVERED_ENOUGH`].
    pub fanout_rates: Vec<f64>,
    /// Connections in the many-rooms scenario.
    pub room_connections: usize,
    /// Members per room there.
    pub room_size: usize,
    /// Offered rates there, messages per second over all rooms.
    pub room_rates: Vec<f64>,
    /// Offered rates of the two-node cluster's fan-out (`subscribers` and
    /// `senders`, 64 B), rising like `fanout_rates`.
    pub cluster_rates: Vec<f64>,
    /// Idle connection counts, measured in this order on one server.
    pub idle_counts: Vec<usize>,
    /// Concurrent handshaking clients.
    pub handshake_workers: usize,
    /// Clients in the reconnect storm, in rooms of `room_size`.
    pub storm_clients: usize,
    /// Messages each storm room gets before the crash.
    pub storm_messages: u64,
    /// How long the storm's clients get to come back.
    pub storm_deadline: Duration,
    /// Sending before each measurement window.
    pub warmup: Duration,
    /// Each measurement window.
    pub window: Duration,
}

impl Plan {
    /// The whole suite (about 12 minutes on a 2-core machine).
    pub fn full() -> Self {
        Self {
            reps: 3,
            subscribers: 1_000,
            senders: 10,
            sizes: vec![64, 1024],
            // Doubling past 2,000 until each server saturates (4,000 msg/s
            // to 1,000 subscribers is already 4M deliveries/s).
            fanout_rates: vec![100.0, 400.0, 1_000.0, 2_000.0, 4_000.0, 8_000.0, 16_000.0],
            room_connections: 10_000,
            room_size: 10,
            room_rates: vec![1_000.0, 5_000.0],
            // From where the Socket.IO cluster still delivers everything
            // (it did not at 100 msg/s), so that p99s compare, up to the
            // single node's ceiling, which the cluster is compared with.
            cluster_rates: vec![25.0, 50.0, 100.0, 400.0, 1_000.0, 2_000.0, 4_000.0, 8_000.0],
            idle_counts: vec![10_000, 19_000],
            handshake_workers: 32,
            storm_clients: 10_000,
            storm_messages: 3,
            storm_deadline: Duration::from_secs(60),
            warmup: Duration::from_millis(500),
            window: Duration::from_millis(1500),
        }
    }

    /// One point of each scenario, for use while developing.
    pub fn quick() -> Self {
        Self {
            reps: 1,
            sizes: vec![64],
            fanout_rates: vec![1_000.0],
            room_rates: vec![1_000.0],
            // The quick fan-out's rate, so that the two compare.
            cluster_rates: vec![1_000.0],
            idle_counts: vec![10_000],
            // Few enough that today's server, which forgets sessions in a
            // restart, re-hashes their passwords in a few seconds.
            storm_clients: 200,
            storm_deadline: Duration::from_secs(30),
            ..Self::full()
        }
    }
}

/// One measured fan-out or many-rooms point.
#[derive(Debug, Clone)]
pub struct TrafficRow {
    /// The server.
    pub server: ServerKind,
    /// Text bytes per message.
    pub size: usize,
    /// Offered messages per second.
    pub rate: f64,
    /// Repetition number.
    pub rep: usize,
    /// What it measured.
    pub result: StepResult,
}

/// Resident memory with `connections` idle connections.
#[derive(Debug, Clone)]
pub struct IdleRow {
    /// The server.
    pub server: ServerKind,
    /// Open connections.
    pub connections: usize,
    /// Resident memory before any connection.
    pub baseline_bytes: u64,
    /// Resident memory with the connections open.
    pub rss_bytes: u64,
}

impl IdleRow {
    /// Resident bytes per connection above the baseline.
    pub fn per_connection(&self) -> f64 {
        self.rss_bytes.saturating_sub(self.baseline_bytes) as f64 / self.connections as f64
    }
}

/// Connections opened and closed per second.
#[derive(Debug, Clone)]
pub struct HandshakeRow {
    /// The server.
    pub server: ServerKind,
    /// `ws` or `wss`.
    pub transport: &'static str,
    /// Repetition number.
    pub rep: usize,
    /// Connections per second (for chat-server each includes a ticket request).
    pub per_sec: f64,
    /// Share of a core the server used.
    pub server_cpu_share: f64,
    /// Share of a core the load generator used.
    pub loadgen_cpu_share: f64,
    /// Server CPU per connection, µs.
    pub server_cpu_us: f64,
    /// Attempts that failed.
    pub failures: u64,
}

/// Everything one run measured, and what it could not run.
#[derive(Debug, Default)]
pub struct Results {
    /// Fan-out points.
    pub fanout: Vec<TrafficRow>,
    /// Many-rooms points.
    pub rooms: Vec<TrafficRow>,
    /// Two-node cluster fan-out points (64 B).
    pub cluster: Vec<TrafficRow>,
    /// Idle memory points.
    pub idle: Vec<IdleRow>,
    /// Handshake points.
    pub handshakes: Vec<HandshakeRow>,
    /// Reconnect storms.
    pub storms: Vec<StormRow>,
    /// Notes for the report: skipped servers, failures.
    pub notes: Vec<String>,
}

/// The median delivery ratio under which a point counts as saturated: the
/// sweep offers a server no higher rate, and latencies are compared only
/// at points where both servers stayed above it.
pub const DELIVERED_ENOUGH: f64 = 0.95;

/// Whether a point's median delivery ratio fell under [`DELIVERED_ENOUGH`]:
/// the rate at which a server stops being offered more.
pub(crate) fn saturated(rows: &[TrafficRow]) -> bool {
    let mut ratios: Vec<f64> = rows.iter().map(|r| r.result.ratio).collect();
    ratios.sort_by(f64::total_cmp);
    ratios.get(ratios.len() / 2).copied().unwrap_or(0.0) < DELIVERED_ENOUGH
}

/// Starts `kind` for plain ws, with a recorder and a connector for it.
pub(crate) async fn start_plain(
    kind: ServerKind,
    paths: &Paths,
) -> anyhow::Result<(Running, load::Shared, Connector)> {
    let server = Running::start(kind, paths, None, SERVER_CPU).await?;
    let recorder = Recorder::shared();
    let target = Target {
        addr: server.addr,
        tls: None,
    };
    let connector = Connector::new(target, kind.proto(), USERS, recorder.clone()).await?;
    Ok((server, recorder, connector))
}

/// Runs `step` `reps` times (ids `step.id + 1` on), logging each.
pub(crate) async fn measure_rate(
    senders: &[load::Member],
    kind: ServerKind,
    server: &impl CpuTime,
    recorder: &load::Shared,
    step: Step,
    reps: usize,
    label: &str,
) -> anyhow::Result<Vec<TrafficRow>> {
    let mut rows = Vec::with_capacity(reps);
    for rep in 0..reps {
        let step = Step {
            id: step.id + 1 + rep as u32,
            ..step
        };
        let result = load::run_step(senders, kind.proto(), step, recorder, server).await?;
        let crossed = if result.crossed_per_sec > 0.0 {
            format!(", {:.0}/s crossed nodes", result.crossed_per_sec)
        } else {
            String::new()
        };
        log(&format!(
            "{label} {} msg/s: {:.0} deliveries/s ({:.1}%){crossed}, p99 {} µs",
            step.rate,
            result.delivered_per_sec,
            result.ratio * 100.0,
            result.p99_us
        ));
        rows.push(TrafficRow {
            server: kind,
            size: step.size,
            rate: step.rate,
            rep,
            result,
        });
    }
    Ok(rows)
}

/// A progress line on standard error.
pub(crate) fn log(msg: &str) {
    eprintln!("[bench] {msg}");
}

/// Fan-out: one room of `subscribers` plus `senders`, at rising rates.
pub async fn fanout(
    kind: ServerKind,
    paths: &Paths,
    plan: &Plan,
    out: &mut Results,
) -> anyhow::Result<()> {
    let mut id = 0;
    for &size in &plan.sizes {
        // A fresh server per size, so that a backlog one size left behind
        // cannot spill into the next.
        let (server, recorder, connector) = start_plain(kind, paths).await?;
        let n = plan.subscribers;
        let _subscribers = connector
            .connect_many(0..n, CONNECT_CONCURRENCY, |_| "fanout".into(), |_| true)
            .await
            .context("connecting subscribers")?;
        let senders = connector
            .connect_many(n..n + plan.senders, 8, |_| "fanout".into(), |_| false)
            .await
            .context("connecting senders")?;
        // Unmeasured warm-up: caches, JITs and allocators settle.
        id += 1;
        let warm = Step {
            id,
            rate: plan.fanout_rates[0],
            size,
            warmup: Duration::from_millis(500),
            window: Duration::from_millis(500),
            fanout: n as u64,
        };
        load::run_step(&senders, kind.proto(), warm, &recorder, &server).await?;
        for &rate in &plan.fanout_rates {
            let step = Step {
                id,
                rate,
                size,
                warmup: plan.warmup,
                window: plan.window,
                fanout: n as u64,
            };
            let label = format!("fan-out {} {size} B", kind.name());
            let rows =
                measure_rate(&senders, kind, &server, &recorder, step, plan.reps, &label).await?;
            id += plan.reps as u32;
            let saturated = saturated(&rows);
            out.fanout.extend(rows);
            if saturated {
                break;
            }
        }
        server.stop().await;
    }
    Ok(())
}

/// Many rooms: `room_connections` connections in rooms of `room_size`, all
/// sending.
pub async fn rooms(
    kind: ServerKind,
    paths: &Paths,
    plan: &Plan,
    out: &mut Results,
) -> anyhow::Result<()> {
    let (server, recorder, connector) = start_plain(kind, paths).await?;
    let size = plan.room_size;
    let members = connector
        .connect_many(
            0..plan.room_connections,
            CONNECT_CONCURRENCY,
            |i| format!("room{}", i / size),
            |_| true,
        )
        .await
        .context("connecting members")?;
    let mut id = 0;
    for &rate in &plan.room_rates {
        let step = Step {
            id,
            rate,
            size: 64,
            warmup: plan.warmup,
            window: plan.window,
            fanout: size as u64,
        };
        let label = format!("rooms {}", kind.name());
        let rows =
            measure_rate(&members, kind, &server, &recorder, step, plan.reps, &label).await?;
        id += plan.reps as u32;
        let saturated = saturated(&rows);
        out.rooms.extend(rows);
        if saturated {
            break;
        }
    }
    server.stop().await;
    Ok(())
}

/// Idle memory: connections in rooms of `room_size` that send nothing.
pub async fn idle(
    kind: ServerKind,
    paths: &Paths,
    plan: &Plan,
    out: &mut Results,
) -> anyhow::Result<()> {
    let (server, recorder, connector) = start_plain(kind, paths).await?;
    settle().await;
    let baseline = server.rss_bytes();
    let size = plan.room_size;
    let mut open = Vec::new();
    for &count in &plan.idle_counts {
        let more = connector
            .connect_many(
                open.len()..count,
                CONNECT_CONCURRENCY,
                |i| format!("idle{}", i / size),
                |_| false,
            )
            .await
            .with_context(|| format!("opening {count} idle connections"))?;
        open.extend(more);
        settle().await;
        let row = IdleRow {
            server: kind,
            connections: count,
            baseline_bytes: baseline,
            rss_bytes: server.rss_bytes(),
        };
        log(&format!(
            "idle {} {count}: {:.1} KiB per connection (lost {})",
            kind.name(),
            row.per_connection() / 1024.0,
            recorder.borrow().disconnects()
        ));
        out.idle.push(row);
    }
    server.stop().await;
    drop(open);
    Ok(())
}

/// Lets memory use settle (late frees, a garbage collector's next cycle).
async fn settle() {
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// Handshakes: connections opened and closed per second over ws or wss.
pub async fn handshakes(
    kind: ServerKind,
    paths: &Paths,
    plan: &Plan,
    cert: Option<&CertFiles>,
    out: &mut Results,
) -> anyhow::Result<()> {
    let server = Running::start(kind, paths, cert, SERVER_CPU).await?;
    let tls = cert.map(|c| Tls::trusting(&c.cert_pem)).transpose()?;
    let target = Target {
        addr: server.addr,
        tls,
    };
    let connector = Connector::new(target, kind.proto(), USERS, Recorder::shared()).await?;
    let transport = if cert.is_some() { "wss" } else { "ws" };
    for rep in 0..plan.reps {
        let (count, failures, t0, cpu0, own0) = {
            let deadline = Instant::now() + plan.warmup + plan.window;
            let window_start = Instant::now() + plan.warmup;
            let counts = std::cell::Cell::new((0u64, 0u64));
            let marks = std::cell::Cell::new(None);
            let workers = (0..plan.handshake_workers).map(|w| {
                let connector = &connector;
                let counts = &counts;
                let marks = &marks;
                let server = &server;
                async move {
                    let mut i = w;
                    while Instant::now() < deadline {
                        if Instant::now() >= window_start && marks.get().is_none() {
                            marks.set(Some((
                                Instant::now(),
                                server.cpu_seconds(),
                                crate::servers::own_cpu_seconds(),
                            )));
                        }
                        let ok = one_handshake(connector, i).await.is_ok();
                        i += plan.handshake_workers;
                        if Instant::now() >= window_start && Instant::now() < deadline {
                            let (n, f) = counts.get();
                            counts.set(if ok { (n + 1, f) } else { (n, f + 1) });
                        }
                    }
                }
            });
            futures_util::future::join_all(workers).await;
            let (n, f) = counts.get();
            let (t0, cpu0, own0) = marks.get().context("no handshake window")?;
            (n, f, t0, cpu0, own0)
        };
        let seconds = t0.elapsed().as_secs_f64();
        let server_cpu = server.cpu_seconds() - cpu0;
        let own_cpu = crate::servers::own_cpu_seconds() - own0;
        let row = HandshakeRow {
            server: kind,
            transport,
            rep,
            per_sec: count as f64 / seconds,
            server_cpu_share: server_cpu / seconds,
            loadgen_cpu_share: own_cpu / seconds,
            server_cpu_us: server_cpu * 1e6 / count.max(1) as f64,
            failures,
        };
        log(&format!(
            "handshakes {} {transport}: {:.0}/s (server {:.0}% of a core, load generator {:.0}%, {failures} failed)",
            kind.name(),
            row.per_sec,
            row.server_cpu_share * 100.0,
            row.loadgen_cpu_share * 100.0
        ));
        out.handshakes.push(row);
    }
    server.stop().await;
    Ok(())
}

/// Opens a connection (for chat-server: ticket first), then closes it with
/// a full close handshake.
async fn one_handshake(connector: &Connector, i: usize) -> anyhow::Result<()> {
    let path = match connector.proto {
        Proto::Chat => format!("/ws?ticket={}", connector.ticket_for(i).await?),
        Proto::Relay => "/ws?room=handshake".to_owned(),
        Proto::SocketIo => "/socket.io/?EIO=4&transport=websocket&room=handshake".to_owned(),
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut io = Io::connect(&connector.target).await?;
        let mut buf = wire::upgrade(&mut io, &load::host(&connector.target), &path, 1024).await?;
        io.write_all(&wire::close_frame()).await?;
        loop {
            while let Some(frame) = buf.next_frame()? {
                if frame.opcode == wire::CLOSE {
                    return Ok(());
                }
            }
            if buf.fill(&mut io).await? == 0 {
                return Ok(());
            }
        }
    })
    .await
    .context("handshake timed out")?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(ratios: &[f64]) -> Vec<TrafficRow> {
        ratios
            .iter()
            .enumerate()
            .map(|(rep, &ratio)| TrafficRow {
                server: ServerKind::ChatServer,
                size: 64,
                rate: 4000.0,
                rep,
                result: StepResult {
                    sent: 0,
                    delivered_per_sec: 0.0,
                    crossed_per_sec: 0.0,
                    ratio,
                    samples: 0,
                    p50_us: 0,
                    p99_us: 0,
                    p999_us: 0,
                    server_cpu_us_per_msg: 0.0,
                    server_cpu_share: 0.0,
                    loadgen_cpu_share: 0.0,
                    disconnects: 0,
                },
            })
            .collect()
    }

    #[test]
    fn the_sweep_stops_at_the_first_median_under_95_percent() {
        assert!(!saturated(&rows(&[0.96, 0.99, 1.0])));
        assert!(!saturated(&rows(&[0.95])), "95% itself is enough");
        // One bad repetition out of three does not stop it; two do.
        assert!(!saturated(&rows(&[0.50, 0.97, 0.99])));
        assert!(saturated(&rows(&[0.50, 0.90, 0.99])));
        assert!(saturated(&rows(&[])), "nothing measured: stop");
    }

    #[test]
    fn the_full_sweep_doubles_past_2000_and_is_bounded() {
        let rates = Plan::full().fanout_rates;
        assert!(rates.windows(2).all(|w| w[0] < w[1]), "rising: {rates:?}");
        let past: Vec<f64> = rates.into_iter().filter(|&r| r >= 2000.0).collect();
        assert_eq!(past, [2000.0, 4000.0, 8000.0, 16000.0]);
    }

    #[test]
    fn the_cluster_sweep_starts_low_and_quick_matches_the_quick_fan_out() {
        let rates = Plan::full().cluster_rates;
        assert!(rates.windows(2).all(|w| w[0] < w[1]), "rising: {rates:?}");
        assert!(rates[0] <= 25.0, "low enough for the Socket.IO cluster");
        // chat-server's single node saturated at 8,000 msg/s on 2026-12-01.
        assert_eq!(rates.last(), Some(&8_000.0));
        let quick = Plan::quick();
        assert_eq!(
            quick.cluster_rates, quick.fanout_rates,
            "one point, comparable"
        );
    }

    #[test]
    fn the_storm_is_full_size_only_in_the_full_suite() {
        let (full, quick) = (Plan::full(), Plan::quick());
        assert_eq!((full.storm_clients, full.room_size), (10_000, 10));
        assert_eq!(full.storm_deadline, Duration::from_secs(60));
        // bench-quick must stay well under a minute even when every client
        // has to log in again with its password.
        assert!(quick.storm_clients <= 200 && quick.storm_deadline <= Duration::from_secs(30));
    }
}
