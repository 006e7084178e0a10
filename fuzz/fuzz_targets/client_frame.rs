//! The decoder of client frames, fed any text: it must never panic, and a
//! frame it accepts must mean the same once encoded again (what the server
//! acts on is what the client sent).
#![no_main]

use chat_protocol::client::ClientFrame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The WebSocket layer hands the server only valid UTF-8 text frames.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(frame) = ClientFrame::decode(text) else {
        return;
    };
    let again = match &frame.reference {
        Some(reference) => frame.event.to_json_with_ref(reference),
        None => frame.event.to_json(),
    };
    let decoded = ClientFrame::decode(&again).expect("an encoded frame decodes");
    assert_eq!(decoded, frame, "{text:?} became {again:?}");
});
