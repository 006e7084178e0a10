//! The sending side of one connection, as the hub and the room log see it.

use crate::close::{CloseReason, Closer};

/// One serialized server frame. Cloning it shares the bytes, so a broadcast
/// is serialized once for every member. It is axum's type because the
/// connection's writer hands it to the socket as it is: no copy, no second
/// UTF-8 check.
pub type Frame = axum::extract::ws::Utf8Bytes;

/// The receiving end of a connection's queue, which its writer drains.
pub type Inbox = flume::Receiver<Frame>;

/// Queues frames for one connection's writer.
///
/// Policy when the queue is full: the client is not keeping up with its rooms,
/// so it is disconnected (close code 1008) rather than slowing everyone else
/// down or silently missing messages.
///
/// The queue is flume's: it allocates only as frames arrive (tokio's
/// allocates a block of 32 slots up front), which matters with tens of
/// thousands of mostly idle connections.
#[derive(Clone)]
pub struct Outbox {
    tx: flume::Sender<Frame>,
    closer: Closer,
}

impl Outbox {
    /// A queue of `capacity` frames that closes the connection through
    /// `closer` when it overflows, and the writer's end of it.
    pub fn new(capacity: usize, closer: Closer) -> (Self, Inbox) {
        let (tx, rx) = flume::bounded(capacity);
        (Self { tx, closer }, rx)
    }

    /// Queues a frame, waiting while the queue is full: for traffic only this
    /// client asked for (a resume's backlog), which may go at its own pace.
    /// Returns `false` once the connection is gone.
    pub async fn send(&self, frame: Frame) -> bool {
        self.tx.send_async(frame).await.is_ok()
    }

    /// Queues an already-serialized frame without waiting; a full queue
    /// disconnects the client (see the type's policy).
    pub fn deliver(&self, frame: &Frame) {
        match self.tx.try_send(frame.clone()) {
            Ok(()) => {}
            Err(flume::TrySendError::Full(_)) => {
                tracing::warn!("send queue full, disconnecting slow client");
                self.closer.close(CloseReason::SlowConsumer);
            }
            // The writer is gone, so the connection is already ending.
            Err(flume::TrySendError::Disconnected(_)) => {}
        }
    }

    /// Frames that fit in the queue right now.
    pub fn spare(&self) -> usize {
        self.tx
            .capacity()
            .map_or(usize::MAX, |cap| cap.saturating_sub(self.tx.len()))
    }

    /// Whether the connection has begun closing.
    pub fn is_closing(&self) -> bool {
        self.closer.is_closing()
    }
}
