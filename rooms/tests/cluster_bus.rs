//! The Redis bus between cluster nodes in one process: each node its own
//! hub, bus and presence, all sharing one room log and one Redis.
#![allow(missing_docs)]

mod support;

use std::time::Duration;

use chat_rooms::bus::{Bus, RoomEvent};
use chat_test_engines::{CutProxy, PrivateRedis};
use support::{contiguous, forget, node, send, shared_log, store, until, Member};

const TTL: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_nodes_in_order_exactly_once() {
    let Some(redis) = chat_test_engines::redis().await else {
        return;
    };
    let log = shared_log();
    let a = node(&log, &redis.url, &redis.prefix, "a", TTL).await;
    let b = node(&log, &redis.url, &redis.prefix, "b", TTL).await;
    let c = node(&log, &redis.url, &redis.prefix, "c", TTL).await;
    let mut alice = Member::new(a.node(), "alice");
    let mut bob = Member::new(b.node(), "bob");
    let mut carol = Member::new(c.node(), "carol");
    alice.join(a.node(), "r").await;
    bob.join(b.node(), "r").await;
    carol.join(c.node(), "r").await;
    // At once, before the other nodes' subscriptions are surely confirmed:
    // their resyncs must make up for it.
    for i in 0..50 {
        send(a.node(), &alice, "r", &format!("a{i}")).await;
    }
    // The marker: anything doubled would show before it.
    send(c.node(), &carol, "r", "end").await;
    for (who, member) in [
        ("alice", &mut alice),
        ("bob", &mut bob),
        ("carol", &mut carol),
    ] {
        let got = member.messages(51).await;
        contiguous(who, &got, 1, 51);
        assert_eq!(got[0].text, "a0");
        assert_eq!(got[50].text, "end");
    }
    forget(&redis.url, &redis.prefix, vec![a, b, c]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_racing_on_every_node_reach_everyone_in_one_order() {
    let Some(redis) = chat_test_engines::redis().await else {
        return;
    };
    let log = shared_log();
    let nodes = [
        node(&log, &redis.url, &redis.prefix, "a", TTL).await,
        node(&log, &redis.url, &redis.prefix, "b", TTL).await,
        node(&log, &redis.url, &redis.prefix, "c", TTL).await,
    ];
    let mut members = Vec::new();
    for (n, cluster) in nodes.iter().enumerate() {
        for k in 0..2 {
            let mut m = Member::new(cluster.node(), &format!("u{n}{k}"));
            m.join(cluster.node(), "race").await;
            members.push((n, m));
        }
    }
    until("every node subscribed", || nodes.iter().all(|c| c.ready())).await;
    const EACH: usize = 40;
    let mut senders = Vec::new();
    for (n, cluster) in nodes.iter().enumerate() {
        let node = cluster.node().clone();
        let sender = Member::new(&node, &format!("s{n}"));
        senders.push(tokio::spawn(async move {
            for i in 0..EACH {
                send(&node, &sender, "race", &format!("{n}:{i}")).await;
            }
        }));
    }
    for sender in senders {
        sender.await.expect("sender");
    }
    let total = (EACH * nodes.len()) as u64;
    let mut first: Option<Vec<(u64, String)>> = None;
    for (n, member) in &mut members {
        let got = member.messages(total as usize).await;
        contiguous(&format!("{}@{n}", member.peer.user), &got, 1, total);
        let order: Vec<(u64, String)> = got.into_iter().map(|m| (m.seq, m.text)).collect();
        match &first {
            None => first = Some(order),
            Some(first) => assert_eq!(&order, first, "one order for everyone"),
        }
    }
    // Each sender's own messages keep their order.
    let order = first.expect("members");
    for n in 0..nodes.len() {
        let own: Vec<String> = order
            .iter()
            .filter(|(_, t)| t.starts_with(&format!("{n}:")))
            .map(|(_, t)| t.clone())
            .collect();
        let want: Vec<String> = (0..EACH).map(|i| format!("{n}:{i}")).collect();
        assert_eq!(own, want);
    }
    forget(&redis.url, &redis.prefix, Vec::from(nodes)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joining_on_one_node_while_another_sends_misses_nothing() {
    let Some(redis) = chat_test_engines::redis().await else {
        return;
    };
    let log = shared_log();
    let a = node(&log, &redis.url, &redis.prefix, "a", TTL).await;
    let b = node(&log, &redis.url, &redis.prefix, "b", TTL).await;
    let mut alice = Member::new(a.node(), "alice");
    alice.join(a.node(), "r").await;
    let sending = {
        let node = a.node().clone();
        let sender = Member::new(&node, "alice");
        tokio::spawn(async move {
            for i in 0..300 {
                send(&node, &sender, "r", &format!("m{i}")).await;
            }
        })
    };
    // Join mid-stream: B has no state for the room yet.
    until("some sent", || !log_is_quiet(&alice)).await;
    let mut bob = Member::new(b.node(), "bob");
    let joined = bob.join(b.node(), "r").await;
    // And a resume on B, from the middle of what was sent.
    let mut bob2 = Member::new(b.node(), "bob");
    b.node()
        .join(&bob2.peer, "r", Some(joined.last_seq / 2), None, None)
        .await
        .expect("resume");
    sending.await.expect("sender");
    let rest = bob.messages((300 - joined.last_seq) as usize).await;
    contiguous("bob", &rest, joined.last_seq + 1, 300);
    let resumed = bob2.messages((300 - joined.last_seq / 2) as usize).await;
    contiguous("bob's resume", &resumed, joined.last_seq / 2 + 1, 300);
    // Nothing doubled after the last one either.
    send(a.node(), &alice, "r", "end").await;
    contiguous("bob", &bob.messages(1).await, 301, 301);
    contiguous("bob's resume", &bob2.messages(1).await, 301, 301);
    assert!(
        joined.last_seq < 300,
        "joined mid-stream ({})",
        joined.last_seq
    );
    forget(&redis.url, &redis.prefix, vec![a, b]).await;
}

/// Whether `member` has been sent nothing yet (peeking, not consuming).
fn log_is_quiet(member: &Member) -> bool {
    member.peer.outbox.spare() == 100_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doubled_and_reordered_events_on_the_bus_reach_members_once_in_order() {
    let Some(redis) = chat_test_engines::redis().await else {
        return;
    };
    let log = shared_log();
    let a = node(&log, &redis.url, &redis.prefix, "a", TTL).await;
    let b = node(&log, &redis.url, &redis.prefix, "b", TTL).await;
    let mut bob = Member::new(b.node(), "bob");
    bob.join(b.node(), "r").await;
    until("b subscribed", || b.ready()).await;
    let mut stored = Vec::new();
    for i in 0..4 {
        stored.push(store(&log, "r", &format!("m{i}")).await);
    }
    // Through A's bus: 2, 1, 1, garbage, 4, 3, 2.
    let bus = a.bus();
    for i in [1, 0, 0] {
        bus.publish(RoomEvent::message(stored[i].clone()));
    }
    bus.publish_raw("r", b"m 9\nnot utf-8 \xff".to_vec());
    bus.publish_raw("r", b"garbage".to_vec());
    for i in [3, 2, 1] {
        bus.publish(RoomEvent::message(stored[i].clone()));
    }
    let got = bob.messages(4).await;
    contiguous("bob", &got, 1, 4);
    let end = store(&log, "r", "end").await;
    bus.publish(RoomEvent::message(end));
    contiguous("bob", &bob.messages(1).await, 5, 5);
    until("the garbage counted", || b.bus().stats().malformed == 2).await;
    forget(&redis.url, &redis.prefix, vec![a, b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_while_redis_is_down_reach_everyone_once_it_is_back() {
    let Some(mut redis) = PrivateRedis::start().await else {
        return;
    };
    let url = redis.url();
    let log = shared_log();
    let a = node(&log, &url, "chat", "a", Duration::from_secs(1)).await;
    let b = node(&log, &url, "chat", "b", Duration::from_secs(1)).await;
    let mut alice = Member::new(a.node(), "alice");
    let mut bob = Member::new(b.node(), "bob");
    let mut carol = Member::new(b.node(), "carol");
    alice.join(a.node(), "r").await;
    bob.join(b.node(), "r").await;
    carol.join(b.node(), "r").await;
    until("both subscribed", || a.ready() && b.ready()).await;
    for i in 0..20 {
        send(a.node(), &alice, "r", &format!("before{i}")).await;
    }
    contiguous("bob", &bob.messages(20).await, 1, 20);
    redis.kill();
    until("both see Redis gone", || !a.ready() && !b.ready()).await;
    // The log is the authority: sends keep being stored and acked.
    for i in 0..20 {
        send(a.node(), &alice, "r", &format!("during-a{i}")).await;
        send(b.node(), &bob, "r", &format!("during-b{i}")).await;
    }
    redis.restart().await;
    for i in 0..10 {
        send(a.node(), &alice, "r", &format!("after{i}")).await;
    }
    contiguous("alice", &alice.messages(70).await, 1, 70);
    contiguous("bob", &bob.messages(50).await, 21, 70);
    contiguous("carol", &carol.messages(70).await, 1, 70);
    until("both ready again", || a.ready() && b.ready()).await;
    send(b.node(), &bob, "r", "end").await;
    for (who, member) in [
        ("alice", &mut alice),
        ("bob", &mut bob),
        ("carol", &mut carol),
    ] {
        contiguous(who, &member.messages(1).await, 71, 71);
    }
}

/// Only B loses Redis: A keeps publishing, and what B's subscription missed
/// is not in anyone's backlog. B's resync after resubscribing brings it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_redis_resyncs_what_it_missed() {
    cut_off(Cut::Receiver).await;
}

/// Only the sender's node B loses Redis: the others stay subscribed and
/// never resync, so what B sent meanwhile reaches them from B's backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_redis_publishes_its_backlog_when_back() {
    cut_off(Cut::Sender).await;
}

#[derive(PartialEq)]
enum Cut {
    Receiver,
    Sender,
}

/// A and B in one room; B's Redis connections go through a proxy that is cut
/// while `cut` (A, or B, as given) sends 20 messages.
async fn cut_off(cut: Cut) {
    let Some(redis) = chat_test_engines::redis().await else {
        return;
    };
    let target = redis
        .url
        .trim_start_matches("redis://")
        .parse()
        .expect("redis at host:port");
    let proxy = CutProxy::start(target).await;
    let log = shared_log();
    let a = node(&log, &redis.url, &redis.prefix, "a", TTL).await;
    let b_url = format!("redis://{}", proxy.addr());
    let b = node(&log, &b_url, &redis.prefix, "b", TTL).await;
    let mut alice = Member::new(a.node(), "alice");
    let mut bob = Member::new(b.node(), "bob");
    alice.join(a.node(), "r").await;
    bob.join(b.node(), "r").await;
    until("both subscribed", || a.ready() && b.ready()).await;
    send(a.node(), &alice, "r", "before").await;
    contiguous("bob", &bob.messages(1).await, 1, 1);
    contiguous("alice", &alice.messages(1).await, 1, 1);
    proxy.cut();
    until("b sees Redis gone", || !b.ready()).await;
    let (sender, member) = match cut {
        Cut::Receiver => (a.node(), &alice),
        Cut::Sender => (b.node(), &bob),
    };
    for i in 0..20 {
        send(sender, member, "r", &format!("during{i}")).await;
    }
    if cut == Cut::Sender {
        // Let B's publisher fail with all of them at least once more: a
        // publisher that dropped what failed would have lost them now.
        let failed = b.bus().stats().publish_failures;
        until("a failed publish", || {
            b.bus().stats().publish_failures > failed
        })
        .await;
    }
    proxy.restore();
    let (mut sending, mut other) = match cut {
        Cut::Receiver => (alice, bob),
        Cut::Sender => (bob, alice),
    };
    // No later message shows the other side the gap: only the resync (for
    // a cut receiver) or the backlog (for a cut sender) can bring these.
    contiguous("the other", &other.messages(20).await, 2, 21);
    until("b ready again", || b.ready()).await;
    send(a.node(), &sending, "r", "end").await;
    contiguous("the sender", &sending.messages(21).await, 2, 22);
    contiguous("the other", &other.messages(1).await, 22, 22);
    forget(&redis.url, &redis.prefix, vec![a, b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_waits_for_the_backlog_to_be_published() {
    let Some(redis) = chat_test_engines::redis().await else {
        return;
    };
    let target = redis
        .url
        .trim_start_matches("redis://")
        .parse()
        .expect("redis at host:port");
    let proxy = CutProxy::start(target).await;
    let log = shared_log();
    let a = node(
        &log,
        &format!("redis://{}", proxy.addr()),
        &redis.prefix,
        "a",
        TTL,
    )
    .await;
    assert!(
        a.bus().flush(Duration::from_secs(5)).await,
        "nothing to publish"
    );
    proxy.cut();
    a.bus().notify("r", "{}".into());
    assert!(
        !a.bus().flush(Duration::from_millis(300)).await,
        "Redis unreachable: still held"
    );
    proxy.restore();
    assert!(
        a.bus().flush(Duration::from_secs(10)).await,
        "published once back"
    );
    forget(&redis.url, &redis.prefix, vec![a]).await;
}
