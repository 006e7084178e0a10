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
    /// The number the next registration gets.
    next_id: u64,
}

impl Roster {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.inner.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a connection of `user`, opened with a ticket of `session`,
    /// closed through `closer`; it stays until the returned guard is dropped.
    pub(crate) fn register(
        &self,
        user: &str,
        session: Option<String>,
        closer: Closer,
    ) -> Registration {
        let key = user.to_lowercase();
        let mut table = self.table();
        let id = table.next_id;
        table.next_id += 1;
        table
            .by_user
            .entry(key.clone())
            .or_default()
            .insert(id, Entry { session, closer });
        table.connections += 1;
        Registration {
            roster: self.clone(),
            user: key,
            id,
        }
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

    /// The connections of `user` (in any letter case).
    pub(crate) fn of_user(&self, user: &str) -> usize {
        self.table()
            .by_user
            .get(&user.to_lowercase())
            .map_or(0, HashMap::len)
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

    #[test]
    fn close_session_closes_the_sockets_of_that_session_only() {
        let roster = Roster::default();
        let shutdown = CancellationToken::new();
        let closers: Vec<Closer> = (0..3).map(|_| Closer::new(&shutdown)).collect();
        let _a = roster.register("alice", Some("s1".into()), closers[0].clone());
        let _b = roster.register("alice", Some("s2".into()), closers[1].clone());
        let _c = roster.register("bob", Some("s1".into()), closers[2].clone());
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
        let alice_1 = roster.register("Alice", None, closers[0].clone());
        let alice_2 = roster.register("alice", None, closers[1].clone());
        let bob = roster.register("bob", None, closers[2].clone());
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
    fn a_connection_closing_already_keeps_its_reason() {
        let shutdown = CancellationToken::new();
        let roster = Roster::default();
        let closer = Closer::new(&shutdown);
        let _registered = roster.register("alice", None, closer.clone());
        closer.close(CloseReason::SlowConsumer);
        assert_eq!(roster.close_user("alice", CloseReason::AccountDisabled), 1);
        assert_eq!(closer.reason(), CloseReason::SlowConsumer);
    }
}
