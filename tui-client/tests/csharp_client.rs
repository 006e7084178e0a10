//! The C# client of `clients/csharp/` (built with Mono's `mcs`, run with `mono`) against a
//! real server, beside the real `chat-cli`: messages flow both ways, non-ASCII included; it
//! reconnects with its session (no password), resumes each room with `since` + `epoch`,
//! resends an unacknowledged message with its `client_id` so that it is stored once, reports
//! each error with the request it answers, pages back through history, and starts a room
//! again when its epoch changes. Skipped, with a note, where Mono is not installed
//! (`apt-get install -y --no-install-recommends mono-mcs mono-runtime
//! libmono-system-net-http4.0-cil libmono-system-runtime-serialization4.0-cil ca-certificates-mono`).

mod common;

use std::path::Path;
use std::process::Stdio;

use chat_protocol::{ChatMessage, ClientEvent, ServerEvent};
use chat_test_server::proxy::CutProxy;
use common::csharp::{installed, mono_missing, setup};
use common::{chat_cli, wait_event, ClientSide, TestServer, PASSWORD, WAIT};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// A `message ROOM SEQ FROM: TEXT` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shown {
    room: String,
    seq: u64,
    from: String,
    text: String,
}

impl Shown {
    fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix("message ")?;
        let (room, rest) = rest.split_once(' ')?;
        let (seq, rest) = rest.split_once(' ')?;
        let (from, text) = rest.split_once(": ")?;
        Some(Self {
            room: room.to_owned(),
            seq: seq.parse().ok()?,
            from: from.to_owned(),
            text: text.to_owned(),
        })
    }

    fn of(message: &ChatMessage) -> Self {
        Self {
            room: message.room.clone(),
            seq: message.seq,
            from: message.from.clone(),
            text: message.text.clone(),
        }
    }
}

/// An `ack ROOM SEQ CLIENT_ID` line.
fn parse_ack(line: &str) -> Option<(String, u64, String)> {
    let mut words = line.strip_prefix("ack ")?.split(' ');
    let room = words.next()?.to_owned();
    let seq = words.next()?.parse().ok()?;
    let client_id = words.next()?.to_owned();
    Some((room, seq, client_id))
}

/// A `joined ROOM MEMBERS LAST_SEQ EPOCH` line.
fn parse_joined(line: &str) -> Option<(String, Vec<String>, u64, String)> {
    let mut words = line.strip_prefix("joined ")?.split(' ');
    let room = words.next()?.to_owned();
    let members = words.next()?.split(',').map(str::to_owned).collect();
    let last_seq = words.next()?.parse().ok()?;
    let epoch = words.next()?.to_owned();
    Some((room, members, last_seq, epoch))
}

/// A `reconnecting MS WHY` line after a failed attempt, not after a close.
fn refused_attempt(line: &str) -> bool {
    line.strip_prefix("reconnecting ")
        .and_then(|rest| rest.split_once(' '))
        .is_some_and(|(_, why)| !why.starts_with("closed "))
}

/// The running C# program: its stdin, and its stdout read line by line.
struct CSharp {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
}

impl CSharp {
    fn spawn(
        exe: &Path,
        server: &TestServer,
        user: &str,
        extra: &[&str],
        home: Option<&Path>,
    ) -> Self {
        Self::spawn_at(exe, &server.url(), user, extra, home)
    }

    fn spawn_at(exe: &Path, url: &str, user: &str, extra: &[&str], home: Option<&Path>) -> Self {
        let mut command = tokio::process::Command::new("mono");
        command
            .arg(exe)
            .args([
                "--server",
                url,
                "--user",
                user,
                "--password-env",
                "CS_TEST_PASSWORD",
            ])
            .args(extra)
            .env("CS_TEST_PASSWORD", PASSWORD)
            .env_remove("CHAT_PASSWORD")
            .env_remove("CHAT_SERVER")
            .env_remove("CHAT_USER")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        if let Some(home) = home {
            command.env("HOME", home).env_remove("XDG_CONFIG_HOME");
        }
        let mut child = command.spawn().expect("mono runs");
        let stdin = child.stdin.take();
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads output lines until one satisfies `what`; fails after [`WAIT`] or at EOF.
    async fn expect(&mut self, description: &str, what: impl Fn(&str) -> bool) -> String {
        let found = tokio::time::timeout(WAIT, async {
            loop {
                match self.lines.next_line().await.expect("read C# output") {
                    Some(line) => {
                        self.seen.push(line.clone());
                        if what(&line) {
                            return Some(line);
                        }
                    }
                    None => return None,
                }
            }
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            Ok(None) => panic!(
                "C# program ended before printing {description}; it printed:\n{}",
                self.seen.join("\n")
            ),
            Err(_) => panic!(
                "C# program did not print {description} in time; it printed:\n{}",
                self.seen.join("\n")
            ),
        }
    }

    /// Waits for the `message` line of `from` with `text` in `room`.
    async fn expect_message(&mut self, room: &str, from: &str, text: &str) -> Shown {
        let line = self
            .expect(&format!("message {room} _ {from}: {text}"), |l| {
                Shown::parse(l).is_some_and(|m| m.room == room && m.from == from && m.text == text)
            })
            .await;
        Shown::parse(&line).expect("a message line")
    }

    async fn expect_joined(&mut self, room: &str) -> (String, Vec<String>, u64, String) {
        let line = self
            .expect(&format!("joined {room} ..."), |l| {
                parse_joined(l).is_some_and(|(r, ..)| r == room)
            })
            .await;
        parse_joined(&line).expect("a joined line")
    }

    /// Every `message` line printed so far, in order.
    fn messages(&self) -> Vec<Shown> {
        self.seen.iter().filter_map(|l| Shown::parse(l)).collect()
    }

    /// The lines printed so far after the last one equal to `marker`.
    fn after(&self, marker: &str) -> &[String] {
        let at = self
            .seen
            .iter()
            .rposition(|l| l == marker)
            .unwrap_or_else(|| panic!("no line {marker:?} in:\n{}", self.seen.join("\n")));
        &self.seen[at + 1..]
    }

    async fn send_line(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{text}\n").as_bytes())
            .await
            .expect("write to C# stdin");
        stdin.flush().await.expect("flush");
    }

    /// Waits for the program to exit (after reading the rest of its output).
    async fn exit_code(&mut self) -> Option<i32> {
        while let Ok(Ok(Some(line))) = tokio::time::timeout(WAIT, self.lines.next_line()).await {
            self.seen.push(line);
        }
        // Its way out is bounded (6 s to stop, 5 s to log out), and Mono is
        // slow on a loaded machine: allow for both.
        let Ok(status) = tokio::time::timeout(WAIT * 2, self.child.wait()).await else {
            panic!(
                "the C# program did not exit in time; it printed:\n{}",
                self.seen.join("\n")
            );
        };
        let status = status.expect("wait");
        status.code()
    }

    /// Ends standard input and expects exit code `code`.
    async fn finish(&mut self, code: i32) {
        drop(self.stdin.take());
        assert_eq!(
            self.exit_code().await,
            Some(code),
            "{}",
            self.seen.join("\n")
        );
    }
}

/// Reads `chat-cli tail --json` lines until a message from `from` arrives.
async fn tail_message(lines: &mut Lines<BufReader<ChildStdout>>, from: &str) -> ChatMessage {
    tokio::time::timeout(WAIT, async {
        loop {
            let line = lines
                .next_line()
                .await
                .expect("read tail")
                .expect("tail still running");
            let message: ChatMessage =
                serde_json::from_str(&line).expect("one JSON message per line");
            if message.from == from {
                return message;
            }
        }
    })
    .await
    .expect("chat-cli tail printed the message in time")
}

/// `chat-cli send` as `user`, straight to the server; expects success.
async fn cli_send(server: &TestServer, user: &str, room: &str, text: &str) {
    let status = chat_cli(server, user)
        .args(["send", "--room", room, text])
        .status()
        .await
        .expect("chat-cli send runs");
    assert_eq!(status.code(), Some(0), "chat-cli send {text:?}");
}

/// What the server stores of `room`, as the program would show it.
async fn stored(server: &TestServer, user: &str, room: &str) -> Vec<Shown> {
    server
        .stored(user, room)
        .await
        .iter()
        .map(Shown::of)
        .collect()
}

#[tokio::test]
async fn csharp_and_chat_cli_talk_in_one_room_and_the_csharp_side_reconnects() {
    let Some((_build, exe, mut server)) = setup(|_| {}).await else {
        return;
    };

    // bob, in C#, joins first; then alice follows the room with chat-cli tail.
    let mut csharp = CSharp::spawn(&exe, &server, "bob", &["--room", "general"], None);
    csharp
        .expect("the first login", |l| l == "login password")
        .await;
    csharp
        .expect("the protocol version check", |l| {
            l == "connected bob protocol 1"
        })
        .await;
    let (_, members, last_seq, epoch) = csharp.expect_joined("general").await;
    assert_eq!((members, last_seq), (vec!["bob".to_owned()], 0));
    assert!(!epoch.is_empty());
    let mut tail = chat_cli(&server, "alice")
        .args(["tail", "--room", "general", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("tail runs");
    let mut tail_lines = BufReader::new(tail.stdout.take().expect("stdout")).lines();
    csharp
        .expect("alice arriving", |l| l == "member_joined general alice")
        .await;

    // chat-cli -> C#, non-ASCII.
    let to_csharp = "grüße 你好 👋 <b>&amp;</b> \"quoted\" back\\slash";
    cli_send(&server, "alice", "general", to_csharp).await;
    let first = csharp.expect_message("general", "alice", to_csharp).await;
    assert_eq!(first.seq, 1);

    // C# -> chat-cli, non-ASCII, from standard input.
    let from_csharp = "Ünïcødé ✓ from C# 🚀 «ok» \u{3000}end";
    csharp.send_line(from_csharp).await;
    let got = tail_message(&mut tail_lines, "bob").await;
    assert_eq!(
        (got.room.as_str(), got.text.as_str()),
        ("general", from_csharp)
    );
    let echo = csharp.expect_message("general", "bob", from_csharp).await;
    assert_eq!(echo.seq, 2);

    // The server shuts down: the C# side sees 1001 and starts reconnecting.
    server.stop().await;
    csharp
        .expect("the close code 1001", |l| l.starts_with("closed 1001"))
        .await;
    csharp
        .expect("a reconnect attempt", |l| l.starts_with("reconnecting "))
        .await;
    let _ = tail.kill().await;

    // Back on the same address: a ticket from the session (no password), rejoined.
    server.restart().await;
    csharp
        .expect("a ticket from its session", |l| l == "login session")
        .await;
    csharp
        .expect("the new welcome", |l| l == "connected bob protocol 1")
        .await;
    let (_, _, last_seq, resumed_epoch) = csharp.expect_joined("general").await;
    assert_eq!((last_seq, &resumed_epoch), (2, &epoch), "the same history");
    assert_eq!(
        server.password_hashes(),
        0,
        "the C# program reconnected without checking its password"
    );
    let mut alice = server.member("alice", "general").await;
    let after = "nach dem Neustart — ✓";
    cli_send(&server, "alice", "general", after).await;
    assert_eq!(
        csharp.expect_message("general", "alice", after).await.seq,
        3
    );
    csharp.send_line("second 🚀 line").await;
    let got = wait_event(
        &mut alice,
        |e| matches!(e, ServerEvent::NewMessage(m) if m.from == "bob"),
    )
    .await;
    assert!(matches!(got, ServerEvent::NewMessage(m) if m.text == "second 🚀 line"));

    // End of standard input: it closes with 1000 (the server echoes it) and exits 0.
    csharp.finish(0).await;
    assert!(
        csharp.seen.iter().any(|l| l.starts_with("closed 1000")),
        "the close handshake completed: {}",
        csharp.seen.join("\n")
    );
    wait_event(
        &mut alice,
        |e| matches!(e, ServerEvent::MemberLeft { user, .. } if user == "bob"),
    )
    .await;
    alice.close().await;
    let seqs: Vec<u64> = csharp.messages().iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4], "{}", csharp.seen.join("\n"));
}

#[tokio::test]
async fn own_messages_are_known_by_their_ack_not_their_text() {
    let Some((_build, exe, server)) = setup(|_| {}).await else {
        return;
    };

    let mut csharp = CSharp::spawn(&exe, &server, "bob", &["--room", "general"], None);
    csharp.expect_joined("general").await;
    // The same user, from another program, with the same text: not the C# program's message.
    cli_send(&server, "bob", "general", "twin").await;
    let other = csharp.expect_message("general", "bob", "twin").await;
    csharp.send_line("twin").await;
    let ack = csharp.expect("the ack", |l| l.starts_with("ack ")).await;
    let (room, seq, client_id) = parse_ack(&ack).expect("ack ROOM SEQ CLIENT_ID");
    assert_eq!((room.as_str(), seq), ("general", other.seq + 1));
    assert!(
        client_id.starts_with("c-") && client_id.len() == 34,
        "a random client_id: {client_id}"
    );
    // Its own copy comes after the ack, with the ack's seq.
    let own = csharp.expect_message("general", "bob", "twin").await;
    assert_eq!(own.seq, seq);
    // Every message was acknowledged and seen: exit 0, each message shown once.
    csharp.finish(0).await;
    let seqs: Vec<u64> = csharp.messages().iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [1, 2]);
    assert_eq!(
        csharp.seen.iter().filter(|l| l.starts_with("ack ")).count(),
        1
    );
}

#[tokio::test]
async fn every_error_is_reported_with_the_request_it_answers() {
    let Some((_build, exe, server)) = setup(|_| {}).await else {
        return;
    };

    // More lines at once than the rate limit's burst (20, and the join took one token).
    let mut csharp = CSharp::spawn(&exe, &server, "bob", &["--room", "general"], None);
    csharp.expect_joined("general").await;
    const SENT: usize = 30;
    let burst: String = (1..=SENT).map(|i| format!("burst {i}\n")).collect();
    let stdin = csharp.stdin.as_mut().expect("stdin");
    stdin.write_all(burst.as_bytes()).await.expect("write");
    stdin.flush().await.expect("flush");
    let answers = |seen: &[String]| {
        seen.iter()
            .filter(|l| l.starts_with("ack ") || l.starts_with("error "))
            .count()
    };
    while answers(&csharp.seen) < SENT {
        csharp
            .expect("an answer to each message", |l| {
                l.starts_with("ack ") || l.starts_with("error ")
            })
            .await;
    }
    let errors: Vec<&String> = csharp
        .seen
        .iter()
        .filter(|l| l.starts_with("error "))
        .collect();
    assert!(!errors.is_empty(), "{}", csharp.seen.join("\n"));
    for error in &errors {
        assert!(
            error.starts_with("error rate_limited ") && error.ends_with(" (for send_message)"),
            "{error}"
        );
    }
    // Refused messages were not stored: the acked ones are the room's messages, each shown.
    let acked = SENT - errors.len();
    while csharp.messages().len() < acked {
        csharp
            .expect("the acked messages", |l| l.starts_with("message "))
            .await;
    }
    let stored = stored(&server, "bob", "general").await;
    assert_eq!(stored.len(), acked);
    assert_eq!(csharp.messages(), stored);
    // Exit 4: some messages were not delivered.
    csharp.finish(4).await;

    // A join the server refuses: the error names join_room, and the program gives up (5).
    let mut refused = CSharp::spawn(
        &exe,
        &server,
        "bob",
        &["--room", "general", "--room", "no spaces"],
        None,
    );
    refused
        .expect("the refused join", |l| {
            l.starts_with("error invalid_room_name ") && l.ends_with(" (for join_room)")
        })
        .await;
    assert_eq!(
        refused.exit_code().await,
        Some(5),
        "{}",
        refused.seen.join("\n")
    );
}

#[tokio::test]
async fn a_resume_after_a_restart_brings_what_was_missed_once_and_in_order() {
    let Some((_build, exe, mut server)) = setup(|_| {}).await else {
        return;
    };
    let proxy = CutProxy::start(server.addr).await;

    let mut csharp = CSharp::spawn_at(&exe, &proxy.url(), "bob", &["--room", "general"], None);
    let (_, _, _, epoch) = csharp.expect_joined("general").await;
    cli_send(&server, "alice", "general", "before").await;
    csharp.expect_message("general", "alice", "before").await;

    // The C# program is cut off (the proxy refuses it) while the server restarts and alice
    // writes twice.
    proxy.cut_all();
    csharp
        .expect("the connection lost", |l| {
            l.starts_with("closed ") && !l.starts_with("closed 1000")
        })
        .await;
    server.stop().await;
    server.restart().await;
    cli_send(&server, "alice", "general", "while away 1").await;
    cli_send(&server, "alice", "general", "while away 2").await;
    let hashes = server.password_hashes();
    csharp.expect("an attempt refused", refused_attempt).await;

    proxy.let_through();
    csharp
        .expect("a ticket from its session", |l| l == "login session")
        .await;
    let a = csharp
        .expect_message("general", "alice", "while away 1")
        .await;
    let b = csharp
        .expect_message("general", "alice", "while away 2")
        .await;
    let (_, _, last_seq, resumed) = csharp.expect_joined("general").await;
    assert_eq!((a.seq, b.seq, last_seq), (2, 3, 3));
    assert_eq!(resumed, epoch);
    assert_eq!(
        server.password_hashes(),
        hashes,
        "the reconnect checked no password"
    );

    csharp.send_line("back").await;
    assert_eq!(csharp.expect_message("general", "bob", "back").await.seq, 4);
    csharp.finish(0).await;
    assert_eq!(
        csharp.messages(),
        stored(&server, "alice", "general").await,
        "every stored message shown once, in order:\n{}",
        csharp.seen.join("\n")
    );
    let logins: Vec<&str> = csharp
        .seen
        .iter()
        .filter(|l| l.starts_with("login "))
        .map(String::as_str)
        .collect();
    assert_eq!(
        logins,
        ["login password", "login session"],
        "one password login, then the session (attempts refused by the proxy got no ticket)"
    );
}

#[tokio::test]
async fn a_message_whose_ack_was_cut_off_is_resent_and_stored_once() {
    let Some((_build, exe, server)) = setup(|_| {}).await else {
        return;
    };
    let proxy = CutProxy::start(server.addr).await;

    let mut csharp = CSharp::spawn_at(&exe, &proxy.url(), "bob", &["--room", "general"], None);
    csharp.expect_joined("general").await;
    cli_send(&server, "alice", "general", "first").await;
    csharp.expect_message("general", "alice", "first").await;

    // The server stores the message, but its ack (and all after it) never reaches the
    // program; then connections are refused, for at least one attempt, while alice writes.
    proxy.cut_before_next_ack();
    csharp.send_line("through the cut").await;
    csharp
        .expect("the connection lost", |l| {
            l.starts_with("closed ") && !l.starts_with("closed 1000")
        })
        .await;
    cli_send(&server, "alice", "general", "meanwhile").await;
    csharp.expect("an attempt refused", refused_attempt).await;
    proxy.let_through();

    // Back: its own message comes in the resumed backlog, then the resend is acked with the
    // same seq instead of being stored again.
    csharp
        .expect("a ticket from its session", |l| l == "login session")
        .await;
    let own = csharp
        .expect_message("general", "bob", "through the cut")
        .await;
    let meanwhile = csharp.expect_message("general", "alice", "meanwhile").await;
    assert_eq!((own.seq, meanwhile.seq), (2, 3));
    csharp.expect_joined("general").await;
    let ack = csharp
        .expect("the resend's ack", |l| l.starts_with("ack "))
        .await;
    assert_eq!(parse_ack(&ack).map(|(_, seq, _)| seq), Some(own.seq));

    csharp.send_line("after").await;
    csharp.expect_message("general", "bob", "after").await;
    csharp.finish(0).await;
    let stored = stored(&server, "alice", "general").await;
    let texts: Vec<&str> = stored.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["first", "through the cut", "meanwhile", "after"]);
    assert_eq!(
        csharp.messages(),
        stored,
        "exactly the stored messages, no gap, no duplicate:\n{}",
        csharp.seen.join("\n")
    );
}

#[tokio::test]
async fn a_resume_past_what_retention_kept_reports_the_gap_then_goes_on() {
    let Some((_build, exe, server)) = setup(|config| config.retain_messages = Some(3)).await else {
        return;
    };
    let proxy = CutProxy::start(server.addr).await;

    let mut csharp = CSharp::spawn_at(&exe, &proxy.url(), "bob", &["--room", "general"], None);
    csharp.expect_joined("general").await;
    seed(&server, "alice", "general", 2).await;
    csharp.expect_message("general", "alice", "m2").await;

    // While the program is away, 6 more arrive; the server keeps only the newest 3.
    proxy.cut_all();
    csharp
        .expect("the connection lost", |l| {
            l.starts_with("closed ") && !l.starts_with("closed 1000")
        })
        .await;
    let mut alice = server.member("alice", "general").await;
    for i in 3..=8 {
        alice
            .send(&ClientEvent::SendMessage {
                room: "general".into(),
                text: format!("m{i}"),
                client_id: None,
            })
            .await
            .expect("send");
        wait_event(&mut alice, |e| matches!(e, ServerEvent::Ack { .. })).await;
    }
    proxy.let_through();

    // Resumed after 2: 3..5 are gone, said so, then 6..8 follow, and then live messages.
    csharp
        .expect("the gap", |l| l == "history_gap general 3 5")
        .await;
    for text in ["m6", "m7", "m8"] {
        csharp.expect_message("general", "alice", text).await;
    }
    let (_, _, last_seq, _) = csharp.expect_joined("general").await;
    assert_eq!(last_seq, 8);
    csharp.send_line("after the gap").await;
    assert_eq!(
        csharp
            .expect_message("general", "bob", "after the gap")
            .await
            .seq,
        9
    );
    csharp.finish(0).await;
    alice.close().await;
    let seqs: Vec<u64> = csharp.messages().iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [1, 2, 6, 7, 8, 9], "{}", csharp.seen.join("\n"));
}

/// Stores `count` messages `m1`, `m2`, ... in `room` from `user`, on as many connections as
/// the rate limit needs (each has a burst of 20; its join takes one).
async fn seed(server: &TestServer, user: &str, room: &str, count: usize) {
    let mut sent = 0;
    while sent < count {
        let mut conn = server.member(user, room).await;
        let batch = (count - sent).min(18);
        for i in sent + 1..=sent + batch {
            conn.send(&ClientEvent::SendMessage {
                room: room.into(),
                text: format!("m{i}"),
                client_id: None,
            })
            .await
            .expect("send");
        }
        for _ in 0..batch {
            wait_event(&mut conn, |e| matches!(e, ServerEvent::Ack { .. })).await;
        }
        sent += batch;
        conn.close().await;
    }
}

#[tokio::test]
async fn history_pages_back_to_the_first_message() {
    let Some((_build, exe, server)) = setup(|_| {}).await else {
        return;
    };
    seed(&server, "alice", "general", 55).await;

    // A plain join brings the newest 50: 6..55.
    let mut csharp = CSharp::spawn(&exe, &server, "bob", &["--room", "general"], None);
    let (_, _, last_seq, _) = csharp.expect_joined("general").await;
    assert_eq!(last_seq, 55);
    csharp.expect_message("general", "alice", "m55").await;
    let seqs: Vec<u64> = csharp.messages().iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (6..=55).collect::<Vec<_>>());

    // Older pages, oldest first within each, until the first message.
    csharp.send_line("/history 3").await;
    csharp.expect_message("general", "alice", "m5").await;
    csharp.send_line("/history").await;
    csharp.expect_message("general", "alice", "m2").await;
    csharp
        .expect("the start of the history", |l| l == "history_start general")
        .await;
    let paged: Vec<u64> = csharp.messages().iter().skip(50).map(|m| m.seq).collect();
    assert_eq!(paged, [3, 4, 5, 1, 2]);
    assert_eq!(
        csharp.after("message general 5 alice: m5")[0],
        "message general 1 alice: m1",
        "a page that does not start at first_seq is not the start"
    );

    // Nothing older: the program says so without asking again.
    csharp.send_line("/history").await;
    csharp
        .expect("the start again", |l| l == "history_start general")
        .await;
    csharp.finish(0).await;
    let mut all: Vec<u64> = csharp.messages().iter().map(|m| m.seq).collect();
    all.sort_unstable();
    assert_eq!(all, (1..=55).collect::<Vec<_>>(), "each message once");
}

#[tokio::test]
async fn a_new_epoch_drops_the_room_and_starts_from_the_new_history() {
    let Some((_build, exe, mut server)) = setup(|_| {}).await else {
        return;
    };

    let mut csharp = CSharp::spawn(&exe, &server, "bob", &["--room", "general"], None);
    let (_, _, _, old_epoch) = csharp.expect_joined("general").await;
    cli_send(&server, "alice", "general", "old 1").await;
    cli_send(&server, "alice", "general", "old 2").await;
    csharp.expect_message("general", "alice", "old 2").await;

    // The server comes back on a fresh data directory: a new message store (new epoch),
    // and no sessions, so the program falls back to its password.
    server.stop().await;
    csharp
        .expect("the close code 1001", |l| l.starts_with("closed 1001"))
        .await;
    server.data_dir = tempfile::tempdir().expect("tempdir");
    {
        let accounts = chat_server::Accounts::open_in(server.data_dir.path()).expect("accounts");
        for user in ["alice", "bob"] {
            chat_server::add_user(&accounts, user, PASSWORD).expect("add user");
        }
    }
    server.restart().await;
    csharp
        .expect("the password, its session being unknown", |l| {
            l == "login password"
        })
        .await;
    csharp
        .expect("the epoch change", |l| l == "epoch_changed general")
        .await;
    let (_, _, last_seq, new_epoch) = csharp.expect_joined("general").await;
    assert_eq!(last_seq, 0);
    assert_ne!(new_epoch, old_epoch);

    // Only the new history from here: numbering starts again, nothing older is held.
    cli_send(&server, "alice", "general", "new 1").await;
    assert_eq!(
        csharp.expect_message("general", "alice", "new 1").await.seq,
        1
    );
    csharp.send_line("new 2").await;
    assert_eq!(
        csharp.expect_message("general", "bob", "new 2").await.seq,
        2
    );
    csharp.send_line("/history").await;
    csharp
        .expect("nothing older in the new history", |l| {
            l == "history_start general"
        })
        .await;
    csharp.finish(0).await;
    let after: Vec<Shown> = csharp
        .after("epoch_changed general")
        .iter()
        .filter_map(|l| Shown::parse(l))
        .collect();
    assert_eq!(after, stored(&server, "alice", "general").await);
    assert_eq!(
        csharp
            .messages()
            .iter()
            .map(|m| m.text.as_str())
            .collect::<Vec<_>>(),
        ["old 1", "old 2", "new 1", "new 2"]
    );
}

#[tokio::test]
async fn csharp_over_wss_trusts_the_generated_certificate_via_cert_sync() {
    if mono_missing() {
        return;
    }
    if !Path::new("/usr/bin/cert-sync").exists() && !installed("cert-sync") {
        eprintln!(
            "SKIPPED: `cert-sync` is not installed (apt-get install -y ca-certificates-mono); \
             Mono's ClientWebSocket trusts only certificates in its store"
        );
        return;
    }
    let build = tempfile::tempdir().expect("tempdir");
    let exe = common::csharp::build(build.path());
    let mut server = common::start_tls().await;
    server.register("alice").await;
    server.register("bob").await;

    // A throwaway HOME: cert-sync --user writes to $HOME/.config/.mono/new-certs, which is
    // where mono, run with the same HOME, looks. Nothing outside the temp dir changes.
    let home = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new("cert-sync")
        .arg("--user")
        .arg(server.cert())
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .expect("cert-sync runs");
    assert!(
        out.status.success(),
        "cert-sync: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let mut alice = server.member("alice", "secure").await;
    let mut csharp = CSharp::spawn(
        &exe,
        &server,
        "bob",
        &[
            "--room",
            "secure",
            "--exit-on-close",
            "--send",
            "über wss 🔒",
        ],
        Some(home.path()),
    );
    csharp
        .expect("the protocol version check", |l| {
            l == "connected bob protocol 1"
        })
        .await;
    let got = wait_event(
        &mut alice,
        |e| matches!(e, ServerEvent::NewMessage(m) if m.from == "bob"),
    )
    .await;
    assert!(matches!(got, ServerEvent::NewMessage(m) if m.text == "über wss 🔒"));
    let status = chat_cli(&server, "alice")
        .arg("--ca-cert")
        .arg(server.cert())
        .args(["send", "--room", "secure", "zurück 👋"])
        .status()
        .await
        .expect("chat-cli send runs");
    assert_eq!(status.code(), Some(0));
    csharp.expect_message("secure", "alice", "zurück 👋").await;

    // Shutdown: 1001 is printed and, with --exit-on-close, the program ends with 0. With
    // alice gone, the server waits only for the C# client to answer its Close (or drop the
    // connection); a client that did neither would hold it for the whole 2 s grace.
    alice.close().await;
    let stopping = std::time::Instant::now();
    server.stop().await;
    assert!(
        stopping.elapsed() < std::time::Duration::from_millis(1500),
        "the C# client let the server close promptly (stop took {:?})",
        stopping.elapsed()
    );
    csharp
        .expect("the close code 1001", |l| l.starts_with("closed 1001"))
        .await;
    assert_eq!(
        csharp.exit_code().await,
        Some(0),
        "{}",
        csharp.seen.join("\n")
    );
}
