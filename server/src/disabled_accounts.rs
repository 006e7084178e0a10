//! Enforcing accounts an operator disabled (`chat-server admin disable`) on a
//! running server: `chat-server admin` is another process, acting on the
//! store, so each server (every node of a cluster) polls the store for the
//! disabled accounts, ends their sessions (including the ones this server
//! keeps in memory) and closes their connections with 4003.
//!
//! Every poll acts on everything it finds, not on what changed since the
//! last: a socket opened afterwards with a ticket minted before the disable,
//! or a session a login racing the disable issued, is ended by the next poll.

use std::sync::Arc;
use std::time::Duration;

use chat_rooms::CloseReason;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::connection::roster::Roster;

/// Polls `auth`'s stores every `every` until `shutdown`, closing the
/// disabled users' connections in `roster`.
pub(crate) async fn enforce(
    auth: Arc<Auth>,
    roster: Roster,
    shutdown: CancellationToken,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    // A slow store must not cause a burst of catch-up polls.
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Logged once per outage, not once a second.
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        // The store's calls run SQLite on the blocking pool, never here.
        match auth.end_disabled().await {
            Ok((disabled, sessions)) => {
                if failing {
                    tracing::info!("reading disabled accounts works again");
                    failing = false;
                }
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
            Err(e) if !failing => {
                tracing::error!(error = %e, "reading disabled accounts failed; will retry every second");
                failing = true;
            }
            Err(_) => {}
        }
    }
}
