//! chat-cli: one-off use from shells and cron jobs.

use std::io::{BufRead, Write};
use std::time::Duration;

use chat_protocol::{ChatMessage, ClientEvent, ErrorCode, ServerEvent};
use clap::{Parser, Subcommand};

use crate::args::ConnectArgs;
use crate::client::{
    spawn_session_on, Authenticator, ClientConfig, ClientError, Command, ConnState, Connection,
    SessionEvent,
};
use crate::tui::text::sanitize;

/// Exit codes, one per kind of failure a script may want to tell apart.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Any other failure (a local problem such as an unreadable file).
    pub const FAILURE: u8 = 1;
    /// Wrong command-line usage (clap's own code).
    pub const USAGE: u8 = 2;
    /// The server refused the credentials (or throttled the login).
    pub const AUTH: u8 = 3;
    /// The server could not be reached (or was too busy to check a password).
    pub const UNREACHABLE: u8 = 4;
    /// The server answered with an error or something unexpected.
    pub const PROTOCOL: u8 = 5;
}

/// chat-cli's arguments.
#[derive(Debug, Parser)]
#[command(
    name = "chat-cli",
    version,
    about = "Send to and follow chat rooms from scripts"
)]
pub struct Cli {
    /// Connection options.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: CliCommand,
}

/// chat-cli's subcommands.
#[derive(Debug, Subcommand)]
pub enum CliCommand {
    /// Send a message; without TEXT, send each non-empty line of standard input.
    /// Exits once the server has relayed every message.
    Send {
        /// The room (joined for the time of sending).
        #[arg(long)]
        room: String,
        /// The message (several words are joined with spaces).
        text: Vec<String>,
    },
    /// Print each new message of a room as a line until interrupted;
    /// reconnects on its own if the connection drops, missing nothing.
    Tail {
        /// The room to follow.
        #[arg(long)]
        room: String,
        /// First print every stored message after this sequence number (the
        /// `seq` of the last message you have), then follow.
        #[arg(long)]
        since: Option<u64>,
        /// Print each message as a JSON object per line (the `new_message` payload).
        #[arg(long)]
        json: bool,
    },
    /// Join a room, print its recent messages and then every new one, and
    /// send each non-empty line of standard input as a message; at the end
    /// of the input, exit once every message sent is stored. Reconnects on
    /// its own, resuming the room and resending what was not acknowledged,
    /// so nothing is missed or stored twice.
    Chat {
        /// The room.
        #[arg(long)]
        room: String,
        /// Print each message as a JSON object per line (the `new_message` payload).
        #[arg(long)]
        json: bool,
    },
}

/// Maps an error to chat-cli's exit code.
pub fn exit_code(error: &ClientError) -> u8 {
    match error {
        ClientError::Auth(_) | ClientError::Throttled(_) => exit::AUTH,
        ClientError::Unreachable(_) | ClientError::Busy(_) => exit::UNREACHABLE,
        ClientError::Protocol(_) | ClientError::Closed { .. } => exit::PROTOCOL,
        ClientError::Local(_) => exit::FAILURE,
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), ClientError> {
    let config = cli.connect.into_config()?;
    match cli.command {
        CliCommand::Send { room, text } => {
            let lines = if text.is_empty() {
                std::io::stdin()
                    .lock()
                    .lines()
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| ClientError::Local(format!("reading standard input: {e}")))?
            } else {
                vec![text.join(" ")]
            };
            let mut auth = Authenticator::new(config);
            let mut conn = auth.connect().await?;
            let result = send_all(&mut conn, &room, lines).await;
            conn.close().await;
            // A cron job sending every minute would otherwise hold 32
            // sessions and push out the user's others (chat-tui's, say).
            auth.logout().await;
            result
        }
        CliCommand::Tail { room, since, json } => tail(config, room, since, json).await,
        CliCommand::Chat { room, json } => chat(config, room, json).await,
    }
}

/// Joins `room`, sends each non-blank line, and waits for the server's
/// acknowledgement of each (it is stored by then), resending rate-limited ones
/// with the same client id, so a message is never stored twice. Each request
/// goes with a `ref` (the join `join`, a message its client id), and an
/// `error` is taken as the answer to the request its `ref` names.
async fn send_all(
    conn: &mut Connection,
    room: &str,
    lines: Vec<String>,
) -> Result<(), ClientError> {
    const JOIN: &str = "join";
    let join = ClientEvent::JoinRoom {
        room: room.into(),
        since: None,
        epoch: None,
    };
    conn.send_with_ref(&join, JOIN).await?;
    loop {
        let frame = conn.next_frame().await?;
        match frame.event {
            ServerEvent::Joined { room: joined, .. } if joined == room => break,
            ServerEvent::Error { message, .. } if answers(&frame.reference, JOIN) => {
                return Err(ClientError::Protocol(message))
            }
            _ => {}
        }
    }
    let pause = Duration::from_secs_f64(1.0 / conn.limits().messages_per_second.max(0.1));
    let run = format!("{:08x}", fastrand::u32(..));
    for (n, text) in lines
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
    {
        let client_id = format!("cli-{run}-{n}");
        let event = ClientEvent::SendMessage {
            room: room.into(),
            text,
            client_id: Some(client_id.clone()),
        };
        conn.send_with_ref(&event, &client_id).await?;
        loop {
            let frame = conn.next_frame().await?;
            match frame.event {
                ServerEvent::Ack {
                    client_id: Some(acked),
                    ..
                } if acked == client_id => break,
                ServerEvent::Error {
                    code: ErrorCode::RateLimited,
                    ..
                } if answers(&frame.reference, &client_id) => {
                    tokio::time::sleep(pause).await;
                    conn.send_with_ref(&event, &client_id).await?;
                }
                ServerEvent::Error { message, .. } if answers(&frame.reference, &client_id) => {
                    return Err(ClientError::Protocol(message))
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Whether an answer with `reference` answers the request sent as `ours`.
/// An `error` without a `ref` answers a frame the server could not read at
/// all, and this client sends none of those but its own: take it as ours.
fn answers(reference: &Option<String>, ours: &str) -> bool {
    reference.as_deref().is_none_or(|r| r == ours)
}

async fn tail(
    config: ClientConfig,
    room: String,
    since: Option<u64>,
    json: bool,
) -> Result<(), ClientError> {
    // The first connection is made here so that a wrong password or a dead
    // server fails at once with its exit code; later drops reconnect, with
    // tickets from the session this login started.
    let mut auth = Authenticator::new(config);
    let first = auth.connect().await?;
    let mut session = spawn_session_on(auth, vec![(room.clone(), since)], first);
    let mut stdout = std::io::stdout();
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            event = session.events.recv() => event,
            () = &mut stop => None,
        };
        match event {
            None => break,
            Some(SessionEvent::Server(ServerEvent::NewMessage(m))) if m.room == room => {
                let line = if json { json_line(&m) } else { plain_line(&m) };
                // A closed pipe (`| head`) ends the tail quietly.
                if writeln!(stdout, "{line}")
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    break;
                }
            }
            Some(SessionEvent::Server(ServerEvent::HistoryGap { from, to, .. })) => {
                eprintln!("chat-cli: messages {from} to {to} are no longer stored on the server");
            }
            Some(
                SessionEvent::Server(ServerEvent::Error { message, .. })
                | SessionEvent::Refused { message, .. },
            ) => {
                quit(&session.commands).await;
                return Err(ClientError::Protocol(message));
            }
            Some(SessionEvent::HistoryReset { room }) => history_reset(&room),
            Some(SessionEvent::Fatal(error)) => return Err(error),
            Some(SessionEvent::State(state)) => report_state(&state),
            Some(_) => {}
        }
    }
    quit(&session.commands).await;
    Ok(())
}

/// What `chat` has left to do before it may exit.
#[derive(Debug, Default)]
struct Outstanding {
    /// Standard input has ended.
    input_done: bool,
    /// Messages handed to the session and not yet stored, refused or
    /// reported unsent.
    unconfirmed: usize,
}

impl Outstanding {
    fn finished(&self) -> bool {
        self.input_done && self.unconfirmed == 0
    }

    fn confirmed(&mut self) {
        self.unconfirmed = self.unconfirmed.saturating_sub(1);
    }
}

async fn chat(config: ClientConfig, room: String, json: bool) -> Result<(), ClientError> {
    let mut auth = Authenticator::new(config);
    let first = auth.connect().await?;
    let mut session = spawn_session_on(auth, vec![(room.clone(), None)], first);
    let mut lines = stdin_lines();
    let mut outstanding = Outstanding::default();
    let mut out = std::io::stdout();
    let mut print = |m: &ChatMessage| {
        let line = if json { json_line(m) } else { plain_line(m) };
        writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
    };
    let stop = stop_signal();
    tokio::pin!(stop);
    let mut failure = None;
    while !outstanding.finished() {
        tokio::select! {
            line = lines.recv(), if !outstanding.input_done => match line {
                Some(text) if text.trim().is_empty() => {}
                Some(text) => {
                    outstanding.unconfirmed += 1;
                    let send = Command::Send { room: room.clone(), text };
                    if session.commands.send(send).await.is_err() {
                        break;
                    }
                }
                None => outstanding.input_done = true,
            },
            event = session.events.recv() => match event {
                None => break,
                Some(SessionEvent::Server(ServerEvent::Joined { room: r, history, .. })) if r == room => {
                    if !history.iter().all(&mut print) {
                        break;
                    }
                }
                Some(SessionEvent::Server(ServerEvent::NewMessage(m))) if m.room == room => {
                    if !print(&m) {
                        break;
                    }
                }
                Some(SessionEvent::Server(ServerEvent::Ack { .. })) => outstanding.confirmed(),
                Some(SessionEvent::Server(ServerEvent::HistoryGap { from, to, .. })) => {
                    eprintln!("chat-cli: messages {from} to {to} are no longer stored on the server");
                }
                Some(SessionEvent::Refused { request, code, message }) => {
                    if matches!(request, ClientEvent::SendMessage { .. }) {
                        outstanding.confirmed();
                        eprintln!("chat-cli: message not sent ({}): {message}", code.as_str());
                        failure = Some(ClientError::Protocol(message));
                    } else {
                        quit(&session.commands).await;
                        return Err(ClientError::Protocol(message));
                    }
                }
                Some(SessionEvent::NotSent { text, .. }) => {
                    outstanding.confirmed();
                    eprintln!("chat-cli: not sent (offline): {}", sanitize(&text));
                    failure = Some(ClientError::Unreachable("messages were not sent".into()));
                }
                Some(SessionEvent::HistoryReset { room }) => history_reset(&room),
                Some(SessionEvent::Fatal(error)) => return Err(error),
                Some(SessionEvent::State(state)) => report_state(&state),
                Some(SessionEvent::Server(_)) => {}
            },
            () = &mut stop => break,
        }
    }
    quit(&session.commands).await;
    failure.map_or(Ok(()), Err)
}

/// Standard input's lines, read on a thread of their own (reading a pipe or
/// a terminal blocks); the channel closes at the end of the input.
fn stdin_lines() -> tokio::sync::mpsc::Receiver<String> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn history_reset(room: &str) {
    eprintln!(
        "chat-cli: the server's history of {room} was reset; its messages start again from here"
    );
}

fn report_state(state: &ConnState) {
    if let ConnState::Reconnecting { delay, reason, .. } = state {
        eprintln!("chat-cli: connection lost ({reason}); retrying in {delay:.1?}");
    }
}

/// Asks the session to close its socket and log out, and waits (briefly) for
/// it to finish: the process ends right after.
async fn quit(commands: &tokio::sync::mpsc::Sender<Command>) {
    let _ = commands.send(Command::Quit).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), commands.closed()).await;
}

/// Completes on Ctrl-C or SIGTERM, so `tail` closes its socket properly.
async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

fn json_line(message: &ChatMessage) -> String {
    serde_json::to_string(message).unwrap_or_default()
}

fn plain_line(m: &ChatMessage) -> String {
    format!(
        "{} {}: {}",
        m.sent_at,
        m.from,
        sanitize(&m.text).replace('\n', " ")
    )
}
