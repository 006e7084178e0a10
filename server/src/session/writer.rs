//! The writer task: the only owner of a connection's sink.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::sink::SinkExt;
use futures_util::stream::SplitSink;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

use super::close::{CloseReason, Closer};

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
pub(super) async fn run(
    mut sink: Sink,
    mut rx: mpsc::Receiver<Utf8Bytes>,
    closer: Closer,
    heartbeat: Heartbeat,
    mut pongs: watch::Receiver<()>,
    close_timeout: Duration,
) {
    let mut ping =
        tokio::time::interval_at(Instant::now() + heartbeat.interval, heartbeat.interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pong_deadline: Option<Instant> = None;
    let mut pongs_open = true;

    loop {
        tokio::select! {
            biased;
            () = closer.closed() => break,
            frame = rx.recv() => {
                let Some(frame) = frame else { break };
                // A client that stops reading blocks this write forever; the
                // closer (fired by its full queue) cuts it short.
                let written = tokio::select! {
                    r = write_batch(&mut sink, &mut rx, frame) => r,
                    () = closer.closed() => break,
                };
                if written.is_err() {
                    closer.close(CloseReason::ConnectionLost);
                    break;
                }
            }
            () = sleep_until(pong_deadline), if pong_deadline.is_some() => {
                closer.close(CloseReason::PongTimeout);
                break;
            }
            changed = pongs.changed(), if pongs_open => {
                match changed {
                    Ok(()) => pong_deadline = None,
                    // The reader is gone; the closer will fire too.
                    Err(_) => pongs_open = false,
                }
            }
            _ = ping.tick() => {
                if pong_deadline.is_none() {
                    pong_deadline = Some(Instant::now() + heartbeat.timeout);
                    let sent = tokio::select! {
                        r = sink.send(Message::Ping(Default::default())) => r,
                        () = closer.closed() => break,
                    };
                    if sent.is_err() {
                        closer.close(CloseReason::ConnectionLost);
                        break;
                    }
                }
            }
        }
    }

    let reason = closer.reason();
    let _ = tokio::time::timeout(close_timeout, finish(&mut sink, &mut rx, reason)).await;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn write_batch(
    sink: &mut Sink,
    rx: &mut mpsc::Receiver<Utf8Bytes>,
    first: Utf8Bytes,
) -> Result<(), axum::Error> {
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
async fn finish(
    sink: &mut Sink,
    rx: &mut mpsc::Receiver<Utf8Bytes>,
    reason: CloseReason,
) -> Result<(), axum::Error> {
    // No new frames from here on: the registry's try_send sees a closed queue.
    rx.close();
    if reason.flush_queue() {
        while let Some(frame) = rx.recv().await {
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
