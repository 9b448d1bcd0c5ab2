//! base64 as QMP arguments carry it, decoded once, where the arguments are
//! parsed.
//!
//! The rule (the one decoder of sevm's QMP arguments and of its base64
//! files): the standard alphabet of RFC 4648 section 4 with `=` padding;
//! ASCII whitespace (space, tab, line feed, form feed, carriage return)
//! anywhere in the text is ignored. QEMU's `qbase64_decode` accepts the
//! alphabet, `=` and line feeds; sevctl and `base64(1)` wrap lines, and
//! some tools end them with CRLF, so all ASCII whitespace is skipped.
//! Anything else is an error, as is missing or misplaced padding.

use base64::Engine;
use serde::{Serialize, Serializer};

/// Text that is not base64 by the rule of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(String);

/// Decodes `text` by the rule of this module.
pub fn decode(text: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let compact: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|e| DecodeError(e.to_string()))
}

/// Encodes `bytes` (standard alphabet, padded, no line breaks), as QEMU
/// writes base64 into replies.
pub fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Bytes that travel as a base64 string in QMP: decoded when the request
/// is parsed, encoded again ([`encode`]) when serialised into a reply.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Base64Bytes(Vec<u8>);

impl Base64Bytes {
    /// Wraps decoded bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Base64Bytes(bytes)
    }

    /// Decodes `text` ([`decode`]).
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        decode(text.as_bytes()).map(Base64Bytes)
    }

    /// The decoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The decoded bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Number of decoded bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// No bytes (the empty string on the wire).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Base64Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Base64Bytes({:?})", encode(&self.0))
    }
}

impl From<Vec<u8>> for Base64Bytes {
    fn from(bytes: Vec<u8>) -> Self {
        Base64Bytes(bytes)
    }
}

impl Serialize for Base64Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&encode(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_anywhere_is_ignored_and_padding_is_required() {
        assert_eq!(decode(b"aGVs bG8=").unwrap(), b"hello");
        assert_eq!(decode(b" aGVs\r\nbG8=\n\t").unwrap(), b"hello");
        assert_eq!(decode(b"").unwrap(), b"");
        assert_eq!(decode(b"\n").unwrap(), b"");
        for bad in [&b"aGVsbG8"[..], b"!!", b"aGVs=bG8", b"aGVsbG8-", b"h"] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        // The decoder's message is kept (QMP error text).
        assert_eq!(
            decode(b"!!").unwrap_err().to_string(),
            "Invalid symbol 33, offset 0."
        );
    }

    #[test]
    fn round_trip_and_serialisation() {
        let b = Base64Bytes::decode("AAEC\n").unwrap();
        assert_eq!(b.as_bytes(), [0, 1, 2]);
        assert_eq!(b.len(), 3);
        assert!(!b.is_empty());
        assert_eq!(serde_json::to_value(&b).unwrap(), "AAEC");
        assert_eq!(format!("{b:?}"), "Base64Bytes(\"AAEC\")");
        assert_eq!(Base64Bytes::from(vec![0xff]).into_bytes(), [0xff]);
        assert!(Base64Bytes::new(Vec::new()).is_empty());
        assert_eq!(encode(b"hello"), "aGVsbG8=");
    }
}
