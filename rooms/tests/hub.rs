//! The hub against a real SQLite room log: what it does with events the bus
//! doubles, loses or reorders, and how a catch-up hands over to live delivery.
#![allow(missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chat_protocol::{ChatMessage, ServerEvent};
use chat_rooms::bus::RoomEvent;
use chat_rooms::hub::{Begin, Finish, HubOptions};
use chat_rooms::interest::Interest;
use chat_rooms::room_log::{Appended, NewMessage};
use chat_rooms::{Closer, Hub, Inbox, Outbox, Peer, Retention, RoomLog, SqliteLog};
use chat_rooms::{Durability, Storage};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

fn log() -> Arc<SqliteLog> {
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

/// Stores `n` messages in `room` without telling any hub (as if the bus lost
/// every one of them), returning them in order.
async fn store(log: &SqliteLog, room: &str, n: usize) -> Vec<ChatMessage> {
    let mut stored = Vec::new();
    for i in 0..n {
        let (done, committed) = oneshot::channel::<Appended>();
        let message = NewMessage {
            room: room.into(),
            sender: "alice".into(),
            client_id: None,
            text: format!("m{i}"),
        };
        log.append(
            message,
            Box::new(move |r| {
                let _ = done.send(r.expect("committed"));
            }),
        )
        .await;
        stored.push(committed.await.expect("completed").message);
    }
    stored
}

struct Member {
    peer: Peer,
    rx: Inbox,
}

fn member(hub: &Hub, queue: usize) -> Member {
    let (outbox, rx) = Outbox::new(queue, usize::MAX, Closer::new(&CancellationToken::new()));
    let peer = Peer {
        id: hub.next_conn_id(),
        user: "bob".into(),
        outbox,
    };
    Member { peer, rx }
}

impl Member {
    /// The seqs of the next `n` new_message frames, waiting for each.
    async fn seqs(&mut self, n: usize) -> Vec<u64> {
        let mut seqs = Vec::new();
        while seqs.len() < n {
            let frame = tokio::time::timeout(WAIT, self.rx.recv_async())
                .await
                .expect("a frame in time")
                .expect("queue open");
            if let Ok(ServerEvent::NewMessage(m)) = serde_json::from_str(&frame) {
                seqs.push(m.seq);
            }
        }
        seqs
    }

    fn nothing_queued(&mut self) -> bool {
        self.rx.try_recv().is_err()
    }
}

/// Makes `m` a live member of `room` that has everything up to `last`.
fn admit(hub: &Hub, m: &Member, room: &str, last: u64) {
    assert_eq!(hub.begin(room, &m.peer, last), Begin::Began);
    assert_eq!(
        hub.finish(room, m.peer.id, last, false, None),
        Finish::Done { last_seq: last }
    );
}

#[tokio::test]
async fn an_event_delivered_twice_is_dropped() {
    let log = log();
    let stored = store(&log, "r", 3).await;
    let hub = Hub::new(log.clone(), 64);
    let mut bob = member(&hub, 64);
    admit(&hub, &bob, "r", 0);
    for message in [&stored[0], &stored[1], &stored[0], &stored[1], &stored[2]] {
        hub.publish(RoomEvent::message(message.clone()));
    }
    hub.publish(RoomEvent::message(stored[2].clone()));
    assert_eq!(bob.seqs(3).await, [1, 2, 3]);
    assert!(bob.nothing_queued(), "no second copy");
    let dropped = hub.metrics().duplicates_dropped.get();
    assert_eq!(dropped, 3);
}

#[tokio::test]
async fn a_gap_on_the_bus_is_filled_from_the_log() {
    let log = log();
    let stored = store(&log, "r", 6).await;
    let hub = Hub::new(log.clone(), 64);
    let mut bob = member(&hub, 64);
    admit(&hub, &bob, "r", 0);
    // The bus brings 1, loses 2 to 4, brings 6 before 5.
    hub.publish(RoomEvent::message(stored[0].clone()));
    hub.publish(RoomEvent::message(stored[5].clone()));
    hub.publish(RoomEvent::message(stored[4].clone()));
    assert_eq!(bob.seqs(6).await, [1, 2, 3, 4, 5, 6], "in order, none lost");
    let filled = hub.metrics().gaps_filled.get();
    assert!(
        (3..=4).contains(&filled),
        "2 to 4 came from the log ({filled})"
    );
    // Late copies of the lost ones change nothing.
    hub.publish(RoomEvent::message(stored[2].clone()));
    assert!(bob.nothing_queued());
}

#[tokio::test]
async fn a_catch_up_takes_over_the_live_events_held_for_it() {
    let log = log();
    let stored = store(&log, "r", 5).await;
    let hub = Hub::new(log.clone(), 64);
    let mut alice = member(&hub, 64);
    admit(&hub, &alice, "r", 0);
    let mut carol = member(&hub, 64);
    assert_eq!(hub.begin("r", &carol.peer, 0), Begin::Began);
    assert_eq!(hub.begin("r", &carol.peer, 0), Begin::CatchingUp);
    for message in &stored {
        hub.publish(RoomEvent::message(message.clone()));
    }
    assert_eq!(alice.seqs(5).await, [1, 2, 3, 4, 5]);
    assert!(carol.nothing_queued(), "held while catching up");
    assert!(!hub.is_member("r", carol.peer.id));
    // Carol read 1 and 2 from the log herself; the hub hands over 3 to 5.
    let done = hub.finish("r", carol.peer.id, 2, false, None);
    assert_eq!(done, Finish::Done { last_seq: 5 });
    assert_eq!(carol.seqs(3).await, [3, 4, 5]);
    assert!(hub.is_member("r", carol.peer.id));
    assert_eq!(hub.begin("r", &carol.peer, 0), Begin::Member);
}

#[tokio::test]
async fn a_catch_up_that_the_held_events_do_not_reach_reads_on() {
    let log = log();
    let stored = store(&log, "r", 4).await;
    let hub = Hub::new(log.clone(), 2);
    let alice = member(&hub, 64);
    admit(&hub, &alice, "r", 0);
    hub.publish(RoomEvent::message(stored[0].clone()));
    // Carol begins after 1 was delivered to the room: the hub never held it.
    let mut carol = member(&hub, 64);
    assert_eq!(hub.begin("r", &carol.peer, 1), Begin::Began);
    assert_eq!(
        hub.finish("r", carol.peer.id, 0, false, None),
        Finish::NotYet
    );
    // More than it may hold for her: it gives up holding, she reads the log.
    for message in &stored[1..] {
        hub.publish(RoomEvent::message(message.clone()));
    }
    assert_eq!(
        hub.finish("r", carol.peer.id, 1, false, None),
        Finish::NotYet
    );
    assert_eq!(
        hub.finish("r", carol.peer.id, 4, false, None),
        Finish::Done { last_seq: 4 }
    );
    assert!(carol.nothing_queued());
    hub.remove("r", carol.peer.id);
    assert_eq!(hub.finish("r", carol.peer.id, 4, false, None), Finish::Gone);
}

/// The room's events held by the hub for nobody: what a resync must bring.
#[tokio::test]
async fn a_resync_delivers_what_the_bus_never_brought() {
    let log = log();
    let hub = Hub::new(log.clone(), 64);
    let mut bob = member(&hub, 64);
    admit(&hub, &bob, "r", 0);
    // Published while this node was not subscribed: lost on the bus.
    let stored = store(&log, "r", 3).await;
    hub.resync("r");
    assert_eq!(bob.seqs(3).await, [1, 2, 3]);
    // Late bus copies are duplicates now; the next live one goes through.
    for message in &stored {
        hub.publish(RoomEvent::message(message.clone()));
    }
    let next = store(&log, "r", 1).await;
    hub.publish(RoomEvent::message(next[0].clone()));
    assert_eq!(bob.seqs(1).await, [4]);
    assert!(bob.nothing_queued());
    hub.resync("no such room");
}

#[tokio::test]
async fn a_resync_asked_for_during_a_gap_fill_still_happens() {
    let log = log();
    let stored = store(&log, "r", 3).await;
    // A grace long enough that the reader is surely still busy with the gap
    // when the resync is asked for.
    let hub = Hub::with_options(
        log.clone(),
        HubOptions {
            hold_at_most: 64,
            gap_grace: Duration::from_millis(300),
            interest: None,
            ..HubOptions::default()
        },
    );
    let mut bob = member(&hub, 64);
    admit(&hub, &bob, "r", 0);
    // 3 opens a gap (1, 2): a reader starts and waits the grace.
    hub.publish(RoomEvent::message(stored[2].clone()));
    store(&log, "r", 2).await;
    hub.resync("r");
    assert_eq!(bob.seqs(5).await, [1, 2, 3, 4, 5]);
    assert!(bob.nothing_queued());
}

#[tokio::test]
async fn within_the_gap_grace_a_late_event_needs_no_read() {
    let log = log();
    let stored = store(&log, "r", 3).await;
    let hub = Hub::with_options(
        log.clone(),
        HubOptions {
            hold_at_most: 64,
            gap_grace: Duration::from_secs(2),
            interest: None,
            ..HubOptions::default()
        },
    );
    let mut bob = member(&hub, 64);
    admit(&hub, &bob, "r", 0);
    hub.publish(RoomEvent::message(stored[0].clone()));
    hub.publish(RoomEvent::message(stored[2].clone()));
    // The reordering itself: 2 arrives well after 3, yet within the grace.
    tokio::time::sleep(Duration::from_millis(200)).await;
    hub.publish(RoomEvent::message(stored[1].clone()));
    assert_eq!(bob.seqs(3).await, [1, 2, 3]);
    let filled = hub.metrics().gaps_filled.get();
    assert_eq!(filled, 0, "2 came in time");
}

#[tokio::test]
async fn after_the_gap_grace_the_gap_is_read() {
    let log = log();
    let stored = store(&log, "r", 3).await;
    let hub = Hub::with_options(
        log.clone(),
        HubOptions {
            hold_at_most: 64,
            gap_grace: Duration::from_millis(50),
            interest: None,
            ..HubOptions::default()
        },
    );
    let mut bob = member(&hub, 64);
    admit(&hub, &bob, "r", 0);
    hub.publish(RoomEvent::message(stored[2].clone()));
    assert_eq!(bob.seqs(3).await, [1, 2, 3]);
    let filled = hub.metrics().gaps_filled.get();
    assert_eq!(filled, 2);
}

#[tokio::test]
async fn the_hub_marks_a_room_when_its_first_member_comes_and_its_last_goes() {
    let log = log();
    let interest = Interest::new();
    let hub = Hub::with_options(
        log.clone(),
        HubOptions {
            hold_at_most: 64,
            gap_grace: Duration::ZERO,
            interest: Some(interest.clone()),
            ..HubOptions::default()
        },
    );
    let bob = member(&hub, 64);
    let carol = member(&hub, 64);
    admit(&hub, &bob, "r", 0);
    let marked = tokio::time::timeout(WAIT, interest.changed())
        .await
        .expect("marked");
    assert!(marked.contains("r") && hub.has_room("r"));
    admit(&hub, &carol, "r", 0);
    assert!(
        interest.take().is_empty(),
        "a second member changes nothing"
    );
    hub.remove("r", bob.peer.id);
    assert!(interest.take().is_empty());
    hub.remove("r", carol.peer.id);
    assert!(interest.take().contains("r"));
    assert!(!hub.has_room("r") && hub.rooms().is_empty());
}
