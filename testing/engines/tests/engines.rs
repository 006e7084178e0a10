//! The test engines themselves work: a database of one's own that goes away,
//! a private Redis that dies and comes back, a proxy that cuts.
#![allow(missing_docs)]

use std::time::Duration;

use chat_test_engines::{postgres, through, CutProxy, PrivateRedis};
use sqlx::Connection;

#[tokio::test]
async fn a_database_of_its_own_is_dropped_afterwards() {
    let Some(db) = postgres().await else { return };
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .expect("query");
    assert_eq!(one, 1);
    conn.close().await.expect("close");
    let url = db.url.clone();
    drop(db);
    assert!(
        sqlx::PgConnection::connect(&url).await.is_err(),
        "the database is gone once dropped"
    );
}

#[tokio::test]
async fn a_cut_proxy_drops_connections_until_restored() {
    let Some(db) = postgres().await else { return };
    let proxy = CutProxy::start("127.0.0.1:5432".parse().expect("addr")).await;
    let url = through(&proxy, &db);
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .expect("through the proxy");
    proxy.cut();
    assert!(
        sqlx::query("SELECT 1").execute(&mut conn).await.is_err(),
        "cut"
    );
    assert!(
        sqlx::PgConnection::connect(&url).await.is_err(),
        "refused while cut"
    );
    proxy.restore();
    sqlx::PgConnection::connect(&url).await.expect("restored");
}

#[tokio::test]
async fn a_private_redis_dies_and_comes_back_empty() {
    let Some(mut redis) = PrivateRedis::start().await else {
        return;
    };
    let client = redis::Client::open(redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut conn)
        .await
        .expect("set");
    redis.kill();
    let failed = tokio::time::timeout(
        Duration::from_secs(5),
        redis::cmd("GET")
            .arg("k")
            .query_async::<Option<String>>(&mut conn),
    )
    .await
    .expect("a dead server fails fast");
    assert!(failed.is_err(), "killed");
    redis.restart().await;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("reconnect");
    let value: Option<String> = redis::cmd("GET")
        .arg("k")
        .query_async(&mut conn)
        .await
        .expect("get");
    assert_eq!(value, None, "nothing survives a restart");
}

#[tokio::test]
async fn a_redis_prefix_is_emptied_when_dropped() {
    let Some(test_redis) = chat_test_engines::redis().await else {
        return;
    };
    let client = redis::Client::open(test_redis.url.as_str()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let key = format!("{}:k", test_redis.prefix);
    let () = redis::cmd("SET")
        .arg(&key)
        .arg("v")
        .query_async(&mut conn)
        .await
        .expect("set");
    drop(test_redis);
    let left: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("get");
    assert_eq!(left, None, "the prefix's keys are gone");
}
