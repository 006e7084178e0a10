//! Appends per second with group commit, on this machine. Ignored by
//! default; run with
//! `cargo test -p chat-rooms --test room_log throughput -- --ignored --nocapture`.
//! `CHAT_LOG_BENCH_MESSAGES` sets the messages per appender (default 2000).

use std::sync::Arc;
use std::time::Instant;

use chat_rooms::{Retention, RoomLog};

use crate::{message, outcome, queue, Pg, Sqlite, Store};

const APPENDERS: usize = 8;

/// How an appender sends.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Waits for each ack before the next message, as one client does.
    WaitsForEachAck,
    /// Queues all its messages, then waits for the acks.
    Pipelined,
}

/// Appends/s for `APPENDERS` appenders of `each` messages over `rooms` rooms.
async fn rate(log: Arc<dyn RoomLog>, rooms: usize, mode: Mode, each: usize) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for a in 0..APPENDERS {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut pending = Vec::new();
            for i in 0..each {
                let room = format!("room{}", (a + i * APPENDERS) % rooms);
                let id = format!("{a}-{i}");
                let p = queue(
                    &*log,
                    message(&room, "a message of ordinary length", Some(&id)),
                )
                .await;
                match mode {
                    Mode::WaitsForEachAck => {
                        outcome(p).await.expect("committed");
                    }
                    Mode::Pipelined => pending.push(p),
                }
            }
            for p in pending {
                outcome(p).await.expect("committed");
            }
        }));
    }
    for task in tasks {
        task.await.expect("appender ran");
    }
    (APPENDERS * each) as f64 / started.elapsed().as_secs_f64()
}

async fn report(name: &str, store: &impl Store, each: usize) {
    for rooms in [1, 64] {
        for mode in [Mode::WaitsForEachAck, Mode::Pipelined] {
            let log = store.open(Retention::default()).await;
            let per_second = rate(log, rooms, mode, each).await;
            println!(
                "{name}: {APPENDERS} appenders x {each}, {rooms} room(s), {mode:?}: {per_second:.0} appends/s"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn throughput() {
    let each = std::env::var("CHAT_LOG_BENCH_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    report("sqlite (memory)", &Sqlite, each).await;
    if let Some(pg) = Pg::new().await {
        report("postgres", &pg, each).await;
    }
}
