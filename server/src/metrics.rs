//! The operator's metrics: what the server counts, in one Prometheus
//! registry, served as text on a listener of its own (`--metrics-listen`),
//! so that they are never public by accident on the chat port.
//!
//! Each part counts with handles it is given ([`HttpMetrics`] for the HTTP
//! routes, [`ConnectionMetrics`] for the sockets, `chat_rooms::metrics` for
//! the message path); [`registry`] gathers them all under the `chat_` prefix.
//! No label carries a client's words (room or user names): every label here
//! is a closed set, so the number of series stays bounded.

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chat_protocol::ErrorCode;
use chat_rooms::cluster::Cluster;
use chat_rooms::metrics::LabelledCounter;
use chat_rooms::{CloseReason, Node};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;

use crate::connection::roster::Roster;
use tokio_util::sync::CancellationToken;

/// How a password login ended: the label `outcome` of `chat_logins_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoginOutcome {
    /// The password was right.
    Ok,
    /// Wrong user name or password.
    BadCredentials,
    /// Refused by the login throttle, before any password check.
    Throttled,
    /// Turned away by a full password-hashing queue (503), unchecked.
    Busy,
    /// The right password, for an account an operator disabled.
    Disabled,
    /// A store failed.
    Error,
}

impl LoginOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::BadCredentials => "bad_credentials",
            Self::Throttled => "throttled",
            Self::Busy => "busy",
            Self::Disabled => "disabled",
            Self::Error => "error",
        }
    }
}

/// What the HTTP routes count.
#[derive(Debug, Clone, Default)]
pub(crate) struct HttpMetrics {
    /// Password logins by outcome; a ticket minted from a session is no login.
    logins: LabelledCounter,
    /// Tickets refused at the upgrade, by `reason` (`unknown`, `expired`).
    tickets_refused: LabelledCounter,
    /// Tickets minted from a session (`POST /api/ticket`).
    session_tickets: Counter,
    /// Connections refused before any work, by `reason`.
    connections_refused: LabelledCounter,
}

impl HttpMetrics {
    /// Counts one password login.
    pub(crate) fn login(&self, outcome: LoginOutcome) {
        self.logins
            .get_or_create(&[("outcome", outcome.as_str())])
            .inc();
    }

    /// Counts a ticket refused at `GET /ws`.
    pub(crate) fn ticket_refused(&self, reason: &'static str) {
        self.tickets_refused
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    /// Counts a connection refused by the caps: `full` (the server),
    /// `address` (its client address), `user` (its user, at the upgrade).
    pub(crate) fn connection_refused(&self, reason: &'static str) {
        self.connections_refused
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    /// Counts a ticket minted from a session.
    pub(crate) fn session_ticket(&self) {
        self.session_tickets.inc();
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "logins",
            "Password logins by outcome: ok, bad_credentials, throttled, disabled, error (tickets minted from a session are not logins)",
            self.logins.clone(),
        );
        registry.register(
            "tickets_refused",
            "Socket tickets refused at the upgrade, by reason: unknown (or used), expired",
            self.tickets_refused.clone(),
        );
        // Served at 0 from the start: a refusal is rare, and a series that
        // appears only with the first one cannot be told from a broken scrape.
        for reason in ["full", "address", "user"] {
            drop(
                self.connections_refused
                    .get_or_create(&[("reason", reason)]),
            );
        }
        registry.register(
            "connections_refused",
            "Connections refused by the caps before any work, by reason: full (the server), address (its client address), user (its user's sockets, at the upgrade)",
            self.connections_refused.clone(),
        );
        registry.register(
            "session_tickets",
            "Tickets minted from a session (POST /api/ticket), without a password",
            self.session_tickets.clone(),
        );
    }
}

/// A client request's type: the label `type` of the request duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// A plain `join_room`.
    Join,
    /// A `join_room` with `since`.
    Resume,
    /// `leave_room`.
    Leave,
    /// `send_message`.
    Send,
    /// `history`.
    History,
    /// `list_rooms`.
    ListRooms,
}

impl RequestKind {
    const ALL: [Self; 6] = [
        Self::Join,
        Self::Resume,
        Self::Leave,
        Self::Send,
        Self::History,
        Self::ListRooms,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Join => "join_room",
            Self::Resume => "resume_room",
            Self::Leave => "leave_room",
            Self::Send => "send_message",
            Self::History => "history",
            Self::ListRooms => "list_rooms",
        }
    }
}

/// The labels of a close the server began.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    code: u16,
    reason: &'static str,
}

/// What the sockets count.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionMetrics {
    /// Open WebSocket connections.
    connections: Gauge,
    /// Every connection's end, by `reason` (client_closed, slow_consumer, ...).
    disconnects: LabelledCounter,
    /// Close frames the server sent, by code and reason.
    closes: Family<CloseLabels, Counter>,
    /// Connections dropped because their send queue was full.
    slow_consumers: Counter,
    /// `error` events sent, by `code`.
    rejected: LabelledCounter,
    /// `send_message` requests refused before the log, by `code`.
    messages_rejected: LabelledCounter,
    /// Bytes of text frames written to clients (payloads, not framing),
    /// handed over by each connection's [`WriterTally`].
    bytes_sent: Counter,
    /// Time to handle one request, by its `type`.
    request_seconds: Family<[(&'static str, &'static str); 1], Histogram>,
    /// The histograms of `request_seconds`, one per [`RequestKind::ALL`], so
    /// that a request does not look its label up.
    by_kind: [Histogram; 6],
    /// Frames waiting in a connection's queue when its writer takes a batch.
    send_queue_depth: Histogram,
}

impl Default for ConnectionMetrics {
    fn default() -> Self {
        // 50 us to about 1.6 s: most requests are a map update, a join
        // reads the log, a send only queues its append.
        let request_seconds: Family<_, Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.00005, 2.0, 16)));
        let by_kind = RequestKind::ALL
            .map(|kind| request_seconds.get_or_create_owned(&[("type", kind.as_str())]));
        Self {
            connections: Gauge::default(),
            disconnects: LabelledCounter::default(),
            closes: Family::default(),
            slow_consumers: Counter::default(),
            rejected: LabelledCounter::default(),
            messages_rejected: LabelledCounter::default(),
            bytes_sent: Counter::default(),
            request_seconds,
            by_kind,
            // 1 to 512 frames: the default queue holds 256.
            send_queue_depth: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
        }
    }
}

impl ConnectionMetrics {
    /// A connection opened.
    pub(crate) fn opened(&self) {
        self.connections.inc();
    }

    /// A connection ended for `reason`.
    pub(crate) fn ended(&self, reason: CloseReason) {
        self.connections.dec();
        self.disconnects
            .get_or_create(&[("reason", reason.label())])
            .inc();
        if let Some((code, _)) = reason.close_frame() {
            self.closes
                .get_or_create(&CloseLabels {
                    code,
                    reason: reason.label(),
                })
                .inc();
        }
        if matches!(
            reason,
            CloseReason::SlowConsumer | CloseReason::WriteStalled
        ) {
            self.slow_consumers.inc();
        }
    }

    /// An `error` event went out.
    pub(crate) fn rejected(&self, code: ErrorCode) {
        self.rejected
            .get_or_create(&[("code", code.as_str())])
            .inc();
    }

    /// A `send_message` was refused with `code` before reaching the log
    /// (its `error` event is counted by [`Self::rejected`] too).
    pub(crate) fn message_rejected(&self, code: ErrorCode) {
        self.messages_rejected
            .get_or_create(&[("code", code.as_str())])
            .inc();
    }

    /// `bytes` of frames were written.
    pub(crate) fn sent(&self, bytes: usize) {
        self.bytes_sent.inc_by(bytes as u64);
    }

    /// A request of type `kind` took `seconds` to handle.
    pub(crate) fn handled(&self, kind: RequestKind, seconds: f64) {
        // ALL lists the kinds in declaration order (a test checks it).
        self.by_kind[kind as usize].observe(seconds);
    }

    /// The writer found `depth` frames queued.
    pub(crate) fn queue_depth(&self, depth: usize) {
        self.send_queue_depth.observe(depth as f64);
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "connections",
            "Open WebSocket connections",
            self.connections.clone(),
        );
        registry.register(
            "disconnects",
            "Connections that ended, by reason",
            self.disconnects.clone(),
        );
        registry.register(
            "server_closes",
            "Close frames the server sent, by close code and reason",
            self.closes.clone(),
        );
        registry.register(
            "slow_consumer_disconnects",
            "Connections dropped because they read too slowly for their rooms (send queue full)",
            self.slow_consumers.clone(),
        );
        registry.register(
            "requests_rejected",
            "error events sent to clients, by error code",
            self.rejected.clone(),
        );
        registry.register(
            "messages_rejected",
            "send_message requests refused before the message log, by error code (a log failure is chat_message_append_failures_total)",
            self.messages_rejected.clone(),
        );
        registry.register_with_unit(
            "sent",
            "Bytes of frames written to WebSocket clients (payloads, without framing)",
            Unit::Bytes,
            self.bytes_sent.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time to handle one client request, by type (a resume's backlog is sent after it)",
            Unit::Seconds,
            self.request_seconds.clone(),
        );
        registry.register(
            "send_queue_depth",
            "Frames waiting in a connection's send queue when its writer takes a batch (the first batch and every 16th after)",
            self.send_queue_depth.clone(),
        );
    }
}

/// Write batches between two touches of the shared handles by one
/// connection's writer.
const SAMPLE_EVERY: u32 = 16;

/// What one connection's writer counts before it reaches the shared
/// handles. A write batch is the hot path of a fan-out (one per member per
/// message at low load), and at millions of deliveries a second a shared
/// atomic, the histogram's lock and the queue's length (another lock) per
/// batch would cost a visible share of each delivery: the bytes are added up
/// here and handed over every [`SAMPLE_EVERY`] batches (and at the end), and
/// the queue depth is sampled on the first batch and every
/// [`SAMPLE_EVERY`]th after.
#[derive(Debug, Default)]
pub(crate) struct WriterTally {
    batches: u32,
    bytes: usize,
}

impl WriterTally {
    /// Before a batch: whether this one samples the queue depth.
    pub(crate) fn samples(&mut self) -> bool {
        self.batches = self.batches.wrapping_add(1);
        self.batches % SAMPLE_EVERY == 1
    }

    /// After a batch of `bytes`.
    pub(crate) fn wrote(&mut self, bytes: usize, metrics: &ConnectionMetrics) {
        self.bytes += bytes;
        if self.batches.is_multiple_of(SAMPLE_EVERY) {
            self.flush(metrics);
        }
    }

    /// Hands what is counted over, as the connection ends.
    pub(crate) fn flush(&mut self, metrics: &ConnectionMetrics) {
        metrics.sent(std::mem::take(&mut self.bytes));
    }
}

/// A gauge read when scraped, for values that live elsewhere (a map's
/// size, a backlog's length) and would otherwise need a second copy.
struct Sampled {
    name: &'static str,
    help: &'static str,
    read: Box<dyn Fn() -> i64 + Send + Sync>,
}

impl std::fmt::Debug for Sampled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampled").field("name", &self.name).finish()
    }
}

impl Collector for Sampled {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = ConstGauge::new((self.read)());
        let metric = encoder.encode_descriptor(self.name, self.help, None, gauge.metric_type())?;
        gauge.encode(metric)
    }
}

/// Adds a gauge that reads `read` at each scrape.
fn sampled(
    registry: &mut Registry,
    name: &'static str,
    help: &'static str,
    read: impl Fn() -> i64 + Send + Sync + 'static,
) {
    registry.register_collector(Box::new(Sampled {
        name,
        help,
        read: Box::new(read),
    }));
}

/// Every part's handles in one registry, named `chat_*`.
pub(crate) fn registry(
    node: &Arc<Node>,
    cluster: Option<&Cluster>,
    http: &HttpMetrics,
    connections: &ConnectionMetrics,
    roster: &Roster,
) -> Registry {
    let mut registry = Registry::with_prefix("chat");
    http.register(&mut registry);
    connections.register(&mut registry);
    let users = roster.clone();
    sampled(
        &mut registry,
        "users_connected",
        "Distinct users with at least one open WebSocket connection",
        move || i64::try_from(users.users()).unwrap_or(i64::MAX),
    );
    node.metrics().register(&mut registry);
    node.log().metrics().register(&mut registry);
    if let Some(cluster) = cluster {
        let bus = cluster.bus();
        bus.register(&mut registry);
        let stats = bus.clone();
        sampled(
            &mut registry,
            "bus_backlog",
            "Payloads waiting to be published to Redis",
            move || i64::try_from(stats.stats().backlog).unwrap_or(i64::MAX),
        );
        let ready = bus.clone();
        sampled(
            &mut registry,
            "bus_up",
            "1 while the bus is subscribed to Redis and publishing, else 0",
            move || i64::from(ready.ready()),
        );
    }
    registry
}

/// Serves `registry` as Prometheus text at `/metrics` on `listener` until
/// `shutdown`.
pub(crate) async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) {
    let router = Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move { exposition(&registry) }
        }),
    );
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "the metrics listener failed");
    }
}

fn exposition(registry: &Registry) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::prometheus_text::encode(&mut body, registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding the metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_kind_has_its_own_histogram() {
        for (index, kind) in RequestKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, index, "{kind:?}");
        }
        let metrics = ConnectionMetrics::default();
        metrics.handled(RequestKind::History, 0.5);
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            .expect("encodes");
        assert!(
            text.contains("request_duration_seconds_count{type=\"history\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("request_duration_seconds_count{type=\"send_message\"} 0"),
            "{text}"
        );
    }
}
