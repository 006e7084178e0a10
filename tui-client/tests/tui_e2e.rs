//! The real chat-tui binary in a real terminal (tmux), against a real server,
//! with messages from the real chat-cli.

mod common;

use chat_protocol::ServerEvent;
use common::tmux::Tmux;
use common::{bin, chat_cli, wait_event, ClientSide, TestServer};

fn launch(tmux: &Tmux, server: &TestServer) {
    let command = format!(
        "{} --server {} --user alice --room general",
        bin("chat-tui").display(),
        server.url()
    );
    tmux.type_line(&command);
}

#[tokio::test]
async fn messages_flow_both_ways_between_chat_tui_and_chat_cli() {
    if Tmux::missing() {
        return;
    }
    let server = TestServer::start().await;
    server.register("alice").await;
    server.register("bob").await;
    let tmux = Tmux::start();
    launch(&tmux, &server);
    tmux.wait_for("connected to").await;
    tmux.wait_for("Message general").await;

    let mut bob = server.member("bob", "general").await;
    tmux.wait_for("bob joined").await;

    let status = chat_cli(&server, "bob")
        .args(["send", "--room", "general", "hello from the cli 你好"])
        .status()
        .await
        .expect("chat-cli runs");
    assert_eq!(status.code(), Some(0));
    tmux.wait_for("bob: hello from the cli 你好").await;

    tmux.type_line("hi from the terminal 👋");
    let got = wait_event(
        &mut bob,
        |e| matches!(e, ServerEvent::NewMessage(m) if m.from == "alice"),
    )
    .await;
    assert!(matches!(got, ServerEvent::NewMessage(m) if m.text == "hi from the terminal 👋"));
    tmux.wait_for("alice: hi from the terminal").await;

    // Ctrl+C quits and hands back a working terminal: the shell runs commands again.
    tmux.key("C-c");
    tmux.wait_for_shell().await;
    tmux.type_line("echo restored-$((40+2))");
    tmux.wait_for("restored-42").await;
    bob.close().await;
}

#[tokio::test]
async fn chat_tui_reconnects_and_rejoins_after_a_server_restart() {
    if Tmux::missing() {
        return;
    }
    let mut server = TestServer::start().await;
    server.register("alice").await;
    server.register("bob").await;
    let tmux = Tmux::start();
    launch(&tmux, &server);
    tmux.wait_for("connected to").await;
    // In the room (its joined arrived), not just connected: otherwise the
    // stop could come before the join, and the notes of the reconnect would
    // go to the lobby while the room opens afterwards, empty.
    tmux.wait_for("Message general").await;

    server.stop().await;
    tmux.wait_for("reconnecting").await;
    server.restart().await;
    tmux.wait_for("reconnected; rejoining rooms").await;
    tmux.wait_for("connected to").await;
    assert_eq!(
        server.password_hashes(),
        0,
        "chat-tui reconnected with its session, not the password"
    );

    // Delivered only if chat-tui really rejoined `general` on its own.
    let status = chat_cli(&server, "bob")
        .args(["send", "--room", "general", "after the restart"])
        .status()
        .await
        .expect("chat-cli runs");
    assert_eq!(status.code(), Some(0));
    tmux.wait_for("bob: after the restart").await;
    tmux.key("C-c");
}
