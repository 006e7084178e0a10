//! What every [`RoomLog`] guarantees, written once; `sqlite` and `postgres`
//! run each of these against their log with [`behaviour_tests!`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_rooms::room_log::{unix_millis, Bounds};
use chat_rooms::Retention;
use tokio::sync::mpsc;

use crate::{add, message, outcome, queue, seqs, Store};

/// Writes a `#[tokio::test]` for each named test of this module, opening
/// the log with `$store` (an `Option<impl Store>`; `None` skips).
#[macro_export]
macro_rules! behaviour_tests {
    ($store:expr => $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(store) = $store else { return };
                $crate::behaviour::$name(&store).await;
            }
        )*
    };
}

pub async fn sequence_numbers_are_per_room_and_gapless(store: &impl Store) {
    let log = store.open(Retention::default()).await;
    let mut given = Vec::new();
    for room in ["a", "b", "a", "a", "b"] {
        given.push(add(&*log, room, "x", None).await.message.seq);
    }
    assert_eq!(given, [1, 1, 2, 3, 2]);
    assert_eq!(log.bounds("a").await.expect("q").last_seq, 3);
    assert_eq!(log.bounds("never").await.expect("q"), Bounds::default());
}

pub async fn a_batch_queued_at_once_commits_in_queue_order(store: &impl Store) {
    let log = store.open(Retention::default()).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Queued without waiting for each commit, so the writer batches them.
    for i in 0..500 {
        let tx = tx.clone();
        log.append(
            message("r", &format!("m{i}"), Some(&format!("c{}", i % 400))),
            Box::new(move |r| {
                let _ = tx.send(r.expect("committed"));
            }),
        )
        .await;
    }
    drop(tx);
    let mut completed = Vec::new();
    while let Some(appended) = tokio::time::timeout(crate::WAIT, rx.recv())
        .await
        .expect("completions in time")
    {
        completed.push(appended);
    }
    let fresh: Vec<u64> = completed
        .iter()
        .filter(|a| !a.duplicate)
        .map(|a| a.message.seq)
        .collect();
    assert_eq!(
        fresh,
        (1..=400).collect::<Vec<_>>(),
        "completed in seq order"
    );
    assert!(
        completed[400..].iter().all(|a| a.duplicate),
        "a client_id reused within a batch is caught in the same transaction"
    );
    assert_eq!(completed[450].message, completed[50].message);
    assert_eq!(completed[450].message.seq, 51);
}

pub async fn a_reused_client_id_returns_the_first_message(store: &impl Store) {
    let log = store.open(Retention::default()).await;
    let first = add(&*log, "r", "hello", Some("c1")).await;
    let again = add(&*log, "r", "changed", Some("c1")).await;
    assert!(!first.duplicate && again.duplicate);
    assert_eq!(
        first.message, again.message,
        "the stored one, text included"
    );
    assert_eq!(log.bounds("r").await.expect("q").last_seq, 1);
    assert!(
        !add(&*log, "other", "hello", Some("c1")).await.duplicate,
        "per room"
    );
    let mut bob = message("r", "hello", Some("c1"));
    bob.sender = "bob".into();
    let bobs = outcome(queue(&*log, bob).await).await.expect("committed");
    assert!(!bobs.duplicate, "per sender");
    assert_eq!(bobs.message.seq, 2);
}

pub async fn pages_in_both_directions_and_reads_recent_with_its_bound(store: &impl Store) {
    let log = store.open(Retention::default()).await;
    for i in 1..=10 {
        add(&*log, "r", &format!("m{i}"), None).await;
    }
    assert_eq!(
        seqs(&log.before("r", None, 3).await.expect("q")),
        [8, 9, 10]
    );
    assert_eq!(
        seqs(&log.before("r", Some(8), 3).await.expect("q")),
        [5, 6, 7]
    );
    assert_eq!(
        seqs(&log.before("r", Some(1), 3).await.expect("q")),
        [0u64; 0]
    );
    assert_eq!(seqs(&log.after("r", 7, 100).await.expect("q")), [8, 9, 10]);
    assert_eq!(seqs(&log.after("r", 0, 2).await.expect("q")), [1, 2]);
    assert!(log.after("r", u64::MAX, 100).await.expect("q").is_empty());
    let recent = log.recent("r", 2).await.expect("q");
    assert_eq!((seqs(&recent.messages), recent.last_seq), (vec![9, 10], 10));
    let page = log.after("r", 4, 1).await.expect("q");
    assert_eq!(page[0].text, "m5");
    assert_eq!(page[0].room, "r");
    assert_eq!(page[0].from, "alice");
    let never = log.recent("never", 5).await.expect("q");
    assert!(never.messages.is_empty() && never.last_seq == 0);
    assert!(log.after("never", 0, 5).await.expect("q").is_empty());
}

pub async fn what_is_read_equals_what_was_acked(store: &impl Store) {
    let log = store.open(Retention::default()).await;
    // U+0000 as well: a message is kept exactly as sent.
    let texts = ["plain", "line\nbreak", "nul \0 inside", "ünïcödé 🦀", " "];
    let mut acked = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let client_id = format!("k{i}");
        acked.push(add(&*log, "r", text, Some(&client_id)).await.message);
    }
    assert_eq!(log.after("r", 0, 100).await.expect("q"), acked);
    assert_eq!(log.before("r", None, 100).await.expect("q"), acked);
    assert_eq!(log.recent("r", 100).await.expect("q").messages, acked);
    let again = add(&*log, "r", "other", Some("k2")).await;
    assert!(again.duplicate);
    assert_eq!(again.message, acked[2]);
    let ids: std::collections::HashSet<_> = acked.iter().map(|m| &m.id).collect();
    assert_eq!(ids.len(), acked.len(), "ids are unique");
    for m in &acked {
        humantime::parse_rfc3339(&m.sent_at).expect("sent_at is RFC 3339");
        assert!(
            m.sent_at.ends_with('Z') && m.sent_at.len() == 24,
            "{}",
            m.sent_at
        );
    }
}

pub async fn concurrent_appenders_get_contiguous_seqs_in_commit_order(store: &impl Store) {
    let log = store.open(Retention::default()).await;
    // (room, seq) in the order the log completed them.
    let completions = Arc::new(Mutex::new(Vec::new()));
    let mut appenders = Vec::new();
    for task in 0..8 {
        let log = log.clone();
        let completions = completions.clone();
        appenders.push(tokio::spawn(async move {
            let mut unawaited = Vec::new();
            for i in 0..50 {
                let room = ["r", "s"][(task + i) % 2];
                let completions = completions.clone();
                let (done, committed) = tokio::sync::oneshot::channel();
                log.append(
                    message(room, &format!("{task}/{i}"), None),
                    Box::new(move |r| {
                        let appended = r.expect("committed");
                        completions
                            .lock()
                            .expect("not poisoned")
                            .push((appended.message.room.clone(), appended.message.seq));
                        let _ = done.send(());
                    }),
                )
                .await;
                // Every other append waits for its commit: some batches are
                // large, some small.
                if i % 2 == 0 {
                    wait(committed).await;
                } else {
                    unawaited.push(committed);
                }
            }
            for committed in unawaited {
                wait(committed).await;
            }
        }));
    }
    for appender in appenders {
        appender.await.expect("appender ran");
    }
    let completions = completions.lock().expect("not poisoned").clone();
    let mut by_room: HashMap<String, Vec<u64>> = HashMap::new();
    for (room, seq) in completions {
        by_room.entry(room).or_default().push(seq);
    }
    assert_eq!(by_room.len(), 2);
    for (room, completed) in by_room {
        assert_eq!(
            completed,
            (1..=200).collect::<Vec<_>>(),
            "room {room}: each seq once, completed in seq order"
        );
        let stored = log.after(&room, 0, 1000).await.expect("q");
        assert_eq!(seqs(&stored), (1..=200).collect::<Vec<_>>());
    }
}

async fn wait(committed: tokio::sync::oneshot::Receiver<()>) {
    tokio::time::timeout(crate::WAIT, committed)
        .await
        .expect("in time")
        .expect("completed");
}

pub async fn retention_by_count_keeps_the_newest_and_never_reuses_numbers(store: &impl Store) {
    let log = store
        .open(Retention {
            max_messages: Some(3),
            max_age: None,
        })
        .await;
    for i in 1..=7 {
        add(&*log, "r", &format!("m{i}"), None).await;
    }
    assert_eq!(log.bounds("r").await.expect("q").first_seq, Some(5));
    assert_eq!(add(&*log, "r", "m8", None).await.message.seq, 8);
    assert_eq!(seqs(&log.after("r", 0, 100).await.expect("q")), [6, 7, 8]);
    assert_eq!(
        log.bounds("r").await.expect("q"),
        Bounds {
            first_seq: Some(6),
            last_seq: 8
        }
    );
}

pub async fn retention_by_count_holds_within_one_batch(store: &impl Store) {
    let log = store
        .open(Retention {
            max_messages: Some(3),
            max_age: None,
        })
        .await;
    let mut pending = Vec::new();
    for i in 1..=40 {
        pending.push(queue(&*log, message(["r", "s"][i % 2], "x", None)).await);
    }
    for p in pending {
        outcome(p).await.expect("committed");
    }
    for room in ["r", "s"] {
        assert_eq!(
            seqs(&log.after(room, 0, 100).await.expect("q")),
            [18, 19, 20]
        );
        let recent = log.recent(room, 10).await.expect("q");
        assert_eq!(
            (seqs(&recent.messages), recent.last_seq),
            (vec![18, 19, 20], 20)
        );
    }
}

pub async fn retention_by_age_forgets_old_messages(store: &impl Store) {
    let log = store
        .open(Retention {
            max_messages: None,
            max_age: Some(Duration::from_secs(60)),
        })
        .await;
    let sent = add(&*log, "r", "old", None).await;
    add(&*log, "r", "new", None).await;
    let sent_ms = unix_millis(humantime::parse_rfc3339(&sent.message.sent_at).expect("time"));
    // Both were stamped within the same second: a second later both stay,
    // two minutes later both go.
    assert_eq!(log.prune_by_age(sent_ms + 1_000).await.expect("prunes"), 0);
    assert_eq!(
        log.prune_by_age(sent_ms + 120_000).await.expect("prunes"),
        2
    );
    assert_eq!(
        log.bounds("r").await.expect("q"),
        Bounds {
            first_seq: None,
            last_seq: 2
        }
    );
    let recent = log.recent("r", 10).await.expect("q");
    assert!(recent.messages.is_empty());
    assert_eq!(recent.last_seq, 2, "the room remains");
    assert_eq!(log.rooms(None, 10).await.expect("q")[0].last_seq, 2);
    assert_eq!(add(&*log, "r", "next", None).await.message.seq, 3);
}

/// Issue 15, finding 9: a `client_id` resent after retention dropped its
/// message was stored twice. Now it is acked as the original (same seq and
/// id, nothing stored, nothing to publish) for a day after the forget, by
/// count or by age; after that day it is new again.
pub async fn a_client_id_is_remembered_for_a_day_after_its_message_is_forgotten(
    store: &impl Store,
) {
    let log = store
        .open(Retention {
            max_messages: Some(2),
            max_age: Some(Duration::from_secs(3600)),
        })
        .await;
    let first = add(&*log, "r", "hello", Some("c-1")).await;
    add(&*log, "r", "two", None).await;
    add(&*log, "r", "three", None).await;
    assert_eq!(
        log.bounds("r").await.expect("q").first_seq,
        Some(2),
        "c-1's message is gone"
    );

    let resent = add(&*log, "r", "hello", Some("c-1")).await;
    assert!(resent.duplicate && resent.forgotten, "{resent:?}");
    assert_eq!(
        (&resent.message.seq, &resent.message.id),
        (&first.message.seq, &first.message.id)
    );
    assert_eq!(
        log.bounds("r").await.expect("q").last_seq,
        3,
        "nothing stored"
    );

    // Forgotten by age too: a message with a client_id, two hours on.
    let aged = add(&*log, "r", "aged", Some("c-2")).await;
    let sent_ms = unix_millis(humantime::parse_rfc3339(&aged.message.sent_at).expect("time"));
    assert!(
        log.prune_by_age(sent_ms + 2 * 3_600_000)
            .await
            .expect("prunes")
            >= 1
    );
    let again = add(&*log, "r", "aged", Some("c-2")).await;
    assert!(again.duplicate && again.forgotten);
    assert_eq!(again.message.seq, aged.message.seq);

    // A day after the forget, the client_ids are forgotten in turn.
    let day_later = sent_ms + 2 * 3_600_000 + 24 * 3_600_000 + 60_000;
    log.prune_by_age(day_later).await.expect("prunes");
    let new = add(&*log, "r", "aged", Some("c-2")).await;
    assert!(!new.duplicate, "{new:?}");
    assert_eq!(new.message.seq, aged.message.seq + 1);
}

pub async fn without_an_age_limit_nothing_is_pruned(store: &impl Store) {
    let log = store.open(Retention::default()).await;
    add(&*log, "r", "kept", None).await;
    assert_eq!(log.prune_by_age(i64::MAX).await.expect("prunes"), 0);
    assert_eq!(log.bounds("r").await.expect("q").first_seq, Some(1));
}

pub async fn rooms_are_listed_in_byte_order_with_their_last_activity(store: &impl Store) {
    let log = store.open(Retention::default()).await;
    assert!(log.rooms(None, 10).await.expect("q").is_empty());
    let before = unix_millis(std::time::SystemTime::now());
    for room in ["b", "a", "B", "a", "_x", "a.b"] {
        add(&*log, room, "x", None).await;
    }
    let rooms = log.rooms(None, 10).await.expect("q");
    let names: Vec<&str> = rooms.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["B", "_x", "a", "a.b", "b"], "byte order, as SQLite");
    assert_eq!(rooms[2].last_seq, 2);
    let activity = rooms[2].last_activity.as_deref().expect("has activity");
    let activity = unix_millis(humantime::parse_rfc3339(activity).expect("RFC 3339"));
    // Millisecond precision: the stamp may be the millisecond just begun.
    assert!(activity >= before - 1, "{activity} >= {before}");
}

/// Issue 15, finding 7: the directory is read a page at a time.
pub async fn rooms_come_a_page_at_a_time_after_a_name(store: &impl Store) {
    let log = store.open(Retention::default()).await;
    let names = ["B", "_x", "a", "a.b", "b", "z", "é"];
    for room in names.iter().rev() {
        add(&*log, room, "x", None).await;
    }
    let page = |after: Option<&'static str>, limit| {
        let log = &log;
        async move {
            let rooms = log.rooms(after, limit).await.expect("q");
            rooms.into_iter().map(|r| r.name).collect::<Vec<_>>()
        }
    };
    assert_eq!(page(None, 3).await, ["B", "_x", "a"]);
    assert_eq!(page(Some("a"), 3).await, ["a.b", "b", "z"]);
    assert_eq!(page(Some("z"), 3).await, ["é"], "past ASCII: byte order");
    assert_eq!(page(Some("aa"), 1).await, ["b"], "after a name no room has");
    assert!(page(Some("é"), 3).await.is_empty());
    assert!(page(None, 0).await.is_empty());
}

pub async fn is_ready_while_it_works(store: &impl Store) {
    let log = store.open(Retention::default()).await;
    log.ready().await.expect("ready");
    add(&*log, "r", "x", None).await;
    log.ready().await.expect("still ready");
}

/// Every test of this module, for one store: the list is kept here only.
#[macro_export]
macro_rules! all_behaviour_tests {
    ($store:expr) => {
        $crate::behaviour_tests!($store =>
            sequence_numbers_are_per_room_and_gapless,
            a_batch_queued_at_once_commits_in_queue_order,
            a_reused_client_id_returns_the_first_message,
            pages_in_both_directions_and_reads_recent_with_its_bound,
            what_is_read_equals_what_was_acked,
            concurrent_appenders_get_contiguous_seqs_in_commit_order,
            retention_by_count_keeps_the_newest_and_never_reuses_numbers,
            retention_by_count_holds_within_one_batch,
            retention_by_age_forgets_old_messages,
            a_client_id_is_remembered_for_a_day_after_its_message_is_forgotten,
            without_an_age_limit_nothing_is_pruned,
            rooms_are_listed_in_byte_order_with_their_last_activity,
            rooms_come_a_page_at_a_time_after_a_name,
            is_ready_while_it_works,
        );
    };
}
