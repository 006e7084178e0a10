//! Presence: which users are in which room. A user may be in a room through
//! several connections; they count, and are announced, as one member.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// A change of membership that no connection's join or leave announced,
/// found by [`Presence::maintain`]: the node announces it to the room's
/// members on every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// `user` is in `room` again (announce `member_joined`).
    Joined {
        /// The room.
        room: String,
        /// The user.
        user: String,
    },
    /// `user` has left `room` everywhere (announce `member_left`).
    Left {
        /// The room.
        room: String,
        /// The user.
        user: String,
    },
}

/// Who is in which room. Asynchronous because a shared implementation (for
/// several nodes) answers over the network.
#[async_trait::async_trait]
pub trait Presence: Send + Sync + 'static {
    /// Counts one more connection of `user` in `room`; `true` when it is the
    /// user's first there (announce `member_joined`).
    async fn join(&self, room: &str, user: &str) -> bool;

    /// Counts one connection fewer; `true` when it was the user's last there
    /// (announce `member_left`).
    async fn leave(&self, room: &str, user: &str) -> bool;

    /// The room's users, sorted, each once.
    async fn members(&self, room: &str) -> Vec<String>;

    /// The first `limit` rooms with members whose names sort after `after`
    /// (from the first when `None`), in byte order, each with its number of
    /// distinct users: one page of the occupied rooms.
    async fn occupied(&self, after: Option<&str>, limit: usize) -> BTreeMap<String, usize>;

    /// Upkeep that a shared implementation needs (a heartbeat, removing the
    /// members of nodes that died), returning what is to be announced. The
    /// node calls it every [`Presence::maintain_every`].
    async fn maintain(&self) -> Vec<Change> {
        Vec::new()
    }

    /// How often [`Presence::maintain`] must run; `None`: never.
    fn maintain_every(&self) -> Option<Duration> {
        None
    }
}

/// Rooms are spread over this many locks.
const SHARDS: usize = 16;

/// Users per room, with their connection counts; ordered by room, so that
/// a page of [`Presence::occupied`] reads a page from each shard, not all.
type Rooms = BTreeMap<String, BTreeMap<String, usize>>;

/// Presence of a single node, in memory.
pub struct LocalPresence {
    shards: Box<[Mutex<Rooms>]>,
    hasher: RandomState,
}

impl Default for LocalPresence {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl LocalPresence {
    fn shard(&self, room: &str) -> MutexGuard<'_, Rooms> {
        let index = (self.hasher.hash_one(room) % SHARDS as u64) as usize;
        // std Mutex: map updates only, never held across an `.await`.
        self.shards[index].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one more connection of `user` in `room`, then calls `then`
    /// with whether it is the user's first, under the room's lock: so that
    /// whatever `then` queues is queued in the order of the counts.
    pub(crate) fn join_then<R>(&self, room: &str, user: &str, then: impl FnOnce(bool) -> R) -> R {
        let mut shard = self.shard(room);
        let count = shard
            .entry(room.to_owned())
            .or_default()
            .entry(user.to_owned())
            .or_default();
        *count += 1;
        then(*count == 1)
    }

    /// Counts one connection fewer, then calls `then` with whether it was
    /// the user's last and whether the room is now empty here, under the
    /// room's lock (see [`LocalPresence::join_then`]). `None` (and no call)
    /// when the user was not counted there.
    pub(crate) fn leave_then<R>(
        &self,
        room: &str,
        user: &str,
        then: impl FnOnce(bool, bool) -> R,
    ) -> Option<R> {
        let mut shard = self.shard(room);
        let users = shard.get_mut(room)?;
        let count = users.get_mut(user)?;
        *count -= 1;
        let last = *count == 0;
        if last {
            users.remove(user);
        }
        let emptied = users.is_empty();
        if emptied {
            shard.remove(room);
        }
        Some(then(last, emptied))
    }

    /// Every room with members here and its users.
    pub(crate) fn snapshot(&self) -> Vec<(String, Vec<String>)> {
        let mut rooms = Vec::new();
        for shard in &*self.shards {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            rooms.extend(
                shard
                    .iter()
                    .map(|(room, users)| (room.clone(), users.keys().cloned().collect())),
            );
        }
        rooms
    }
}

#[async_trait::async_trait]
impl Presence for LocalPresence {
    async fn join(&self, room: &str, user: &str) -> bool {
        self.join_then(room, user, |first| first)
    }

    async fn leave(&self, room: &str, user: &str) -> bool {
        self.leave_then(room, user, |last, _| last).unwrap_or(false)
    }

    async fn members(&self, room: &str) -> Vec<String> {
        self.shard(room)
            .get(room)
            .map(|users| users.keys().cloned().collect())
            .unwrap_or_default()
    }

    async fn occupied(&self, after: Option<&str>, limit: usize) -> BTreeMap<String, usize> {
        let mut page = BTreeMap::new();
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        for shard in &*self.shards {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let rooms = shard.range::<str, _>((from, Bound::Unbounded)).take(limit);
            page.extend(rooms.map(|(room, users)| (room.clone(), users.len())));
        }
        // The first `limit` of every shard's first `limit`.
        while page.len() > limit {
            page.pop_last();
        }
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_user_with_two_connections_is_one_member() {
        let presence = LocalPresence::default();
        assert!(presence.join("r", "alice").await, "first");
        assert!(!presence.join("r", "alice").await, "second connection");
        assert!(presence.join("r", "bob").await);
        assert_eq!(presence.members("r").await, ["alice", "bob"]);
        assert!(!presence.leave("r", "alice").await, "one connection left");
        assert!(presence.leave("r", "alice").await, "the last");
        assert_eq!(presence.occupied(None, 10).await.get("r"), Some(&1));
        assert!(presence.leave("r", "bob").await);
        assert!(
            presence.occupied(None, 10).await.is_empty(),
            "an empty room is forgotten"
        );
        assert!(
            !presence.leave("r", "bob").await,
            "leaving twice is harmless"
        );
    }

    #[tokio::test]
    async fn occupied_rooms_come_a_page_at_a_time_in_name_order() {
        let presence = LocalPresence::default();
        // More rooms than shards, so every page spans several locks.
        let names: Vec<String> = (0..40).map(|i| format!("r{i:02}")).collect();
        for (i, room) in names.iter().enumerate().rev() {
            presence.join(room, "alice").await;
            if i % 3 == 0 {
                presence.join(room, "bob").await;
            }
        }
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = presence.occupied(after.as_deref(), 7).await;
            assert!(page.len() <= 7);
            let Some(last) = page.keys().next_back().cloned() else {
                break;
            };
            seen.extend(page);
            after = Some(last);
        }
        let expected: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, room)| (room.clone(), if i % 3 == 0 { 2 } else { 1 }))
            .collect();
        assert_eq!(seen, expected, "each room once, in order, with its count");
    }
}
