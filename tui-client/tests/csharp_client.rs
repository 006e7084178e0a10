//! The C# client of `clients/csharp/` (built with Mono's `mcs`, run with `mono`) and the
//! real `chat-cli` in the same room of a real server: messages flow both ways, non-ASCII
//! included; the C# side sees 1001 when the server stops, reconnects with a fresh ticket,
//! rejoins, and closes properly. Skipped, with a note, where Mono is not installed
//! (`apt-get install -y --no-install-recommends mono-mcs mono-runtime
//! libmono-system-net-http4.0-cil libmono-system-runtime-serialization4.0-cil ca-certificates-mono`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use chat_protocol::{ChatMessage, ServerEvent};
use common::{chat_cli, wait_event, ClientSide, TestServer, PASSWORD, WAIT};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// Whether `program` runs at all (`--version` is enough for mcs, mono and cert-sync's host).
fn installed(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn mono_missing() -> bool {
    for tool in ["mcs", "mono"] {
        if !installed(tool) {
            eprintln!(
                "SKIPPED: `{tool}` is not installed; the C# client test needs Mono \
                 (apt-get install -y --no-install-recommends mono-mcs mono-runtime \
                 libmono-system-net-http4.0-cil libmono-system-runtime-serialization4.0-cil)"
            );
            return true;
        }
    }
    false
}

/// Compiles clients/csharp into `dir` and returns the program.
fn build_csharp(dir: &Path) -> PathBuf {
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/csharp");
    let exe = dir.join("chat-client.exe");
    let out = std::process::Command::new("mcs")
        .current_dir(&sources)
        .args([
            "-nologo",
            "-langversion:6",
            "-warnaserror+",
            "-r:System.Net.Http",
            "-r:System.Runtime.Serialization",
        ])
        .arg(format!("-out:{}", exe.display()))
        .args(["ChatClient.cs", "Program.cs"])
        .output()
        .expect("mcs runs");
    assert!(
        out.status.success(),
        "mcs failed (are libmono-system-net-http4.0-cil and \
         libmono-system-runtime-serialization4.0-cil installed?):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    exe
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
        let mut command = tokio::process::Command::new("mono");
        command
            .arg(exe)
            .args([
                "--server",
                &server.url(),
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
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the C# program exits in time")
            .expect("wait");
        status.code()
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

#[tokio::test]
async fn csharp_and_chat_cli_talk_in_one_room_and_the_csharp_side_reconnects() {
    if mono_missing() {
        return;
    }
    let build = tempfile::tempdir().expect("tempdir");
    let exe = build_csharp(build.path());
    let mut server = TestServer::start().await;
    server.register("alice").await;
    server.register("bob").await;

    // bob, in C#, joins first; then alice follows the room with chat-cli tail.
    let mut csharp = CSharp::spawn(&exe, &server, "bob", &["--room", "general"], None);
    csharp
        .expect("the protocol version check", |l| {
            l == "connected bob protocol 1"
        })
        .await;
    csharp
        .expect("its join", |l| l == "joined general bob")
        .await;
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
    let status = chat_cli(&server, "alice")
        .args(["send", "--room", "general", to_csharp])
        .status()
        .await
        .expect("chat-cli send runs");
    assert_eq!(status.code(), Some(0));
    let expected = format!("new_message general alice: {to_csharp}");
    csharp.expect(&expected, |l| l == expected).await;

    // C# -> chat-cli, non-ASCII, from standard input.
    let from_csharp = "Ünïcødé ✓ from C# 🚀 «ok» \u{3000}end";
    csharp.send_line(from_csharp).await;
    let got = tail_message(&mut tail_lines, "bob").await;
    assert_eq!(
        (got.room.as_str(), got.text.as_str()),
        ("general", from_csharp)
    );
    let echo = format!("new_message general bob: {from_csharp}");
    csharp
        .expect("its own message relayed", |l| l == echo)
        .await;

    // The server shuts down: the C# side sees 1001 and starts reconnecting.
    server.stop().await;
    csharp
        .expect("the close code 1001", |l| l.starts_with("closed 1001"))
        .await;
    csharp
        .expect("a reconnect attempt", |l| l.starts_with("reconnecting "))
        .await;
    let _ = tail.kill().await;

    // Back on the same address: fresh ticket, rejoined, messages flow again.
    server.restart().await;
    csharp
        .expect("the new welcome", |l| l == "connected bob protocol 1")
        .await;
    csharp
        .expect("the rejoin", |l| l.starts_with("joined general "))
        .await;
    let mut alice = server.member("alice", "general").await;
    let after = "nach dem Neustart — ✓";
    let status = chat_cli(&server, "alice")
        .args(["send", "--room", "general", after])
        .status()
        .await
        .expect("chat-cli send runs");
    assert_eq!(status.code(), Some(0));
    let expected = format!("new_message general alice: {after}");
    csharp.expect(&expected, |l| l == expected).await;
    csharp.send_line("second 🚀 line").await;
    let got = wait_event(
        &mut alice,
        |e| matches!(e, ServerEvent::NewMessage(m) if m.from == "bob"),
    )
    .await;
    assert!(matches!(got, ServerEvent::NewMessage(m) if m.text == "second 🚀 line"));

    // End of standard input: it closes with 1000 (the server echoes it) and exits 0.
    drop(csharp.stdin.take());
    assert_eq!(
        csharp.exit_code().await,
        Some(0),
        "{}",
        csharp.seen.join("\n")
    );
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
    let exe = build_csharp(build.path());
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
    csharp
        .expect("alice's message", |l| {
            l == "new_message secure alice: zurück 👋"
        })
        .await;

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
