//! Which rooms this node wants to hear about: the hub marks a room whenever
//! its state appears (first local member) or goes (last one left), and a
//! networked bus takes the marked rooms and (un)subscribes accordingly.
//!
//! A mark carries no verdict, only "look at this room again": the bus asks
//! the hub whether the room has state *now*. So marks coalesce (a room that
//! comes and goes a thousand times before the bus looks is one entry), the
//! set never holds more than the number of rooms, and marking never blocks,
//! which matters because the hub marks under its shard lock.
//!
//! Nothing here refers back to the hub or the bus: the hub holds an
//! `Arc<Interest>`, the bus holds another, and neither keeps the other alive.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// Rooms whose local membership changed since the bus last looked.
#[derive(Default)]
pub struct Interest {
    /// std Mutex: an insert or a swap, never held across an `.await`.
    marked: Mutex<HashSet<Arc<str>>>,
    notify: Notify,
}

impl Interest {
    /// An empty set, to share between a hub and its bus.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Asks the bus to look at `room` again. Never blocks.
    pub fn mark(&self, room: &Arc<str>) {
        let inserted = self
            .marked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(room.clone());
        if inserted {
            // Stores a permit when nobody waits, so no mark is missed.
            self.notify.notify_one();
        }
    }

    /// Takes every marked room, waiting until there is at least one.
    pub async fn changed(&self) -> HashSet<Arc<str>> {
        loop {
            let taken = std::mem::take(&mut *self.marked.lock().unwrap_or_else(|e| e.into_inner()));
            if !taken.is_empty() {
                return taken;
            }
            self.notify.notified().await;
        }
    }

    /// Takes every marked room without waiting (possibly none).
    pub fn take(&self) -> HashSet<Arc<str>> {
        std::mem::take(&mut *self.marked.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn marks_coalesce_and_wake_a_waiter() {
        let interest = Interest::new();
        let room: Arc<str> = "r".into();
        interest.mark(&room);
        interest.mark(&room);
        let waiter = tokio::spawn({
            let interest = interest.clone();
            async move { interest.changed().await }
        });
        let taken = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("joined");
        assert_eq!(taken.len(), 1);
        assert!(interest.take().is_empty());
    }
}
