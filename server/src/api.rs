//! HTTP routes: login, sessions (tickets, logout), registration, health, and
//! the authenticated upgrade to a WebSocket. Everything here happens before a
//! socket exists.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chat_protocol::http::{
    Credentials, HttpError, LoginResponse, RegisterResponse, TicketResponse,
};
use chat_protocol::ErrorCode;
use chat_rooms::CloseReason;
use serde::Deserialize;

use crate::admission::Admitted;
use crate::auth::{retry_secs, AuthError, Redeemed, SessionError, TicketError};
use crate::metrics::LoginOutcome;
use crate::state::AppState;
use crate::{connection, origin, web};

/// Largest accepted request body; credentials are far smaller.
const MAX_BODY: usize = 16 * 1024;

/// Bytes a socket reads at a time. tungstenite's default, 128 KiB, is zeroed
/// and so resident for every connection, idle or not: 2.5 GiB at 19,000
/// connections. Client frames are small chat events (a `send_message` of a
/// few hundred characters fits); a larger frame makes the buffer grow to fit
/// it. 512 instead of 1 KiB took 0.5 KiB off each idle connection (bench idle
/// scenario, 10,000 connections).
const READ_BUFFER: usize = 512;

/// The HTTP routes of the server, and the browser client's files.
pub(crate) fn router(app: Arc<AppState>) -> Router {
    let deadline = || from_fn_with_state(app.clone(), body_within_deadline);
    Router::new()
        .merge(web::routes())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/login", post(login).layer(deadline()))
        .route("/api/register", post(register).layer(deadline()))
        // These two read no body (one that is sent is ignored), so they wait
        // for none.
        .route("/api/ticket", post(ticket))
        .route("/api/logout", post(logout))
        .route("/ws", get(websocket))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

/// An HTTP error answer with the JSON body of [`HttpError`].
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    body: HttpError,
    retry_after: Option<Duration>,
    /// Adds `WWW-Authenticate: Bearer`, which HTTP requires on a 401 that
    /// asks for a bearer token (RFC 9110, section 11.6.1).
    bearer_challenge: bool,
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: HttpError {
                code,
                message: message.into(),
            },
            retry_after: None,
            bearer_challenge: false,
        }
    }

    /// 401 `invalid_session`, for a session token that is missing or refused.
    fn invalid_session(message: impl Into<String>) -> Self {
        Self {
            bearer_challenge: true,
            ..Self::new(StatusCode::UNAUTHORIZED, ErrorCode::InvalidSession, message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(wait) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_secs(wait).into());
        }
        if self.bearer_challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let message = e.to_string();
        match e {
            AuthError::InvalidCredentials => Self::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::InvalidCredentials,
                message,
            ),
            AuthError::TooManyAttempts(wait) => Self {
                retry_after: Some(wait),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::TooManyAttempts,
                    message,
                )
            },
            AuthError::TooManyRegistrations(wait) => Self {
                retry_after: Some(wait),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::TooManyRegistrations,
                    message,
                )
            },
            AuthError::Busy(wait) => Self {
                retry_after: Some(wait),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::ServerBusy,
                    message,
                )
            },
            AuthError::InvalidRequest(_) => {
                Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
            }
            AuthError::UsernameTaken => {
                Self::new(StatusCode::CONFLICT, ErrorCode::UsernameTaken, message)
            }
            AuthError::AccountDisabled => {
                Self::new(StatusCode::FORBIDDEN, ErrorCode::AccountDisabled, message)
            }
            AuthError::InvalidInvite(_) => {
                Self::new(StatusCode::FORBIDDEN, ErrorCode::InvalidInvite, message)
            }
            AuthError::Internal(_) => {
                tracing::error!(error = %message, "authentication failed internally");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    "internal error",
                )
            }
        }
    }
}

/// Reads a request's whole body, within `--request-timeout`, before its
/// handler runs. hyper times out only the head: a client that sends its body
/// a byte at a time would hold a connection and a task as long as it liked.
/// Past the deadline: 408. Larger than [`MAX_BODY`]: 413, as the extractors'
/// own limit answers.
async fn body_within_deadline(
    State(app): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let read = axum::body::to_bytes(body, MAX_BODY);
    match tokio::time::timeout(app.config.request_timeout, read).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(_)) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::InvalidRequest,
            format!("the request body is larger than {MAX_BODY} bytes, or broken off"),
        )
        .into_response(),
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::InvalidRequest,
            format!(
                "the request body did not arrive within {} s",
                app.config.request_timeout.as_secs_f64()
            ),
        )
        .into_response(),
    }
}

fn credentials(body: Result<Json<Credentials>, JsonRejection>) -> Result<Credentials, ApiError> {
    // 413 (too large) and 415 (not declared as JSON) keep their status; any
    // malformed body, syntax (400) or shape (axum's 422) alike, is a 400.
    body.map(|Json(c)| c).map_err(|e| {
        let status = match e.status() {
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            other => other,
        };
        ApiError::new(
            status,
            ErrorCode::InvalidRequest,
            format!(
                "expected a JSON body {{\"username\": ..., \"password\": ...}}: {}",
                e.body_text()
            ),
        )
    })
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::InvalidRequest,
        "no such endpoint",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::InvalidRequest,
        "method not allowed here; see the Allow header",
    )
}

/// Liveness: the process serves HTTP. Says nothing of the engines.
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: 200 when every engine answers, else 503 naming the failing ones.
async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    let report = app.readiness.report().await;
    let status = if report.failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

async fn login(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<Credentials>, JsonRejection>,
) -> Result<Json<LoginResponse>, ApiError> {
    let creds = credentials(body)?;
    let result = app
        .auth
        .login(&creds.username, creds.password, peer.ip())
        .await;
    match &result {
        Ok(login) => tracing::info!(user = %login.user, %peer, "login"),
        Err(e) => tracing::info!(user = %creds.username, %peer, error = %e, "login refused"),
    }
    let outcome = match &result {
        Ok(_) => Some(LoginOutcome::Ok),
        Err(AuthError::InvalidCredentials) => Some(LoginOutcome::BadCredentials),
        Err(AuthError::TooManyAttempts(_)) => Some(LoginOutcome::Throttled),
        Err(AuthError::Busy(_)) => Some(LoginOutcome::Busy),
        Err(AuthError::AccountDisabled) => Some(LoginOutcome::Disabled),
        Err(AuthError::Internal(_)) => Some(LoginOutcome::Error),
        // Malformed requests never reached a password check.
        Err(
            AuthError::InvalidRequest(_)
            | AuthError::UsernameTaken
            | AuthError::InvalidInvite(_)
            | AuthError::TooManyRegistrations(_),
        ) => None,
    };
    if let Some(outcome) = outcome {
        app.metrics.login(outcome);
    }
    let login = result?;
    Ok(Json(LoginResponse {
        ticket: login.ticket,
        expires_in: whole_secs(login.ttl),
        session: login.session,
        session_expires_in: whole_secs(login.session_ttl),
    }))
}

/// A lifetime as the `expires_in` fields give it: whole seconds, at least 1.
fn whole_secs(ttl: Duration) -> u64 {
    ttl.as_secs().max(1)
}

/// The token of an `Authorization: Bearer <token>` header (RFC 6750), or why
/// there is none. The scheme's letter case does not matter (RFC 9110).
fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::invalid_session(
            "missing session: send Authorization: Bearer <session> as given by POST /api/login",
        ));
    };
    value
        .to_str()
        .ok()
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim_start_matches(' '))
        .filter(|token| !token.is_empty() && !token.contains(' '))
        .ok_or_else(|| {
            ApiError::invalid_session("malformed Authorization header: expected Bearer <session>")
        })
}

/// The refusal of a session token that is well-formed but not usable.
/// A store failure is the server's problem, not the token's: a 500.
fn session_refused(e: SessionError) -> ApiError {
    ApiError::invalid_session(match e {
        SessionError::Unknown => "session unknown or ended; log in again",
        SessionError::Expired => "session expired; log in again",
        SessionError::Backend(e) => return internal(&e),
    })
}

/// 500 `internal`, logging the cause, which the client does not see.
fn internal(e: &dyn std::error::Error) -> ApiError {
    tracing::error!(error = %e, "authentication store failed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Internal,
        "internal error",
    )
}

/// `POST /api/ticket`: a socket ticket for a session, without the password.
/// A SHA-256 and a map lookup: no password hashing, no blocking pool, no disk
/// and no login throttle. The body, if any, is ignored.
async fn ticket(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Json<TicketResponse>, ApiError> {
    let session = bearer_token(&headers)?;
    match app.auth.ticket_for_session(session).await {
        Ok(minted) => {
            app.metrics.session_ticket();
            // Debug, not info: clients may ask for one on every reconnect.
            tracing::debug!(user = %minted.user, %peer, "ticket issued for a session");
            Ok(Json(TicketResponse {
                ticket: minted.ticket,
                expires_in: whole_secs(minted.ttl),
            }))
        }
        Err(e) => {
            tracing::info!(%peer, error = %e, "ticket refused");
            Err(session_refused(e))
        }
    }
}

/// `POST /api/logout`: ends a session. Tickets it minted stay valid until
/// used or expired.
async fn logout(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let session = bearer_token(&headers)?;
    match app.auth.logout(session).await {
        Ok((user, session)) => {
            let closed = app
                .connections
                .roster
                .close_session(&session, CloseReason::LoggedOut);
            tracing::info!(%user, %peer, sockets = closed, "logout");
            Ok(StatusCode::NO_CONTENT)
        }
        Err(e) => {
            tracing::info!(%peer, error = %e, "logout refused");
            Err(session_refused(e))
        }
    }
}

async fn register(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Result<Json<Credentials>, JsonRejection>,
) -> Result<(StatusCode, Json<RegisterResponse>), ApiError> {
    if app.config.disable_registration {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::RegistrationDisabled,
            "registration is disabled on this server; ask an operator for an account",
        ));
    }
    let creds = credentials(body)?;
    let username = app
        .auth
        .register(
            &creds.username,
            creds.password,
            creds.invite.as_deref(),
            peer.ip(),
        )
        .await?;
    tracing::info!(user = %username, %peer, "registered");
    Ok((StatusCode::CREATED, Json(RegisterResponse { username })))
}

#[derive(Deserialize)]
struct WsQuery {
    ticket: Option<String>,
}

/// `GET /ws?ticket=...`: every check happens before the upgrade, so a refused
/// client gets a plain HTTP status and never a socket.
async fn websocket(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(admitted): Extension<Admitted>,
    headers: HeaderMap,
    Query(query): Query<WsQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let public = app.config.public_url.as_deref();
    if let Err(reason) = origin::check(&headers, app.tls, &app.config.allowed_origins, public) {
        tracing::warn!(%peer, %reason, "socket refused");
        return ApiError::new(StatusCode::FORBIDDEN, ErrorCode::OriginNotAllowed, reason)
            .into_response();
    }
    // Checked before the ticket so that a malformed request does not use it up.
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return ApiError::new(
                rejection.status(),
                ErrorCode::InvalidRequest,
                format!("not a WebSocket upgrade request: {}", rejection.body_text()),
            )
            .into_response()
        }
    };
    let Some(ticket) = query.ticket else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidTicket,
            "missing ticket: POST /api/login first, then GET /ws?ticket=...",
        )
        .into_response();
    };
    let Redeemed { user, session } = match app.auth.redeem(&ticket).await {
        Ok(redeemed) => redeemed,
        Err(e) => {
            tracing::info!(%peer, error = %e, "socket refused");
            let (reason, message) = match e {
                TicketError::Unknown => ("unknown", "ticket unknown or already used; log in again"),
                TicketError::Expired => ("expired", "ticket expired; log in again"),
                TicketError::Backend(e) => return internal(&e).into_response(),
            };
            app.metrics.ticket_refused(reason);
            return ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::InvalidTicket, message)
                .into_response();
        }
    };

    let per_user = app.config.max_connections_per_user;
    let Some(place) = app.connections.roster.hold(&user, per_user) else {
        tracing::info!(%peer, user = %user, "socket refused: too many connections of the user");
        app.metrics.connection_refused("user");
        return ApiError {
            retry_after: Some(Duration::from_secs(5)),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyConnections,
                format!(
                    "{user} has {per_user} connections open, the most allowed; close one first"
                ),
            )
        }
        .into_response();
    };

    // Held from here so that shutdown waits for this connection, even before
    // the upgrade completes.
    let tracked = app.tracker.token();
    let max = app.config.max_message_size;
    let context = app.connections.clone();
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER)
        // The connection's future itself, not wrapped in another: a wrapping
        // `async` block would hold a second copy of the socket's state.
        .on_upgrade(move |socket| {
            connection::run(socket, user, session, place, context, tracked, admitted)
        })
}
