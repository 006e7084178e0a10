//! Cluster test support: nodes over one shared room log and one Redis, and
//! members that read what their connection would be sent.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chat_protocol::{ChatMessage, ServerEvent};
use chat_rooms::cluster::{self, Cluster, ClusterSettings};
use chat_rooms::room_log::{Appended, NewMessage};
use chat_rooms::Storage;
use chat_rooms::{Closer, Durability, Inbox, Node, Outbox, Peer, Retention, RoomLog, SqliteLog};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// How long any one expected frame may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// One log for every node: the stand-in for a shared database (its one
/// writer numbers every node's appends, as the database's transactions do).
pub fn shared_log() -> Arc<SqliteLog> {
    Arc::new(
        SqliteLog::open(
            Path::new("."),
            Storage::Memory,
            Durability::Normal,
            Retention::default(),
        )
        .expect("log opens"),
    )
}

/// A node named `id` over `log` and the Redis at `url`, keys under `prefix`.
pub async fn node(
    log: &Arc<SqliteLog>,
    url: &str,
    prefix: &str,
    id: &str,
    ttl: Duration,
) -> Cluster {
    let log: Arc<dyn RoomLog> = log.clone();
    let mut settings = ClusterSettings::new(log, url, prefix, id);
    settings.presence_ttl = ttl;
    settings.send_queue = 4096;
    settings.history_on_join = 10;
    cluster::connect(settings)
        .await
        .expect("cluster node connects")
}

/// Waits until `ready` holds, checking every few milliseconds.
pub async fn until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !ready() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One connection as the rooms see it, and what it is sent.
pub struct Member {
    pub peer: Peer,
    rx: Inbox,
}

impl Member {
    pub fn new(node: &Node, user: &str) -> Self {
        let (outbox, rx) = Outbox::new(100_000, usize::MAX, Closer::new(&CancellationToken::new()));
        let peer = Peer {
            id: node.hub().next_conn_id(),
            user: user.into(),
            outbox,
        };
        Self { peer, rx }
    }

    /// Joins `room` on `node` and returns its `joined`.
    pub async fn join(&mut self, node: &Node, room: &str) -> Joined {
        node.join(&self.peer, room, None, None, None)
            .await
            .expect("join");
        loop {
            if let ServerEvent::Joined {
                members, last_seq, ..
            } = self.next().await
            {
                return Joined { members, last_seq };
            }
        }
    }

    /// The next frame, whatever it is.
    pub async fn next(&mut self) -> ServerEvent {
        let frame = tokio::time::timeout(WAIT, self.rx.recv_async())
            .await
            .unwrap_or_else(|_| panic!("{}: no frame in time", self.peer.user))
            .expect("queue open");
        serde_json::from_str(&frame).expect("a server event")
    }

    /// The next `n` messages (skipping acks and notices), in arrival order.
    pub async fn messages(&mut self, n: usize) -> Vec<ChatMessage> {
        let mut messages = Vec::new();
        while messages.len() < n {
            if let ServerEvent::NewMessage(m) = self.next().await {
                messages.push(m);
            }
        }
        messages
    }

    /// The next notice (member_joined or member_left), skipping messages
    /// and acks: `("joined" | "left", user)`.
    pub async fn notice(&mut self) -> (&'static str, String) {
        loop {
            match self.next().await {
                ServerEvent::MemberJoined { user, .. } => return ("joined", user),
                ServerEvent::MemberLeft { user, .. } => return ("left", user),
                _ => {}
            }
        }
    }

    /// The next `n` notices, sorted (their order across nodes is not fixed).
    pub async fn notices(&mut self, n: usize) -> Vec<(&'static str, String)> {
        let mut notices = Vec::new();
        for _ in 0..n {
            notices.push(self.notice().await);
        }
        notices.sort();
        notices
    }

    /// Everything queued right now, without waiting.
    pub fn queued(&mut self) -> Vec<ServerEvent> {
        let mut events = Vec::new();
        while let Ok(frame) = self.rx.try_recv() {
            events.push(serde_json::from_str(&frame).expect("a server event"));
        }
        events
    }
}

/// What a `joined` said.
#[derive(Debug)]
pub struct Joined {
    pub members: Vec<String>,
    pub last_seq: u64,
}

/// Sends `text` as `member` on `node` and waits for its ack's seq.
pub async fn send(node: &Node, member: &Member, room: &str, text: &str) -> u64 {
    let (outbox, rx) = Outbox::new(16, usize::MAX, Closer::new(&CancellationToken::new()));
    // The ack comes to a side queue, so that the member's own stays as it
    // would be read.
    let acker = Peer {
        id: member.peer.id,
        user: member.peer.user.clone(),
        outbox,
    };
    node.send(&acker, room, text.to_owned(), None, None).await;
    let frame = tokio::time::timeout(WAIT, rx.recv_async())
        .await
        .expect("ack in time")
        .expect("queue open");
    match serde_json::from_str(&frame).expect("a server event") {
        ServerEvent::Ack { seq, .. } => seq,
        other => panic!("not an ack: {other:?}"),
    }
}

/// Stores a message without publishing it (as if every bus lost it).
pub async fn store(log: &SqliteLog, room: &str, text: &str) -> ChatMessage {
    let (done, committed) = oneshot::channel::<Appended>();
    let message = NewMessage {
        room: room.into(),
        sender: "ghost".into(),
        client_id: None,
        text: text.into(),
    };
    log.append(
        message,
        Box::new(move |r| {
            let _ = done.send(r.expect("committed"));
        }),
    )
    .await;
    committed.await.expect("completed").message
}

/// Asserts `messages` are exactly the seqs `from..=to`, in order.
pub fn contiguous(who: &str, messages: &[ChatMessage], from: u64, to: u64) {
    let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
    let want: Vec<u64> = (from..=to).collect();
    assert_eq!(seqs, want, "{who}: every seq once, in order");
}

/// Ends a test on the shared Redis: stops `nodes`, then deletes every key
/// under `prefix` (a node that just stops leaves its presence behind, as a
/// dead node would). Not reached when the test fails, which keeps the keys
/// to look at.
pub async fn forget(url: &str, prefix: &str, nodes: Vec<Cluster>) {
    for node in &nodes {
        node.stop();
    }
    drop(nodes);
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("SCAN");
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(&keys)
                .query_async::<()>(&mut conn)
                .await
                .expect("DEL");
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}
