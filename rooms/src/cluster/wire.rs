//! The payload of one bus message, version 1: a line naming what it is,
//! then the frame exactly as members receive it.
//!
//! - `m <seq>\n<frame>`: a numbered room event;
//! - `n <origin>\n<frame>`: an unnumbered notice from node `origin`.
//!
//! The room is the channel's. The first byte names the kind: a later
//! version adds kinds, which a node that does not know them logs and drops.
//! Frames are JSON, so they hold no raw newline; the header ends at the
//! first one either way.

use crate::outbox::Frame;

/// One decoded payload.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Payload {
    /// A committed message.
    Message {
        /// Its sequence number in the room.
        seq: u64,
        /// The `new_message` frame.
        frame: Frame,
    },
    /// A `member_joined` or `member_left`.
    Notice {
        /// The bus that sent it (a node ignores its own).
        origin: String,
        /// The notice frame.
        frame: Frame,
    },
}

/// Why a payload was dropped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum WireError {
    /// No header line.
    #[error("no header line")]
    NoHeader,
    /// A kind this version does not know.
    #[error("unknown kind {0:?}")]
    UnknownKind(String),
    /// `m` with no valid sequence number.
    #[error("bad sequence number {0:?}")]
    BadSeq(String),
    /// The frame is not UTF-8.
    #[error("frame is not UTF-8")]
    NotUtf8,
}

/// `m <seq>\n<frame>`.
pub(crate) fn message(seq: u64, frame: &Frame) -> Vec<u8> {
    encode(&format!("m {seq}"), frame)
}

/// `n <origin>\n<frame>`.
pub(crate) fn notice(origin: &str, frame: &Frame) -> Vec<u8> {
    encode(&format!("n {origin}"), frame)
}

fn encode(header: &str, frame: &Frame) -> Vec<u8> {
    let mut payload = Vec::with_capacity(header.len() + 1 + frame.len());
    payload.extend_from_slice(header.as_bytes());
    payload.push(b'\n');
    payload.extend_from_slice(frame.as_bytes());
    payload
}

/// Decodes a payload, taking its bytes: the frame keeps them, minus the
/// header, with no second copy.
pub(crate) fn decode(mut payload: Vec<u8>) -> Result<Payload, WireError> {
    let end = payload
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(WireError::NoHeader)?;
    let header = String::from_utf8_lossy(&payload[..end]).into_owned();
    payload.drain(..=end);
    let frame = move || Frame::try_from(payload).map_err(|_| WireError::NotUtf8);
    match header.split_once(' ') {
        Some(("m", seq)) => {
            let seq = seq
                .parse::<u64>()
                .ok()
                .filter(|&seq| seq > 0)
                .ok_or_else(|| WireError::BadSeq(seq.to_owned()))?;
            Ok(Payload::Message {
                seq,
                frame: frame()?,
            })
        }
        Some(("n", origin)) => Ok(Payload::Notice {
            origin: origin.to_owned(),
            frame: frame()?,
        }),
        _ => Err(WireError::UnknownKind(header)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kinds_round_trip() {
        let frame = Frame::from("{\"type\":\"x\"}");
        assert_eq!(
            decode(message(42, &frame)),
            Ok(Payload::Message {
                seq: 42,
                frame: frame.clone()
            })
        );
        assert_eq!(
            decode(notice("a.1f", &frame)),
            Ok(Payload::Notice {
                origin: "a.1f".into(),
                frame
            })
        );
    }

    #[test]
    fn malformed_payloads_are_errors() {
        assert_eq!(decode(b"m 1".to_vec()), Err(WireError::NoHeader));
        assert_eq!(
            decode(b"m x\n{}".to_vec()),
            Err(WireError::BadSeq("x".into()))
        );
        assert_eq!(
            decode(b"m 0\n{}".to_vec()),
            Err(WireError::BadSeq("0".into()))
        );
        assert_eq!(
            decode(b"z 1\n{}".to_vec()),
            Err(WireError::UnknownKind("z 1".into()))
        );
        assert_eq!(decode(b"m 1\n\xff".to_vec()), Err(WireError::NotUtf8));
    }
}
