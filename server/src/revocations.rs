//! Enforcing on a running server what was revoked elsewhere: accounts an
//! operator disabled (`chat-server admin disable`, another process acting on
//! the store) and, in a cluster, sessions logged out on another node. Each
//! server (every node of a cluster) polls the store: it ends the disabled
//! accounts' sessions (including the ones it keeps in memory) and closes
//! their connections with 4003, and closes the connections of sessions
//! logged out anywhere with 4001, as the node that took the logout did.
//!
//! Every poll acts on everything it finds, not on what changed since the
//! last: a socket opened afterwards with a ticket minted before the disable,
//! or a session a login racing the disable issued, is ended by the next poll.
//! A logout, whose tickets are void, is acted on once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_rooms::CloseReason;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::auth::stores::LOGOUT_MEMORY;
use crate::auth::Auth;
use crate::connection::roster::Roster;

/// Polls `auth`'s stores every `every` until `shutdown`, closing in `roster`
/// the connections of disabled users and of sessions logged out elsewhere.
pub(crate) async fn enforce(
    auth: Arc<Auth>,
    roster: Roster,
    shutdown: CancellationToken,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    // A slow store must not cause a burst of catch-up polls.
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Each logged once per outage, not once a second.
    let (mut disabled_failing, mut logouts_failing) = (false, false);
    // Logged-out sessions already acted on, and when.
    let mut handled: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        // The stores' calls run SQLite on the blocking pool, never here.
        let disabled = auth.end_disabled().await;
        if let Some((disabled, sessions)) =
            report(disabled, &mut disabled_failing, "disabled accounts")
        {
            if sessions > 0 {
                tracing::info!(sessions, "ended the sessions of disabled accounts");
            }
            for user in &disabled {
                let closed = roster.close_user(user, CloseReason::AccountDisabled);
                if closed > 0 {
                    tracing::info!(%user, connections = closed, "account disabled: closing its connections");
                }
            }
        }
        let logged_out = auth.logged_out_sessions().await;
        if let Some(sessions) = report(logged_out, &mut logouts_failing, "logged-out sessions") {
            // The store remembers a logout for many polls; its tickets are
            // void, so no socket of it opens after the first: each is acted
            // on once, not once a poll.
            let now = Instant::now();
            handled.retain(|_, at| now.duration_since(*at) < 2 * LOGOUT_MEMORY);
            for session in &sessions {
                if handled.insert(session.clone(), now).is_some() {
                    continue;
                }
                let closed = roster.close_session(session, CloseReason::LoggedOut);
                if closed > 0 {
                    tracing::info!(
                        connections = closed,
                        "session logged out on another node: closing its connections"
                    );
                }
            }
        }
    }
}

/// The poll's result, with its failure logged once per outage (and its end).
fn report<T, E: std::fmt::Display>(
    result: Result<T, E>,
    failing: &mut bool,
    what: &str,
) -> Option<T> {
    match result {
        Ok(value) => {
            if std::mem::take(failing) {
                tracing::info!("reading {what} works again");
            }
            Some(value)
        }
        Err(e) => {
            if !std::mem::replace(failing, true) {
                tracing::error!(error = %e, "reading {what} failed; will retry every second");
            }
            None
        }
    }
}
