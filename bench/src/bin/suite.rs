//! Runs the benchmark suite (`make bench`, or `make bench-quick`) and writes
//! its report. Start it pinned to core 1 (`taskset -c 1`): it pins every
//! server to core 0.

use std::path::PathBuf;

use anyhow::Context as _;
use chat_bench::engines::{EngineConfig, Engines};
use chat_bench::scenarios::{self, Plan, Results};
use chat_bench::servers::{CertFiles, Paths, ServerKind};
use chat_bench::{cluster, report, storm};
use clap::Parser;

/// Benchmarks chat-server against its peers.
#[derive(Parser)]
struct Args {
    /// One point of each scenario against chat-server alone (under a minute).
    #[arg(long)]
    quick: bool,
    /// Servers to run, by id: chat-server, uws, ws, socketio, python, axum.
    #[arg(long, value_delimiter = ',')]
    servers: Option<Vec<String>>,
    /// Scenarios to run: fanout, rooms, idle, handshakes, storm, cluster.
    #[arg(long, value_delimiter = ',')]
    scenarios: Option<Vec<String>>,
    /// The PostgreSQL server the cluster scenario creates its database on
    /// (and drops it after).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres: String,
    /// A Redis for the cluster scenario to share, under a prefix of its own;
    /// by default it starts a private redis-server.
    #[arg(long)]
    redis: Option<String>,
    /// Where dated result folders go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// The summary file a full run updates.
    #[arg(long, default_value = "BENCHMARKS.md")]
    summary: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let paths = Paths::discover()?;
    let plan = if args.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    let servers: Vec<ServerKind> = match (&args.servers, args.quick) {
        (Some(ids), _) => ids
            .iter()
            .map(|id| ServerKind::from_id(id).with_context(|| format!("no server {id:?}")))
            .collect::<anyhow::Result<_>>()?,
        (None, true) => vec![ServerKind::ChatServer],
        (None, false) => ServerKind::ALL.to_vec(),
    };
    let scenarios: Vec<String> = args.scenarios.clone().unwrap_or_else(|| {
        ["fanout", "rooms", "idle", "handshakes", "storm", "cluster"]
            .map(String::from)
            .to_vec()
    });
    let mut results = Results::default();

    let pinned = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    if pinned != "1" {
        results.notes.push(format!(
            "The load generator was not pinned to core 1 (allowed CPUs: {pinned}); run it through make bench."
        ));
    }
    let mut runnable = Vec::new();
    for kind in servers {
        match kind.missing(&paths) {
            Some(why) => results
                .notes
                .push(format!("{} not run: {why}", kind.name())),
            None => runnable.push(kind),
        }
    }

    let engines = if scenarios.iter().any(|s| s == "cluster") {
        let engines = Engines::probe(&EngineConfig {
            postgres: args.postgres.clone(),
            redis: args.redis.clone(),
        })
        .await;
        results.notes.extend(engines.redis_note());
        let without: Vec<&str> = runnable
            .iter()
            .filter(|k| !cluster::supported(**k))
            .map(|k| k.name())
            .collect();
        if !without.is_empty() {
            results.notes.push(format!(
                "cluster: {} not run, having no cluster mode here (only chat-server and Socket.IO do).",
                without.join(", ")
            ));
        }
        Some(engines)
    } else {
        None
    };

    let certs = tempfile::tempdir()?;
    let cert = CertFiles::generate(certs.path())?;
    let started = std::time::Instant::now();
    for scenario in &scenarios {
        for &kind in &runnable {
            let outcome = match scenario.as_str() {
                "fanout" => scenarios::fanout(kind, &paths, &plan, &mut results).await,
                "rooms" => scenarios::rooms(kind, &paths, &plan, &mut results).await,
                "idle" => scenarios::idle(kind, &paths, &plan, &mut results).await,
                "handshakes" => {
                    let ws = scenarios::handshakes(kind, &paths, &plan, None, &mut results).await;
                    match (ws, kind.supports_tls()) {
                        (Ok(()), true) => {
                            scenarios::handshakes(kind, &paths, &plan, Some(&cert), &mut results)
                                .await
                        }
                        (other, _) => other,
                    }
                }
                "storm" => storm::storm(kind, &paths, &plan, &mut results).await,
                "cluster" => match &engines {
                    Some(engines) => {
                        cluster::cluster(kind, &paths, &plan, engines, &mut results).await
                    }
                    None => Ok(()),
                },
                other => anyhow::bail!("no scenario {other:?}"),
            };
            if let Err(e) = outcome {
                let note = format!("{scenario} with {} failed: {e:#}", kind.name());
                eprintln!("[bench] {note}");
                results.notes.push(note);
            }
        }
    }
    if runnable.contains(&ServerKind::AxumRelay) && scenarios.iter().any(|s| s == "handshakes") {
        results.notes.push(
            "axum relay: ws handshakes only; axum has no TLS of its own and its chat example serves plain ws."
                .into(),
        );
    }
    eprintln!(
        "[bench] finished in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let date = humantime::format_rfc3339(std::time::SystemTime::now()).to_string();
    let date = &date[..10];
    let machine = report::machine();
    let (dir, command) = if args.quick {
        (PathBuf::from("target/bench-quick"), "make bench-quick")
    } else {
        (args.out.join(date), "make bench")
    };
    std::fs::create_dir_all(&dir)?;
    let body = report::markdown(
        &results,
        &plan,
        &machine,
        command,
        &dir.display().to_string(),
    );
    report::write_csv(&dir, &results)?;
    report::write_chart(&dir.join("fanout.svg"), &results, &plan)?;
    std::fs::write(
        dir.join("report.md"),
        format!("# Benchmarks, {date}\n\n{body}"),
    )?;
    if !args.quick {
        report::update_benchmarks_md(&args.summary, date, &body)?;
    }
    println!("{body}");
    eprintln!("[bench] report in {}", dir.display());
    Ok(())
}
