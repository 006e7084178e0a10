//! The writer task: the only owner of a connection's sink.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::sink::SinkExt;
use futures_util::stream::SplitSink;
use tokio::time::Instant;

use chat_rooms::{CloseReason, Closer, Frame, Inbox};

/// Most queued frames written before one flush. Under load this turns many
/// small writes into one syscall; the cap keeps one flush from growing huge.
const MAX_BATCH: usize = 64;

type Sink = SplitSink<WebSocket, Message>;

/// Heartbeat timing.
pub(super) struct Heartbeat {
    /// Time between pings.
    pub(super) interval: Duration,
    /// Time allowed for the pong.
    pub(super) timeout: Duration,
}

/// Writes queued frames and pings until the connection starts closing, then
/// writes what is still worth writing and the Close frame, within `close_timeout`.
///
/// This loop runs once per delivery under fan-out, so it keeps its waiting
/// cheap: the close signal is one future pinned for the whole loop, and a
/// single timer serves both the next ping and the pending pong's deadline
/// (the reader only sets `pongs`, an atomic flag).
pub(super) async fn run(
    mut sink: Sink,
    rx: Inbox,
    closer: Closer,
    heartbeat: Heartbeat,
    pongs: Arc<AtomicBool>,
    close_timeout: Duration,
) {
    let mut next_ping = Instant::now() + heartbeat.interval;
    let mut pong_deadline: Option<Instant> = None;
    let timer = tokio::time::sleep_until(next_ping);
    tokio::pin!(timer);
    let closed = closer.closed();
    tokio::pin!(closed);

    loop {
        tokio::select! {
            biased;
            () = &mut closed => break,
            frame = rx.recv_async() => {
                let Ok(frame) = frame else { break };
                // A client that stops reading blocks this write forever; the
                // closer (fired by its full queue) cuts it short.
                let written = tokio::select! {
                    r = write_batch(&mut sink, &rx, frame) => r,
                    () = &mut closed => break,
                };
                if written.is_err() {
                    closer.close(CloseReason::ConnectionLost);
                    break;
                }
            }
            () = &mut timer => {
                let now = Instant::now();
                if let Some(deadline) = pong_deadline {
                    if pongs.load(Ordering::Relaxed) {
                        pong_deadline = None;
                    } else if now >= deadline {
                        closer.close(CloseReason::PongTimeout);
                        break;
                    }
                }
                if now >= next_ping {
                    next_ping = now + heartbeat.interval;
                    // One ping at a time: the next waits for this one's pong.
                    if pong_deadline.is_none() {
                        pongs.store(false, Ordering::Relaxed);
                        pong_deadline = Some(now + heartbeat.timeout);
                        let sent = tokio::select! {
                            r = sink.send(Message::Ping(Default::default())) => r,
                            () = &mut closed => break,
                        };
                        if sent.is_err() {
                            closer.close(CloseReason::ConnectionLost);
                            break;
                        }
                    }
                }
                let wake = pong_deadline.map_or(next_ping, |d| d.min(next_ping));
                timer.as_mut().reset(wake);
            }
        }
    }

    let reason = closer.reason();
    let _ = tokio::time::timeout(close_timeout, finish(&mut sink, rx, reason)).await;
}

async fn write_batch(sink: &mut Sink, rx: &Inbox, first: Frame) -> Result<(), axum::Error> {
    sink.feed(Message::Text(first)).await?;
    for _ in 1..MAX_BATCH {
        match rx.try_recv() {
            Ok(frame) => sink.feed(Message::Text(frame)).await?,
            Err(_) => break,
        }
    }
    sink.flush().await
}

/// Flushes the frames queued so far (when the client can still take them)
/// and sends the Close frame for `reason`.
async fn finish(sink: &mut Sink, rx: Inbox, reason: CloseReason) -> Result<(), axum::Error> {
    let queued: Vec<Frame> = rx.drain().collect();
    // No new frames from here on: the hub's try_send sees a closed queue.
    drop(rx);
    if reason.flush_queue() {
        for frame in queued {
            sink.feed(Message::Text(frame)).await?;
        }
    }
    match reason.close_frame() {
        Some((code, text)) => {
            sink.send(Message::Close(Some(CloseFrame {
                code,
                reason: text.into(),
            })))
            .await
        }
        None => sink.flush().await,
    }
}
