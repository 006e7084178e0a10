//! The message path end to end over real sockets: many senders in one room
//! get one order everywhere (group commit on, plain and with fsync), every
//! answer carries its request's `ref`, and an epoch keeps a client from
//! resuming into another history.

mod common;

use std::collections::BTreeMap;

use chat_protocol::{ClientEvent, ServerEvent};
use chat_server::{Config, Durability};
use common::{Client, TestServer};
use tokio_tungstenite::tungstenite::Message;

const SENDERS: usize = 8;
const EACH: usize = 40;
const LISTENERS: usize = 3;

fn unlimited(config: &mut Config) {
    config.rate = 1e6;
    config.burst = 1_000_000;
}

/// Collects `n` messages of `room` as (seq, text), skipping everything else.
async fn collect(client: &mut Client, n: usize) -> Vec<(u64, String)> {
    let mut got = Vec::new();
    while got.len() < n {
        if let ServerEvent::NewMessage(m) = client.next().await {
            got.push((m.seq, m.text));
        }
    }
    got
}

async fn senders_in_one_room_get_one_order_at_every_member(durability: Durability) {
    let server = TestServer::with(|c| {
        unlimited(c);
        c.durability = durability;
        // The senders read only once they have sent everything; this test
        // is about order, the slow-consumer policy has tests of its own.
        c.send_queue = 4 * SENDERS * EACH;
    })
    .await;
    let mut senders = Vec::new();
    let mut readers = Vec::new();
    let total = SENDERS * EACH;
    for i in 0..SENDERS + LISTENERS {
        let mut client = server.client(&format!("user{i}")).await;
        client.join("busy").await;
        if i < SENDERS {
            senders.push(client);
        } else {
            // Listeners read all along, as members do.
            readers.push(tokio::spawn(async move {
                let got = collect(&mut client, total).await;
                (client, got)
            }));
        }
    }
    // Every sender writes all its messages without waiting for any ack,
    // so the writer sees them queued together and commits them in batches.
    for (i, sender) in senders.iter_mut().enumerate() {
        for j in 0..EACH {
            let event = ClientEvent::SendMessage {
                room: "busy".into(),
                text: format!("s{i}-{j}"),
                client_id: Some(format!("c{j}")),
            };
            sender.send(event).await;
        }
    }
    for mut sender in senders {
        readers.push(tokio::spawn(async move {
            let got = collect(&mut sender, total).await;
            (sender, got)
        }));
    }
    let mut members = Vec::new();
    let mut orders = Vec::new();
    for reader in readers {
        let (client, got) = reader.await.expect("reader");
        members.push(client);
        orders.push(got);
    }
    let seqs: Vec<u64> = orders[0].iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=total as u64).collect::<Vec<_>>(), "contiguous");
    for (i, order) in orders.iter().enumerate() {
        assert_eq!(order, &orders[0], "member {i} saw another order");
    }
    // Each sender's own messages keep the order it sent them in.
    for i in 0..SENDERS {
        let own: Vec<&str> = orders[0]
            .iter()
            .map(|(_, text)| text.as_str())
            .filter(|text| text.starts_with(&format!("s{i}-")))
            .collect();
        let sent: Vec<String> = (0..EACH).map(|j| format!("s{i}-{j}")).collect();
        assert_eq!(own, sent);
    }
    for member in members {
        member.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_senders_in_one_room_get_contiguous_seqs_in_one_order() {
    senders_in_one_room_get_one_order_at_every_member(Durability::Normal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_senders_in_one_room_get_one_order_with_a_flush_per_commit() {
    senders_in_one_room_get_one_order_at_every_member(Durability::Full).await;
}

/// The next text frame as raw JSON, to look at its top-level fields.
async fn next_json(client: &mut Client) -> serde_json::Value {
    match client.next_message().await {
        Message::Text(text) => serde_json::from_str(&text).expect("JSON"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Sends `frame` with `ref` set and returns the first answer carrying a ref.
async fn answer(
    client: &mut Client,
    frame: serde_json::Value,
    reference: &str,
) -> serde_json::Value {
    let mut frame = frame;
    frame["ref"] = reference.into();
    client.send_raw(&frame.to_string()).await;
    loop {
        let event = next_json(client).await;
        if event.get("ref").is_some() {
            assert_eq!(event["ref"], reference, "{event}");
            return event;
        }
    }
}

#[tokio::test]
async fn every_kind_of_answer_carries_its_ref() {
    let server = TestServer::with(unlimited).await;
    let mut alice = server.client("alice").await;
    let join = serde_json::json!({"type": "join_room", "payload": {"room": "r"}});
    assert_eq!(answer(&mut alice, join, "j1").await["type"], "joined");
    let send = serde_json::json!({"type": "send_message", "payload": {"room": "r", "text": "hi"}});
    let ack = answer(&mut alice, send, "s1").await;
    assert_eq!(
        (ack["type"].as_str(), ack["payload"]["seq"].as_u64()),
        (Some("ack"), Some(1))
    );
    let history = serde_json::json!({"type": "history", "payload": {"room": "r"}});
    assert_eq!(
        answer(&mut alice, history, "h1").await["type"],
        "history_page"
    );
    let list = serde_json::json!({"type": "list_rooms"});
    assert_eq!(answer(&mut alice, list, "l1").await["type"], "room_list");
    let resume = serde_json::json!({"type": "join_room", "payload": {"room": "q", "since": 0}});
    assert_eq!(answer(&mut alice, resume, "j2").await["type"], "joined");
    let leave = serde_json::json!({"type": "leave_room", "payload": {"room": "r"}});
    assert_eq!(answer(&mut alice, leave, "x1").await["type"], "left");
    // Refusals: by the handler, by the decoder, and by the rate limit alike.
    let stray = serde_json::json!({"type": "send_message", "payload": {"room": "r", "text": "x"}});
    let refused = answer(&mut alice, stray, "e1").await;
    assert_eq!(refused["payload"]["code"], "not_in_room", "{refused}");
    let bad = serde_json::json!({"type": "join_room", "payload": {"room": 5}});
    let refused = answer(&mut alice, bad, "e2").await;
    assert_eq!(refused["payload"]["code"], "invalid_payload", "{refused}");
    // The live message relayed to a member is nobody's answer: it has no ref.
    let mut bob = server.client("bob").await;
    bob.join("q").await;
    let send = serde_json::json!({"type": "send_message", "payload": {"room": "q", "text": "yo"}});
    answer(&mut alice, send, "s2").await;
    let relayed = loop {
        let event = next_json(&mut bob).await;
        if event["type"] == "new_message" {
            break event;
        }
    };
    assert!(relayed.get("ref").is_none(), "{relayed}");
    // A ref that is not a short string is refused without being echoed.
    alice
        .send_raw(&format!(
            r#"{{"type":"list_rooms","ref":"{}"}}"#,
            "x".repeat(65)
        ))
        .await;
    let refused = loop {
        let event = next_json(&mut alice).await;
        if event["type"] != "new_message" {
            break event;
        }
    };
    assert_eq!(refused["payload"]["code"], "invalid_frame", "{refused}");
    assert!(refused.get("ref").is_none());
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn a_rate_limited_frame_is_refused_with_its_ref() {
    let server = TestServer::with(|c| {
        c.rate = 0.0;
        c.burst = 1;
    })
    .await;
    let mut alice = server.client("alice").await;
    let list = serde_json::json!({"type": "list_rooms"});
    assert_eq!(
        answer(&mut alice, list.clone(), "a").await["type"],
        "room_list"
    );
    let refused = answer(&mut alice, list, "b").await;
    assert_eq!(refused["payload"]["code"], "rate_limited", "{refused}");
    alice.close().await;
}

/// Joins with a raw payload; returns what came before `joined`, and `joined`.
async fn join_with(client: &mut Client, payload: serde_json::Value) -> (Vec<u64>, ServerEvent) {
    let frame = serde_json::json!({"type": "join_room", "payload": payload});
    client.send_raw(&frame.to_string()).await;
    let mut before = Vec::new();
    loop {
        match client.next().await {
            ServerEvent::NewMessage(m) => before.push(m.seq),
            joined @ ServerEvent::Joined { .. } => return (before, joined),
            _ => {}
        }
    }
}

fn epoch_of(joined: &ServerEvent) -> String {
    match joined {
        ServerEvent::Joined { epoch, .. } => epoch.clone(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_store_reset_gives_a_new_epoch_and_the_old_one_gets_a_plain_join() {
    let mut server = TestServer::start().await;
    server.register("alice").await;
    let mut alice = server.client_for("alice").await;
    let (_, joined) = join_with(&mut alice, serde_json::json!({"room": "r"})).await;
    let first = epoch_of(&joined);
    for text in ["one", "two", "three"] {
        alice.say("r", text).await;
    }
    collect(&mut alice, 3).await;
    alice.close().await;

    // Same data: same epoch, and a resume with it is a resume.
    server.restart().await;
    let mut alice = server.client_for("alice").await;
    let resume = serde_json::json!({"room": "r", "since": 1, "epoch": first});
    let (backlog, joined) = join_with(&mut alice, resume).await;
    assert_eq!(epoch_of(&joined), first, "the same across a restart");
    assert_eq!(backlog, [2, 3]);
    alice.close().await;

    // A new message store: a new epoch, and the old one cannot resume into it.
    server.stop().await;
    for entry in std::fs::read_dir(server.data_dir.path()).expect("data dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with(chat_server::MESSAGES_FILE) {
            std::fs::remove_file(&path).expect("removes");
        }
        // With the server stopped, its message log has closed its files: no
        // -wal or -shm file of it is left to vanish under this loop.
    }
    server.restart().await;
    let mut alice = server.client_for("alice").await;
    alice.join("r").await;
    alice.say("r", "after the reset").await;
    collect(&mut alice, 1).await;
    let mut phone = server.client_for("alice").await;
    let stale = serde_json::json!({"room": "r", "since": 0, "epoch": first});
    let (backlog, joined) = join_with(&mut phone, stale).await;
    assert!(backlog.is_empty(), "not a resume: {backlog:?}");
    let ServerEvent::Joined {
        epoch,
        history,
        last_seq,
        ..
    } = joined
    else {
        unreachable!()
    };
    assert_ne!(epoch, first);
    assert_eq!(
        (history.len(), last_seq),
        (1, 1),
        "a plain join's recent history"
    );
    assert_eq!(history[0].text, "after the reset");
    phone.close().await;
    alice.close().await;
}

#[tokio::test]
async fn a_second_connection_of_a_user_is_one_member_and_leaves_quietly() {
    let server = TestServer::start().await;
    let mut bob = server.client("bob").await;
    bob.join("r").await;
    let mut alice = server.client("alice").await;
    let mut phone = server.client_for("alice").await;
    assert_eq!(alice.join("r").await, ["alice", "bob"]);
    assert_eq!(phone.join("r").await, ["alice", "bob"]);
    let joined = bob.next().await;
    assert!(
        matches!(&joined, ServerEvent::MemberJoined { user, .. } if user == "alice"),
        "{joined:?}"
    );
    phone.close().await;
    alice.say("r", "still here").await;
    let next = bob.next().await;
    assert!(
        common::is_message(&next, "alice", "r", "still here"),
        "no member_left first: {next:?}"
    );
    alice.close().await;
    let left = bob.next().await;
    assert!(
        matches!(&left, ServerEvent::MemberLeft { user, .. } if user == "alice"),
        "{left:?}"
    );
    let rooms: BTreeMap<String, usize> = {
        bob.send(ClientEvent::ListRooms {
            after: None,
            limit: None,
        })
        .await;
        match bob.next().await {
            ServerEvent::RoomList { rooms, .. } => {
                rooms.into_iter().map(|r| (r.name, r.members)).collect()
            }
            other => panic!("{other:?}"),
        }
    };
    // The room list came next: no stray member_left before it.
    assert_eq!(rooms.get("r"), Some(&1));
    bob.close().await;
}

#[tokio::test]
async fn a_resume_of_a_room_one_is_in_is_answered_like_a_plain_join() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    alice.join("r").await;
    for text in ["one", "two"] {
        alice.say("r", text).await;
    }
    collect(&mut alice, 2).await;
    let (backlog, joined) =
        join_with(&mut alice, serde_json::json!({"room": "r", "since": 0})).await;
    assert!(backlog.is_empty(), "no backlog for a member: {backlog:?}");
    let ServerEvent::Joined {
        history, last_seq, ..
    } = joined
    else {
        unreachable!()
    };
    let texts: Vec<&str> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!((texts, last_seq), (vec!["one", "two"], 2), "recent history");
    alice.close().await;
}
