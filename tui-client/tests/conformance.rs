//! One scenario, every client: chat-cli, chat-tui (in tmux), the browser client
//! (Chromium, driven by `web/tests/conformance-client.js`) and the C# client
//! (Mono) each live through the same drop, written once in [`scenario`]:
//!
//! 1. bob (straight to the server) stores two messages; the client joins the
//!    room through a [`CutProxy`] and holds both.
//! 2. The client sends a message (with its `client_id`); the proxy cuts the
//!    connection just before the server's `ack` reaches it, and refuses
//!    connections for a while: the message is stored, the client does not
//!    know it. bob stores another message meanwhile.
//! 3. The proxy lets connections through. The client reconnects with its
//!    session (the server checks no password: its password-hash counter
//!    stands still), resumes the room with `since` and `epoch` (the server
//!    counts an `exact` resume), and resends the unacknowledged message with
//!    the same `client_id`, which the server answers without storing it again
//!    (it counts six `send_message` requests and five messages stored).
//! 4. bob stores a last message. The client must hold exactly the room's
//!    stored sequence: every message once, in order, no gap.
//!
//! Clients whose runtime is missing are skipped with a note naming what to
//! install, except under `CI=true`, where that fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chat_protocol::{ClientEvent, ServerEvent};
use chat_test_server::proxy::CutProxy;
use chat_test_server::scrape::until;
use common::tmux::Tmux;
use common::{bin, wait_event, ClientSide, TestServer, PASSWORD, WAIT};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::watch;

const ROOM: &str = "conformance";

/// A message as a client holds it: its `seq` where the client shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    seq: Option<u64>,
    text: String,
}

/// The client under test, as the scenario drives it.
trait Subject {
    /// Sends `text` to the room as the user would.
    async fn send(&mut self, text: &str);
    /// The room's messages the client holds now, in its order.
    async fn held(&mut self) -> Vec<Held>;
    /// Ends the client; panics if it did not end cleanly, which for the
    /// clients that can tell includes a sent message never acknowledged.
    async fn finish(self);
}

/// Waits until `subject` holds exactly `texts`, in order.
async fn wait_held(subject: &mut impl Subject, texts: &[String]) -> Vec<Held> {
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    loop {
        let held = subject.held().await;
        if held
            .iter()
            .map(|h| h.text.as_str())
            .eq(texts.iter().map(String::as_str))
        {
            return held;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the client never held {texts:?}; it holds {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The scenario, for any client: `start` launches it as alice through the
/// proxy's URL, joined to [`ROOM`].
async fn scenario<S: Subject>(name: &str, start: impl AsyncFnOnce(&str) -> S) {
    let server = TestServer::with(|config| {
        config.metrics_listen = Some("127.0.0.1:0".parse().expect("addr"));
    })
    .await;
    server.register("alice").await;
    server.register("bob").await;
    let proxy = CutProxy::start(server.addr).await;
    let mut bob = server.member("bob", ROOM).await;
    let text = |n: u32| format!("{name}-{n}");
    for n in [1, 2] {
        say(&mut bob, &text(n)).await;
    }

    let mut subject = start(&proxy.url()).await;
    wait_held(&mut subject, &[text(1), text(2)]).await;

    let hashes = server.password_hashes();
    proxy.cut_before_next_ack();
    subject.send(&text(3)).await;
    tokio::time::timeout(WAIT, proxy.cut())
        .await
        .expect("the proxy cut the connection before the ack");
    // Stored all the same (bob gets it), and another arrives meanwhile.
    wait_event(
        &mut bob,
        |e| matches!(e, ServerEvent::NewMessage(m) if m.text == text(3)),
    )
    .await;
    say(&mut bob, &text(4)).await;
    proxy.let_through();

    wait_held(&mut subject, &[text(1), text(2), text(3), text(4)]).await;
    say(&mut bob, &text(5)).await;
    let expected: Vec<String> = (1..=5).map(text).collect();
    let held = wait_held(&mut subject, &expected).await;
    assert_eq!(
        server.password_hashes(),
        hashes,
        "the client reconnected with its session, without a password login"
    );

    // The room's stored sequence: each message once, numbered 1..=5, the
    // resend not stored again.
    let stored: Vec<(u64, String)> = server
        .stored("bob", ROOM)
        .await
        .into_iter()
        .map(|m| (m.seq, m.text))
        .collect();
    assert_eq!(
        stored,
        expected
            .iter()
            .enumerate()
            .map(|(i, t)| (i as u64 + 1, t.clone()))
            .collect::<Vec<_>>()
    );
    for (h, (seq, _)) in held.iter().zip(&stored) {
        if let Some(held_seq) = h.seq {
            assert_eq!(held_seq, *seq, "{h:?} has the stored seq");
        }
    }
    // The server saw what the client did: a resume in the same history, and
    // the message sent twice (bob's four, the client's send and its resend)
    // but stored once.
    let metrics = server.metrics.expect("metrics listener");
    until(metrics, r#"chat_resumes_total{outcome="exact"}"#, |n| {
        n >= 1.0
    })
    .await;
    let sends = until(
        metrics,
        r#"chat_request_duration_seconds_count{type="send_message"}"#,
        |n| n >= 6.0,
    )
    .await;
    assert_eq!(
        sends.get("chat_messages_stored_total"),
        5.0,
        "the resend was not stored again"
    );
    subject.finish().await;
}

async fn say(bob: &mut chat_tui::client::Connection, text: &str) {
    bob.send(&ClientEvent::SendMessage {
        room: ROOM.into(),
        text: text.into(),
        client_id: None,
    })
    .await
    .expect("send");
    wait_event(bob, |e| matches!(e, ServerEvent::Ack { .. })).await;
}

/// Whether a client's runtime is missing: a note and a skip on a developer's
/// machine, a failure in CI.
fn missing(what: &str, install: &str) -> bool {
    chat_test_engines::missing(what, install);
    true
}

/// A program that talks on stdin and stdout, read line by line into `lines`.
struct Piped {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: watch::Receiver<Vec<String>>,
}

impl Piped {
    fn spawn(command: &mut tokio::process::Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the client starts");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = watch::channel(Vec::new());
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                tx.send_modify(|all| all.push(line));
            }
        });
        Self {
            child,
            stdin,
            lines,
        }
    }

    async fn write_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to the client");
        stdin.flush().await.expect("flush");
    }

    fn lines(&self) -> Vec<String> {
        self.lines.borrow().clone()
    }

    /// Waits for a line that `what` accepts.
    async fn wait_line(&mut self, what: impl Fn(&str) -> bool) -> String {
        let mut lines = self.lines.clone();
        let waited =
            tokio::time::timeout(WAIT * 2, lines.wait_for(|all| all.iter().any(|l| what(l)))).await;
        let found = self.lines();
        assert!(waited.is_ok(), "expected output never came; got {found:?}");
        found.into_iter().find(|l| what(l)).unwrap_or_default()
    }

    /// Closes stdin and waits for a clean exit.
    async fn end(mut self) {
        drop(self.stdin.take());
        let status = tokio::time::timeout(WAIT * 2, self.child.wait())
            .await
            .expect("the client exits at the end of its input")
            .expect("wait");
        assert!(status.success(), "the client exited with {status}");
    }
}

// ----- chat-cli -----

struct Cli(Piped);

impl Subject for Cli {
    async fn send(&mut self, text: &str) {
        self.0.write_line(text).await;
    }

    async fn held(&mut self) -> Vec<Held> {
        self.0
            .lines()
            .iter()
            .map(|line| {
                let m: chat_protocol::ChatMessage =
                    serde_json::from_str(line).expect("chat --json prints messages");
                Held {
                    seq: Some(m.seq),
                    text: m.text,
                }
            })
            .collect()
    }

    /// `chat` exits 0 only once every message it sent is acknowledged.
    async fn finish(self) {
        self.0.end().await;
    }
}

#[tokio::test]
async fn chat_cli() {
    scenario("cli", async |url: &str| {
        let mut command = tokio::process::Command::new(bin("chat-cli"));
        command
            .args([
                "--server", url, "--user", "alice", "chat", "--room", ROOM, "--json",
            ])
            .env("CHAT_PASSWORD", PASSWORD)
            .env_remove("CHAT_SERVER")
            .env_remove("CHAT_USER");
        Cli(Piped::spawn(&mut command))
    })
    .await;
}

// ----- chat-tui -----

struct Tui(Tmux);

impl Subject for Tui {
    async fn send(&mut self, text: &str) {
        self.0.type_line(text);
    }

    /// The messages on screen (the window is tall enough for all of them):
    /// `HH:MM from: text` in the chat pane; chat-tui shows no seq.
    async fn held(&mut self) -> Vec<Held> {
        self.0
            .screen()
            .lines()
            .filter_map(|line| {
                let at = line.find(": tui-")?;
                let text: String = line[at + 2..]
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '│')
                    .collect();
                Some(Held { seq: None, text })
            })
            .collect()
    }

    async fn finish(self) {
        self.0.key("C-c");
        // Back at the shell, which reports how chat-tui ended.
        self.0.wait_for_shell().await;
        self.0.type_line("echo tui-exit-$?");
        self.0.wait_for("tui-exit-0").await;
    }
}

#[tokio::test]
async fn chat_tui() {
    if Tmux::missing() {
        return;
    }
    scenario("tui", async |url: &str| {
        let tmux = Tmux::start();
        tmux.type_line(&format!(
            "{} --server {url} --user alice --room {ROOM}",
            bin("chat-tui").display()
        ));
        tmux.wait_for("connected to").await;
        Tui(tmux)
    })
    .await;
}

// ----- the browser client -----

struct Browser(Piped);

impl Subject for Browser {
    async fn send(&mut self, text: &str) {
        self.0
            .write_line(&serde_json::json!({ "send": text }).to_string())
            .await;
    }

    async fn held(&mut self) -> Vec<Held> {
        let before = self.0.lines().len();
        self.0.write_line(r#"{"held":true}"#).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(held) = self.0.lines()[before..]
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find_map(|v| v.get("held").cloned())
            {
                return held
                    .as_array()
                    .expect("held is a list")
                    .iter()
                    .map(|m| Held {
                        seq: m["seq"].as_u64(),
                        text: m["text"].as_str().unwrap_or_default().to_owned(),
                    })
                    .collect();
            }
            assert!(tokio::time::Instant::now() < deadline, "no answer to held");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(mut self) {
        self.0.write_line(r#"{"quit":true}"#).await;
        self.0.end().await;
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::test]
async fn browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() && missing("Chromium", "apt-get install -y chromium") {
        return;
    }
    let web = repo().join("web");
    if !web.join("node_modules/playwright-core").exists()
        && missing("playwright-core", "(cd web && npm ci)")
    {
        return;
    }
    scenario("browser", async |url: &str| {
        let mut command = tokio::process::Command::new("node");
        command
            .arg(web.join("tests/conformance-client.js"))
            .env("CHROMIUM", &chromium)
            .env("CONF_URL", url)
            .env("CONF_USER", "alice")
            .env("CONF_PASSWORD", PASSWORD)
            .env("CONF_ROOM", ROOM);
        let mut piped = Piped::spawn(&mut command);
        piped.wait_line(|l| l.contains("\"ready\"")).await;
        Browser(piped)
    })
    .await;
}

// ----- the C# client -----

struct CSharp(Piped);

impl Subject for CSharp {
    async fn send(&mut self, text: &str) {
        self.0.write_line(text).await;
    }

    /// `message ROOM SEQ FROM: TEXT` lines, minus what an `epoch_changed`
    /// dropped.
    async fn held(&mut self) -> Vec<Held> {
        let mut held = Vec::new();
        for line in self.0.lines() {
            if line == format!("epoch_changed {ROOM}") {
                held.clear();
            }
            let Some(rest) = line.strip_prefix(&format!("message {ROOM} ")) else {
                continue;
            };
            let Some((seq, rest)) = rest.split_once(' ') else {
                continue;
            };
            let Some((_, text)) = rest.split_once(": ") else {
                continue;
            };
            held.push(Held {
                seq: seq.parse().ok(),
                text: text.to_owned(),
            });
        }
        held
    }

    /// Its message was acknowledged in the end (by the resend), and no
    /// password login came after the first.
    async fn finish(self) {
        let lines = self.0.lines();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("ack {ROOM} 3 "))),
            "the resend was acknowledged with the stored seq: {lines:?}"
        );
        assert_eq!(
            lines.iter().filter(|l| *l == "login password").count(),
            1,
            "{lines:?}"
        );
        assert!(lines.iter().any(|l| l == "login session"), "{lines:?}");
        self.0.end().await;
    }
}

#[tokio::test]
async fn csharp() {
    if common::csharp::mono_missing() {
        return;
    }
    let build = tempfile::tempdir().expect("tempdir");
    let exe = common::csharp::build(build.path());
    scenario("csharp", async |url: &str| {
        let mut command = tokio::process::Command::new("mono");
        command
            .arg(&exe)
            .args(["--server", url, "--user", "alice", "--room", ROOM])
            .env("CHAT_PASSWORD", PASSWORD);
        let mut piped = Piped::spawn(&mut command);
        piped
            .wait_line(|l| l.starts_with(&format!("joined {ROOM} ")))
            .await;
        CSharp(piped)
    })
    .await;
}
