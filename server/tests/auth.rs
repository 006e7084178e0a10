//! Authentication before the upgrade: login, registration, sessions, tickets,
//! Origin.

mod common;

use std::time::Duration;

use chat_protocol::http::HttpError;
use chat_protocol::ErrorCode;
use common::{TestServer, PASSWORD};
use hyper::{HeaderMap, StatusCode};

fn creds(user: &str, password: &str) -> String {
    serde_json::json!({ "username": user, "password": password }).to_string()
}

fn code(json: serde_json::Value) -> ErrorCode {
    serde_json::from_value::<HttpError>(json.clone())
        .unwrap_or_else(|e| panic!("not an error body: {json}: {e}"))
        .code
}

#[tokio::test]
async fn health_check_answers() {
    let server = TestServer::start().await;
    let (status, _, body) = server.http("GET", "/healthz", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "ok");
}

#[tokio::test]
async fn login_gives_a_ticket_only_for_the_right_password() {
    let server = TestServer::start().await;
    server.register("alice").await;

    let (status, json) = server
        .post_json("/api/login", &creds("alice", PASSWORD))
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let ticket = json["ticket"].as_str().expect("ticket");
    assert!(ticket.len() >= 32, "at least 128 bits, hex: {ticket}");
    assert_eq!(json["expires_in"], 30);

    // Letter case of the name does not matter; the canonical name is used.
    let (status, _) = server
        .post_json("/api/login", &creds("ALICE", PASSWORD))
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, json) = server
        .post_json("/api/login", &creds("alice", "wrong password"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(code(json), ErrorCode::InvalidCredentials);
    let (status, json) = server
        .post_json("/api/login", &creds("nobody", PASSWORD))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(code(json), ErrorCode::InvalidCredentials);

    let (status, json) = server.post_json("/api/login", "{\"username\": 5}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(json), ErrorCode::InvalidRequest);
    let huge = creds("alice", &"p".repeat(20_000));
    let (status, json) = server.post_json("/api/login", &huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(code(json), ErrorCode::InvalidRequest);
    let (status, _, body) = server
        .http("POST", "/api/login", &[], &creds("alice", PASSWORD))
        .await;
    assert_eq!(
        status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "no JSON content type"
    );
    assert_eq!(
        code(serde_json::from_str(&body).expect("json")),
        ErrorCode::InvalidRequest
    );
}

#[tokio::test]
async fn registration_validates_and_refuses_duplicates() {
    let server = TestServer::start().await;
    server.register("alice").await;
    let (status, json) = server
        .post_json("/api/register", &creds("Alice", PASSWORD))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(code(json), ErrorCode::UsernameTaken);

    let (status, json) = server
        .post_json("/api/register", &creds("bad name", PASSWORD))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(json), ErrorCode::InvalidRequest);

    let (status, json) = server
        .post_json("/api/register", &creds("bob", "short"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(json), ErrorCode::InvalidRequest);
}

#[tokio::test]
async fn registration_can_be_turned_off() {
    let server = TestServer::with(|c| c.disable_registration = true).await;
    let (status, json) = server
        .post_json("/api/register", &creds("alice", PASSWORD))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(code(json), ErrorCode::RegistrationDisabled);
}

#[tokio::test]
async fn missing_unknown_and_reused_tickets_get_401() {
    let server = TestServer::start().await;
    server.register("alice").await;

    assert_eq!(
        server.ws(None, None).await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        server.ws(Some("0123456789abcdef"), None).await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );

    let ticket = server.login("alice").await;
    let first = server
        .ws(Some(&ticket), None)
        .await
        .expect("first use works");
    assert_eq!(
        server.ws(Some(&ticket), None).await.err(),
        Some(StatusCode::UNAUTHORIZED),
        "a ticket works once"
    );
    common::Client {
        ws: first,
        user: "alice".into(),
    }
    .close()
    .await;

    // The refusal is a JSON error body, before any upgrade.
    let ticket = server.login("alice").await;
    let _ = server.ws(Some(&ticket), None).await.expect("works");
    let (status, _, body) = server
        .http(
            "GET",
            &format!("/ws?ticket={ticket}"),
            &upgrade_headers(),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        code(serde_json::from_str(&body).expect("json")),
        ErrorCode::InvalidTicket
    );
}

#[tokio::test]
async fn a_plain_get_of_the_socket_path_is_a_json_error() {
    let server = TestServer::start().await;
    let (status, _, body) = server.http("GET", "/ws?ticket=x", &[], "").await;
    assert!(status.is_client_error(), "{status}");
    assert_eq!(
        code(serde_json::from_str(&body).expect("json")),
        ErrorCode::InvalidRequest
    );
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_get_json_errors() {
    let server = TestServer::start().await;
    let (status, _, body) = server.http("GET", "/nope", &[], "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        code(serde_json::from_str(&body).expect("json")),
        ErrorCode::InvalidRequest
    );
    let (status, headers, body) = server.http("GET", "/api/login", &[], "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers["allow"], "POST");
    assert_eq!(
        code(serde_json::from_str(&body).expect("json")),
        ErrorCode::InvalidRequest
    );
}

#[tokio::test]
async fn expired_tickets_get_401() {
    let server = TestServer::start().await;
    server.register("alice").await;
    let fresh = server.login("alice").await;
    let stale = server.login("alice").await;
    server.clock.advance(Duration::from_millis(29_999));
    server.client_with("alice", &fresh).await.close().await;
    server.clock.advance(Duration::from_millis(1));
    let (status, _, body) = server
        .http(
            "GET",
            &format!("/ws?ticket={stale}"),
            &upgrade_headers(),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "30 s after the login");
    assert_eq!(
        code(serde_json::from_str(&body).expect("json")),
        ErrorCode::InvalidTicket
    );
}

#[tokio::test]
async fn foreign_browser_origins_get_403_and_keep_their_ticket() {
    let server =
        TestServer::with(|c| c.allowed_origins = vec!["https://chat.example".into()]).await;
    server.register("alice").await;

    let ticket = server.login("alice").await;
    assert_eq!(
        server
            .ws(Some(&ticket), Some("https://evil.example"))
            .await
            .err(),
        Some(StatusCode::FORBIDDEN)
    );
    // Refused before the ticket was looked at, so it still works.
    let own = server.http_origin();
    let ws = server
        .ws(Some(&ticket), Some(&own))
        .await
        .expect("own origin");
    common::Client {
        ws,
        user: "alice".into(),
    }
    .close()
    .await;

    let ticket = server.login("alice").await;
    let ws = server
        .ws(Some(&ticket), Some("https://chat.example"))
        .await
        .expect("allow-listed origin");
    common::Client {
        ws,
        user: "alice".into(),
    }
    .close()
    .await;
}

/// Issue 15, finding 9: with `--public-url`, the server's own origin is the
/// operator's, not whatever the `Host` header names (which a DNS-rebinding
/// page controls): the Host-derived origin no longer passes, the public one
/// does, whatever the Host.
#[tokio::test]
async fn a_public_url_wins_over_the_host_header() {
    let server = TestServer::with(|c| {
        c.public_url = Some("https://chat.example.com".into());
    })
    .await;
    server.register("alice").await;
    let ticket = server.login("alice").await;
    assert_eq!(
        server
            .ws(Some(&ticket), Some(&server.http_origin()))
            .await
            .err(),
        Some(StatusCode::FORBIDDEN),
        "the origin the Host header would make is not the server's any more"
    );
    let ws = server
        .ws(Some(&ticket), Some("https://chat.example.com"))
        .await
        .expect("the public origin");
    common::Client {
        ws,
        user: "alice".into(),
    }
    .close()
    .await;
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled() {
    let server = TestServer::with(|c| c.login_attempts = 3).await;
    server.register("alice").await;
    for _ in 0..3 {
        let (status, _) = server
            .post_json("/api/login", &creds("alice", "guess-guess"))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, headers, body) = server
        .http(
            "POST",
            "/api/login",
            &[("content-type", "application/json")],
            &creds("alice", PASSWORD),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    assert_eq!(
        code(serde_json::from_str(&body).expect("json")),
        ErrorCode::TooManyAttempts
    );
    let retry: u64 = headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");

    // Another user from the same address is not locked out by alice's lock.
    server.register("bob").await;
    let (status, _) = server
        .post_json("/api/login", &creds("bob", PASSWORD))
        .await;
    assert_eq!(status, StatusCode::OK);
}

/// Checks a refusal of a session: 401, a JSON body with `invalid_session`,
/// and the bearer challenge.
fn assert_invalid_session(answer: (StatusCode, HeaderMap, String), what: &str) {
    let (status, headers, body) = answer;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: {body}: {e}"));
    assert_eq!(code(json), ErrorCode::InvalidSession, "{what}");
    assert_eq!(headers["www-authenticate"], "Bearer", "{what}");
}

#[tokio::test]
async fn a_session_mints_one_time_tickets_for_its_user() {
    let server = TestServer::start().await;
    server.register("alice").await;
    server.register("bob").await;

    let login = server.login_response("alice").await;
    assert_eq!(login.session.len(), 64, "256 bits, hex: {}", login.session);
    assert!(login.session.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(login.session_expires_in, 24 * 3600);
    assert_ne!(login.session, login.ticket);

    let first = server.ticket(&login.session).await;
    assert_eq!(first.expires_in, 30);
    let second = server.ticket(&login.session).await;
    assert_ne!(first.ticket, second.ticket, "each call mints a new ticket");
    assert_ne!(first.ticket, login.ticket);

    // What a client with a JSON library typically sends: a content type, and
    // an empty body; the scheme in any letter case.
    let (status, _, body) = server
        .http(
            "POST",
            "/api/ticket",
            &[
                ("authorization", &format!("bearer {}", login.session)),
                ("content-type", "application/json"),
            ],
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let alice = server.client_with("alice", &first.ticket).await;
    // Used up like any ticket: the refusal is the usual JSON error.
    let (status, _, body) = server
        .http(
            "GET",
            &format!("/ws?ticket={}", first.ticket),
            &upgrade_headers(),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        code(serde_json::from_str(&body).expect("json")),
        ErrorCode::InvalidTicket
    );
    alice.close().await;

    // Another user's session mints tickets for that user, not the first.
    let bob = server.login_response("bob").await;
    let ticket = server.ticket(&bob.session).await.ticket;
    server.client_with("bob", &ticket).await.close().await;
    let alice = server.client_with("alice", &second.ticket).await;
    alice.close().await;
}

#[tokio::test]
async fn missing_malformed_and_unknown_sessions_get_401() {
    let server = TestServer::start().await;
    server.register("alice").await;
    let login = server.login_response("alice").await;

    for path in ["/api/ticket", "/api/logout"] {
        assert_invalid_session(server.http("POST", path, &[], "").await, "no header");
        for bad in [
            "Basic YWxpY2U6Y29ycmVjdCBob3JzZSBiYXR0ZXJ5",
            format!("Basic {}", login.session).as_str(),
            "Bearer",
            "Bearer ",
            format!("Bearer {} extra", login.session).as_str(),
            format!("Token {}", login.session).as_str(),
        ] {
            let answer = server
                .http("POST", path, &[("authorization", bad)], "")
                .await;
            assert_invalid_session(answer, &format!("{path} {bad:?}"));
        }
        for bad in ["garbage", "0".repeat(64).as_str(), login.ticket.as_str()] {
            let answer = server.post_bearer(path, bad).await;
            assert_invalid_session(answer, &format!("{path} Bearer {bad}"));
        }
    }
    // None of that ended the real session.
    server.ticket(&login.session).await;
}

#[tokio::test]
async fn logout_ends_the_session_its_unused_tickets_and_its_sockets() {
    let server = TestServer::start().await;
    server.register("alice").await;
    let login = server.login_response("alice").await;
    let other = server.login_response("alice").await;
    // Open on the session: a socket from its login ticket and one minted by it.
    let mut open = server.client_with("alice", &login.ticket).await;
    let minted = server.ticket(&login.session).await;
    let mut open_minted = server.client_with("alice", &minted.ticket).await;
    let unused = server.ticket(&login.session).await;
    // Another session of the same user, with a socket of its own.
    let mut elsewhere = server.client_for("alice").await;
    let other_unused = server.ticket(&other.session).await;

    let (status, _, body) = server.post_bearer("/api/logout", &login.session).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(body, "");
    assert_invalid_session(
        server.post_bearer("/api/ticket", &login.session).await,
        "ticket after logout",
    );
    assert_invalid_session(
        server.post_bearer("/api/logout", &login.session).await,
        "second logout",
    );

    // Issue 15, finding 9: a ticket minted before the logout opened a socket.
    assert_eq!(
        server.ws(Some(&unused.ticket), None).await.err(),
        Some(StatusCode::UNAUTHORIZED),
        "the session's unused ticket ended with it"
    );
    // Its open sockets close with 4001, documented.
    for socket in [&mut open, &mut open_minted] {
        let close = socket.expect_close().await;
        assert_eq!(
            (u16::from(close.code), close.reason.as_str()),
            (4001, "logged out")
        );
    }
    // The user's other session goes on: its socket and its ticket.
    elsewhere.join("still-here").await;
    server
        .client_with("alice", &other_unused.ticket)
        .await
        .close()
        .await;
    server.ticket(&other.session).await;
    elsewhere.close().await;
}

#[tokio::test]
async fn sessions_expire() {
    let mut server = TestServer::with(|c| c.session_ttl = Duration::from_secs(3600)).await;
    server.register("alice").await;
    let login = server.login_response("alice").await;
    let unused = server.login_response("alice").await;
    assert_eq!(login.session_expires_in, 3600);
    server.clock.advance(Duration::from_millis(3_599_999));
    server.ticket(&login.session).await;
    server.clock.advance(Duration::from_millis(1));
    assert_invalid_session(
        server.post_bearer("/api/ticket", &login.session).await,
        "expired session",
    );
    // Forgotten on that refusal; logout says so too.
    assert_invalid_session(
        server.post_bearer("/api/logout", &login.session).await,
        "logout of an expired session",
    );
    // Expired is expired for a server started later, too.
    server.restart().await;
    assert_invalid_session(
        server.post_bearer("/api/ticket", &unused.session).await,
        "expired session after a restart",
    );
}

#[tokio::test]
async fn sessions_survive_a_restart_and_need_no_password() {
    let mut server = TestServer::start().await;
    server.register("alice").await;
    let login = server.login_response("alice").await;
    assert!(server.password_hashes() >= 1, "the login hashed a password");

    server.restart().await;
    let minted = server.ticket(&login.session).await;
    assert_eq!(minted.expires_in, 30);
    let mut alice = server.client_with("alice", &minted.ticket).await;
    alice.join("general").await;
    alice.close().await;
    // The login's ticket did not survive: tickets live in memory.
    assert_eq!(
        server.ws(Some(&login.ticket), None).await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        server.password_hashes(),
        0,
        "the new server checked no password"
    );
}

#[tokio::test]
async fn logout_ends_a_session_for_good_across_restarts() {
    let mut server = TestServer::start().await;
    server.register("alice").await;
    let before = server.login_response("alice").await;
    let after = server.login_response("alice").await;
    let kept = server.login_response("alice").await;

    let (status, _, _) = server.post_bearer("/api/logout", &before.session).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    server.restart().await;
    assert_invalid_session(
        server.post_bearer("/api/ticket", &before.session).await,
        "logged out before the restart",
    );

    let (status, _, _) = server.post_bearer("/api/logout", &after.session).await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "a restored session logs out"
    );
    server.restart().await;
    for session in [&before.session, &after.session] {
        assert_invalid_session(
            server.post_bearer("/api/ticket", session).await,
            "logged out, two restarts on",
        );
        assert_invalid_session(
            server.post_bearer("/api/logout", session).await,
            "logged out already",
        );
    }
    server.ticket(&kept.session).await;
}

#[tokio::test]
async fn the_stored_sessions_hold_no_plain_token() {
    use sha2::{Digest, Sha256};

    let server = TestServer::start().await;
    server.register("alice").await;
    let login = server.login_response("alice").await;
    let db_path = server.data_dir.path().join(chat_server::accounts::DB_FILE);

    let db = rusqlite::Connection::open(&db_path).expect("opens chat.db");
    let mut query = db
        .prepare("SELECT * FROM sessions")
        .expect("sessions table");
    let columns = query.column_count();
    let rows: Vec<Vec<rusqlite::types::Value>> = query
        .query_map([], |row| (0..columns).map(|i| row.get(i)).collect())
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(rows.len(), 1, "the login stored its session");
    let hash: [u8; 32] = Sha256::digest(login.session.as_bytes()).into();
    let token_bytes: Vec<u8> = (0..login.session.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&login.session[i..i + 2], 16).expect("hex"))
        .collect();
    let mut found_hash = false;
    for value in &rows[0] {
        let (text, bytes) = match value {
            rusqlite::types::Value::Text(t) => (t.clone(), t.as_bytes().to_vec()),
            rusqlite::types::Value::Blob(b) => (String::from_utf8_lossy(b).into_owned(), b.clone()),
            other => (format!("{other:?}"), Vec::new()),
        };
        assert!(!text.contains(&login.session), "a column holds the token");
        assert_ne!(bytes, token_bytes, "a column holds the token's bytes");
        found_hash |= bytes == hash;
    }
    assert!(found_hash, "the row is keyed by the token's SHA-256");

    // Nor anywhere in the files, the write-ahead log included.
    let mut files = Vec::new();
    for suffix in ["", "-wal"] {
        let path = db_path.with_file_name(format!("{}{suffix}", chat_server::accounts::DB_FILE));
        if let Ok(bytes) = std::fs::read(&path) {
            files.extend(bytes);
        }
    }
    let contains = |needle: &[u8]| files.windows(needle.len()).any(|w| w == needle);
    assert!(
        contains(&hash),
        "the scan reads where the session is stored"
    );
    assert!(
        !contains(login.session.as_bytes()),
        "the token is in chat.db"
    );
    assert!(!contains(&token_bytes), "the token's bytes are in chat.db");
}

#[tokio::test]
async fn a_session_keeps_working_while_password_logins_are_throttled() {
    let server = TestServer::with(|c| c.login_attempts = 3).await;
    server.register("alice").await;
    let login = server.login_response("alice").await;
    for _ in 0..3 {
        let (status, _) = server
            .post_json("/api/login", &creds("alice", "guess-guess"))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = server
        .post_json("/api/login", &creds("alice", PASSWORD))
        .await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the user is locked at this address"
    );

    let minted = server.ticket(&login.session).await;
    server
        .client_with("alice", &minted.ticket)
        .await
        .close()
        .await;
}

fn upgrade_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("connection", "upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ]
}

/// Issue 15, finding 6: a request body must arrive within
/// `--request-timeout`, or the answer is 408 (hyper times out only the head).
#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server =
        TestServer::with(|c| c.request_timeout = std::time::Duration::from_millis(500)).await;
    for path in ["/api/login", "/api/register"] {
        let mut tcp = tokio::net::TcpStream::connect(server.addr)
            .await
            .expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: 60\r\n\r\n{{\"username\":",
            server.addr
        );
        tcp.write_all(head.as_bytes()).await.expect("write");
        // The rest of the body never comes.
        let mut answer = Vec::new();
        tokio::time::timeout(common::WAIT, tcp.read_to_end(&mut answer))
            .await
            .expect("answered and closed in time")
            .expect("read");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(
            answer.contains(r#""code":"invalid_request""#),
            "{path}: {answer}"
        );
    }
    // A body sent whole is served as before.
    let (status, _) = server
        .post_json("/api/register", &creds("alice", PASSWORD))
        .await;
    assert_eq!(status, StatusCode::CREATED);
}
