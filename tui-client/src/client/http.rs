//! The HTTP endpoints before the socket: login and registration.

use std::time::Duration;

use chat_protocol::http::{Credentials, HttpError, LoginResponse};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

use crate::client::transport::open;
use crate::client::{ClientConfig, ClientError};

/// Logs in and returns a one-time socket ticket.
pub async fn login(config: &ClientConfig) -> Result<String, ClientError> {
    let (status, retry_after, body) = post_credentials(config, "/api/login").await?;
    match status {
        StatusCode::OK => serde_json::from_slice::<LoginResponse>(&body)
            .map(|login| login.ticket)
            .map_err(|e| ClientError::Protocol(format!("unexpected login answer: {e}"))),
        StatusCode::UNAUTHORIZED => Err(ClientError::Auth(error_message(&body))),
        StatusCode::TOO_MANY_REQUESTS => Err(ClientError::Throttled(
            retry_after.unwrap_or(Duration::from_secs(60)),
        )),
        other => Err(ClientError::Protocol(format!(
            "login answered {other}: {}",
            error_message(&body)
        ))),
    }
}

/// Creates an account (where the server allows registration).
pub async fn register(config: &ClientConfig) -> Result<(), ClientError> {
    let (status, _, body) = post_credentials(config, "/api/register").await?;
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

async fn post_credentials(
    config: &ClientConfig,
    path: &str,
) -> Result<(StatusCode, Option<Duration>, Bytes), ClientError> {
    let body = serde_json::to_vec(&Credentials {
        username: config.user.clone(),
        password: config.password.clone(),
    })
    .map_err(|e| ClientError::Local(e.to_string()))?;
    let stream = open(&config.server, &config.tls).await?;
    let unreachable = |e: hyper::Error| ClientError::Unreachable(e.to_string());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(unreachable)?;
    tokio::spawn(conn);
    let request = Request::post(path)
        .header(hyper::header::HOST, config.server.authority())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| ClientError::Local(e.to_string()))?;
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
