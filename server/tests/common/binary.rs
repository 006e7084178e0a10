//! Test support for the real `chat-server` binary: `user add`, and a server
//! process on a free port whose stderr (the log) goes to a file.

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use chat_test_server::{Remote, WAIT};

pub const BIN: &str = env!("CARGO_BIN_EXE_chat-server");

/// Runs `chat-server user add NAME` on `data_dir`, the password on stdin.
pub async fn user_add(data_dir: &Path, name: &str, password: &str) -> std::process::Output {
    let mut command = Command::new(BIN);
    command
        .arg("--data-dir")
        .arg(data_dir)
        .args(["user", "add", name]);
    super::run_with_input(&mut command, &format!("{password}\n"))
        .await
        .expect("spawn chat-server user add")
}

/// Starts the binary on a free port, registration off, logging everything
/// (`RUST_LOG=trace`) to `log`; returns it and the address it printed.
/// Killed when dropped.
pub async fn start(data_dir: &Path, log: &Path, extra: &[&str]) -> (Child, Remote) {
    let mut args = vec!["--disable-registration"];
    args.extend_from_slice(extra);
    start_with(data_dir, log, &args).await
}

/// [`start`] with only the arguments `args` after the address and data
/// directory (registration open unless they close it).
pub async fn start_with(data_dir: &Path, log: &Path, extra: &[&str]) -> (Child, Remote) {
    start_with_files(data_dir, log, None, extra).await
}

/// [`start_with`], the process allowed at most `open_files` open files
/// (`ulimit -n`, set by a shell that then becomes the server) when given.
pub async fn start_with_files(
    data_dir: &Path,
    log: &Path,
    open_files: Option<u64>,
    extra: &[&str],
) -> (Child, Remote) {
    let mut command = match open_files {
        None => Command::new(BIN),
        Some(n) => {
            let mut shell = Command::new("sh");
            shell
                .arg("-c")
                .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                .arg(BIN);
            shell
        }
    };
    let mut child = command
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("log file"))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn chat-server");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(url) = line.strip_prefix("chat-server listening on http://") {
                return url.parse().expect("address");
            }
        }
        panic!("chat-server exited without printing its address");
    })
    .await
    .expect("server starts in time");
    (
        child,
        Remote {
            addr,
            tls_cert: None,
        },
    )
}
