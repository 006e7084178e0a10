//! What the HTTP routes share: settings, authentication, the connections'
//! context, and the shutdown machinery.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::config::Config;
use crate::connection;
use crate::metrics::HttpMetrics;
use crate::readiness::Readiness;

/// State shared by every request.
pub(crate) struct AppState {
    pub(crate) config: Config,
    pub(crate) auth: Arc<Auth>,
    /// Handed to each upgraded connection: the rooms and its settings.
    pub(crate) connections: Arc<connection::Context>,
    /// Cancelled once to begin shutdown; every connection's closer descends from it.
    pub(crate) shutdown: CancellationToken,
    /// Tracks connection tasks and sockets, so shutdown can wait for them.
    pub(crate) tracker: TaskTracker,
    /// What `/readyz` checks.
    pub(crate) readiness: Readiness,
    /// Whether this server speaks TLS (for the Origin check's own origin).
    pub(crate) tls: bool,
    /// What the routes count.
    pub(crate) metrics: HttpMetrics,
}
