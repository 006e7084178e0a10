//! Where the server keeps its state, as the flags choose:
//! - embedded (the default): accounts and sessions in `chat.db`, messages in
//!   `messages.db`, tickets and the login throttle in memory, an in-process bus;
//! - `--database-url`: accounts, sessions and the room log in PostgreSQL, the
//!   rest in memory: one node on PostgreSQL;
//! - `--database-url` and `--redis-url`: one node of a cluster, with the bus
//!   between nodes, presence, tickets and the login throttle in Redis.
//!
//! Each way yields the same three things: the authentication service, the
//! node the connections use, and the checks of `/readyz`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chat_rooms::cluster::{self, Cluster, ClusterSettings};
use chat_rooms::{Node, PgLog, RoomLog, SqliteLog};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::auth::{self, Auth, SharedRedis};
use crate::clock::Clock;
use crate::config::Config;
use crate::readiness::Readiness;

/// Connections the authentication stores may hold open: logins are bounded
/// by the hashing semaphore, ticket mints are one lookup each.
const AUTH_POOL: u32 = 8;

/// How long a request waits for a database connection before it fails:
/// with the database away, clients get an error instead of a hang.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`open`] assembled.
pub(crate) struct Backend {
    pub(crate) auth: Auth,
    pub(crate) node: Arc<Node>,
    pub(crate) readiness: Readiness,
    /// A cluster node's background work (bus, presence); stops when dropped,
    /// which the server does after its connections have closed.
    pub(crate) cluster: Option<Cluster>,
}

/// Opens the stores `config` names; fails, saying what could not be reached,
/// before the server listens.
pub(crate) async fn open(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Backend> {
    let Some(database_url) = &config.database_url else {
        return embedded(config, clock).await;
    };
    let log: Arc<dyn RoomLog> = Arc::new(
        PgLog::connect(database_url, config.retention())
            .await
            .context("opening the room log in PostgreSQL (--database-url)")?,
    );
    let options: PgConnectOptions = database_url.parse().context("parsing --database-url")?;
    let pool = PgPoolOptions::new()
        .max_connections(AUTH_POOL)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options.application_name("chat-auth"))
        .await
        .context("connecting to PostgreSQL for accounts and sessions (--database-url)")?;
    let mut readiness = Readiness::default();
    add_log_check(&mut readiness, &log);
    let Some(redis_url) = &config.redis_url else {
        tracing::info!("one node on PostgreSQL; tickets and the login throttle in memory");
        let auth = Auth::open_cluster(pool, None, config, clock).await?;
        let node = Arc::new(
            Node::single(log, config.history_on_join, config.send_queue)
                .with_max_frame(config.max_frame()),
        );
        return Ok(Backend {
            auth,
            node,
            readiness,
            cluster: None,
        });
    };
    let conn = auth::connect_redis(redis_url)
        .await
        .context("connecting to Redis for tickets and the login throttle (--redis-url)")?;
    let redis = SharedRedis {
        conn,
        prefix: config.redis_prefix.clone(),
    };
    let auth = Auth::open_cluster(pool, Some(redis), config, clock).await?;
    let node_id = config.node_name();
    let mut settings = ClusterSettings::new(log, redis_url, &config.redis_prefix, &node_id);
    settings.presence_ttl = config.presence_ttl;
    settings.send_queue = config.send_queue;
    settings.history_on_join = config.history_on_join;
    settings.max_frame = config.max_frame();
    let cluster = cluster::connect(settings)
        .await
        .context("joining the cluster through Redis (--redis-url)")?;
    let bus = cluster.bus().clone();
    readiness.add(
        "bus",
        Arc::new(move || {
            let ready = bus.ready();
            Box::pin(async move {
                if ready {
                    Ok(())
                } else {
                    Err("not connected to Redis; messages are stored, and reach the other nodes once it is back".to_owned())
                }
            })
        }),
    );
    tracing::info!(node = %node_id, "cluster node on PostgreSQL and Redis");
    Ok(Backend {
        auth,
        node: cluster.node().clone(),
        readiness,
        cluster: Some(cluster),
    })
}

/// The single server: everything in the data directory.
async fn embedded(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Backend> {
    let auth = Auth::open(config, clock).await?;
    let log: Arc<dyn RoomLog> = Arc::new(SqliteLog::open(
        &config.data_dir,
        config.storage,
        config.durability,
        config.retention(),
    )?);
    let mut readiness = Readiness::default();
    add_log_check(&mut readiness, &log);
    let node = Arc::new(
        Node::single(log, config.history_on_join, config.send_queue)
            .with_max_frame(config.max_frame()),
    );
    Ok(Backend {
        auth,
        node,
        readiness,
        cluster: None,
    })
}

fn add_log_check(readiness: &mut Readiness, log: &Arc<dyn RoomLog>) {
    let log = log.clone();
    readiness.add(
        "message_log",
        Arc::new(move || {
            let log = log.clone();
            Box::pin(async move { log.ready().await.map_err(|e| e.to_string()) })
        }),
    );
}
