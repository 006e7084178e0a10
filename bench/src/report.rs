//! What a run writes: raw CSV, a Markdown report with medians, spreads and
//! the targets checked, a chart, and the summary in `BENCHMARKS.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

use crate::load::StepResult;
use crate::scenarios::{HandshakeRow, IdleRow, Plan, Results, TrafficRow, DELIVERED_ENOUGH};
use crate::servers::ServerKind;
use crate::storm::StormRow;
use crate::verdict::{Goal, Verdict};

/// Where the summary goes in `BENCHMARKS.md`.
const START_MARK: &str = "<!-- suite:start (written by make bench) -->";
const END_MARK: &str = "<!-- suite:end -->";

/// The machine a run measured on.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    // Counted from /proc/cpuinfo: this process is pinned to one core, so
    // available_parallelism would say 1.
    let cores = std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or_else(
            || "?".into(),
            |kib| format!("{:.0} GiB", kib as f64 / 1048576.0),
        );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let version = |cmd: &str, arg: &str| {
        std::process::Command::new(cmd)
            .arg(arg)
            .output()
            .ok()
            .map(|o| {
                let text = if o.stdout.is_empty() {
                    o.stderr
                } else {
                    o.stdout
                };
                String::from_utf8_lossy(&text).trim().to_owned()
            })
            .unwrap_or_else(|| "not found".into())
    };
    format!(
        "{cpu}, {cores} cores, {mem} RAM, Linux {kernel}; Node {}, {}",
        version("node", "--version"),
        version("python3", "--version"),
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The median of each measure over the repetitions of one point.
struct Point {
    samples: u64,
    delivered: f64,
    min: f64,
    max: f64,
    ratio: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    cpu_us: f64,
    /// Deliveries per second that crossed cluster nodes.
    crossed: f64,
    /// Share of its core the load generator used: near 1, the point may
    /// measure the generator rather than the server.
    loadgen: f64,
    lost: u64,
}

/// Latency cells read "none" when none of the point's messages arrived.
fn latency(p: &Point, us: f64) -> String {
    if p.samples == 0 {
        "none arrived".into()
    } else {
        ms(us)
    }
}

/// Points keyed by (size, [`ServerKind::index`], offered rate): each
/// server's points of one size come in rising rate order.
type Points = BTreeMap<(usize, usize, u64), Point>;

fn points(rows: &[TrafficRow]) -> Points {
    let mut groups: BTreeMap<(usize, usize, u64), Vec<StepResult>> = BTreeMap::new();
    for row in rows {
        groups
            .entry((row.size, row.server.index(), row.rate as u64))
            .or_default()
            .push(row.result);
    }
    groups
        .into_iter()
        .map(|(key, results)| {
            let get = |f: fn(&StepResult) -> f64| median(results.iter().map(f).collect());
            let delivered: Vec<f64> = results.iter().map(|r| r.delivered_per_sec).collect();
            let point = Point {
                samples: results.iter().map(|r| r.samples).min().unwrap_or(0),
                delivered: get(|r| r.delivered_per_sec),
                min: delivered.iter().copied().fold(f64::INFINITY, f64::min),
                max: delivered.iter().copied().fold(0.0, f64::max),
                ratio: get(|r| r.ratio),
                p50: get(|r| r.p50_us as f64),
                p99: get(|r| r.p99_us as f64),
                p999: get(|r| r.p999_us as f64),
                cpu_us: get(|r| r.server_cpu_us_per_msg),
                crossed: get(|r| r.crossed_per_sec),
                loadgen: get(|r| r.loadgen_cpu_share),
                lost: results.iter().map(|r| r.disconnects).sum(),
            };
            (key, point)
        })
        .collect()
}

fn ms(us: f64) -> String {
    if us >= 100_000.0 {
        format!("{:.0}", us / 1000.0)
    } else {
        format!("{:.2}", us / 1000.0)
    }
}

/// A table of traffic points; `crossed` adds the deliveries that crossed
/// nodes (the cluster's column) after "of offered".
fn traffic_points(md: &mut String, rows: &[TrafficRow], crossed: bool) {
    let (head, rule) = if crossed {
        (" crossed nodes/s (share) |", "---:|")
    } else {
        ("", "")
    };
    let _ = writeln!(
        md,
        "| server | offered msg/s | deliveries/s, median (min–max) | of offered |{head} p50 ms | p99 ms | p99.9 ms | server CPU µs/delivery | load generator core busy | lost conns |\n\
         |---|---:|---:|---:|{rule}---:|---:|---:|---:|---:|---:|"
    );
    for ((_, server, rate), p) in points(rows) {
        let crossing = if crossed {
            let share = if p.delivered > 0.0 {
                p.crossed / p.delivered
            } else {
                0.0
            };
            format!(" {:.0} ({:.0}%) |", p.crossed, share * 100.0)
        } else {
            String::new()
        };
        let _ = writeln!(
            md,
            "| {} | {rate} | {:.0} ({:.0}–{:.0}) | {:.1}% |{crossing} {} | {} | {} | {:.2} | {:.0}% | {} |",
            ServerKind::ALL[server].name(),
            p.delivered,
            p.min,
            p.max,
            p.ratio * 100.0,
            latency(&p, p.p50),
            latency(&p, p.p99),
            latency(&p, p.p999),
            p.cpu_us,
            p.loadgen * 100.0,
            p.lost
        );
    }
}

fn traffic_table(md: &mut String, rows: &[TrafficRow], fanout: usize) {
    traffic_points(md, rows, false);
    let _ = writeln!(
        md,
        "\nOffered deliveries per second are the offered rate times {fanout}."
    );
}

fn idle_table(md: &mut String, rows: &[IdleRow]) {
    md.push_str(
        "| server | connections | resident MiB (baseline) | KiB per connection |\n|---|---:|---:|---:|\n",
    );
    for row in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} ({:.1}) | {:.2} |",
            row.server.name(),
            row.connections,
            row.rss_bytes as f64 / 1048576.0,
            row.baseline_bytes as f64 / 1048576.0,
            row.per_connection() / 1024.0
        );
    }
}

/// The medians of one server's handshake repetitions over one transport.
struct HandshakePoint {
    server: ServerKind,
    transport: &'static str,
    rate: f64,
    min: f64,
    max: f64,
    server_share: f64,
    loadgen_share: f64,
    cpu_us: f64,
    failed: u64,
}

fn handshake_points(rows: &[HandshakeRow]) -> Vec<HandshakePoint> {
    let mut groups: BTreeMap<(usize, &'static str), Vec<&HandshakeRow>> = BTreeMap::new();
    for row in rows {
        groups
            .entry((row.server.index(), row.transport))
            .or_default()
            .push(row);
    }
    groups
        .into_iter()
        .map(|((server, transport), rows)| {
            let rates: Vec<f64> = rows.iter().map(|r| r.per_sec).collect();
            HandshakePoint {
                server: ServerKind::ALL[server],
                transport,
                rate: median(rates.clone()),
                min: rates.iter().copied().fold(f64::INFINITY, f64::min),
                max: rates.iter().copied().fold(0.0, f64::max),
                server_share: median(rows.iter().map(|r| r.server_cpu_share).collect()),
                loadgen_share: median(rows.iter().map(|r| r.loadgen_cpu_share).collect()),
                cpu_us: median(rows.iter().map(|r| r.server_cpu_us).collect()),
                failed: rows.iter().map(|r| r.failures).sum(),
            }
        })
        .collect()
}

fn handshake_table(md: &mut String, rows: &[HandshakeRow]) {
    md.push_str(
        "| server | transport | connections/s, median (min–max) | server core busy | load generator core busy | server CPU µs/connection | failed |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
    );
    for p in handshake_points(rows) {
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} ({:.0}–{:.0}) | {:.0}% | {:.0}% | {:.0} | {} |",
            p.server.name(),
            p.transport,
            p.rate,
            p.min,
            p.max,
            p.server_share * 100.0,
            p.loadgen_share * 100.0,
            p.cpu_us,
            p.failed,
        );
    }
}

/// A server's points of one size, in rising rate order.
fn series(all: &Points, size: usize, server: ServerKind) -> Vec<(u64, &Point)> {
    all.iter()
        .filter(|((s, k, _), _)| *s == size && *k == server.index())
        .map(|((_, _, rate), p)| (*rate, p))
        .collect()
}

/// The point with the highest median delivery rate.
fn best(all: &Points, size: usize, server: ServerKind) -> Option<(u64, &Point)> {
    series(all, size, server)
        .into_iter()
        .max_by(|a, b| a.1.delivered.total_cmp(&b.1.delivered))
}

/// One target line: what, the numbers it was judged on, the goal (in
/// `unit`) and the verdict.
fn target(md: &mut String, what: &str, measured: &str, verdict: Verdict, unit: &str) {
    let _ = writeln!(
        md,
        "- {what}: {measured} (target {}{unit}): {verdict}",
        verdict.goal
    );
}

/// Where a target compares with a peer (or a scenario) that did not run.
fn not_compared(md: &mut String, what: &str, peer: &str) {
    let _ = writeln!(md, "- {what}: not compared ({peer} did not run)");
}

/// Target 1: the sweep goes on until every server falls under 95%.
fn sweep_target(md: &mut String, all: &Points, size: usize, last_rate: f64) {
    let mut found = Vec::new();
    let mut short = Vec::new();
    for kind in ServerKind::ALL {
        let points = series(all, size, kind);
        let Some(&(last, p)) = points.last() else {
            continue;
        };
        match points.iter().find(|(_, p)| p.ratio < DELIVERED_ENOUGH) {
            Some((rate, p)) => found.push(format!(
                "{} at {rate} msg/s ({:.1}%)",
                kind.name(),
                p.ratio * 100.0
            )),
            None => short.push(format!(
                "{} still delivered {:.1}% at {last} msg/s",
                kind.name(),
                p.ratio * 100.0
            )),
        }
    }
    if found.is_empty() && short.is_empty() {
        return;
    }
    let reached = if found.is_empty() {
        String::new()
    } else {
        format!("{}: ", found.join(", "))
    };
    let verdict = if short.is_empty() {
        "met".to_owned()
    } else {
        format!("**missed**: {}", short.join(", "))
    };
    let _ = writeln!(
        md,
        "- Fan-out {size} B, sweep (up to {last_rate:.0} msg/s) reaches each server's first rate under {:.0}% delivered: {reached}{verdict}",
        DELIVERED_ENOUGH * 100.0,
    );
}

/// Target 2: chat-server's p99 within `factor` times `peer`'s (named
/// `peer_name`) at every rate where both delivered enough, with the worst
/// point as the summary and every point below it.
fn p99_target(
    md: &mut String,
    what: &str,
    all: &Points,
    size: usize,
    (peer, peer_name): (ServerKind, &str),
    factor: f64,
) {
    let what = format!(
        "{what}, p99 vs {peer_name} at every rate where both deliver ≥ {:.0}%",
        DELIVERED_ENOUGH * 100.0
    );
    let (mine, theirs) = (
        series(all, size, ServerKind::ChatServer),
        series(all, size, peer),
    );
    if mine.is_empty() {
        return;
    }
    if theirs.is_empty() {
        return not_compared(md, &what, peer_name);
    }
    let compared: Vec<(u64, &Point, &Point, Verdict)> = mine
        .iter()
        .filter_map(|&(rate, mine)| {
            let (_, other) = theirs.iter().find(|(r, _)| *r == rate)?;
            (mine.ratio >= DELIVERED_ENOUGH && other.ratio >= DELIVERED_ENOUGH).then(|| {
                let verdict = Verdict::check(mine.p99 / other.p99, Goal::AtMost(factor));
                (rate, mine, *other, verdict)
            })
        })
        .collect();
    let Some(worst) = compared
        .iter()
        .max_by(|a, b| a.3.value.total_cmp(&b.3.value))
    else {
        let lowest = |points: &[(u64, &Point)]| {
            points.first().map_or_else(String::new, |(rate, p)| {
                format!("{rate} msg/s, {:.1}%", p.ratio * 100.0)
            })
        };
        let _ = writeln!(
            md,
            "- {what}: **missed**: no rate where both did (the lowest offered: chat-server {}, {peer_name} {})",
            lowest(&mine),
            lowest(&theirs)
        );
        return;
    };
    let met = compared.iter().filter(|c| c.3.met()).count();
    let ratio = |(rate, mine, other, v): &(u64, &Point, &Point, Verdict)| {
        format!(
            "at {rate} msg/s {} ms vs {} ms = {:.2}x",
            ms(mine.p99),
            ms(other.p99),
            v.value
        )
    };
    let measured = format!(
        "met at {met} of {} rates; worst {}",
        compared.len(),
        ratio(worst)
    );
    target(md, &what, &measured, worst.3, "x");
    for point in &compared {
        let _ = writeln!(md, "  - {}: {}", ratio(point), point.3);
    }
}

/// The peer most targets compare with, as [`p99_target`] names it.
const UWS: (ServerKind, &str) = (ServerKind::Uws, "uWebSockets.js");

/// How the cluster's peer is named in its targets.
const SOCKETIO_CLUSTER: &str = "the Socket.IO cluster";

/// Target 8: the two-node chat-server cluster's best deliveries/s at least
/// 5x the Socket.IO cluster's, its p99 no worse wherever both deliver, and
/// its best at least half the single node's best fan-out (64 B) of the
/// same run.
fn cluster_targets(md: &mut String, results: &Results) {
    let me = ServerKind::ChatServer;
    let cluster = points(&results.cluster);
    let size = crate::cluster::SIZE;
    let Some((rate, mine)) = best(&cluster, size, me) else {
        return;
    };
    let what = format!(
        "Cluster of {} nodes, best deliveries/s vs {SOCKETIO_CLUSTER}",
        crate::cluster::NODES
    );
    match best(&cluster, size, ServerKind::SocketIo) {
        Some((their_rate, theirs)) => {
            let verdict = Verdict::check(mine.delivered / theirs.delivered, Goal::AtLeast(5.0));
            target(
                md,
                &what,
                &format!(
                    "{:.0} (at {rate} msg/s) vs {:.0} (at {their_rate} msg/s) = {:.2}x",
                    mine.delivered, theirs.delivered, verdict.value
                ),
                verdict,
                "x",
            );
        }
        None => not_compared(md, &what, SOCKETIO_CLUSTER),
    }
    p99_target(
        md,
        "Cluster",
        &cluster,
        size,
        (ServerKind::SocketIo, SOCKETIO_CLUSTER),
        1.0,
    );
    let what = format!("Cluster, best deliveries/s vs chat-server's single-node fan-out ({size} B) of the same run");
    match best(&points(&results.fanout), size, me) {
        Some((single_rate, single)) => {
            let verdict = Verdict::check(mine.delivered / single.delivered, Goal::AtLeast(0.5));
            target(
                md,
                &what,
                &format!(
                    "{:.0} (at {rate} msg/s) vs {:.0} (at {single_rate} msg/s) = {:.2}x",
                    mine.delivered, single.delivered, verdict.value
                ),
                verdict,
                "x",
            );
        }
        None => not_compared(md, &what, &format!("the {size} B fan-out")),
    }
}

/// The cluster's points, with how many deliveries crossed nodes.
fn cluster_table(md: &mut String, rows: &[TrafficRow], fanout: usize) {
    traffic_points(md, rows, true);
    let _ = writeln!(
        md,
        "\nOffered deliveries per second are the offered rate times {fanout}; with the subscribers split \
         evenly and the senders alternating between the nodes, half of them should cross. Server CPU is \
         both nodes' and the private redis-server's; PostgreSQL's (chat-server only) is not counted."
    );
}

/// Target 3: best deliveries/s against uWebSockets.js's best.
fn throughput_target(md: &mut String, all: &Points, size: usize) {
    let what = format!("Fan-out {size} B, best deliveries/s vs uWebSockets.js");
    let Some((rate, mine)) = best(all, size, ServerKind::ChatServer) else {
        return;
    };
    let Some((their_rate, theirs)) = best(all, size, ServerKind::Uws) else {
        return not_compared(md, &what, ServerKind::Uws.name());
    };
    let verdict = Verdict::check(mine.delivered / theirs.delivered, Goal::AtLeast(1.2));
    let mut measured = format!(
        "{:.0} (at {rate} msg/s) vs {:.0} (at {their_rate} msg/s) = {:.2}x",
        mine.delivered, theirs.delivered, verdict.value
    );
    for (kind, p) in [(ServerKind::ChatServer, mine), (ServerKind::Uws, theirs)] {
        if p.loadgen > 0.9 {
            let _ = write!(
                measured,
                "; the load generator's core was {:.0}% busy at {}'s best, which may be the generator's limit",
                p.loadgen * 100.0,
                kind.name()
            );
        }
    }
    target(md, &what, &measured, verdict, "x");
}

/// Target 7: every client back within 10 s of the crash, without one
/// password hash.
fn storm_targets(md: &mut String, rows: &[StormRow]) {
    const LIMIT_S: f64 = 10.0;
    for row in rows {
        let what = format!(
            "Reconnect storm, {} clients, time from the crash until every one has resumed",
            row.clients
        );
        match row.all_back() {
            Some(all) => target(
                md,
                &what,
                &format!("{:.2} s", all.as_secs_f64()),
                Verdict::check(all.as_secs_f64(), Goal::AtMost(LIMIT_S)),
                " s",
            ),
            None => {
                let deadline = row.deadline.as_secs_f64();
                let _ = writeln!(
                    md,
                    "- {what}: only {} of {} back when the {deadline:.0} s deadline passed (target ≤ {LIMIT_S:.0} s): **missed**: over {deadline:.0} s, at least {:.1}x the limit",
                    row.back.len(),
                    row.clients,
                    deadline / LIMIT_S
                );
            }
        }
        target(
            md,
            "Reconnect storm, password hashes on the server (logins after a refused session)",
            &format!(
                "{} ({} clients had their session refused with invalid_session)",
                row.password_logins, row.sessions_refused
            ),
            Verdict::check(row.password_logins as f64, Goal::AtMost(0.0)),
            "",
        );
    }
}

fn targets(md: &mut String, results: &Results, plan: &Plan) {
    let me = ServerKind::ChatServer;
    let fanout = points(&results.fanout);
    let last_rate = plan.fanout_rates.iter().copied().fold(0.0, f64::max);
    for &size in &plan.sizes {
        sweep_target(md, &fanout, size, last_rate);
    }
    for &size in &plan.sizes {
        p99_target(md, &format!("Fan-out {size} B"), &fanout, size, UWS, 1.0);
    }
    p99_target(md, "Many rooms", &points(&results.rooms), 64, UWS, 2.0);
    for &size in &plan.sizes {
        throughput_target(md, &fanout, size);
    }
    if let Some(row) = results
        .idle
        .iter()
        .filter(|r| r.server == me)
        .max_by_key(|r| r.connections)
    {
        let kib = row.per_connection() / 1024.0;
        target(
            md,
            &format!(
                "Idle memory per authenticated connection in a room, at {} connections",
                row.connections
            ),
            &format!("{kib:.2} KiB"),
            Verdict::check(kib, Goal::AtMost(4.0)),
            " KiB",
        );
    }
    let hs = handshake_points(&results.handshakes);
    let rate = |server: ServerKind, transport: &str| {
        hs.iter()
            .find(|h| h.server == server && h.transport == transport)
            .map(|h| (h.rate, h.server_share, h.loadgen_share))
    };
    let what = "Handshakes over ws, ticket request included, vs uWebSockets.js";
    match (rate(me, "ws"), rate(ServerKind::Uws, "ws")) {
        (Some(mine), Some(uws)) => target(
            md,
            what,
            &format!("{:.0}/s vs {:.0}/s = {:.2}x", mine.0, uws.0, mine.0 / uws.0),
            Verdict::check(mine.0 / uws.0, Goal::AtLeast(1.0)),
            "x",
        ),
        (Some(_), None) => not_compared(md, what, ServerKind::Uws.name()),
        _ => {}
    }
    storm_targets(md, &results.storms);
    cluster_targets(md, results);
    let _ = writeln!(
        md,
        "- Durability (`full` ≥ 50% of `normal`, `normal` ≥ 80% of `memory`): judged by `make bench-durability`, in `bench/results/durability.md`"
    );
    if let Some((r, server, own)) = rate(me, "wss") {
        let bound = if own > 0.9 {
            "the load generator's core was saturated (client-side TLS crypto), the server's was not"
        } else if server > 0.9 {
            "the server's core was saturated"
        } else {
            "neither core was saturated"
        };
        let _ = writeln!(
            md,
            "- Handshakes over wss (no target): {r:.0}/s with the server core {:.0}% and the load generator core {:.0}% busy: {bound}",
            server * 100.0,
            own * 100.0
        );
    }
}

/// The Markdown body shared by the run's report and `BENCHMARKS.md`.
pub fn markdown(results: &Results, plan: &Plan, machine: &str, command: &str, dir: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "Machine: {machine}.  ");
    let _ = writeln!(
        md,
        "Command: `{command}`; raw data and chart in `{dir}/`.\n"
    );
    md.push_str(
        "Every server runs pinned to core 0 (`taskset -c 0`), the load generator (one thread) to \
         core 1. Each point is sent for a warm-up, then measured over a window; it is repeated and \
         the table shows the median and the spread. chat-server is driven through its full protocol: \
         HTTP login, a session minting one-time tickets, JSON events, every message stored in SQLite \
         (the default `--durability normal`) and acknowledged before it is relayed; only its per-client \
         rate limit is lifted (`--rate`/`--burst`) and its send queue set to 4096 frames. The peers \
         run the minimal relay of `bench/peers/README.md`. Latency is from the sender's write to the \
         subscriber's read, both in the load generator. Fan-out rates rise until a server delivers \
         under 95% of what was offered. Every verdict below is computed from this run's numbers.\n\n",
    );
    let _ = writeln!(md, "### Targets\n");
    targets(&mut md, results, plan);
    let _ = writeln!(
        md,
        "\n### Fan-out: {} subscribers and {} senders in one room\n",
        plan.subscribers, plan.senders
    );
    for &size in &plan.sizes {
        let rows: Vec<TrafficRow> = results
            .fanout
            .iter()
            .filter(|r| r.size == size)
            .cloned()
            .collect();
        let _ = writeln!(md, "#### {size} B messages\n");
        traffic_table(&mut md, &rows, plan.subscribers);
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "### Many rooms: {} connections in rooms of {}, every connection sending 64 B\n",
        plan.room_connections, plan.room_size
    );
    traffic_table(&mut md, &results.rooms, plan.room_size);
    let _ = writeln!(
        md,
        "\n### Idle memory (connections in rooms of {})\n",
        plan.room_size
    );
    idle_table(&mut md, &results.idle);
    let _ = writeln!(
        md,
        "\n### Handshakes: upgrade then close handshake, {} clients at a time (chat-server: plus `POST /api/ticket`)\n",
        plan.handshake_workers
    );
    handshake_table(&mut md, &results.handshakes);
    if !results.cluster.is_empty() {
        let _ = writeln!(
            md,
            "\n### Cluster: {} nodes, {} subscribers split across them and {} senders on both, one room, {} B\n",
            crate::cluster::NODES,
            plan.subscribers,
            plan.senders,
            crate::cluster::SIZE
        );
        md.push_str(
            "Both nodes and a private `redis-server` run pinned to core 0, as one server does \
             elsewhere. chat-server's nodes share a fresh PostgreSQL database (room log, accounts, \
             sessions) and the Redis (bus between nodes, presence, tickets); Socket.IO's nodes use \
             `@socket.io/redis-adapter` on the same kind of Redis (a pub and a sub client per node). \
             Every subscriber connects to its own node; a delivery crossed nodes when it reached a \
             subscriber on the other node than the one its sender used.\n\n",
        );
        cluster_table(&mut md, &results.cluster, plan.subscribers);
    }
    if !results.storms.is_empty() {
        let _ = writeln!(
            md,
            "\n### Reconnect storm (chat-server only): SIGKILL, restart on the same port and data, every client resumes\n"
        );
        storm_table(&mut md, &results.storms);
    }
    if !results.notes.is_empty() {
        md.push_str("\n### Notes from the run\n\n");
        for note in &results.notes {
            let _ = writeln!(md, "- {note}");
        }
    }
    md
}

fn storm_table(md: &mut String, rows: &[StormRow]) {
    md.push_str(
        "| clients | rooms of | messages per room | server listening after | back, p50 | p99 | all | back before the deadline | password logins | sessions refused | failed attempts | server CPU s | load generator core busy | lost messages |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let secs = |d: Option<std::time::Duration>| {
        d.map_or_else(|| "–".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()))
    };
    for row in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} ms | {} | {} | {} | {} of {} ({:.0} s) | {} | {} | {} | {:.2} | {:.0}% | {} |",
            row.clients,
            row.room_size,
            row.messages_per_room,
            row.restart.as_millis(),
            secs(row.back_quantile(0.5)),
            secs(row.back_quantile(0.99)),
            secs(row.all_back()),
            row.back.len(),
            row.clients,
            row.deadline.as_secs_f64(),
            row.password_logins,
            row.sessions_refused,
            row.failed_attempts,
            row.server_cpu_seconds,
            row.loadgen_cpu_share * 100.0,
            row.rewound,
        );
    }
    md.push_str(
        "\nTimes count from the SIGKILL; p50 and p99 are over the clients that came back. Each client holds a session from `POST /api/login` and the seq of the newest message of its room; \
         it retries with jittered backoff (50 ms doubling to 1 s) while the server is down, gets a ticket with `POST /api/ticket` \
         (falling back to a password login if the session is refused), opens `/ws` and sends `join_room` with `since`. \
         Server CPU is the new process's, from its start until every client was back (or the deadline). \
         Lost messages: clients whose `joined` named a smaller `last_seq` than they had.\n",
    );
    for row in rows {
        if row.behind_at_crash > 0 || row.lost_before_crash > 0 {
            let _ = writeln!(
                md,
                "\nBefore the crash {} clients lacked some of their room's messages and {} connections had dropped.",
                row.behind_at_crash, row.lost_before_crash
            );
        }
        if let (None, Some(error)) = (row.all_back(), &row.last_error) {
            let _ = writeln!(md, "\nThe last failed attempt: {error}");
        }
    }
}

/// Writes the raw CSV files.
pub fn write_csv(dir: &Path, results: &Results) -> anyhow::Result<()> {
    let mut traffic = String::from(
        "scenario,server,size,offered_rate,rep,sent,delivered_per_sec,ratio,p50_us,p99_us,p999_us,server_cpu_us_per_delivery,server_cpu_share,loadgen_cpu_share,disconnects,crossed_per_sec\n",
    );
    for (scenario, rows) in [
        ("fanout", &results.fanout),
        ("rooms", &results.rooms),
        ("cluster", &results.cluster),
    ] {
        for row in rows {
            let r = &row.result;
            let _ = writeln!(
                traffic,
                "{scenario},{},{},{},{},{},{:.1},{:.4},{},{},{},{:.3},{:.3},{:.3},{},{:.1}",
                row.server.id(),
                row.size,
                row.rate,
                row.rep,
                r.sent,
                r.delivered_per_sec,
                r.ratio,
                r.p50_us,
                r.p99_us,
                r.p999_us,
                r.server_cpu_us_per_msg,
                r.server_cpu_share,
                r.loadgen_cpu_share,
                r.disconnects,
                r.crossed_per_sec
            );
        }
    }
    std::fs::write(dir.join("traffic.csv"), traffic)?;
    let mut idle =
        String::from("server,connections,baseline_bytes,rss_bytes,bytes_per_connection\n");
    for row in &results.idle {
        let _ = writeln!(
            idle,
            "{},{},{},{},{:.0}",
            row.server.id(),
            row.connections,
            row.baseline_bytes,
            row.rss_bytes,
            row.per_connection()
        );
    }
    std::fs::write(dir.join("idle.csv"), idle)?;
    let mut hs = String::from(
        "server,transport,rep,connections_per_sec,server_cpu_share,loadgen_cpu_share,server_cpu_us_per_connection,failures\n",
    );
    for row in &results.handshakes {
        let _ = writeln!(
            hs,
            "{},{},{},{:.1},{:.3},{:.3},{:.1},{}",
            row.server.id(),
            row.transport,
            row.rep,
            row.per_sec,
            row.server_cpu_share,
            row.loadgen_cpu_share,
            row.server_cpu_us,
            row.failures
        );
    }
    std::fs::write(dir.join("handshakes.csv"), hs)?;
    let mut storm = String::from(
        "clients,room_size,messages_per_room,restart_ms,back,back_p50_ms,back_p99_ms,all_back_ms,deadline_s,password_logins,sessions_refused,failed_attempts,rewound,server_cpu_seconds,loadgen_cpu_share\n",
    );
    let ms_of =
        |d: Option<std::time::Duration>| d.map_or(String::new(), |d| d.as_millis().to_string());
    for row in &results.storms {
        let _ = writeln!(
            storm,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{:.3},{:.3}",
            row.clients,
            row.room_size,
            row.messages_per_room,
            row.restart.as_millis(),
            row.back.len(),
            ms_of(row.back_quantile(0.5)),
            ms_of(row.back_quantile(0.99)),
            ms_of(row.all_back()),
            row.deadline.as_secs(),
            row.password_logins,
            row.sessions_refused,
            row.failed_attempts,
            row.rewound,
            row.server_cpu_seconds,
            row.loadgen_cpu_share
        );
    }
    std::fs::write(dir.join("storm.csv"), storm)?;
    Ok(())
}

/// One server's points: offered rate, deliveries/s, p99 in ms.
type Line = Vec<(f64, f64, f64)>;

/// Draws delivered rate and p99 latency against offered load, one line per
/// server, one row of two charts per message size.
pub fn write_chart(path: &Path, results: &Results, plan: &Plan) -> anyhow::Result<()> {
    use plotters::prelude::*;

    let all = points(&results.fanout);
    if all.is_empty() {
        return Ok(());
    }
    let rows = plan.sizes.len();
    let root = SVGBackend::new(path, (1200, 420 * rows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((rows, 2));
    // The rates some server was measured at: the sweep's last rates are
    // reached by few servers, or none.
    let rates = || all.keys().map(|&(_, _, rate)| rate as f64);
    let rate_min = rates().fold(f64::INFINITY, f64::min) * 0.8;
    let rate_max = rates().fold(0.0, f64::max) * 1.25;
    for (row, &size) in plan.sizes.iter().enumerate() {
        let series: Vec<(usize, Line)> = (0..ServerKind::ALL.len())
            .map(|k| {
                let line = all
                    .iter()
                    .filter(|((s, server, _), _)| *s == size && *server == k)
                    .map(|((_, _, rate), p)| {
                        (
                            *rate as f64,
                            p.delivered.max(1.0),
                            (p.p99 / 1000.0).max(0.01),
                        )
                    })
                    .collect();
                (k, line)
            })
            .filter(|(_, line): &(usize, Line)| !line.is_empty())
            .collect();
        let fanout = plan.subscribers as f64;
        let deliveries_max = rate_max * fanout * 1.5;
        let p99_max = series
            .iter()
            .flat_map(|(_, l)| l.iter().map(|p| p.2))
            .fold(1.0, f64::max)
            * 2.0;

        let column = |pick: fn(&(f64, f64, f64)) -> f64| -> Vec<(usize, Vec<(f64, f64)>)> {
            series
                .iter()
                .map(|(k, line)| (*k, line.iter().map(|p| (p.0, pick(p))).collect()))
                .collect()
        };
        panel(
            &areas[row * 2],
            &format!("Fan-out, {size} B: deliveries/s"),
            "deliveries/s",
            (rate_min..rate_max, rate_min * fanout * 0.1..deliveries_max),
            &column(|p| p.1),
            Some([(rate_min, rate_min * fanout), (rate_max, rate_max * fanout)]),
        )?;
        panel(
            &areas[row * 2 + 1],
            &format!("Fan-out, {size} B: p99 latency (ms)"),
            "p99 latency, ms",
            (rate_min..rate_max, 0.01..p99_max),
            &column(|p| p.2),
            None,
        )?;
    }
    root.present()?;
    Ok(())
}

/// One chart: a line per server against offered load (both axes
/// logarithmic), and optionally the offered line itself for reference.
fn panel(
    area: &plotters::drawing::DrawingArea<
        plotters::prelude::SVGBackend<'_>,
        plotters::coord::Shift,
    >,
    caption: &str,
    y_desc: &str,
    (x, y): (std::ops::Range<f64>, std::ops::Range<f64>),
    series: &[(usize, Vec<(f64, f64)>)],
    offered: Option<[(f64, f64); 2]>,
) -> anyhow::Result<()> {
    use plotters::prelude::*;

    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(x.log_scale(), y.log_scale())?;
    chart
        .configure_mesh()
        .x_desc("offered messages/s")
        .y_desc(y_desc)
        .draw()?;
    if let Some(offered) = offered {
        chart
            .draw_series(LineSeries::new(offered, BLACK.mix(0.3).stroke_width(1)))?
            .label("offered")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.3)));
    }
    for (k, line) in series {
        let color = Palette99::pick(*k).mix(0.9);
        chart
            .draw_series(LineSeries::new(line.iter().copied(), color.stroke_width(2)))?
            .label(ServerKind::ALL[*k].name())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(line.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Puts `body` between the suite's marks in `BENCHMARKS.md` (appending the
/// marks the first time), leaving the rest of the file alone.
pub fn update_benchmarks_md(path: &Path, date: &str, body: &str) -> anyhow::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".into());
    let section = format!("{START_MARK}\n## Against other servers ({date})\n\n{body}\n{END_MARK}");
    let new = match (old.find(START_MARK), old.find(END_MARK)) {
        (Some(start), Some(end)) if end > start => {
            format!("{}{section}{}", &old[..start], &old[end + END_MARK.len()..])
        }
        _ => format!("{}\n{section}\n", old.trim_end()),
    };
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fan-out point: `ratio` of the offered 1,000 deliveries per message.
    fn point(server: ServerKind, size: usize, rate: f64, ratio: f64, p99_ms: f64) -> TrafficRow {
        TrafficRow {
            server,
            size,
            rate,
            rep: 0,
            result: StepResult {
                sent: rate as u64,
                delivered_per_sec: rate * 1000.0 * ratio,
                crossed_per_sec: 0.0,
                ratio,
                samples: 100,
                p50_us: 1000,
                p99_us: (p99_ms * 1000.0) as u64,
                p999_us: (p99_ms * 1000.0) as u64,
                server_cpu_us_per_msg: 1.0,
                server_cpu_share: 1.0,
                loadgen_cpu_share: 0.5,
                disconnects: 0,
            },
        }
    }

    fn target_lines(results: &Results) -> Vec<String> {
        let plan = Plan {
            fanout_rates: vec![1000.0, 2000.0, 4000.0, 8000.0, 16000.0],
            ..Plan::full()
        };
        let mut md = String::new();
        targets(&mut md, results, &plan);
        md.lines().map(str::to_owned).collect()
    }

    fn line<'a>(lines: &'a [String], starts: &str) -> &'a str {
        lines
            .iter()
            .find(|l| l.starts_with(starts))
            .unwrap_or_else(|| panic!("no line starting {starts:?} in {lines:#?}"))
    }

    #[test]
    fn fan_out_targets_are_judged_from_the_rows() {
        let (me, uws) = (ServerKind::ChatServer, ServerKind::Uws);
        let results = Results {
            fanout: vec![
                point(me, 64, 1000.0, 1.0, 10.0),
                point(me, 64, 2000.0, 0.99, 20.0),
                point(me, 64, 4000.0, 0.80, 900.0),
                point(uws, 64, 1000.0, 1.0, 20.0),
                point(uws, 64, 2000.0, 0.999, 25.0),
                point(uws, 64, 4000.0, 0.96, 30.0),
                point(uws, 64, 8000.0, 0.40, 3000.0),
            ],
            rooms: vec![point(me, 64, 1000.0, 1.0, 5.0)],
            ..Results::default()
        };
        let lines = target_lines(&results);
        assert_eq!(
            line(&lines, "- Fan-out 64 B, sweep"),
            "- Fan-out 64 B, sweep (up to 16000 msg/s) reaches each server's first rate under 95% delivered: \
             chat-server at 4000 msg/s (80.0%), uWebSockets.js at 8000 msg/s (40.0%): met"
        );
        // 4000 msg/s is left out: chat-server delivered under 95% there.
        assert_eq!(
            line(&lines, "- Fan-out 64 B, p99"),
            "- Fan-out 64 B, p99 vs uWebSockets.js at every rate where both deliver ≥ 95%: \
             met at 2 of 2 rates; worst at 2000 msg/s 20.00 ms vs 25.00 ms = 0.80x (target ≤ 1x): met, 20% to spare"
        );
        // Best: 0.8 * 4000 * 1000 = 3.2M against uWS's 0.96 * 4000 * 1000 = 3.84M.
        assert_eq!(
            line(&lines, "- Fan-out 64 B, best"),
            "- Fan-out 64 B, best deliveries/s vs uWebSockets.js: 3200000 (at 4000 msg/s) vs 3840000 \
             (at 4000 msg/s) = 0.83x (target ≥ 1.2x): **missed** by 31%"
        );
        assert!(
            line(&lines, "- Many rooms, p99")
                .ends_with("not compared (uWebSockets.js did not run)"),
            "{lines:#?}"
        );
    }

    #[test]
    fn a_sweep_that_ends_before_saturating_misses_and_worst_p99_decides() {
        let (me, uws) = (ServerKind::ChatServer, ServerKind::Uws);
        let results = Results {
            fanout: vec![
                point(me, 1024, 1000.0, 1.0, 50.0),
                point(me, 1024, 16000.0, 0.97, 60.0),
                point(uws, 1024, 1000.0, 1.0, 10.0),
                point(uws, 1024, 16000.0, 0.5, 10.0),
            ],
            ..Results::default()
        };
        let lines = target_lines(&results);
        assert!(line(&lines, "- Fan-out 1024 B, sweep").ends_with(
            "under 95% delivered: uWebSockets.js at 16000 msg/s (50.0%): **missed**: \
             chat-server still delivered 97.0% at 16000 msg/s"
        ));
        assert!(line(&lines, "- Fan-out 1024 B, sweep").ends_with(
            "uWebSockets.js at 16000 msg/s (50.0%): **missed**: chat-server still delivered 97.0% at 16000 msg/s"
        ));
        assert!(line(&lines, "- Fan-out 1024 B, p99").ends_with(
            "met at 0 of 1 rates; worst at 1000 msg/s 50.00 ms vs 10.00 ms = 5.00x (target ≤ 1x): **missed**: 5.0x the limit"
        ));
        assert!(lines.contains(
            &"  - at 1000 msg/s 50.00 ms vs 10.00 ms = 5.00x: **missed**: 5.0x the limit"
                .to_owned()
        ));
    }

    #[test]
    fn storm_targets_say_how_many_came_back_and_how_many_hashes() {
        let row = StormRow {
            clients: 4,
            room_size: 2,
            messages_per_room: 3,
            behind_at_crash: 0,
            lost_before_crash: 0,
            restart: std::time::Duration::from_millis(90),
            back: vec![std::time::Duration::from_millis(1500); 3],
            deadline: std::time::Duration::from_secs(60),
            sessions_refused: 4,
            password_logins: 3,
            failed_attempts: 10,
            last_error: Some("connection refused".into()),
            rewound: 0,
            server_cpu_seconds: 2.0,
            loadgen_cpu_share: 0.4,
        };
        let lines = target_lines(&Results {
            storms: vec![row.clone()],
            ..Results::default()
        });
        assert_eq!(
            line(&lines, "- Reconnect storm, 4 clients"),
            "- Reconnect storm, 4 clients, time from the crash until every one has resumed: only 3 of 4 back \
             when the 60 s deadline passed (target ≤ 10 s): **missed**: over 60 s, at least 6.0x the limit"
        );
        assert_eq!(
            line(&lines, "- Reconnect storm, password"),
            "- Reconnect storm, password hashes on the server (logins after a refused session): 3 \
             (4 clients had their session refused with invalid_session) (target ≤ 0): **missed** by 3"
        );
        let all_back = StormRow {
            back: vec![std::time::Duration::from_millis(2500); 4],
            password_logins: 0,
            ..row
        };
        let lines = target_lines(&Results {
            storms: vec![all_back],
            ..Results::default()
        });
        assert!(line(&lines, "- Reconnect storm, 4 clients")
            .ends_with("2.50 s (target ≤ 10 s): met, 75% to spare"));
        assert!(line(&lines, "- Reconnect storm, password").ends_with("(target ≤ 0): met"));
    }

    #[test]
    fn cluster_targets_compare_with_socket_io_and_the_single_node() {
        let (me, sio) = (ServerKind::ChatServer, ServerKind::SocketIo);
        let results = Results {
            fanout: vec![
                point(me, 64, 1000.0, 1.0, 10.0),
                point(me, 64, 4000.0, 0.80, 900.0),
            ],
            cluster: vec![
                point(me, 64, 100.0, 1.0, 4.0),
                point(me, 64, 400.0, 1.0, 12.0),
                point(me, 64, 1000.0, 0.90, 300.0),
                point(sio, 64, 100.0, 0.99, 8.0),
                point(sio, 64, 400.0, 0.40, 2000.0),
            ],
            ..Results::default()
        };
        let lines = target_lines(&results);
        // 0.9 * 1000 * 1000 = 900k against Socket.IO's 0.4 * 400 * 1000 = 160k.
        assert_eq!(
            line(&lines, "- Cluster of 2 nodes, best"),
            "- Cluster of 2 nodes, best deliveries/s vs the Socket.IO cluster: 900000 (at 1000 msg/s) \
             vs 160000 (at 400 msg/s) = 5.62x (target ≥ 5x): met, 12% to spare"
        );
        // Only 100 msg/s counts: Socket.IO delivered under 95% at 400.
        assert_eq!(
            line(&lines, "- Cluster, p99"),
            "- Cluster, p99 vs the Socket.IO cluster at every rate where both deliver ≥ 95%: met at 1 of 1 rates; \
             worst at 100 msg/s 4.00 ms vs 8.00 ms = 0.50x (target ≤ 1x): met, 50% to spare"
        );
        // Against the single node's best, 0.8 * 4000 * 1000 = 3.2M.
        assert_eq!(
            line(&lines, "- Cluster, best deliveries/s vs chat-server's single-node"),
            "- Cluster, best deliveries/s vs chat-server's single-node fan-out (64 B) of the same run: \
             900000 (at 1000 msg/s) vs 3200000 (at 4000 msg/s) = 0.28x (target ≥ 0.5x): **missed** by 44%"
        );
    }

    #[test]
    fn a_cluster_alone_says_what_it_was_not_compared_with() {
        let me = ServerKind::ChatServer;
        let lines = target_lines(&Results {
            cluster: vec![point(me, 64, 1000.0, 1.0, 10.0)],
            ..Results::default()
        });
        assert!(line(&lines, "- Cluster of 2 nodes, best")
            .ends_with("not compared (the Socket.IO cluster did not run)"));
        assert!(line(&lines, "- Cluster, p99")
            .ends_with("not compared (the Socket.IO cluster did not run)"));
        assert!(
            line(&lines, "- Cluster, best deliveries/s vs chat-server's")
                .ends_with("not compared (the 64 B fan-out did not run)")
        );
        let only_saturated = target_lines(&Results {
            cluster: vec![
                point(me, 64, 1000.0, 1.0, 10.0),
                point(ServerKind::SocketIo, 64, 1000.0, 0.15, 3000.0),
            ],
            ..Results::default()
        });
        assert_eq!(
            line(&only_saturated, "- Cluster, p99"),
            "- Cluster, p99 vs the Socket.IO cluster at every rate where both deliver ≥ 95%: **missed**: \
             no rate where both did (the lowest offered: chat-server 1000 msg/s, 100.0%, the Socket.IO cluster 1000 msg/s, 15.0%)"
        );
        assert!(
            !target_lines(&Results::default())
                .iter()
                .any(|l| l.contains("Cluster")),
            "no cluster rows, no cluster targets"
        );
    }

    #[test]
    fn the_cluster_table_shows_the_share_that_crossed_nodes() {
        let mut row = point(ServerKind::ChatServer, 64, 1000.0, 1.0, 10.0);
        row.result.crossed_per_sec = 500_000.0;
        let mut md = String::new();
        cluster_table(&mut md, &[row], 1000);
        assert!(
            md.contains(
                "| chat-server | 1000 | 1000000 (1000000–1000000) | 100.0% | 500000 (50%) |"
            ),
            "{md}"
        );
    }

    #[test]
    fn the_summary_replaces_only_its_own_section() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("BENCHMARKS.md");
        std::fs::write(&path, "# Benchmarks\n\nDurability: kept.\n").expect("write");
        update_benchmarks_md(&path, "2026-01-01", "first").expect("update");
        update_benchmarks_md(&path, "2026-01-02", "second").expect("update");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("Durability: kept."));
        assert!(text.contains("second") && text.contains("2026-01-02"));
        assert!(!text.contains("first"));
        assert_eq!(text.matches(START_MARK).count(), 1);
    }
}
