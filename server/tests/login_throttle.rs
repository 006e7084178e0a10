//! The login throttle against guessing (issue 15, findings 1 and 5): attempts
//! are counted before any password is hashed, per user name at an address
//! and per address, so parallel guesses cannot slip past the count and an
//! attack on a name does not lock its user out elsewhere.

mod common;

use std::net::IpAddr;
use std::sync::Arc;

use chat_protocol::http::HttpError;
use chat_protocol::ErrorCode;
use common::{loopback, TestServer, PASSWORD};
use hyper::StatusCode;

fn creds(user: &str, password: &str) -> String {
    serde_json::json!({ "username": user, "password": password }).to_string()
}

/// `POST /api/login` from `source`: the status and the error code, if any.
async fn login_from(
    server: &TestServer,
    source: IpAddr,
    user: &str,
    password: &str,
) -> (StatusCode, Option<ErrorCode>) {
    let (status, _, body) = server
        .http_from(
            source,
            "POST",
            "/api/login",
            &[("content-type", "application/json")],
            &creds(user, password),
        )
        .await;
    let code = serde_json::from_str::<HttpError>(&body)
        .ok()
        .map(|e| e.code);
    (status, code)
}

/// Finding 1: the throttle was checked before a request waited for a hashing
/// slot and the failure recorded after it, so every guess queued meanwhile
/// passed the check: 1,000 parallel guesses were all hashed. Now at most the
/// limit are, and the rest are refused unhashed.
#[tokio::test]
async fn a_thousand_concurrent_guesses_check_at_most_the_limit() {
    const GUESSES: usize = 1_000;
    let server = Arc::new(TestServer::start().await);
    let limit = server.server_config().login_attempts;
    server.register("alice").await;
    let hashed_before = server.password_hashes();

    let guesses: Vec<_> = (0..GUESSES)
        .map(|i| {
            let server = server.clone();
            tokio::spawn(async move {
                login_from(&server, loopback(1), "alice", &format!("guess-{i:04}")).await
            })
        })
        .collect();
    let (mut refused, mut checked) = (0, 0);
    for guess in guesses {
        match guess.await.expect("task") {
            (StatusCode::UNAUTHORIZED, Some(ErrorCode::InvalidCredentials)) => checked += 1,
            (StatusCode::TOO_MANY_REQUESTS, Some(ErrorCode::TooManyAttempts))
            | (StatusCode::SERVICE_UNAVAILABLE, Some(ErrorCode::ServerBusy)) => refused += 1,
            other => panic!("unexpected answer to a guess: {other:?}"),
        }
    }
    let hashed = server.password_hashes() - hashed_before;
    assert!(
        checked <= limit as usize && hashed <= u64::from(limit),
        "{checked} guesses checked and {hashed} hashed; the limit is {limit}"
    );
    assert!(checked >= 1, "the throttle let none through");
    assert_eq!(checked + refused, GUESSES);
}

/// Finding 5: five wrong guesses a minute locked the named user out from
/// everywhere, and the address's count locked out everyone behind it. Now
/// the guesses count against the name *at the attacker's address*: the user
/// logs in from another address, and other users from the attacker's.
#[tokio::test]
async fn the_real_user_logs_in_from_a_clean_address_during_an_attack_on_their_name() {
    let server = TestServer::start().await;
    let limit = server.server_config().login_attempts;
    server.register("alice").await;
    server.register("bob").await;
    let attacker = loopback(66);

    let mut throttled = false;
    for i in 0..limit * 3 {
        match login_from(&server, attacker, "Alice", &format!("guess-{i:04}")).await {
            (StatusCode::UNAUTHORIZED, _) => assert!(!throttled, "a check after a refusal"),
            (StatusCode::TOO_MANY_REQUESTS, Some(ErrorCode::TooManyAttempts)) => throttled = true,
            other => panic!("unexpected answer to a guess: {other:?}"),
        }
    }
    assert!(throttled, "the attacker was never throttled");
    assert_eq!(
        login_from(&server, attacker, "alice", PASSWORD).await.0,
        StatusCode::TOO_MANY_REQUESTS,
        "the name stays locked at the attacker's address, whatever its letter case"
    );

    assert_eq!(
        login_from(&server, loopback(7), "alice", PASSWORD).await,
        (StatusCode::OK, None),
        "the real user, from an address that has not failed"
    );
    assert_eq!(
        login_from(&server, attacker, "bob", PASSWORD).await,
        (StatusCode::OK, None),
        "another user behind the attacker's address"
    );
}

/// The address's own count stops one address spraying guesses over many
/// names, each under its own limit; a right password gives its attempt back,
/// so the users of one busy address are not refused for logging in.
#[tokio::test]
async fn one_address_cannot_spray_guesses_over_every_name() {
    let server = TestServer::with(|c| c.login_attempts = 2).await;
    server.register("carol").await;
    let (sprayer, office) = (loopback(9), loopback(10));
    // Good logins do not use up the office's attempts.
    for _ in 0..30 {
        assert_eq!(
            login_from(&server, office, "carol", PASSWORD).await.0,
            StatusCode::OK
        );
    }
    // 2 guesses per name, 10 x 2 per address: the 11th name is refused unchecked.
    let mut refused_at = None;
    for name in 0..15 {
        for guess in 0..2 {
            let user = format!("user{name}");
            let (status, _) = login_from(&server, sprayer, &user, &format!("guess-{guess}")).await;
            if status == StatusCode::TOO_MANY_REQUESTS && refused_at.is_none() {
                refused_at = Some((name, guess));
            }
        }
    }
    assert_eq!(refused_at, Some((10, 0)), "refused from the 21st guess on");
    assert_eq!(
        login_from(&server, office, "carol", PASSWORD).await.0,
        StatusCode::OK,
        "another address is not limited by the sprayer's count"
    );
}

/// `Retry-After` of a login from `source` that must be refused with 429.
async fn refused_for(server: &TestServer, source: IpAddr, user: &str) -> u64 {
    let (status, headers, body) = server
        .http_from(
            source,
            "POST",
            "/api/login",
            &[("content-type", "application/json")],
            &creds(user, "wrong guess"),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds")
}

/// The backoff per (user, address) pair: a name that keeps filling its
/// window from one address is refused twice as long each time, while its
/// user still logs in from a clean address at once.
#[tokio::test]
async fn a_guesser_who_keeps_filling_the_window_waits_ever_longer_and_alone() {
    let server = TestServer::with(|c| {
        c.login_attempts = 2;
        c.login_window = std::time::Duration::from_secs(1);
    })
    .await;
    server.register("alice").await;
    let attacker = loopback(7);
    for wrong in 0..2 {
        let refused = login_from(&server, attacker, "alice", "wrong guess").await;
        assert_eq!(refused.0, StatusCode::UNAUTHORIZED, "guess {wrong}");
    }
    assert_eq!(
        refused_for(&server, attacker, "alice").await,
        1,
        "first full window"
    );
    // Waits out the window, polling (a refused login counts nothing).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, _) = login_from(&server, attacker, "alice", "wrong guess").await;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the window never ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, _) = login_from(&server, attacker, "alice", "wrong guess").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        refused_for(&server, attacker, "alice").await,
        2,
        "twice as long"
    );

    let (status, _) = login_from(&server, loopback(8), "alice", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "the user, from a clean address");
}

/// Behind a proxy that speaks the PROXY protocol (`--proxy-protocol-from`),
/// the throttle counts each client's own address, not the proxy's: a
/// guesser behind it uses up only their own attempts. A trusted proxy's
/// connection without the header is not served; others need none.
#[tokio::test]
async fn behind_a_proxy_each_client_is_counted_at_its_own_address() {
    let proxy = loopback(20);
    let server = TestServer::with(|c| {
        c.proxy_protocol_from = vec![proxy];
        c.login_attempts = 2;
    })
    .await;
    server.register("alice").await;
    let login = |client: &'static str, password: &'static str| {
        let server = &server;
        async move {
            let body = creds("alice", password);
            let client = client.parse().expect("addr");
            let headers = [("content-type", "application/json")];
            server
                .http_via_proxy(proxy, client, "POST", "/api/login", &headers, &body)
                .await
                .0
        }
    };
    // The guesser's per-address budget is 2 x 10 attempts; past it, only
    // the guesser is refused.
    for _ in 0..20 {
        login("203.0.113.7:5000", "wrong guess").await;
    }
    assert_eq!(
        login("203.0.113.7:5001", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login("198.51.100.9:6000", PASSWORD).await,
        StatusCode::OK,
        "another client"
    );

    // Without the header, the proxy's connection is closed unserved.
    let mut bare = server.tcp_from(proxy).await;
    tokio::io::AsyncWriteExt::write_all(&mut bare, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    // Closed, or reset for the bytes it left unread: either way, no answer.
    let _closed = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut bare, &mut answer),
    )
    .await
    .expect("closed in time");
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
    // A client not behind the proxy is served as ever.
    assert_eq!(
        login_from(&server, loopback(21), "alice", PASSWORD).await.0,
        StatusCode::OK
    );
}
