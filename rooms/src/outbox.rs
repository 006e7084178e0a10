//! The sending side of one connection, as the hub and the room log see it.

use tokio::sync::mpsc;

use crate::close::{CloseReason, Closer};

/// One serialized server frame. Cloning it shares the bytes, so a broadcast
/// is serialized once for every member. It is axum's type because the
/// connection's writer hands it to the socket as it is: no copy, no second
/// UTF-8 check.
pub type Frame = axum::extract::ws::Utf8Bytes;

/// Queues frames for one connection's writer task.
///
/// Policy when the queue is full: the client is not keeping up with its rooms,
/// so it is disconnected (close code 1008) rather than slowing everyone else
/// down or silently missing messages.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Frame>,
    closer: Closer,
}

impl Outbox {
    /// An outbox feeding `tx`, closing the connection through `closer`.
    pub fn new(tx: mpsc::Sender<Frame>, closer: Closer) -> Self {
        Self { tx, closer }
    }

    /// Queues a frame, waiting while the queue is full: for traffic only this
    /// client asked for (a resume's backlog), which may go at its own pace.
    /// Returns `false` once the connection is gone.
    pub async fn send(&self, frame: Frame) -> bool {
        self.tx.send(frame).await.is_ok()
    }

    /// Queues an already-serialized frame without waiting; a full queue
    /// disconnects the client (see the type's policy).
    pub fn deliver(&self, frame: &Frame) {
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

    /// Frames that fit in the queue right now.
    pub fn spare(&self) -> usize {
        self.tx.capacity()
    }

    /// Whether the connection has begun closing.
    pub fn is_closing(&self) -> bool {
        self.closer.is_closing()
    }
}
