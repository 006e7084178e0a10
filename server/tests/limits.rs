//! Clients that misbehave: oversize frames, dead peers, readers that stall.

mod common;

use std::time::Duration;

use chat_protocol::ServerEvent;
use common::{is_message, TestServer};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn an_oversize_frame_closes_with_1009() {
    let server = TestServer::with(|c| c.max_message_size = 1024).await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.join("room").await;
    bob.join("room").await;
    alice.next().await;

    let text = "x".repeat(2000);
    let frame = format!(r#"{{"type":"send_message","payload":{{"room":"room","text":"{text}"}}}}"#);
    // The server may close before reading all of it, so the send may fail.
    let _ = alice.ws.send(Message::text(frame)).await;
    let close = alice.expect_close().await;
    assert_eq!(u16::from(close.code), 1009);

    // Nothing of it was relayed; bob only hears that alice is gone.
    assert_eq!(
        bob.next().await,
        ServerEvent::MemberLeft {
            room: "room".into(),
            user: "alice".into()
        }
    );
    bob.close().await;
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_removed_and_the_room_told() {
    let server = TestServer::with(|c| {
        c.ping_interval = Duration::from_millis(200);
        c.pong_timeout = Duration::from_millis(300);
    })
    .await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.join("room").await;
    bob.join("room").await;
    alice.next().await;

    // From here alice's socket is not read, so her client answers no pings.
    // bob keeps reading (and so answering) and must hear she is gone well
    // within a few heartbeat periods.
    let gone = tokio::time::timeout(Duration::from_secs(5), bob.next())
        .await
        .expect("removed within the heartbeat timeout");
    assert_eq!(
        gone,
        ServerEvent::MemberLeft {
            room: "room".into(),
            user: "alice".into()
        }
    );
    // bob, who answers, is still connected and served.
    bob.say("room", "still here").await;
    assert!(is_message(&bob.next().await, "bob", "room", "still here"));

    // alice finds the reason when she reads again.
    let close = alice.expect_close().await;
    assert_eq!(u16::from(close.code), 1008);
    assert!(close.reason.contains("pong"), "{}", close.reason);
    bob.close().await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_while_others_get_everything() {
    let server = TestServer::with(|c| {
        c.send_queue = 8;
        c.rate = 1e6;
        c.burst = 1_000_000;
        c.max_message_size = 128 * 1024;
    })
    .await;
    let mut sender = server.client("sender").await;
    let mut reader = server.client("reader").await;
    let mut stalled = server.client("stalled").await;
    sender.join("room").await;
    reader.join("room").await;
    stalled.join("room").await;
    sender.next().await; // reader joined
    sender.next().await; // stalled joined
    reader.next().await; // stalled joined

    // The reader reads concurrently, as a live client does, until "done".
    let body_len = 64 * 1024;
    let reader_task = tokio::spawn(async move {
        let mut numbers = Vec::new();
        let mut saw_drop = false;
        loop {
            match reader.next().await {
                ServerEvent::NewMessage(m) if m.text == "done" => break,
                ServerEvent::NewMessage(m) => {
                    let (n, rest) = m.text.split_once(':').expect("numbered");
                    assert_eq!(rest.len(), body_len);
                    numbers.push(n.parse::<usize>().expect("number"));
                }
                ServerEvent::MemberLeft { user, .. } if user == "stalled" => saw_drop = true,
                other => panic!("reader got {other:?}"),
            }
        }
        (reader, numbers, saw_drop)
    });

    // Big messages fill the stalled client's socket buffers, then its queue.
    // The sender waits for its own echo before sending on, so the live
    // clients' queues stay short while the stalled one only grows.
    let (sent, stalled_dropped) = send_until_dropped(&mut sender, "y", body_len, 2000).await;
    assert!(
        stalled_dropped,
        "the stalled client was never dropped ({sent} messages)"
    );
    sender.say("room", "done").await;

    // The reader received every message, in order, and the departure.
    let (reader, numbers, saw_drop) = reader_task.await.expect("reader task");
    assert_eq!(numbers, (0..sent).collect::<Vec<_>>());
    assert!(saw_drop, "the room was told the stalled client left");

    // The stalled client, reading at last, gets the policy close code after
    // whatever had reached its socket buffer.
    let close = stalled.expect_close().await;
    assert_eq!(u16::from(close.code), 1008);
    assert!(close.reason.contains("slow"), "{}", close.reason);
    sender.close().await;
    reader.close().await;
}

/// Sends numbered messages of `body_len` copies of `fill` to "room", each
/// once the previous one's echo is back (so that only a client that does not
/// read falls behind), until "stalled" is reported gone or `most` are sent.
/// Returns how many were sent and whether "stalled" was dropped.
async fn send_until_dropped(
    sender: &mut common::Client,
    fill: &str,
    body_len: usize,
    most: usize,
) -> (usize, bool) {
    let body = fill.repeat(body_len);
    let mut sent = 0;
    let mut dropped = false;
    while sent < most && !dropped {
        let text = format!("{sent}:{body}");
        sender.say("room", &text).await;
        sent += 1;
        loop {
            match sender.next().await {
                ServerEvent::NewMessage(m) if m.text == text => break,
                ServerEvent::MemberLeft { user, .. } if user == "stalled" => dropped = true,
                other => panic!("sender got {other:?}"),
            }
        }
    }
    (sent, dropped)
}

/// Sends one hand-built frame, for inputs a well-behaved library refuses to make.
async fn send_raw_frame(client: &mut common::Client, frame: Frame) {
    // The server may close before the write completes.
    let _ = client.ws.send(Message::Frame(frame)).await;
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_closes_with_1007() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let invalid = vec![b'{', 0xff, 0xfe, b'}'];
    send_raw_frame(
        &mut alice,
        Frame::message(invalid, OpCode::Data(Data::Text), true),
    )
    .await;
    assert_eq!(u16::from(alice.expect_close().await.code), 1007);
}

#[tokio::test]
async fn a_frame_breaking_rfc_6455_closes_with_1002() {
    let server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let mut frame = Frame::message(b"{}".to_vec(), OpCode::Data(Data::Text), true);
    frame.header_mut().rsv1 = true; // no extension was negotiated
    send_raw_frame(&mut alice, frame).await;
    assert_eq!(u16::from(alice.expect_close().await.code), 1002);
}

/// Issue 15, finding 3: a client whose TCP window stays closed blocks the
/// server's write with its queue far from full, and a blocked writer pings
/// no one. The write has the pong's deadline: past it, the client is dropped
/// and its rooms told. (No ping falls due during the test: the write deadline
/// alone must do it.)
#[tokio::test]
async fn a_peer_whose_window_stays_closed_is_dropped_by_the_write_deadline() {
    let server = TestServer::with(|c| {
        c.ping_interval = Duration::from_secs(600);
        c.pong_timeout = Duration::from_millis(500);
        c.rate = 1e6;
        c.burst = 1_000_000;
        // Room for 256 frames of 60 KiB: only the deadline may drop it.
        c.send_queue_bytes = 64 << 20;
        c.metrics_listen = Some("127.0.0.1:0".parse().expect("addr"));
    })
    .await;
    let mut sender = server.client("sender").await;
    sender.join("room").await;

    // A small, fixed receive buffer (which also turns off its autotuning):
    // the server's send buffer then fills after a few megabytes, in fewer
    // frames than the send queue (256) holds.
    server.register("stalled").await;
    let ticket = server.login("stalled").await;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let tcp = socket.connect(server.addr).await.expect("connect");
    let url = format!("ws://{}/ws?ticket={ticket}", server.addr);
    let (mut stalled, _) = tokio_tungstenite::client_async(url, tcp)
        .await
        .expect("upgrade");
    let join = chat_protocol::ClientEvent::JoinRoom {
        room: "room".into(),
        since: None,
        epoch: None,
    };
    stalled
        .send(Message::text(join.to_json()))
        .await
        .expect("join");
    loop {
        let Some(Ok(Message::Text(text))) = stalled.next().await else {
            panic!("the stalled client's joined never came");
        };
        if text.contains(r#""type":"joined""#) {
            break;
        }
    }
    // stalled's own joined was read above; from here nothing reads its socket.
    sender.next().await; // member_joined: stalled

    let (sent, dropped) = send_until_dropped(&mut sender, "z", 60 * 1024, 200).await;
    if !dropped {
        let gone = tokio::time::timeout(Duration::from_secs(5), sender.next())
            .await
            .expect("dropped within the write deadline");
        assert_eq!(
            gone,
            ServerEvent::MemberLeft {
                room: "room".into(),
                user: "stalled".into()
            }
        );
    }
    assert!(
        sent < 256,
        "dropped before its queue could fill ({sent} sent)"
    );
    let metrics = server.metrics.expect("metrics");
    common::scrape::until(
        metrics,
        r#"chat_disconnects_total{reason="write_stalled"}"#,
        |n| n == 1.0,
    )
    .await;
    drop(stalled);
    sender.close().await;
}
