//! Durable history over real sockets: acks, idempotent resends, paging,
//! retention, and resume with nothing lost or doubled.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chat_protocol::{ChatMessage, ClientEvent, ServerEvent};
use common::TestServer;

fn send(room: &str, text: &str, client_id: Option<&str>) -> ClientEvent {
    ClientEvent::SendMessage {
        room: room.into(),
        text: text.into(),
        client_id: client_id.map(str::to_owned),
    }
}

fn join_since(room: &str, since: u64) -> ClientEvent {
    ClientEvent::JoinRoom {
        room: room.into(),
        since: Some(since),
        epoch: None,
    }
}

/// Sends and waits for the ack; returns the sequence number.
fn seqs(messages: &[ChatMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

#[tokio::test]
async fn a_resent_client_id_is_acked_again_but_stored_and_delivered_once() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.join("r").await;
    bob.join("r").await;
    alice.next().await; // bob joined

    alice.send(send("r", "exactly once", Some("msg-1"))).await;
    let first = alice.next_with_acks().await;
    assert!(
        matches!(&first, ServerEvent::Ack { seq: 1, client_id: Some(c), .. } if c == "msg-1"),
        "{first:?}"
    );
    assert!(matches!(alice.next_with_acks().await, ServerEvent::NewMessage(m) if m.seq == 1));

    // The same id again, as after a lost ack: same answer, nothing new.
    alice.send(send("r", "exactly once", Some("msg-1"))).await;
    assert_eq!(alice.next_with_acks().await, first);
    alice.send(send("r", "next", Some("msg-2"))).await;
    assert!(matches!(
        alice.next_with_acks().await,
        ServerEvent::Ack { seq: 2, .. }
    ));

    let got: Vec<u64> = vec![bob.next().await, bob.next().await]
        .into_iter()
        .map(|e| match e {
            ServerEvent::NewMessage(m) => m.seq,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(got, [1, 2], "bob got the resent message once");
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn joining_brings_recent_history_and_history_pages_back() {
    let server = TestServer::with(|c| c.history_on_join = 5).await;
    let mut alice = server.client("alice").await;
    alice.join("r").await;
    for i in 1..=12 {
        alice
            .send_acked("r", &format!("m{i}"), &format!("c{i}"))
            .await;
    }

    let mut carol = server.client("carol").await;
    carol
        .send(ClientEvent::JoinRoom {
            room: "r".into(),
            since: None,
            epoch: None,
        })
        .await;
    let ServerEvent::Joined {
        last_seq, history, ..
    } = carol.next().await
    else {
        panic!("expected joined");
    };
    assert_eq!(last_seq, 12);
    assert_eq!(seqs(&history), [8, 9, 10, 11, 12]);
    assert_eq!(history[0].text, "m8");

    let mut before = 8;
    let mut older = Vec::new();
    loop {
        carol
            .send(ClientEvent::History {
                room: "r".into(),
                before: Some(before),
                limit: Some(5),
            })
            .await;
        let ServerEvent::HistoryPage {
            messages,
            first_seq,
            ..
        } = carol.next().await
        else {
            panic!("expected history_page");
        };
        assert_eq!(first_seq, Some(1));
        if messages.is_empty() {
            break;
        }
        before = messages[0].seq;
        older.splice(0..0, messages);
    }
    assert_eq!(seqs(&older), (1..=7).collect::<Vec<_>>());

    // Only members may read a room's history.
    let mut dave = server.client("dave").await;
    dave.send(ClientEvent::History {
        room: "r".into(),
        before: None,
        limit: None,
    })
    .await;
    assert!(matches!(dave.next().await, ServerEvent::Error { .. }));
    for c in [alice, carol, dave] {
        c.close().await;
    }
}

#[tokio::test]
async fn a_resume_beyond_retention_says_what_is_gone() {
    let server = TestServer::with(|c| c.retain_messages = Some(5)).await;
    let mut alice = server.client("alice").await;
    alice.join("r").await;
    for i in 1..=10 {
        alice
            .send_acked("r", &format!("m{i}"), &format!("c{i}"))
            .await;
    }
    let mut bob = server.client("bob").await;
    bob.send(join_since("r", 2)).await;
    assert_eq!(
        bob.next().await,
        ServerEvent::HistoryGap {
            room: "r".into(),
            from: 3,
            to: 5
        }
    );
    let mut got = Vec::new();
    loop {
        match bob.next().await {
            ServerEvent::NewMessage(m) => got.push(m.seq),
            ServerEvent::Joined {
                last_seq, history, ..
            } => {
                assert_eq!(last_seq, 10);
                assert!(history.is_empty(), "a resume brings no extra history");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, [6, 7, 8, 9, 10]);
    alice.close().await;
    bob.close().await;
}

/// Issue 15, finding 9: a `client_id` resent after retention dropped its
/// message was stored twice. Now the resend gets the original's ack, and
/// nothing is stored or relayed.
#[tokio::test]
async fn a_resend_after_retention_forgot_the_message_is_acked_as_the_original() {
    let server = TestServer::with(|c| c.retain_messages = Some(1)).await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.join("r").await;
    bob.join("r").await;
    alice.next().await; // member_joined: bob
    assert_eq!(alice.send_acked("r", "hello", "c-1").await, 1);
    assert_eq!(alice.send_acked("r", "later", "c-2").await, 2);
    // Only "later" is stored now; "hello" is resent as if its ack was lost.
    assert_eq!(
        alice.send_acked("r", "hello", "c-1").await,
        1,
        "the original's seq"
    );
    assert_eq!(
        alice.send_acked("r", "third", "c-3").await,
        3,
        "nothing was stored"
    );
    for text in ["hello", "later", "third"] {
        assert!(
            matches!(bob.next().await, ServerEvent::NewMessage(m) if m.text == text),
            "bob gets each message once, in order"
        );
    }
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn a_resume_under_load_continues_with_no_gap_and_no_duplicate() {
    let server = TestServer::with(|c| {
        c.rate = 1e6;
        c.burst = 1_000_000;
    })
    .await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.join("r").await;
    bob.join("r").await;
    for i in 1..=5 {
        alice
            .send_acked("r", &format!("m{i}"), &format!("a{i}"))
            .await;
    }
    let mut bob_seen = Vec::new();
    while bob_seen.len() < 5 {
        if let ServerEvent::NewMessage(m) = bob.next().await {
            bob_seen.push(m.seq);
        }
    }
    bob.close().await;

    // 300 messages while bob is away (more than one page of backlog), then
    // 300 more while he resumes.
    for i in 6..=305 {
        alice
            .send_acked("r", &format!("m{i}"), &format!("a{i}"))
            .await;
    }
    let sender = tokio::spawn(async move {
        for i in 306..=605 {
            alice
                .send_acked("r", &format!("m{i}"), &format!("a{i}"))
                .await;
        }
        alice
    });
    let mut bob = server.client_for("bob").await;
    bob.send(join_since("r", 5)).await;
    while bob_seen.len() < 605 {
        match bob.next().await {
            ServerEvent::NewMessage(m) => {
                assert_eq!(m.text, format!("m{}", m.seq));
                bob_seen.push(m.seq);
            }
            ServerEvent::Joined { .. } | ServerEvent::MemberJoined { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(bob_seen, (1..=605).collect::<Vec<_>>());
    sender.await.expect("sender").close().await;
    bob.close().await;
}

/// Joins `room` after the newest message received in it (a plain join if none).
fn resume_from(got: &BTreeMap<&str, Vec<u64>>, room: &str) -> ClientEvent {
    ClientEvent::JoinRoom {
        room: room.into(),
        since: got.get(room).and_then(|seqs| seqs.last().copied()),
        epoch: None,
    }
}

/// A small deterministic generator, so a failing run can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test]
async fn members_who_drop_and_resume_at_random_receive_every_message_in_order() {
    let server = TestServer::with(|c| {
        c.rate = 1e6;
        c.burst = 1_000_000;
    })
    .await;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    println!("stress seed {seed}");
    let rooms = ["red", "blue"];
    for user in ["s0", "s1", "s2", "r0", "r1", "r2", "r3"] {
        server.register(user).await;
    }

    // Senders: each sends 150 messages, alternating rooms.
    // Every sender is in both rooms before anyone sends.
    let mut sender_clients = Vec::new();
    for s in 0..3 {
        let mut client = server.client_for(&format!("s{s}")).await;
        for room in rooms {
            client.join(room).await;
        }
        sender_clients.push(client);
    }
    let mut senders = Vec::new();
    for (s, mut client) in sender_clients.into_iter().enumerate() {
        senders.push(tokio::spawn(async move {
            for i in 0..150 {
                let room = ["red", "blue"][i % 2];
                client
                    .send_acked(room, &format!("s{s}-{i}"), &format!("s{s}-{i}"))
                    .await;
            }
            client
        }));
    }

    // Readers: connect, read a random number of events, drop without a
    // close handshake, and resume with the last seq they hold, for as long
    // as the senders are sending; then catch up once more.
    let sending = Arc::new(AtomicBool::new(true));
    let mut readers = Vec::new();
    for r in 0..4 {
        let remote = common::Remote {
            addr: server.addr,
            tls_cert: None,
        };
        let mut rng = Rng(seed.wrapping_mul(r + 7) | 1);
        let sending = sending.clone();
        readers.push(tokio::spawn(async move {
            let user = format!("r{r}");
            let mut got: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
            let mut rounds = 0;
            while sending.load(Ordering::Relaxed) && rounds < 200 {
                rounds += 1;
                let mut client = remote.client_for(&user).await;
                for room in rooms {
                    client.send(resume_from(&got, room)).await;
                }
                let budget = 20 + rng.below(120);
                for _ in 0..budget {
                    let event =
                        tokio::time::timeout(Duration::from_millis(500), client.next()).await;
                    match event {
                        Ok(ServerEvent::NewMessage(m)) => {
                            let room = if m.room == "red" { "red" } else { "blue" };
                            got.entry(room).or_default().push(m.seq);
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                drop(client); // an abrupt drop, not a close handshake
            }
            (user, got)
        }));
    }

    let mut last_seq = BTreeMap::new();
    for sender in senders {
        sender.await.expect("sender").close().await;
    }
    sending.store(false, Ordering::Relaxed);
    // Final catch-up: every reader resumes once more and reads to the end.
    let mut results = Vec::new();
    for reader in readers {
        let (user, mut got) = reader.await.expect("reader");
        let mut client = server.client_for(&user).await;
        for room in rooms {
            // From the start if this reader never got anything of the room:
            // then every stored message is checked.
            let since = got.get(room).and_then(|seqs| seqs.last().copied());
            client
                .send(ClientEvent::JoinRoom {
                    room: room.into(),
                    since: Some(since.unwrap_or(0)),
                    epoch: None,
                })
                .await;
            loop {
                match client.next().await {
                    ServerEvent::NewMessage(m) => got.entry(room).or_default().push(m.seq),
                    ServerEvent::Joined {
                        last_seq: l,
                        room: r,
                        ..
                    } if r == room => {
                        last_seq.insert(room, l);
                        break;
                    }
                    _ => {}
                }
            }
        }
        client.close().await;
        results.push((user, got));
    }
    for room in rooms {
        assert_eq!(last_seq[room], 225, "3 senders x 75 messages in {room}");
    }
    for (user, got) in results {
        for room in rooms {
            let expected: Vec<u64> = (1..=last_seq[room]).collect();
            // A reader's first join was a plain join, after which it got the
            // live stream: what it has must be a gapless, duplicate-free
            // suffix of the stored sequence, ending at the last message.
            let have = got.get(room).cloned().unwrap_or_default();
            let start = have.first().copied().unwrap_or(1);
            assert_eq!(
                &have,
                &expected[(start - 1) as usize..].to_vec(),
                "{user} in {room} (seed {seed})"
            );
        }
    }
}

#[tokio::test]
async fn a_repeated_resume_request_still_delivers_each_message_once() {
    let server = TestServer::with(|c| {
        c.rate = 1e6;
        c.burst = 1_000_000;
    })
    .await;
    let mut alice = server.client("alice").await;
    alice.join("r").await;
    for i in 1..=250 {
        alice
            .send_acked("r", &format!("m{i}"), &format!("c{i}"))
            .await;
    }
    let mut bob = server.client("bob").await;
    // Sent twice before the first can finish: the second is absorbed.
    bob.send(join_since("r", 0)).await;
    bob.send(join_since("r", 0)).await;
    let mut got = Vec::new();
    loop {
        match bob.next().await {
            ServerEvent::NewMessage(m) => got.push(m.seq),
            ServerEvent::Joined { .. } => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, (1..=250).collect::<Vec<_>>());
    // No message comes again. The second request is absorbed when it arrives
    // during the first catch-up; on a busy machine the first may finish
    // before the server reads the second, which is then a resume of a room
    // bob is in, answered like a plain join: a `joined`, with no backlog.
    bob.send(ClientEvent::ListRooms {
        after: None,
        limit: None,
    })
    .await;
    loop {
        match bob.next().await {
            ServerEvent::RoomList { .. } => break,
            ServerEvent::Joined { room, .. } if room == "r" => {}
            other => panic!("after the catch-up, expected room_list, got {other:?}"),
        }
    }
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn a_since_beyond_any_seq_is_answered_never_refused() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    alice.join("r").await;
    alice.send_acked("r", "m1", "c1").await;
    let mut bob = server.client("bob").await;
    for since in [2, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX] {
        bob.send(join_since("r", since)).await;
        match bob.next().await {
            ServerEvent::Joined { last_seq, .. } => assert_eq!(last_seq, 1, "since {since}"),
            other => panic!("since {since}: {other:?}"),
        }
        bob.send(ClientEvent::LeaveRoom { room: "r".into() }).await;
        assert!(matches!(bob.next().await, ServerEvent::Left { .. }));
    }
    alice.close().await;
    bob.close().await;
}
