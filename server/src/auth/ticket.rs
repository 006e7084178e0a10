//! One-time tickets that let an authenticated user open one WebSocket.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rand_core::{OsRng, RngCore};
use tokio::time::Instant;

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

/// Tickets issued and not yet used. Memory only: a restart invalidates them,
/// which costs a client one more login.
pub(crate) struct TicketStore {
    ttl: Duration,
    // std Mutex: every critical section is a few map operations, never an `.await`.
    pending: Mutex<HashMap<String, Pending>>,
}

impl TicketStore {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// The ticket lifetime.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues a fresh ticket for `user`: 256 bits from the OS CSPRNG, hex-encoded.
    pub(crate) fn issue(&self, user: &str) -> String {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        let ticket: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        // Sweeping here bounds the map by the tickets issued within one TTL.
        pending.retain(|_, p| p.expires > now);
        pending.insert(
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
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(ticket);
        match removed {
            None => Err(TicketError::Unknown),
            Some(p) if p.expires <= Instant::now() => Err(TicketError::Expired),
            Some(p) => Ok(p.user),
        }
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
}
