//! The one catch-up algorithm, for a plain join and for a resume alike:
//! start holding the room's live events, read from the log, send, then hand
//! over the held events above the last seq sent and go live.
//!
//! The reading and sending happen outside every lock, at the client's pace
//! (a backlog awaits queue space); only the last step takes the room's lock,
//! and it never waits: when what it would hand over does not reach back to
//! what was sent, or does not fit in the queue, it declines and the backlog
//! is read on from the log.

use std::sync::Arc;

use chat_protocol::ServerEvent;

use crate::hub::{Begin, Finish, Peer};
use crate::metrics::ResumeOutcome;
use crate::node::{Node, Ref};
use crate::outbox::Frame;
use crate::room_log::{gap_before, LogError};

/// Messages read from the log at a time while catching up.
const PAGE: usize = 200;

/// Where a catch-up starts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Start {
    /// A plain join: this many recent messages, in `joined`.
    Recent(usize),
    /// A resume: everything after this seq, before `joined`.
    After(u64),
}

/// What the first read found to send: a plain join's history, or the seq a
/// resume goes on from (never past the room's newest).
enum Opening {
    Plain(Vec<chat_protocol::ChatMessage>),
    Resume(u64),
}

/// Catches `peer` up on `room` from `start` and makes it a live member.
/// On a log failure the connection is taken out of the room again.
pub(crate) async fn run(
    node: &Node,
    peer: &Peer,
    room: &str,
    start: Start,
    reference: Ref,
) -> Result<(), LogError> {
    let log = node.log();
    let hub = node.hub();
    let epoch: Arc<str> = log.epoch().into();
    // Read before `begin`: a room new to this node delivers after this seq.
    let (known_last, opening) = match start {
        Start::Recent(n) => {
            let recent = log.recent(room, n).await?;
            (recent.last_seq, Opening::Plain(recent.messages))
        }
        Start::After(since) => {
            let last = log.bounds(room).await?.last_seq;
            (last, Opening::Resume(since.min(last)))
        }
    };
    // Counted present before `begin`, so that a leave, which needs `begin`
    // to have happened, always comes after it.
    let first = node.presence().join(room, &peer.user).await;
    match hub.begin(room, peer, known_last) {
        Begin::Began => {}
        other => {
            node.presence().leave(room, &peer.user).await;
            if other == Begin::Member {
                // Joining again repeats the confirmation, with recent history.
                let (history, last_seq) = match opening {
                    Opening::Plain(history) => (history, known_last),
                    Opening::Resume(_) => {
                        let recent = log.recent(room, node.history_on_join()).await?;
                        (recent.messages, recent.last_seq)
                    }
                };
                let members = node.presence().members(room).await;
                let joined =
                    joined_frame(node, room, members, last_seq, history, &epoch, &reference);
                peer.outbox.deliver(&joined);
            }
            // Catching up already: that catch-up answers.
            return Ok(());
        }
    }
    if first {
        let notice = ServerEvent::MemberJoined {
            room: room.to_owned(),
            user: peer.user.to_string(),
        };
        node.announce(room, notice.to_json().into(), Some(peer.id));
    }
    let members = node.presence().members(room).await;
    let result = match opening {
        Opening::Plain(history) => {
            let joined = joined_frame(node, room, members, known_last, history, &epoch, &reference);
            peer.outbox.deliver(&joined);
            read_on(node, peer, room, known_last, None)
                .await
                .map(|_| ())
        }
        Opening::Resume(since) => {
            let joined = move |last_seq| {
                joined_frame(
                    node,
                    room,
                    members.clone(),
                    last_seq,
                    Vec::new(),
                    &epoch,
                    &reference,
                )
            };
            let gapped = read_on(node, peer, room, since, Some(&joined)).await;
            gapped.map(|gapped| {
                let outcome = if gapped {
                    ResumeOutcome::Gap
                } else {
                    ResumeOutcome::Exact
                };
                node.metrics().resumed(outcome);
            })
        }
    };
    if let Err(e) = &result {
        // Undo the membership: a client told of the failure must not also
        // keep receiving the room.
        node.leave(peer, room).await;
        tracing::warn!(conn = peer.id, %room, error = %e, "catch-up failed");
    }
    result
}

/// Sends the log after `cursor` until the hub can hand over the rest; a
/// resume (with `joined`) counts what it sends as replayed. `true` when a
/// `history_gap` was sent.
async fn read_on(
    node: &Node,
    peer: &Peer,
    room: &str,
    mut cursor: u64,
    joined: Option<&(dyn Fn(u64) -> Frame + Sync)>,
) -> Result<bool, LogError> {
    let metrics = node.metrics();
    let mut exhausted = false;
    let mut gapped = false;
    loop {
        match node.hub().finish(room, peer.id, cursor, exhausted, joined) {
            Finish::Done { .. } | Finish::Gone => return Ok(gapped),
            Finish::NotYet => {}
        }
        let page = node.log().after(room, cursor, PAGE).await?;
        exhausted = page.is_empty();
        if let Some(gap) = gap_before(room, cursor, page.first()) {
            gapped = true;
            if !peer.outbox.send(gap.to_json().into()).await {
                return Ok(gapped);
            }
        }
        for message in page {
            cursor = message.seq;
            if !peer
                .outbox
                .send(ServerEvent::NewMessage(message).to_json().into())
                .await
            {
                return Ok(gapped);
            }
            metrics.deliveries.inc();
            if joined.is_some() {
                metrics.replayed.inc();
            }
        }
    }
}

/// The `joined` frame, its history cut to the newest messages that fit the
/// node's frame size.
fn joined_frame(
    node: &Node,
    room: &str,
    members: Vec<String>,
    last_seq: u64,
    history: Vec<chat_protocol::ChatMessage>,
    epoch: &str,
    reference: &Ref,
) -> Frame {
    ServerEvent::Joined {
        room: room.to_owned(),
        members,
        members_total: None,
        last_seq,
        history,
        epoch: epoch.to_owned(),
    }
    .to_json_within(reference.as_deref(), node.max_frame())
    .into()
}
