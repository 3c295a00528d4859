//! Parsing what the seed's clients send over the WebSocket (`shared/PROTOCOL.md`). What each
//! refusal is called on the wire lives in `codes`.

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use crate::server::codes::FrameRefusal;

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
            Ok(ClientMessage::Frame {
                image: decode_image(&image, max_frame_bytes)?,
                id: message.id,
            })
        }
        Some(other) => Err(FrameRefusal::Malformed(format!(
            "unknown message type `{other}`"
        ))),
    }
}

/// An image sent as base64, the data-URL prefix optional; one that would decode to more than
/// `max_bytes` is refused before it is decoded.
pub fn decode_image(image: &str, max_bytes: usize) -> Result<Vec<u8>, FrameRefusal> {
    let payload = match image.split_once(";base64,") {
        Some((prefix, data)) if prefix.starts_with("data:") => data,
        _ => image,
    };
    // Four base64 characters carry three bytes.
    let decoded_len = payload.len() / 4 * 3;
    if decoded_len > max_bytes {
        return Err(FrameRefusal::TooLarge(decoded_len, max_bytes));
    }
    decode_base64(payload)
}

/// Standard base64, with or without line breaks: MIME-style encoders wrap at 76 columns, and
/// the seed's `base64.b64decode` skips them.
fn decode_base64(payload: &str) -> Result<Vec<u8>, FrameRefusal> {
    let engine = &base64::engine::general_purpose::STANDARD;
    let payload = payload.trim();
    let decoded = if payload.bytes().any(|b| b.is_ascii_whitespace()) {
        let unwrapped: Vec<u8> = payload
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        engine.decode(unwrapped)
    } else {
        engine.decode(payload)
    };
    decoded.map_err(|e| FrameRefusal::Malformed(format!("bad base64: {e}")))
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
    use crate::frame::FrameError;
    use serde_json::json;

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
    fn base64_may_be_wrapped_in_lines() {
        let data = base64::engine::general_purpose::STANDARD.encode([7u8; 200]);
        let wrapped = |sep: &str| {
            let lines: Vec<&str> = data
                .as_bytes()
                .chunks(76)
                .map(|l| std::str::from_utf8(l).unwrap())
                .collect();
            json!({ "image": lines.join(sep) }).to_string()
        };
        let expected = ClientMessage::Frame {
            image: vec![7; 200],
            id: None,
        };
        assert_eq!(parse_text(&wrapped("\n"), 1000), Ok(expected.clone()));
        assert_eq!(parse_text(&wrapped("\r\n"), 1000), Ok(expected));
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

    #[test]
    fn damaged_messages_are_refusals_never_panics() {
        let message = json!({ "type": "frame", "image": "data:image/jpeg;base64,/9j/4AAQSkZJRg==", "id": [1, {"a": null}] });
        crate::mutations::never_panics(
            message.to_string().as_bytes(),
            crate::mutations::cases(5000),
            |bytes| {
                let _ = parse_text(&String::from_utf8_lossy(bytes), 1 << 20);
                let _ = parse_binary(bytes.to_vec(), 64);
            },
        );
    }
}
