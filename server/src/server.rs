//! The listener: accepts TCP (and TLS) connections, serves HTTP on them, and
//! shuts everything down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use chat_rooms::cluster::Cluster;
use chat_rooms::room_log::unix_millis;
use chat_rooms::Node;

use crate::admission::{Admission, Admitted};
use crate::api;
use crate::auth::{Auth, PasswordHashes};
use crate::backend;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::connection;
use crate::metrics::{self, ConnectionMetrics, HttpMetrics};
use crate::proxy_header;
use crate::revocations;
use crate::state::AppState;
use crate::tls::{self, CertSource};

/// How often expired sessions and tickets are dropped from memory. Lookups
/// refuse them regardless, so this only returns memory; once a minute keeps
/// the sweep's cost negligible against sessions that last hours.
const AUTH_PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// How often the server looks for accounts an operator disabled, and for
/// sessions logged out on other nodes: what "within about a second" in
/// docs/protocol.md promises. Indexed queries of those rows only.
const POLL_REVOCATIONS: Duration = Duration::from_secs(1);

/// A bound, ready-to-run chat server.
pub struct Server {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    cert_source: Option<CertSource>,
    app: Arc<AppState>,
    node: Arc<Node>,
    /// A cluster node's bus and presence, kept until the connections are closed.
    cluster: Option<Cluster>,
    /// The `--metrics-listen` listener and what it serves.
    metrics: Option<(TcpListener, Arc<prometheus_client::registry::Registry>)>,
}

impl Server {
    /// Opens the data directory and binds the listener, so that errors (a port
    /// in use, an unreadable certificate) surface before anything runs.
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        Self::bind_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Like [`Server::bind`], dating sessions and tickets by `clock` (tests
    /// pass a [`crate::clock::ManualClock`] to move time).
    pub async fn bind_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let backend::Backend {
            auth,
            node,
            readiness,
            cluster,
        } = backend::open(&config, clock).await?;
        let (tls, cert_source) = if config.tls {
            let (acceptor, source) = tls::acceptor(&config)?;
            (Some(acceptor), Some(source))
        } else {
            (None, None)
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let http_metrics = HttpMetrics::default();
        let connection_metrics = ConnectionMetrics::default();
        let roster = connection::roster::Roster::default();
        let metrics = match config.metrics_listen {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding --metrics-listen {addr}"))?;
                let registry = metrics::registry(
                    &node,
                    cluster.as_ref(),
                    &http_metrics,
                    &connection_metrics,
                    &roster,
                );
                Some((listener, Arc::new(registry)))
            }
            None => None,
        };
        let shutdown = CancellationToken::new();
        let connections = Arc::new(connection::Context {
            node: node.clone(),
            settings: connection::Settings {
                max_message_size: config.max_message_size,
                max_rooms: config.max_rooms,
                rate: config.rate,
                burst: config.burst,
                send_queue: config.send_queue,
                send_queue_bytes: config.send_queue_bytes,
                ping_interval: config.ping_interval,
                pong_timeout: config.pong_timeout,
                close_timeout: config.shutdown_grace,
            },
            shutdown: shutdown.clone(),
            metrics: connection_metrics,
            roster: roster.clone(),
        });
        let app = Arc::new(AppState {
            auth: Arc::new(auth),
            connections,
            shutdown,
            tracker: TaskTracker::new(),
            readiness,
            tls: tls.is_some(),
            metrics: http_metrics,
            config,
        });
        Ok(Self {
            listener,
            tls,
            cert_source,
            app,
            node,
            cluster,
            metrics,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address of `--metrics-listen`, when it is on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
            .as_ref()
            .and_then(|(listener, _)| listener.local_addr().ok())
    }

    /// The base URL clients use, `http://` or `https://`.
    pub fn url(&self) -> std::io::Result<String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        Ok(format!("{scheme}://{}", self.local_addr()?))
    }

    /// Where the TLS certificate came from, when serving TLS.
    pub fn cert_source(&self) -> Option<&CertSource> {
        self.cert_source.as_ref()
    }

    /// Counts this server's password hashing, to show what needs none.
    pub fn password_hashes(&self) -> PasswordHashes {
        self.app.auth.password_hashes()
    }

    /// Cancel this token to shut the server down gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.app.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then sends every client a
    /// Close frame (1001) and waits up to the shutdown grace for them to go.
    pub async fn run(self) -> anyhow::Result<()> {
        let Self {
            listener,
            tls,
            app,
            node,
            cluster,
            metrics,
            ..
        } = self;
        let router = api::router(app.clone());
        if let Some((listener, registry)) = metrics {
            app.tracker
                .spawn(metrics::serve(listener, registry, app.shutdown.clone()));
        }
        if let Some(every) = node.log().retention().prune_interval() {
            app.tracker.spawn(prune_old_messages(
                node.clone(),
                every,
                app.shutdown.clone(),
            ));
        }
        app.tracker
            .spawn(prune_expired_auth(app.auth.clone(), app.shutdown.clone()));
        app.tracker.spawn(revocations::enforce(
            app.auth.clone(),
            app.connections.roster.clone(),
            app.shutdown.clone(),
            POLL_REVOCATIONS,
        ));
        let admission = Admission::new(
            app.config.max_connections,
            app.config.max_connections_per_address,
        );
        tracing::info!(
            connections = admission.total_cap(),
            per_address = app.config.max_connections_per_address,
            "connection caps"
        );
        let proxies: std::collections::HashSet<std::net::IpAddr> =
            app.config.proxy_protocol_from.iter().copied().collect();
        loop {
            let accepted = tokio::select! {
                () = app.shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Before any work for it: not a byte read, no TLS handshake.
            let proxied = proxies.contains(&peer.ip());
            let admitted = match if proxied {
                admission.admit_proxied()
            } else {
                admission.admit(peer.ip())
            } {
                Ok(admitted) => admitted,
                Err(refusal) => {
                    app.metrics.connection_refused(refusal.as_label());
                    // Over TLS an answer would need the handshake: just closed.
                    if tls.is_none() {
                        let answer = tokio::select! {
                            () = app.shutdown.cancelled() => break,
                            answer = admission.refuse(tcp, refusal) => answer,
                        };
                        app.tracker.spawn(answer);
                    }
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (router, tls, shutdown) = (router.clone(), tls.clone(), app.shutdown.clone());
            let timeout = app.config.request_timeout;
            app.tracker.spawn(async move {
                let mut tcp = tcp;
                let mut peer = peer;
                if proxied {
                    match tokio::time::timeout(timeout, proxy_header::read(&mut tcp)).await {
                        Ok(Ok(client)) => peer = client.unwrap_or(peer),
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "proxied connection refused");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "PROXY protocol header timed out");
                            return;
                        }
                    }
                }
                match tls {
                    None => serve_http(tcp, peer, admitted, router, shutdown, timeout).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => {
                                serve_http(stream, peer, admitted, router, shutdown, timeout).await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                }
            });
        }
        drop(listener);
        let roster = &app.connections.roster;
        tracing::info!(
            connections = roster.connections(),
            users = roster.users(),
            "shutting down: closing connections"
        );
        app.tracker.close();
        let grace = app.config.shutdown_grace + Duration::from_secs(1);
        if tokio::time::timeout(grace, app.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within the grace period");
        }
        // Only now, with every connection's leave queued for the bus: tell
        // the other nodes this one is going and send what is still queued.
        if let Some(cluster) = cluster {
            cluster.shutdown(app.config.shutdown_grace).await;
        }
        Ok(())
    }
}

/// Applies age retention every `every` until shutdown.
async fn prune_old_messages(node: Arc<Node>, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now_ms = unix_millis(std::time::SystemTime::now());
        match node.log().prune_by_age(now_ms).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(messages = n, "retention: forgot old messages"),
            Err(e) => tracing::error!(error = %e, "retention failed"),
        }
    }
}

/// Forgets expired sessions and tickets every [`AUTH_PRUNE_INTERVAL`] until shutdown.
async fn prune_expired_auth(auth: Arc<Auth>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(AUTH_PRUNE_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let pruned = auth.prune_expired().await;
        if pruned.sessions + pruned.tickets > 0 {
            tracing::debug!(
                sessions = pruned.sessions,
                tickets = pruned.tickets,
                "forgot expired sessions and tickets"
            );
        }
    }
}

/// Serves HTTP/1.1 on one connection, with upgrades, until it ends or shutdown.
async fn serve_http<I>(
    io: I,
    peer: SocketAddr,
    admitted: Admitted,
    router: Router,
    shutdown: CancellationToken,
    request_timeout: Duration,
) where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        // A socket upgraded from this request keeps the connection counted.
        request.extensions_mut().insert(admitted.clone());
        tower_service::Service::call(&mut router.clone(), request)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(request_timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
    }
}
