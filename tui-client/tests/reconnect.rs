//! Reconnecting with the login session: after the first login, a client gets
//! its tickets from the session, so a server restart costs no password check;
//! only a session the server has ended sends it back to the password. The
//! server's count of password hashes proves which happened.

mod common;

use std::process::Stdio;
use std::time::Duration;

use chat_protocol::ServerEvent;
use chat_tui::client::{spawn_session, Authenticator, Command, ConnState, SessionEvent};
use common::{chat_cli, wait_event, ClientSide, TestServer, WAIT};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

/// Reads session events until one matches, failing after [`WAIT`].
async fn wait_session(
    events: &mut mpsc::Receiver<SessionEvent>,
    what: impl Fn(&SessionEvent) -> bool,
) -> SessionEvent {
    tokio::time::timeout(WAIT, async {
        loop {
            let event = events.recv().await.expect("the session goes on");
            if let SessionEvent::Fatal(error) = &event {
                panic!("the session ended: {error}");
            }
            if what(&event) {
                return event;
            }
        }
    })
    .await
    .expect("the expected session event arrived in time")
}

fn is_state(event: &SessionEvent, state: &ConnState) -> bool {
    matches!(event, SessionEvent::State(s) if std::mem::discriminant(s) == std::mem::discriminant(state))
}

fn joined(event: &SessionEvent, room: &str) -> bool {
    matches!(event, SessionEvent::Server(ServerEvent::Joined { room: r, .. }) if r == room)
}

const RECONNECTING: ConnState = ConnState::Reconnecting {
    attempt: 0,
    delay: Duration::ZERO,
    reason: String::new(),
};

/// Starts a session for `user` in `general` and waits until it has joined.
async fn connected_session(server: &TestServer, user: &str) -> chat_tui::client::SessionHandle {
    let mut session = spawn_session(server.config(user), vec![("general".into(), None)]);
    wait_session(&mut session.events, |e| is_state(e, &ConnState::Connected)).await;
    wait_session(&mut session.events, |e| joined(e, "general")).await;
    session
}

/// Stops the server, waits for the session to notice, and starts it again.
async fn restart_under(server: &mut TestServer, session: &mut chat_tui::client::SessionHandle) {
    server.stop().await;
    wait_session(&mut session.events, |e| is_state(e, &RECONNECTING)).await;
    server.restart().await;
    wait_session(&mut session.events, |e| is_state(e, &ConnState::Connected)).await;
    wait_session(&mut session.events, |e| joined(e, "general")).await;
}

/// Sends a message through the session and waits for the room to relay it.
async fn round_trip(session: &mut chat_tui::client::SessionHandle, text: &str) {
    session
        .commands
        .send(Command::Send {
            room: "general".into(),
            text: text.into(),
        })
        .await
        .expect("session takes commands");
    wait_session(
        &mut session.events,
        |e| matches!(e, SessionEvent::Server(ServerEvent::NewMessage(m)) if m.text == text),
    )
    .await;
}

#[tokio::test]
async fn a_session_reconnects_after_a_restart_without_the_password() {
    let mut server = TestServer::start().await;
    server.register("alice").await;
    let registered = server.password_hashes();
    let mut session = connected_session(&server, "alice").await;
    assert_eq!(
        server.password_hashes(),
        registered + 1,
        "the first connection logged in with the password"
    );

    restart_under(&mut server, &mut session).await;
    round_trip(&mut session, "after the restart").await;
    assert_eq!(
        server.password_hashes(),
        0,
        "the new server checked no password: the client reconnected with its session"
    );
    let _ = session.commands.send(Command::Quit).await;
}

#[tokio::test]
async fn a_session_the_server_ended_falls_back_to_the_password() {
    let mut server = TestServer::start().await;
    server.register("alice").await;
    let mut session = connected_session(&server, "alice").await;

    server.stop().await;
    wait_session(&mut session.events, |e| is_state(e, &RECONNECTING)).await;
    // Past the default 24 h session lifetime while the server was down.
    server.clock.advance(Duration::from_secs(24 * 3600));
    server.restart().await;
    wait_session(&mut session.events, |e| is_state(e, &ConnState::Connected)).await;
    wait_session(&mut session.events, |e| joined(e, "general")).await;
    round_trip(&mut session, "with a new session").await;
    assert_eq!(server.password_hashes(), 1, "one password login, no more");
    let _ = session.commands.send(Command::Quit).await;
}

#[tokio::test]
async fn an_authenticator_uses_the_password_once_until_it_logs_out() {
    let server = TestServer::start().await;
    server.register("alice").await;
    let mut auth = Authenticator::new(server.config("alice"));
    for _ in 0..3 {
        auth.connect().await.expect("connects").close().await;
    }
    assert_eq!(auth.password_logins(), 1);

    auth.logout().await;
    let before = server.password_hashes();
    auth.connect().await.expect("connects").close().await;
    assert_eq!(
        auth.password_logins(),
        2,
        "a logged-out client logs in again"
    );
    assert_eq!(server.password_hashes(), before + 1);
}

#[tokio::test]
async fn chat_cli_tail_reconnects_after_a_restart_without_the_password() {
    let mut server = TestServer::start().await;
    for user in ["bob", "carol"] {
        server.register(user).await;
    }
    let mut carol = server.member("carol", "ops").await;
    let mut tail = chat_cli(&server, "bob")
        .args(["tail", "--room", "ops"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tail runs");
    let mut lines = BufReader::new(tail.stdout.take().expect("stdout")).lines();
    let mut errors = BufReader::new(tail.stderr.take().expect("stderr")).lines();
    wait_event(
        &mut carol,
        |e| matches!(e, ServerEvent::MemberJoined { user, .. } if user == "bob"),
    )
    .await;

    server.stop().await;
    let notice = tokio::time::timeout(WAIT, errors.next_line())
        .await
        .expect("tail notices in time")
        .expect("read")
        .expect("a line");
    assert!(notice.contains("connection lost"), "{notice}");
    server.restart().await;

    // One password check on the new server: this send's login. The tail
    // resumes where it was, so it prints the message whenever it is back.
    let status = chat_cli(&server, "carol")
        .args(["send", "--room", "ops", "after the restart"])
        .status()
        .await
        .expect("send runs");
    assert_eq!(status.code(), Some(0));
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("tail prints in time")
        .expect("read")
        .expect("a line");
    assert!(line.ends_with("carol: after the restart"), "{line}");
    assert_eq!(
        server.password_hashes(),
        1,
        "the tail reconnected with its session"
    );
    let _ = tail.kill().await;
}

/// A server whose message store does not outlive it (`--storage memory`)
/// comes back with a new epoch: the session's resume names the old one, so
/// the server answers a plain join, and the session first says the room's
/// history was reset, then carries on in the new numbering.
#[tokio::test]
async fn a_new_epoch_after_a_restart_resets_the_room_instead_of_resuming_into_it() {
    let mut server = TestServer::with(|config| config.storage = chat_server::Storage::Memory).await;
    server.register("alice").await;
    server.register("bob").await;
    let mut session = spawn_session(server.config("alice"), vec![("general".into(), None)]);
    let old_epoch = match wait_session(&mut session.events, |e| {
        matches!(e, SessionEvent::Server(ServerEvent::Joined { .. }))
    })
    .await
    {
        SessionEvent::Server(ServerEvent::Joined { epoch, .. }) => epoch,
        _ => unreachable!(),
    };
    let mut bob = server.member("bob", "general").await;
    for text in ["old 1", "old 2"] {
        bob.send(&chat_protocol::ClientEvent::SendMessage {
            room: "general".into(),
            text: text.into(),
            client_id: None,
        })
        .await
        .expect("send");
    }
    wait_session(
        &mut session.events,
        |e| matches!(e, SessionEvent::Server(ServerEvent::NewMessage(m)) if m.text == "old 2"),
    )
    .await;
    bob.close().await;

    server.restart().await;
    wait_session(
        &mut session.events,
        |e| matches!(e, SessionEvent::HistoryReset { room } if room == "general"),
    )
    .await;
    let SessionEvent::Server(ServerEvent::Joined {
        epoch, last_seq, ..
    }) = wait_session(&mut session.events, |e| {
        matches!(e, SessionEvent::Server(ServerEvent::Joined { .. }))
    })
    .await
    else {
        unreachable!()
    };
    assert_ne!(epoch, old_epoch);
    assert_eq!(last_seq, 0, "the new store is empty");

    // The new numbering from 1; and a refusal comes back matched to its
    // request by its ref.
    session
        .commands
        .send(Command::Send {
            room: "general".into(),
            text: "new 1".into(),
        })
        .await
        .expect("send");
    let SessionEvent::Server(ServerEvent::NewMessage(m)) = wait_session(&mut session.events, |e| {
        matches!(e, SessionEvent::Server(ServerEvent::NewMessage(_)))
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!((m.seq, m.text.as_str()), (1, "new 1"));
    session
        .commands
        .send(Command::Send {
            room: "nowhere".into(),
            text: "lost".into(),
        })
        .await
        .expect("send");
    let refused = wait_session(&mut session.events, |e| {
        matches!(e, SessionEvent::Refused { .. })
    })
    .await;
    let SessionEvent::Refused { request, code, .. } = refused else {
        unreachable!()
    };
    assert_eq!(code, chat_protocol::ErrorCode::NotInRoom);
    assert!(
        matches!(
            &request,
            chat_protocol::ClientEvent::SendMessage { room, text, client_id: Some(_) }
                if room == "nowhere" && text == "lost"
        ),
        "{request:?}"
    );
    let _ = session.commands.send(Command::Quit).await;
}
