//! chat-tui in a real terminal: a tmux server of its own per test.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{PASSWORD, WAIT};

/// A tmux server of its own (so tests never touch a user's sessions) running
/// one shell in a 120x32 window.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Whether tmux is missing: a skip with a note, or a failure in CI.
    pub fn missing() -> bool {
        let missing = !Self::available();
        if missing {
            chat_test_engines::missing("tmux, for chat-tui's tests", "apt-get install -y tmux");
        }
        missing
    }

    pub fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    pub fn start() -> Self {
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

    pub fn run(&self, args: &[&str]) -> String {
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
    pub fn type_line(&self, text: &str) {
        self.run(&["send-keys", "-l", text]);
        self.run(&["send-keys", "Enter"]);
    }

    pub fn key(&self, key: &str) {
        self.run(&["send-keys", key]);
    }

    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p"])
    }

    /// Polls the screen until it shows `text`, failing with the screen after [`WAIT`].
    pub async fn wait_for(&self, text: &str) -> String {
        self.wait_until(&format!("showed {text:?}"), |screen| screen.contains(text))
            .await
    }

    /// Waits until chat-tui has handed the terminal back to the shell (its
    /// screen gone, a prompt at the end), so that typing reaches the shell.
    pub async fn wait_for_shell(&self) {
        self.wait_until("returned to the shell", |screen| {
            let last = screen.trim_end();
            !screen.contains("connected to") && (last.ends_with('$') || last.ends_with('#'))
        })
        .await;
    }

    pub async fn wait_until(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
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
