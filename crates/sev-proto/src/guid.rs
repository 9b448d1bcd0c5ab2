//! EFI GUIDs in the mixed-endian byte order used by OVMF tables, secret tables
//! and the kernel-hashes table (docs/protocol/README.md#conventions).

use std::fmt;
use std::str::FromStr;

/// A GUID as stored in firmware tables: the first three fields little-endian,
/// the last eight bytes as written.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Guid([u8; 16]);

/// Why a GUID string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid GUID {text:?}: expected the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")]
pub struct GuidParseError {
    /// The text that was refused (truncated to 64 characters).
    pub text: String,
}

impl Guid {
    /// The all-zero GUID (an empty or wiped table entry).
    pub const ZERO: Guid = Guid([0; 16]);

    /// A GUID from its stored (mixed-endian) bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Guid(bytes)
    }

    /// The stored (mixed-endian) bytes.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// The stored bytes, borrowed.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses the canonical text form at compile time; panics (at compile
    /// time when used in a `const`) on malformed text. For literals only;
    /// use [`str::parse`] for input.
    pub const fn from_str_const(text: &str) -> Self {
        match parse(text.as_bytes()) {
            Some(g) => g,
            None => panic!("malformed GUID literal"),
        }
    }
}

const fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

const fn parse(s: &[u8]) -> Option<Guid> {
    if s.len() != 36 || s[8] != b'-' || s[13] != b'-' || s[18] != b'-' || s[23] != b'-' {
        return None;
    }
    // Big-endian value of the 16 bytes as written in the text.
    let mut text_bytes = [0u8; 16];
    let mut i = 0;
    let mut o = 0;
    while i < 36 {
        if i == 8 || i == 13 || i == 18 || i == 23 {
            i += 1;
            continue;
        }
        let hi = match hex_val(s[i]) {
            Some(v) => v,
            None => return None,
        };
        let lo = match hex_val(s[i + 1]) {
            Some(v) => v,
            None => return None,
        };
        text_bytes[o] = (hi << 4) | lo;
        o += 1;
        i += 2;
    }
    let t = text_bytes;
    Some(Guid([
        t[3], t[2], t[1], t[0], t[5], t[4], t[7], t[6], t[8], t[9], t[10], t[11], t[12], t[13],
        t[14], t[15],
    ]))
}

impl FromStr for Guid {
    type Err = GuidParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s.trim().as_bytes()).ok_or_else(|| GuidParseError {
            text: s.chars().take(64).collect(),
        })
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/protocol/README.md#conventions: the footer GUID example.
    #[test]
    fn mixed_endian_bytes_match_reference_example() {
        let g: Guid = "96b582de-1fb2-45f7-baea-a366c55a082d".parse().unwrap();
        assert_eq!(
            g.to_bytes(),
            [
                0xde, 0x82, 0xb5, 0x96, 0xb2, 0x1f, 0xf7, 0x45, 0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a,
                0x08, 0x2d
            ]
        );
        assert_eq!(g.to_string(), "96b582de-1fb2-45f7-baea-a366c55a082d");
        const C: Guid = Guid::from_str_const("96B582DE-1FB2-45F7-BAEA-A366C55A082D");
        assert_eq!(C, g);
    }

    #[test]
    fn malformed_text_is_refused() {
        for bad in [
            "",
            "96b582de1fb245f7baeaa366c55a082d",
            "96b582de-1fb2-45f7-baea-a366c55a082",
            "96b582de-1fb2-45f7-baea-a366c55a082dd",
            "96b582dg-1fb2-45f7-baea-a366c55a082d",
            "96b582de_1fb2-45f7-baea-a366c55a082d",
            "é6b582de-1fb2-45f7-baea-a366c55a082",
        ] {
            assert!(bad.parse::<Guid>().is_err(), "{bad:?} accepted");
        }
    }
}
