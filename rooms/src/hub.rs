//! The hub: this node's members of each room, and delivery of each room's
//! events to them in sequence order.
//!
//! Rooms are spread over [`SHARDS`] locks by name, so no lock covers all
//! rooms. A room's state exists while it has local members. For each room
//! the hub knows the next sequence number it expects: anything below it was
//! delivered already and is dropped; anything above it waits while the gap
//! is read from the room log. Every lock here is a std `Mutex` held only for
//! map updates and `try_send`s, never across an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::bus::RoomEvent;
use crate::outbox::{Frame, Outbox};
use crate::room_log::RoomLog;

/// Locks the rooms are spread over: enough that two busy rooms rarely share
/// one on a machine of a few cores.
pub const SHARDS: usize = 64;

/// How long a failed gap read waits before it is tried again.
const FILL_RETRY: Duration = Duration::from_millis(200);

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

/// Counts of what the hub repaired, for tests and operators.
#[derive(Debug, Default)]
pub struct HubStats {
    /// Events dropped because their seq was delivered already.
    pub duplicates_dropped: AtomicU64,
    /// Events read from the log because the bus had not brought them.
    pub gap_events_filled: AtomicU64,
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
    /// The next sequence number to deliver.
    next: u64,
    /// Events above `next`, waiting for the gap below them to be filled.
    pending: BTreeMap<u64, RoomEvent>,
    /// Whether a gap read is under way.
    filling: bool,
    members: HashMap<ConnId, Member>,
}

impl Room {
    /// Sends one event (the room's `next`) to every member.
    fn deliver(&mut self, event: &RoomEvent, hold_at_most: usize) {
        for member in self.members.values_mut() {
            if event.seq <= member.floor {
                continue;
            }
            match &mut member.catching_up {
                None => member.outbox.deliver(&event.frame),
                Some(catch_up) if catch_up.held.len() < hold_at_most => {
                    catch_up.held.push(event.clone());
                }
                Some(catch_up) => catch_up.overflowed = true,
            }
        }
        self.next = event.seq + 1;
    }

    /// Delivers every pending event that is now next in line.
    fn drain(&mut self, hold_at_most: usize) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() < self.next {
                entry.remove();
            } else if *entry.key() == self.next {
                let event = entry.remove();
                self.deliver(&event, hold_at_most);
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

/// This node's rooms and their local members.
pub struct Hub {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    /// Where gaps are read from.
    log: Arc<dyn RoomLog>,
    /// Gap reads run here; `publish` may be called from the log's writer thread.
    runtime: tokio::runtime::Handle,
    /// Live events held per catching-up member: the send queue's size, since
    /// more could not be handed over without waiting anyway.
    hold_at_most: usize,
    next_conn: AtomicU64,
    stats: HubStats,
}

impl Hub {
    /// An empty hub that fills gaps from `log`, holding at most
    /// `hold_at_most` live events per catching-up member.
    pub fn new(log: Arc<dyn RoomLog>, hold_at_most: usize) -> Arc<Self> {
        Arc::new(Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            log,
            runtime: tokio::runtime::Handle::current(),
            hold_at_most,
            next_conn: AtomicU64::new(1),
            stats: HubStats::default(),
        })
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// What the hub has repaired so far.
    pub fn stats(&self) -> &HubStats {
        &self.stats
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
        let state = shard.entry(room.into()).or_insert_with(|| Room {
            next: known_last + 1,
            pending: BTreeMap::new(),
            filling: false,
            members: HashMap::new(),
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
        if state.members.is_empty() {
            shard.remove(room);
        }
        removed
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
                self.stats
                    .duplicates_dropped
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            if event.seq > state.next {
                let start = state.next - 1;
                state.pending.insert(event.seq, event.clone());
                if state.filling {
                    return;
                }
                state.filling = true;
                Some((start, event.seq))
            } else {
                state.deliver(&event, self.hold_at_most);
                state.drain(self.hold_at_most);
                None
            }
        };
        if let Some((after, upto)) = gap {
            let hub = self.clone();
            self.runtime
                .spawn(async move { hub.fill(event.room, after, upto).await });
        }
    }

    /// Reads the events after `after` and below `upto` from the log and
    /// delivers them; what the log no longer has (retention) is skipped.
    /// Goes on while further gaps opened meanwhile.
    async fn fill(self: Arc<Self>, room: Arc<str>, mut after: u64, mut upto: u64) {
        loop {
            let wanted = usize::try_from(upto - after - 1).unwrap_or(usize::MAX);
            let messages = match self.log.after(&room, after, wanted).await {
                Ok(messages) => messages,
                Err(e) => {
                    tracing::warn!(%room, error = %e, "cannot read a gap from the log; retrying");
                    tokio::time::sleep(FILL_RETRY).await;
                    if !self.shard(&room).contains_key(&room) {
                        return;
                    }
                    continue;
                }
            };
            let mut shard = self.shard(&room);
            let Some(state) = shard.get_mut(&room) else {
                return;
            };
            for message in messages.into_iter().filter(|m| m.seq < upto) {
                let event = RoomEvent::message(message);
                if event.seq == state.next {
                    self.stats.gap_events_filled.fetch_add(1, Ordering::Relaxed);
                    state.deliver(&event, self.hold_at_most);
                }
            }
            // Committed below `upto` yet not in the log: removed by retention.
            state.next = state.next.max(upto);
            state.drain(self.hold_at_most);
            match state.pending.keys().next() {
                // Another gap opened while this one was read.
                Some(&above) => {
                    after = state.next - 1;
                    upto = above;
                }
                None => {
                    state.filling = false;
                    return;
                }
            }
        }
    }
}
