//! One-time tickets that let an authenticated user open one WebSocket: the
//! in-process [`TicketStore`]. A ticket lives for seconds and is used on the
//! server that issued it, so memory is enough; a restart invalidates them,
//! which costs a client one more `POST /api/ticket`.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::stores::{BackendError, Redeemed, TicketStore};
use crate::clock::UnixMillis;

/// Fewest tickets held before `issue` sweeps out expired ones.
const MIN_SWEEP_AT: usize = 1024;

/// Why a ticket was refused. Deliberately coarse towards the client.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TicketError {
    /// Never issued, or already used.
    #[error("ticket unknown or already used")]
    Unknown,
    /// Issued but not used in time.
    #[error("ticket expired")]
    Expired,
    /// The store failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

struct Pending {
    user: String,
    session: String,
    expires: UnixMillis,
}

struct Tickets {
    pending: HashMap<String, Pending>,
    /// Size at which `issue` next sweeps.
    sweep_at: usize,
}

/// Tickets issued and not yet used, in this process's memory.
pub(crate) struct MemoryTickets {
    // std Mutex: every critical section is map operations, never an `.await`.
    tickets: Mutex<Tickets>,
}

impl MemoryTickets {
    pub(crate) fn new() -> Self {
        Self {
            tickets: Mutex::new(Tickets {
                pending: HashMap::new(),
                sweep_at: MIN_SWEEP_AT,
            }),
        }
    }

    fn tickets(&self) -> std::sync::MutexGuard<'_, Tickets> {
        self.tickets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl TicketStore for MemoryTickets {
    /// Tickets are 256 bits from the OS CSPRNG, hex-encoded.
    async fn issue(
        &self,
        user: &str,
        session: &str,
        now: UnixMillis,
        expires: UnixMillis,
    ) -> Result<String, BackendError> {
        let ticket = super::random_token();
        let mut tickets = self.tickets();
        // Sweeping bounds the map by about twice the tickets issued within one
        // TTL. Sweeping only once the map has doubled since the last sweep keeps
        // an issue O(1) on average: sessions mint tickets cheaply and fast, so
        // a sweep on every issue would cost time proportional to the map.
        if tickets.pending.len() >= tickets.sweep_at {
            tickets.pending.retain(|_, p| p.expires > now);
            tickets.sweep_at = (tickets.pending.len() * 2).max(MIN_SWEEP_AT);
        }
        tickets.pending.insert(
            ticket.clone(),
            Pending {
                user: user.to_owned(),
                session: session.to_owned(),
                expires,
            },
        );
        Ok(ticket)
    }

    /// Removing under the lock is what makes the use single: a second redeem
    /// finds nothing.
    async fn redeem(&self, ticket: &str, now: UnixMillis) -> Result<Redeemed, TicketError> {
        let removed = self.tickets().pending.remove(ticket);
        match removed {
            None => Err(TicketError::Unknown),
            Some(p) if p.expires <= now => Err(TicketError::Expired),
            Some(p) => Ok(Redeemed {
                user: p.user,
                session: Some(p.session),
            }),
        }
    }

    async fn revoke_session(&self, session: &str) -> Result<usize, BackendError> {
        let mut tickets = self.tickets();
        let before = tickets.pending.len();
        tickets.pending.retain(|_, p| p.session != session);
        Ok(before - tickets.pending.len())
    }

    async fn prune(&self, now: UnixMillis) -> Result<usize, BackendError> {
        let mut tickets = self.tickets();
        let before = tickets.pending.len();
        tickets.pending.retain(|_, p| p.expires > now);
        Ok(before - tickets.pending.len())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const TTL: UnixMillis = 30_000;

    async fn issue(store: &MemoryTickets, now: UnixMillis) -> String {
        store
            .issue("alice", "session-a", now, now + TTL)
            .await
            .expect("issues")
    }

    #[tokio::test]
    async fn tickets_are_single_use_and_expire() {
        let store = MemoryTickets::new();
        let a = issue(&store, 0).await;
        let b = issue(&store, 0).await;
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);

        assert_eq!(
            store.redeem(&a, 1).await.expect("live"),
            Redeemed {
                user: "alice".into(),
                session: Some("session-a".into())
            }
        );
        assert!(
            matches!(store.redeem(&a, 1).await, Err(TicketError::Unknown)),
            "reused"
        );
        assert!(matches!(
            store.redeem("made-up", 1).await,
            Err(TicketError::Unknown)
        ));

        assert!(matches!(
            store.redeem(&b, TTL).await,
            Err(TicketError::Expired)
        ));
    }

    #[tokio::test]
    async fn an_ended_session_takes_its_unused_tickets_with_it() {
        let store = MemoryTickets::new();
        let a = issue(&store, 0).await;
        let b = issue(&store, 0).await;
        let other = store
            .issue("alice", "session-b", 0, TTL)
            .await
            .expect("issues");
        assert_eq!(store.revoke_session("session-a").await.expect("revokes"), 2);
        for ticket in [a, b] {
            assert!(matches!(
                store.redeem(&ticket, 1).await,
                Err(TicketError::Unknown)
            ));
        }
        assert_eq!(
            store
                .redeem(&other, 1)
                .await
                .expect("another session's")
                .session
                .as_deref(),
            Some("session-b")
        );
    }

    #[tokio::test]
    async fn concurrent_redeems_of_one_ticket_succeed_once() {
        let store = Arc::new(MemoryTickets::new());
        let ticket = issue(&store, 0).await;
        let redeems: Vec<_> = (0..8)
            .map(|_| {
                let (store, ticket) = (store.clone(), ticket.clone());
                tokio::spawn(async move { store.redeem(&ticket, 1).await.is_ok() })
            })
            .collect();
        let mut won = 0;
        for redeem in redeems {
            won += usize::from(redeem.await.expect("task"));
        }
        assert_eq!(won, 1);
    }

    #[tokio::test]
    async fn expired_tickets_are_swept_and_pruned() {
        let store = MemoryTickets::new();
        let held = || store.tickets().pending.len();
        for _ in 0..MIN_SWEEP_AT {
            issue(&store, 0).await;
        }
        let later = TTL + 1;
        let fresh = issue(&store, later).await;
        assert_eq!(held(), 1, "the issue that reached the threshold swept");

        for _ in 0..10 {
            issue(&store, later).await;
        }
        let much_later = later + TTL + 1;
        assert_eq!(store.prune(much_later).await.expect("prunes"), 11);
        assert_eq!(held(), 0);
        assert!(
            matches!(
                store.redeem(&fresh, much_later).await,
                Err(TicketError::Unknown)
            ),
            "pruned"
        );
    }
}
