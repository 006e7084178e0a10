//! The real `chat-server` binary: account creation, startup, SIGTERM, logs.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chat_protocol::{ClientEvent, ServerEvent};
use common::{Client, Remote, PASSWORD, WAIT};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

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
async fn start(data_dir: &Path, log: &Path, extra: &[&str]) -> (Child, Remote) {
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--disable-registration",
            "--data-dir",
        ])
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
    let (mut child, remote) = start(&data_dir, &log, &[]).await;
    let login = remote.login_response("carol").await;
    let ticket = remote.ticket(&login.session).await.ticket;
    let ws = remote.ws(Some(&ticket), None).await.expect("upgrade");
    let mut carol = Client {
        ws,
        user: "carol".into(),
    };
    carol.next().await; // welcome
    carol.join("ops").await;
    carol.say("ops", "deploying").await;
    carol.next().await;
    let (status, _, _) = remote.post_bearer("/api/logout", &login.session).await;
    assert_eq!(status, 204);

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
    for secret in [&ticket, &login.ticket, &login.session] {
        assert!(
            !log.contains(secret.as_str()),
            "a ticket or session leaked into the log"
        );
    }
}

/// What one sender learned before the server died: the messages it had acks
/// for, and every message it saw relayed.
#[derive(Default)]
struct Witness {
    acked: Vec<(u64, String)>,
    seen: Vec<(u64, String)>,
}

/// Sends numbered messages, keeping `window` of them unacknowledged, until
/// the connection dies. With a window above one, the server's writer finds
/// many appends queued at once and commits them in one batch.
async fn send_until_killed(
    remote: Remote,
    user: String,
    acks: Arc<AtomicUsize>,
    started: Arc<AtomicUsize>,
    window: usize,
) -> Witness {
    let ticket = remote.login(&user).await;
    let mut ws = remote.ws(Some(&ticket), None).await.expect("upgrade");
    let mut witness = Witness::default();
    let join = ClientEvent::JoinRoom {
        room: "k".into(),
        since: None,
        epoch: None,
    };
    if ws.send(Message::text(join.to_json())).await.is_err() {
        return witness;
    }
    let mut in_flight = std::collections::BTreeMap::new();
    for i in 0.. {
        let text = format!("{user}-{i}");
        let event = ClientEvent::SendMessage {
            room: "k".into(),
            text: text.clone(),
            client_id: Some(text.clone()),
        };
        if ws.send(Message::text(event.to_json())).await.is_err() {
            return witness;
        }
        in_flight.insert(text, ());
        while in_flight.len() >= window {
            let frame = match tokio::time::timeout(WAIT, ws.next()).await {
                Ok(Some(Ok(Message::Text(frame)))) => frame,
                Ok(Some(Ok(_))) => continue,
                _ => return witness,
            };
            match serde_json::from_str::<ServerEvent>(&frame) {
                Ok(ServerEvent::NewMessage(m)) => witness.seen.push((m.seq, m.text)),
                Ok(ServerEvent::Ack {
                    seq,
                    client_id: Some(id),
                    ..
                }) if in_flight.remove(&id).is_some() => {
                    if witness.acked.is_empty() {
                        started.fetch_add(1, Ordering::Relaxed);
                    }
                    witness.acked.push((seq, id));
                    acks.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    }
    witness
}

#[tokio::test]
async fn acked_messages_survive_sigkill_and_no_one_saw_an_unstored_one() {
    survive_sigkill(&["kim", "lee", "max"], 1, &[], 300).await;
}

#[tokio::test]
async fn sigkill_in_the_middle_of_group_commits_loses_no_acked_message() {
    let users = ["kim", "lee", "max", "ned", "oli", "pat"];
    survive_sigkill(&users, 32, &["--durability", "full"], 1_000).await;
}

/// Kills the server with SIGKILL while `users` send with `window` messages
/// in flight each, once `kill_after` acks have come back; then checks the
/// restarted server has every acked message and every relayed one.
async fn survive_sigkill(users: &[&str], window: usize, extra: &[&str], kill_after: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    for user in users {
        assert!(user_add(&data_dir, user, PASSWORD).await.status.success());
    }
    let log = dir.path().join("server.log");
    let mut fast = vec![
        "--rate",
        "100000",
        "--burst",
        "100000",
        "--history-on-join",
        "1000000",
    ];
    fast.extend_from_slice(extra);
    let (mut child, remote) = start(&data_dir, &log, &fast).await;

    let acks = Arc::new(AtomicUsize::new(0));
    // Senders with a first ack: killing before one has logged in would only
    // test that its login fails.
    let started = Arc::new(AtomicUsize::new(0));
    let senders: Vec<_> = users
        .iter()
        .map(|user| {
            let remote = Remote {
                addr: remote.addr,
                tls_cert: None,
            };
            tokio::spawn(send_until_killed(
                remote,
                user.to_string(),
                acks.clone(),
                started.clone(),
                window,
            ))
        })
        .collect();
    // Kill while all of them are mid-stream. A flush per commit on a busy
    // disk may take a while, hence the longer wait.
    tokio::time::timeout(3 * WAIT, async {
        while acks.load(Ordering::Relaxed) < kill_after
            || started.load(Ordering::Relaxed) < users.len()
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("enough acks in time");
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("killed");
    let mut witnesses = Vec::new();
    for sender in senders {
        witnesses.push(sender.await.expect("sender"));
    }

    let (mut child, remote) = start(&data_dir, &dir.path().join("again.log"), &fast).await;
    let ticket = remote.login("kim").await;
    let ws = remote.ws(Some(&ticket), None).await.expect("upgrade");
    let mut kim = Client {
        ws,
        user: "kim".into(),
    };
    kim.next().await; // welcome
    kim.send(ClientEvent::JoinRoom {
        room: "k".into(),
        since: None,
        epoch: None,
    })
    .await;
    let ServerEvent::Joined {
        last_seq, history, ..
    } = kim.next().await
    else {
        panic!("expected joined");
    };
    let stored: std::collections::BTreeMap<u64, String> =
        history.into_iter().map(|m| (m.seq, m.text)).collect();
    assert_eq!(stored.len() as u64, last_seq, "no gaps in what survived");
    assert_eq!(
        stored.keys().copied().collect::<Vec<_>>(),
        (1..=last_seq).collect::<Vec<_>>()
    );

    let mut acked_total = 0;
    for witness in &witnesses {
        for (seq, text) in &witness.acked {
            assert_eq!(stored.get(seq), Some(text), "acked message {seq} was lost");
        }
        for (seq, text) in &witness.seen {
            assert_eq!(
                stored.get(seq),
                Some(text),
                "a client saw {seq}, which was not stored"
            );
        }
        acked_total += witness.acked.len();
    }
    assert!(acked_total >= kill_after, "{acked_total}");
    println!("{acked_total} acked before SIGKILL, {last_seq} stored after restart");
    kim.close().await;
    child.start_kill().expect("stop");
    let _ = child.wait().await;
}
