//! One authenticated WebSocket connection with typed events.

use std::time::Duration;

use chat_protocol::{ClientEvent, Limits, ServerEvent, ServerFrame, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use crate::client::transport::{open, Stream};
use crate::client::{login, ClientConfig, ClientError};

/// Close code a library reports when a connection ends without a Close frame.
const ABNORMAL_CLOSURE: u16 = 1006;

/// An open connection, past the `welcome` check.
pub struct Connection {
    ws: WebSocketStream<Stream>,
    user: String,
    limits: Limits,
    /// Silence longer than this (not even a ping) means the server is gone.
    idle_limit: Duration,
}

/// Logs in with the password, opens the socket with the ticket, and checks
/// the protocol version. For one connection; a client that reconnects uses an
/// [`crate::client::Authenticator`], which needs the password only once.
pub async fn connect(config: &ClientConfig) -> Result<Connection, ClientError> {
    let ticket = login(config).await?;
    open_with_ticket(config, &ticket).await
}

/// Opens the socket with a one-time ticket and checks the protocol version.
pub(crate) async fn open_with_ticket(
    config: &ClientConfig,
    ticket: &str,
) -> Result<Connection, ClientError> {
    let stream = open(&config.server, &config.tls).await?;
    let (ws, _) = tokio_tungstenite::client_async(config.server.ws_url(ticket), stream)
        .await
        .map_err(|e| match e {
            tungstenite::Error::Http(response) => match response.status().as_u16() {
                401 => ClientError::Auth("the server refused the login ticket".into()),
                status => ClientError::Protocol(format!("WebSocket upgrade refused with {status}")),
            },
            other => ClientError::Unreachable(format!("WebSocket handshake failed: {other}")),
        })?;
    let mut conn = Connection {
        ws,
        user: String::new(),
        limits: Limits {
            max_message_bytes: 0,
            max_rooms: 0,
            messages_per_second: 0.0,
            message_burst: 0,
            ping_interval_ms: 0,
            pong_timeout_ms: 0,
        },
        idle_limit: Duration::from_secs(60),
    };
    match conn.next_event().await? {
        ServerEvent::Welcome {
            protocol_version,
            user,
            limits,
            ..
        } => {
            if protocol_version != PROTOCOL_VERSION {
                let _ = conn.ws.close(None).await;
                return Err(ClientError::Protocol(format!(
                    "the server speaks protocol version {protocol_version}, this client {PROTOCOL_VERSION}; upgrade the client"
                )));
            }
            conn.user = user;
            let silence = limits
                .ping_interval_ms
                .saturating_add(limits.pong_timeout_ms);
            // Some slack over the server's own heartbeat timing.
            conn.idle_limit = Duration::from_millis(silence).mul_f64(1.5) + Duration::from_secs(1);
            conn.limits = limits;
            Ok(conn)
        }
        other => Err(ClientError::Protocol(format!(
            "expected welcome as the first event, got {other:?}"
        ))),
    }
}

impl Connection {
    /// The user name the server knows this connection as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The limits announced in `welcome`.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Sends one event.
    pub async fn send(&mut self, event: &ClientEvent) -> Result<(), ClientError> {
        self.send_text(event.to_json()).await
    }

    /// Sends one request with a `ref`, which the server puts on its answer.
    pub async fn send_with_ref(
        &mut self,
        event: &ClientEvent,
        reference: &str,
    ) -> Result<(), ClientError> {
        self.send_text(event.to_json_with_ref(reference)).await
    }

    async fn send_text(&mut self, text: String) -> Result<(), ClientError> {
        self.ws
            .send(Message::text(text))
            .await
            .map_err(|e| ClientError::Closed {
                code: ABNORMAL_CLOSURE,
                reason: e.to_string(),
            })
    }

    /// The next event. Events of types this client does not know are skipped,
    /// as the protocol asks.
    pub async fn next_event(&mut self) -> Result<ServerEvent, ClientError> {
        Ok(self.next_frame().await?.event)
    }

    /// The next event with the `ref` of the request it answers, if any.
    pub async fn next_frame(&mut self) -> Result<ServerFrame, ClientError> {
        loop {
            let next = tokio::time::timeout(self.idle_limit, self.ws.next())
                .await
                .map_err(|_| ClientError::Closed {
                    code: ABNORMAL_CLOSURE,
                    reason: "the server went silent".into(),
                })?;
            match next {
                Some(Ok(Message::Text(text))) => {
                    if let Ok(frame) = ServerFrame::decode(&text) {
                        return Ok(frame);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    // Let the library answer the close handshake before giving up.
                    let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.next()).await;
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    return Err(ClientError::Closed { code, reason });
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    return Err(ClientError::Closed {
                        code: ABNORMAL_CLOSURE,
                        reason: e.to_string(),
                    })
                }
                None => {
                    return Err(ClientError::Closed {
                        code: ABNORMAL_CLOSURE,
                        reason: "connection dropped".into(),
                    })
                }
            }
        }
    }

    /// Closes with 1000 and waits briefly for the server's answer.
    pub async fn close(mut self) {
        if self.ws.close(None).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Some(Ok(_)) = self.ws.next().await {}
            })
            .await;
        }
    }
}
