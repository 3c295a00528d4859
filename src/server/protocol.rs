//! The seed's WebSocket messages (`shared/PROTOCOL.md`): parsing what clients send, and the
//! error codes and close codes face-service answers with. One mapping from errors to codes.

use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::frame::FrameError;

/// A message from the client, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// Encoded image bytes (JPEG/PNG), from a JSON base64 frame or a binary message, with the
    /// client's optional `id` to echo back.
    Frame {
        image: Vec<u8>,
        id: Option<Value>,
    },
    Ping,
}

/// Why a message or frame was refused; each maps to one protocol code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FrameRefusal {
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("frame too large: {0} bytes, at most {1}")]
    TooLarge(usize, usize),
    #[error("{0}")]
    Undecodable(FrameError),
    #[error("frames arrive faster than this session's {0} per second")]
    TooFast(f32),
    #[error("server overloaded, frame dropped: try again")]
    Overloaded,
    #[error("frame missed its deadline")]
    DeadlineMissed,
    #[error("internal error, frame dropped: try again")]
    Internal,
}

impl FrameRefusal {
    /// The `code` of the `{"type":"error"}` answer.
    pub fn code(&self) -> u16 {
        match self {
            FrameRefusal::Malformed(_) => 400,
            FrameRefusal::TooLarge(..) => 413,
            FrameRefusal::Undecodable(FrameError::TooLarge { .. }) => 413,
            FrameRefusal::Undecodable(_) => 415,
            FrameRefusal::TooFast(_) => 429,
            FrameRefusal::Overloaded => 503,
            FrameRefusal::DeadlineMissed => 504,
            FrameRefusal::Internal => 500,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({ "type": "error", "error": self.to_string(), "code": self.code() })
    }
}

/// WebSocket close codes.
pub mod close {
    pub const NORMAL: u16 = 1000;
    /// A newer connection took over this session's token (a normal end, for this socket).
    pub const REPLACED: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    /// An authentication session ran out of time.
    pub const SESSION_EXPIRED: u16 = 4401;
    pub const MALFORMED_TOKEN: u16 = 4400;
    pub const UNKNOWN_SESSION: u16 = 4404;
    pub const FRAME_BUDGET_USED: u16 = 4429;
}

#[derive(Deserialize)]
struct JsonMessage {
    #[serde(rename = "type")]
    kind: Option<String>,
    image: Option<String>,
    id: Option<Value>,
}

/// Parses a text message: `{"type":"frame","image":"data:image/jpeg;base64,..."}` (a message
/// without `type` is a frame; the data-URL prefix is optional) or `{"type":"ping"}`. A base64
/// payload longer than `max_frame_bytes` needs is refused before it is decoded.
pub fn parse_text(text: &str, max_frame_bytes: usize) -> Result<ClientMessage, FrameRefusal> {
    let message: JsonMessage = serde_json::from_str(text)
        .map_err(|e| FrameRefusal::Malformed(format!("bad JSON: {e}")))?;
    match message.kind.as_deref() {
        Some("ping") => Ok(ClientMessage::Ping),
        None | Some("frame") => {
            let image = message
                .image
                .ok_or_else(|| FrameRefusal::Malformed("a frame needs an `image`".into()))?;
            let payload = match image.split_once(";base64,") {
                Some((prefix, data)) if prefix.starts_with("data:") => data,
                _ => image.as_str(),
            };
            // Four base64 characters carry three bytes.
            let decoded_len = payload.len() / 4 * 3;
            if decoded_len > max_frame_bytes {
                return Err(FrameRefusal::TooLarge(decoded_len, max_frame_bytes));
            }
            let image = base64::engine::general_purpose::STANDARD
                .decode(payload.trim())
                .map_err(|e| FrameRefusal::Malformed(format!("bad base64: {e}")))?;
            Ok(ClientMessage::Frame {
                image,
                id: message.id,
            })
        }
        Some(other) => Err(FrameRefusal::Malformed(format!(
            "unknown message type `{other}`"
        ))),
    }
}

/// Parses a binary message: the encoded image itself (an extension for non-browser clients).
pub fn parse_binary(bytes: Vec<u8>, max_frame_bytes: usize) -> Result<ClientMessage, FrameRefusal> {
    if bytes.len() > max_frame_bytes {
        return Err(FrameRefusal::TooLarge(bytes.len(), max_frame_bytes));
    }
    Ok(ClientMessage::Frame {
        image: bytes,
        id: None,
    })
}

/// A session token as the seed issues them: 1-128 characters of letters, digits, `_` and `-`.
pub fn token_is_well_formed(token: &str) -> bool {
    (1..=128).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_as_data_urls_plain_base64_or_binary() {
        let expected = ClientMessage::Frame {
            image: b"hello".to_vec(),
            id: None,
        };
        assert_eq!(
            parse_text(
                r#"{"type":"frame","image":"data:image/jpeg;base64,aGVsbG8="}"#,
                100
            ),
            Ok(expected.clone())
        );
        assert_eq!(
            parse_text(r#"{"image":"aGVsbG8="}"#, 100),
            Ok(expected.clone())
        );
        assert_eq!(parse_binary(b"hello".to_vec(), 100), Ok(expected));
        assert_eq!(
            parse_text(r#"{"image":"aGVsbG8=","id":7}"#, 100),
            Ok(ClientMessage::Frame {
                image: b"hello".to_vec(),
                id: Some(json!(7))
            })
        );
        assert_eq!(
            parse_text(r#"{"type":"ping"}"#, 100),
            Ok(ClientMessage::Ping)
        );
    }

    #[test]
    fn bad_messages_get_their_codes() {
        let code = |text: &str| parse_text(text, 100).unwrap_err().code();
        assert_eq!(code("not json"), 400);
        assert_eq!(code(r#"{"type":"dance"}"#), 400);
        assert_eq!(code(r#"{"type":"frame"}"#), 400);
        assert_eq!(code(r#"{"image":"!!!not base64!!!"}"#), 400);
        assert_eq!(code(&format!(r#"{{"image":"{}"}}"#, "A".repeat(400))), 413);
        assert_eq!(parse_binary(vec![0; 101], 100).unwrap_err().code(), 413);
        assert_eq!(
            FrameRefusal::Undecodable(FrameError::NotAnImage).code(),
            415
        );
        assert_eq!(
            FrameRefusal::Undecodable(FrameError::TooLarge { max_side: 1 }).code(),
            413
        );
    }

    #[test]
    fn tokens_are_checked_for_shape() {
        assert!(token_is_well_formed("test_17"));
        assert!(token_is_well_formed("aB3-x_9"));
        assert!(!token_is_well_formed(""));
        assert!(!token_is_well_formed("../etc"));
        assert!(!token_is_well_formed(&"a".repeat(129)));
    }
}
