//! The wire format as JSON Schema (draft 2020-12), generated from this
//! crate's types: one schema that every client frame validates against, one
//! for every server frame. `docs/schema/` holds them as committed files, and a
//! test fails when they differ from what these functions generate.

use schemars::{generate::SchemaSettings, JsonSchema};
use serde_json::{json, Map, Value};

use crate::client::MAX_REF_CHARS;
use crate::{ClientEvent, ServerEvent};

/// The schema of every frame a client may send (`docs/schema/client-event.json`).
pub fn client_event() -> Value {
    frame_schema::<ClientEvent>(
        "https://chat.invalid/schema/client-event.json",
        "A frame a client sends to chat-server (protocol version 1).",
        json!({
            "description": "Names the request; the server copies it onto its one answer.",
            "type": "string",
            "maxLength": MAX_REF_CHARS,
        }),
        true,
    )
}

/// The schema of every frame the server sends (`docs/schema/server-event.json`).
pub fn server_event() -> Value {
    frame_schema::<ServerEvent>(
        "https://chat.invalid/schema/server-event.json",
        "A frame chat-server sends to a client (protocol version 1).",
        json!({
            "description": "On an answer: the `ref` of the request it answers.",
            "type": "string",
        }),
        false,
    )
}

/// `T`'s generated schema, completed with what serde attributes cannot say:
/// the `ref` beside `type` and `payload`, and (for client frames, `lenient`)
/// that a payload without required fields may be left out or `null`.
fn frame_schema<T: JsonSchema>(id: &str, title: &str, reference: Value, lenient: bool) -> Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let mut root = generator.into_root_schema_for::<T>().to_value();
    if let Some(object) = root.as_object_mut() {
        object.insert("$id".into(), json!(id));
        object.insert("title".into(), json!(title));
    }
    let variants = root
        .get_mut("oneOf")
        .and_then(Value::as_array_mut)
        .expect("an event enum is a oneOf of its variants");
    for variant in variants {
        let Some(variant) = variant.as_object_mut() else {
            continue;
        };
        if let Some(properties) = variant.get_mut("properties").and_then(Value::as_object_mut) {
            properties.insert("ref".into(), reference.clone());
            if lenient {
                if let Some(payload) = properties.get_mut("payload").and_then(Value::as_object_mut)
                {
                    if optional_payload(payload) {
                        payload.insert("type".into(), json!(["object", "null"]));
                        if let Some(required) =
                            variant.get_mut("required").and_then(Value::as_array_mut)
                        {
                            required.retain(|r| r != "payload");
                        }
                    }
                }
            }
        }
    }
    root
}

/// Whether a payload schema requires no field (so `{}` would do).
fn optional_payload(payload: &Map<String, Value>) -> bool {
    payload
        .get("required")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
}
