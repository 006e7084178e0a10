//! Test support shared by the server's tests and the clients' tests: a real
//! chat-server in the test process on 127.0.0.1:0 (restartable on the same
//! address and data directory), real HTTP and WebSocket clients (plain or
//! TLS) talking to it over loopback, metrics scraping ([`scrape`]), and a
//! proxy that cuts a connection at a chosen moment ([`proxy`]).
// Test helpers read best as their names; documenting each would repeat them.
#![allow(missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chat_protocol::http::{LoginResponse, TicketResponse};
use chat_protocol::{ClientEvent, ServerEvent};
use chat_server::clock::ManualClock;
use chat_server::{Config, PasswordHashes, Server};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

pub mod proxy;
pub mod scrape;

/// Runs `command` with `input` on its standard input and its output
/// collected, within [`WAIT`]. `Err` only when it cannot be started (such as
/// a tool that is not installed); anything later fails the test.
pub async fn run_with_input(
    command: &mut tokio::process::Command,
    input: &str,
) -> std::io::Result<std::process::Output> {
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(input.as_bytes())
        .await
        .expect("write stdin");
    drop(stdin);
    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{command:?} did not finish within {WAIT:?}"))
        .expect("collect the output");
    Ok(output)
}

/// How long a test waits for any one expected thing before failing.
pub const WAIT: Duration = Duration::from_secs(10);
pub const PASSWORD: &str = "correct horse battery";

/// Any byte stream a client may use: TCP or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub type Stream = Box<dyn Io>;
pub type Ws = WebSocketStream<Stream>;

/// A chat server running in this test process. Its sessions and tickets are
/// dated by `clock`, which stands still until a test advances it.
pub struct TestServer {
    pub remote: Remote,
    /// The `--metrics-listen` address, when the test turned it on.
    pub metrics: Option<SocketAddr>,
    pub data_dir: tempfile::TempDir,
    pub clock: ManualClock,
    config: Config,
    hashes: PasswordHashes,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl std::ops::Deref for TestServer {
    type Target = Remote;
    fn deref(&self) -> &Remote {
        &self.remote
    }
}

/// How to reach a server: its address, and the certificate to trust for TLS.
#[derive(Clone)]
pub struct Remote {
    pub addr: SocketAddr,
    pub tls_cert: Option<PathBuf>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(configure: impl FnOnce(&mut Config)) -> Self {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::with_data_dir(data_dir.path());
        config.listen = "127.0.0.1:0".parse().expect("addr");
        // Test clients take their Close at once; a short grace keeps a stop
        // (and a restart) quick, so reconnecting clients' backoff stays
        // short. A test may set its own.
        config.shutdown_grace = Duration::from_secs(2);
        // Tests register as many users as they need from one address; the
        // tests of the registration limits set their own.
        config.registrations_per_address = 100_000;
        config.registrations_per_hour = 100_000;
        // Every test client connects from 127.0.0.1, some tests by the thousand.
        config.max_connections_per_address = 100_000;
        config.max_connections_per_user = 100_000;
        configure(&mut config);
        let tls_cert = config
            .tls
            .then(|| data_dir.path().join("tls").join("cert.pem"));
        let clock = ManualClock::default();
        let running = run(&config, &clock).await;
        Self {
            remote: Remote {
                addr: running.addr,
                tls_cert,
            },
            metrics: running.metrics,
            data_dir,
            clock,
            config,
            hashes: running.hashes,
            shutdown: running.shutdown,
            handle: Some(running.handle),
        }
    }

    /// Stops the server gracefully and starts a new one on the same address,
    /// clock and `data_dir` (the same one, unless the test replaced it), so
    /// clients reconnect to the URL they had.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.config.listen = self.remote.addr;
        // A test may have swapped in a fresh data directory (a new store).
        self.config.data_dir = self.data_dir.path().to_path_buf();
        let running = run(&self.config, &self.clock).await;
        assert_eq!(
            running.addr, self.remote.addr,
            "restarted on the same address"
        );
        self.remote.addr = running.addr;
        self.metrics = running.metrics;
        self.hashes = running.hashes;
        self.shutdown = running.shutdown;
        self.handle = Some(running.handle);
    }

    /// Password checks and hashes the running server has computed since it started.
    /// The configuration this server runs with.
    pub fn server_config(&self) -> &Config {
        &self.config
    }

    pub fn password_hashes(&self) -> u64 {
        self.hashes.count()
    }

    /// Begins a graceful shutdown and waits for the server to finish.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(WAIT, handle)
                .await
                .expect("server stops in time")
                .expect("server task")
                .expect("server ran cleanly");
        }
    }

    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }
}

impl Remote {
    /// The base URL a client is given: `https://localhost:PORT` with TLS (the
    /// name the generated certificate is for), else `http://ADDR`.
    pub fn url(&self) -> String {
        match self.tls_cert {
            Some(_) => format!("https://localhost:{}", self.addr.port()),
            None => format!("http://{}", self.addr),
        }
    }

    pub fn http_origin(&self) -> String {
        let scheme = if self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// Opens a transport to the server: TCP, or TLS trusting the generated cert.
    pub async fn connect(&self) -> Stream {
        let tcp = TcpStream::connect(self.addr).await.expect("tcp connect");
        self.over(tcp).await
    }

    /// A connection from the loopback address `source` (any of 127.0.0.0/8
    /// on Linux), so that a test can be several clients' addresses at once.
    pub async fn connect_from(&self, source: std::net::IpAddr) -> Stream {
        let tcp = self.tcp_from(source).await;
        self.over(tcp).await
    }

    /// The plain TCP connection of [`Self::connect_from`], without TLS.
    pub async fn tcp_from(&self, source: std::net::IpAddr) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(std::net::SocketAddr::new(source, 0))
            .unwrap_or_else(|e| panic!("bind {source}: {e}"));
        socket.connect(self.addr).await.expect("tcp connect")
    }

    async fn over(&self, tcp: TcpStream) -> Stream {
        match &self.tls_cert {
            None => Box::new(tcp),
            Some(cert) => Box::new(tls_connect(tcp, cert).await),
        }
    }

    /// One HTTP/1.1 request; returns status, headers and body text.
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, HeaderMap, String) {
        self.http_over(self.connect().await, method, path, headers, body)
            .await
    }

    /// [`Self::http`] from the loopback address `source`.
    pub async fn http_from(
        &self,
        source: std::net::IpAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, HeaderMap, String) {
        self.http_over(self.connect_from(source).await, method, path, headers, body)
            .await
    }

    /// [`Self::http`] through a proxy at the loopback address `proxy` that
    /// speaks the PROXY protocol (version 1) for the client at `client`.
    pub async fn http_via_proxy(
        &self,
        proxy: std::net::IpAddr,
        client: std::net::SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, HeaderMap, String) {
        use tokio::io::AsyncWriteExt;
        let mut tcp = self.tcp_from(proxy).await;
        let family = if client.is_ipv4() { "TCP4" } else { "TCP6" };
        let header = format!(
            "PROXY {family} {} {} {} {}\r\n",
            client.ip(),
            self.addr.ip(),
            client.port(),
            self.addr.port()
        );
        tcp.write_all(header.as_bytes())
            .await
            .expect("PROXY header");
        let stream = self.over(tcp).await;
        self.http_over(stream, method, path, headers, body).await
    }

    async fn http_over(
        &self,
        stream: Stream,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, HeaderMap, String) {
        let io = TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("http handshake");
        tokio::spawn(conn);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("request");
        let response = tokio::time::timeout(WAIT, sender.send_request(request))
            .await
            .expect("response in time")
            .expect("response");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    /// `GET /readyz`: its status and JSON body.
    pub async fn readyz(&self) -> (StatusCode, serde_json::Value) {
        let (status, _, text) = self.http("GET", "/readyz", &[], "").await;
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("/readyz answered {status} with non-JSON {text:?}: {e}"));
        (status, json)
    }

    /// Polls `/readyz` until it answers `status`; returns that answer's body.
    /// Readiness follows the engines within their checks' timeouts.
    pub async fn readyz_becomes(&self, status: u16) -> serde_json::Value {
        let reached = tokio::time::timeout(WAIT * 2, async {
            loop {
                let (got, body) = self.readyz().await;
                if got == status {
                    return body;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        reached.unwrap_or_else(|_| panic!("/readyz never answered {status}"))
    }

    /// The reason `/readyz` gives for the failing check `check`, if it fails.
    pub fn readyz_reason(body: &serde_json::Value, check: &str) -> Option<String> {
        body["failing"]
            .as_array()?
            .iter()
            .find(|f| f["check"] == check)
            .and_then(|f| f["reason"].as_str())
            .map(str::to_owned)
    }

    pub async fn post_json(&self, path: &str, body: &str) -> (StatusCode, serde_json::Value) {
        let (status, _, text) = self
            .http("POST", path, &[("content-type", "application/json")], body)
            .await;
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path} answered {status} with non-JSON {text:?}: {e}"));
        (status, json)
    }

    pub async fn register(&self, user: &str) {
        let body = serde_json::json!({ "username": user, "password": PASSWORD }).to_string();
        let (status, json) = self.post_json("/api/register", &body).await;
        assert_eq!(status, StatusCode::CREATED, "register {user}: {json}");
    }

    pub async fn login(&self, user: &str) -> String {
        self.login_response(user).await.ticket
    }

    /// Logs in; returns the whole answer, session included.
    pub async fn login_response(&self, user: &str) -> LoginResponse {
        let body = serde_json::json!({ "username": user, "password": PASSWORD }).to_string();
        let (status, json) = self.post_json("/api/login", &body).await;
        assert_eq!(status, StatusCode::OK, "login {user}: {json}");
        serde_json::from_value(json).expect("login body")
    }

    /// `POST` to `path` with `Authorization: Bearer <session>` and no body.
    pub async fn post_bearer(&self, path: &str, session: &str) -> (StatusCode, HeaderMap, String) {
        let auth = format!("Bearer {session}");
        self.http("POST", path, &[("authorization", &auth)], "")
            .await
    }

    /// Mints a socket ticket with a session; fails the test unless it works.
    pub async fn ticket(&self, session: &str) -> TicketResponse {
        let (status, _, body) = self.post_bearer("/api/ticket", session).await;
        assert_eq!(status, StatusCode::OK, "POST /api/ticket: {body}");
        serde_json::from_str(&body).expect("ticket body")
    }

    /// Tries the WebSocket upgrade; `Err` carries the HTTP status of a refusal.
    pub async fn ws(&self, ticket: Option<&str>, origin: Option<&str>) -> Result<Ws, StatusCode> {
        let scheme = if self.tls_cert.is_some() { "wss" } else { "ws" };
        let url = match ticket {
            Some(t) => format!("{scheme}://{}/ws?ticket={t}", self.addr),
            None => format!("{scheme}://{}/ws", self.addr),
        };
        let mut request = url.into_client_request().expect("request");
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", origin.parse().expect("header"));
        }
        let stream = self.connect().await;
        match tokio_tungstenite::client_async(request, stream).await {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::Error::Http(response)) => Err(response.status()),
            Err(e) => panic!("unexpected handshake error: {e}"),
        }
    }

    /// Registers (if new), logs in and connects `user`, consuming `welcome`.
    pub async fn client(&self, user: &str) -> Client {
        self.register(user).await;
        self.client_for(user).await
    }

    /// Logs in and connects an already registered user.
    pub async fn client_for(&self, user: &str) -> Client {
        let ticket = self.login(user).await;
        self.client_with(user, &ticket).await
    }

    /// Connects with `ticket`, consuming `welcome`, which must name `user`.
    pub async fn client_with(&self, user: &str, ticket: &str) -> Client {
        let ws = self.ws(Some(ticket), None).await.expect("upgrade");
        let mut client = Client {
            ws,
            user: user.to_owned(),
        };
        match client.next().await {
            ServerEvent::Welcome {
                protocol_version,
                user: who,
                ..
            } => {
                assert_eq!(protocol_version, chat_protocol::PROTOCOL_VERSION);
                assert_eq!(who, user);
            }
            other => panic!("expected welcome first, got {other:?}"),
        }
        client
    }
}

/// A server started by [`run`].
struct Running {
    addr: SocketAddr,
    metrics: Option<SocketAddr>,
    hashes: PasswordHashes,
    shutdown: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
}

async fn run(config: &Config, clock: &ManualClock) -> Running {
    let server = Server::bind_with_clock(config.clone(), Arc::new(clock.clone()))
        .await
        .expect("server binds");
    Running {
        addr: server.local_addr().expect("addr"),
        metrics: server.metrics_addr(),
        hashes: server.password_hashes(),
        shutdown: server.shutdown_token(),
        handle: tokio::spawn(server.run()),
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn tls_connect(tcp: TcpStream, cert: &PathBuf) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cert).expect("cert file") {
        roots.add(cert.expect("cert")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").expect("name");
    connector.connect(name, tcp).await.expect("tls handshake")
}

/// A connected chat client.
pub struct Client {
    pub ws: Ws,
    pub user: String,
}

impl Client {
    pub async fn send(&mut self, event: ClientEvent) {
        self.send_raw(&event.to_json()).await;
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.send_ws(Message::text(text)).await;
    }

    pub async fn send_ws(&mut self, message: Message) {
        self.ws.send(message).await.expect("send frame");
    }

    /// The next WebSocket message other than ping/pong.
    pub async fn next_message(&mut self) -> Message {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{}: nothing received in {WAIT:?}", self.user))
                .unwrap_or_else(|| panic!("{}: connection ended", self.user))
                .unwrap_or_else(|e| panic!("{}: read error {e}", self.user));
            if !matches!(msg, Message::Ping(_) | Message::Pong(_)) {
                return msg;
            }
        }
    }

    /// The next event other than an `ack` (most tests look at the room
    /// stream; the acks have tests of their own).
    pub async fn next(&mut self) -> ServerEvent {
        loop {
            let event = self.next_with_acks().await;
            if !matches!(event, ServerEvent::Ack { .. }) {
                return event;
            }
        }
    }

    /// The next event, acks included; fails on anything else.
    pub async fn next_with_acks(&mut self) -> ServerEvent {
        match self.next_message().await {
            Message::Text(text) => serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("undecodable event {text}: {e}")),
            other => panic!("{}: expected an event, got {other:?}", self.user),
        }
    }

    /// Skips events until one matches.
    pub async fn wait_for(&mut self, what: impl Fn(&ServerEvent) -> bool) -> ServerEvent {
        loop {
            let event = self.next().await;
            if what(&event) {
                return event;
            }
        }
    }

    /// One page of the room directory: sends `list_rooms` and returns the
    /// `room_list`'s rooms and `next`, skipping notices of other members.
    pub async fn list_rooms(
        &mut self,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> (Vec<chat_protocol::RoomInfo>, Option<String>) {
        self.send(ClientEvent::ListRooms {
            after: after.map(Into::into),
            limit,
        })
        .await;
        loop {
            match self.next().await {
                ServerEvent::RoomList { rooms, next } => return (rooms, next),
                ServerEvent::MemberJoined { .. } | ServerEvent::MemberLeft { .. } => {}
                other => panic!("{}: expected room_list, got {other:?}", self.user),
            }
        }
    }

    /// Pages back through `room`'s history (`history` requests from the
    /// oldest message held) until its first stored message, and returns
    /// `held` with everything older before it: how a client gets a whole
    /// room, since a `joined` or a page holds only what fits one frame.
    pub async fn page_back(
        &mut self,
        room: &str,
        mut held: Vec<chat_protocol::ChatMessage>,
    ) -> Vec<chat_protocol::ChatMessage> {
        loop {
            self.send(ClientEvent::History {
                room: room.into(),
                before: held.first().map(|m| m.seq),
                limit: Some(200),
            })
            .await;
            let (messages, first_seq) = match self.next().await {
                ServerEvent::HistoryPage {
                    messages,
                    first_seq,
                    ..
                } => (messages, first_seq),
                other => panic!("{}: expected history_page, got {other:?}", self.user),
            };
            let done = messages.is_empty() || messages.first().map(|m| m.seq) == first_seq;
            held.splice(0..0, messages);
            if done {
                return held;
            }
        }
    }

    pub async fn join(&mut self, room: &str) -> Vec<String> {
        self.send(ClientEvent::JoinRoom {
            room: room.into(),
            since: None,
            epoch: None,
        })
        .await;
        match self.next().await {
            ServerEvent::Joined {
                room: r, members, ..
            } if r == room => members,
            other => panic!("{}: expected joined {room}, got {other:?}", self.user),
        }
    }

    pub async fn say(&mut self, room: &str, text: &str) {
        self.send(ClientEvent::SendMessage {
            room: room.into(),
            text: text.into(),
            client_id: None,
        })
        .await;
    }

    /// Sends a plain `join_room` and returns its `joined`.
    pub async fn send_wait_joined(&mut self, room: &str) -> ServerEvent {
        self.send(ClientEvent::JoinRoom {
            room: room.into(),
            since: None,
            epoch: None,
        })
        .await;
        self.wait_for(|e| matches!(e, ServerEvent::Joined { room: r, .. } if r == room))
            .await
    }

    /// Sends a message with `client_id` and waits for its ack; returns its seq.
    pub async fn send_acked(&mut self, room: &str, text: &str, client_id: &str) -> u64 {
        self.send(ClientEvent::SendMessage {
            room: room.into(),
            text: text.into(),
            client_id: Some(client_id.into()),
        })
        .await;
        loop {
            match self.next_with_acks().await {
                ServerEvent::Ack {
                    seq,
                    client_id: Some(id),
                    ..
                } if id == client_id => return seq,
                ServerEvent::Error { code, message, .. } => {
                    panic!("{}: sending {client_id}: {code:?} {message}", self.user)
                }
                _ => {}
            }
        }
    }

    /// Reads until the server's Close frame and returns it.
    pub async fn expect_close(&mut self) -> CloseFrame {
        loop {
            match self.next_message().await {
                Message::Close(Some(frame)) => return frame,
                Message::Close(None) => panic!("{}: close frame without a code", self.user),
                _ => {}
            }
        }
    }

    /// Completes the close handshake from the client side.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        let _ = tokio::time::timeout(WAIT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}

/// Shorthand for a `new_message` check.
/// The loopback address 127.0.0.`last`: on Linux any of 127.0.0.0/8 is a
/// local address, so a test can be clients of many addresses at once.
pub fn loopback(last: u8) -> std::net::IpAddr {
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, last))
}

pub fn is_message(event: &ServerEvent, from: &str, room: &str, text: &str) -> bool {
    matches!(event, ServerEvent::NewMessage(m) if m.from == from && m.room == room && m.text == text)
}
