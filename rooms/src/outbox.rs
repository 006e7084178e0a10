//! The sending side of one connection, as the hub and the room log see it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::close::{CloseReason, Closer};

/// One serialized server frame. Cloning it shares the bytes, so a broadcast
/// is serialized once for every member. It is axum's type because the
/// connection's writer hands it to the socket as it is: no copy, no second
/// UTF-8 check.
pub type Frame = axum::extract::ws::Utf8Bytes;

/// What a connection's queue holds, in frames and in bytes: each frame
/// queued is counted until the writer takes it.
#[derive(Default)]
struct Queued {
    bytes: AtomicUsize,
    /// Woken when the writer takes frames, for senders waiting for room.
    taken: Notify,
}

/// The receiving end of a connection's queue, which its writer drains.
pub struct Inbox {
    rx: flume::Receiver<Frame>,
    queued: Arc<Queued>,
}

impl Inbox {
    fn took(&self, frame: &Frame) {
        self.queued.bytes.fetch_sub(frame.len(), Ordering::AcqRel);
        self.queued.taken.notify_waiters();
    }

    /// The next frame, waiting for one; `Err` once every sender is gone.
    pub async fn recv_async(&self) -> Result<Frame, flume::RecvError> {
        let frame = self.rx.recv_async().await?;
        self.took(&frame);
        Ok(frame)
    }

    /// The next frame if one is queued.
    pub fn try_recv(&self) -> Result<Frame, flume::TryRecvError> {
        let frame = self.rx.try_recv()?;
        self.took(&frame);
        Ok(frame)
    }

    /// Every frame queued now.
    pub fn drain(&self) -> Vec<Frame> {
        let frames: Vec<Frame> = self.rx.drain().collect();
        for frame in &frames {
            self.took(frame);
        }
        frames
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether no frame is queued.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.queued.bytes.load(Ordering::Acquire)
    }
}

/// Queues frames for one connection's writer.
///
/// The queue is bounded in frames and in bytes: one client that does not
/// read must cost a bounded amount of memory however large the frames it
/// asks for. Policy when either bound would be passed: the client is not
/// keeping up with its rooms, so it is disconnected (close code 1008) rather
/// than slowing everyone else down or silently missing messages. A frame
/// always fits an empty queue, so the byte bound never refuses a frame
/// outright.
///
/// The queue is flume's: it allocates only as frames arrive (tokio's
/// allocates a block of 32 slots up front), which matters with tens of
/// thousands of mostly idle connections.
#[derive(Clone)]
pub struct Outbox {
    tx: flume::Sender<Frame>,
    queued: Arc<Queued>,
    max_bytes: usize,
    closer: Closer,
}

impl Outbox {
    /// A queue of at most `capacity` frames and `max_bytes` bytes that
    /// closes the connection through `closer` when it overflows, and the
    /// writer's end of it.
    pub fn new(capacity: usize, max_bytes: usize, closer: Closer) -> (Self, Inbox) {
        let (tx, rx) = flume::bounded(capacity);
        let queued = Arc::new(Queued::default());
        let inbox = Inbox {
            rx,
            queued: queued.clone(),
        };
        let outbox = Self {
            tx,
            queued,
            max_bytes,
            closer,
        };
        (outbox, inbox)
    }

    /// Counts `len` more bytes queued if they fit (or the queue is empty).
    fn reserve(&self, len: usize) -> bool {
        self.queued
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued == 0 || queued.saturating_add(len) <= self.max_bytes)
                    .then(|| queued.saturating_add(len))
            })
            .is_ok()
    }

    fn unreserve(&self, len: usize) {
        self.queued.bytes.fetch_sub(len, Ordering::AcqRel);
    }

    /// Queues a frame, waiting while the queue is full (in frames or bytes):
    /// for traffic only this client asked for (a resume's backlog), which may
    /// go at its own pace. Returns `false` once the connection is gone.
    pub async fn send(&self, frame: Frame) -> bool {
        loop {
            // Registered before the check, so a take in between still wakes it.
            let taken = self.queued.taken.notified();
            if self.reserve(frame.len()) {
                break;
            }
            if self.is_closing() || self.tx.is_disconnected() {
                return false;
            }
            taken.await;
        }
        let len = frame.len();
        let sent = self.tx.send_async(frame).await.is_ok();
        if !sent {
            self.unreserve(len);
        }
        sent
    }

    /// Queues an already-serialized frame without waiting; a full queue
    /// disconnects the client (see the type's policy).
    pub fn deliver(&self, frame: &Frame) {
        if !self.reserve(frame.len()) {
            self.overflow("bytes");
            return;
        }
        match self.tx.try_send(frame.clone()) {
            Ok(()) => {}
            Err(flume::TrySendError::Full(_)) => {
                self.unreserve(frame.len());
                self.overflow("frames");
            }
            // The writer is gone, so the connection is already ending.
            Err(flume::TrySendError::Disconnected(_)) => self.unreserve(frame.len()),
        }
    }

    fn overflow(&self, bound: &'static str) {
        if !self.closer.is_closing() {
            tracing::warn!(bound, "send queue full, disconnecting slow client");
        }
        self.closer.close(CloseReason::SlowConsumer);
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
