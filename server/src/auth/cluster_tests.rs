//! [`Auth::open_cluster`] end to end: two nodes on one PostgreSQL database and
//! one Redis prefix share accounts, sessions, tickets and failed logins.

use std::net::IpAddr;
use std::time::Duration;

use chat_test_engines::{PrivateRedis, TempDatabase};
use sqlx::postgres::PgPoolOptions;

use super::*;
use crate::clock::SystemClock;

const PASSWORD: &str = "correct horse battery";

fn peer() -> IpAddr {
    IpAddr::from([10, 0, 0, 1])
}

fn config(attempts: u32) -> Config {
    let mut config = Config::with_data_dir("unused-by-cluster-mode");
    config.login_attempts = attempts;
    config.login_window = Duration::from_secs(60);
    config
}

/// One node: a pool and, given a Redis, a connection of its own.
async fn node(db: &TempDatabase, redis: Option<(&str, &str)>, attempts: u32) -> Auth {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&db.url)
        .await
        .expect("connects");
    let redis = match redis {
        Some((url, prefix)) => Some(SharedRedis {
            conn: connect_redis(url).await.expect("connects"),
            prefix: prefix.to_owned(),
        }),
        None => None,
    };
    Auth::open_cluster(pool, redis, &config(attempts), Arc::new(SystemClock))
        .await
        .expect("opens")
}

#[tokio::test]
async fn nodes_share_accounts_sessions_tickets_and_failed_logins() {
    let Some(db) = chat_test_engines::postgres().await else {
        return;
    };
    let Some(redis) = chat_test_engines::redis().await else {
        return;
    };
    let shared = Some((redis.url.as_str(), redis.prefix.as_str()));
    let (a, b) = (node(&db, shared, 3).await, node(&db, shared, 3).await);

    a.register("Alice", PASSWORD.into(), None, peer())
        .await
        .expect("registers");
    assert!(matches!(
        b.register("alice", PASSWORD.into(), None, peer()).await,
        Err(AuthError::UsernameTaken)
    ));

    let login = b
        .login("ALICE", PASSWORD.into(), peer())
        .await
        .expect("logs in");
    assert_eq!(login.user, "Alice");
    assert_eq!(
        a.redeem(&login.ticket).await.expect("opens on a").user,
        "Alice"
    );
    assert!(matches!(
        b.redeem(&login.ticket).await,
        Err(TicketError::Unknown)
    ));

    let minted = a.ticket_for_session(&login.session).await.expect("mints");
    assert_eq!(
        b.redeem(&minted.ticket).await.expect("opens on b").user,
        "Alice"
    );
    assert_eq!(a.logout(&login.session).await.expect("ends").0, "Alice");
    assert!(matches!(
        b.ticket_for_session(&login.session).await,
        Err(SessionError::Unknown)
    ));

    // Three failures in all, on two nodes, reach the limit of three.
    for node in [&a, &b, &a] {
        assert!(matches!(
            node.login("alice", "wrong password".into(), peer()).await,
            Err(AuthError::InvalidCredentials)
        ));
    }
    for node in [&a, &b] {
        assert!(matches!(
            node.login("alice", PASSWORD.into(), peer()).await,
            Err(AuthError::TooManyAttempts(_))
        ));
    }
}

#[tokio::test]
async fn a_single_node_on_postgres_keeps_tickets_and_failures_in_memory() {
    let Some(db) = chat_test_engines::postgres().await else {
        return;
    };
    let (a, b) = (node(&db, None, 1).await, node(&db, None, 1).await);
    a.register("alice", PASSWORD.into(), None, peer())
        .await
        .expect("registers");
    let login = a
        .login("alice", PASSWORD.into(), peer())
        .await
        .expect("logs in");
    assert!(
        matches!(b.redeem(&login.ticket).await, Err(TicketError::Unknown)),
        "a ticket is the minting node's"
    );
    assert_eq!(a.redeem(&login.ticket).await.expect("opens").user, "alice");
    // Sessions are in the database all the same.
    let minted = b.ticket_for_session(&login.session).await.expect("mints");
    assert_eq!(b.redeem(&minted.ticket).await.expect("opens").user, "alice");

    assert!(matches!(
        a.login("alice", "wrong password".into(), peer()).await,
        Err(AuthError::InvalidCredentials)
    ));
    assert!(matches!(
        a.login("alice", PASSWORD.into(), peer()).await,
        Err(AuthError::TooManyAttempts(_))
    ));
    b.login("alice", PASSWORD.into(), peer())
        .await
        .expect("counted on a only");
}

#[tokio::test]
async fn logins_fail_closed_while_redis_is_down() {
    let Some(db) = chat_test_engines::postgres().await else {
        return;
    };
    let Some(mut redis) = PrivateRedis::start().await else {
        return;
    };
    let url = redis.url();
    let auth = node(&db, Some((&url, "chat")), 3).await;
    auth.register("alice", PASSWORD.into(), None, peer())
        .await
        .expect("registers");
    let login = auth
        .login("alice", PASSWORD.into(), peer())
        .await
        .expect("logs in");

    redis.kill();
    let hashed = auth.password_hashes().count();
    for password in [PASSWORD, "wrong password"] {
        match auth.login("alice", password.into(), peer()).await {
            Err(AuthError::Internal(e)) => eprintln!("while redis is down: {e}"),
            Err(e) => panic!("not an internal error: {e}"),
            Ok(_) => panic!("logged in without the throttle"),
        }
    }
    assert_eq!(
        auth.password_hashes().count(),
        hashed,
        "refused before the password check: no guess goes uncounted"
    );
    assert!(matches!(
        auth.redeem(&login.ticket).await,
        Err(TicketError::Backend(_))
    ));
    assert!(matches!(
        auth.ticket_for_session(&login.session).await,
        Err(SessionError::Backend(_))
    ));

    redis.restart().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match auth.login("alice", PASSWORD.into(), peer()).await {
            Ok(_) => break,
            Err(AuthError::Internal(_)) => {
                assert!(tokio::time::Instant::now() < deadline, "no recovery");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
}

/// Registration rates count on every node together: one address's hour of
/// registrations, spread over two nodes, is the hour of one node.
#[tokio::test]
async fn nodes_share_the_registration_rates() {
    let Some(db) = chat_test_engines::postgres().await else {
        return;
    };
    let Some(redis) = chat_test_engines::redis().await else {
        return;
    };
    let shared = Some((redis.url.as_str(), redis.prefix.as_str()));
    let (a, b) = (node(&db, shared, 3).await, node(&db, shared, 3).await);
    let per_address = config(3).registrations_per_address;
    for i in 0..per_address {
        let node = if i % 2 == 0 { &a } else { &b };
        node.register(&format!("user{i}"), PASSWORD.into(), None, peer())
            .await
            .expect("within the address's rate");
    }
    for node in [&a, &b] {
        assert!(matches!(
            node.register("late", PASSWORD.into(), None, peer()).await,
            Err(AuthError::TooManyRegistrations(wait)) if wait > Duration::from_secs(3000)
        ));
    }
}
