//! The hub: this node's members of each room, and delivery of each room's
//! events to them in sequence order.
//!
//! Rooms are spread over [`SHARDS`] locks by name, so no lock covers all
//! rooms. A room's state exists while it has local members. For each room
//! the hub knows the next sequence number it expects: anything below it was
//! delivered already and is dropped; anything above it waits while the gap
//! is read from the room log. Every lock here is a std `Mutex` held only for
//! map updates and `try_send`s, never across an `.await`.
//!
//! Each room has at most one reader of the log at a time. It does two jobs:
//! a gap fill (the events between `next` and the lowest pending one, after an
//! optional grace during which a reordered event may still arrive) and a
//! resync (everything after `next - 1`, open-ended, for when the bus may
//! have lost events, such as after a (re)subscription). A job asked for while
//! the reader is busy is done by the same reader afterwards.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

use crate::bus::RoomEvent;
use crate::interest::Interest;
use crate::metrics::NodeMetrics;
use crate::outbox::{Frame, Outbox};
use crate::room_log::RoomLog;

/// Locks the rooms are spread over: enough that two busy rooms rarely share
/// one on a machine of a few cores.
pub const SHARDS: usize = 64;

/// How long a failed log read waits before it is tried again.
const FILL_RETRY: Duration = Duration::from_millis(200);

/// Messages a resync reads from the log at a time.
const RESYNC_PAGE: usize = 500;

/// Identifies one connection for its lifetime on this node.
pub type ConnId = u64;

/// One connection as the rooms see it.
#[derive(Clone)]
pub struct Peer {
    /// Unique on this node.
    pub id: ConnId,
    /// The authenticated user.
    pub user: Arc<str>,
    /// Where its frames go.
    pub outbox: Outbox,
}

/// How a hub behaves.
#[derive(Clone, Default)]
pub struct HubOptions {
    /// Live events held per catching-up member: the send queue's size, since
    /// more could not be handed over without waiting anyway.
    pub hold_at_most: usize,
    /// How long a gap waits before it is read from the log. Over a network
    /// bus the events of one room published by two nodes may arrive a few
    /// milliseconds out of order; within the grace the missing one usually
    /// arrives and no read is needed. Zero for the in-process bus.
    pub gap_grace: Duration,
    /// Marked whenever a room's state appears (its first local member) or
    /// goes (its last), so that a networked bus (un)subscribes.
    pub interest: Option<Arc<Interest>>,
    /// What the node counts; the hub counts deliveries, its repairs, and
    /// its rooms and memberships.
    pub metrics: NodeMetrics,
}

struct Member {
    outbox: Outbox,
    /// The highest seq this member has had by other means (its catch-up):
    /// live events at or below it are not sent again.
    floor: u64,
    /// While the member catches up: the room's live events, held until the
    /// catch-up ends.
    catching_up: Option<CatchUp>,
}

#[derive(Default)]
struct CatchUp {
    held: Vec<RoomEvent>,
    /// More arrived than may be held; the catch-up reads them from the log.
    overflowed: bool,
}

struct Room {
    /// Tells this state from a later one of the same name, so that a reader
    /// started for a room that went and came back stops.
    id: u64,
    /// The next sequence number to deliver.
    next: u64,
    /// Events above `next`, waiting for the gap below them to be filled.
    pending: BTreeMap<u64, RoomEvent>,
    /// Whether a reader (gap fill or resync) is under way.
    reading: bool,
    /// Whether a resync is wanted; the reader does it next.
    resync: bool,
    members: HashMap<ConnId, Member>,
}

/// What delivering an event needs besides the room.
#[derive(Clone, Copy)]
struct Delivery<'a> {
    /// Live events held per catching-up member.
    hold_at_most: usize,
    /// Counts every frame queued.
    deliveries: &'a Counter,
}

impl Room {
    /// Sends one event (the room's `next`) to every member.
    fn deliver(&mut self, event: &RoomEvent, how: Delivery<'_>) {
        let hold_at_most = how.hold_at_most;
        // Counted once per event, not per member: one shared atomic per
        // member would be a contended cache line on every fan-out.
        let mut delivered = 0;
        for member in self.members.values_mut() {
            if event.seq <= member.floor {
                continue;
            }
            match &mut member.catching_up {
                None => {
                    member.outbox.deliver(&event.frame);
                    delivered += 1;
                }
                Some(catch_up) if catch_up.held.len() < hold_at_most => {
                    catch_up.held.push(event.clone());
                }
                Some(catch_up) => catch_up.overflowed = true,
            }
        }
        how.deliveries.inc_by(delivered);
        self.next = event.seq + 1;
    }

    /// Delivers every pending event that is now next in line.
    fn drain(&mut self, how: Delivery<'_>) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() < self.next {
                entry.remove();
            } else if *entry.key() == self.next {
                let event = entry.remove();
                self.deliver(&event, how);
            } else {
                break;
            }
        }
    }
}

/// How [`Hub::begin`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// The connection now catches up; live events are held for it.
    Began,
    /// It is a member already.
    Member,
    /// Another catch-up of this room for this connection is under way.
    CatchingUp,
}

/// How [`Hub::finish`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The connection is a live member; it has every seq up to `last_seq`.
    Done {
        /// The last seq it has.
        last_seq: u64,
    },
    /// Events it lacks are not held: read on from the log after the cursor.
    NotYet,
    /// The connection left or went away meanwhile.
    Gone,
}

/// One shard's rooms, by name.
type Shard = HashMap<Arc<str>, Room>;

/// What a room's reader does next.
enum Job {
    /// Read everything after this seq.
    Resync(u64),
    /// Wait the gap grace, then look again.
    Wait,
    /// Read the events after the first seq and below the second.
    Fill(u64, u64),
}

/// This node's rooms and their local members.
pub struct Hub {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    /// Where gaps are read from.
    log: Arc<dyn RoomLog>,
    /// Gap reads run here; `publish` may be called from the log's writer thread.
    runtime: tokio::runtime::Handle,
    /// Live events held per catching-up member.
    hold_at_most: usize,
    gap_grace: Duration,
    interest: Option<Arc<Interest>>,
    next_conn: AtomicU64,
    next_room: AtomicU64,
    /// Shared: each send's commit callback keeps one, and cloning the
    /// handles themselves would be a dozen reference counts per message.
    metrics: Arc<NodeMetrics>,
}

impl Hub {
    /// An empty hub that fills gaps from `log`, holding at most
    /// `hold_at_most` live events per catching-up member. Needs a tokio
    /// runtime.
    pub fn new(log: Arc<dyn RoomLog>, hold_at_most: usize) -> Arc<Self> {
        Self::with_options(
            log,
            HubOptions {
                hold_at_most,
                ..HubOptions::default()
            },
        )
    }

    /// An empty hub that fills gaps from `log`, as `options` say. Needs a
    /// tokio runtime.
    pub fn with_options(log: Arc<dyn RoomLog>, options: HubOptions) -> Arc<Self> {
        Arc::new(Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            log,
            runtime: tokio::runtime::Handle::current(),
            hold_at_most: options.hold_at_most,
            gap_grace: options.gap_grace,
            interest: options.interest,
            next_conn: AtomicU64::new(1),
            next_room: AtomicU64::new(1),
            metrics: Arc::new(options.metrics),
        })
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// What the node counts: the hub's repairs and deliveries among it.
    pub fn metrics(&self) -> &Arc<NodeMetrics> {
        &self.metrics
    }

    fn delivery(&self) -> Delivery<'_> {
        Delivery {
            hold_at_most: self.hold_at_most,
            deliveries: &self.metrics.deliveries,
        }
    }

    fn shard(&self, room: &str) -> MutexGuard<'_, Shard> {
        let index = (self.hasher.hash_one(room) % SHARDS as u64) as usize;
        // A panic under the lock leaves at worst one room's maps half
        // updated; stopping every room's delivery would be worse.
        self.shards[index].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts catching `peer` up on `room`: from now on the room's live events
    /// are held for it. `known_last` is a seq the caller read from the log
    /// before this call; a room new to this node starts delivering after it.
    pub fn begin(&self, room: &str, peer: &Peer, known_last: u64) -> Begin {
        let mut shard = self.shard(room);
        let state = shard.entry(room.into()).or_insert_with_key(|room| {
            if let Some(interest) = &self.interest {
                interest.mark(room);
            }
            self.metrics.rooms.inc();
            Room {
                id: self.next_room.fetch_add(1, Ordering::Relaxed),
                next: known_last + 1,
                pending: BTreeMap::new(),
                reading: false,
                resync: false,
                members: HashMap::new(),
            }
        });
        match state.members.get(&peer.id) {
            Some(member) if member.catching_up.is_some() => Begin::CatchingUp,
            Some(_) => Begin::Member,
            None => {
                state.members.insert(
                    peer.id,
                    Member {
                        outbox: peer.outbox.clone(),
                        floor: 0,
                        catching_up: Some(CatchUp::default()),
                    },
                );
                self.metrics.memberships.inc();
                Begin::Began
            }
        }
    }

    /// Ends a catch-up whose connection has every seq up to `cursor`: hands
    /// over the held events above it and makes it a live member, then queues
    /// `joined(last_seq)` if given, all under the room's lock, so the live
    /// stream continues exactly after. When the held events do not reach
    /// down to `cursor + 1`, or would not fit in the queue, nothing happens
    /// ([`Finish::NotYet`]) and the caller reads on from the log. `force`
    /// finishes anyway: for when the log has nothing more to give.
    pub fn finish(
        &self,
        room: &str,
        id: ConnId,
        cursor: u64,
        force: bool,
        joined: Option<&(dyn Fn(u64) -> Frame + Sync)>,
    ) -> Finish {
        let mut shard = self.shard(room);
        let Some(state) = shard.get_mut(room) else {
            return Finish::Gone;
        };
        let newest = state.next - 1;
        let Some(member) = state.members.get_mut(&id) else {
            return Finish::Gone;
        };
        let Some(catch_up) = &mut member.catching_up else {
            return Finish::Done {
                last_seq: member.floor,
            };
        };
        if catch_up.overflowed && !force {
            catch_up.held.clear();
            catch_up.overflowed = false;
            return Finish::NotYet;
        }
        catch_up.held.retain(|e| e.seq > cursor);
        let reaches = catch_up
            .held
            .first()
            .map_or(cursor >= newest, |first| first.seq <= cursor + 1);
        // The held events and `joined`.
        let fits = catch_up.held.len() < member.outbox.spare();
        if !(force || reaches && fits) {
            return Finish::NotYet;
        }
        let mut last_seq = cursor;
        for event in std::mem::take(&mut catch_up.held) {
            member.outbox.deliver(&event.frame);
            self.metrics.deliveries.inc();
            last_seq = event.seq;
        }
        member.catching_up = None;
        member.floor = last_seq;
        if let Some(joined) = joined {
            member.outbox.deliver(&joined(last_seq));
        }
        Finish::Done { last_seq }
    }

    /// Takes a connection out of a room, in whatever state; `false` if it
    /// was not there. The room's state goes with its last local member.
    pub fn remove(&self, room: &str, id: ConnId) -> bool {
        let mut shard = self.shard(room);
        let Some(state) = shard.get_mut(room) else {
            return false;
        };
        let removed = state.members.remove(&id).is_some();
        if removed {
            self.metrics.memberships.dec();
        }
        if state.members.is_empty() {
            if let Some((room, _)) = shard.remove_entry(room) {
                self.metrics.rooms.dec();
                if let Some(interest) = &self.interest {
                    interest.mark(&room);
                }
            }
        }
        removed
    }

    /// Whether this node has members in `room` (catching up or live).
    pub fn has_room(&self, room: &str) -> bool {
        self.shard(room).contains_key(room)
    }

    /// Every room with members on this node.
    pub fn rooms(&self) -> Vec<Arc<str>> {
        let mut rooms = Vec::new();
        for shard in &*self.shards {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            rooms.extend(shard.keys().cloned());
        }
        rooms
    }

    /// Whether `id` is a live member of `room` (not still catching up).
    pub fn is_member(&self, room: &str, id: ConnId) -> bool {
        self.shard(room)
            .get(room)
            .and_then(|state| state.members.get(&id))
            .is_some_and(|member| member.catching_up.is_none())
    }

    /// Sends an unnumbered notice (someone joined or left) to the room's
    /// members, catching up or not, except `except`.
    pub fn notify(&self, room: &str, frame: &Frame, except: Option<ConnId>) {
        let shard = self.shard(room);
        let Some(state) = shard.get(room) else {
            return;
        };
        for (id, member) in &state.members {
            if Some(*id) != except {
                member.outbox.deliver(frame);
            }
        }
    }

    /// Takes one event off the bus: delivered if it is next, dropped if it
    /// was delivered already, held while the gap below it is read from the log.
    pub fn publish(self: &Arc<Self>, event: RoomEvent) {
        let gap = {
            let mut shard = self.shard(&event.room);
            let Some(state) = shard.get_mut(&event.room) else {
                // No local member: nothing to deliver, nothing to track.
                return;
            };
            if event.seq < state.next || state.pending.contains_key(&event.seq) {
                self.metrics.duplicates_dropped.inc();
                return;
            }
            if event.seq > state.next {
                state.pending.insert(event.seq, event.clone());
                if state.reading {
                    return;
                }
                state.reading = true;
                Some(state.id)
            } else {
                state.deliver(&event, self.delivery());
                state.drain(self.delivery());
                None
            }
        };
        if let Some(id) = gap {
            self.spawn_reader(event.room, id);
        }
    }

    /// Reads everything the log has after what `room` delivered last and
    /// delivers it in order, then whatever was pending: for when the bus may
    /// have lost events, as after a (re)subscription, since nothing published
    /// before a subscription took effect arrives. Done after a gap read under
    /// way, if any; nothing happens when the room has no local member.
    pub fn resync(self: &Arc<Self>, room: &str) {
        let start = {
            let mut shard = self.shard(room);
            let Some(name) = shard.get_key_value(room).map(|(name, _)| name.clone()) else {
                return;
            };
            let Some(state) = shard.get_mut(room) else {
                return;
            };
            state.resync = true;
            if state.reading {
                return;
            }
            state.reading = true;
            (name, state.id)
        };
        self.spawn_reader(start.0, start.1);
    }

    fn spawn_reader(self: &Arc<Self>, room: Arc<str>, id: u64) {
        let hub = self.clone();
        self.runtime.spawn(async move { hub.read(room, id).await });
    }

    /// The room's one reader: resyncs and fills gaps until neither is
    /// wanted. Stops when the room's state `id` is gone.
    async fn read(self: Arc<Self>, room: Arc<str>, id: u64) {
        let mut waited = false;
        loop {
            let job = {
                let mut shard = self.shard(&room);
                let Some(state) = shard.get_mut(&room).filter(|s| s.id == id) else {
                    return;
                };
                if state.resync {
                    state.resync = false;
                    Job::Resync(state.next - 1)
                } else if let Some(&above) = state.pending.keys().next() {
                    if waited || self.gap_grace.is_zero() {
                        Job::Fill(state.next - 1, above)
                    } else {
                        Job::Wait
                    }
                } else {
                    state.reading = false;
                    return;
                }
            };
            match job {
                Job::Resync(after) => self.resync_after(&room, id, after).await,
                Job::Wait => {
                    tokio::time::sleep(self.gap_grace).await;
                    waited = true;
                }
                Job::Fill(after, upto) => {
                    waited = false;
                    self.fill(&room, id, after, upto).await;
                }
            }
        }
    }

    /// Delivers everything the log has after `after`, page by page. On a
    /// failed read the resync is asked for again, after a pause.
    async fn resync_after(&self, room: &Arc<str>, id: u64, mut after: u64) {
        loop {
            let page = match self.log.after(room, after, RESYNC_PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(%room, error = %e, "cannot resync from the log; retrying");
                    if let Some(state) = self.shard(room).get_mut(room).filter(|s| s.id == id) {
                        state.resync = true;
                    }
                    tokio::time::sleep(FILL_RETRY).await;
                    return;
                }
            };
            let complete = page.len() < RESYNC_PAGE;
            let mut shard = self.shard(room);
            let Some(state) = shard.get_mut(room).filter(|s| s.id == id) else {
                return;
            };
            for message in page {
                if message.seq < state.next {
                    continue;
                }
                // Above `next`: retention removed those in between.
                state.next = message.seq;
                self.metrics.resync_delivered.inc();
                state.deliver(&RoomEvent::message(message), self.delivery());
            }
            state.drain(self.delivery());
            if complete {
                return;
            }
            after = state.next - 1;
        }
    }

    /// Reads the events after `after` and below `upto` from the log and
    /// delivers them; what the log no longer has (retention) is skipped. A
    /// failed read pauses; the reader tries again.
    async fn fill(&self, room: &Arc<str>, id: u64, after: u64, upto: u64) {
        let wanted = usize::try_from(upto - after - 1).unwrap_or(usize::MAX);
        let messages = match self.log.after(room, after, wanted).await {
            Ok(messages) => messages,
            Err(e) => {
                tracing::warn!(%room, error = %e, "cannot read a gap from the log; retrying");
                tokio::time::sleep(FILL_RETRY).await;
                return;
            }
        };
        let mut shard = self.shard(room);
        let Some(state) = shard.get_mut(room).filter(|s| s.id == id) else {
            return;
        };
        for message in messages.into_iter().filter(|m| m.seq < upto) {
            let event = RoomEvent::message(message);
            if event.seq == state.next {
                self.metrics.gaps_filled.inc();
                state.deliver(&event, self.delivery());
            }
        }
        // Committed below `upto` yet not in the log: removed by retention.
        state.next = state.next.max(upto);
        state.drain(self.delivery());
    }
}
