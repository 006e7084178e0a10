//! Connections that sit in rooms, and the traffic between them: paced
//! senders, and readers that count deliveries and record their latency.
//!
//! Everything runs on one thread (a tokio `LocalSet`), pinned to the core the
//! servers do not use, so the counters need neither atomics nor locks.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use chat_protocol::{ClientEvent, ServerEvent};
use futures_util::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::http::{self, HttpConn};
use crate::servers::{CpuTime, Proto};
use crate::wire::{self, FrameBuf, Io, Target};

/// Microseconds since this process first asked; senders stamp it into each
/// message and readers subtract it from their own clock.
pub fn now_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Deliveries and latencies, shared by every reader.
pub struct Recorder {
    measuring: bool,
    window_deliveries: u64,
    /// Deliveries in the window to a reader on another cluster node than
    /// the sender's.
    window_crossed: u64,
    step: u32,
    step_deliveries: u64,
    latency: Histogram<u64>,
    disconnects: u64,
}

/// The recorder, as the readers hold it.
pub type Shared = Rc<RefCell<Recorder>>;

impl Recorder {
    /// A recorder with nothing recorded.
    pub fn shared() -> Shared {
        Rc::new(RefCell::new(Self {
            measuring: false,
            window_deliveries: 0,
            window_crossed: 0,
            step: u32::MAX,
            step_deliveries: 0,
            latency: new_histogram(),
            disconnects: 0,
        }))
    }

    /// Connections lost so far.
    pub fn disconnects(&self) -> u64 {
        self.disconnects
    }

    /// Counts a delivery of message `mark` to a reader on cluster node
    /// `reader` (`None` outside a cluster).
    fn delivered(&mut self, mark: Marker, reader: Option<u8>) {
        let Marker {
            step,
            sent_us,
            origin,
        } = mark;
        if self.measuring {
            self.window_deliveries += 1;
            if matches!((origin, reader), (Some(from), Some(to)) if from != to) {
                self.window_crossed += 1;
            }
        }
        if step == self.step {
            self.step_deliveries += 1;
            self.latency
                .saturating_record(now_us().saturating_sub(sent_us).max(1));
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 100 s, three significant digits.
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// One connection in a room.
pub struct Member {
    writer: Rc<Mutex<OwnedWriteHalf>>,
    room: Rc<str>,
    /// The cluster node it is connected to, stamped into what it sends.
    node: Option<u8>,
    reader: JoinHandle<()>,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Opens connections to one server and puts them in rooms.
pub struct Connector {
    /// The server.
    pub target: Target,
    /// Its protocol.
    pub proto: Proto,
    /// For chat-server: session tokens to mint tickets with, one per user.
    sessions: Vec<String>,
    http: RefCell<Vec<HttpConn>>,
    recorder: Shared,
    /// The cluster node `target` is, if it is one.
    node: Option<u8>,
}

/// Password of the benchmark's users.
pub const PASSWORD: &str = "benchmark password";

/// The name of benchmark user `u`.
pub fn user_name(u: usize) -> String {
    format!("bench{u}")
}

impl Connector {
    /// A connector for `target`. For chat-server it registers and logs in
    /// `users` users first (each a password hash on the server, so few).
    pub async fn new(
        target: Target,
        proto: Proto,
        users: usize,
        recorder: Shared,
    ) -> anyhow::Result<Self> {
        let mut sessions = Vec::new();
        let mut pool = Vec::new();
        if proto == Proto::Chat {
            let mut conn = HttpConn::connect(&target, &host(&target)).await?;
            for u in 0..users {
                sessions.push(http::session_for(&mut conn, &user_name(u), PASSWORD).await?);
            }
            pool.push(conn);
        }
        Ok(Self {
            target,
            proto,
            sessions,
            http: RefCell::new(pool),
            recorder,
            node: None,
        })
    }

    /// Marks `target` as cluster node `node`: its members stamp the node
    /// into what they send, and its readers count deliveries from the
    /// other nodes as crossing.
    pub fn on_node(self, node: u8) -> Self {
        Self {
            node: Some(node),
            ..self
        }
    }

    /// Opens `n` connections, `concurrency` at a time; connection `i` joins
    /// `room(i)` and counts deliveries if `counts(i)`.
    pub async fn connect_many(
        &self,
        range: std::ops::Range<usize>,
        concurrency: usize,
        room: impl Fn(usize) -> String,
        counts: impl Fn(usize) -> bool,
    ) -> anyhow::Result<Vec<Member>> {
        let room = &room;
        let counts = &counts;
        let results: Vec<anyhow::Result<Member>> = stream::iter(range)
            .map(|i| async move { self.connect(i, &room(i), counts(i)).await })
            .buffered(concurrency)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Opens one connection and joins `room`.
    pub async fn connect(&self, i: usize, room: &str, counts: bool) -> anyhow::Result<Member> {
        let path = match self.proto {
            Proto::Chat => {
                let ticket = self.ticket(self.session(i)).await?;
                format!("/ws?ticket={ticket}")
            }
            Proto::Relay => format!("/ws?room={room}"),
            Proto::SocketIo => format!("/socket.io/?EIO=4&transport=websocket&room={room}"),
        };
        let mut io = Io::connect(&self.target).await?;
        let mut buf = wire::upgrade(&mut io, &host(&self.target), &path, 2048).await?;
        match self.proto {
            Proto::Chat => {
                join_room(&mut io, &mut buf, room, None, |_| {}).await?;
            }
            Proto::SocketIo => {
                read_until(&mut io, &mut buf, |p| p.starts_with(b"0")).await?;
                send_text(&mut io, b"40").await?;
                read_until(&mut io, &mut buf, |p| p.starts_with(b"40")).await?;
            }
            Proto::Relay => {}
        }
        let Io::Plain(tcp) = io else {
            bail!("rooms are benchmarked over plain ws only");
        };
        let (read, write) = tcp.into_split();
        let writer = Rc::new(Mutex::new(write));
        let reader = tokio::task::spawn_local(read_loop(
            read,
            buf,
            writer.clone(),
            self.recorder.clone(),
            counts.then_some(Reader { node: self.node }),
            self.proto,
        ));
        Ok(Member {
            writer,
            room: room.into(),
            node: self.node,
            reader,
        })
    }

    async fn ticket(&self, session: &str) -> anyhow::Result<String> {
        let pooled = self.http.borrow_mut().pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => HttpConn::connect(&self.target, &host(&self.target)).await?,
        };
        let ticket = http::ticket(&mut conn, session).await?;
        self.http.borrow_mut().push(conn);
        Ok(ticket)
    }

    /// A fresh ticket, for the handshake benchmark.
    pub async fn ticket_for(&self, i: usize) -> anyhow::Result<String> {
        self.ticket(self.session(i)).await
    }

    /// The session token connection `i` gets its tickets with (chat-server
    /// only): connections share their user's session, as one program's
    /// connections should.
    pub fn session(&self, i: usize) -> &str {
        &self.sessions[i % self.sessions.len()]
    }

    /// The user connection `i` is logged in as (chat-server only).
    pub fn user(&self, i: usize) -> String {
        user_name(i % self.sessions.len())
    }
}

/// The `Host` header for a target.
pub fn host(target: &Target) -> String {
    match target.tls {
        Some(_) => format!("localhost:{}", target.addr.port()),
        None => target.addr.to_string(),
    }
}

async fn send_text(io: &mut Io, payload: &[u8]) -> anyhow::Result<()> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    wire::encode(wire::TEXT, payload, &mut out);
    io.write_all(&out).await?;
    Ok(())
}

/// Sends chat-server's `join_room` (resuming after `since`, if given) and
/// reads until the room's `joined`, showing every event before it to `seen`
/// (a resume's catch-up arrives as `new_message`s first). Returns the room's
/// `last_seq` as `joined` gives it. An `error` answer fails at once.
pub async fn join_room(
    io: &mut Io,
    buf: &mut FrameBuf,
    room: &str,
    since: Option<u64>,
    mut seen: impl FnMut(&ServerEvent),
) -> anyhow::Result<u64> {
    let join = ClientEvent::JoinRoom {
        room: room.to_owned(),
        since,
        epoch: None,
    };
    send_text(io, join.to_json().as_bytes()).await?;
    let mut answer = None;
    read_until(io, buf, |payload| {
        let Ok(event) = serde_json::from_slice::<ServerEvent>(payload) else {
            return false;
        };
        seen(&event);
        answer = match event {
            ServerEvent::Joined {
                room: r, last_seq, ..
            } if r == room => Some(Ok(last_seq)),
            ServerEvent::Error { code, message } => Some(Err(anyhow::anyhow!(
                "join_room {room} refused: {code:?} {message}"
            ))),
            _ => return false,
        };
        true
    })
    .await?;
    answer.context("no joined")?
}

/// Reads frames until a text frame matches `done`, answering pings.
async fn read_until(
    io: &mut Io,
    buf: &mut FrameBuf,
    mut done: impl FnMut(&[u8]) -> bool,
) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            while let Some(frame) = buf.next_frame()? {
                let payload = buf.payload(&frame);
                match frame.opcode {
                    wire::TEXT if done(payload) => return Ok(()),
                    wire::PING => {
                        let mut out = Vec::new();
                        wire::encode(wire::PONG, payload, &mut out);
                        io.write_all(&out).await?;
                    }
                    wire::CLOSE => bail!("server closed the connection while joining"),
                    _ => {}
                }
            }
            if buf.fill(io).await? == 0 {
                bail!("connection closed while joining");
            }
        }
    })
    .await
    .context("no answer while joining within 30 s")?
}

/// A connection that counts the marked messages it receives.
#[derive(Debug, Clone, Copy)]
struct Reader {
    /// The cluster node it is connected to.
    node: Option<u8>,
}

/// Reads until the connection ends: counts marked messages if `counting`,
/// answers pings.
async fn read_loop(
    mut read: OwnedReadHalf,
    mut buf: FrameBuf,
    writer: Rc<Mutex<OwnedWriteHalf>>,
    recorder: Shared,
    counting: Option<Reader>,
    proto: Proto,
) {
    read_frames(&mut read, &mut buf, &writer, |payload, reply| {
        if proto == Proto::SocketIo && payload == b"2" {
            // Engine.IO's own heartbeat.
            wire::encode(wire::TEXT, b"3", reply);
        } else if let Some(reader) = counting {
            if let Some(mark) = marker(payload) {
                recorder.borrow_mut().delivered(mark, reader.node);
            }
        }
    })
    .await;
    recorder.borrow_mut().disconnects += 1;
}

/// Reads frames until the connection ends (closed, a Close frame, a bad
/// frame, a failed write), answering pings. Each text payload goes to
/// `on_text`, which may append a frame to send back to its second argument.
pub async fn read_frames(
    read: &mut OwnedReadHalf,
    buf: &mut FrameBuf,
    writer: &Mutex<OwnedWriteHalf>,
    mut on_text: impl FnMut(&[u8], &mut Vec<u8>),
) {
    let mut reply = Vec::new();
    loop {
        loop {
            let frame = match buf.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => return,
            };
            let payload = buf.payload(&frame);
            reply.clear();
            match frame.opcode {
                wire::TEXT | wire::CONTINUATION => on_text(payload, &mut reply),
                wire::PING => wire::encode(wire::PONG, payload, &mut reply),
                wire::CLOSE => return,
                _ => {}
            }
            if !reply.is_empty() && writer.lock().await.write_all(&reply).await.is_err() {
                return;
            }
        }
        if !matches!(buf.fill(read).await, Ok(n) if n > 0) {
            return;
        }
    }
}

/// The text of a benchmark message: `~STEP~SENT_US~` (`~STEP~SENT_US~NODE~`
/// when sent to cluster node `origin`) padded with `x` to `size` bytes. It
/// needs no JSON escaping, and `~` appears nowhere else in what the servers
/// send, so readers find it without parsing.
pub fn message_text(step: u32, size: usize, origin: Option<u8>) -> String {
    let mut text = match origin {
        Some(node) => format!("~{step}~{}~{node}~", now_us()),
        None => format!("~{step}~{}~", now_us()),
    };
    if text.len() < size {
        text.extend(std::iter::repeat_n('x', size - text.len()));
    }
    text
}

/// What a message's text says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Marker {
    step: u32,
    sent_us: u64,
    /// The cluster node it was sent to.
    origin: Option<u8>,
}

fn marker(payload: &[u8]) -> Option<Marker> {
    let at = payload.iter().position(|&b| b == b'~')?;
    let mut fields = payload[at + 1..].splitn(3, |&b| b == b'~');
    let step = parse_digits(fields.next()?)?;
    let sent = parse_digits(fields.next()?)?;
    // The node, if there is one, is the digits up to a third `~`; padding
    // (`x`) or the server's own framing follows a text without one.
    let origin = fields.next().and_then(|rest| {
        let end = rest.iter().position(|&b| b == b'~')?;
        u8::try_from(parse_digits(&rest[..end])?).ok()
    });
    Some(Marker {
        step: u32::try_from(step).ok()?,
        sent_us: sent,
        origin,
    })
}

fn parse_digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 19 {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// The frame payload a client of `proto` sends to say `text` in `room`.
fn wrap(proto: Proto, room: &str, text: &str) -> String {
    match proto {
        Proto::Chat => {
            format!(r#"{{"type":"send_message","payload":{{"room":"{room}","text":"{text}"}}}}"#)
        }
        Proto::Relay => text.to_owned(),
        Proto::SocketIo => format!(r#"42["msg","{text}"]"#),
    }
}

/// One measured step of offered traffic.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// Its number, stamped into its messages.
    pub id: u32,
    /// Messages per second offered, over all senders.
    pub rate: f64,
    /// Text bytes per message.
    pub size: usize,
    /// Sending before the measurement window opens.
    pub warmup: Duration,
    /// The measurement window.
    pub window: Duration,
    /// Deliveries each message should cause (counting members of its room).
    pub fanout: u64,
}

/// What one step measured.
#[derive(Debug, Clone, Copy)]
pub struct StepResult {
    /// Messages actually sent.
    pub sent: u64,
    /// Deliveries per second inside the window.
    pub delivered_per_sec: f64,
    /// Of those, deliveries per second to a subscriber on another cluster
    /// node than the sender's (zero outside a cluster).
    pub crossed_per_sec: f64,
    /// `delivered_per_sec` over the offered delivery rate (`rate * fanout`).
    pub ratio: f64,
    /// Deliveries of this step's own messages, the latency sample.
    pub samples: u64,
    /// Latency percentiles of this step's messages, in microseconds.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// The server's CPU seconds per delivery inside the window, in µs.
    pub server_cpu_us_per_msg: f64,
    /// Share of one core the server used inside the window.
    pub server_cpu_share: f64,
    /// Share of one core this load generator used inside the window.
    pub loadgen_cpu_share: f64,
    /// Connections lost during the step.
    pub disconnects: u64,
}

/// Offers `step.rate` messages per second, round-robin over `senders`, and
/// measures what reaches the counting readers, and the CPU time of `server`
/// (one process, or a cluster's).
pub async fn run_step(
    senders: &[Member],
    proto: Proto,
    step: Step,
    recorder: &Shared,
    server: &impl CpuTime,
) -> anyhow::Result<StepResult> {
    {
        let mut r = recorder.borrow_mut();
        r.step = step.id;
        r.step_deliveries = 0;
        r.latency.reset();
        r.measuring = false;
    }
    let lost_before = recorder.borrow().disconnects;
    let start = Instant::now();
    let end = step.warmup + step.window;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0u64;
    let mut window: Option<(Instant, f64, f64)> = None;
    let mut frame = Vec::with_capacity(step.size + 128);
    loop {
        tick.tick().await;
        let elapsed = start.elapsed();
        if window.is_none() && elapsed >= step.warmup {
            let mut r = recorder.borrow_mut();
            r.measuring = true;
            r.window_deliveries = 0;
            r.window_crossed = 0;
            window = Some((
                Instant::now(),
                server.cpu_seconds(),
                crate::servers::own_cpu_seconds(),
            ));
        }
        if elapsed >= end {
            break;
        }
        let due = (step.rate * elapsed.as_secs_f64()) as u64;
        while sent < due {
            let member = &senders[(sent % senders.len() as u64) as usize];
            let text = message_text(step.id, step.size, member.node);
            frame.clear();
            wire::encode(
                wire::TEXT,
                wrap(proto, &member.room, &text).as_bytes(),
                &mut frame,
            );
            // A failed write shows up as missing deliveries.
            let _ = member.writer.lock().await.write_all(&frame).await;
            sent += 1;
        }
    }
    let (t0, cpu0, own0) = window.context("the step ended before its window opened")?;
    let seconds = t0.elapsed().as_secs_f64();
    let server_cpu = server.cpu_seconds() - cpu0;
    let own_cpu = crate::servers::own_cpu_seconds() - own0;
    let (window_deliveries, window_crossed) = {
        let mut r = recorder.borrow_mut();
        r.measuring = false;
        (r.window_deliveries, r.window_crossed)
    };

    // Let the step's last messages arrive (or give up on them), so that its
    // latencies are complete and the next step starts from an empty pipe.
    let expected = sent * step.fanout;
    let drain_until = Instant::now() + Duration::from_secs(3);
    while recorder.borrow().step_deliveries < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let r = recorder.borrow();
    let delivered_per_sec = window_deliveries as f64 / seconds;
    Ok(StepResult {
        sent,
        delivered_per_sec,
        crossed_per_sec: window_crossed as f64 / seconds,
        ratio: delivered_per_sec / (step.rate * step.fanout as f64),
        samples: r.latency.len(),
        p50_us: r.latency.value_at_quantile(0.50),
        p99_us: r.latency.value_at_quantile(0.99),
        p999_us: r.latency.value_at_quantile(0.999),
        server_cpu_us_per_msg: server_cpu * 1e6 / (window_deliveries.max(1) as f64),
        server_cpu_share: server_cpu / seconds,
        loadgen_cpu_share: own_cpu / seconds,
        disconnects: r.disconnects - lost_before,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_is_found_inside_any_wrapping() {
        for origin in [None, Some(0), Some(1)] {
            let text = message_text(7, 64, origin);
            assert_eq!(text.len(), 64);
            for proto in [Proto::Chat, Proto::Relay, Proto::SocketIo] {
                let wrapped = wrap(proto, "room", &text);
                let mark = marker(wrapped.as_bytes()).expect("marker");
                assert_eq!((mark.step, mark.origin), (7, origin), "{wrapped}");
                assert!(mark.sent_us <= now_us());
            }
        }
        assert_eq!(marker(br#"{"type":"ack","room":"r","seq":1}"#), None);
        assert_eq!(marker(b"~12~x~"), None);
    }

    #[test]
    fn a_text_without_a_node_is_not_read_as_having_one() {
        // A message too short for padding ends right after its stamp, and
        // the server's framing follows: no node there.
        let text = message_text(3, 0, None);
        let mark = marker(wrap(Proto::SocketIo, "r", &text).as_bytes()).expect("marker");
        assert_eq!(mark.origin, None);
        let mark = marker(b"~3~100~12x~").expect("marker");
        assert_eq!(mark.origin, None, "digits must run up to the `~`");
    }

    #[test]
    fn only_deliveries_from_another_node_count_as_crossing() {
        let recorder = Recorder::shared();
        let mut r = recorder.borrow_mut();
        r.measuring = true;
        let from = |origin| Marker {
            step: 1,
            sent_us: now_us(),
            origin,
        };
        r.delivered(from(Some(0)), Some(1));
        r.delivered(from(Some(1)), Some(0));
        r.delivered(from(Some(0)), Some(0));
        r.delivered(from(None), None);
        r.delivered(from(Some(1)), None);
        assert_eq!((r.window_deliveries, r.window_crossed), (5, 2));
    }
}
