//! What a run writes: raw CSV, a Markdown report with medians, spreads and
//! the targets checked, a chart, and the summary in `BENCHMARKS.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

use crate::load::StepResult;
use crate::scenarios::{HandshakeRow, IdleRow, Plan, Results, TrafficRow};
use crate::servers::ServerKind;

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

fn points(rows: &[TrafficRow]) -> BTreeMap<(usize, usize, u64), Point> {
    let mut groups: BTreeMap<(usize, usize, u64), Vec<StepResult>> = BTreeMap::new();
    for row in rows {
        let server = ServerKind::ALL
            .iter()
            .position(|k| *k == row.server)
            .unwrap_or(0);
        groups
            .entry((row.size, server, row.rate as u64))
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

fn traffic_table(md: &mut String, rows: &[TrafficRow], fanout: usize) {
    md.push_str(
        "| server | offered msg/s | deliveries/s, median (min–max) | of offered | p50 ms | p99 ms | p99.9 ms | server CPU µs/delivery | lost conns |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for ((_, server, rate), p) in points(rows) {
        let _ = writeln!(
            md,
            "| {} | {rate} | {:.0} ({:.0}–{:.0}) | {:.1}% | {} | {} | {} | {:.2} | {} |",
            ServerKind::ALL[server].name(),
            p.delivered,
            p.min,
            p.max,
            p.ratio * 100.0,
            latency(&p, p.p50),
            latency(&p, p.p99),
            latency(&p, p.p999),
            p.cpu_us,
            p.lost
        );
    }
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
        let server = ServerKind::ALL
            .iter()
            .position(|k| *k == row.server)
            .unwrap_or(0);
        groups.entry((server, row.transport)).or_default().push(row);
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

/// Highest median delivery rate a server reached at any offered rate.
fn best_delivered(rows: &[TrafficRow], server: ServerKind, size: usize) -> Option<f64> {
    let index = ServerKind::ALL.iter().position(|k| *k == server)?;
    points(rows)
        .into_iter()
        .filter(|((s, k, _), _)| *s == size && *k == index)
        .map(|(_, p)| p.delivered)
        .reduce(f64::max)
}

fn targets(md: &mut String, results: &Results, plan: &Plan) {
    let me = ServerKind::ChatServer;
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    for &size in &plan.sizes {
        let mine = best_delivered(&results.fanout, me, size);
        for (peer, factor) in [(ServerKind::Uws, 1.0), (ServerKind::NodeWs, 2.0)] {
            if let (Some(mine), Some(theirs)) = (mine, best_delivered(&results.fanout, peer, size))
            {
                let _ = writeln!(
                    md,
                    "- Fan-out {size} B, best deliveries/s vs {}: {mine:.0} vs {theirs:.0} = {:.2}x (target ≥ {factor}x): {}",
                    peer.name(),
                    mine / theirs,
                    verdict(mine >= factor * theirs)
                );
            }
        }
        let all = points(&results.fanout);
        let uws = ServerKind::ALL.iter().position(|k| *k == ServerKind::Uws);
        for ((s, k, rate), p) in &all {
            if *s != size || *k != 0 {
                continue;
            }
            if let Some(theirs) = uws.and_then(|u| all.get(&(size, u, *rate))) {
                let _ = writeln!(
                    md,
                    "- Fan-out {size} B at {rate} msg/s, p99: {} ms vs uWebSockets.js {} ms: {}",
                    ms(p.p99),
                    ms(theirs.p99),
                    verdict(p.p99 <= theirs.p99)
                );
            }
        }
    }
    if let Some(row) = results
        .idle
        .iter()
        .filter(|r| r.server == me)
        .max_by_key(|r| r.connections)
    {
        let kib = row.per_connection() / 1024.0;
        let _ = writeln!(
            md,
            "- Idle memory at {} connections: {kib:.2} KiB per connection (target < 4 KiB): {}",
            row.connections,
            verdict(kib < 4.0)
        );
    }
    let hs = handshake_points(&results.handshakes);
    let rate = |server: ServerKind, transport: &str| {
        hs.iter()
            .find(|h| h.server == server && h.transport == transport)
            .map(|h| (h.rate, h.server_share, h.loadgen_share))
    };
    if let (Some(mine), Some(ws)) = (rate(me, "ws"), rate(ServerKind::NodeWs, "ws")) {
        let _ = writeln!(
            md,
            "- Handshakes over ws, ticket request included, vs Node ws: {:.0}/s vs {:.0}/s = {:.2}x (target ≥ 1x): {}",
            mine.0,
            ws.0,
            mine.0 / ws.0,
            verdict(mine.0 >= ws.0)
        );
    }
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
            "- Handshakes over wss: {r:.0}/s with the server core {:.0}% and the load generator core {:.0}% busy: {bound}",
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
         subscriber's read, both in the load generator.\n\n",
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
    if !results.notes.is_empty() {
        md.push_str("\n### Notes from the run\n\n");
        for note in &results.notes {
            let _ = writeln!(md, "- {note}");
        }
    }
    md
}

/// Writes the raw CSV files.
pub fn write_csv(dir: &Path, results: &Results) -> anyhow::Result<()> {
    let mut traffic = String::from(
        "scenario,server,size,offered_rate,rep,sent,delivered_per_sec,ratio,p50_us,p99_us,p999_us,server_cpu_us_per_delivery,server_cpu_share,loadgen_cpu_share,disconnects\n",
    );
    for (scenario, rows) in [("fanout", &results.fanout), ("rooms", &results.rooms)] {
        for row in rows {
            let r = &row.result;
            let _ = writeln!(
                traffic,
                "{scenario},{},{},{},{},{},{:.1},{:.4},{},{},{},{:.3},{:.3},{:.3},{}",
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
                r.disconnects
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
    let rate_min = plan
        .fanout_rates
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        * 0.8;
    let rate_max = plan.fanout_rates.iter().copied().fold(0.0, f64::max) * 1.25;
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
