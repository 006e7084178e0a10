//! The sending side of one connection, as the rest of the server sees it.

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;

use super::close::{CloseReason, Closer};

/// Queues frames for one connection's writer task.
///
/// Policy when the queue is full: the client is not keeping up with its rooms,
/// so it is disconnected (close code 1008) rather than slowing everyone else
/// down or silently missing messages.
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<Utf8Bytes>,
    closer: Closer,
}

impl Outbox {
    pub(crate) fn new(tx: mpsc::Sender<Utf8Bytes>, closer: Closer) -> Self {
        Self { tx, closer }
    }

    /// Queues a frame, waiting while the queue is full: for traffic only this
    /// client asked for (a resume's backlog), which may go at its own pace.
    /// Returns `false` once the connection is gone.
    pub(crate) async fn send(&self, frame: Utf8Bytes) -> bool {
        self.tx.send(frame).await.is_ok()
    }

    /// Waits until `n` frames fit in the queue and reserves room for them, so
    /// that they can later be queued under a lock without waiting or failing.
    /// `None` once the connection is gone.
    pub(crate) async fn reserve(&self, n: usize) -> Option<mpsc::PermitIterator<'_, Utf8Bytes>> {
        self.tx.reserve_many(n).await.ok()
    }

    /// Queues an already-serialized frame without waiting. Cloning a frame
    /// shares its bytes, so a broadcast is serialized once for all members.
    pub(crate) fn deliver(&self, frame: &Utf8Bytes) {
        match self.tx.try_send(frame.clone()) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("send queue full, disconnecting slow client");
                self.closer.close(CloseReason::SlowConsumer);
            }
            // The writer is gone, so the connection is already ending.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}
