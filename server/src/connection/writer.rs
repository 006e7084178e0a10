//! The writing side of a connection: batched writes, the heartbeat's timing,
//! and the last frames and Close frame.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use chat_rooms::{CloseReason, Frame, Inbox};
use futures_util::sink::SinkExt;
use tokio::time::Instant;

/// Most queued frames written before one flush. Under load this turns many
/// small writes into one syscall; the cap keeps one flush from growing huge.
const MAX_BATCH: usize = 64;

/// Heartbeat timing.
#[derive(Debug, Clone, Copy)]
pub(super) struct Heartbeat {
    /// Time between pings.
    pub(super) interval: Duration,
    /// Time allowed for the pong.
    pub(super) timeout: Duration,
}

/// What the heartbeat wants done when its timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Beat {
    /// Send a ping now.
    Ping,
    /// The last ping went unanswered for too long.
    Dead,
    /// Nothing yet.
    Wait,
}

/// The heartbeat's state: one timer serves both the next ping and the
/// pending pong's deadline, and only one ping is out at a time.
#[derive(Debug)]
pub(super) struct Pulse {
    heartbeat: Heartbeat,
    next_ping: Instant,
    pong_deadline: Option<Instant>,
}

impl Pulse {
    pub(super) fn new(heartbeat: Heartbeat, now: Instant) -> Self {
        Self {
            heartbeat,
            next_ping: now + heartbeat.interval,
            pong_deadline: None,
        }
    }

    /// A pong arrived: the ping out is answered.
    pub(super) fn pong(&mut self) {
        self.pong_deadline = None;
    }

    /// When the timer should next fire.
    pub(super) fn wake_at(&self) -> Instant {
        self.pong_deadline
            .map_or(self.next_ping, |d| d.min(self.next_ping))
    }

    /// What to do at `now`, when the timer fired.
    pub(super) fn on_wake(&mut self, now: Instant) -> Beat {
        if self.pong_deadline.is_some_and(|deadline| now >= deadline) {
            return Beat::Dead;
        }
        if now < self.next_ping {
            return Beat::Wait;
        }
        self.next_ping = now + self.heartbeat.interval;
        if self.pong_deadline.is_some() {
            // The next ping waits for this one's pong.
            return Beat::Wait;
        }
        self.pong_deadline = Some(now + self.heartbeat.timeout);
        Beat::Ping
    }
}

/// Runs one write with a deadline: a peer whose TCP window stays closed
/// blocks it, and the writer's loop, which would otherwise ping, with it.
/// A failed write means the connection is lost; one past `deadline` that
/// the peer stalls.
pub(super) async fn within<T>(
    deadline: Duration,
    write: impl std::future::Future<Output = Result<T, axum::Error>>,
) -> Result<T, CloseReason> {
    match tokio::time::timeout(deadline, write).await {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(_)) => Err(CloseReason::ConnectionLost),
        Err(_) => Err(CloseReason::WriteStalled),
    }
}

/// Writes `first` and whatever else is queued (up to [`MAX_BATCH`]), then
/// flushes once. Returns the bytes of the frames written.
pub(super) async fn write_batch(
    socket: &mut WebSocket,
    rx: &Inbox,
    first: Frame,
) -> Result<usize, axum::Error> {
    let mut bytes = first.len();
    socket.feed(Message::Text(first)).await?;
    for _ in 1..MAX_BATCH {
        match rx.try_recv() {
            Ok(frame) => {
                bytes += frame.len();
                socket.feed(Message::Text(frame)).await?;
            }
            Err(_) => break,
        }
    }
    socket.flush().await?;
    Ok(bytes)
}

/// Flushes the frames queued so far (when the client can still take them)
/// and sends the Close frame for `reason`.
pub(super) async fn finish(
    socket: &mut WebSocket,
    rx: Inbox,
    reason: CloseReason,
) -> Result<(), axum::Error> {
    let queued: Vec<Frame> = rx.drain();
    // No new frames from here on: the hub's try_send sees a closed queue.
    drop(rx);
    if reason.flush_queue() {
        for frame in queued {
            socket.feed(Message::Text(frame)).await?;
        }
    }
    match reason.close_frame() {
        Some((code, text)) => {
            socket
                .send(Message::Close(Some(CloseFrame {
                    code,
                    reason: text.into(),
                })))
                .await
        }
        None => socket.flush().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_ping_at_a_time_and_a_deadline_for_its_pong() {
        let heartbeat = Heartbeat {
            interval: Duration::from_secs(20),
            timeout: Duration::from_secs(10),
        };
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let mut pulse = Pulse::new(heartbeat, start);
        assert_eq!(pulse.wake_at(), at(20));
        assert_eq!(pulse.on_wake(at(19)), Beat::Wait);
        assert_eq!(pulse.on_wake(at(20)), Beat::Ping);
        assert_eq!(pulse.wake_at(), at(30), "the pong's deadline comes first");
        pulse.pong();
        assert_eq!(pulse.wake_at(), at(40));
        assert_eq!(pulse.on_wake(at(40)), Beat::Ping);
        assert_eq!(pulse.on_wake(at(49)), Beat::Wait);
        assert_eq!(pulse.on_wake(at(50)), Beat::Dead, "no pong in 10 s");
    }
}
