//! Events the server sends to a client.

use serde::{Deserialize, Serialize};

use crate::ErrorCode;

/// A server-to-client event, on the wire `{"type": ..., "payload": {...}}`.
///
/// Clients should ignore event types they do not know: newer servers may add
/// events without changing the protocol version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", content = "payload", rename_all = "snake_case")]
pub enum ServerEvent {
    /// Always the first frame on a new connection.
    Welcome {
        /// The protocol version the server speaks ([`crate::PROTOCOL_VERSION`]).
        protocol_version: u32,
        /// Server software and version, for people and logs.
        server: String,
        /// The authenticated user name this connection acts as.
        user: String,
        /// Limits this connection is held to.
        limits: Limits,
    },
    /// Confirms a `join_room`; sent to the joining connection only. From here
    /// on, every new message of the room arrives, in sequence order.
    Joined {
        /// The room joined.
        room: String,
        /// Everyone in the room now, the joiner included, sorted, each once;
        /// in a room too big for one frame, the first of them by name (see
        /// `members_total`).
        members: Vec<String>,
        /// Present only when `members` was cut to fit the frame: how many
        /// distinct users the room has.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        members_total: Option<usize>,
        /// The room's newest sequence number (0: no message yet). Live
        /// messages continue from `last_seq + 1`.
        last_seq: u64,
        /// On a plain join, the most recent messages, oldest first. Empty on a
        /// resume (`since`), whose messages arrived before this event.
        history: Vec<ChatMessage>,
        /// Names the history these sequence numbers belong to: the same for
        /// as long as the server keeps its message store, a new one when the
        /// store is new. A client resumes with it (`join_room`'s `epoch`).
        epoch: String,
    },
    /// Confirms that a `send_message` was stored, to its sender only; a resend
    /// with the same `client_id` gets the same answer.
    Ack {
        /// The room.
        room: String,
        /// The message's sequence number in the room.
        seq: u64,
        /// The message's id.
        id: String,
        /// The `client_id` the message was sent with, if any.
        #[serde(default)]
        client_id: Option<String>,
    },
    /// Answer to `history`: older messages, oldest first.
    HistoryPage {
        /// The room.
        room: String,
        /// The messages (at most the `limit` asked for).
        messages: Vec<ChatMessage>,
        /// The oldest sequence number still stored for the room (none: empty
        /// room). There is nothing further back once a page starts there.
        first_seq: Option<u64>,
    },
    /// On a resume, messages `from..=to` are no longer stored (retention) and
    /// cannot be delivered; the ones after follow.
    HistoryGap {
        /// The room.
        room: String,
        /// First missing sequence number.
        from: u64,
        /// Last missing sequence number.
        to: u64,
    },
    /// Confirms a `leave_room`; sent to the leaving connection only.
    Left {
        /// The room left.
        room: String,
    },
    /// A user entered a room this connection is in.
    MemberJoined {
        /// The room.
        room: String,
        /// Who entered.
        user: String,
    },
    /// A user is no longer in a room this connection is in (left, disconnected,
    /// or was dropped by the server).
    MemberLeft {
        /// The room.
        room: String,
        /// Who is gone.
        user: String,
    },
    /// A chat message in a room this connection is in (the sender gets it too).
    NewMessage(ChatMessage),
    /// Answer to `list_rooms`: one page of the room directory.
    RoomList {
        /// Rooms that have members or stored messages, sorted by name.
        rooms: Vec<RoomInfo>,
        /// Where the next page starts: send it as `after`. Absent on the
        /// last page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    /// A request failed; the connection stays open.
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable explanation.
        message: String,
    },
}

/// One server frame as a client reads it: the event and, on an answer to a
/// request, that request's `ref`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerFrame {
    /// What the server says.
    pub event: ServerEvent,
    /// The `ref` of the request this answers (`None` on events that answer
    /// no request, and on answers to requests sent without one).
    pub reference: Option<String>,
}

impl ServerFrame {
    /// Decodes one text frame. An event of a type this crate does not know is
    /// an error, which a client should skip (newer servers may add events).
    pub fn decode(text: &str) -> Result<Self, serde_json::Error> {
        let mut value: serde_json::Value = serde_json::from_str(text)?;
        let reference = match value.as_object_mut().and_then(|frame| frame.remove("ref")) {
            Some(serde_json::Value::String(r)) => Some(r),
            _ => None,
        };
        Ok(Self {
            event: serde_json::from_value(value)?,
            reference,
        })
    }
}

impl ServerEvent {
    /// Encodes this event as the JSON text of one frame.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server events always serialize")
    }

    /// Encodes this event as the answer to a request: with the request's
    /// `ref` at the top level, beside `type` and `payload`, when it had one.
    pub fn to_json_with_ref(&self, reference: Option<&str>) -> String {
        let envelope = crate::client::Referenced {
            event: self,
            reference,
        };
        serde_json::to_string(&envelope).expect("server events always serialize")
    }

    /// [`Self::to_json_with_ref`], cut to fit `max_bytes` where the event
    /// carries a list: a `joined` keeps the newest of its `history` and a
    /// `history_page` the newest of its `messages` that fit, oldest first as
    /// ever, so the client pages back from the oldest it got; a `room_list`
    /// keeps its first rooms and says in `next` where the rest start. At
    /// least one entry is kept, so paging always moves on; that frame alone
    /// exceeds `max_bytes` only when that one entry does. Other events are
    /// not cut.
    pub fn to_json_within(mut self, reference: Option<&str>, max_bytes: usize) -> String {
        if let Self::Joined {
            room,
            members,
            members_total,
            last_seq,
            history,
            epoch,
        } = &mut self
        {
            // The members may take half the frame, less the newest message
            // (which a joined always keeps) and the rest of the event.
            let bare = Self::Joined {
                room: room.clone(),
                members: Vec::new(),
                members_total: Some(usize::MAX),
                last_seq: *last_seq,
                history: Vec::new(),
                epoch: epoch.clone(),
            }
            .to_json_with_ref(reference)
            .len();
            let newest = history.last().map_or(0, json_len);
            let budget = (max_bytes / 2)
                .min(max_bytes.saturating_sub(newest))
                .saturating_sub(bare);
            Self::cut_members(members, members_total, budget);
        }
        match &mut self {
            Self::Joined { history: list, .. } | Self::HistoryPage { messages: list, .. } => {
                let mut messages = std::mem::take(list);
                let envelope = self.to_json_with_ref(reference).len();
                let keep = fitting(
                    messages.iter().rev(),
                    max_bytes.saturating_sub(envelope),
                    |_| 0,
                );
                messages.drain(..messages.len() - keep);
                if let Self::Joined { history: list, .. }
                | Self::HistoryPage { messages: list, .. } = &mut self
                {
                    *list = messages;
                }
            }
            Self::RoomList { rooms, next } => {
                let mut all = std::mem::take(rooms);
                let later = next.take();
                let envelope = self.to_json_with_ref(reference).len();
                let last = all.len().saturating_sub(1);
                // A page that ends before the last room needs `next` too.
                let keep = fitting(all.iter(), max_bytes.saturating_sub(envelope), |i| {
                    if i < last || later.is_some() {
                        r#","next":"#.len() + json_len(&all[i].name)
                    } else {
                        0
                    }
                });
                let cut = keep < all.len();
                all.truncate(keep);
                if let Self::RoomList { rooms, next } = &mut self {
                    *next = if cut {
                        all.last().map(|room| room.name.clone())
                    } else {
                        later
                    };
                    *rooms = all;
                }
            }
            _ => {}
        }
        self.to_json_with_ref(reference)
    }

    /// Cuts a `joined`'s member list longer than `budget` bytes to its first
    /// names that fit, and says how many there are.
    fn cut_members(members: &mut Vec<String>, total: &mut Option<usize>, budget: usize) {
        if json_len(members) <= budget {
            return;
        }
        let count = members.len();
        members.truncate(fitting(members.iter(), budget, |_| 0));
        *total = Some(count);
    }

    /// Shorthand for an `error` event.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            code,
            message: message.into(),
        }
    }
}

/// How many of `entries`, taken in order, fit in `budget` bytes as the
/// items of a JSON array (with a comma between each two), where keeping the
/// first `i + 1` also costs `extra(i)`; at least one is kept.
fn fitting<'a, T: Serialize + 'a>(
    entries: impl Iterator<Item = &'a T>,
    budget: usize,
    extra: impl Fn(usize) -> usize,
) -> usize {
    let mut used = 0;
    let mut keep = 0;
    for (i, entry) in entries.enumerate() {
        used += json_len(entry) + usize::from(i > 0);
        if i > 0 && used + extra(i) > budget {
            break;
        }
        keep = i + 1;
    }
    keep
}

/// The length of `value` as JSON.
fn json_len(value: &impl Serialize) -> usize {
    serde_json::to_string(value)
        .expect("server events always serialize")
        .len()
}

/// Limits announced in `welcome`, so a client can stay within them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Limits {
    /// Largest frame the server accepts, in bytes; larger closes with 1009.
    pub max_message_bytes: usize,
    /// Most rooms one connection may be in at once.
    pub max_rooms: usize,
    /// Sustained `send_message` rate allowed, per second.
    pub messages_per_second: f64,
    /// Messages that may be sent in a burst above the sustained rate.
    pub message_burst: u32,
    /// How often the server pings, in milliseconds.
    pub ping_interval_ms: u64,
    /// How long the server waits for the pong before closing, in milliseconds.
    pub pong_timeout_ms: u64,
}

/// One chat message as delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChatMessage {
    /// Opaque id, unique on this server.
    pub id: String,
    /// The room it was sent to.
    pub room: String,
    /// Its place in the room: 1, 2, 3, ... with no gaps, never reused.
    pub seq: u64,
    /// The authenticated sender (never taken from the client).
    pub from: String,
    /// The text, exactly as sent.
    pub text: String,
    /// When the server accepted it: RFC 3339, UTC, millisecond precision.
    pub sent_at: String,
}

/// One entry of `room_list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RoomInfo {
    /// The room name.
    pub name: String,
    /// How many distinct users are in it.
    pub members: usize,
    /// Its newest sequence number (0: no message yet).
    #[serde(default)]
    pub last_seq: u64,
    /// When its newest message was sent (RFC 3339), if it has one.
    #[serde(default)]
    pub last_activity: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64, text: &str) -> ChatMessage {
        ChatMessage {
            id: seq.to_string(),
            room: "general".into(),
            seq,
            from: "bob".into(),
            text: text.into(),
            sent_at: "2026-12-07T00:00:00.000Z".into(),
        }
    }

    #[test]
    fn a_page_is_cut_to_the_newest_messages_that_fit() {
        let messages: Vec<ChatMessage> = (1..=10)
            .map(|seq| message(seq, &"x".repeat(1000)))
            .collect();
        let page = |messages: Vec<ChatMessage>| ServerEvent::HistoryPage {
            room: "general".into(),
            messages,
            first_seq: Some(1),
        };
        let whole = page(messages.clone()).to_json_with_ref(Some("h1"));
        assert_eq!(
            page(messages.clone()).to_json_within(Some("h1"), whole.len()),
            whole
        );

        let cut = page(messages.clone()).to_json_within(Some("h1"), 4_000);
        assert!(cut.len() <= 4_000, "{}", cut.len());
        let ServerFrame { event, reference } = ServerFrame::decode(&cut).expect("decodes");
        assert_eq!(reference.as_deref(), Some("h1"));
        let ServerEvent::HistoryPage { messages: kept, .. } = event else {
            panic!("{event:?}");
        };
        let seqs: Vec<u64> = kept.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [8, 9, 10], "the newest that fit, oldest first");

        // Too small for any: the newest alone, so that paging moves on.
        let one = page(messages).to_json_within(None, 10);
        let ServerEvent::HistoryPage { messages: kept, .. } =
            ServerFrame::decode(&one).expect("decodes").event
        else {
            panic!("not a page");
        };
        assert_eq!(kept.iter().map(|m| m.seq).collect::<Vec<_>>(), [10]);
    }

    #[test]
    fn a_joined_member_list_too_big_for_the_frame_is_cut_and_counted() {
        let members: Vec<String> = (0..5_000).map(|i| format!("member-{i:05}")).collect();
        let joined = |members: Vec<String>| ServerEvent::Joined {
            room: "big".into(),
            members,
            members_total: None,
            last_seq: 3,
            history: (1..=3)
                .map(|seq| message(seq, &"x".repeat(2_000)))
                .collect(),
            epoch: "e".into(),
        };
        for max in [4_096, 16_384, 65_536] {
            let frame = joined(members.clone()).to_json_within(Some("r"), max);
            assert!(frame.len() <= max, "{max}: {}", frame.len());
            let ServerEvent::Joined {
                members: kept,
                members_total,
                history,
                ..
            } = ServerFrame::decode(&frame).expect("decodes").event
            else {
                panic!("not joined");
            };
            assert_eq!(members_total, Some(5_000));
            assert!(
                !kept.is_empty() && kept[..] == members[..kept.len()],
                "the first by name"
            );
            assert!(kept.len() < 5_000);
            assert!(!history.is_empty(), "the newest message stays");
        }
        let small = joined(members[..3].to_vec()).to_json_within(None, 65_536);
        assert!(!small.contains("members_total"), "{small}");
    }

    #[test]
    fn a_joined_history_is_cut_and_other_events_are_not() {
        let joined = ServerEvent::Joined {
            room: "general".into(),
            members: vec!["bob".into()],
            members_total: None,
            last_seq: 3,
            history: (1..=3).map(|seq| message(seq, &"é".repeat(500))).collect(),
            epoch: "e".into(),
        };
        let cut = joined.to_json_within(None, 1_500);
        assert!(cut.len() <= 1_500, "{}", cut.len());
        let ServerEvent::Joined { history, .. } = ServerFrame::decode(&cut).expect("decodes").event
        else {
            panic!("not joined");
        };
        assert_eq!(history.iter().map(|m| m.seq).collect::<Vec<_>>(), [3]);

        let left = ServerEvent::Left {
            room: "general".into(),
        };
        assert_eq!(left.clone().to_json_within(None, 1), left.to_json());
    }

    #[test]
    fn a_room_list_is_cut_to_its_first_rooms_and_says_where_the_rest_start() {
        let room = |name: String| RoomInfo {
            name,
            members: 1,
            last_seq: 9,
            last_activity: None,
        };
        let rooms: Vec<_> = (0..20).map(|i| room(format!("room-{i:02}"))).collect();
        let page = |later: Option<&str>| ServerEvent::RoomList {
            rooms: rooms.clone(),
            next: later.map(Into::into),
        };
        let whole = page(None).to_json_with_ref(Some("r"));
        assert_eq!(page(None).to_json_within(Some("r"), whole.len()), whole);
        for later in [None, Some("zz")] {
            let mut before = 0;
            for budget in 200..=whole.len() + 20 {
                let frame = page(later).to_json_within(Some("r"), budget);
                assert!(frame.len() <= budget, "{budget}: {frame}");
                let ServerEvent::RoomList { rooms: kept, next } =
                    ServerFrame::decode(&frame).expect("decodes").event
                else {
                    panic!("not room_list");
                };
                assert_eq!(kept[..], rooms[..kept.len()], "the first rooms, in order");
                assert!(kept.len() >= before, "more room, more rooms");
                before = kept.len();
                let expected = if kept.len() < rooms.len() {
                    kept.last().map(|r| r.name.as_str())
                } else {
                    later
                };
                assert_eq!(next.as_deref(), expected, "{budget}");
            }
            assert_eq!(before, rooms.len());
        }
        let tiny = page(None).to_json_within(None, 1);
        let ServerEvent::RoomList { rooms: kept, next } =
            ServerFrame::decode(&tiny).expect("decodes").event
        else {
            panic!("not room_list");
        };
        assert_eq!(
            (kept.len(), next.as_deref()),
            (1, Some("room-00")),
            "one at least"
        );
    }

    fn examples() -> Vec<(ServerEvent, &'static str)> {
        vec![
            (
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
                r#"{"type":"welcome","payload":{"protocol_version":1,"server":"chat-server/0.1.0","user":"alice","limits":{"max_message_bytes":65536,"max_rooms":32,"messages_per_second":5.0,"message_burst":20,"ping_interval_ms":20000,"pong_timeout_ms":10000}}}"#,
            ),
            (
                ServerEvent::Joined {
                    room: "general".into(),
                    members: vec!["alice".into(), "bob".into()],
                    members_total: None,
                    last_seq: 7,
                    history: vec![ChatMessage {
                        id: "12".into(),
                        room: "general".into(),
                        seq: 7,
                        from: "bob".into(),
                        text: "earlier".into(),
                        sent_at: "2026-11-24T09:29:00.000Z".into(),
                    }],
                    epoch: "5d1c9e".into(),
                },
                r#"{"type":"joined","payload":{"room":"general","members":["alice","bob"],"last_seq":7,"history":[{"id":"12","room":"general","seq":7,"from":"bob","text":"earlier","sent_at":"2026-11-24T09:29:00.000Z"}],"epoch":"5d1c9e"}}"#,
            ),
            (
                ServerEvent::Ack {
                    room: "general".into(),
                    seq: 8,
                    id: "13".into(),
                    client_id: Some("c-7f3a".into()),
                },
                r#"{"type":"ack","payload":{"room":"general","seq":8,"id":"13","client_id":"c-7f3a"}}"#,
            ),
            (
                ServerEvent::HistoryPage {
                    room: "general".into(),
                    messages: vec![],
                    first_seq: Some(1),
                },
                r#"{"type":"history_page","payload":{"room":"general","messages":[],"first_seq":1}}"#,
            ),
            (
                ServerEvent::HistoryGap {
                    room: "general".into(),
                    from: 3,
                    to: 5,
                },
                r#"{"type":"history_gap","payload":{"room":"general","from":3,"to":5}}"#,
            ),
            (
                ServerEvent::Left {
                    room: "general".into(),
                },
                r#"{"type":"left","payload":{"room":"general"}}"#,
            ),
            (
                ServerEvent::MemberJoined {
                    room: "general".into(),
                    user: "bob".into(),
                },
                r#"{"type":"member_joined","payload":{"room":"general","user":"bob"}}"#,
            ),
            (
                ServerEvent::MemberLeft {
                    room: "general".into(),
                    user: "bob".into(),
                },
                r#"{"type":"member_left","payload":{"room":"general","user":"bob"}}"#,
            ),
            (
                ServerEvent::NewMessage(ChatMessage {
                    id: "13".into(),
                    room: "general".into(),
                    seq: 8,
                    from: "alice".into(),
                    text: "hi <b>bob</b> 👋".into(),
                    sent_at: "2026-11-24T09:30:00.123Z".into(),
                }),
                r#"{"type":"new_message","payload":{"id":"13","room":"general","seq":8,"from":"alice","text":"hi <b>bob</b> 👋","sent_at":"2026-11-24T09:30:00.123Z"}}"#,
            ),
            (
                ServerEvent::RoomList {
                    rooms: vec![RoomInfo {
                        name: "general".into(),
                        members: 2,
                        last_seq: 8,
                        last_activity: Some("2026-11-24T09:30:00.123Z".into()),
                    }],
                    next: Some("general".into()),
                },
                r#"{"type":"room_list","payload":{"rooms":[{"name":"general","members":2,"last_seq":8,"last_activity":"2026-11-24T09:30:00.123Z"}],"next":"general"}}"#,
            ),
            (
                ServerEvent::error(ErrorCode::NotInRoom, "join \"x\" first"),
                r#"{"type":"error","payload":{"code":"not_in_room","message":"join \"x\" first"}}"#,
            ),
        ]
    }

    #[test]
    fn encodes_and_decodes_exact_json() {
        for (event, json) in examples() {
            assert_eq!(event.to_json(), json);
            let decoded: ServerEvent = serde_json::from_str(json).expect(json);
            assert_eq!(decoded, event);
        }
    }

    #[test]
    fn unknown_error_codes_decode_as_other() {
        let decoded: ServerEvent = serde_json::from_str(
            r#"{"type":"error","payload":{"code":"from_the_future","message":"?"}}"#,
        )
        .expect("decodes");
        assert_eq!(decoded, ServerEvent::error(ErrorCode::Other, "?"));
    }

    #[test]
    fn an_answer_carries_the_ref_and_old_clients_can_ignore_it() {
        let left = ServerEvent::Left {
            room: "general".into(),
        };
        let json = left.to_json_with_ref(Some("7"));
        assert_eq!(
            json,
            r#"{"type":"left","payload":{"room":"general"},"ref":"7"}"#
        );
        assert_eq!(left.to_json_with_ref(None), left.to_json());
        let decoded: ServerEvent = serde_json::from_str(&json).expect("ref is ignored");
        let frame = ServerFrame::decode(&json).expect("a frame");
        assert_eq!(frame.reference.as_deref(), Some("7"));
        assert_eq!(frame.event, left);
        assert_eq!(
            ServerFrame::decode(&left.to_json())
                .expect("no ref")
                .reference,
            None
        );
        assert!(ServerFrame::decode(r#"{"type":"from_the_future","payload":{}}"#).is_err());
        assert_eq!(decoded, left);
    }
}
