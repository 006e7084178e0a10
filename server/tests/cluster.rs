//! Cluster mode: several real `chat-server` processes on one PostgreSQL
//! database and one Redis. Every test has its own database and its own Redis
//! prefix; without PostgreSQL or Redis the tests are skipped with a note
//! (and fail in CI).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use chat_protocol::{ChatMessage, ClientEvent, ErrorCode, ServerEvent};
use chat_test_engines::{PrivateRedis, TempDatabase, TestRedis};
use common::cluster::{self, Engines, Node};
use common::scrape::until;
use common::{Client, Remote, WAIT};

/// A database of the test's own and the shared Redis under a fresh prefix.
async fn engines() -> Option<(TempDatabase, TestRedis, Engines)> {
    let db = chat_test_engines::postgres().await?;
    let redis = chat_test_engines::redis().await?;
    let engines = Engines::new(&db, &redis.url, &redis.prefix);
    Some((db, redis, engines))
}

fn join_since(room: &str, since: u64) -> ClientEvent {
    ClientEvent::JoinRoom {
        room: room.into(),
        since: Some(since),
        epoch: None,
    }
}

/// Reads `room`'s messages until seq `last` has arrived; skips everything else.
async fn messages_until(client: &mut Client, room: &str, last: u64) -> Vec<ChatMessage> {
    let mut got = Vec::new();
    while got.last().is_none_or(|m: &ChatMessage| m.seq < last) {
        if let ServerEvent::NewMessage(m) = client.next().await {
            if m.room == room {
                got.push(m);
            }
        }
    }
    got
}

/// Every stored message of `room`, read by resuming from 0 on `node`.
async fn stored(node: &Remote, user: &str, room: &str) -> Vec<ChatMessage> {
    let mut client = node.client_for(user).await;
    client.send(join_since(room, 0)).await;
    let mut got = Vec::new();
    loop {
        match client.next().await {
            ServerEvent::NewMessage(m) if m.room == room => got.push(m),
            ServerEvent::Joined { room: r, .. } if r == room => break,
            _ => {}
        }
    }
    client.close().await;
    got
}

fn seqs(messages: &[ChatMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

#[tokio::test]
async fn messages_cross_nodes_in_order_and_accounts_sessions_and_tickets_work_on_every_node() {
    let Some((_db, _redis, engines)) = engines().await else {
        return;
    };
    let nodes = cluster::start(2, &engines).await;
    let (a, b) = (&nodes[0], &nodes[1]);

    // Registered on A, logs in on B.
    a.register("alice").await;
    b.register("bob").await;
    let login = b.login_response("alice").await;

    // A ticket minted on A is redeemed on B once, then refused on A.
    let ticket = a.ticket(&login.session).await.ticket;
    let mut alice = b.client_with("alice", &ticket).await;
    assert_eq!(
        a.ws(Some(&ticket), None).await.err(),
        Some(hyper::StatusCode::UNAUTHORIZED),
        "a used ticket is refused on the other node"
    );
    // A session from B works on A.
    let mut bob = a.client_for("bob").await;

    alice.join("lobby").await;
    bob.join("lobby").await;
    alice
        .wait_for(|e| matches!(e, ServerEvent::MemberJoined { user, .. } if user == "bob"))
        .await;
    for i in 1..=50 {
        alice.say("lobby", &format!("a{i}")).await;
    }
    let got = messages_until(&mut bob, "lobby", 50).await;
    assert_eq!(
        seqs(&got),
        (1..=50).collect::<Vec<_>>(),
        "bob, on the other node"
    );
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, m)| m.text == format!("a{}", i + 1)));
    bob.say("lobby", "back").await;
    let back = messages_until(&mut alice, "lobby", 51).await;
    assert_eq!(back.last().map(|m| m.text.as_str()), Some("back"));

    // Logging out on A ends the session on B too, and closes its sockets
    // on both nodes with 4001 (issue 15: B learns of it within a second).
    let mut alice_on_a = a
        .client_with("alice", &b.ticket(&login.session).await.ticket)
        .await;
    let (status, _, _) = a.post_bearer("/api/logout", &login.session).await;
    assert_eq!(status, 204);
    let (status, _, body) = b.post_bearer("/api/ticket", &login.session).await;
    assert_eq!(status, 401, "{body}");
    for (client, node) in [(&mut alice_on_a, "a"), (&mut alice, "b")] {
        let close = client.expect_close().await;
        assert_eq!(
            (u16::from(close.code), close.reason.as_str()),
            (4001, "logged out"),
            "on node {node}"
        );
    }
    bob.close().await;
}

#[tokio::test]
async fn sends_racing_on_every_node_get_one_contiguous_order_at_every_member() {
    let Some((_db, _redis, engines)) = engines().await else {
        return;
    };
    let nodes = cluster::start(3, &engines).await;
    const EACH: u64 = 60;
    let mut clients = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let user = format!("u{i}");
        node.register(&user).await;
        let mut client = node.client_for(&user).await;
        client.join("race").await;
        clients.push(client);
    }
    // Everyone is a member everywhere before anyone sends: each sees the
    // later ones join.
    let count = clients.len();
    for (i, client) in clients.iter_mut().enumerate() {
        for j in i + 1..count {
            let user = format!("u{j}");
            client
                .wait_for(|e| matches!(e, ServerEvent::MemberJoined { user: u, .. } if *u == user))
                .await;
        }
    }
    let total = EACH * clients.len() as u64;
    let mut tasks = Vec::new();
    for (i, mut client) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for n in 0..EACH {
                client
                    .send(ClientEvent::SendMessage {
                        room: "race".into(),
                        text: format!("u{i}-{n}"),
                        client_id: Some(format!("u{i}-{n}")),
                    })
                    .await;
            }
            let got = messages_until(&mut client, "race", total).await;
            (client, got)
        }));
    }
    let mut orders = Vec::new();
    for task in tasks {
        let (client, got) = tokio::time::timeout(WAIT * 6, task)
            .await
            .expect("every member gets every message")
            .expect("task");
        assert_eq!(
            seqs(&got),
            (1..=total).collect::<Vec<_>>(),
            "{}",
            client.user
        );
        orders.push(got.iter().map(|m| m.id.clone()).collect::<Vec<_>>());
        client.close().await;
    }
    assert!(
        orders.windows(2).all(|w| w[0] == w[1]),
        "one order at every member"
    );
}

#[tokio::test]
async fn a_resend_racing_on_two_nodes_is_stored_once() {
    let Some((_db, _redis, engines)) = engines().await else {
        return;
    };
    let nodes = cluster::start(2, &engines).await;
    nodes[0].register("carol").await;
    let mut on_a = nodes[0].client_for("carol").await;
    let mut on_b = nodes[1].client_for("carol").await;
    on_a.join("r").await;
    on_b.join("r").await;
    for i in 0..20 {
        let id = format!("dup-{i}");
        let (sa, sb) = tokio::join!(
            on_a.send_acked("r", "once", &id),
            on_b.send_acked("r", "once", &id)
        );
        assert_eq!(sa, sb, "both acks name the one stored message");
    }
    let all = stored(&nodes[1], "carol", "r").await;
    assert_eq!(seqs(&all), (1..=20).collect::<Vec<_>>(), "each stored once");
    on_a.close().await;
    on_b.close().await;
}

#[tokio::test]
async fn a_killed_nodes_clients_resume_exactly_on_another_node_and_its_members_leave() {
    let Some((_db, _redis, engines)) = engines().await else {
        return;
    };
    let mut nodes = cluster::start(2, &engines).await;
    nodes[0].register("dora").await;
    nodes[0].register("eve").await;
    let session = nodes[0].login_response("dora").await.session;
    let ticket = nodes[0].ticket(&session).await.ticket;
    let mut dora = nodes[0].client_with("dora", &ticket).await;
    let mut eve = nodes[1].client_for("eve").await;
    dora.join("ops").await;
    eve.join("ops").await;

    // Dora sends in a window on node 1 while it is killed; what was acked
    // must be stored, and her resends after reconnecting must not double it.
    let mut acked = BTreeMap::new();
    let mut next = 0;
    for _ in 0..40 {
        acked.insert(
            dora.send_acked("ops", &format!("d{next}"), &format!("d{next}"))
                .await,
            next,
        );
        next += 1;
    }
    for i in next..next + 20 {
        dora.send(ClientEvent::SendMessage {
            room: "ops".into(),
            text: format!("d{i}"),
            client_id: Some(format!("d{i}")),
        })
        .await;
    }
    nodes[0].kill().await;
    let killed = tokio::time::Instant::now();
    let last_acked = *acked.keys().last().expect("acks");

    // Eve, on the surviving node, sees dora leave within the presence TTL
    // (2 s in tests; half a second more for the scheduling of a busy machine).
    let left = tokio::time::timeout(
        Duration::from_secs(15),
        eve.wait_for(|e| matches!(e, ServerEvent::MemberLeft { user, .. } if user == "dora")),
    )
    .await;
    assert!(
        left.is_ok(),
        "dora's departure is announced after her node died"
    );
    let took = killed.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "announced {took:?} after the kill, past the 2 s presence TTL"
    );

    // Dora reconnects to node 2 with her session (no password), resumes
    // after the last message she had, and resends everything unacked.
    let survivor = &nodes[1];
    let ticket = survivor.ticket(&session).await.ticket;
    let mut dora = survivor.client_with("dora", &ticket).await;
    dora.send(join_since("ops", last_acked)).await;
    for i in 40..next + 20 {
        dora.send(ClientEvent::SendMessage {
            room: "ops".into(),
            text: format!("d{i}"),
            client_id: Some(format!("d{i}")),
        })
        .await;
    }
    // The resumed stream continues exactly after what she had: no gap, no
    // duplicate, her resends included once.
    let total = next + 20;
    let resumed = messages_until(&mut dora, "ops", total).await;
    assert_eq!(seqs(&resumed), (last_acked + 1..=total).collect::<Vec<_>>());
    let all = stored(survivor, "eve", "ops").await;
    assert_eq!(
        seqs(&all),
        (1..=total).collect::<Vec<_>>(),
        "every message once"
    );
    let texts: std::collections::BTreeSet<&str> = all.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts.len() as u64, total, "no text stored twice");
    for (seq, i) in &acked {
        assert_eq!(
            all[(*seq - 1) as usize].text,
            format!("d{i}"),
            "acked before the kill"
        );
    }
    dora.close().await;
    eve.close().await;
}

#[tokio::test]
async fn with_redis_down_sends_are_stored_and_acked_and_reach_the_other_node_once_it_is_back() {
    let Some(db) = chat_test_engines::postgres().await else {
        return;
    };
    let Some(mut redis) = PrivateRedis::start().await else {
        return;
    };
    let engines = Engines::new(&db, &redis.url(), "t");
    let metrics = ["--metrics-listen", "127.0.0.1:0"];
    let nodes = [
        Node::start("n1", &engines, &metrics).await,
        Node::start("n2", &engines, &metrics).await,
    ];
    nodes[0].register("fay").await;
    nodes[0].register("gus").await;
    let mut fay = nodes[0].client_for("fay").await;
    let mut gus = nodes[1].client_for("gus").await;
    fay.join("r").await;
    gus.join("r").await;
    for i in 1..=10 {
        fay.send_acked("r", &format!("m{i}"), &format!("m{i}"))
            .await;
    }
    redis.kill();
    for i in 11..=30 {
        fay.send_acked("r", &format!("m{i}"), &format!("m{i}"))
            .await;
    }
    nodes[1].readyz_becomes(503).await;
    redis.restart().await;
    nodes[1].readyz_becomes(200).await;
    for i in 31..=40 {
        fay.send_acked("r", &format!("m{i}"), &format!("m{i}"))
            .await;
    }
    let got = tokio::time::timeout(WAIT * 3, messages_until(&mut gus, "r", 40))
        .await
        .expect("everything reaches the other node after Redis is back");
    assert_eq!(
        seqs(&got),
        (1..=40).collect::<Vec<_>>(),
        "once each, in order"
    );
    // The operator saw it: the sender's node failed to publish and caught
    // up, the other lost its subscription and subscribed again; both are up.
    // The backlog may still be going out (gus can have had it all from a
    // resync), and a fan-out is counted just after its frames are queued.
    let sender = until(
        nodes[0].metrics.expect("metrics"),
        "chat_bus_published_total",
        |n| n >= 40.0,
    )
    .await;
    assert!(
        sender.get("chat_bus_publish_failures_total") >= 1.0,
        "{}",
        sender.text
    );
    assert_eq!(sender.get("chat_messages_stored_total"), 40.0);
    let receiver = nodes[1].metrics.expect("metrics");
    until(receiver, "chat_bus_up", |up| up == 1.0).await;
    let receiver = until(receiver, "chat_deliveries_total", |n| n == 40.0).await;
    assert!(
        receiver.get("chat_bus_resubscriptions_total") >= 1.0,
        "{}",
        receiver.text
    );
    assert_eq!(receiver.get("chat_bus_backlog"), 0.0);
    receiver.assert_documented();
    fay.close().await;
    gus.close().await;
}

#[tokio::test]
async fn with_postgres_cut_sends_get_an_error_and_nothing_is_acked_then_it_recovers() {
    let Some(db) = chat_test_engines::postgres().await else {
        return;
    };
    let Some(redis) = chat_test_engines::redis().await else {
        return;
    };
    let target = "127.0.0.1:5432".parse().expect("addr");
    let proxy = chat_test_engines::CutProxy::start(target).await;
    let mut engines = Engines::new(&db, &redis.url, &redis.prefix);
    engines.database_url = chat_test_engines::through(&proxy, &db);
    let nodes = cluster::start(2, &engines).await;
    nodes[0].register("hal").await;
    nodes[0].register("ida").await;
    let mut hal = nodes[0].client_for("hal").await;
    let mut ida = nodes[1].client_for("ida").await;
    hal.join("r").await;
    ida.join("r").await;
    hal.send_acked("r", "before", "c1").await;
    let (status, ready) = nodes[0].readyz().await;
    assert_eq!(
        (status.as_u16(), &ready["status"]),
        (200, &"ready".into()),
        "{ready}"
    );

    proxy.cut();
    hal.send(ClientEvent::SendMessage {
        room: "r".into(),
        text: "during".into(),
        client_id: Some("c2".into()),
    })
    .await;
    let answer = tokio::time::timeout(WAIT * 2, async {
        loop {
            match hal.next_with_acks().await {
                ServerEvent::NewMessage(_) => {}
                other => return other,
            }
        }
    })
    .await;
    match answer {
        Ok(ServerEvent::Error { code, .. }) => assert_eq!(code, ErrorCode::Internal),
        other => panic!("expected an internal error and no ack, got {other:?}"),
    }
    let (status, not_ready) = nodes[0].readyz().await;
    assert_eq!(status, 503, "not ready without the database: {not_ready}");
    assert_eq!(not_ready["status"], "not_ready", "{not_ready}");
    let reason = Remote::readyz_reason(&not_ready, "message_log")
        .unwrap_or_else(|| panic!("the message log is named as failing: {not_ready}"));
    assert!(reason.contains("PostgreSQL"), "{reason}");
    let (status, _, _) = nodes[0].http("GET", "/healthz", &[], "").await;
    assert_eq!(status, 200, "yet alive");

    proxy.restore();
    let ready = nodes[0].readyz_becomes(200).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert!(ready.get("failing").is_none(), "nothing fails: {ready}");
    // The resend is safe: stored once, whether or not the cut lost it.
    let seq = hal.send_acked("r", "during", "c2").await;
    assert_eq!(seq, 2);
    let got = messages_until(&mut ida, "r", 2).await;
    assert_eq!(seqs(&got), [1, 2]);
    hal.close().await;
    ida.close().await;
}

/// Readers drop at random and resume on another node each time, while
/// senders on every node send: each reader ends with a gapless, duplicate-free
/// suffix of the stored sequence.
#[tokio::test]
async fn members_who_drop_and_resume_on_random_nodes_receive_every_message_in_order() {
    let Some((_db, _redis, engines)) = engines().await else {
        return;
    };
    let nodes = cluster::start(3, &engines).await;
    let remotes: Vec<Remote> = nodes
        .iter()
        .map(|n| Remote {
            addr: n.addr,
            tls_cert: None,
        })
        .collect();
    for user in ["s0", "s1", "s2", "r0", "r1", "r2"] {
        nodes[0].register(user).await;
    }
    let mut senders = Vec::new();
    for (s, remote) in remotes.iter().enumerate() {
        let mut client = remote.client_for(&format!("s{s}")).await;
        client.join("stress").await;
        senders.push(tokio::spawn(async move {
            for i in 0..80 {
                client
                    .send_acked("stress", &format!("s{s}-{i}"), &format!("s{s}-{i}"))
                    .await;
            }
            client
        }));
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    println!("stress seed {seed}");
    let sending = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut readers = Vec::new();
    for r in 0..3u64 {
        let remotes = remotes.clone();
        let sending = sending.clone();
        let mut rng = seed.wrapping_mul(r + 3) | 1;
        readers.push(tokio::spawn(async move {
            let user = format!("r{r}");
            let mut got: Vec<u64> = Vec::new();
            let mut rounds = 0;
            while sending.load(std::sync::atomic::Ordering::Relaxed) && rounds < 100 {
                rounds += 1;
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let node = &remotes[(rng % 3) as usize];
                let mut client = node.client_for(&user).await;
                client
                    .send(ClientEvent::JoinRoom {
                        room: "stress".into(),
                        since: got.last().copied(),
                        epoch: None,
                    })
                    .await;
                for _ in 0..(10 + rng % 60) {
                    match tokio::time::timeout(Duration::from_millis(500), client.next()).await {
                        Ok(ServerEvent::NewMessage(m)) => got.push(m.seq),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                drop(client);
            }
            (user, got)
        }));
    }
    for sender in senders {
        sender.await.expect("sender").close().await;
    }
    sending.store(false, std::sync::atomic::Ordering::Relaxed);
    let total = 240;
    for (i, reader) in readers.into_iter().enumerate() {
        let (user, mut got) = reader.await.expect("reader");
        let mut client = remotes[i % 3].client_for(&user).await;
        client
            .send(join_since("stress", got.last().copied().unwrap_or(0)))
            .await;
        loop {
            match client.next().await {
                ServerEvent::NewMessage(m) => got.push(m.seq),
                ServerEvent::Joined { last_seq, .. } => {
                    assert_eq!(last_seq, total, "3 senders x 80");
                    break;
                }
                _ => {}
            }
        }
        client.close().await;
        let start = got.first().copied().unwrap_or(1);
        assert_eq!(
            got,
            (start..=total).collect::<Vec<_>>(),
            "{user} (seed {seed})"
        );
    }
}

#[tokio::test]
async fn redis_without_a_database_is_a_clear_startup_error() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--redis-url",
            "redis://127.0.0.1:6379",
        ])
        .output()
        .await
        .expect("run chat-server");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--database-url"), "{stderr}");
}

/// Kills a process group when dropped.
struct KillGroup(u32);

impl Drop for KillGroup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .status();
    }
}

/// Four consecutive free ports: the proxy's, then one per node.
fn free_ports() -> u16 {
    for _ in 0..50 {
        let first = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        if first > 65000 {
            continue;
        }
        let all_free = (first..first + 4)
            .map(|p| std::net::TcpListener::bind(("127.0.0.1", p)))
            .collect::<Result<Vec<_>, _>>()
            .is_ok();
        if all_free {
            return first;
        }
    }
    panic!("no four consecutive free ports");
}

#[tokio::test]
async fn make_cluster_serves_three_nodes_behind_one_haproxy_address() {
    let have_haproxy = std::process::Command::new("haproxy")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_haproxy {
        chat_test_engines::missing("haproxy", "apt-get install -y haproxy");
        return;
    }
    let Some((db, redis, _)) = engines().await else {
        return;
    };
    let state = tempfile::tempdir().expect("tempdir");
    let port = free_ports();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/cluster/run.sh");
    let mut child = tokio::process::Command::new("bash")
        .arg(script)
        .env("CHAT_CLUSTER_PORT", port.to_string())
        .env("CHAT_DATABASE_URL", &db.url)
        .env("CHAT_REDIS_URL", &redis.url)
        .env("CHAT_REDIS_PREFIX", &redis.prefix)
        .env("CHAT_SERVER_BIN", env!("CARGO_BIN_EXE_chat-server"))
        .env("CHAT_CLUSTER_STATE", state.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        // A group of its own, so that a failing test kills the nodes and
        // HAProxy too: a SIGKILLed script runs no trap.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("run deploy/cluster/run.sh");
    let _group = KillGroup(child.id().expect("pid"));
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let banner = tokio::time::timeout(WAIT * 3, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("chat cluster:") {
                return Some(line);
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    assert!(banner.is_some(), "the cluster did not start");
    let front = Remote {
        addr: ([127, 0, 0, 1], port).into(),
        tls_cert: None,
    };
    front.register("kim").await;
    front.register("lou").await;
    let mut kim = front.client_for("kim").await;
    let mut lou = front.client_for("lou").await;
    kim.join("hall").await;
    lou.join("hall").await;
    kim.say("hall", "through the proxy").await;
    let got = messages_until(&mut lou, "hall", 1).await;
    assert_eq!(got[0].text, "through the proxy");
    kim.close().await;
    lou.close().await;

    // SIGTERM stops the proxy and every node.
    let pid = child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    tokio::time::timeout(WAIT * 2, child.wait())
        .await
        .expect("the script ends")
        .expect("wait");
    let nodes_gone = tokio::time::timeout(WAIT, async {
        while (port..port + 4).any(|p| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok()) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(nodes_gone.is_ok(), "the proxy and the nodes stopped");
}

#[tokio::test]
async fn one_node_on_postgres_alone_keeps_accounts_and_history_across_a_restart() {
    let Some(db) = chat_test_engines::postgres().await else {
        return;
    };
    let engines = Engines::postgres_only(&db);
    let mut node = Node::start("solo", &engines, &[]).await;
    node.register("max").await;
    let mut max = node.client_for("max").await;
    let epoch = match max.send_wait_joined("notes").await {
        ServerEvent::Joined { epoch, .. } => epoch,
        other => panic!("{other:?}"),
    };
    for i in 1..=5 {
        max.send_acked("notes", &format!("n{i}"), &format!("n{i}"))
            .await;
    }
    max.close().await;
    node.kill().await;

    // Another process on the same database: the account, the history and
    // the epoch are all still there.
    let node = Node::start("solo", &engines, &[]).await;
    let mut max = node.client_for("max").await;
    match max.send_wait_joined("notes").await {
        ServerEvent::Joined {
            epoch: again,
            last_seq,
            history,
            ..
        } => {
            assert_eq!(again, epoch, "one epoch for as long as the database lasts");
            assert_eq!(last_seq, 5);
            assert_eq!(seqs(&history), [1, 2, 3, 4, 5]);
        }
        other => panic!("{other:?}"),
    }
    max.close().await;
}
