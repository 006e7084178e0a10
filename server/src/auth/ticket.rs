//! One-time tickets that let an authenticated user open one WebSocket.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Fewest tickets held before `issue` sweeps out expired ones.
const MIN_SWEEP_AT: usize = 1024;

/// Why a ticket was refused. Deliberately coarse towards the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TicketError {
    /// Never issued, or already used.
    #[error("ticket unknown or already used")]
    Unknown,
    /// Issued but not used in time.
    #[error("ticket expired")]
    Expired,
}

struct Pending {
    user: String,
    expires: Instant,
}

struct Tickets {
    pending: HashMap<String, Pending>,
    /// Size at which `issue` next sweeps.
    sweep_at: usize,
}

/// Tickets issued and not yet used. Memory only: a restart invalidates them,
/// which costs a client one more login.
pub(crate) struct TicketStore {
    ttl: Duration,
    // std Mutex: every critical section is map operations, never an `.await`.
    tickets: Mutex<Tickets>,
}

impl TicketStore {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            tickets: Mutex::new(Tickets {
                pending: HashMap::new(),
                sweep_at: MIN_SWEEP_AT,
            }),
        }
    }

    /// The ticket lifetime.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues a fresh ticket for `user`: 256 bits from the OS CSPRNG, hex-encoded.
    pub(crate) fn issue(&self, user: &str) -> String {
        let ticket = super::random_token();
        let now = Instant::now();
        let mut tickets = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
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
                expires: now + self.ttl,
            },
        );
        ticket
    }

    /// Uses up a ticket, returning the user it was issued to.
    pub(crate) fn redeem(&self, ticket: &str) -> Result<String, TicketError> {
        let removed = self
            .tickets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pending
            .remove(ticket);
        match removed {
            None => Err(TicketError::Unknown),
            Some(p) if p.expires <= Instant::now() => Err(TicketError::Expired),
            Some(p) => Ok(p.user),
        }
    }

    /// Forgets expired tickets; returns how many.
    pub(crate) fn prune(&self) -> usize {
        let now = Instant::now();
        let mut tickets = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
        let before = tickets.pending.len();
        tickets.pending.retain(|_, p| p.expires > now);
        before - tickets.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tickets_are_single_use_and_expire() {
        let store = TicketStore::new(Duration::from_secs(30));
        let a = store.issue("alice");
        let b = store.issue("alice");
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);

        assert_eq!(store.redeem(&a), Ok("alice".to_owned()));
        assert_eq!(store.redeem(&a), Err(TicketError::Unknown), "reused");
        assert_eq!(store.redeem("made-up"), Err(TicketError::Unknown));

        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(store.redeem(&b), Err(TicketError::Expired));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_tickets_are_swept_and_pruned() {
        let store = TicketStore::new(Duration::from_secs(30));
        let held = || store.tickets.lock().expect("lock").pending.len();
        for _ in 0..MIN_SWEEP_AT {
            store.issue("alice");
        }
        tokio::time::advance(Duration::from_secs(31)).await;
        let fresh = store.issue("alice");
        assert_eq!(held(), 1, "the issue that reached the threshold swept");

        for _ in 0..10 {
            store.issue("alice");
        }
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(store.prune(), 11);
        assert_eq!(held(), 0);
        assert_eq!(store.redeem(&fresh), Err(TicketError::Unknown), "pruned");
    }
}
