//! Rooms over real sockets: relay, isolation, membership, notices, bad input.

mod common;

use chat_protocol::{ClientEvent, ErrorCode, ServerEvent};
use common::{is_message, TestServer};
use tokio_tungstenite::tungstenite::Message;

fn error_code(event: &ServerEvent) -> ErrorCode {
    match event {
        ServerEvent::Error { code, .. } => *code,
        other => panic!("expected an error event, got {other:?}"),
    }
}

#[tokio::test]
async fn messages_reach_their_room_and_no_other() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let mut carol = server.client("carol").await;

    alice.join("general").await;
    assert_eq!(bob.join("general").await, ["alice", "bob"]);
    assert!(matches!(alice.next().await, ServerEvent::MemberJoined { user, .. } if user == "bob"));
    carol.join("random").await;

    alice.say("general", "hello bob").await;
    carol.say("random", "anyone?").await;

    let got = bob.next().await;
    assert!(is_message(&got, "alice", "general", "hello bob"), "{got:?}");
    let echo = alice.next().await;
    assert!(
        is_message(&echo, "alice", "general", "hello bob"),
        "{echo:?}"
    );
    let own = carol.next().await;
    assert!(is_message(&own, "carol", "random", "anyone?"), "{own:?}");

    // Nothing from `random` reached general's members: the next thing each
    // sees is the next general message.
    bob.say("general", "hi alice").await;
    let got = alice.next().await;
    assert!(is_message(&got, "bob", "general", "hi alice"), "{got:?}");
    let got = bob.next().await;
    assert!(is_message(&got, "bob", "general", "hi alice"), "{got:?}");

    // And carol saw nothing of general.
    carol
        .send(ClientEvent::ListRooms {
            after: None,
            limit: None,
        })
        .await;
    assert!(matches!(carol.next().await, ServerEvent::RoomList { .. }));

    for c in [alice, bob, carol] {
        c.close().await;
    }
}

#[tokio::test]
async fn a_client_can_be_in_several_rooms() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    let mut carol = server.client("carol").await;

    alice.join("one").await;
    alice.join("two").await;
    bob.join("one").await;
    carol.join("two").await;
    // alice hears of both arrivals.
    alice.next().await;
    alice.next().await;

    bob.say("one", "in one").await;
    carol.say("two", "in two").await;
    let mut seen = vec![alice.next().await, alice.next().await];
    seen.sort_by_key(|e| format!("{e:?}"));
    assert!(
        seen.iter().any(|e| is_message(e, "bob", "one", "in one")),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|e| is_message(e, "carol", "two", "in two")),
        "{seen:?}"
    );

    alice
        .send(ClientEvent::ListRooms {
            after: None,
            limit: None,
        })
        .await;
    let ServerEvent::RoomList { rooms, .. } = alice.next().await else {
        panic!("expected room_list");
    };
    let summary: Vec<(&str, usize, u64)> = rooms
        .iter()
        .map(|r| (r.name.as_str(), r.members, r.last_seq))
        .collect();
    assert_eq!(summary, [("one", 2, 1), ("two", 2, 1)]);
    assert!(rooms.iter().all(|r| r.last_activity.is_some()));
    for c in [alice, bob, carol] {
        c.close().await;
    }
}

#[tokio::test]
async fn members_hear_joins_leaves_and_disconnects() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.join("room").await;
    bob.join("room").await;
    assert_eq!(
        alice.next().await,
        ServerEvent::MemberJoined {
            room: "room".into(),
            user: "bob".into()
        }
    );

    bob.send(ClientEvent::LeaveRoom {
        room: "room".into(),
    })
    .await;
    assert_eq!(
        bob.next().await,
        ServerEvent::Left {
            room: "room".into()
        }
    );
    assert_eq!(
        alice.next().await,
        ServerEvent::MemberLeft {
            room: "room".into(),
            user: "bob".into()
        }
    );

    // After leaving, bob gets nothing from the room and cannot post to it.
    bob.say("room", "still here?").await;
    assert_eq!(error_code(&bob.next().await), ErrorCode::NotInRoom);

    bob.join("room").await;
    alice.next().await;
    bob.close().await;
    assert_eq!(
        alice.next().await,
        ServerEvent::MemberLeft {
            room: "room".into(),
            user: "bob".into()
        }
    );

    // The room is forgotten once empty.
    alice
        .send(ClientEvent::LeaveRoom {
            room: "room".into(),
        })
        .await;
    alice.next().await;
    alice
        .send(ClientEvent::ListRooms {
            after: None,
            limit: None,
        })
        .await;
    assert_eq!(
        alice.next().await,
        ServerEvent::RoomList {
            rooms: vec![],
            next: None
        }
    );
    alice.close().await;
}

#[tokio::test]
async fn bad_frames_get_errors_and_the_connection_keeps_working() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    alice.join("room").await;

    let cases = [
        ("{this is not json", ErrorCode::InvalidJson),
        ("[1, 2, 3]", ErrorCode::InvalidFrame),
        (r#"{"type":"dance","payload":{}}"#, ErrorCode::UnknownType),
        (
            r#"{"type":"join_room","payload":{"name":"x"}}"#,
            ErrorCode::InvalidPayload,
        ),
        (
            r#"{"type":"join_room","payload":{"room":"no spaces"}}"#,
            ErrorCode::InvalidRoomName,
        ),
        (
            r#"{"type":"join_room","payload":{"room":""}}"#,
            ErrorCode::InvalidRoomName,
        ),
        (
            r#"{"type":"send_message","payload":{"room":"room","text":"  "}}"#,
            ErrorCode::EmptyMessage,
        ),
        (
            r#"{"type":"send_message","payload":{"room":"elsewhere","text":"x"}}"#,
            ErrorCode::NotInRoom,
        ),
        (
            r#"{"type":"leave_room","payload":{"room":"elsewhere"}}"#,
            ErrorCode::NotInRoom,
        ),
    ];
    for (frame, code) in cases {
        alice.send_raw(frame).await;
        assert_eq!(error_code(&alice.next().await), code, "{frame}");
    }
    alice.send_ws(Message::binary(vec![1u8, 2, 3])).await;
    assert_eq!(
        error_code(&alice.next().await),
        ErrorCode::BinaryNotSupported
    );

    alice.say("room", "still works").await;
    let got = alice.next().await;
    assert!(is_message(&got, "alice", "room", "still works"), "{got:?}");
    alice.close().await;
}

#[tokio::test]
async fn the_room_limit_is_enforced() {
    let server = TestServer::with(|c| c.max_rooms = 2).await;
    let mut alice = server.client("alice").await;
    alice.join("a").await;
    alice.join("b").await;
    alice
        .send(ClientEvent::JoinRoom {
            room: "c".into(),
            since: None,
            epoch: None,
        })
        .await;
    assert_eq!(error_code(&alice.next().await), ErrorCode::TooManyRooms);
    alice.close().await;
}

#[tokio::test]
async fn the_rate_limit_drops_excess_messages_with_an_error() {
    // A burst of 3 and a refill so slow it cannot matter during the test.
    let server = TestServer::with(|c| {
        c.burst = 3;
        c.rate = 0.001;
    })
    .await;
    let mut alice = server.client("alice").await;
    alice.join("room").await; // the first token
    for i in 0..4 {
        alice.say("room", &format!("m{i}")).await;
    }
    let mut delivered = Vec::new();
    let mut limited = 0;
    for _ in 0..4 {
        match alice.next().await {
            ServerEvent::NewMessage(m) => delivered.push(m.text),
            ServerEvent::Error {
                code: ErrorCode::RateLimited,
                ..
            } => limited += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(delivered, ["m0", "m1"]);
    assert_eq!(limited, 2);
    alice.close().await;
}

/// Issue 15, finding 7: `room_list` listed every room that ever had a
/// message, 444 KiB at 5,000 rooms, in one frame. Now it comes in pages
/// (`limit`, `after` = the previous page's `next`), merging the stored rooms
/// with the rooms that only have members, each room once, in name order.
#[tokio::test]
async fn the_room_directory_comes_a_page_at_a_time() {
    let server = TestServer::with(|c| {
        c.max_rooms = 1_000;
        c.rate = 100_000.0;
        c.burst = 100_000;
        // Frames far larger than the largest page: only `limit` cuts it
        // here (frame_size.rs has pages cut to the frame).
        c.max_message_size = 256 * 1024;
    })
    .await;
    let mut alice = server.client("alice").await;
    // Every kind of room: stored with a member, stored without one, with a
    // member and no message, and neither (never listed).
    let names: Vec<String> = (0..300).map(|i| format!("r{i:03}")).collect();
    let mut expected = Vec::new();
    for (i, room) in names.iter().enumerate() {
        alice.join(room).await;
        let stored = i % 2 == 0;
        if stored {
            alice.say(room, "hi").await;
            alice
                .wait_for(|e| matches!(e, ServerEvent::NewMessage(m) if &m.room == room))
                .await;
        }
        let stays = i % 3 != 0;
        if !stays {
            alice
                .send(ClientEvent::LeaveRoom { room: room.clone() })
                .await;
            alice
                .wait_for(|e| matches!(e, ServerEvent::Left { .. }))
                .await;
        }
        if stored || stays {
            expected.push((room.clone(), usize::from(stays), u64::from(stored)));
        }
    }

    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (rooms, next) = alice.list_rooms(after.as_deref(), Some(7)).await;
        assert!(!rooms.is_empty() && rooms.len() <= 7, "{}", rooms.len());
        listed.extend(
            rooms
                .iter()
                .map(|r| (r.name.clone(), r.members, r.last_seq)),
        );
        match next {
            Some(next) => {
                assert_eq!(
                    Some(&next),
                    rooms.last().map(|r| &r.name),
                    "next: the page's last"
                );
                after = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(listed, expected, "each room once, in order, as it is");

    let (first, next) = alice.list_rooms(None, None).await;
    assert_eq!(first.len(), 100, "the default page");
    assert_eq!(next.as_deref(), Some(first[99].name.as_str()));
    let (most, _) = alice.list_rooms(None, Some(u32::MAX)).await;
    assert_eq!(most.len(), 200, "the largest page");
    let (one, _) = alice.list_rooms(None, Some(0)).await;
    assert_eq!(one.len(), 1, "limit 0 counts as 1");
    let (none, next) = alice.list_rooms(Some("zzz"), None).await;
    assert_eq!((none.len(), next), (0, None), "after the last room");
    alice.close().await;
}
