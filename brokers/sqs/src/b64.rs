//! Base64 for bodies SQS would refuse (SQS carries text: bytes that are not valid UTF-8, or
//! control characters, are sent encoded, with a marker attribute).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

pub(crate) fn encode(data: &[u8]) -> String {
    STANDARD.encode(data)
}

pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text).ok()
}

/// Whether SQS accepts `s` as a message body (its allowed characters: #x9, #xA, #xD,
/// #x20 to #xD7FF, #xE000 to #xFFFD, #x10000 to #x10FFFF).
pub(crate) fn sqs_safe(s: &str) -> bool {
    s.chars().all(|c| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..))
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips() {
        for s in [&b""[..], b"a", b"ab", b"abc", b"\x00\x01\xff garbage"] {
            assert_eq!(super::decode(&super::encode(s)).unwrap(), s);
        }
        assert!(!super::sqs_safe("\u{0}x"));
        assert!(super::sqs_safe("{\"a\":1}"));
    }
}
