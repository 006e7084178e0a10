//! The reconnect storm (chat-server only: the peers keep no sessions and no
//! history). Thousands of clients sit in rooms, each holding a session and
//! the seq of the newest message it has; then the server crashes (SIGKILL)
//! and starts again on the same port and data directory. Every client comes
//! back by itself, as a real one does: retry with jittered backoff while the
//! server is down, a ticket from its session (a password login only if the
//! session is refused), the socket, and a resuming `join_room`. A client is
//! back when its room's `joined` arrives.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chat_protocol::{ClientEvent, ServerEvent};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::http::{self, HttpConn, TicketAnswer};
use crate::load::{self, PASSWORD};
use crate::scenarios::{log, start_plain, Plan, Results, CONNECT_CONCURRENCY};
use crate::servers::{Paths, ServerKind};
use crate::wire::{self, FrameBuf, Io, Target};

/// The wait after the first failed reconnect attempt; it doubles on each
/// further failure. Small, since the measure is how fast clients are back.
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
/// ... up to this.
const BACKOFF_CAP: Duration = Duration::from_secs(1);
/// An attempt (ticket, upgrade, resume) that takes longer is given up and
/// retried, as an HTTP client's timeout would.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the clients get to receive the messages sent before the crash.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What one storm measured.
#[derive(Debug, Clone)]
pub struct StormRow {
    /// Clients connected before the crash.
    pub clients: usize,
    /// Members per room.
    pub room_size: usize,
    /// Messages each room had before the crash.
    pub messages_per_room: u64,
    /// Clients that did not have all of them when the server was killed.
    pub behind_at_crash: usize,
    /// Connections lost before the crash (there should be none).
    pub lost_before_crash: u64,
    /// From the kill until the new process listened.
    pub restart: Duration,
    /// From the kill until each client that came back had its `joined`,
    /// in the order they came back.
    pub back: Vec<Duration>,
    /// How long the storm was given.
    pub deadline: Duration,
    /// Clients whose session `POST /api/ticket` refused (401
    /// `invalid_session`), each counted once: one that gave up waiting for
    /// its password login asks with the refused session again.
    pub sessions_refused: u64,
    /// Password logins that succeeded: one password hash each on the server.
    pub password_logins: u64,
    /// Attempts that failed and were retried (connection refused while the
    /// server was down, timeouts, refusals).
    pub failed_attempts: u64,
    /// The last failed attempt's error, for the report's notes.
    pub last_error: Option<String>,
    /// Clients whose `joined` gave a smaller `last_seq` than they had: the
    /// server lost acknowledged messages in the crash.
    pub rewound: u64,
    /// CPU seconds of the new server process, from its start until every
    /// client was back (or the deadline).
    pub server_cpu_seconds: f64,
    /// Share of its core the load generator used over the same time.
    pub loadgen_cpu_share: f64,
}

impl StormRow {
    /// From the kill until the last client was back, if all came back.
    pub fn all_back(&self) -> Option<Duration> {
        (self.back.len() == self.clients)
            .then(|| self.back.iter().max().copied())
            .flatten()
    }

    /// The `q` quantile of the times clients came back in.
    pub fn back_quantile(&self, q: f64) -> Option<Duration> {
        let mut back = self.back.clone();
        back.sort();
        let last = back.len().checked_sub(1)?;
        back.get(((last as f64) * q).round() as usize).copied()
    }
}

/// Wait after `failures` failed reconnect attempts in a row: none before
/// the first attempt (a client tries at once when its connection drops),
/// then a random point (`unit` in 0..1) between half and all of
/// `BACKOFF_FIRST * 2^(failures - 1)`, capped at `BACKOFF_CAP`. The jitter
/// keeps clients that lost the server together from retrying in lockstep.
pub fn backoff(failures: u32, unit: f64) -> Duration {
    let Some(doublings) = failures.checked_sub(1) else {
        return Duration::ZERO;
    };
    let full = BACKOFF_FIRST
        .saturating_mul(1 << doublings.min(16))
        .min(BACKOFF_CAP);
    full.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
}

/// Counters all clients add to.
#[derive(Default)]
struct Tally {
    /// When the server was killed; a connection opened after it is a return.
    crashed_at: Cell<Option<Instant>>,
    back: RefCell<Vec<Duration>>,
    lost_before_crash: Cell<u64>,
    sessions_refused: Cell<u64>,
    password_logins: Cell<u64>,
    failed_attempts: Cell<u64>,
    last_error: RefCell<Option<String>>,
    rewound: Cell<u64>,
}

fn bump(counter: &Cell<u64>) {
    counter.set(counter.get() + 1);
}

/// One simulated client: a user's session, one room, the newest seq it has.
struct Client {
    target: Rc<Target>,
    room: String,
    user: String,
    /// Its session token; replaced when a password login starts a new one.
    session: RefCell<String>,
    /// The seq of the newest message of its room it has seen.
    last_seq: Cell<u64>,
    /// Whether it has been counted back since the crash.
    returned: Cell<bool>,
    /// Whether its session has been refused (counted once).
    refused: Cell<bool>,
    /// The write half of its current connection.
    writer: RefCell<Option<Rc<Mutex<OwnedWriteHalf>>>>,
    tally: Rc<Tally>,
}

/// The read half of a client's current connection.
struct Conn {
    read: OwnedReadHalf,
    buf: FrameBuf,
}

impl Client {
    /// Lives on its connection until it ends, then comes back, forever (the
    /// scenario aborts it).
    async fn live(self: Rc<Self>, mut conn: Conn) {
        loop {
            self.read_until_closed(&mut conn).await;
            // Close the dead socket before opening others: 10,000 clients
            // holding a dead socket, a ticket request and a new socket each
            // would pass the 20,000 open files a process may have.
            drop(conn);
            self.writer.borrow_mut().take();
            if self.tally.crashed_at.get().is_none() {
                bump(&self.tally.lost_before_crash);
            }
            conn = self.come_back().await;
        }
    }

    /// Reconnects and resumes, with backoff between failed attempts.
    async fn come_back(&self) -> Conn {
        let mut failures = 0;
        loop {
            tokio::time::sleep(backoff(failures, fastrand::f64())).await;
            failures += 1;
            let since = Some(self.last_seq.get());
            let error = match tokio::time::timeout(ATTEMPT_TIMEOUT, self.connect(since)).await {
                Ok(Ok(conn)) => return conn,
                Ok(Err(e)) => format!("{e:#}"),
                Err(_) => format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs()),
            };
            bump(&self.tally.failed_attempts);
            *self.tally.last_error.borrow_mut() = Some(error);
        }
    }

    /// One attempt: a ticket, the socket, and the join (a resume after
    /// `since`, if given); counts the client back once the crash happened.
    async fn connect(&self, since: Option<u64>) -> anyhow::Result<Conn> {
        let ticket = self.ticket().await?;
        let mut io = Io::connect(&self.target).await?;
        let host = load::host(&self.target);
        let mut buf = wire::upgrade(&mut io, &host, &format!("/ws?ticket={ticket}"), 2048).await?;
        let had = self.last_seq.get();
        let last_seq = load::join_room(&mut io, &mut buf, &self.room, since, |event| {
            self.saw(event);
        })
        .await?;
        if last_seq < had {
            bump(&self.tally.rewound);
        }
        self.last_seq.set(last_seq);
        if let (Some(crashed), false) = (self.tally.crashed_at.get(), self.returned.get()) {
            self.returned.set(true);
            self.tally.back.borrow_mut().push(crashed.elapsed());
        }
        let Io::Plain(tcp) = io else {
            anyhow::bail!("the storm runs over plain ws only");
        };
        let (read, write) = tcp.into_split();
        *self.writer.borrow_mut() = Some(Rc::new(Mutex::new(write)));
        Ok(Conn { read, buf })
    }

    /// A ticket from the session, over a connection of its own; if the
    /// session is refused, a password login (counted), whose new session
    /// the client keeps.
    async fn ticket(&self) -> anyhow::Result<String> {
        let mut conn = HttpConn::connect(&self.target, &load::host(&self.target)).await?;
        let session = self.session.borrow().clone();
        match http::ticket_answer(&mut conn, &session).await? {
            TicketAnswer::Ticket(ticket) => Ok(ticket),
            TicketAnswer::SessionRefused => {
                if !self.refused.replace(true) {
                    bump(&self.tally.sessions_refused);
                }
                let login = http::login(&mut conn, &self.user, PASSWORD).await?;
                bump(&self.tally.password_logins);
                *self.session.borrow_mut() = login.session;
                Ok(login.ticket)
            }
        }
    }

    /// Keeps the newest seq of its room.
    fn saw(&self, event: &ServerEvent) {
        if let ServerEvent::NewMessage(message) = event {
            if message.room == self.room && message.seq > self.last_seq.get() {
                self.last_seq.set(message.seq);
            }
        }
    }

    /// Reads until the connection ends, answering pings.
    async fn read_until_closed(&self, conn: &mut Conn) {
        let Some(writer) = self.writer.borrow().clone() else {
            return;
        };
        load::read_frames(&mut conn.read, &mut conn.buf, &writer, |payload, _| {
            if let Ok(event) = serde_json::from_slice::<ServerEvent>(payload) {
                self.saw(&event);
            }
        })
        .await;
    }

    /// Writes raw frame bytes to the current connection.
    async fn write(&self, bytes: &[u8]) -> anyhow::Result<()> {
        let writer = self.writer.borrow().clone().context("not connected")?;
        writer.lock().await.write_all(bytes).await?;
        Ok(())
    }

    /// Sends `text` to its room.
    async fn say(&self, text: String) -> anyhow::Result<()> {
        let event = ClientEvent::SendMessage {
            room: self.room.clone(),
            text,
            client_id: None,
        };
        let mut frame = Vec::new();
        wire::encode(wire::TEXT, event.to_json().as_bytes(), &mut frame);
        self.write(&frame).await
    }
}

/// Aborts the client tasks when the scenario is done with them.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Polls `done` every few milliseconds until it holds or `until` passes.
async fn wait_for(until: Instant, done: impl Fn() -> bool) {
    while !done() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The reconnect storm, against chat-server (other servers have no
/// sessions to come back with and are skipped).
pub async fn storm(
    kind: ServerKind,
    paths: &Paths,
    plan: &Plan,
    out: &mut Results,
) -> anyhow::Result<()> {
    if kind != ServerKind::ChatServer {
        return Ok(());
    }
    let (mut server, _recorder, connector) = start_plain(kind, paths).await?;
    let tally = Rc::new(Tally::default());
    let target = Rc::new(connector.target.clone());
    let clients: Vec<Rc<Client>> = (0..plan.storm_clients)
        .map(|i| {
            Rc::new(Client {
                target: target.clone(),
                room: format!("storm{}", i / plan.room_size),
                user: connector.user(i),
                session: RefCell::new(connector.session(i).to_owned()),
                last_seq: Cell::new(0),
                returned: Cell::new(false),
                refused: Cell::new(false),
                writer: RefCell::new(None),
                tally: tally.clone(),
            })
        })
        .collect();
    let conns: Vec<Conn> = stream::iter(&clients)
        .map(|client| client.connect(None))
        .buffered(CONNECT_CONCURRENCY)
        .try_collect()
        .await
        .context("connecting the storm's clients")?;
    let tasks = Tasks(
        clients
            .iter()
            .zip(conns)
            .map(|(client, conn)| tokio::task::spawn_local(client.clone().live(conn)))
            .collect(),
    );

    // Every room gets its messages from its first member; every member
    // then has a last_seq to resume from.
    let messages = plan.storm_messages;
    for client in clients.iter().step_by(plan.room_size) {
        for k in 0..messages {
            client.say(format!("before the storm, message {k}")).await?;
        }
    }
    let has_all = |c: &Rc<Client>| c.last_seq.get() >= messages;
    wait_for(Instant::now() + SETTLE_TIMEOUT, || {
        clients.iter().all(has_all)
    })
    .await;
    let behind_at_crash = clients.iter().filter(|c| !has_all(c)).count();
    log(&format!(
        "storm: {} clients in rooms of {}, {messages} messages each ({behind_at_crash} behind); killing the server",
        clients.len(),
        plan.room_size
    ));

    let own_before = crate::servers::own_cpu_seconds();
    let crashed = Instant::now();
    tally.crashed_at.set(Some(crashed));
    server.crash_and_restart().await?;
    let restart = crashed.elapsed();
    wait_for(crashed + plan.storm_deadline, || {
        tally.back.borrow().len() == clients.len()
    })
    .await;
    let elapsed = crashed.elapsed().as_secs_f64();
    let row = StormRow {
        clients: clients.len(),
        room_size: plan.room_size,
        messages_per_room: messages,
        behind_at_crash,
        lost_before_crash: tally.lost_before_crash.get(),
        restart,
        back: tally.back.borrow().clone(),
        deadline: plan.storm_deadline,
        sessions_refused: tally.sessions_refused.get(),
        password_logins: tally.password_logins.get(),
        failed_attempts: tally.failed_attempts.get(),
        last_error: tally.last_error.borrow().clone(),
        rewound: tally.rewound.get(),
        server_cpu_seconds: server.cpu_seconds(),
        loadgen_cpu_share: (crate::servers::own_cpu_seconds() - own_before) / elapsed,
    };
    log(&format!(
        "storm: {} of {} back in {:.2} s (server listening after {} ms), {} password logins, {} failed attempts, server CPU {:.2} s",
        row.back.len(),
        row.clients,
        elapsed,
        restart.as_millis(),
        row.password_logins,
        row.failed_attempts,
        row.server_cpu_seconds
    ));
    out.storms.push(row);
    drop(tasks);
    server.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_cap() {
        assert_eq!(backoff(0, 1.0), Duration::ZERO, "the first try is at once");
        assert_eq!(backoff(1, 0.0), Duration::from_millis(25));
        assert_eq!(backoff(1, 1.0), Duration::from_millis(50));
        assert_eq!(backoff(2, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(4, 0.5), Duration::from_millis(300));
        assert_eq!(backoff(6, 1.0), BACKOFF_CAP);
        assert_eq!(backoff(40, 1.0), BACKOFF_CAP, "no overflow");
        assert_eq!(backoff(40, 0.0), BACKOFF_CAP / 2);
    }

    fn row(clients: usize, back_ms: &[u64]) -> StormRow {
        StormRow {
            clients,
            room_size: 10,
            messages_per_room: 3,
            behind_at_crash: 0,
            lost_before_crash: 0,
            restart: Duration::from_millis(80),
            back: back_ms
                .iter()
                .map(|&ms| Duration::from_millis(ms))
                .collect(),
            deadline: Duration::from_secs(60),
            sessions_refused: 0,
            password_logins: 0,
            failed_attempts: 0,
            last_error: None,
            rewound: 0,
            server_cpu_seconds: 1.0,
            loadgen_cpu_share: 0.5,
        }
    }

    #[test]
    fn all_back_only_when_every_client_is() {
        assert_eq!(
            row(3, &[300, 100, 200]).all_back(),
            Some(Duration::from_millis(300))
        );
        assert_eq!(row(4, &[300, 100, 200]).all_back(), None);
        assert_eq!(row(0, &[]).all_back(), None, "nothing measured");
        let r = row(5, &[500, 100, 400, 200, 300]);
        assert_eq!(r.back_quantile(0.5), Some(Duration::from_millis(300)));
        assert_eq!(r.back_quantile(1.0), Some(Duration::from_millis(500)));
        assert_eq!(row(1, &[]).back_quantile(0.5), None);
    }
}
