//! This server's live connections by user, so that something outside a
//! connection (an account disabled by an operator) can close every socket of
//! one user, and so that the number of users and connections can be read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chat_rooms::{CloseReason, Closer};

/// The live connections of this server, by user. Cheap to clone; clones
/// share the table.
#[derive(Clone, Default)]
pub(crate) struct Roster {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    // std Mutex: held for a map operation, or to copy one user's closers
    // out, never across an `.await` and never while closing.
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    /// Each user's connections, by the registration's own number. Keyed
    /// by the lowercased name: names are unique ignoring letter case.
    by_user: HashMap<String, HashMap<u64, Entry>>,
    /// Connections in `by_user`, kept so that reading it is O(1).
    connections: usize,
    /// Places held for each user's connections being upgraded ([`Place`]),
    /// counted against the user's cap with the registered ones.
    held: HashMap<String, usize>,
    /// The number the next registration gets.
    next_id: u64,
}

impl Roster {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.inner.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds a place for a connection of `user` about to be upgraded,
    /// unless the user's connections and the places held already number
    /// `limit`: the check and the hold are one step, so that concurrent
    /// upgrades of one user cannot all pass a check of the count.
    pub(crate) fn hold(&self, user: &str, limit: usize) -> Option<Place> {
        let key = user.to_lowercase();
        let mut table = self.table();
        let open = table.by_user.get(&key).map_or(0, HashMap::len);
        let held = table.held.get(&key).copied().unwrap_or(0);
        if open + held >= limit {
            return None;
        }
        *table.held.entry(key.clone()).or_insert(0) += 1;
        Some(Place {
            roster: self.clone(),
            user: Some(key),
        })
    }

    /// Closes every connection of `user` with `reason`; returns how many
    /// there were. A connection closing already keeps its first reason.
    pub(crate) fn close_user(&self, user: &str, reason: CloseReason) -> usize {
        let closers: Vec<Closer> = self
            .table()
            .by_user
            .get(&user.to_lowercase())
            .map(|connections| connections.values().map(|e| e.closer.clone()).collect())
            .unwrap_or_default();
        // Outside the lock: closing wakes the connections' tasks.
        for closer in &closers {
            closer.close(reason);
        }
        closers.len()
    }

    /// Closes every connection opened with a ticket of `session` with
    /// `reason`; returns how many there were.
    pub(crate) fn close_session(&self, session: &str, reason: CloseReason) -> usize {
        let closers: Vec<Closer> = self
            .table()
            .by_user
            .values()
            .flat_map(HashMap::values)
            .filter(|e| e.session.as_deref() == Some(session))
            .map(|e| e.closer.clone())
            .collect();
        // Outside the lock: closing wakes the connections' tasks.
        for closer in &closers {
            closer.close(reason);
        }
        closers.len()
    }

    /// Distinct users with at least one connection.
    pub(crate) fn users(&self) -> usize {
        self.table().by_user.len()
    }

    /// Connections registered.
    pub(crate) fn connections(&self) -> usize {
        self.table().connections
    }
}

impl Table {
    /// Adds a connection under the lowercased `key`; returns its number.
    fn insert(&mut self, key: &str, session: Option<String>, closer: Closer) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.by_user
            .entry(key.to_owned())
            .or_default()
            .insert(id, Entry { session, closer });
        self.connections += 1;
        id
    }

    /// Gives back one place held for `key`.
    fn release(&mut self, key: &str) {
        if let Some(held) = self.held.get_mut(key) {
            *held -= 1;
            if *held == 0 {
                self.held.remove(key);
            }
        }
    }
}

/// A place held for one connection of a user while it is upgraded; it
/// becomes the connection's [`Registration`], or is given back when dropped
/// (the upgrade failed).
pub(crate) struct Place {
    roster: Roster,
    /// The lowercased user name; taken when registered.
    user: Option<String>,
}

impl Place {
    /// Turns the place into the connection's entry, in one step, so that
    /// the user's count never drops between them.
    pub(crate) fn register(mut self, session: Option<String>, closer: Closer) -> Registration {
        let key = self.user.take().unwrap_or_default();
        let id = {
            let mut table = self.roster.table();
            table.release(&key);
            table.insert(&key, session, closer)
        };
        Registration {
            roster: self.roster.clone(),
            user: key,
            id,
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Some(key) = self.user.take() {
            self.roster.table().release(&key);
        }
    }
}

/// One connection in the table.
struct Entry {
    /// The session whose ticket opened it.
    session: Option<String>,
    closer: Closer,
}

/// A connection's entry in the [`Roster`]; dropping it removes the entry.
pub(crate) struct Registration {
    roster: Roster,
    /// The lowercased user name, the table's key.
    user: String,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut table = self.roster.table();
        let Some(connections) = table.by_user.get_mut(&self.user) else {
            return;
        };
        if connections.remove(&self.id).is_some() {
            if connections.is_empty() {
                table.by_user.remove(&self.user);
            }
            table.connections -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio_util::sync::CancellationToken;

    use super::*;

    /// A connection of `user` registered as an upgrade would.
    fn open(roster: &Roster, user: &str, session: Option<String>, closer: Closer) -> Registration {
        roster
            .hold(user, usize::MAX)
            .expect("no cap")
            .register(session, closer)
    }

    #[test]
    fn close_session_closes_the_sockets_of_that_session_only() {
        let roster = Roster::default();
        let shutdown = CancellationToken::new();
        let closers: Vec<Closer> = (0..3).map(|_| Closer::new(&shutdown)).collect();
        let _a = open(&roster, "alice", Some("s1".into()), closers[0].clone());
        let _b = open(&roster, "alice", Some("s2".into()), closers[1].clone());
        let _c = open(&roster, "bob", Some("s1".into()), closers[2].clone());
        assert_eq!(roster.close_session("s1", CloseReason::LoggedOut), 2);
        assert_eq!(closers[0].reason(), CloseReason::LoggedOut);
        assert!(closers[2].is_closing());
        assert!(
            !closers[1].is_closing(),
            "alice's other session is not touched"
        );
    }

    #[test]
    fn close_user_closes_that_users_connections_only_and_guards_remove_them() {
        let shutdown = CancellationToken::new();
        let roster = Roster::default();
        let closers: Vec<Closer> = (0..3).map(|_| Closer::new(&shutdown)).collect();
        let alice_1 = open(&roster, "Alice", None, closers[0].clone());
        let alice_2 = open(&roster, "alice", None, closers[1].clone());
        let bob = open(&roster, "bob", None, closers[2].clone());
        assert_eq!((roster.users(), roster.connections()), (2, 3));

        assert_eq!(roster.close_user("ALICE", CloseReason::AccountDisabled), 2);
        assert!(closers[0].is_closing() && closers[1].is_closing());
        assert_eq!(closers[0].reason(), CloseReason::AccountDisabled);
        assert!(!closers[2].is_closing(), "bob is not touched");
        assert_eq!(roster.close_user("carol", CloseReason::AccountDisabled), 0);

        // Closing does not unregister: the connection does, when it has ended.
        assert_eq!(roster.connections(), 3);
        drop(alice_1);
        assert_eq!((roster.users(), roster.connections()), (2, 2));
        drop(alice_2);
        assert_eq!((roster.users(), roster.connections()), (1, 1));
        assert_eq!(roster.close_user("alice", CloseReason::AccountDisabled), 0);
        drop(bob);
        assert_eq!((roster.users(), roster.connections()), (0, 0));
    }

    #[test]
    fn places_held_count_against_the_cap_until_registered_or_dropped() {
        let shutdown = CancellationToken::new();
        let roster = Roster::default();
        let first = roster.hold("alice", 2).expect("one of two");
        let second = roster.hold("ALICE", 2).expect("two of two");
        assert!(roster.hold("alice", 2).is_none(), "both places held");
        assert!(roster.hold("bob", 2).is_some(), "per user");
        let registered = first.register(None, Closer::new(&shutdown));
        assert_eq!(roster.connections(), 1);
        assert!(roster.hold("alice", 2).is_none(), "one open, one held");
        drop(second);
        let third = roster.hold("alice", 2).expect("a place given back");
        drop(registered);
        let _fourth = roster.hold("alice", 2).expect("a connection gone");
        drop(third);
        assert!(roster.table().held.len() <= 1);
    }

    #[test]
    fn a_connection_closing_already_keeps_its_reason() {
        let shutdown = CancellationToken::new();
        let roster = Roster::default();
        let closer = Closer::new(&shutdown);
        let _registered = open(&roster, "alice", None, closer.clone());
        closer.close(CloseReason::SlowConsumer);
        assert_eq!(roster.close_user("alice", CloseReason::AccountDisabled), 1);
        assert_eq!(closer.reason(), CloseReason::SlowConsumer);
    }
}
