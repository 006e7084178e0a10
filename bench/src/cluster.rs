//! The cluster scenario: fan-out through two nodes of one server. Both nodes
//! share one Redis (chat-server's bus between nodes, Socket.IO's
//! `@socket.io/redis-adapter`), and chat-server's nodes one PostgreSQL
//! database (room log, accounts, sessions). The subscribers of one room are
//! split evenly over the nodes and the senders alternate between them, so
//! half of every message's deliveries cross from one node to the other.
//!
//! Both nodes and the private `redis-server` run pinned to the servers'
//! core, as a single server does in the other scenarios: the cluster gets
//! no more CPU than one node, and what it costs to go through Redis shows.

use std::time::Duration;

use anyhow::Context as _;

use crate::engines::{Engines, RedisEngine, TempDatabase};
use crate::load::{self, Connector, Recorder, Step};
use crate::scenarios::{
    log, measure_rate, saturated, Plan, Results, CONNECT_CONCURRENCY, SERVER_CPU, USERS,
};
use crate::servers::{CpuTime, Paths, Running, ServerKind};
use crate::wire::Target;

/// The servers that have a cluster mode here.
pub const KINDS: [ServerKind; 2] = [ServerKind::ChatServer, ServerKind::SocketIo];

/// Nodes in the cluster.
pub const NODES: u8 = 2;

/// Text bytes per message.
pub const SIZE: usize = 64;

/// The room everybody is in.
const ROOM: &str = "cluster";

/// Whether `kind` has a cluster mode to benchmark.
pub fn supported(kind: ServerKind) -> bool {
    KINDS.contains(&kind)
}

/// Whether `kind`'s cluster needs PostgreSQL.
fn needs_postgres(kind: ServerKind) -> bool {
    kind == ServerKind::ChatServer
}

/// The nodes of one cluster and the engines under them. Fields drop in
/// order: the nodes go before the engines they use.
struct Cluster {
    nodes: Vec<Running>,
    redis: RedisEngine,
    database: Option<TempDatabase>,
}

impl CpuTime for Cluster {
    /// The nodes' CPU time and the private Redis's; PostgreSQL's is not
    /// counted (the machine's server, shared with whatever else runs).
    fn cpu_seconds(&self) -> f64 {
        self.nodes.iter().map(Running::cpu_seconds).sum::<f64>() + self.redis.cpu_seconds()
    }
}

impl Cluster {
    /// Starts the engines, then the nodes one after the other (the first
    /// one alone applies chat-server's migrations to the fresh database).
    async fn start(kind: ServerKind, paths: &Paths, engines: &Engines) -> anyhow::Result<Self> {
        let redis = engines.redis(Some(SERVER_CPU)).await?;
        let database = if needs_postgres(kind) {
            Some(engines.database().await?)
        } else {
            None
        };
        let mut cluster = Self {
            nodes: Vec::new(),
            redis,
            database,
        };
        for node in 0..NODES {
            let args = cluster.node_args(kind, node);
            let running = Running::start_with(kind, paths, None, SERVER_CPU, args)
                .await
                .with_context(|| format!("starting node {node}"))?;
            cluster.nodes.push(running);
        }
        Ok(cluster)
    }

    /// The arguments that make node `node` of `kind` a member.
    fn node_args(&self, kind: ServerKind, node: u8) -> Vec<String> {
        let redis = &self.redis;
        match kind {
            ServerKind::ChatServer => {
                let mut args = Vec::new();
                if let Some(db) = &self.database {
                    args.extend(["--database-url".to_owned(), db.url()]);
                }
                args.extend([
                    "--redis-url".to_owned(),
                    redis.url.clone(),
                    "--redis-prefix".to_owned(),
                    redis.prefix.clone(),
                    "--node-id".to_owned(),
                    format!("node{node}"),
                    "--presence-ttl".to_owned(),
                    "30s".to_owned(),
                ]);
                args
            }
            _ => vec![
                "--redis".to_owned(),
                redis.url.clone(),
                "--redis-prefix".to_owned(),
                redis.prefix.clone(),
            ],
        }
    }

    /// Stops the nodes, then the engines.
    async fn stop(self) -> anyhow::Result<()> {
        for node in self.nodes {
            node.stop().await;
        }
        self.redis.stop().await;
        match self.database {
            Some(db) => db.remove().await.context("dropping the database"),
            None => Ok(()),
        }
    }
}

/// Runs the cluster fan-out against `kind`, unless it has no cluster mode
/// or its engines are missing (then a note says why).
pub async fn cluster(
    kind: ServerKind,
    paths: &Paths,
    plan: &Plan,
    engines: &Engines,
    out: &mut Results,
) -> anyhow::Result<()> {
    if !supported(kind) {
        return Ok(());
    }
    if let Some(why) = engines.missing(needs_postgres(kind)) {
        let note = format!("cluster with {} not run: {why}", kind.name());
        log(&note);
        out.notes.push(note);
        return Ok(());
    }
    let cluster = Cluster::start(kind, paths, engines).await?;
    let measured = measure(kind, plan, &cluster, out).await;
    let stopped = cluster.stop().await;
    measured.and(stopped)
}

/// Connects the room across the nodes and sweeps `plan.cluster_rates`.
async fn measure(
    kind: ServerKind,
    plan: &Plan,
    cluster: &Cluster,
    out: &mut Results,
) -> anyhow::Result<()> {
    let recorder = Recorder::shared();
    let mut connectors = Vec::new();
    for (node, running) in (0..NODES).zip(&cluster.nodes) {
        let target = Target {
            addr: running.addr,
            tls: None,
        };
        let connector = Connector::new(target, kind.proto(), USERS, recorder.clone())
            .await
            .with_context(|| format!("logging in on node {node}"))?;
        connectors.push(connector.on_node(node));
    }
    let (n, s, nodes) = (plan.subscribers, plan.senders, usize::from(NODES));
    let mut subscribers = Vec::new();
    let mut senders = Vec::new();
    for (node, connector) in connectors.iter().enumerate() {
        // Node k gets the k-th share of the subscribers and of the senders.
        let share = |total: usize| total * node / nodes..total * (node + 1) / nodes;
        let subs = share(n);
        subscribers.push(
            connector
                .connect_many(subs, CONNECT_CONCURRENCY, |_| ROOM.into(), |_| true)
                .await
                .with_context(|| format!("connecting subscribers to node {node}"))?,
        );
        let own = share(s);
        senders.push(
            connector
                .connect_many(n + own.start..n + own.end, 8, |_| ROOM.into(), |_| false)
                .await
                .with_context(|| format!("connecting senders to node {node}"))?,
        );
    }
    // Round-robin over the senders then alternates between the nodes.
    let senders = interleave(senders);
    let mut id = 0;
    let warm = Step {
        id,
        rate: plan.cluster_rates[0],
        size: SIZE,
        warmup: Duration::from_millis(500),
        window: Duration::from_millis(500),
        fanout: n as u64,
    };
    load::run_step(&senders, kind.proto(), warm, &recorder, cluster).await?;
    for &rate in &plan.cluster_rates {
        let step = Step {
            id,
            rate,
            size: SIZE,
            warmup: plan.warmup,
            window: plan.window,
            fanout: n as u64,
        };
        let label = format!("cluster {}", kind.name());
        let rows =
            measure_rate(&senders, kind, cluster, &recorder, step, plan.reps, &label).await?;
        id += plan.reps as u32;
        let saturated = saturated(&rows);
        out.cluster.extend(rows);
        if saturated {
            break;
        }
    }
    drop(subscribers);
    Ok(())
}

/// `[[a0, a1], [b0, b1]]` -> `[a0, b0, a1, b1]`.
fn interleave<T>(lists: Vec<Vec<T>>) -> Vec<T> {
    let mut iters: Vec<_> = lists.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::new();
    loop {
        let before = out.len();
        out.extend(iters.iter_mut().filter_map(Iterator::next));
        if out.len() == before {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_alternate_between_the_nodes() {
        assert_eq!(interleave(vec![vec![1, 3, 5], vec![2, 4]]), [1, 2, 3, 4, 5]);
        assert!(interleave::<u8>(vec![vec![], vec![]]).is_empty());
    }

    #[test]
    fn only_chat_server_and_socket_io_have_a_cluster_mode() {
        let with: Vec<ServerKind> = ServerKind::ALL
            .into_iter()
            .filter(|k| supported(*k))
            .collect();
        assert_eq!(with, KINDS);
        assert!(needs_postgres(ServerKind::ChatServer) && !needs_postgres(ServerKind::SocketIo));
    }
}
