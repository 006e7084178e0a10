//! Caps on connections, answered before any work, and descriptors kept in
//! reserve (issue 15, finding 6): 600 slow requests against a server with
//! 512 file descriptors made `/healthz` time out while the accept loop logged
//! errors ten times a second, and one login opened 2,000 sockets.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{binary, loopback, Remote, TestServer};
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the server writes on `tcp` before closing it, within 5 s.
async fn answer(mut tcp: TcpStream) -> String {
    let mut text = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut text))
        .await
        .expect("answered and closed in time")
        .expect("read");
    String::from_utf8_lossy(&text).into_owned()
}

/// `GET /healthz` from `source` on a connection of its own: status line and body.
async fn health(server: &Remote, source: IpAddr) -> String {
    let mut tcp = server.tcp_from(source).await;
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: chat\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    answer(tcp).await
}

#[tokio::test]
async fn at_a_low_open_file_limit_stalled_connections_never_take_healthz_down() {
    const OPEN_FILES: u64 = 256;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("server.log");
    let (_child, server) = binary::start_with_files(
        &dir.path().join("data"),
        &log,
        Some(OPEN_FILES),
        // Long enough that no stalled request times out during the test.
        &["--request-timeout", "60s"],
    )
    .await;

    // 300 slow logins from 20 addresses, more than the 192 connections the
    // limit leaves: each sends its head and one byte of its body, then stalls.
    let mut stalled = Vec::new();
    for i in 0..300u16 {
        let source = loopback(u8::try_from(10 + i % 20).expect("fits"));
        let mut tcp = server.tcp_from(source).await;
        let head = "POST /api/login HTTP/1.1\r\nhost: chat\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{";
        // A refused one may be closed already: its write can fail.
        let _ = tcp.write_all(head.as_bytes()).await;
        stalled.push(tcp);
    }

    for _ in 0..5 {
        let answer = health(&server, loopback(250)).await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"),
            "/healthz at the limit: {answer:?}"
        );
    }
    // Past the cap, a connection is told so at once, nothing read.
    let refused = answer(server.tcp_from(loopback(251)).await).await;
    assert!(
        refused.starts_with("HTTP/1.1 503") && refused.contains(r#""code":"too_many_connections""#),
        "{refused:?}"
    );

    let accept_errors = std::fs::read_to_string(&log)
        .expect("log")
        .lines()
        .filter(|l| l.contains("accept failed"))
        .count();
    let log_text = std::fs::read_to_string(&log).expect("log");
    assert_eq!(
        accept_errors,
        0,
        "the accept loop ran out of descriptors: {}",
        log_text
            .lines()
            .filter(|l| l.contains("accept failed") || l.contains("connection caps"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    drop(stalled);
}

#[tokio::test]
async fn caps_per_address_and_per_user_answer_before_any_work() {
    let server = TestServer::with(|c| {
        c.max_connections_per_address = 3;
        c.max_connections_per_user = 2;
    })
    .await;
    server.register("alice").await;

    // Three idle connections from one address; the fourth is refused at once.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(server.tcp_from(loopback(5)).await);
    }
    let refused = answer(server.tcp_from(loopback(5)).await).await;
    assert!(
        refused.starts_with("HTTP/1.1 429")
            && refused.contains("retry-after: 5")
            && refused.contains(r#""code":"too_many_connections""#),
        "{refused:?}"
    );
    assert_eq!(
        health(&server, loopback(6)).await.lines().next(),
        Some("HTTP/1.1 200 OK"),
        "another address is not capped"
    );
    drop(idle.pop());
    // The freed slot is taken again (the close reaches the server first).
    let mut again = None;
    for _ in 0..50 {
        let tcp = server.tcp_from(loopback(5)).await;
        let mut peek = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(100), tcp.peek(&mut peek)).await {
            Err(_) => {
                again = Some(tcp);
                break;
            }
            Ok(_) => tokio::task::yield_now().await,
        }
    }
    assert!(again.is_some(), "a slot freed by a close is never reused");
    drop((idle, again));

    // Two sockets of alice; a third upgrade is refused, and allowed once one closes.
    let first = server.client_for("alice").await;
    let second = server.client_for("alice").await;
    let ticket = server.login("alice").await;
    assert_eq!(
        server.ws(Some(&ticket), None).await.err(),
        Some(StatusCode::TOO_MANY_REQUESTS)
    );
    first.close().await;
    let mut third = None;
    for _ in 0..50 {
        let ticket = server.login("alice").await;
        if let Ok(ws) = server.ws(Some(&ticket), None).await {
            third = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(third.is_some(), "alice's closed socket still counted");
    second.close().await;
}

/// The per-user cap holds against upgrades racing each other: the check
/// and the count were two steps (the count came once the upgrade was done),
/// so concurrent upgrades of one user could all pass.
#[tokio::test]
async fn concurrent_upgrades_of_one_user_open_at_most_the_cap() {
    const CAP: usize = 4;
    let server = std::sync::Arc::new(TestServer::with(|c| c.max_connections_per_user = CAP).await);
    server.register("alice").await;
    let session = server.login_response("alice").await.session;
    let mut tickets = Vec::new();
    for _ in 0..24 {
        tickets.push(server.ticket(&session).await.ticket);
    }
    let upgrades: Vec<_> = tickets
        .into_iter()
        .map(|ticket| {
            let server = server.clone();
            tokio::spawn(async move { server.ws(Some(&ticket), None).await })
        })
        .collect();
    let (mut open, mut refused) = (Vec::new(), 0);
    for upgrade in upgrades {
        match upgrade.await.expect("task") {
            Ok(ws) => open.push(ws),
            Err(status) => {
                assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
                refused += 1;
            }
        }
    }
    assert_eq!((open.len(), refused), (CAP, 24 - CAP));
}
