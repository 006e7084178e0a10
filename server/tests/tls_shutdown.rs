//! wss with the generated certificate, and graceful shutdown.

mod common;

use common::{is_message, TestServer};

#[tokio::test]
async fn wss_works_with_the_generated_certificate() {
    let server = TestServer::with(|c| c.tls = true).await;
    let cert = server.data_dir.path().join("tls/cert.pem");
    let key = server.data_dir.path().join("tls/key.pem");
    assert!(
        cert.exists() && key.exists(),
        "certificate kept in the data directory"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key).expect("key").permissions(),
    );
    assert_eq!(mode & 0o077, 0, "private key readable by its owner only");

    // Login over HTTPS, socket over wss, both trusting only that certificate.
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.join("secure").await;
    bob.join("secure").await;
    alice.next().await;
    alice.say("secure", "over TLS").await;
    assert!(is_message(&bob.next().await, "alice", "secure", "over TLS"));
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn shutdown_flushes_queued_frames_then_sends_1001() {
    let mut server = TestServer::start().await;
    let mut alice = server.client("alice").await;
    let mut bob = server.client("bob").await;
    alice.join("room").await;
    bob.join("room").await;
    alice.next().await;

    // Once alice has her echo, the same message is in bob's queue or socket.
    alice.say("room", "last words").await;
    assert!(is_message(
        &alice.next().await,
        "alice",
        "room",
        "last words"
    ));
    server.begin_shutdown();

    assert!(is_message(&bob.next().await, "alice", "room", "last words"));
    let close = bob.expect_close().await;
    assert_eq!(u16::from(close.code), 1001);
    let close = alice.expect_close().await;
    assert_eq!(u16::from(close.code), 1001);
    // Answer the close handshake so the server can finish cleanly.
    alice.close().await;
    bob.close().await;
    server.stop().await;

    // A stopped server accepts nothing.
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
}

#[tokio::test]
async fn wss_works_with_an_operators_own_certificate_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let (cert, key) = (dir.path().join("own.pem"), dir.path().join("own.key"));
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");

    let mut server = TestServer::with(|c| {
        c.tls = true;
        c.cert = Some(cert.clone());
        c.key = Some(key.clone());
    })
    .await;
    assert!(
        !server.data_dir.path().join("tls").exists(),
        "nothing is generated when files are given"
    );
    server.remote.tls_cert = Some(cert);
    let mut alice = server.client("alice").await;
    alice.join("r").await;
    alice.say("r", "mine").await;
    assert!(is_message(&alice.next().await, "alice", "r", "mine"));
    alice.close().await;
}
