//! The published JSON Schemas (`docs/schema/`) against the protocol crate and
//! `docs/protocol.md`: the committed files are what the crate generates, every
//! event the crate can produce validates, every example frame in the document
//! validates, and frames the server refuses do not.
//!
//! After changing an event, regenerate the files with `make schema`
//! (`CHAT_UPDATE_SCHEMA=1 cargo test -p chat-protocol --test schema`).

use std::path::{Path, PathBuf};

use chat_protocol::schema;
use chat_protocol::{ChatMessage, ClientEvent, ErrorCode, Limits, RoomInfo, ServerEvent};
use serde_json::Value;

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::draft202012::new(schema).expect("the schema is valid JSON Schema 2020-12")
}

fn errors(v: &jsonschema::Validator, frame: &str) -> Vec<String> {
    let value: Value = serde_json::from_str(frame).expect("JSON");
    v.iter_errors(&value).map(|e| e.to_string()).collect()
}

#[test]
fn the_committed_schemas_are_the_generated_ones() {
    for (file, generated) in [
        ("client-event.json", schema::client_event()),
        ("server-event.json", schema::server_event()),
    ] {
        let path = docs().join("schema").join(file);
        let text = serde_json::to_string_pretty(&generated).expect("json") + "\n";
        if std::env::var("CHAT_UPDATE_SCHEMA").as_deref() == Ok("1") {
            std::fs::write(&path, &text).expect("write the schema");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "{} is not what the protocol crate generates; run `make schema` and commit it",
            path.display()
        );
    }
}

#[test]
fn the_asyncapi_document_points_at_both_schemas_and_names_every_event() {
    let doc = std::fs::read_to_string(docs().join("asyncapi.yaml")).expect("docs/asyncapi.yaml");
    for file in ["schema/client-event.json", "schema/server-event.json"] {
        assert!(doc.contains(file), "asyncapi.yaml refers to {file}");
    }
    let server_types = server_examples()
        .iter()
        .map(|e| type_of(&e.to_json()))
        .collect::<Vec<_>>();
    for kind in ClientEvent::TYPES
        .iter()
        .map(|t| t.to_string())
        .chain(server_types)
    {
        assert!(
            doc.contains(&format!("const: {kind}")),
            "asyncapi.yaml describes `{kind}`"
        );
    }
}

fn type_of(frame: &str) -> String {
    let value: Value = serde_json::from_str(frame).expect("json");
    value["type"].as_str().expect("type").to_owned()
}

fn message(seq: u64) -> ChatMessage {
    ChatMessage {
        id: seq.to_string(),
        room: "general".into(),
        seq,
        from: "bob".into(),
        text: "héllo 👋".into(),
        sent_at: "2026-11-24T09:30:00.123Z".into(),
    }
}

/// One of every server event, optional fields both ways; the match makes a
/// new variant a compile error here until it is added.
fn server_examples() -> Vec<ServerEvent> {
    let all = vec![
        ServerEvent::Welcome {
            protocol_version: 1,
            server: "chat-server/0.1.0".into(),
            user: "alice".into(),
            limits: Limits {
                max_message_bytes: 65536,
                max_rooms: 32,
                messages_per_second: 5.0,
                message_burst: 20,
                ping_interval_ms: 20000,
                pong_timeout_ms: 10000,
            },
        },
        ServerEvent::Joined {
            room: "general".into(),
            members: vec!["alice".into(), "bob".into()],
            members_total: None,
            last_seq: 2,
            history: vec![message(1), message(2)],
            epoch: "5d1c9e0a".into(),
        },
        ServerEvent::Joined {
            room: "crowded".into(),
            members: vec!["alice".into()],
            members_total: Some(5_000),
            last_seq: 0,
            history: vec![],
            epoch: "5d1c9e0a".into(),
        },
        ServerEvent::Ack {
            room: "general".into(),
            seq: 3,
            id: "3".into(),
            client_id: Some("c-1".into()),
        },
        ServerEvent::Ack {
            room: "general".into(),
            seq: 4,
            id: "4".into(),
            client_id: None,
        },
        ServerEvent::HistoryPage {
            room: "general".into(),
            messages: vec![message(1)],
            first_seq: Some(1),
        },
        ServerEvent::HistoryPage {
            room: "general".into(),
            messages: vec![],
            first_seq: None,
        },
        ServerEvent::HistoryGap {
            room: "general".into(),
            from: 3,
            to: 5,
        },
        ServerEvent::Left {
            room: "general".into(),
        },
        ServerEvent::MemberJoined {
            room: "general".into(),
            user: "bob".into(),
        },
        ServerEvent::MemberLeft {
            room: "general".into(),
            user: "bob".into(),
        },
        ServerEvent::NewMessage(message(7)),
        ServerEvent::RoomList {
            rooms: vec![
                RoomInfo {
                    name: "general".into(),
                    members: 2,
                    last_seq: 8,
                    last_activity: Some("2026-11-24T09:30:00.123Z".into()),
                },
                RoomInfo {
                    name: "quiet".into(),
                    members: 0,
                    last_seq: 0,
                    last_activity: None,
                },
            ],
            next: Some("quiet".into()),
        },
        ServerEvent::RoomList {
            rooms: vec![],
            next: None,
        },
        ServerEvent::error(ErrorCode::RateLimited, "slow down"),
    ];
    for event in &all {
        match event {
            ServerEvent::Welcome { .. }
            | ServerEvent::Joined { .. }
            | ServerEvent::Ack { .. }
            | ServerEvent::HistoryPage { .. }
            | ServerEvent::HistoryGap { .. }
            | ServerEvent::Left { .. }
            | ServerEvent::MemberJoined { .. }
            | ServerEvent::MemberLeft { .. }
            | ServerEvent::NewMessage(_)
            | ServerEvent::RoomList { .. }
            | ServerEvent::Error { .. } => {}
        }
    }
    all
}

fn client_examples() -> Vec<ClientEvent> {
    let all = vec![
        ClientEvent::JoinRoom {
            room: "general".into(),
            since: None,
            epoch: None,
        },
        ClientEvent::JoinRoom {
            room: "general".into(),
            since: Some(41),
            epoch: Some("5d1c9e0a".into()),
        },
        ClientEvent::LeaveRoom {
            room: "general".into(),
        },
        ClientEvent::SendMessage {
            room: "general".into(),
            text: "hi".into(),
            client_id: Some("c-7f3a".into()),
        },
        ClientEvent::SendMessage {
            room: "general".into(),
            text: "hi".into(),
            client_id: None,
        },
        ClientEvent::History {
            room: "general".into(),
            before: Some(120),
            limit: Some(50),
        },
        ClientEvent::History {
            room: "general".into(),
            before: None,
            limit: None,
        },
        ClientEvent::ListRooms {
            after: Some("general".into()),
            limit: Some(100),
        },
        ClientEvent::ListRooms {
            after: None,
            limit: None,
        },
    ];
    for event in &all {
        match event {
            ClientEvent::JoinRoom { .. }
            | ClientEvent::LeaveRoom { .. }
            | ClientEvent::SendMessage { .. }
            | ClientEvent::History { .. }
            | ClientEvent::ListRooms { .. } => {}
        }
    }
    all
}

#[test]
fn every_event_the_crate_produces_validates() {
    let server = validator(&schema::server_event());
    for event in server_examples() {
        for frame in [event.to_json(), event.to_json_with_ref(Some("r-1"))] {
            assert_eq!(errors(&server, &frame), Vec::<String>::new(), "{frame}");
        }
    }
    let client = validator(&schema::client_event());
    for event in client_examples() {
        for frame in [event.to_json(), event.to_json_with_ref("r-1")] {
            assert_eq!(errors(&client, &frame), Vec::<String>::new(), "{frame}");
            ClientEvent::decode(&frame).expect("and the server decodes it");
        }
    }
}

#[test]
fn frames_the_server_refuses_do_not_validate() {
    let client = validator(&schema::client_event());
    let long_ref = format!(r#"{{"type":"list_rooms","ref":"{}"}}"#, "r".repeat(65));
    for frame in [
        r#"{"type":"dance"}"#,
        r#"{"type":"join_room","payload":{}}"#,
        r#"{"type":"send_message","payload":{"room":"general"}}"#,
        r#"{"type":"join_room","payload":{"room":"general","since":-1}}"#,
        r#"{"type":"leave_room"}"#,
        r#"{"type":"list_rooms","ref":7}"#,
        long_ref.as_str(),
    ] {
        assert!(!errors(&client, frame).is_empty(), "{frame} is refused");
    }
    // A payload-less event may omit its payload or send null, as the document says.
    for frame in [
        r#"{"type":"list_rooms"}"#,
        r#"{"type":"list_rooms","payload":null}"#,
    ] {
        assert_eq!(errors(&client, frame), Vec::<String>::new(), "{frame}");
    }
    let server = validator(&schema::server_event());
    assert!(!errors(&server, r#"{"type":"ack","payload":{"room":"general"}}"#).is_empty());
}

/// Every example frame of docs/protocol.md: the JSON lines of its code
/// blocks, including the `>`/`<` lines of its session transcript, that are
/// whole JSON objects with a `type`.
#[test]
fn every_example_in_the_protocol_document_validates() {
    let doc = std::fs::read_to_string(docs().join("protocol.md")).expect("protocol.md");
    let client = validator(&schema::client_event());
    let server = validator(&schema::server_event());
    let mut checked = std::collections::BTreeSet::new();
    let mut in_block = false;
    for line in doc.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        let candidate = trimmed
            .strip_prefix("> ")
            .or_else(|| trimmed.strip_prefix("< "))
            .unwrap_or(trimmed);
        let Ok(value) = serde_json::from_str::<Value>(candidate) else {
            continue;
        };
        let Some(kind) = value.get("type").and_then(Value::as_str) else {
            continue; // an HTTP body
        };
        let v = if ClientEvent::TYPES.contains(&kind) {
            &client
        } else {
            &server
        };
        let problems: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
        if kind == "dance" {
            assert!(
                !problems.is_empty(),
                "the unknown event of section 13 is refused"
            );
        } else {
            assert_eq!(problems, Vec::<String>::new(), "{candidate}");
        }
        checked.insert(kind.to_owned());
    }
    let every: Vec<String> = ClientEvent::TYPES
        .iter()
        .map(|t| t.to_string())
        .chain(server_examples().iter().map(|e| type_of(&e.to_json())))
        .collect();
    for kind in every {
        assert!(
            checked.contains(&kind),
            "protocol.md shows a `{kind}` frame"
        );
    }
}
