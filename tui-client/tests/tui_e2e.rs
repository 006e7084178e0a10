//! The real chat-tui binary in a real terminal (tmux), against a real server,
//! with messages from the real chat-cli.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chat_protocol::ServerEvent;
use common::{bin, chat_cli, wait_event, TestServer, PASSWORD, WAIT};

/// A tmux server of its own (so tests never touch a user's sessions) running
/// one shell in a 120x32 window.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn start() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "chat-e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let tmux = Self { socket };
        tmux.run(&[
            "new-session",
            "-d",
            "-x",
            "120",
            "-y",
            "32",
            "-e",
            &format!("CHAT_PASSWORD={PASSWORD}"),
            "-e",
            "PS1=e2e> ",
            "bash --norc --noprofile",
        ]);
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux runs");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types text literally, then presses Enter.
    fn type_line(&self, text: &str) {
        self.run(&["send-keys", "-l", text]);
        self.run(&["send-keys", "Enter"]);
    }

    fn key(&self, key: &str) {
        self.run(&["send-keys", key]);
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p"])
    }

    /// Polls the screen until it shows `text`, failing with the screen after [`WAIT`].
    async fn wait_for(&self, text: &str) -> String {
        self.wait_until(&format!("showed {text:?}"), |screen| screen.contains(text))
            .await
    }

    async fn wait_until(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "screen never {what}; it shows:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

fn launch(tmux: &Tmux, server: &TestServer) {
    let command = format!(
        "{} --server {} --user alice --room general",
        bin("chat-tui").display(),
        server.url()
    );
    tmux.type_line(&command);
}

#[tokio::test]
async fn messages_flow_both_ways_between_chat_tui_and_chat_cli() {
    if !Tmux::available() {
        eprintln!("SKIPPED: tmux is not installed (apt-get install -y tmux)");
        return;
    }
    let server = TestServer::start().await;
    server.register("alice").await;
    server.register("bob").await;
    let tmux = Tmux::start();
    launch(&tmux, &server);
    tmux.wait_for("connected to").await;
    tmux.wait_for("Message general").await;

    let mut bob = server.member("bob", "general").await;
    tmux.wait_for("bob joined").await;

    let status = chat_cli(&server, "bob")
        .args(["send", "--room", "general", "hello from the cli 你好"])
        .status()
        .await
        .expect("chat-cli runs");
    assert_eq!(status.code(), Some(0));
    tmux.wait_for("bob: hello from the cli 你好").await;

    tmux.type_line("hi from the terminal 👋");
    let got = wait_event(
        &mut bob,
        |e| matches!(e, ServerEvent::NewMessage(m) if m.from == "alice"),
    )
    .await;
    assert!(matches!(got, ServerEvent::NewMessage(m) if m.text == "hi from the terminal 👋"));
    tmux.wait_for("alice: hi from the terminal").await;

    // Ctrl+C quits and hands back a working terminal: the shell runs commands again.
    tmux.key("C-c");
    tmux.wait_until("returned to the shell", |screen| {
        let last = screen.trim_end();
        !screen.contains("connected to") && (last.ends_with('$') || last.ends_with('#'))
    })
    .await;
    tmux.type_line("echo restored-$((40+2))");
    tmux.wait_for("restored-42").await;
    bob.close().await;
}

#[tokio::test]
async fn chat_tui_reconnects_and_rejoins_after_a_server_restart() {
    if !Tmux::available() {
        eprintln!("SKIPPED: tmux is not installed (apt-get install -y tmux)");
        return;
    }
    let mut server = TestServer::start().await;
    server.register("alice").await;
    server.register("bob").await;
    let tmux = Tmux::start();
    launch(&tmux, &server);
    tmux.wait_for("connected to").await;

    server.stop().await;
    tmux.wait_for("reconnecting").await;
    server.restart().await;
    tmux.wait_for("reconnected; rejoining rooms").await;
    tmux.wait_for("connected to").await;
    assert_eq!(
        server.password_hashes(),
        0,
        "chat-tui reconnected with its session, not the password"
    );

    // Delivered only if chat-tui really rejoined `general` on its own.
    let status = chat_cli(&server, "bob")
        .args(["send", "--room", "general", "after the restart"])
        .status()
        .await
        .expect("chat-cli runs");
    assert_eq!(status.code(), Some(0));
    tmux.wait_for("bob: after the restart").await;
    tmux.key("C-c");
}
