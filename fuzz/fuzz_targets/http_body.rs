//! The JSON bodies of `POST /api/register` and `POST /api/login`, fed any
//! bytes: parsing and the name check must never panic, and a name the
//! check accepts must follow the naming rules the document states (ASCII
//! letters, digits, `-`, `_`, `.`, at most 32 characters).
#![no_main]

use chat_protocol::http::Credentials;
use chat_protocol::names::validate_username;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(credentials) = serde_json::from_slice::<Credentials>(data) else {
        return;
    };
    if validate_username(&credentials.username).is_ok() {
        let name = &credentials.username;
        assert!(!name.is_empty() && name.len() <= 32, "{name:?}");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')),
            "{name:?}"
        );
    }
});
