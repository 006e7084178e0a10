//! Presence across cluster nodes through Redis: notices that cross nodes
//! once, nodes that die or stall, Redis restarted empty or unreachable.
#![allow(missing_docs)]

mod support;

use std::time::{Duration, Instant};

use chat_rooms::presence::Presence;
use chat_test_engines::{CutProxy, PrivateRedis};
use support::{forget, node, send, shared_log, until, Member, WAIT};

/// Waits until `members` of `room` (as `presence` sees them) are `want`.
async fn members_are(presence: &dyn Presence, room: &str, want: &[&str]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let members = presence.members(room).await;
        if members == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "members of {room}: {members:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Subscribers of `room`'s channel, as Redis counts them.
async fn subscribers(url: &str, prefix: &str, room: &str) -> i64 {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let counts: Vec<redis::Value> = redis::cmd("PUBSUB")
        .arg("SHARDNUMSUB")
        .arg(format!("{prefix}:room:{{{room}}}"))
        .query_async(&mut conn)
        .await
        .expect("PUBSUB SHARDNUMSUB");
    match counts.get(1) {
        Some(redis::Value::Int(n)) => *n,
        other => panic!("SHARDNUMSUB answered {other:?}"),
    }
}

/// The directory's pages (issue 15, finding 7) over rooms whose members are
/// on different nodes: each occupied room once, in name order, counted
/// across nodes, a room emptied everywhere gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_directory_pages_over_every_nodes_members() {
    let Some(redis) = chat_test_engines::redis().await else {
        return;
    };
    let ttl = Duration::from_secs(5);
    let log = shared_log();
    let a = node(&log, &redis.url, &redis.prefix, "a", ttl).await;
    let b = node(&log, &redis.url, &redis.prefix, "b", ttl).await;
    let mut alice = Member::new(a.node(), "alice");
    let mut bob = Member::new(b.node(), "bob");
    let mut expected = Vec::new();
    for i in 0..23 {
        let room = format!("room-{i:02}");
        let mut members = 0;
        if i % 2 == 0 {
            alice.join(a.node(), &room).await;
            members += 1;
        }
        if i % 3 == 0 {
            bob.join(b.node(), &room).await;
            members += 1;
        }
        if i == 9 {
            // Emptied on every node: no longer in the directory.
            assert!(b.node().leave(&bob.peer, &room).await);
            members = 0;
        }
        if members > 0 {
            expected.push((room, members));
        }
    }
    for from in [a.node(), b.node()] {
        let mut listed = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = from.list_rooms(after.as_deref(), 4).await.expect("a page");
            assert!(page.rooms.len() <= 4);
            listed.extend(page.rooms.into_iter().map(|r| (r.name, r.members)));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(listed, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_cross_nodes_once_and_count_users_not_connections() {
    let Some(redis) = chat_test_engines::redis().await else {
        return;
    };
    let ttl = Duration::from_secs(5);
    let log = shared_log();
    let a = node(&log, &redis.url, &redis.prefix, "a", ttl).await;
    let b = node(&log, &redis.url, &redis.prefix, "b", ttl).await;
    let c = node(&log, &redis.url, &redis.prefix, "c", ttl).await;
    let mut alice = Member::new(a.node(), "alice");
    alice.join(a.node(), "r").await;
    let mut bob = Member::new(b.node(), "bob");
    let joined = bob.join(b.node(), "r").await;
    assert_eq!(joined.members, ["alice", "bob"], "members span nodes");
    // Bea is on bob's node: she hears of B's joins from B itself, and must
    // not hear them again when B's own notice comes back from Redis.
    let mut bea = Member::new(b.node(), "bea");
    bea.join(b.node(), "r").await;
    let mut carol_c = Member::new(c.node(), "carol");
    carol_c.join(c.node(), "r").await;
    until_subscribers(&redis.url, &redis.prefix, "r", 3).await;
    // Carol's second connection, on another node: she is there already.
    let mut carol_a = Member::new(a.node(), "carol");
    let joined = carol_a.join(a.node(), "r").await;
    assert_eq!(joined.members, ["alice", "bea", "bob", "carol"]);
    let rooms = b.node().list_rooms(None, 100).await.expect("rooms").rooms;
    assert_eq!(
        rooms.iter().find(|r| r.name == "r").map(|r| r.members),
        Some(4)
    );
    // Still on A: no departure. Then her last connection goes.
    assert!(c.node().leave(&carol_c.peer, "r").await);
    assert!(a.node().leave(&carol_a.peer, "r").await);
    // The marker, from B.
    let mut dave = Member::new(b.node(), "dave");
    dave.join(b.node(), "r").await;
    let notice = |what: &'static str, user: &str| (what, user.to_owned());
    let carol = [notice("joined", "carol"), notice("left", "carol")];
    let mut want = vec![
        notice("joined", "bea"),
        notice("joined", "bob"),
        notice("joined", "dave"),
    ];
    want.extend(carol.clone());
    want.sort();
    assert_eq!(alice.notices(5).await, want, "alice: each notice once");
    let mut want = vec![notice("joined", "bea"), notice("joined", "dave")];
    want.extend(carol.clone());
    want.sort();
    assert_eq!(bob.notices(4).await, want, "bob: each notice once");
    let mut want = vec![notice("joined", "dave")];
    want.extend(carol);
    want.sort();
    assert_eq!(bea.notices(3).await, want, "bea: each notice once");
    // C's last member went: C unsubscribed from the room.
    until_subscribers(&redis.url, &redis.prefix, "r", 2).await;
    assert!(b.node().leave(&dave.peer, "r").await);
    assert_eq!(alice.notice().await, ("left", "dave".into()));
    forget(&redis.url, &redis.prefix, vec![a, b, c]).await;
}

async fn until_subscribers(url: &str, prefix: &str, room: &str, want: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let n = subscribers(url, prefix, room).await;
        if n == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} subscribers, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_dies_has_its_members_announced_gone_within_the_ttl() {
    let Some(redis) = chat_test_engines::redis().await else {
        return;
    };
    let ttl = Duration::from_secs(1);
    let log = shared_log();
    let a = node(&log, &redis.url, &redis.prefix, "a", ttl).await;
    let b = node(&log, &redis.url, &redis.prefix, "b", ttl).await;
    let c = node(&log, &redis.url, &redis.prefix, "c", ttl).await;
    let mut alice = Member::new(a.node(), "alice");
    alice.join(a.node(), "r").await;
    let mut carol = Member::new(c.node(), "carol");
    carol.join(c.node(), "r").await;
    // Dave is on B and on A: he stays when B dies.
    let mut dave_a = Member::new(a.node(), "dave");
    dave_a.join(a.node(), "r").await;
    for (node, user) in [(&b, "bob"), (&b, "dave"), (&b, "erin")] {
        Member::new(node.node(), user).join(node.node(), "r").await;
    }
    members_are(
        a.presence().as_ref(),
        "r",
        &["alice", "bob", "carol", "dave", "erin"],
    )
    .await;
    let joins = |users: &[&str]| -> Vec<(&'static str, String)> {
        users.iter().map(|u| ("joined", (*u).to_owned())).collect()
    };
    assert_eq!(
        alice.notices(4).await,
        joins(&["bob", "carol", "dave", "erin"])
    );
    assert_eq!(carol.notices(3).await, joins(&["bob", "dave", "erin"]));
    assert_eq!(dave_a.notices(2).await, joins(&["bob", "erin"]));
    // Death: B's tasks stop, nothing is cleaned up.
    let died = Instant::now();
    drop(b);
    let gone = vec![("left", "bob".to_owned()), ("left", "erin".to_owned())];
    assert_eq!(alice.notices(2).await, gone, "alice");
    let took = died.elapsed();
    // Expiry after at most the TTL, found within a third of it more.
    assert!(took < ttl * 3, "announced after {took:?}");
    assert_eq!(carol.notices(2).await, gone, "carol");
    assert_eq!(dave_a.notices(2).await, gone, "dave");
    members_are(c.presence().as_ref(), "r", &["alice", "carol", "dave"]).await;
    // Nothing doubled, nothing for dave: the next notice is the marker.
    let mut frank = Member::new(c.node(), "frank");
    frank.join(c.node(), "r").await;
    for member in [&mut alice, &mut carol, &mut dave_a] {
        assert_eq!(member.notice().await, ("joined", "frank".into()));
    }
    forget(&redis.url, &redis.prefix, vec![a, c]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_node_that_was_reaped_comes_back_and_is_announced_again() {
    let Some(redis) = chat_test_engines::redis().await else {
        return;
    };
    let ttl = Duration::from_secs(1);
    let log = shared_log();
    let a = node(&log, &redis.url, &redis.prefix, "a", ttl).await;
    let b = node(&log, &redis.url, &redis.prefix, "b", ttl).await;
    let mut alice = Member::new(a.node(), "alice");
    alice.join(a.node(), "r").await;
    let mut bob = Member::new(b.node(), "bob");
    bob.join(b.node(), "r").await;
    assert_eq!(alice.notice().await, ("joined", "bob".into()));
    let before = b.presence().incarnation();
    b.presence().suspend_upkeep(true);
    assert_eq!(alice.notice().await, ("left", "bob".into()));
    members_are(a.presence().as_ref(), "r", &["alice"]).await;
    b.presence().suspend_upkeep(false);
    // B finds Redis forgot it, enters its members again and says so.
    assert_eq!(alice.notice().await, ("joined", "bob".into()));
    members_are(a.presence().as_ref(), "r", &["alice", "bob"]).await;
    assert_ne!(b.presence().incarnation(), before);
    // Bob's connection never noticed: it is still a member, live.
    send(a.node(), &alice, "r", "still there?").await;
    assert_eq!(bob.messages(1).await[0].text, "still there?");
    assert!(b.node().leave(&bob.peer, "r").await);
    assert_eq!(alice.notice().await, ("left", "bob".into()));
    forget(&redis.url, &redis.prefix, vec![a, b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_restarts_empty_presence_comes_back_without_notices() {
    let Some(mut redis) = PrivateRedis::start().await else {
        return;
    };
    let url = redis.url();
    let ttl = Duration::from_secs(1);
    let log = shared_log();
    let a = node(&log, &url, "chat", "a", ttl).await;
    let b = node(&log, &url, "chat", "b", ttl).await;
    let mut alice = Member::new(a.node(), "alice");
    alice.join(a.node(), "r").await;
    let mut bob = Member::new(b.node(), "bob");
    bob.join(b.node(), "r").await;
    assert_eq!(alice.notice().await, ("joined", "bob".into()));
    redis.restart().await;
    members_are(a.presence().as_ref(), "r", &["alice", "bob"]).await;
    members_are(b.presence().as_ref(), "r", &["alice", "bob"]).await;
    until("both ready", || a.ready() && b.ready()).await;
    // Nobody was told anyone left, so nobody is told anyone is back: the
    // next notice either of them gets is carol's.
    let mut carol = Member::new(b.node(), "carol");
    let joined = carol.join(b.node(), "r").await;
    assert_eq!(joined.members, ["alice", "bob", "carol"]);
    assert_eq!(alice.notice().await, ("joined", "carol".into()));
    assert_eq!(bob.notice().await, ("joined", "carol".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_while_redis_is_unreachable_is_announced_once_it_is_back() {
    let Some(redis) = chat_test_engines::redis().await else {
        return;
    };
    let target = redis
        .url
        .trim_start_matches("redis://")
        .parse()
        .expect("redis at host:port");
    let proxy = CutProxy::start(target).await;
    let ttl = Duration::from_secs(5);
    let log = shared_log();
    let a = node(&log, &redis.url, &redis.prefix, "a", ttl).await;
    let b_url = format!("redis://{}", proxy.addr());
    let b = node(&log, &b_url, &redis.prefix, "b", ttl).await;
    let mut alice = Member::new(a.node(), "alice");
    alice.join(a.node(), "r").await;
    let mut bob = Member::new(b.node(), "bob");
    bob.join(b.node(), "r").await;
    let mut carol = Member::new(b.node(), "carol");
    carol.join(b.node(), "r").await;
    assert_eq!(alice.notice().await, ("joined", "bob".into()));
    assert_eq!(alice.notice().await, ("joined", "carol".into()));
    proxy.cut();
    until("b sees Redis gone", || !b.ready()).await;
    // Works locally; the notice has to wait.
    assert!(b.node().leave(&bob.peer, "r").await);
    proxy.restore();
    assert_eq!(alice.notice().await, ("left", "bob".into()));
    assert_eq!(carol.notice().await, ("left", "bob".into()));
    members_are(a.presence().as_ref(), "r", &["alice", "carol"]).await;
    // Once: the next notice is the marker.
    let mut dave = Member::new(a.node(), "dave");
    dave.join(a.node(), "r").await;
    assert_eq!(alice.notice().await, ("joined", "dave".into()));
    assert_eq!(carol.notice().await, ("joined", "dave".into()));
    forget(&redis.url, &redis.prefix, vec![a, b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_shut_down_gracefully_sends_its_last_notices_and_is_reaped_at_once() {
    let Some(redis) = chat_test_engines::redis().await else {
        return;
    };
    // Upkeep every 2 s: B's heartbeat, left alone, would last 4 to 6 s more.
    let ttl = Duration::from_secs(6);
    let log = shared_log();
    let a = node(&log, &redis.url, &redis.prefix, "a", ttl).await;
    let b = node(&log, &redis.url, &redis.prefix, "b", ttl).await;
    let mut alice = Member::new(a.node(), "alice");
    alice.join(a.node(), "r").await;
    let mut bob = Member::new(b.node(), "bob");
    bob.join(b.node(), "r").await;
    let mut erin = Member::new(b.node(), "erin");
    erin.join(b.node(), "r").await;
    assert_eq!(
        alice.notices(2).await,
        [("joined", "bob".to_owned()), ("joined", "erin".to_owned())]
    );
    // Bob's connection closes; erin's is still open when B shuts down.
    assert!(b.node().leave(&bob.peer, "r").await);
    let stopped = Instant::now();
    b.shutdown(Duration::from_secs(2)).await;
    assert_eq!(alice.notice().await, ("left", "bob".into()));
    assert_eq!(alice.notice().await, ("left", "erin".into()));
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_millis(3500),
        "reaped after {took:?}: retired, not expired"
    );
    members_are(a.presence().as_ref(), "r", &["alice"]).await;
    forget(&redis.url, &redis.prefix, vec![a]).await;
}
