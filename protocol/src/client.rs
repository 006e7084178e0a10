//! Events a client sends to the server.

use serde::{Deserialize, Serialize};

use crate::ErrorCode;

/// A client-to-server event.
///
/// On the wire: `{"type": "join_room", "payload": {"room": "general"}}`. A missing
/// or `null` payload counts as `{}`; unknown payload fields are ignored so that
/// newer clients can talk to older servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "payload", rename_all = "snake_case")]
pub enum ClientEvent {
    /// Join a room, creating it if it does not exist. Joining a room one is
    /// already in is not an error: the server confirms again.
    JoinRoom {
        /// Room name, see [`crate::names::validate_room_name`].
        room: String,
        /// Resume: the last sequence number this client has of the room. The
        /// server then sends every stored message after it, in order, before
        /// `joined`, instead of the recent history.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
        /// With `since`: the `epoch` of the `joined` that numbered the
        /// client's messages. When it is not the server's, the history was
        /// replaced, `since` means nothing there, and the join is answered as
        /// a plain join (recent history), never as a resume into another history.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
    },
    /// Leave a room.
    LeaveRoom {
        /// A room the client has joined.
        room: String,
    },
    /// Send a message to every member of a room the client has joined.
    SendMessage {
        /// A room the client has joined.
        room: String,
        /// The message; must contain something other than white space.
        text: String,
        /// A client-chosen id (1 to 64 characters) that makes a resend of the
        /// same message harmless: it is stored and delivered once, and every
        /// send of it is acknowledged with the same sequence number.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
    /// Ask for older messages of a room the client has joined.
    History {
        /// The room.
        room: String,
        /// Only messages with a sequence number below this; absent: the newest.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<u64>,
        /// Most messages wanted (the server caps it at 200; default 50).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Ask for a page of the room directory: rooms that have members or
    /// stored messages, sorted by name (byte order of UTF-8).
    ListRooms {
        /// Only rooms whose name sorts after this one: the `next` of the
        /// previous page. Absent: from the first room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        /// Most rooms wanted (the server caps it at 200; default 100; 0
        /// counts as 1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
}

impl ClientEvent {
    /// Every `type` name a client may send, in declaration order.
    pub const TYPES: &'static [&'static str] = &[
        "join_room",
        "leave_room",
        "send_message",
        "history",
        "list_rooms",
    ];

    /// The wire `type` of this event.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::JoinRoom { .. } => "join_room",
            Self::LeaveRoom { .. } => "leave_room",
            Self::SendMessage { .. } => "send_message",
            Self::History { .. } => "history",
            Self::ListRooms { .. } => "list_rooms",
        }
    }

    /// Decodes one text frame, telling apart the ways it can be wrong so the
    /// server can answer with a precise error code. The frame's `ref`, if
    /// any, is dropped; [`ClientFrame::decode`] keeps it.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        ClientFrame::decode(text)
            .map(|frame| frame.event)
            .map_err(|refused| refused.error)
    }

    /// Decodes the `type` and `payload` of an already parsed frame object.
    fn from_object(
        frame: &mut serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, DecodeError> {
        let kind = match frame.remove("type") {
            Some(serde_json::Value::String(kind)) => kind,
            _ => return Err(DecodeError::InvalidFrame),
        };
        if !Self::TYPES.contains(&kind.as_str()) {
            return Err(DecodeError::UnknownType(kind));
        }
        let payload = match frame.remove("payload") {
            None | Some(serde_json::Value::Null) => serde_json::Value::Object(Default::default()),
            Some(payload) => payload,
        };
        let envelope = serde_json::json!({ "type": kind, "payload": payload });
        serde_json::from_value(envelope).map_err(|e| DecodeError::InvalidPayload {
            kind,
            reason: e.to_string(),
        })
    }

    /// Encodes this event as the JSON text of one frame.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("client events always serialize")
    }

    /// Encodes this event with a top-level `ref`, which the server copies
    /// onto its answer.
    pub fn to_json_with_ref(&self, reference: &str) -> String {
        let envelope = Referenced {
            event: self,
            reference: Some(reference),
        };
        serde_json::to_string(&envelope).expect("client events always serialize")
    }
}

/// Longest `ref`, in characters.
pub const MAX_REF_CHARS: usize = 64;

/// An event with the `ref` that sits beside `type` and `payload`.
#[derive(Serialize)]
pub(crate) struct Referenced<'a, E> {
    #[serde(flatten)]
    pub(crate) event: &'a E,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub(crate) reference: Option<&'a str>,
}

/// One decoded client frame: the event and the request's `ref`, which the
/// server echoes at the top level of its one answer to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFrame {
    /// What the client asks for.
    pub event: ClientEvent,
    /// The client's reference for this request (at most [`MAX_REF_CHARS`]).
    pub reference: Option<String>,
}

/// A frame that could not be decoded, with its `ref` when that much was
/// readable, so that even the `error` answer can carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedFrame {
    /// What was wrong.
    pub error: DecodeError,
    /// The frame's valid `ref`, if it had one.
    pub reference: Option<String>,
}

impl ClientFrame {
    /// Decodes one text frame and its `ref`.
    pub fn decode(text: &str) -> Result<Self, RefusedFrame> {
        let refused = |error, reference| RefusedFrame { error, reference };
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| refused(DecodeError::InvalidJson(e.to_string()), None))?;
        let serde_json::Value::Object(mut frame) = value else {
            return Err(refused(DecodeError::InvalidFrame, None));
        };
        let reference = match frame.remove("ref") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(r)) if r.chars().count() <= MAX_REF_CHARS => Some(r),
            Some(_) => return Err(refused(DecodeError::InvalidRef, None)),
        };
        match ClientEvent::from_object(&mut frame) {
            Ok(event) => Ok(Self { event, reference }),
            Err(error) => Err(refused(error, reference)),
        }
    }
}

/// Why a text frame could not be decoded into a [`ClientEvent`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON at all.
    #[error("frame is not valid JSON: {0}")]
    InvalidJson(String),
    /// JSON, but not an object with a string `type` field.
    #[error("frame must be a JSON object with a string \"type\" field")]
    InvalidFrame,
    /// A `type` this server does not know.
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    /// A `ref` that is not a string of at most [`MAX_REF_CHARS`] characters.
    #[error("\"ref\" must be a string of at most {MAX_REF_CHARS} characters")]
    InvalidRef,
    /// A known `type` whose payload lacks fields or has wrong types.
    #[error("invalid payload for {kind:?}: {reason}")]
    InvalidPayload {
        /// The event type.
        kind: String,
        /// What serde found wrong.
        reason: String,
    },
}

impl DecodeError {
    /// The error code the server answers this with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidJson(_) => ErrorCode::InvalidJson,
            Self::InvalidFrame | Self::InvalidRef => ErrorCode::InvalidFrame,
            Self::UnknownType(_) => ErrorCode::UnknownType,
            Self::InvalidPayload { .. } => ErrorCode::InvalidPayload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples() -> Vec<(ClientEvent, &'static str)> {
        vec![
            (
                ClientEvent::JoinRoom {
                    room: "general".into(),
                    since: None,
                    epoch: None,
                },
                r#"{"type":"join_room","payload":{"room":"general"}}"#,
            ),
            (
                ClientEvent::JoinRoom {
                    room: "general".into(),
                    since: Some(41),
                    epoch: Some("e1f2".into()),
                },
                r#"{"type":"join_room","payload":{"room":"general","since":41,"epoch":"e1f2"}}"#,
            ),
            (
                ClientEvent::LeaveRoom {
                    room: "general".into(),
                },
                r#"{"type":"leave_room","payload":{"room":"general"}}"#,
            ),
            (
                ClientEvent::SendMessage {
                    room: "general".into(),
                    text: "héllo 👋".into(),
                    client_id: None,
                },
                r#"{"type":"send_message","payload":{"room":"general","text":"héllo 👋"}}"#,
            ),
            (
                ClientEvent::SendMessage {
                    room: "general".into(),
                    text: "once".into(),
                    client_id: Some("c-7f3a".into()),
                },
                r#"{"type":"send_message","payload":{"room":"general","text":"once","client_id":"c-7f3a"}}"#,
            ),
            (
                ClientEvent::History {
                    room: "general".into(),
                    before: Some(120),
                    limit: Some(50),
                },
                r#"{"type":"history","payload":{"room":"general","before":120,"limit":50}}"#,
            ),
            (
                ClientEvent::ListRooms {
                    after: None,
                    limit: None,
                },
                r#"{"type":"list_rooms","payload":{}}"#,
            ),
        ]
    }

    #[test]
    fn encodes_and_decodes_exact_json() {
        for (event, json) in examples() {
            assert_eq!(event.to_json(), json);
            assert_eq!(ClientEvent::decode(json), Ok(event));
        }
    }

    #[test]
    fn types_list_matches_every_variant() {
        let mut kinds: Vec<&str> = examples().iter().map(|(e, _)| e.kind()).collect();
        kinds.dedup();
        assert_eq!(kinds, ClientEvent::TYPES);
        for (event, json) in examples() {
            assert!(json.starts_with(&format!(r#"{{"type":"{}""#, event.kind())));
        }
    }

    #[test]
    fn missing_or_null_payload_means_empty() {
        assert_eq!(
            ClientEvent::decode(r#"{"type":"list_rooms"}"#),
            Ok(ClientEvent::ListRooms {
                after: None,
                limit: None
            })
        );
        assert_eq!(
            ClientEvent::decode(r#"{"type":"list_rooms","payload":null}"#),
            Ok(ClientEvent::ListRooms {
                after: None,
                limit: None
            })
        );
    }

    #[test]
    fn unknown_payload_fields_are_ignored() {
        assert_eq!(
            ClientEvent::decode(r#"{"type":"join_room","payload":{"room":"a","extra":1}}"#),
            Ok(ClientEvent::JoinRoom {
                room: "a".into(),
                since: None,
                epoch: None,
            })
        );
    }

    #[test]
    fn each_kind_of_bad_frame_has_its_own_error() {
        let cases = [
            ("{not json", ErrorCode::InvalidJson),
            ("[1,2]", ErrorCode::InvalidFrame),
            (r#"{"payload":{}}"#, ErrorCode::InvalidFrame),
            (r#"{"type":7}"#, ErrorCode::InvalidFrame),
            (r#"{"type":"list_rooms","ref":5}"#, ErrorCode::InvalidFrame),
            (r#"{"type":"dance","payload":{}}"#, ErrorCode::UnknownType),
            (
                r#"{"type":"join_room","payload":{}}"#,
                ErrorCode::InvalidPayload,
            ),
            (
                r#"{"type":"send_message","payload":{"room":"a","text":5}}"#,
                ErrorCode::InvalidPayload,
            ),
        ];
        for (frame, code) in cases {
            let err = ClientEvent::decode(frame).expect_err(frame);
            assert_eq!(err.code(), code, "{frame}: {err}");
        }
    }

    #[test]
    fn the_ref_is_kept_beside_type_and_payload() {
        let frame = r#"{"type":"list_rooms","payload":{},"ref":"r-1"}"#;
        assert_eq!(
            ClientEvent::ListRooms {
                after: None,
                limit: None
            }
            .to_json_with_ref("r-1"),
            frame
        );
        assert_eq!(
            ClientFrame::decode(frame),
            Ok(ClientFrame {
                event: ClientEvent::ListRooms {
                    after: None,
                    limit: None
                },
                reference: Some("r-1".into()),
            })
        );
        let refused = ClientFrame::decode(r#"{"type":"dance","ref":"r-2"}"#).expect_err("unknown");
        assert_eq!(
            refused.reference.as_deref(),
            Some("r-2"),
            "kept for the error"
        );
        let long = format!(r#"{{"type":"list_rooms","ref":"{}"}}"#, "x".repeat(65));
        assert_eq!(
            ClientFrame::decode(&long).map_err(|r| r.error),
            Err(DecodeError::InvalidRef)
        );
        let at_limit = format!(r#"{{"type":"list_rooms","ref":"{}"}}"#, "é".repeat(64));
        assert!(
            ClientFrame::decode(&at_limit).is_ok(),
            "counted in characters"
        );
    }
}
