//! The real chat-cli binary against a real server: sending, tailing, exit codes.

mod common;

use std::process::Stdio;

use chat_protocol::{ChatMessage, ServerEvent};
use common::{chat_cli, chat_cli_at, outcome, wait_event, ClientSide, TestServer, WAIT};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::test]
async fn send_delivers_arguments_and_stdin_lines_and_tail_prints_them() {
    let server = TestServer::start().await;
    for user in ["alice", "bob", "carol"] {
        server.register(user).await;
    }
    let mut carol = server.member("carol", "ops").await;

    let mut tail = chat_cli(&server, "bob")
        .args(["tail", "--room", "ops", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("tail runs");
    let mut tail_lines = BufReader::new(tail.stdout.take().expect("stdout")).lines();
    // The tail is following once the room hears bob arrive.
    wait_event(
        &mut carol,
        |e| matches!(e, ServerEvent::MemberJoined { user, .. } if user == "bob"),
    )
    .await;

    let status = chat_cli(&server, "alice")
        .args(["send", "--room", "ops", "deploy", "done", "✅"])
        .status()
        .await
        .expect("send runs");
    assert_eq!(status.code(), Some(0));

    let mut stdin_send = chat_cli(&server, "alice")
        .args(["send", "--room", "ops"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("send runs");
    let mut stdin = stdin_send.stdin.take().expect("stdin");
    stdin
        .write_all(b"first line\n\nsecond line\n")
        .await
        .expect("write");
    drop(stdin);
    assert_eq!(stdin_send.wait().await.expect("exit").code(), Some(0));

    let mut texts = Vec::new();
    for _ in 0..3 {
        let line = tokio::time::timeout(WAIT, tail_lines.next_line())
            .await
            .expect("tail prints in time")
            .expect("read")
            .expect("a line");
        let message: ChatMessage = serde_json::from_str(&line).expect("one JSON message per line");
        assert_eq!(
            (message.room.as_str(), message.from.as_str()),
            ("ops", "alice")
        );
        texts.push(message.text);
    }
    assert_eq!(
        texts,
        ["deploy done ✅", "first line", "second line"],
        "blank lines are skipped"
    );

    // The other member saw the same, in the same order.
    for expected in ["deploy done ✅", "first line", "second line"] {
        let got = wait_event(&mut carol, |e| matches!(e, ServerEvent::NewMessage(_))).await;
        assert!(matches!(got, ServerEvent::NewMessage(m) if m.text == expected));
    }

    // SIGTERM ends the tail cleanly.
    let pid = tail.id().expect("pid").to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let exit = tokio::time::timeout(WAIT, tail.wait())
        .await
        .expect("tail exits")
        .expect("wait");
    assert_eq!(exit.code(), Some(0));
    carol.close().await;
}

#[tokio::test]
async fn tail_prints_plain_lines_without_terminal_escapes() {
    let server = TestServer::start().await;
    server.register("alice").await;
    server.register("bob").await;
    let mut alice = server.member("alice", "r").await;
    let mut tail = chat_cli(&server, "bob")
        .args(["tail", "--room", "r"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("tail runs");
    let mut lines = BufReader::new(tail.stdout.take().expect("stdout")).lines();
    wait_event(&mut alice, |e| {
        matches!(e, ServerEvent::MemberJoined { .. })
    })
    .await;
    alice
        .send(&chat_protocol::ClientEvent::SendMessage {
            room: "r".into(),
            text: "\x1b[31mred\x1b[0m\nsecond".into(),
            client_id: None,
        })
        .await
        .expect("send");
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("in time")
        .expect("read")
        .expect("line");
    assert!(line.ends_with(" alice: ␛[31mred␛[0m second"), "{line:?}");
    assert!(!line.contains('\x1b'));
    let _ = tail.kill().await;
    alice.close().await;
}

#[tokio::test]
async fn each_failure_has_its_own_exit_code() {
    let server = TestServer::start().await;
    server.register("alice").await;
    let wrong_password = |args: &[&str]| {
        let mut command = chat_cli(&server, "alice");
        command.env("CHAT_PASSWORD", "not the password").args(args);
        command
    };

    // Wrong password: 3, with one line on stderr.
    let (code, stderr) = outcome(&mut wrong_password(&["send", "--room", "r", "hi"])).await;
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("login refused"), "{stderr}");
    let (code, _) = outcome(&mut wrong_password(&["tail", "--room", "r"])).await;
    assert_eq!(code, Some(3));

    // A server that refuses the room: 5.
    let (code, stderr) =
        outcome(chat_cli(&server, "alice").args(["send", "--room", "no spaces allowed", "hi"]))
            .await;
    assert_eq!(code, Some(5), "{stderr}");
    assert!(stderr.contains("invalid room name"), "{stderr}");

    // Nothing listening: 4. The port was free a moment ago and is not reused.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let (code, stderr) =
        outcome(chat_cli_at(&format!("http://{free}"), "alice").args(["send", "--room", "r", "x"]))
            .await;
    assert_eq!(code, Some(4), "{stderr}");

    // A local problem (unreadable CA file): 1, before any connection is tried.
    let (code, stderr) = outcome(chat_cli_at("https://127.0.0.1:1", "alice").args([
        "--ca-cert",
        "/nonexistent.pem",
        "send",
        "--room",
        "r",
        "x",
    ]))
    .await;
    assert_eq!(code, Some(1), "{stderr}");

    // Usage errors: 2 (clap).
    let (code, _) = outcome(chat_cli(&server, "alice").args(["send"])).await;
    assert_eq!(code, Some(2));
}

#[tokio::test]
async fn https_servers_need_their_certificate_trusted() {
    let server = common::start_tls().await;
    server.register("alice").await; // over https, trusting the generated cert
    let cert = server.cert();
    let cert = cert.to_str().expect("utf-8 path");

    let (code, stderr) = outcome(chat_cli(&server, "alice").args([
        "--ca-cert",
        cert,
        "send",
        "--room",
        "r",
        "over wss",
    ]))
    .await;
    assert_eq!(code, Some(0), "{stderr}");

    let (code, stderr) =
        outcome(chat_cli(&server, "alice").args(["send", "--room", "r", "x"])).await;
    assert_eq!(code, Some(4), "an unknown certificate is refused: {stderr}");
    assert!(stderr.contains("--ca-cert"), "{stderr}");

    let (code, stderr) =
        outcome(chat_cli(&server, "alice").args(["--insecure", "send", "--room", "r", "x"])).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("warning: --insecure"), "{stderr}");
}

#[tokio::test]
async fn tail_since_prints_the_stored_messages_after_it_then_follows() {
    let server = TestServer::start().await;
    server.register("alice").await;
    server.register("bob").await;
    for text in ["one", "two", "three"] {
        let status = chat_cli(&server, "alice")
            .args(["send", "--room", "log", text])
            .status()
            .await
            .expect("send runs");
        assert_eq!(status.code(), Some(0));
    }
    let mut tail = chat_cli(&server, "bob")
        .args(["tail", "--room", "log", "--since", "1", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("tail runs");
    let mut lines = BufReader::new(tail.stdout.take().expect("stdout")).lines();
    let two = next_json(&mut lines).await;
    assert_eq!((two.seq, two.text.as_str()), (2, "two"));
    let three = next_json(&mut lines).await;
    assert_eq!((three.seq, three.text.as_str()), (3, "three"));
    let status = chat_cli(&server, "alice")
        .args(["send", "--room", "log", "four"])
        .status()
        .await
        .expect("send runs");
    assert_eq!(status.code(), Some(0));
    let four = next_json(&mut lines).await;
    assert_eq!((four.seq, four.text.as_str()), (4, "four"));
    let _ = tail.kill().await;
}

async fn next_json(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) -> ChatMessage {
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("in time")
        .expect("read")
        .expect("line");
    serde_json::from_str(&line).expect("one JSON message per line")
}
