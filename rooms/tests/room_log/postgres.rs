//! The shared behaviour against PostgreSQL, and what only a log shared by
//! several nodes has to keep: nodes racing on one database, nodes starting
//! at once, a database that goes away and comes back.

use std::collections::{BTreeMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_rooms::room_log::Appended;
use chat_rooms::{LogError, PgLog, Retention, RoomLog};
use chat_test_engines::CutProxy;
use sqlx::{Connection, PgConnection};
use tokio::sync::oneshot;

use crate::{add, message, outcome, queue, seqs, Pg, Store, WAIT};

crate::all_behaviour_tests!(Pg::new().await);

/// Appends `n` messages to `room` on `log` one after another, each waiting
/// for its commit; the acks in the order the log gave them.
async fn append_in_turn(log: Arc<PgLog>, room: &'static str, tag: String, n: usize) -> Vec<u64> {
    let mut acked = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("{tag}-{i}");
        acked.push(add(&*log, room, &id, Some(&id)).await.message.seq);
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_racing_on_one_room_number_it_without_gaps_or_holes() {
    let Some(pg) = Pg::new().await else { return };
    let nodes = [
        Arc::new(pg.node(Retention::default()).await),
        Arc::new(pg.node(Retention::default()).await),
    ];
    const TASKS: usize = 8;
    const EACH: usize = 60;
    let total = (TASKS * EACH) as u64;

    // A reader that keeps reading while the nodes append, from either node:
    // whatever it sees must be 1, 2, 3, ... without a hole, and `recent`
    // must agree with its own `last_seq`.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let nodes = nodes.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut reads, mut cursor, mut views) = (0usize, 0u64, HashSet::new());
            while !stop.load(Ordering::Relaxed) {
                let node = &nodes[reads % 2];
                let page = node.after("r", cursor, 10_000).await.expect("reads");
                assert_eq!(
                    seqs(&page),
                    (cursor + 1..=cursor + page.len() as u64).collect::<Vec<_>>(),
                    "a hole after seq {cursor}"
                );
                cursor += page.len() as u64;
                views.insert(cursor);
                let recent = node.recent("r", 5).await.expect("reads");
                if let Some(newest) = recent.messages.last() {
                    assert_eq!(newest.seq, recent.last_seq, "recent reads one snapshot");
                    assert!(recent.last_seq >= cursor, "reads go forward");
                }
                reads += 1;
                tokio::task::yield_now().await;
            }
            views.len()
        })
    };

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let node = nodes[t % 2].clone();
        tasks.push(tokio::spawn(append_in_turn(
            node,
            "r",
            format!("t{t}"),
            EACH,
        )));
    }
    let mut all = Vec::new();
    for task in tasks {
        let acked = task.await.expect("appender ran");
        assert!(
            acked.windows(2).all(|w| w[0] < w[1]),
            "one appender's messages commit in its order"
        );
        all.extend(acked);
    }
    stop.store(true, Ordering::Relaxed);
    let distinct_views = reader.await.expect("reader ran");
    assert!(
        distinct_views > 2,
        "the reader saw the room grow ({distinct_views} views)"
    );

    all.sort_unstable();
    assert_eq!(all, (1..=total).collect::<Vec<_>>(), "every seq acked once");
    for node in &nodes {
        let stored = node.after("r", 0, 10_000).await.expect("reads");
        assert_eq!(seqs(&stored), (1..=total).collect::<Vec<_>>());
        assert_eq!(node.bounds("r").await.expect("reads").last_seq, total);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_on_each_node_follow_seq_order_while_another_node_writes() {
    let Some(pg) = Pg::new().await else { return };
    let nodes = [
        pg.node(Retention::default()).await,
        pg.node(Retention::default()).await,
    ];
    // Each node's completions, in the order its writer made them.
    let order: [Arc<Mutex<Vec<u64>>>; 2] = Default::default();
    let mut pending = Vec::new();
    // Queued without waiting: large batches on both nodes, interleaving.
    for i in 0..600 {
        let n = i % 2;
        let order = order[n].clone();
        let (done, committed) = oneshot::channel();
        nodes[n]
            .append(
                message("r", "x", None),
                Box::new(move |r| {
                    let seq = r.expect("committed").message.seq;
                    order.lock().expect("not poisoned").push(seq);
                    let _ = done.send(());
                }),
            )
            .await;
        pending.push(committed);
    }
    for committed in pending {
        tokio::time::timeout(WAIT, committed)
            .await
            .expect("in time")
            .expect("completed");
    }
    let mut all = Vec::new();
    for order in &order {
        let order = order.lock().expect("not poisoned").clone();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "commit order is seq order"
        );
        all.extend(order);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=600).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_racing_on_two_nodes_is_stored_once() {
    let Some(pg) = Pg::new().await else { return };
    let a = Arc::new(pg.node(Retention::default()).await);
    let b = Arc::new(pg.node(Retention::default()).await);
    const TASKS: usize = 4;
    const EACH: usize = 40;
    // Each message goes to both nodes at once, as when a client resends to
    // another node after losing its connection: many small races, some
    // inside larger batches.
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (a, b) = (a.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..EACH {
                let id = format!("t{t}-{i}");
                let again = format!("{id} again");
                let (x, y) = tokio::join!(
                    add(&*a, "r", &id, Some(&id)),
                    add(&*b, "r", &again, Some(&id))
                );
                acks.push((id, x, y));
            }
            acks
        }));
    }
    let mut stored_by = [0, 0];
    for task in tasks {
        for (id, x, y) in task.await.expect("ran") {
            assert_eq!(
                x.message, y.message,
                "{id}: both acks name the one stored message"
            );
            assert!(
                x.duplicate != y.duplicate,
                "{id}: exactly one of them stored it"
            );
            stored_by[usize::from(x.duplicate)] += 1;
        }
    }
    let n = (TASKS * EACH) as u64;
    let stored = a.after("r", 0, 1000).await.expect("reads");
    assert_eq!(
        seqs(&stored),
        (1..=n).collect::<Vec<_>>(),
        "each client_id once"
    );
    println!(
        "stored by node a: {}, by node b: {}",
        stored_by[0], stored_by[1]
    );
}

/// Waits until a backend of this database waits for a lock.
async fn until_someone_waits_for_a_lock(probe: &mut PgConnection) {
    let deadline = Instant::now() + WAIT;
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut *probe)
        .await
        .expect("pg_stat_activity");
        if waiting > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the writer never waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_inside_one_batch_and_a_room_locked_by_another_node() {
    let Some(pg) = Pg::new().await else { return };
    let log = pg.node(Retention::default()).await;
    add(&log, "r", "first", None).await;

    // Another "node" holds the room's row: the writer's next batch waits,
    // and everything queued meanwhile forms the batch after it.
    let mut other = PgConnection::connect(&pg.db.url).await.expect("connects");
    let mut probe = PgConnection::connect(&pg.db.url).await.expect("connects");
    let mut held = other.begin().await.expect("begins");
    sqlx::query("SELECT 1 FROM rooms WHERE name = 'r' FOR UPDATE")
        .execute(&mut *held)
        .await
        .expect("locks the room");
    let blocked = queue(&log, message("r", "c0", Some("c0"))).await;
    until_someone_waits_for_a_lock(&mut probe).await;
    let mut pending = Vec::new();
    for i in 0..300 {
        let id = format!("c{}", i % 100);
        pending.push(queue(&log, message("r", &format!("m{i}"), Some(&id))).await);
    }
    let none_yet = log.bounds("r").await.expect("reads");
    assert_eq!(
        none_yet.last_seq, 1,
        "nothing commits while the room is locked"
    );
    held.commit().await.expect("releases the room");

    let c0 = outcome(blocked).await.expect("committed");
    assert_eq!((c0.message.seq, c0.duplicate), (2, false));
    let mut outcomes: Vec<Appended> = Vec::new();
    for p in pending {
        outcomes.push(outcome(p).await.expect("committed"));
    }
    assert_eq!(
        outcomes[0].message, c0.message,
        "c0 again: stored by the batch before"
    );
    assert!(outcomes[0].duplicate);
    for (i, o) in outcomes.iter().enumerate().skip(1) {
        if i < 100 {
            assert_eq!((o.message.seq, o.duplicate), (i as u64 + 2, false), "m{i}");
            assert_eq!(o.message.text, format!("m{i}"));
        } else {
            assert!(o.duplicate, "m{i} repeats c{}", i % 100);
            assert_eq!(o.message, outcomes[i % 100].message);
        }
    }
    assert_eq!(log.bounds("r").await.expect("reads").last_seq, 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_locked_too_long_fails_its_batch_in_bounded_time_and_the_writer_goes_on() {
    let Some(pg) = Pg::new().await else { return };
    let log = pg.node(Retention::default()).await;
    add(&log, "r", "first", None).await;
    // As a node that stopped answering in the middle of its batch: the
    // room's row stays locked until PostgreSQL gives up on that session.
    let mut stuck = PgConnection::connect(&pg.db.url).await.expect("connects");
    let mut held = stuck.begin().await.expect("begins");
    sqlx::query("SELECT 1 FROM rooms WHERE name = 'r' FOR UPDATE")
        .execute(&mut *held)
        .await
        .expect("locks the room");
    let started = Instant::now();
    let waiting = queue(&log, message("r", "waits", Some("w"))).await;
    let failed = outcome(waiting).await;
    let waited = started.elapsed();
    assert!(matches!(failed, Err(LogError::Postgres(_))), "{failed:?}");
    assert!(waited < Duration::from_secs(12), "failed after {waited:?}");
    // The writer goes on: another room appends, and once the lock is gone
    // so does this one.
    assert_eq!(add(&log, "s", "free", None).await.message.seq, 1);
    held.rollback().await.expect("releases the room");
    let resent = add(&log, "r", "waits", Some("w")).await;
    assert_eq!((resent.message.seq, resent.duplicate), (2, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_lost_while_idle_cost_no_append_and_no_read() {
    let Some(pg) = Pg::new().await else { return };
    let log = pg.node(Retention::default()).await;
    add(&log, "r", "before", None).await;
    log.after("r", 0, 10).await.expect("reads");
    // As when PostgreSQL restarts or a proxy drops idle connections.
    let mut admin = PgConnection::connect(&pg.db.url).await.expect("connects");
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin)
    .await
    .expect("terminates");
    assert!(ended.len() >= 2 && ended.iter().all(|&e| e), "{ended:?}");
    let after = add(&log, "r", "after", None).await;
    assert_eq!(
        after.message.seq, 2,
        "the batch went again on a new connection"
    );
    assert_eq!(seqs(&log.after("r", 0, 10).await.expect("reads")), [1, 2]);
    log.ready().await.expect("ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_epoch_lasts_as_long_as_the_database() {
    let Some(pg) = Pg::new().await else { return };
    let first = pg.node(Retention::default()).await.epoch().to_owned();
    assert_eq!(first.len(), 32);
    assert_eq!(
        pg.node(Retention::default()).await.epoch(),
        first,
        "reopened"
    );
    let Some(other) = Pg::new().await else { return };
    assert_ne!(
        other.node(Retention::default()).await.epoch(),
        first,
        "new database"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_at_once_set_up_the_database_once_beside_the_servers_migrations() {
    let Some(pg) = Pg::new().await else { return };
    let pg = Arc::new(pg);
    let mut starting = Vec::new();
    for _ in 0..4 {
        let pg = pg.clone();
        starting.push(tokio::spawn(async move {
            PgLog::connect(&pg.db.url, Retention::default())
                .await
                .expect("opens")
                .epoch()
                .to_owned()
        }));
    }
    let mut epochs = HashSet::new();
    for node in starting {
        epochs.insert(node.await.expect("started"));
    }
    assert_eq!(epochs.len(), 1, "one epoch for all nodes");

    let mut conn = PgConnection::connect(&pg.db.url).await.expect("connects");
    let applied: Vec<i64> = sqlx::query_scalar(
        "SELECT version FROM _chat_log_migrations WHERE success ORDER BY version",
    )
    .fetch_all(&mut conn)
    .await
    .expect("its own migrations table");
    assert_eq!(applied, [1, 2], "each migration once");

    // The server's migrator (default table, its own version 1) runs beside it.
    let server = sqlx::migrate::Migrator::with_migrations(vec![sqlx::migrate::Migration::new(
        1,
        "accounts".into(),
        sqlx::migrate::MigrationType::Simple,
        sqlx::SqlSafeStr::into_sql_str("CREATE TABLE accounts (name text PRIMARY KEY)"),
        false,
    )]);
    server
        .run(&mut conn)
        .await
        .expect("the server's migrations run");
    let log = PgLog::connect(&pg.db.url, Retention::default())
        .await
        .expect("reopens beside the server's migrations");
    assert!(epochs.contains(log.epoch()));
}

/// The PostgreSQL server the tests use, as a socket address.
fn postgres_addr() -> SocketAddr {
    let server = chat_test_engines::postgres_server();
    let host = server.rsplit('@').next().unwrap_or(&server);
    let host = host.trim_start_matches("postgres://");
    let host = host.split('/').next().unwrap_or(host);
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    host.to_socket_addrs()
        .expect("resolves")
        .next()
        .expect("an address")
}

/// What the appender of the cut test saw.
#[derive(Default)]
struct Seen {
    /// client_id -> the acked seq.
    acked: BTreeMap<String, u64>,
    /// client_ids whose append failed.
    failed: Vec<String>,
    /// Acks after the last failure.
    acked_since_failure: usize,
}

/// Waits until what the appender saw satisfies `done`.
async fn wait_for(
    seen: &Mutex<Seen>,
    progress: &mut tokio::sync::watch::Receiver<()>,
    what: &str,
    done: fn(&Seen) -> bool,
) {
    tokio::time::timeout(WAIT, async {
        while !done(&seen.lock().expect("not poisoned")) {
            progress.changed().await.expect("the appender runs");
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_database_fails_appends_in_bounded_time_and_the_same_log_recovers() {
    let Some(pg) = Pg::new().await else { return };
    let proxy = CutProxy::start(postgres_addr()).await;
    let log = Arc::new(
        PgLog::connect(
            &chat_test_engines::through(&proxy, &pg.db),
            Retention::default(),
        )
        .await
        .expect("opens through the proxy"),
    );
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let (changed, mut progress) = tokio::sync::watch::channel(());

    // Appends without pause, each outcome bounded in time.
    let appender = {
        let (log, seen, stop) = (log.clone(), seen.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("c{i}");
                i += 1;
                let started = Instant::now();
                let result = outcome(queue(&*log, message("r", &id, Some(&id))).await).await;
                assert!(
                    started.elapsed() < Duration::from_secs(25),
                    "an append hung"
                );
                let mut seen = seen.lock().expect("not poisoned");
                match result {
                    Ok(a) => {
                        seen.acked.insert(id, a.message.seq);
                        seen.acked_since_failure += 1;
                    }
                    Err(LogError::Postgres(_)) => {
                        seen.failed.push(id);
                        seen.acked_since_failure = 0;
                    }
                    Err(e) => panic!("unexpected error {e}"),
                }
                drop(seen);
                let _ = changed.send(());
            }
        })
    };
    wait_for(&seen, &mut progress, "acks before the cut", |s| {
        s.acked.len() >= 30
    })
    .await;
    proxy.cut();
    wait_for(&seen, &mut progress, "failures while cut", |s| {
        s.failed.len() >= 3
    })
    .await;
    let probe = tokio::time::timeout(WAIT, log.ready())
        .await
        .expect("ready answers in time");
    assert!(probe.is_err(), "not ready while the database is cut off");
    proxy.restore();
    wait_for(&seen, &mut progress, "acks after the restore", |s| {
        s.acked_since_failure >= 30
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    appender.await.expect("appender ran");
    log.ready().await.expect("ready again");

    // Nothing acked is lost, numbering has no gap, and what failed is safe
    // to resend: a resend is stored once, whether or not the failed
    // attempt had been committed.
    let seen = std::mem::take(&mut *seen.lock().expect("not poisoned"));
    let direct = pg.open(Retention::default()).await;
    let stored = direct.after("r", 0, 100_000).await.expect("reads");
    assert_eq!(seqs(&stored), (1..=stored.len() as u64).collect::<Vec<_>>());
    let stored_ids: BTreeMap<&str, u64> = stored.iter().map(|m| (m.text.as_str(), m.seq)).collect();
    for (id, seq) in &seen.acked {
        assert_eq!(stored_ids.get(id.as_str()), Some(seq), "acked {id} is kept");
    }
    for id in &seen.failed {
        let resent = add(&*log, "r", id, Some(id)).await;
        if let Some(&seq) = stored_ids.get(id.as_str()) {
            assert!(resent.duplicate && resent.message.seq == seq, "{id}");
        } else {
            assert!(!resent.duplicate, "{id}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_postgres_cannot_store_fails_alone() {
    let Some(pg) = Pg::new().await else { return };
    let log = pg.node(Retention::default()).await;
    let bad = queue(&log, message("r\0oom", "x", None)).await;
    let good = queue(&log, message("r", "x", None)).await;
    assert!(matches!(outcome(bad).await, Err(LogError::Postgres(_))));
    assert_eq!(outcome(good).await.expect("committed").message.seq, 1);
}
