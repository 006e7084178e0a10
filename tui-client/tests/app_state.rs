//! chat-tui's state and update function, without any terminal.

use chat_protocol::{ChatMessage, RoomInfo, ServerEvent};
use chat_tui::client::{Command, ConnState, SessionEvent};
use chat_tui::tui::app::{App, AppEvent, ChatLine, Clock, Focus, Status};
use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};

fn key(code: KeyCode) -> AppEvent {
    AppEvent::Terminal(Event::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

fn ctrl(c: char) -> AppEvent {
    AppEvent::Terminal(Event::Key(KeyEvent::new(
        KeyCode::Char(c),
        KeyModifiers::CONTROL,
    )))
}

fn alt(c: char) -> AppEvent {
    AppEvent::Terminal(Event::Key(KeyEvent::new(
        KeyCode::Char(c),
        KeyModifiers::ALT,
    )))
}

fn server(event: ServerEvent) -> AppEvent {
    AppEvent::Session(SessionEvent::Server(event))
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        app.update(key(KeyCode::Char(c)));
    }
}

fn message(room: &str, from: &str, text: &str) -> AppEvent {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    server(ServerEvent::NewMessage(ChatMessage {
        id: seq.to_string(),
        room: room.into(),
        seq,
        from: from.into(),
        text: text.into(),
        sent_at: "2026-11-24T09:30:00.000Z".into(),
    }))
}

fn joined(room: &str, members: &[&str]) -> AppEvent {
    server(ServerEvent::Joined {
        room: room.into(),
        members: members.iter().map(|m| m.to_string()).collect(),
        members_total: None,
        last_seq: 0,
        history: vec![],
        epoch: "e".into(),
    })
}

/// An app connected as alice, in rooms `general` (shown) and `dev`.
fn connected_app() -> App {
    let mut app = App::new("alice", "http://127.0.0.1:8080", Clock::Utc);
    app.update(AppEvent::Session(SessionEvent::State(ConnState::Connected)));
    app.update(joined("general", &["alice", "bob"]));
    app.update(joined("dev", &["alice"]));
    app
}

fn current(app: &App) -> &str {
    &app.current_room().expect("a room is shown").name
}

#[test]
fn the_first_joined_room_is_shown_and_rooms_switch_by_key() {
    let mut app = connected_app();
    assert_eq!(current(&app), "general");
    app.update(ctrl('n'));
    assert_eq!(current(&app), "dev");
    app.update(ctrl('n'));
    assert_eq!(current(&app), "general", "wraps around");
    app.update(ctrl('p'));
    assert_eq!(current(&app), "dev");
    app.update(alt('1'));
    assert_eq!(current(&app), "general");
    app.update(alt('9'));
    assert_eq!(current(&app), "general", "no ninth room: nothing changes");
}

#[test]
fn messages_elsewhere_count_as_unread_until_shown() {
    let mut app = connected_app();
    app.update(message("dev", "bob", "one"));
    app.update(message("dev", "bob", "two"));
    app.update(message("general", "bob", "here"));
    let dev = &app.rooms[1];
    assert_eq!(
        (dev.name.as_str(), dev.unread, dev.mentioned),
        ("dev", 2, false)
    );
    assert_eq!(app.rooms[0].unread, 0, "the shown room has no unread");

    app.update(message("dev", "bob", "hey ALICE, look"));
    assert!(app.rooms[1].mentioned);
    app.update(alt('2'));
    assert_eq!((app.rooms[1].unread, app.rooms[1].mentioned), (0, false));
}

#[test]
fn mentions_are_whole_words() {
    use chat_tui::tui::app::mentions;
    assert!(mentions("alice: hi", "alice"));
    assert!(mentions("thanks Alice.", "alice"));
    assert!(!mentions("malice aforethought", "alice"));
    assert!(!mentions("alice_bot says hi", "alice"));
}

#[test]
fn received_escape_sequences_are_stored_inert() {
    let mut app = connected_app();
    app.update(message("general", "bob", "\x1b[2J\x1b]0;owned\x07hi"));
    let Some(ChatLine::Message { text, .. }) = app.rooms[0].lines.last() else {
        panic!("expected a message line");
    };
    assert!(!text.chars().any(char::is_control), "{text:?}");
    assert_eq!(text, "␛[2J␛]0;owned␇hi");
}

#[test]
fn enter_sends_to_the_shown_room_and_keeps_history() {
    let mut app = connected_app();
    type_text(&mut app, "héllo 你好");
    app.update(key(KeyCode::Left));
    app.update(key(KeyCode::Backspace));
    assert_eq!(app.input.text(), "héllo 好");
    let commands = app.update(key(KeyCode::Enter));
    assert_eq!(
        commands,
        [Command::Send {
            room: "general".into(),
            text: "héllo 好".into()
        }]
    );
    assert!(app.input.is_empty());
    app.update(key(KeyCode::Up));
    assert_eq!(app.input.text(), "héllo 好");
}

#[test]
fn offline_input_stays_in_the_line() {
    let mut app = connected_app();
    app.update(AppEvent::Session(SessionEvent::State(
        ConnState::Reconnecting {
            attempt: 1,
            delay: std::time::Duration::from_secs(1),
            reason: "connection dropped".into(),
        },
    )));
    type_text(&mut app, "later");
    assert!(app.update(key(KeyCode::Enter)).is_empty());
    assert_eq!(app.input.text(), "later");
    assert!(
        matches!(app.rooms[0].lines.last(), Some(ChatLine::Info(t)) if t.contains("connection lost"))
    );

    app.update(AppEvent::Session(SessionEvent::State(ConnState::Connected)));
    assert!(
        matches!(app.rooms[0].lines.last(), Some(ChatLine::Info(t)) if t.contains("reconnected"))
    );
    assert_eq!(
        app.update(key(KeyCode::Enter)).len(),
        1,
        "sent once back online"
    );
}

#[test]
fn the_selector_picks_listed_rooms_or_creates_typed_ones() {
    let mut app = connected_app();
    app.update(server(ServerEvent::RoomList {
        rooms: vec![
            RoomInfo {
                name: "dev".into(),
                members: 1,
                last_seq: 0,
                last_activity: None,
            },
            RoomInfo {
                name: "general".into(),
                members: 2,
                last_seq: 0,
                last_activity: None,
            },
            RoomInfo {
                name: "random".into(),
                members: 5,
                last_seq: 0,
                last_activity: None,
            },
        ],
        next: None,
    }));
    app.update(key(KeyCode::Esc));
    assert!(matches!(app.focus, Focus::Rooms { .. }));
    let names: Vec<String> = app.selector_entries().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["dev", "general", "random"]);

    // Arrows and Enter pick a listed room.
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Down));
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        [Command::Join("random".into())]
    );
    assert_eq!(app.focus, Focus::Input);
    app.update(joined("random", &["alice", "carol"]));
    assert_eq!(
        current(&app),
        "random",
        "a room the user picked is shown once joined"
    );

    // Typing a new name offers to create it, first in the list.
    app.update(key(KeyCode::Esc));
    type_text(&mut app, "ran");
    assert_eq!(app.selector_entries()[0].name, "ran");
    assert!(app.selector_entries()[0].create);
    type_text(&mut app, "dom2");
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        [Command::Join("random2".into())]
    );
}

#[test]
fn commands_join_leave_and_validate() {
    let mut app = connected_app();
    type_text(&mut app, "/join bad name");
    // Only the first word counts as the room name.
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        [Command::Join("bad".into())]
    );
    type_text(&mut app, "/join café");
    assert!(app.update(key(KeyCode::Enter)).is_empty());
    assert!(app
        .note
        .as_deref()
        .unwrap_or_default()
        .contains("invalid room name"));
    type_text(&mut app, "/leave");
    assert_eq!(
        app.update(key(KeyCode::Enter)),
        [Command::Leave("general".into())]
    );
    app.update(server(ServerEvent::Left {
        room: "general".into(),
    }));
    assert_eq!(current(&app), "dev");
    type_text(&mut app, "/quit");
    assert_eq!(app.update(key(KeyCode::Enter)), [Command::Quit]);
    assert!(app.quit.is_some());
}

#[test]
fn members_are_tracked_and_tab_completes_them() {
    let mut app = connected_app();
    app.update(server(ServerEvent::MemberJoined {
        room: "general".into(),
        user: "bobby".into(),
    }));
    type_text(&mut app, "bobb");
    app.update(key(KeyCode::Tab));
    assert_eq!(app.input.text(), "bobby: ");
    app.update(server(ServerEvent::MemberLeft {
        room: "general".into(),
        user: "bob".into(),
    }));
    let members: Vec<&str> = app.rooms[0].members.iter().map(String::as_str).collect();
    assert_eq!(members, ["alice", "bobby"]);
}

#[test]
fn a_wrong_password_at_start_quits_with_the_reason() {
    let mut app = App::new("alice", "http://x", Clock::Utc);
    app.update(AppEvent::Session(SessionEvent::Fatal(
        chat_tui::client::ClientError::Auth("wrong user name or password".into()),
    )));
    assert!(matches!(app.status, Status::Failed(_)));
    assert!(app
        .quit
        .as_deref()
        .unwrap_or_default()
        .contains("wrong user name or password"));
}

#[test]
fn a_scrolled_view_stays_put_while_messages_arrive() {
    let mut app = connected_app();
    app.size = (100, 30);
    for i in 0..40 {
        app.update(message("general", "bob", &format!("line {i}")));
    }
    app.update(key(KeyCode::PageUp));
    let scrolled = app.rooms[0].scroll;
    assert!(scrolled > 0);
    app.update(message("general", "bob", "one more"));
    assert_eq!(
        app.rooms[0].scroll,
        scrolled + 1,
        "the view moved with the new line"
    );
    app.update(key(KeyCode::PageDown));
    app.update(key(KeyCode::PageDown));
    app.update(message("general", "bob", "following again"));
    assert_eq!(app.rooms[0].scroll, 0);
}

fn stored(room: &str, seq: u64, text: &str) -> ChatMessage {
    ChatMessage {
        id: seq.to_string(),
        room: room.into(),
        seq,
        from: "bob".into(),
        text: text.into(),
        sent_at: "2026-11-24T09:30:00.000Z".into(),
    }
}

#[test]
fn joining_shows_history_and_paging_back_prepends_older_messages() {
    let mut app = App::new("alice", "http://x", Clock::Utc);
    app.size = (100, 30);
    app.update(AppEvent::Session(SessionEvent::State(ConnState::Connected)));
    app.update(server(ServerEvent::Joined {
        room: "r".into(),
        members: vec!["alice".into()],
        members_total: None,
        last_seq: 12,
        history: (8..=12).map(|s| stored("r", s, &format!("m{s}"))).collect(),
        epoch: "e".into(),
    }));
    assert_eq!(app.rooms[0].lines.len(), 5, "scrollback shown");
    assert_eq!(app.rooms[0].oldest_seq, Some(8));

    // PageUp at the top of what is loaded asks for what came before.
    let commands = app.update(key(KeyCode::PageUp));
    assert_eq!(
        commands,
        [Command::History {
            room: "r".into(),
            before: 8
        }]
    );
    assert!(
        app.update(key(KeyCode::PageUp)).is_empty(),
        "one request at a time"
    );
    app.update(server(ServerEvent::HistoryPage {
        room: "r".into(),
        messages: (1..=7).map(|s| stored("r", s, &format!("m{s}"))).collect(),
        first_seq: Some(1),
    }));
    let texts: Vec<&str> = app.rooms[0]
        .lines
        .iter()
        .filter_map(|l| match l {
            ChatLine::Message { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, (1..=12).map(|s| format!("m{s}")).collect::<Vec<_>>());
    assert!(app.rooms[0].history_complete);
    assert!(
        app.update(key(KeyCode::PageUp)).is_empty(),
        "nothing older to ask for"
    );
}

#[test]
fn a_room_with_unread_messages_opens_with_a_marker_where_they_begin() {
    let mut app = connected_app();
    app.update(message("dev", "bob", "seen before"));
    app.update(alt('2'));
    app.update(alt('1'));
    app.update(message("dev", "bob", "new one"));
    app.update(message("dev", "bob", "new two"));
    app.update(alt('2'));
    let dev = &app.rooms[1];
    let (at, count) = dev.marker.expect("marker set");
    assert_eq!(count, 2);
    assert!(matches!(&dev.lines[at], ChatLine::Message { text, .. } if text == "new one"));
    // Leaving the room clears it.
    app.update(alt('1'));
    assert_eq!(app.rooms[1].marker, None);
}

#[test]
fn a_history_gap_is_shown_in_the_room() {
    let mut app = connected_app();
    app.update(server(ServerEvent::HistoryGap {
        room: "general".into(),
        from: 3,
        to: 5,
    }));
    assert!(matches!(
        app.rooms[0].lines.last(),
        Some(ChatLine::Error(t)) if t.contains("3 to 5") && t.contains("no longer stored")
    ));
}

#[test]
fn a_reset_history_replaces_the_rooms_messages_and_says_so() {
    let mut app = connected_app();
    app.update(message("general", "bob", "from the old history"));
    app.update(AppEvent::Session(SessionEvent::HistoryReset {
        room: "general".into(),
    }));
    let m = |seq: u64, text: &str| ChatMessage {
        id: format!("n{seq}"),
        room: "general".into(),
        seq,
        from: "bob".into(),
        text: text.into(),
        sent_at: "2026-11-24T09:30:00.000Z".into(),
    };
    app.update(server(ServerEvent::Joined {
        room: "general".into(),
        members: vec!["alice".into(), "bob".into()],
        members_total: None,
        last_seq: 1,
        history: vec![m(1, "the new history")],
        epoch: "new".into(),
    }));
    let lines = &app.rooms[0].lines;
    assert!(
        matches!(&lines[0], ChatLine::Error(t) if t.contains("history was reset")),
        "{lines:?}"
    );
    assert!(
        matches!(&lines[1], ChatLine::Message { text, .. } if text == "the new history"),
        "{lines:?}"
    );
    assert_eq!(
        lines.len(),
        2,
        "nothing of the old history is left: {lines:?}"
    );
    assert!(app.rooms[0].members.contains("bob"), "members are kept");
}

#[test]
fn a_refused_message_is_reported_in_its_room_and_offered_again() {
    let mut app = connected_app();
    app.update(AppEvent::Session(SessionEvent::Refused {
        request: chat_protocol::ClientEvent::SendMessage {
            room: "dev".into(),
            text: "too fast".into(),
            client_id: Some("c1".into()),
        },
        code: chat_protocol::ErrorCode::RateLimited,
        message: "slow down".into(),
    }));
    let dev = app.rooms.iter().find(|r| r.name == "dev").expect("dev");
    assert!(
        matches!(dev.lines.last(), Some(ChatLine::Error(t)) if t == "not sent: too fast (slow down)"),
        "{:?}",
        dev.lines
    );
    assert_eq!(app.input.text(), "too fast");
}

fn room_page(names: &[&str], next: Option<&str>) -> AppEvent {
    server(ServerEvent::RoomList {
        rooms: names
            .iter()
            .map(|name| RoomInfo {
                name: (*name).into(),
                members: 1,
                last_seq: 0,
                last_activity: None,
            })
            .collect(),
        next: next.map(Into::into),
    })
}

fn list_from(after: Option<&str>) -> Vec<Command> {
    vec![Command::ListRooms {
        after: after.map(Into::into),
    }]
}

#[test]
fn the_directory_is_read_page_by_page_and_shown_whole() {
    let mut app = App::new("alice", "http://127.0.0.1:8080", Clock::Utc);
    let commands = app.update(AppEvent::Session(SessionEvent::State(ConnState::Connected)));
    assert_eq!(commands, list_from(None), "connected: the first page");
    assert_eq!(
        app.update(room_page(&["a", "b"], Some("b"))),
        list_from(Some("b"))
    );
    assert!(app.directory.is_empty(), "no half list shown");
    assert_eq!(
        app.update(joined("general", &["alice"])),
        [],
        "no second reading while one is under way"
    );
    assert_eq!(app.update(room_page(&["c"], None)), []);
    let names: Vec<&str> = app.directory.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);

    // A refused page ends the reading; the next refresh starts afresh.
    assert_eq!(
        app.update(key(KeyCode::Esc)),
        list_from(None),
        "selector opened"
    );
    app.update(AppEvent::Session(SessionEvent::Refused {
        request: chat_protocol::ClientEvent::ListRooms {
            after: None,
            limit: None,
        },
        code: chat_protocol::ErrorCode::RateLimited,
        message: "slow down".into(),
    }));
    app.update(key(KeyCode::Esc));
    assert_eq!(app.update(key(KeyCode::Esc)), list_from(None), "reopened");
}

#[test]
fn the_directory_stops_at_its_cap() {
    let mut app = App::new("alice", "http://127.0.0.1:8080", Clock::Utc);
    app.update(AppEvent::Session(SessionEvent::State(ConnState::Connected)));
    let names: Vec<String> = (0..chat_tui::tui::app::MAX_DIRECTORY + 150)
        .map(|i| format!("r{i:05}"))
        .collect();
    let mut pages = names.chunks(200).peekable();
    while let Some(page) = pages.next() {
        let page: Vec<&str> = page.iter().map(String::as_str).collect();
        let next = pages
            .peek()
            .map(|_| *page.last().expect("a page has rooms"));
        let commands = app.update(room_page(&page, next));
        if app.directory.is_empty() {
            assert_eq!(commands, list_from(next), "reading on");
        } else {
            assert_eq!(commands, [], "done");
            break;
        }
    }
    assert_eq!(app.directory.len(), chat_tui::tui::app::MAX_DIRECTORY);
    assert_eq!(app.directory[0].name, names[0]);
}

#[test]
fn a_joined_that_lists_only_the_first_members_counts_the_rest() {
    let mut app = App::new("alice", "http://127.0.0.1:8080", Clock::Utc);
    app.update(AppEvent::Session(SessionEvent::State(ConnState::Connected)));
    app.update(server(ServerEvent::Joined {
        room: "big".into(),
        members: vec!["alice".into(), "bob".into()],
        members_total: Some(500),
        last_seq: 0,
        history: vec![],
        epoch: "e".into(),
    }));
    let room = app.current_room().expect("shown");
    assert_eq!((room.members.len(), room.unlisted), (2, 498));
}
