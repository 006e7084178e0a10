//! A keep-alive HTTP/1.1 client for chat-server's login and ticket
//! endpoints: one connection per worker, reused for every request.

use anyhow::{bail, Context as _};
use chat_protocol::http::{HttpError, LoginResponse, TicketResponse};
use chat_protocol::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::wire::{Io, Target};

/// A status and a body.
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The body (the endpoints all answer JSON).
    pub body: Vec<u8>,
}

/// One persistent HTTP connection.
pub struct HttpConn {
    io: Io,
    host: String,
    buf: Vec<u8>,
}

impl HttpConn {
    /// Opens a connection (TLS if `target` asks for it).
    pub async fn connect(target: &Target, host: &str) -> anyhow::Result<Self> {
        Ok(Self {
            io: Io::connect(target).await?,
            host: host.to_owned(),
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends a POST with an optional bearer token and JSON body.
    pub async fn post(
        &mut self,
        path: &str,
        bearer: Option<&str>,
        json: &str,
    ) -> anyhow::Result<Response> {
        let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{json}",
            self.host,
            json.len()
        );
        self.io.write_all(request.as_bytes()).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> anyhow::Result<Response> {
        let mut chunk = [0u8; 4096];
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 24];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) = response.parse(&self.buf)? {
                let status = response.code.context("no status")?;
                let length: usize = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if self.buf.len() >= head + length {
                    let body = self.buf[head..head + length].to_vec();
                    self.buf.drain(..head + length);
                    return Ok(Response { status, body });
                }
            }
            let n = self.io.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection closed before the response ended");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Logs in as `user`, registering it first if needed, and returns a session
/// token that mints tickets without checking the password again.
pub async fn session_for(
    conn: &mut HttpConn,
    user: &str,
    password: &str,
) -> anyhow::Result<String> {
    let body = credentials(user, password);
    let registered = conn.post("/api/register", None, &body).await?;
    if registered.status != 201 && registered.status != 409 {
        bail!(
            "registering {user}: {} {}",
            registered.status,
            String::from_utf8_lossy(&registered.body)
        );
    }
    Ok(login(conn, user, password).await?.session)
}

fn credentials(user: &str, password: &str) -> String {
    serde_json::json!({"username": user, "password": password}).to_string()
}

/// Logs in with the password (one password hash on the server): a ticket
/// and a new session.
pub async fn login(
    conn: &mut HttpConn,
    user: &str,
    password: &str,
) -> anyhow::Result<LoginResponse> {
    let answer = conn
        .post("/api/login", None, &credentials(user, password))
        .await?;
    answer.json(&format!("login as {user}"))
}

/// What `POST /api/ticket` answered.
#[derive(Debug, PartialEq, Eq)]
pub enum TicketAnswer {
    /// A fresh one-time ticket.
    Ticket(String),
    /// 401 `invalid_session`: the session is gone (expired, logged out, or
    /// lost in a restart); only a password login helps.
    SessionRefused,
}

/// Asks for a one-time socket ticket with a session.
pub async fn ticket_answer(conn: &mut HttpConn, session: &str) -> anyhow::Result<TicketAnswer> {
    let answer = conn.post("/api/ticket", Some(session), "").await?;
    if answer.status == 401 {
        let refusal: Option<HttpError> = serde_json::from_slice(&answer.body).ok();
        if refusal.is_some_and(|r| r.code == ErrorCode::InvalidSession) {
            return Ok(TicketAnswer::SessionRefused);
        }
    }
    let minted: TicketResponse = answer.json("ticket")?;
    Ok(TicketAnswer::Ticket(minted.ticket))
}

/// Mints a one-time socket ticket from a session, which must be live.
pub async fn ticket(conn: &mut HttpConn, session: &str) -> anyhow::Result<String> {
    match ticket_answer(conn, session).await? {
        TicketAnswer::Ticket(ticket) => Ok(ticket),
        TicketAnswer::SessionRefused => bail!("ticket: the session was refused"),
    }
}

impl Response {
    /// The body of a 200 answer as `T`; any other answer is an error
    /// naming `what` was asked.
    fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> anyhow::Result<T> {
        if self.status != 200 {
            bail!(
                "{what}: {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            );
        }
        serde_json::from_slice(&self.body).with_context(|| format!("{what}: unexpected answer"))
    }
}
