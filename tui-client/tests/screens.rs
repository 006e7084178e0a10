//! Whole screens drawn on ratatui's TestBackend and compared with snapshots
//! (`tests/snapshots/`; review changes with `cargo insta review` or by diff).

use std::time::Duration;

use chat_protocol::{ChatMessage, RoomInfo, ServerEvent};
use chat_tui::client::{ConnState, SessionEvent};
use chat_tui::tui::app::{App, AppEvent, Clock};
use chat_tui::tui::ui;
use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn render(app: &App, width: u16, height: u16) -> TestBackend {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("terminal");
    terminal.draw(|frame| ui::draw(frame, app)).expect("draw");
    terminal.backend().clone()
}

fn server(app: &mut App, event: ServerEvent) {
    app.update(AppEvent::Session(SessionEvent::Server(event)));
}

fn say(app: &mut App, room: &str, from: &str, minute: u32, text: &str) {
    server(
        app,
        ServerEvent::NewMessage(ChatMessage {
            id: format!("{minute}"),
            room: room.into(),
            seq: u64::from(minute),
            from: from.into(),
            text: text.into(),
            sent_at: format!("2026-11-24T09:{minute:02}:00.000Z"),
        }),
    );
}

fn key(app: &mut App, code: KeyCode) {
    app.update(AppEvent::Terminal(Event::Key(KeyEvent::new(
        code,
        KeyModifiers::NONE,
    ))));
}

/// alice in `general` (shown) and `dev`, with some history and a directory.
fn busy_app() -> App {
    let mut app = App::new("alice", "http://127.0.0.1:8080", Clock::Utc);
    app.update(AppEvent::Session(SessionEvent::State(ConnState::Connected)));
    for (room, members) in [
        ("general", vec!["alice", "bob", "李雷"]),
        ("dev", vec!["alice", "carol"]),
    ] {
        server(
            &mut app,
            ServerEvent::Joined {
                room: room.into(),
                members: members.into_iter().map(String::from).collect(),
                members_total: None,
                last_seq: 0,
                history: vec![],
                epoch: "e".into(),
            },
        );
    }
    server(
        &mut app,
        ServerEvent::RoomList {
            rooms: vec![
                RoomInfo {
                    name: "dev".into(),
                    members: 2,
                    last_seq: 0,
                    last_activity: None,
                },
                RoomInfo {
                    name: "general".into(),
                    members: 3,
                    last_seq: 0,
                    last_activity: None,
                },
                RoomInfo {
                    name: "random".into(),
                    members: 7,
                    last_seq: 0,
                    last_activity: None,
                },
            ],
            next: None,
        },
    );
    say(&mut app, "general", "bob", 1, "morning all 👋");
    say(
        &mut app,
        "general",
        "李雷",
        2,
        "你好，今天的会议改到下午三点。",
    );
    say(
        &mut app,
        "general",
        "alice",
        3,
        "sounds good, I will move the standup and tell the others who are not here yet",
    );
    say(
        &mut app,
        "general",
        "bob",
        4,
        "\x1b[31mred?\x1b[0m \x1b]0;retitled\x07 no: inert",
    );
    server(
        &mut app,
        ServerEvent::MemberJoined {
            room: "general".into(),
            user: "dave".into(),
        },
    );
    say(&mut app, "dev", "carol", 5, "alice: can you review #42?");
    say(&mut app, "dev", "carol", 6, "thanks!");
    app
}

#[test]
fn main_layout() {
    let app = busy_app();
    insta::assert_snapshot!(render(&app, 100, 16));
}

#[test]
fn narrow_terminal_shows_the_chat_alone() {
    let app = busy_app();
    insta::assert_snapshot!(render(&app, 40, 14));
}

#[test]
fn room_selector_with_a_typed_name() {
    let mut app = busy_app();
    key(&mut app, KeyCode::Esc);
    for c in "ra".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    insta::assert_snapshot!(render(&app, 100, 12));
}

#[test]
fn reconnecting_status_and_lobby_help() {
    let mut app = App::new("alice", "http://127.0.0.1:8080", Clock::Utc);
    app.update(AppEvent::Session(SessionEvent::State(
        ConnState::Reconnecting {
            attempt: 3,
            delay: Duration::from_millis(2400),
            reason: "cannot reach the server: connection refused".into(),
        },
    )));
    insta::assert_snapshot!(render(&app, 100, 18));
}

#[test]
fn opening_a_room_marks_where_its_new_messages_begin() {
    let mut app = busy_app();
    app.update(AppEvent::Terminal(Event::Key(KeyEvent::new(
        KeyCode::Char('2'),
        KeyModifiers::ALT,
    ))));
    insta::assert_snapshot!(render(&app, 100, 12));
}
