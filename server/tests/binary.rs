//! The real `chat-server` binary: account creation, startup, SIGTERM, logs.

mod common;

use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chat_protocol::{ClientEvent, ServerEvent};
use chat_server::config::LogFormat;
use clap::ValueEnum;
use common::binary::{start, user_add};
use common::{Client, Remote, PASSWORD, WAIT};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn the_binary_serves_accounts_from_user_add_and_stops_on_sigterm_logging_text() {
    let log = serve_a_session_and_stop(LogFormat::Text).await;
    assert!(
        log.lines()
            .any(|l| l.contains(" INFO ") && l.contains("login")),
        "human-readable lines:\n{log}"
    );
}

#[tokio::test]
async fn with_json_logs_every_line_is_an_object_with_the_event_and_its_fields() {
    let log = serve_a_session_and_stop(LogFormat::Json).await;
    let events: Vec<Value> = log
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            for key in ["timestamp", "level", "target", "message"] {
                assert!(event[key].is_string(), "no {key} in {line}");
            }
            let timestamp = event["timestamp"].as_str().unwrap_or_default();
            assert!(
                humantime::parse_rfc3339(timestamp).is_ok(),
                "timestamp {timestamp:?} is not RFC 3339"
            );
            let level = event["level"].as_str().unwrap_or_default();
            assert!(
                ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level),
                "{line}"
            );
            event
        })
        .collect();
    // The event's own fields sit beside the message, with their JSON types.
    let find = |message: &str| {
        events
            .iter()
            .find(|e| {
                e["message"] == message
                    && e["target"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("chat_server"))
            })
            .unwrap_or_else(|| panic!("no {message:?} event in:\n{log}"))
    };
    let login = find("login");
    assert_eq!(login["user"], "carol");
    assert!(login["peer"]
        .as_str()
        .is_some_and(|p| p.starts_with("127.0.0.1:")));
    let connected = find("connected");
    assert!(connected["conn"].is_u64(), "{connected}");
    assert_eq!(connected["user"], "carol");
    let joined = find("join");
    assert_eq!(
        (&joined["room"], &joined["conn"]),
        (&"ops".into(), &connected["conn"])
    );
    // The logout's close of the session's socket, then the shutdown's of the next one.
    let closes: Vec<Option<u64>> = events
        .iter()
        .filter(|e| e["message"] == "disconnected")
        .map(|e| e["close_code"].as_u64())
        .collect();
    assert_eq!(closes, [Some(4001), Some(1001)]);
    assert_eq!(find("logout")["user"], "carol");
}

/// Issue 15, finding 8: a user name sent to `/api/login` (any string: names
/// are not checked at login) is logged on its event's line with control
/// characters escaped, so it can neither forge a line of its own nor send an
/// escape sequence to whoever tails the log.
#[tokio::test]
async fn a_client_value_cannot_forge_a_log_line_or_reach_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("server.log");
    let (mut child, remote) = start(&dir.path().join("data"), &log, &[]).await;
    let forged = "2026-12-06T00:00:00.000000Z  INFO chat_server::api: login user=root";
    let name = format!("x\n{forged}\u{1b}[2J");
    let body = serde_json::json!({ "username": name, "password": "whatever it is" }).to_string();
    assert_eq!(remote.post_json("/api/login", &body).await.0, 401);
    // The refusal is logged before the answer is sent.
    child.kill().await.expect("kill");
    let text = std::fs::read_to_string(&log).expect("the log");
    assert!(
        !text.contains('\u{1b}'),
        "an escape sequence reached the log:\n{text}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with(forged)),
        "a line was forged:\n{text}"
    );
    let refused: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("login refused"))
        .collect();
    assert_eq!(refused.len(), 1, "{text}");
    assert!(
        refused[0].contains(&format!("x\\n{forged}\\u{{1b}}[2J")),
        "the name is on its event's line, escaped: {}",
        refused[0]
    );
}

/// Runs the binary with logs in `format`: creates an account with `user
/// add`, logs in (once with a wrong password), opens a socket (and tries its
/// ticket again), joins, sends, logs out (and tries the ended session), stops
/// it with SIGTERM; checks each step, and that no password, ticket or session
/// token reached the log. Returns the log.
async fn serve_a_session_and_stop(format: LogFormat) -> String {
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
    let format = format.to_possible_value().expect("a flag value");
    let (mut child, remote) = start(&data_dir, &log, &["--log-format", format.get_name()]).await;
    // Refusals log too: of a wrong password, of a used ticket, of an ended session.
    let wrong = "wrong horse battery";
    let body = serde_json::json!({ "username": "carol", "password": wrong }).to_string();
    assert_eq!(remote.post_json("/api/login", &body).await.0, 401);
    let login = remote.login_response("carol").await;
    let ticket = remote.ticket(&login.session).await.ticket;
    let ws = remote.ws(Some(&ticket), None).await.expect("upgrade");
    let mut carol = Client {
        ws,
        user: "carol".into(),
    };
    carol.next().await; // welcome
    assert_eq!(
        remote.ws(Some(&ticket), None).await.err(),
        Some(401.try_into().expect("status"))
    );
    carol.join("ops").await;
    carol.say("ops", "deploying").await;
    carol.next().await;
    let (status, _, _) = remote.post_bearer("/api/logout", &login.session).await;
    assert_eq!(status, 204);
    let (status, _, _) = remote.post_bearer("/api/ticket", &login.session).await;
    assert_eq!(status, 401);
    // The logout closed the session's socket.
    assert_eq!(u16::from(carol.expect_close().await.code), 4001);
    carol.close().await;

    // A socket of a new session, for the shutdown.
    let ticket = remote.login("carol").await;
    let ws = remote.ws(Some(&ticket), None).await.expect("upgrade");
    let mut carol = Client {
        ws,
        user: "carol".into(),
    };
    carol.next().await; // welcome

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
    assert!(
        log.contains("login refused")
            && log.contains("socket refused")
            && log.contains("ticket refused"),
        "the refusals were logged:\n{log}"
    );
    for password in [PASSWORD, wrong] {
        assert!(!log.contains(password), "a password leaked into the log");
    }
    for secret in [&ticket, &login.ticket, &login.session] {
        assert!(
            !log.contains(secret.as_str()),
            "a ticket or session leaked into the log"
        );
    }
    log
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
    // The senders read only while they wait for an ack, in bursts, so on a
    // loaded machine their queues of everyone's messages grow long: a queue
    // that holds them keeps this a test of what survives a kill, not of
    // slow consumers (which dropped a sender, and so the acks, for good).
    let mut fast = vec![
        "--rate",
        "100000",
        "--burst",
        "100000",
        "--history-on-join",
        "1000000",
        "--send-queue",
        "100000",
        "--send-queue-bytes",
        "1000000000",
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
    .unwrap_or_else(|_| {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
        panic!(
            "{} acks, {} senders started, in time; the server's warnings:\n{}",
            acks.load(Ordering::Relaxed),
            started.load(Ordering::Relaxed),
            warnings.join("\n")
        )
    });
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
    let history = kim.page_back("k", history).await;
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
