//! `--metrics-listen`: a real server's Prometheus exposition after scripted
//! traffic, each metric checked against what the traffic did, and the text
//! validated by `promtool check metrics` (Debian's `prometheus` package).

mod common;

use chat_protocol::{ClientEvent, ServerEvent};
use common::scrape::{scrape, until};
use common::TestServer;
use hyper::StatusCode;

fn resume(room: &str, since: u64, epoch: &str) -> ClientEvent {
    ClientEvent::JoinRoom {
        room: room.into(),
        since: Some(since),
        epoch: Some(epoch.into()),
    }
}

#[tokio::test]
async fn metrics_follow_scripted_traffic_and_pass_promtool() {
    let server = TestServer::with(|c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().expect("addr"));
        c.login_attempts = 2;
        c.retain_messages = Some(3);
        c.send_queue = 8;
        c.rate = 1e6;
        c.burst = 1_000_000;
        c.max_message_size = 128 * 1024;
    })
    .await;
    let metrics = server.metrics.expect("metrics listener");
    let before = scrape(metrics).await;
    assert_eq!(before.get("chat_connections"), 0.0);
    assert_eq!(before.get("chat_messages_stored_total"), 0.0);

    // Logins: one right, two wrong, then the throttle (for a name no one
    // has, so that the others still log in).
    server.register("alice").await;
    server.register("bob").await;
    let session = server.login_response("alice").await.session;
    let wrong = r#"{"username":"eve","password":"not the password"}"#;
    for expected in [401, 401, 429] {
        let (status, _) = server.post_json("/api/login", wrong).await;
        assert_eq!(status.as_u16(), expected);
    }
    // A ticket from the session is no login; a bogus ticket is refused.
    server.ticket(&session).await;
    assert_eq!(
        server.ws(Some("no-such-ticket"), None).await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    let after_logins = scrape(metrics).await;
    assert_eq!(after_logins.get(r#"chat_logins_total{outcome="ok"}"#), 1.0);
    assert_eq!(
        after_logins.get(r#"chat_logins_total{outcome="bad_credentials"}"#),
        2.0
    );
    assert_eq!(
        after_logins.get(r#"chat_logins_total{outcome="throttled"}"#),
        1.0
    );
    assert_eq!(after_logins.get("chat_session_tickets_total"), 1.0);
    assert_eq!(
        after_logins.get(r#"chat_tickets_refused_total{reason="unknown"}"#),
        1.0
    );

    // Two members, five messages, one refusal.
    let mut alice = server.client_for("alice").await;
    let mut bob = server.client_for("bob").await;
    alice.join("lobby").await;
    bob.join("lobby").await;
    alice.next().await; // bob joined
    let joined = until(metrics, "chat_room_memberships", |v| v == 2.0).await;
    assert_eq!(joined.get("chat_connections"), 2.0);
    assert_eq!(joined.get("chat_users_connected"), 2.0);
    assert_eq!(joined.get("chat_rooms_active"), 1.0);
    for n in 1..=5 {
        alice
            .send_acked("lobby", &format!("m{n}"), &format!("c{n}"))
            .await;
        bob.wait_for(|e| matches!(e, ServerEvent::NewMessage(m) if m.seq == n))
            .await;
    }
    // A resend of a known client_id is acked again but stored once.
    assert_eq!(alice.send_acked("lobby", "m5", "c5").await, 5);
    alice.say("elsewhere", "not a member").await;
    alice
        .wait_for(|e| matches!(e, ServerEvent::Error { .. }))
        .await;
    alice
        .send(ClientEvent::LeaveRoom {
            room: "elsewhere".into(),
        })
        .await;
    alice
        .wait_for(|e| matches!(e, ServerEvent::Error { .. }))
        .await;
    // The hub counts a fan-out, and drops the resend's second publish, on
    // the log's writer just after the acks went out: wait for the last.
    let sent = until(metrics, "chat_hub_duplicates_dropped_total", |v| v == 1.0).await;
    assert_eq!(sent.get("chat_messages_stored_total"), 5.0);
    assert_eq!(sent.get("chat_message_append_seconds_count"), 6.0);
    assert!(sent.get("chat_log_commit_batch_size_count") >= 1.0);
    assert!(sent.get("chat_log_commit_batch_size_sum") >= 6.0);
    // Each of five messages to two members (the resend is a duplicate the hub drops).
    assert_eq!(sent.get("chat_deliveries_total"), 10.0);
    assert_eq!(
        sent.get(r#"chat_requests_rejected_total{code="not_in_room"}"#),
        2.0
    );
    assert_eq!(
        sent.get(r#"chat_messages_rejected_total{code="not_in_room"}"#),
        1.0
    );
    assert!(sent.get(r#"chat_request_duration_seconds_count{type="send_message"}"#) >= 7.0);
    assert_eq!(
        sent.get(r#"chat_request_duration_seconds_count{type="join_room"}"#),
        2.0
    );
    // Sampled: each connection's first batch at least.
    assert!(sent.get("chat_send_queue_depth_count") >= 2.0);

    // Resumes: exact (after seq 3, within what retention keeps), with a gap
    // (from 0: retention kept only 3..5), and from another epoch.
    let epoch = match bob.send_wait_joined("lobby").await {
        ServerEvent::Joined { epoch, .. } => epoch,
        other => panic!("{other:?}"),
    };
    let mut carol = server.client_for("bob").await;
    carol.send(resume("lobby", 3, &epoch)).await;
    carol
        .wait_for(|e| matches!(e, ServerEvent::Joined { .. }))
        .await;
    let mut dave = server.client_for("bob").await;
    dave.send(resume("lobby", 0, &epoch)).await;
    dave.wait_for(|e| matches!(e, ServerEvent::HistoryGap { .. }))
        .await;
    dave.wait_for(|e| matches!(e, ServerEvent::Joined { .. }))
        .await;
    let mut erin = server.client_for("bob").await;
    erin.send(resume("lobby", 3, "another-epoch")).await;
    erin.wait_for(|e| matches!(e, ServerEvent::Joined { .. }))
        .await;
    // A resume is counted once its catch-up has handed over, just after
    // its `joined` went out.
    for outcome in ["exact", "gap", "new_epoch"] {
        let series = format!(r#"chat_resumes_total{{outcome="{outcome}"}}"#);
        until(metrics, &series, |v| v == 1.0).await;
    }
    let resumed = scrape(metrics).await;
    // 4 and 5 to carol; 3, 4 and 5 to dave.
    assert_eq!(resumed.get("chat_resume_replayed_messages_total"), 5.0);
    assert_eq!(resumed.get("chat_connections"), 5.0);
    assert_eq!(
        resumed.get("chat_users_connected"),
        2.0,
        "three more of bob's"
    );
    // Only the stalled client below may fall behind.
    for client in [bob, carol, dave, erin] {
        client.close().await;
    }

    // A client that never reads is dropped as a slow consumer.
    let mut stalled = server.client("stalled").await;
    stalled.join("lobby").await;
    let body = "y".repeat(64 * 1024);
    let mut dropped = false;
    for n in 0..2000 {
        if dropped {
            break;
        }
        let text = format!("{n}:{body}");
        alice.say("lobby", &text).await;
        loop {
            match alice.next().await {
                ServerEvent::NewMessage(m) if m.text == text => break,
                ServerEvent::MemberLeft { user, .. } if user == "stalled" => dropped = true,
                _ => {}
            }
        }
    }
    assert!(dropped, "the stalled client was never dropped");
    let slow = until(metrics, "chat_slow_consumer_disconnects_total", |v| {
        v == 1.0
    })
    .await;
    assert_eq!(
        slow.get(r#"chat_server_closes_total{code="1008",reason="slow_consumer"}"#),
        1.0
    );
    assert_eq!(
        slow.get(r#"chat_disconnects_total{reason="client_closed"}"#),
        4.0
    );
    drop(stalled);
    alice.close().await;
    until(metrics, "chat_connections", |v| v == 0.0).await;
    // A connection leaves the roster last, once it has ended.
    let last = until(metrics, "chat_users_connected", |v| v == 0.0).await;
    // Every connection handed its byte count over as it ended: at least the
    // stalled client's share of 64 KiB messages.
    assert!(last.get("chat_sent_bytes_total") > 64.0 * 1024.0 * 8.0);
    assert_eq!(last.get("chat_room_memberships"), 0.0);
    assert_eq!(last.get("chat_rooms_active"), 0.0);

    // No client's words in any label: user and room names are unbounded.
    for word in ["alice", "bob", "stalled", "lobby", "elsewhere"] {
        assert!(!last.text.contains(word), "{word} in the exposition");
    }
    promtool_accepts(&last.text).await;

    // docs/metrics.md describes what is served, and serves what it describes
    // (all but its cluster section, which server/tests/cluster.rs checks).
    last.assert_documented();
    let doc = common::scrape::metrics_doc();
    let single = &doc[..doc.find("## Cluster").expect("a cluster section")];
    let served = last.families();
    for line in single.lines().filter(|l| l.starts_with("| `chat_")) {
        let name = line.split('`').nth(1).expect("a metric name");
        assert!(
            served.contains(&name),
            "docs/metrics.md names {name}, which is not served"
        );
    }
}

#[tokio::test]
async fn metrics_are_off_unless_asked_for() {
    let server = TestServer::start().await;
    assert!(server.metrics.is_none());
    // Nor on the chat port.
    let (status, _, _) = server.http("GET", "/metrics", &[], "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// `promtool check metrics` reads the exposition on stdin; it fails on a
/// malformed one and, as a linter, on names that break the conventions.
async fn promtool_accepts(text: &str) {
    let mut command = tokio::process::Command::new("promtool");
    command.args(["check", "metrics"]);
    let Ok(out) = common::run_with_input(&mut command, text).await else {
        chat_test_engines::missing(
            "promtool",
            "apt-get install --no-install-recommends prometheus",
        );
        return;
    };
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
