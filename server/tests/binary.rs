//! The real `chat-server` binary: account creation, startup, SIGTERM, logs.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{Client, Remote, PASSWORD, WAIT};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_chat-server");

async fn user_add(data_dir: &Path, name: &str, password: &str) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args([
            "--data-dir".as_ref(),
            data_dir.as_os_str(),
            "user".as_ref(),
            "add".as_ref(),
            name.as_ref(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chat-server user add");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(format!("{password}\n").as_bytes())
        .await
        .expect("write password");
    drop(stdin);
    tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("user add finishes")
        .expect("user add runs")
}

/// Starts the binary on a free port; returns it and the address it printed.
async fn start(data_dir: &Path, log: &Path) -> (Child, Remote) {
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--disable-registration",
            "--data-dir",
        ])
        .arg(data_dir)
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

#[tokio::test]
async fn the_binary_serves_accounts_from_user_add_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");

    let added = user_add(&data_dir, "carol", PASSWORD).await;
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert!(String::from_utf8_lossy(&added.stdout).contains("created user carol"));
    let again = user_add(&data_dir, "Carol", PASSWORD).await;
    assert!(!again.status.success(), "duplicate names are refused");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already taken"));
    let short = user_add(&data_dir, "dave", "short").await;
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 8"));

    let log = dir.path().join("server.log");
    let (mut child, remote) = start(&data_dir, &log).await;
    let ticket = remote.login("carol").await;
    let ws = remote.ws(Some(&ticket), None).await.expect("upgrade");
    let mut carol = Client {
        ws,
        user: "carol".into(),
    };
    carol.next().await; // welcome
    carol.join("ops").await;
    carol.say("ops", "deploying").await;
    carol.next().await;

    let pid = child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let close = carol.expect_close().await;
    assert_eq!(u16::from(close.code), 1001);
    carol.close().await;
    let exit = tokio::time::timeout(WAIT + Duration::from_secs(5), child.wait())
        .await
        .expect("server exits after SIGTERM")
        .expect("wait");
    assert!(exit.success(), "{exit:?}");

    let log = std::fs::read_to_string(&log).expect("log");
    assert!(
        log.contains("login") && log.contains("carol"),
        "the log was captured:\n{log}"
    );
    assert!(!log.contains(PASSWORD), "a password leaked into the log");
    assert!(!log.contains(&ticket), "a ticket leaked into the log");
}
