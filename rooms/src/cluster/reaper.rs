//! Removing the presence of node incarnations that stopped heartbeating.
//!
//! Every node runs this at each upkeep: it lists the registered
//! incarnations, and for each one (other than its current own) whose
//! heartbeat key has expired it leaves a tombstone, runs the room's reap
//! script in each room the incarnation had entries in, and drops the
//! incarnation's room set and registration. The scripts are idempotent, so
//! when two nodes reap the same incarnation each departure is reported to
//! exactly one of them, which announces it.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::RedisResult;

use super::keys::Keys;
use super::presence_writer::millis;
use super::scripts;
use crate::presence::Change;

/// How long a tombstone stays: a node stalled for longer than this comes
/// back without announcing its users again.
const TOMBSTONE: Duration = Duration::from_secs(24 * 3600);

/// Reaps every dead incarnation but `mine`; returns the departures found.
pub(crate) async fn reap(
    conn: &mut ConnectionManager,
    keys: &Keys,
    mine: &str,
) -> RedisResult<Vec<Change>> {
    let registered: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(keys.registry())
        .query_async(conn)
        .await?;
    let others: Vec<&String> = registered.keys().filter(|i| i.as_str() != mine).collect();
    if others.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for incarnation in &others {
        pipe.cmd("EXISTS").arg(keys.heartbeat(incarnation));
    }
    let alive: Vec<bool> = pipe.query_async(conn).await?;
    let mut changes = Vec::new();
    for (incarnation, _) in others.into_iter().zip(alive).filter(|(_, alive)| !alive) {
        tracing::info!(%incarnation, "reaping a node that stopped heartbeating");
        changes.extend(reap_one(conn, keys, incarnation).await?);
    }
    Ok(changes)
}

async fn reap_one(
    conn: &mut ConnectionManager,
    keys: &Keys,
    incarnation: &str,
) -> RedisResult<Vec<Change>> {
    // First, so that the incarnation, should it come back, knows.
    let rooms: Vec<String> = redis::pipe()
        .cmd("SET")
        .arg(keys.tombstone(incarnation))
        .arg(1)
        .arg("PX")
        .arg(millis(TOMBSTONE))
        .ignore()
        .cmd("SMEMBERS")
        .arg(keys.rooms_of(incarnation))
        .query_async::<(Vec<String>,)>(conn)
        .await?
        .0;
    let mut changes = Vec::new();
    if !rooms.is_empty() {
        let mut pipe = redis::pipe();
        for room in &rooms {
            pipe.add_command(
                scripts::eval(scripts::REAP, &keys.entries(room), &keys.users(room))
                    .arg(incarnation)
                    .clone(),
            );
        }
        let gone: Vec<Vec<String>> = pipe.query_async(conn).await?;
        for (room, users) in rooms.iter().zip(gone) {
            changes.extend(users.into_iter().map(|user| Change::Left {
                room: room.clone(),
                user,
            }));
        }
    }
    redis::pipe()
        .cmd("DEL")
        .arg(keys.rooms_of(incarnation))
        .ignore()
        .cmd("HDEL")
        .arg(keys.registry())
        .arg(incarnation)
        .ignore()
        .query_async::<()>(conn)
        .await?;
    Ok(changes)
}
