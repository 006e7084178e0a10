//! `chat-server admin`, the real binary, against a server running on the same
//! data directory (an in-process server: its sockets, sessions and stores are
//! the real ones) or the same PostgreSQL database (real server processes).

mod common;

use std::path::Path;
use std::process::Output;

use chat_protocol::ServerEvent;
use common::binary::BIN;
use common::cluster::{Engines, Node};
use common::scrape::until;
use common::{Remote, TestServer, PASSWORD};
use hyper::StatusCode;
use serde_json::Value;
use tokio::process::Command;

/// Exit codes, as `chat-server admin --help` documents them.
const NO_SUCH_USER: i32 = 3;
const UNREACHABLE: i32 = 4;
const REFUSED: i32 = 5;
const USAGE: i32 = 2;

/// Where an admin command acts: the flags that name the store.
enum On<'a> {
    DataDir(&'a Path),
    Database(&'a str),
}

/// Runs `chat-server <store flags> admin <args>`, writing `stdin` to it.
async fn admin(on: &On<'_>, args: &[&str], stdin: &str) -> Output {
    let mut command = Command::new(BIN);
    match on {
        On::DataDir(dir) => command.arg("--data-dir").arg(dir),
        On::Database(url) => command.args(["--database-url", url]),
    };
    command
        .arg("admin")
        .args(args)
        // The test's own environment must not choose the store or retention.
        .env_remove("CHAT_DATA_DIR")
        .env_remove("CHAT_DATABASE_URL")
        .env_remove("CHAT_RETAIN_MESSAGES")
        .env_remove("CHAT_RETAIN_FOR");
    common::run_with_input(&mut command, stdin)
        .await
        .expect("spawn chat-server admin")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs an admin command that must succeed; returns its stdout.
async fn ok(on: &On<'_>, args: &[&str]) -> String {
    let output = admin(on, args, "").await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "admin {args:?} failed: {}",
        stderr(&output)
    );
    stdout(&output)
}

/// Runs an admin command with `--json` that must succeed; returns its document.
async fn ok_json(on: &On<'_>, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = ok(on, &all).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("admin {args:?}: not JSON {out:?}: {e}"))
}

/// Runs an admin command that must fail with `code`, with and without
/// `--json`; returns the `--json` error document.
async fn fails(on: &On<'_>, args: &[&str], code: i32, stdin: &str) -> Value {
    let human = admin(on, args, stdin).await;
    assert_eq!(human.status.code(), Some(code), "admin {args:?}: {human:?}");
    assert!(
        stderr(&human).starts_with("chat-server admin: "),
        "{}",
        stderr(&human)
    );
    assert!(stdout(&human).is_empty(), "people's stdout stays empty");
    let mut all = args.to_vec();
    all.push("--json");
    let json = admin(on, &all, stdin).await;
    assert_eq!(json.status.code(), Some(code));
    serde_json::from_str(&stdout(&json)).expect("one JSON document even on failure")
}

/// `POST /api/login` with `password`: the status and the error code, if any.
async fn login_as(remote: &Remote, user: &str, password: &str) -> (StatusCode, Value) {
    let body = serde_json::json!({ "username": user, "password": password }).to_string();
    remote.post_json("/api/login", &body).await
}

fn user<'a>(users: &'a Value, name: &str) -> &'a Value {
    users["users"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|u| u["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed in {users}"))
}

#[tokio::test]
async fn a_disabled_user_is_disconnected_and_refused_until_enabled_while_the_server_runs() {
    let server = TestServer::with(|c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().expect("addr"));
    })
    .await;
    let on = On::DataDir(server.data_dir.path());
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.join("ops").await;
    bob.join("ops").await;
    alice
        .wait_for(|e| matches!(e, ServerEvent::MemberJoined { user, .. } if user == "bob"))
        .await;
    let session = server.login_response("alice").await.session;
    // Minted before the disable, used after it: the next poll closes it.
    let early_ticket = server.ticket(&session).await.ticket;

    let users = ok_json(&on, &["users"]).await;
    assert_eq!(user(&users, "alice")["disabled"], false);
    assert_eq!(
        user(&users, "alice")["sessions"],
        2,
        "the client's and ours"
    );
    let listed = ok(&on, &["users"]).await;
    assert!(
        listed.lines().next().is_some_and(|l| l.starts_with("USER")),
        "{listed}"
    );
    assert!(
        listed.contains("alice") && listed.contains("enabled"),
        "{listed}"
    );
    assert!(listed.contains("2 users, 0 disabled"), "{listed}");

    let disabled = ok_json(&on, &["disable", "ALICE"]).await;
    assert_eq!(disabled["user"], "alice", "the name as registered");
    assert_eq!(disabled["changed"], true);
    assert_eq!(disabled["sessions_ended"], 2);

    // The server's poll closes alice's socket with 4003; bob sees her go.
    let close = alice.expect_close().await;
    assert_eq!(u16::from(close.code), 4003);
    assert_eq!(close.reason, "account disabled");
    bob.wait_for(|e| matches!(e, ServerEvent::MemberLeft { user, .. } if user == "alice"))
        .await;

    // Its sessions are gone from the server's memory too.
    let (status, _, body) = server.post_bearer("/api/ticket", &session).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("invalid_session"), "{body}");
    // The right password gets 403; a wrong one the usual 401, which tells
    // nothing of the account.
    let (status, body) = login_as(&server, "alice", PASSWORD).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::FORBIDDEN, &"account_disabled".into())
    );
    let (status, body) = login_as(&server, "alice", "not the password").await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::UNAUTHORIZED, &"invalid_credentials".into())
    );
    let mut late = server.client_with("alice", &early_ticket).await;
    let close = late.expect_close().await;
    assert_eq!(u16::from(close.code), 4003, "the next poll closes it too");
    // The operator sees both: the refused login and the closes.
    let metrics = server.metrics.expect("metrics");
    let seen = until(
        metrics,
        r#"chat_server_closes_total{code="4003",reason="account_disabled"}"#,
        |v| v == 2.0,
    )
    .await;
    assert_eq!(seen.get(r#"chat_logins_total{outcome="disabled"}"#), 1.0);
    assert_eq!(
        seen.get(r#"chat_logins_total{outcome="bad_credentials"}"#),
        1.0
    );

    let again = ok(&on, &["disable", "alice"]).await;
    assert!(again.contains("disabled already"), "{again}");
    let listed = ok(&on, &["users"]).await;
    assert!(listed.contains("disabled since"), "{listed}");
    let users = ok_json(&on, &["users"]).await;
    assert_eq!(user(&users, "alice")["disabled"], true);
    assert!(user(&users, "alice")["disabled_at"].is_string());
    assert_eq!(user(&users, "bob")["disabled"], false);

    let enabled = ok(&on, &["enable", "alice"]).await;
    assert!(enabled.contains("enabled alice"), "{enabled}");
    let mut alice = server.client_for("alice").await;
    alice.join("ops").await;
    let enabled = ok_json(&on, &["enable", "alice"]).await;
    assert_eq!(enabled["changed"], false, "enabling twice changes nothing");

    let unknown = fails(&on, &["disable", "carol"], NO_SUCH_USER, "").await;
    assert_eq!(unknown["error"]["code"], "no_such_user");
    fails(&on, &["enable", "carol"], NO_SUCH_USER, "").await;
    fails(&on, &["reset-password", "carol"], NO_SUCH_USER, "").await;
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn reset_password_rooms_storage_and_delete_message_on_a_running_server() {
    let server = TestServer::with(|c| c.retain_messages = Some(2)).await;
    let dir = server.data_dir.path();
    let on = On::DataDir(dir);
    let mut alice = server.client("alice").await;
    alice.join("ops").await;
    alice.join("dev").await;
    for i in 1..=3 {
        alice
            .send_acked("ops", &format!("ops {i}"), &format!("o{i}"))
            .await;
    }
    alice.send_acked("dev", "dev 1", "d1").await;

    // Rooms, read from messages.db while the server writes it.
    let rooms = ok_json(&on, &["rooms"]).await;
    let summary: Vec<(String, u64, Option<u64>, u64)> = rooms["rooms"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| {
            (
                r["name"].as_str().expect("name").to_owned(),
                r["messages"].as_u64().expect("count"),
                r["first_seq"].as_u64(),
                r["last_seq"].as_u64().expect("seq"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("dev".to_owned(), 1, Some(1), 1),
            ("ops".to_owned(), 2, Some(2), 3)
        ],
        "retention keeps ops' newest two"
    );
    assert!(rooms["rooms"][1]["last_message_at"].is_string());
    let listed = ok(&on, &["rooms"]).await;
    assert!(listed.starts_with("ROOM"), "{listed}");
    assert!(listed.contains("2 rooms, 3 messages stored"), "{listed}");

    // delete-message is refused, with its exit code, and changes nothing.
    let refused = fails(&on, &["delete-message", "ops", "3"], REFUSED, "").await;
    assert_eq!(refused["error"]["code"], "refused");
    let message = refused["error"]["message"].as_str().expect("text");
    assert!(message.contains("nothing was changed"), "{message}");
    assert_eq!(ok_json(&on, &["rooms"]).await, rooms, "nothing changed");
    alice.send_acked("ops", "ops 4", "o4").await;

    // Storage: retention as this command's flags say, the files, the rows.
    let storage = ok_json(
        &on,
        &["storage", "--retain-messages", "2", "--retain-for", "30d"],
    )
    .await;
    assert_eq!(storage["backend"], "sqlite");
    assert_eq!(storage["retention"]["max_messages"], 2);
    assert_eq!(storage["retention"]["max_age_secs"], 30 * 24 * 3600);
    for file in ["chat.db", "messages.db"] {
        let bytes = storage["files"][file].as_u64().expect("the file exists");
        assert_eq!(
            bytes,
            std::fs::metadata(dir.join(file)).expect("file").len(),
            "{file}"
        );
    }
    assert!(storage["files"]["messages.db-wal"].is_u64());
    assert_eq!(storage["rows"]["users"], 1);
    assert_eq!(storage["rows"]["rooms"], 2);
    assert_eq!(storage["rows"]["messages"], 3, "ops 3 and 4, dev 1");
    let shown = ok(&on, &["storage"]).await;
    assert!(
        shown.contains("keeping every message"),
        "no flags given: {shown}"
    );
    assert!(
        shown.contains("messages.db: ") && shown.contains("WAL"),
        "{shown}"
    );

    // Reset the password: the old one is refused, the new one works.
    let short = fails(&on, &["reset-password", "alice"], USAGE, "short\n").await;
    assert!(short["error"]["message"]
        .as_str()
        .expect("text")
        .contains("at least 8"));
    let output = admin(&on, &["reset-password", "ALICE"], "a brand new password\n").await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("password of alice reset"));
    let (status, _) = login_as(&server, "alice", PASSWORD).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the old password is refused"
    );
    let (status, body) = login_as(&server, "alice", "a brand new password").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json = admin(
        &on,
        &["reset-password", "alice", "--json"],
        "another new password\n",
    )
    .await;
    assert_eq!(json.status.code(), Some(0));
    let json: Value = serde_json::from_str(&stdout(&json)).expect("JSON");
    assert_eq!(json["user"], "alice");
    alice.close().await;
}

#[tokio::test]
async fn a_store_that_cannot_be_reached_has_its_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("not-a-data-dir");
    let on = On::DataDir(&missing);
    let error = fails(&on, &["users"], UNREACHABLE, "").await;
    assert_eq!(error["error"]["code"], "unreachable");
    assert!(!missing.exists(), "a wrong --data-dir is not created");
    // Nothing listens on port 1.
    let on = On::Database("postgres://postgres@127.0.0.1:1/chat");
    fails(&on, &["users"], UNREACHABLE, "").await;
    let help = admin(&On::DataDir(dir.path()), &["--help"], "").await;
    let help = stdout(&help);
    for line in [
        "3  no such user",
        "4  cannot reach the database",
        "5  refused",
    ] {
        assert!(help.contains(line), "--help documents {line:?}:\n{help}");
    }
}

#[tokio::test]
async fn a_user_disabled_in_postgresql_is_disconnected_from_every_node() {
    let Some(db) = chat_test_engines::postgres().await else {
        return;
    };
    let engines = Engines::postgres_only(&db);
    let on = On::Database(&db.url);
    let nodes = [
        Node::start("a", &engines, &[]).await,
        Node::start("b", &engines, &[]).await,
    ];
    nodes[0].register("alice").await;
    let mut clients = Vec::new();
    let mut sessions = Vec::new();
    for node in &nodes {
        let login = node.login_response("alice").await;
        sessions.push(login.session);
        let mut client = node.client_with("alice", &login.ticket).await;
        client.join("ops").await;
        client.send_acked("ops", "hello", &node.id).await;
        clients.push(client);
    }
    let users = ok_json(&on, &["users"]).await;
    assert_eq!(user(&users, "alice")["sessions"], 2);
    let rooms = ok_json(&on, &["rooms"]).await;
    assert_eq!(rooms["rooms"][0]["name"], "ops");
    assert_eq!(rooms["rooms"][0]["messages"], 2);

    let disabled = ok_json(&on, &["disable", "alice"]).await;
    assert_eq!(disabled["sessions_ended"], 2);
    for (client, node) in clients.iter_mut().zip(&nodes) {
        let close = client.expect_close().await;
        assert_eq!(u16::from(close.code), 4003, "on node {}", node.id);
    }
    for (node, session) in nodes.iter().zip(&sessions) {
        let (status, body) = login_as(node, "alice", PASSWORD).await;
        assert_eq!(
            (status, &body["code"]),
            (StatusCode::FORBIDDEN, &"account_disabled".into()),
            "on node {}",
            node.id
        );
        let (status, _, _) = node.post_bearer("/api/ticket", session).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let storage = ok_json(&on, &["storage"]).await;
    assert_eq!(storage["backend"], "postgresql");
    assert!(storage["database_bytes"].as_u64().is_some_and(|b| b > 0));
    assert_eq!(storage["rows"]["users"], 1);
    assert_eq!(storage["rows"]["sessions"], 0);
    assert_eq!(storage["rows"]["messages"], 2);
    fails(&on, &["disable", "carol"], NO_SUCH_USER, "").await;

    ok(&on, &["enable", "alice"]).await;
    for node in &nodes {
        let mut alice = node.client_for("alice").await;
        alice.join("ops").await;
        alice.close().await;
    }
}

/// `POST /api/register` as `user`, with `invite` if any: the status and body.
async fn register_invited(
    remote: &Remote,
    user: &str,
    invite: Option<&str>,
) -> (StatusCode, Value) {
    let mut body = serde_json::json!({ "username": user, "password": PASSWORD });
    if let Some(invite) = invite {
        body["invite"] = invite.into();
    }
    remote.post_json("/api/register", &body.to_string()).await
}

/// Issue 15: an invite-only server registers only with an invite made by
/// `chat-server admin invite` on its machine, one account per invite; a
/// made-up invite is refused before any password is hashed.
#[tokio::test]
async fn an_invite_only_server_registers_one_account_per_invite() {
    let server = TestServer::with(|c| c.invite_only = true).await;
    let on = On::DataDir(server.data_dir.path());
    let refused = |(status, body): (StatusCode, Value)| {
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["code"], "invalid_invite", "{body}");
        body["message"].as_str().expect("a message").to_owned()
    };
    let hashes = server.password_hashes();
    let missing = refused(register_invited(&server, "alice", None).await);
    assert!(missing.contains("chat-server admin invite"), "{missing}");
    refused(register_invited(&server, "alice", Some("made-up")).await);
    assert_eq!(
        server.password_hashes(),
        hashes,
        "no hash for a refused invite"
    );

    let made = ok_json(&on, &["invite", "--valid-for", "1h"]).await;
    let invite = made["invite"].as_str().expect("the token").to_owned();
    assert!(made["expires_at_ms"].as_i64().is_some(), "{made}");
    let human = ok(&on, &["invite"]).await;
    let second = human
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("invite "))
        .expect("the first line names the invite")
        .to_owned();

    let (status, body) = register_invited(&server, "alice", Some(&invite)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(login_as(&server, "alice", PASSWORD).await.0, StatusCode::OK);
    refused(register_invited(&server, "bob", Some(&invite)).await);

    // A taken name leaves the invite usable; the server's clock past the
    // expiry refuses it.
    let (status, _) = register_invited(&server, "ALICE", Some(&second)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let third = ok_json(&on, &["invite", "--valid-for", "1h"]).await["invite"]
        .as_str()
        .expect("the token")
        .to_owned();
    let (status, body) = register_invited(&server, "bob", Some(&second)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    server
        .clock
        .advance(std::time::Duration::from_secs(2 * 3600));
    refused(register_invited(&server, "carol", Some(&third)).await);

    let usage = fails(&on, &["invite", "--valid-for", "0s"], USAGE, "").await;
    assert_eq!(usage["error"]["code"], "usage", "{usage}");
}

/// An open server takes no invite and ignores one given.
#[tokio::test]
async fn an_open_server_ignores_an_invite() {
    let server = TestServer::start().await;
    let (status, body) = register_invited(&server, "alice", Some("anything")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
