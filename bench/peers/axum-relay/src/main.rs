//! Benchmark peer: a plain axum WebSocket room relay, written the way axum's
//! own chat example is (`examples/chat` in the axum repository): one
//! `tokio::sync::broadcast` channel per room, the socket split in two, a send
//! task forwarding the channel to the socket and a receive task publishing the
//! socket's text messages into the channel.
//!
//! Implements the bench peer contract in `bench/peers/README.md`:
//! `ws://HOST:PORT/ws?room=NAME`; every text message goes to every member of
//! the room, the sender included. Plain ws only: `--cert` is refused (exit 2).

use std::{
    collections::HashMap,
    io::Write as _,
    process::ExitCode,
    sync::{Arc, Mutex},
};

use axum::{
    extract::{
        ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade},
        Query, State,
    },
    response::Response,
    routing::get,
    Router,
};
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use tokio::{
    net::TcpListener,
    signal::unix::{signal, SignalKind},
    sync::broadcast::{self, error::RecvError},
};

/// Messages a room's channel holds for its slowest member before that member
/// lags and skips ahead. tokio allocates the whole buffer when the room is
/// created: about 300 KiB per room at this size.
const ROOM_CAPACITY: usize = 4096;

/// Room name -> the room's channel.
type Rooms = Arc<Mutex<HashMap<String, broadcast::Sender<Utf8Bytes>>>>;

#[derive(Deserialize)]
struct Join {
    #[serde(default)]
    room: String,
}

struct Args {
    host: String,
    port: u16,
    tls: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        host: "127.0.0.1".to_owned(),
        port: 0,
        tls: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => args.port = value.parse().map_err(|_| format!("bad --port {value}"))?,
            "--host" => args.host = value,
            "--cert" | "--key" => args.tls = true,
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("usage: axum-relay [--port N] [--host H]: {err}");
            return ExitCode::from(2);
        }
    };
    if args.tls {
        eprintln!("axum-relay: TLS is not supported (axum has no built-in TLS); run it without --cert/--key");
        return ExitCode::from(2);
    }
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("axum-relay: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> std::io::Result<()> {
    let app = Router::new()
        .route("/ws", get(upgrade))
        .with_state(Rooms::default());
    let listener = TcpListener::bind((args.host.as_str(), args.port)).await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "LISTENING {}", listener.local_addr()?.port())?;
    stdout.flush()?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("axum-relay: cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

async fn upgrade(
    ws: WebSocketUpgrade,
    Query(join): Query<Join>,
    State(rooms): State<Rooms>,
) -> Response {
    // Join the room before the 101 response goes out, so a message sent to the
    // room right after the client sees the upgrade already reaches it.
    // Subscribing under the lock keeps the clean-up in `relay` exact. (Should
    // the upgrade then fail, the room may keep an idle channel, reused later.)
    let (tx, rx) = {
        let mut rooms = rooms.lock().unwrap_or_else(|e| e.into_inner());
        let tx = rooms
            .entry(join.room.clone())
            .or_insert_with(|| broadcast::channel(ROOM_CAPACITY).0)
            .clone();
        let rx = tx.subscribe();
        (tx, rx)
    };
    ws.on_upgrade(move |socket| relay(socket, join.room, rooms, tx, rx))
}

/// Serves one member of `room` until its socket closes.
async fn relay(
    socket: WebSocket,
    room: String,
    rooms: Rooms,
    tx: broadcast::Sender<Utf8Bytes>,
    mut rx: broadcast::Receiver<Utf8Bytes>,
) {
    let (mut sender, mut receiver) = socket.split();

    // Room channel -> this socket. A member that falls more than
    // ROOM_CAPACITY messages behind skips the ones it missed.
    let mut send_task = tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(text) => {
                    if sender.send(Message::Text(text)).await.is_err() {
                        break;
                    }
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => break,
            }
        }
    });

    // This socket -> room channel. Reading on past a Close frame lets the
    // library finish the close handshake before the stream ends.
    let mut recv_task = tokio::spawn(async move {
        while let Some(Ok(message)) = receiver.next().await {
            if let Message::Text(text) = message {
                // Fails only when the room has no receivers, which cannot be
                // while this member's own receiver is alive.
                let _ = tx.send(text);
            }
        }
    });

    // When either task ends, stop the other and wait until it is gone, so this
    // member's receiver is dropped before the room clean-up below.
    tokio::select! {
        _ = &mut send_task => {
            recv_task.abort();
            let _ = recv_task.await;
        }
        _ = &mut recv_task => {
            send_task.abort();
            let _ = send_task.await;
        }
    }

    let mut rooms = rooms.lock().unwrap_or_else(|e| e.into_inner());
    if rooms.get(&room).is_some_and(|tx| tx.receiver_count() == 0) {
        rooms.remove(&room);
    }
}
