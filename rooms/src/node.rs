//! One node's rooms, as its connections use them: join (and resume), leave,
//! send, history and the room list, over the room log, the bus, the hub and
//! presence.

use std::collections::BTreeMap;
use std::sync::Arc;

use chat_protocol::{ChatMessage, ErrorCode, RoomInfo, ServerEvent};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::bus::{Bus, LocalBus, RoomEvent};
use crate::catch_up::{self, Start};
use crate::hub::{ConnId, Hub, Peer};
use crate::metrics::{NodeMetrics, ResumeOutcome};
use crate::outbox::Frame;
use crate::presence::{Change, LocalPresence, Presence};
use crate::room_log::{Bounds, LogError, NewMessage, RoomLog};

/// One page of the room directory, as `room_list` carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPage {
    /// The page's rooms, sorted by name.
    pub rooms: Vec<RoomInfo>,
    /// Where the next page starts (its `after`); `None` on the last page.
    pub next: Option<String>,
}

/// The parts a node is made of.
pub struct Parts {
    /// Numbers and stores messages.
    pub log: Arc<dyn RoomLog>,
    /// Carries committed messages to every node's hub.
    pub bus: Arc<dyn Bus>,
    /// This node's members and delivery.
    pub hub: Arc<Hub>,
    /// Who is in which room.
    pub presence: Arc<dyn Presence>,
}

/// A chat node: what a connection needs to take part in rooms.
pub struct Node {
    log: Arc<dyn RoomLog>,
    bus: Arc<dyn Bus>,
    hub: Arc<Hub>,
    presence: Arc<dyn Presence>,
    /// Messages of history in a plain `joined`.
    history_on_join: usize,
    /// Largest frame a `joined` or `history_page` may fill.
    max_frame: usize,
    /// Stops the presence upkeep task, if there is one, with the node.
    _maintenance: Option<DropGuard>,
}

/// The frame size of history without [`Node::with_max_frame`]: 1 KiB above
/// the server's default largest message.
pub(crate) const DEFAULT_MAX_FRAME: usize = 64 * 1024 + 1024;

/// A request's `ref`, copied onto its answer.
pub type Ref = Option<Arc<str>>;

impl Node {
    /// A node of its own: an in-process bus and presence over `log`.
    /// `send_queue` is each connection's queue size (live events held for
    /// a catching-up member are bounded by it). Needs a tokio runtime.
    pub fn single(log: Arc<dyn RoomLog>, history_on_join: usize, send_queue: usize) -> Self {
        let hub = Hub::new(log.clone(), send_queue);
        let bus = Arc::new(LocalBus::new(hub.clone()));
        Self::from_parts(
            Parts {
                log,
                bus,
                hub,
                presence: Arc::new(LocalPresence::default()),
            },
            history_on_join,
        )
    }

    /// A node from its parts, for shared (cluster) implementations. When
    /// the presence needs upkeep ([`Presence::maintain_every`]) a task runs
    /// it, and announces what it finds, until the node is dropped; that
    /// needs a tokio runtime.
    pub fn from_parts(parts: Parts, history_on_join: usize) -> Self {
        let maintenance = parts.presence.maintain_every().map(|every| {
            let stop = CancellationToken::new();
            tokio::spawn(maintain(
                Announcer {
                    hub: parts.hub.clone(),
                    bus: parts.bus.clone(),
                },
                parts.presence.clone(),
                every,
                stop.clone(),
            ));
            stop.drop_guard()
        });
        Self {
            log: parts.log,
            bus: parts.bus,
            hub: parts.hub,
            presence: parts.presence,
            history_on_join,
            max_frame: DEFAULT_MAX_FRAME,
            _maintenance: maintenance,
        }
    }

    /// This node with frames of history (a `joined`'s, a `history_page`'s)
    /// cut to `bytes`: the protocol promises clients frames at most 1 KiB
    /// above the largest message the server accepts.
    pub fn with_max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Largest frame of history this node sends.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// The room log.
    pub fn log(&self) -> &Arc<dyn RoomLog> {
        &self.log
    }

    /// This node's hub.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// What this node counts (its hub's handles).
    pub fn metrics(&self) -> &Arc<NodeMetrics> {
        self.hub.metrics()
    }

    /// Joins `room`: a plain join (`since` absent, or from another epoch)
    /// brings recent history in `joined`; a resume brings every stored
    /// message after `since`, then `joined`. Either way live messages follow
    /// with nothing lost or doubled. A join of a room the connection is
    /// catching up on already is ignored (that catch-up answers).
    pub async fn join(
        &self,
        peer: &Peer,
        room: &str,
        since: Option<u64>,
        epoch: Option<&str>,
        reference: Ref,
    ) -> Result<(), LogError> {
        let start = match since {
            Some(since) if epoch.is_none_or(|e| e == self.log.epoch()) => Start::After(since),
            Some(_) => {
                self.metrics().resumed(ResumeOutcome::NewEpoch);
                Start::Recent(self.history_on_join)
            }
            None => Start::Recent(self.history_on_join),
        };
        catch_up::run(self, peer, room, start, reference).await
    }

    /// Takes a connection out of a room, telling the others when it was the
    /// user's last connection there. `false` if it was not in the room.
    pub async fn leave(&self, peer: &Peer, room: &str) -> bool {
        if !self.hub.remove(room, peer.id) {
            return false;
        }
        if self.presence.leave(room, &peer.user).await {
            let notice = ServerEvent::MemberLeft {
                room: room.to_owned(),
                user: peer.user.to_string(),
            };
            self.announce(room, notice.to_json().into(), None);
        }
        true
    }

    /// Sends a notice to the members of `room` on this node (except
    /// `except`) and on every other node.
    pub(crate) fn announce(&self, room: &str, frame: Frame, except: Option<ConnId>) {
        self.hub.notify(room, &frame, except);
        self.bus.notify(room, frame);
    }

    /// Whether the connection is a member of `room` (joined, not catching up).
    pub fn is_member(&self, peer: &Peer, room: &str) -> bool {
        self.hub.is_member(room, peer.id)
    }

    /// Appends a message; once it is committed, acks it to the sender and
    /// publishes it to the room (a resend with a known `client_id` is acked
    /// again and published again, which the hubs drop as a duplicate). The
    /// caller checks membership first.
    pub async fn send(
        &self,
        peer: &Peer,
        room: &str,
        text: String,
        client_id: Option<String>,
        reference: Ref,
    ) {
        let outbox = peer.outbox.clone();
        let bus = self.bus.clone();
        let metrics = self.metrics().clone();
        let started = std::time::Instant::now();
        let acked_id = client_id.clone();
        let message = NewMessage {
            room: room.to_owned(),
            sender: peer.user.to_string(),
            client_id,
            text,
        };
        let reply = move |event: ServerEvent| {
            outbox.deliver(&event.to_json_with_ref(reference.as_deref()).into());
        };
        self.log
            .append(
                message,
                Box::new(move |result| match result {
                    Ok(appended) => {
                        metrics
                            .append_seconds
                            .observe(started.elapsed().as_secs_f64());
                        if !appended.duplicate {
                            metrics.stored.inc();
                        }
                        reply(ServerEvent::Ack {
                            room: appended.message.room.clone(),
                            seq: appended.message.seq,
                            id: appended.message.id.clone(),
                            client_id: acked_id,
                        });
                        // A duplicate is published again on purpose: its first
                        // append may have committed while its sender heard only
                        // an error (a connection lost during COMMIT), and then
                        // nobody published it. Every hub drops what it has.
                        // A forgotten one has nothing left to publish.
                        if !appended.forgotten {
                            bus.publish(RoomEvent::message(appended.message));
                        }
                    }
                    Err(e) => {
                        metrics.append_failures.inc();
                        reply(ServerEvent::error(ErrorCode::Internal, storage_failure(&e)));
                    }
                }),
            )
            .await;
    }

    /// A page of older messages and the room's oldest stored seq.
    pub async fn history(
        &self,
        room: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<ChatMessage>, Bounds), LogError> {
        let messages = self.log.before(room, before, limit).await?;
        let bounds = self.log.bounds(room).await?;
        Ok((messages, bounds))
    }

    /// One page of the room directory: the first `limit` rooms with members
    /// or stored messages whose names sort after `after`, in byte order, each
    /// with its distinct user count and last activity; `next` is where the
    /// following page starts, `None` after the last. Reads one page of each
    /// source, never the whole directory.
    pub async fn list_rooms(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RoomPage, LogError> {
        let limit = limit.max(1);
        // One more than the page from each source tells whether a next
        // page exists. A room in the page that has members is among the
        // first `limit + 1` occupied rooms, so its count is known.
        let (stored, occupied) = tokio::join!(
            self.log.rooms(after, limit + 1),
            self.presence.occupied(after, limit + 1)
        );
        let mut rooms: BTreeMap<String, RoomInfo> = stored?
            .into_iter()
            .map(|r| {
                let info = RoomInfo {
                    name: r.name.clone(),
                    members: 0,
                    last_seq: r.last_seq,
                    last_activity: r.last_activity,
                };
                (r.name, info)
            })
            .collect();
        for (name, members) in occupied {
            rooms
                .entry(name.clone())
                .or_insert_with(|| RoomInfo {
                    name,
                    members: 0,
                    last_seq: 0,
                    last_activity: None,
                })
                .members = members;
        }
        let more = rooms.len() > limit;
        let rooms: Vec<RoomInfo> = rooms.into_values().take(limit).collect();
        let next = more
            .then(|| rooms.last().map(|room| room.name.clone()))
            .flatten();
        Ok(RoomPage { rooms, next })
    }

    /// Messages of history in a plain `joined`.
    pub(crate) fn history_on_join(&self) -> usize {
        self.history_on_join
    }

    pub(crate) fn presence(&self) -> &dyn Presence {
        &*self.presence
    }
}

/// Announces notices to every node: this one through its hub, the others
/// through the bus.
struct Announcer {
    hub: Arc<Hub>,
    bus: Arc<dyn Bus>,
}

impl Announcer {
    fn change(&self, change: Change) {
        let (room, notice) = match change {
            Change::Joined { room, user } => {
                let notice = ServerEvent::MemberJoined {
                    room: room.clone(),
                    user,
                };
                (room, notice)
            }
            Change::Left { room, user } => {
                let notice = ServerEvent::MemberLeft {
                    room: room.clone(),
                    user,
                };
                (room, notice)
            }
        };
        let frame: Frame = notice.to_json().into();
        self.hub.notify(&room, &frame, None);
        self.bus.notify(&room, frame);
    }
}

/// Runs the presence's upkeep every `every` and announces what it finds,
/// until `stop`. Each change is announced by the one node whose upkeep
/// found it, to every node's members.
async fn maintain(
    announcer: Announcer,
    presence: Arc<dyn Presence>,
    every: std::time::Duration,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let changes = tokio::select! {
            () = stop.cancelled() => return,
            changes = async {
                ticks.tick().await;
                presence.maintain().await
            } => changes,
        };
        for change in changes {
            announcer.change(change);
        }
    }
}

/// The text of the `internal` error answering a request the log could not
/// serve; logs the failure on the way.
pub fn storage_failure(e: &LogError) -> String {
    tracing::error!(error = %e, "message log failed");
    format!("the message store failed; nothing was stored or sent ({e})")
}
