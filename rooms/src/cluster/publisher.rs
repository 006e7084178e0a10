//! The publishing half of the Redis bus: a bounded, in-order backlog and the
//! task that drains it with pipelined `SPUBLISH`es.
//!
//! Policy while Redis is away (down, restarting, unreachable): the backlog
//! keeps the newest [`super::ClusterSettings::bus_backlog`] payloads and the
//! task retries, with backoff, until Redis takes them, then publishes them
//! in their order. So the other nodes get what was sent during an outage
//! of this node's connection even when theirs never dropped. When the
//! backlog overflows, the oldest payloads go: a hub that misses an event
//! fills it from the log when the room's next event shows the gap, and a
//! hub whose own connection dropped resyncs every room when it is back. A
//! lost notice is not repaired. A batch that fails part way is published
//! again whole: receivers drop the events they had (their seq says so); a
//! notice may then arrive twice.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use redis::aio::ConnectionManager;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::bus::Health;
use super::link::Backoff;

/// Payloads published in one pipeline at most.
const BATCH: usize = 512;

/// One payload for one channel.
pub(crate) struct Outgoing {
    pub(crate) channel: String,
    pub(crate) payload: Vec<u8>,
}

/// Payloads waiting to be published, oldest first, at most `capacity`.
pub(crate) struct Backlog {
    /// std Mutex: pushes and pops only; pushed to from the log's writer.
    queue: Mutex<VecDeque<Outgoing>>,
    /// Payloads taken by the publisher and not yet published (or put back).
    in_flight: AtomicUsize,
    capacity: usize,
    ready: Notify,
    health: Arc<Health>,
}

impl Backlog {
    pub(crate) fn new(capacity: usize, health: Arc<Health>) -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            in_flight: AtomicUsize::new(0),
            capacity: capacity.max(1),
            ready: Notify::new(),
            health,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Outgoing>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a payload; never blocks. A full backlog drops its oldest.
    pub(crate) fn push(&self, outgoing: Outgoing) {
        {
            let mut queue = self.lock();
            queue.push_back(outgoing);
            self.trim(&mut queue);
        }
        self.ready.notify_one();
    }

    /// Puts back a batch that could not be published, ahead of what came
    /// since, dropping the oldest if that overflows.
    fn put_back(&self, batch: Vec<Outgoing>) {
        let mut queue = self.lock();
        self.in_flight.store(0, Ordering::Relaxed);
        for outgoing in batch.into_iter().rev() {
            queue.push_front(outgoing);
        }
        self.trim(&mut queue);
    }

    fn trim(&self, queue: &mut VecDeque<Outgoing>) {
        while queue.len() > self.capacity {
            queue.pop_front();
            let dropped = self.health.dropped.inc();
            if dropped.is_multiple_of(1000) {
                tracing::warn!(
                    dropped = dropped + 1,
                    "bus backlog full: dropping the oldest payloads"
                );
            }
        }
    }

    fn take(&self, at_most: usize) -> Vec<Outgoing> {
        let mut queue = self.lock();
        let n = queue.len().min(at_most);
        self.in_flight.store(n, Ordering::Relaxed);
        queue.drain(..n).collect()
    }

    /// Payloads waiting.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether everything queued so far has been published.
    pub(crate) fn is_drained(&self) -> bool {
        let queue = self.lock();
        queue.is_empty() && self.in_flight.load(Ordering::Relaxed) == 0
    }
}

/// Publishes the backlog in order until `stop`; what is left then is
/// dropped with the process.
pub(crate) async fn run(
    mut conn: ConnectionManager,
    backlog: Arc<Backlog>,
    health: Arc<Health>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new();
    loop {
        let batch = backlog.take(BATCH);
        if batch.is_empty() {
            tokio::select! {
                () = stop.cancelled() => return,
                () = backlog.ready.notified() => continue,
            }
        }
        let mut pipe = redis::pipe();
        for outgoing in &batch {
            pipe.cmd("SPUBLISH")
                .arg(&outgoing.channel)
                .arg(&outgoing.payload)
                .ignore();
        }
        let sent = tokio::select! {
            () = stop.cancelled() => return,
            sent = pipe.query_async::<()>(&mut conn) => sent,
        };
        match sent {
            Ok(()) => {
                backlog.in_flight.store(0, Ordering::Relaxed);
                health.published.inc_by(batch.len() as u64);
                if !health.publishing.swap(true, Ordering::Relaxed) {
                    tracing::info!("bus publishing again");
                }
                backoff.reset();
            }
            Err(e) => {
                backlog.put_back(batch);
                health.publish_failures.inc();
                if health.publishing.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "bus cannot publish; keeping a backlog");
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff.delay()) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing(n: u8) -> Outgoing {
        Outgoing {
            channel: "c".into(),
            payload: vec![n],
        }
    }

    #[test]
    fn a_full_backlog_drops_its_oldest_and_keeps_order() {
        let health = Arc::new(Health::default());
        let backlog = Backlog::new(3, health.clone());
        for n in 1..=4 {
            backlog.push(outgoing(n));
        }
        let batch = backlog.take(2);
        assert_eq!(
            batch.iter().map(|o| o.payload[0]).collect::<Vec<_>>(),
            [2, 3]
        );
        backlog.push(outgoing(5));
        backlog.push(outgoing(6));
        // The failed batch goes back in front; two too many: 2 and 3 go.
        backlog.put_back(batch);
        let rest = backlog.take(10);
        assert_eq!(
            rest.iter().map(|o| o.payload[0]).collect::<Vec<_>>(),
            [4, 5, 6]
        );
        assert_eq!(health.dropped.get(), 3);
    }
}
