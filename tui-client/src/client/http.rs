//! The HTTP endpoints before the socket: login, registration, and the
//! session's tickets and logout.

use std::time::Duration;

use chat_protocol::http::{Credentials, HttpError, LoginResponse, TicketResponse};
use chat_protocol::ErrorCode;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

use crate::client::transport::open;
use crate::client::{ClientConfig, ClientError};

/// What a password login gives.
pub(crate) struct Login {
    /// A one-time socket ticket.
    pub(crate) ticket: String,
    /// The session token, which gets further tickets without the password.
    pub(crate) session: String,
}

/// What `POST /api/ticket` answered, when it answered as the protocol says.
pub(crate) enum SessionTicket {
    /// A one-time socket ticket.
    Ticket(String),
    /// 401 `invalid_session`: the session ended (expired, logged out, pushed
    /// out by newer ones); only the password gets a new one.
    Ended,
}

/// Logs in and returns a one-time socket ticket (the session it also starts
/// is not kept; [`crate::client::Authenticator`] keeps it).
pub async fn login(config: &ClientConfig) -> Result<String, ClientError> {
    Ok(login_session(config).await?.ticket)
}

/// Logs in with the password: a ticket and a session.
pub(crate) async fn login_session(config: &ClientConfig) -> Result<Login, ClientError> {
    let (status, retry_after, body) = post(config, "/api/login", Body::Credentials).await?;
    match status {
        StatusCode::OK => serde_json::from_slice::<LoginResponse>(&body)
            .map(|login| Login {
                ticket: login.ticket,
                session: login.session,
            })
            .map_err(|e| ClientError::Protocol(format!("unexpected login answer: {e}"))),
        // 403: the password is right but the account is disabled (`account_disabled`).
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            Err(ClientError::Auth(error_message(&body)))
        }
        StatusCode::TOO_MANY_REQUESTS => Err(ClientError::Throttled(
            retry_after.unwrap_or(Duration::from_secs(60)),
        )),
        StatusCode::SERVICE_UNAVAILABLE => Err(ClientError::Busy(
            retry_after.unwrap_or(Duration::from_secs(1)),
        )),
        other => Err(ClientError::Protocol(format!(
            "login answered {other}: {}",
            error_message(&body)
        ))),
    }
}

/// Gets a socket ticket with a session, without the password.
pub(crate) async fn session_ticket(
    config: &ClientConfig,
    session: &str,
) -> Result<SessionTicket, ClientError> {
    let (status, _, body) = post(config, "/api/ticket", Body::Bearer(session)).await?;
    match status {
        StatusCode::OK => serde_json::from_slice::<TicketResponse>(&body)
            .map(|answer| SessionTicket::Ticket(answer.ticket))
            .map_err(|e| ClientError::Protocol(format!("unexpected ticket answer: {e}"))),
        StatusCode::UNAUTHORIZED if error_code(&body) == Some(ErrorCode::InvalidSession) => {
            Ok(SessionTicket::Ended)
        }
        other => Err(ClientError::Protocol(format!(
            "POST /api/ticket answered {other}: {}",
            error_message(&body)
        ))),
    }
}

/// Ends a session. A 401 means it had ended already, which is as good.
pub(crate) async fn logout(config: &ClientConfig, session: &str) -> Result<(), ClientError> {
    let (status, _, body) = post(config, "/api/logout", Body::Bearer(session)).await?;
    match status {
        StatusCode::NO_CONTENT | StatusCode::UNAUTHORIZED => Ok(()),
        other => Err(ClientError::Protocol(format!(
            "logout answered {other}: {}",
            error_message(&body)
        ))),
    }
}

/// Creates an account (where the server allows registration).
pub async fn register(config: &ClientConfig) -> Result<(), ClientError> {
    let (status, _, body) = post(config, "/api/register", Body::Credentials).await?;
    match status {
        StatusCode::CREATED => Ok(()),
        StatusCode::BAD_REQUEST | StatusCode::FORBIDDEN | StatusCode::CONFLICT => {
            Err(ClientError::Auth(error_message(&body)))
        }
        other => Err(ClientError::Protocol(format!(
            "register answered {other}: {}",
            error_message(&body)
        ))),
    }
}

fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<HttpError>(body)
        .map(|e| e.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned())
}

fn error_code(body: &[u8]) -> Option<ErrorCode> {
    serde_json::from_slice::<HttpError>(body)
        .ok()
        .map(|e| e.code)
}

/// What a request sends.
enum Body<'a> {
    /// The configured user name and password, as JSON.
    Credentials,
    /// No body; `Authorization: Bearer <session>`.
    Bearer(&'a str),
}

async fn post(
    config: &ClientConfig,
    path: &str,
    body: Body<'_>,
) -> Result<(StatusCode, Option<Duration>, Bytes), ClientError> {
    let request = Request::post(path).header(hyper::header::HOST, config.server.authority());
    let request = match body {
        Body::Credentials => {
            let json = serde_json::to_vec(&Credentials {
                username: config.user.clone(),
                password: config.password.clone(),
                invite: None,
            })
            .map_err(|e| ClientError::Local(e.to_string()))?;
            request
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(json)))
        }
        Body::Bearer(session) => request
            .header(hyper::header::AUTHORIZATION, format!("Bearer {session}"))
            .body(Full::new(Bytes::new())),
    }
    .map_err(|e| ClientError::Local(e.to_string()))?;
    let stream = open(&config.server, &config.tls).await?;
    let unreachable = |e: hyper::Error| ClientError::Unreachable(e.to_string());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(unreachable)?;
    tokio::spawn(conn);
    let response = sender.send_request(request).await.map_err(unreachable)?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(hyper::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .map(Duration::from_secs);
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(unreachable)?
        .to_bytes();
    Ok((status, retry_after, body))
}
