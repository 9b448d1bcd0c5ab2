//! The certificate table of the extended guest request
//! (docs/protocol/snp.md#certificate-table): 24-byte entries (GUID, offset,
//! length) ended by an all-zero entry, then the certificates, each at its
//! offset from the start of the buffer.
//!
//! GUIDs are in RFC 4122 byte order (the string's bytes as written), not
//! the mixed-endian order of EFI tables.

/// Length of one table entry.
pub const ENTRY_LEN: usize = 24;
/// The most entries a table may have (the terminator not counted).
pub const MAX_ENTRIES: usize = 64;
/// The largest buffer the decoder reads and the encoder writes: Linux's
/// certificate buffer for the extended request is 16 KiB; hosts may offer
/// more pages, so the bound is 1 MiB.
pub const MAX_TABLE_LEN: usize = 1 << 20;

/// Parses a GUID string at compile time in RFC 4122 byte order.
const fn rfc4122(text: &str) -> [u8; 16] {
    let s = text.as_bytes();
    let mut out = [0u8; 16];
    let mut i = 0;
    let mut n = 0;
    while i < s.len() {
        if s[i] == b'-' {
            i += 1;
            continue;
        }
        let hi = hex_digit(s[i]);
        let lo = hex_digit(s[i + 1]);
        out[n] = hi << 4 | lo;
        n += 1;
        i += 2;
    }
    out
}

const fn hex_digit(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

/// The GUIDs of the table's entries.
pub mod guid {
    use super::rfc4122;

    /// The ARK certificate (DER).
    pub const ARK: [u8; 16] = rfc4122("c0b406a4-a803-4952-9743-3fb6014cd0ae");
    /// The ASK (or ASVK) certificate (DER).
    pub const ASK: [u8; 16] = rfc4122("4ab7b379-bbac-4fe4-a02f-05aef327c782");
    /// The VCEK certificate (DER).
    pub const VCEK: [u8; 16] = rfc4122("63da758d-e664-4564-adc5-f4b93be8accd");
    /// The VLEK certificate (DER).
    pub const VLEK: [u8; 16] = rfc4122("a8074bc2-a25a-483e-aae6-39c045a0b8a1");
    /// The CRL (DER).
    pub const CRL: [u8; 16] = rfc4122("92f81bc3-5811-4d3d-97ff-d19f88dc67ea");
    /// go-sev-guest's extra platform info (`u32` size 8, `u32` CPUID(1).EAX).
    pub const EXTRA_PLATFORM_INFO: [u8; 16] = rfc4122("ecae0c0f-9502-43b1-afa2-0ae2e0d565b6");
}

/// The name of a known entry GUID (`ARK`, `VCEK`, …).
pub fn guid_name(guid: &[u8; 16]) -> Option<&'static str> {
    [
        (guid::ARK, "ARK"),
        (guid::ASK, "ASK"),
        (guid::VCEK, "VCEK"),
        (guid::VLEK, "VLEK"),
        (guid::CRL, "CRL"),
        (guid::EXTRA_PLATFORM_INFO, "extra platform info"),
    ]
    .into_iter()
    .find_map(|(g, n)| (g == *guid).then_some(n))
}

/// One certificate of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertEntry {
    /// What it is ([`guid`]).
    pub guid: [u8; 16],
    /// Its bytes.
    pub data: Vec<u8>,
}

/// Why a certificate table does not decode or encode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertTableError {
    /// The buffer ends before the all-zero terminator entry.
    #[error("certificate table has no all-zero terminator entry within its {0} bytes")]
    NoTerminator(usize),
    /// More entries than [`MAX_ENTRIES`].
    #[error("certificate table has more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    /// The buffer is larger than [`MAX_TABLE_LEN`].
    #[error("certificate table of {0} bytes is larger than the {MAX_TABLE_LEN}-byte limit")]
    TooLarge(usize),
    /// An entry's data lies outside the buffer or overlaps the table.
    #[error("certificate table entry {index} ({offset:#x}+{length:#x}) is outside the data area {start:#x}..{end:#x}")]
    Bounds {
        /// The entry's index.
        index: usize,
        /// Its offset.
        offset: u32,
        /// Its length.
        length: u32,
        /// Where the data area starts (after the terminator).
        start: usize,
        /// The buffer's length.
        end: usize,
    },
    /// An entry with the all-zero GUID but a non-zero offset or length.
    #[error("certificate table entry {0} has the zero GUID")]
    ZeroGuid(usize),
    /// Two entries have the same GUID.
    #[error("certificate table has two entries with GUID {0}")]
    Duplicate(String),
}

fn guid_string(g: &[u8; 16]) -> String {
    let h = hex::encode(g);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Encodes `entries` as a table: the entries and the terminator, then each
/// certificate in order. Empty `entries` give the 24-byte empty table.
pub fn encode(entries: &[CertEntry]) -> Result<Vec<u8>, CertTableError> {
    if entries.len() > MAX_ENTRIES {
        return Err(CertTableError::TooManyEntries);
    }
    for (i, e) in entries.iter().enumerate() {
        if e.guid == [0; 16] {
            return Err(CertTableError::ZeroGuid(i));
        }
        if entries[..i].iter().any(|o| o.guid == e.guid) {
            return Err(CertTableError::Duplicate(guid_string(&e.guid)));
        }
    }
    let table_len = (entries.len() + 1) * ENTRY_LEN;
    let total = entries
        .iter()
        .fold(table_len, |acc, e| acc.saturating_add(e.data.len()));
    if total > MAX_TABLE_LEN {
        return Err(CertTableError::TooLarge(total));
    }
    let mut out = vec![0u8; table_len];
    let mut offset = table_len;
    for (i, e) in entries.iter().enumerate() {
        let at = i * ENTRY_LEN;
        out[at..at + 16].copy_from_slice(&e.guid);
        // Both fit: total ≤ MAX_TABLE_LEN < 2^32.
        out[at + 16..at + 20].copy_from_slice(&(offset as u32).to_le_bytes());
        out[at + 20..at + 24].copy_from_slice(&(e.data.len() as u32).to_le_bytes());
        offset += e.data.len();
    }
    for e in entries {
        out.extend_from_slice(&e.data);
    }
    Ok(out)
}

/// Decodes a table from `buf` (a guest's certificate buffer; bytes after
/// the last certificate are ignored): entries up to the all-zero
/// terminator, each certificate inside `buf` and after the terminator, no
/// GUID twice.
pub fn decode(buf: &[u8]) -> Result<Vec<CertEntry>, CertTableError> {
    if buf.len() > MAX_TABLE_LEN {
        return Err(CertTableError::TooLarge(buf.len()));
    }
    let mut raw = Vec::new();
    let mut terminated = false;
    for (index, entry) in buf.chunks_exact(ENTRY_LEN).enumerate() {
        if entry.iter().all(|b| *b == 0) {
            terminated = true;
            break;
        }
        if index == MAX_ENTRIES {
            return Err(CertTableError::TooManyEntries);
        }
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&entry[..16]);
        let offset = u32::from_le_bytes([entry[16], entry[17], entry[18], entry[19]]);
        let length = u32::from_le_bytes([entry[20], entry[21], entry[22], entry[23]]);
        if guid == [0; 16] {
            return Err(CertTableError::ZeroGuid(index));
        }
        raw.push((guid, offset, length));
    }
    if !terminated {
        return Err(CertTableError::NoTerminator(buf.len()));
    }
    let start = (raw.len() + 1) * ENTRY_LEN;
    let mut out: Vec<CertEntry> = Vec::with_capacity(raw.len());
    for (index, (guid, offset, length)) in raw.into_iter().enumerate() {
        let begin = offset as usize;
        let end = begin.checked_add(length as usize);
        let data = match end {
            Some(end) if begin >= start && end <= buf.len() => &buf[begin..end],
            _ => {
                return Err(CertTableError::Bounds {
                    index,
                    offset,
                    length,
                    start,
                    end: buf.len(),
                })
            }
        };
        if out.iter().any(|e| e.guid == guid) {
            return Err(CertTableError::Duplicate(guid_string(&guid)));
        }
        out.push(CertEntry {
            guid,
            data: data.to_vec(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_bytes_are_rfc4122_order() {
        assert_eq!(hex::encode(guid::VCEK), "63da758de6644564adc5f4b93be8accd");
        assert_eq!(guid_name(&guid::ASK), Some("ASK"));
        assert_eq!(guid_name(&[1; 16]), None);
    }

    #[test]
    fn round_trip() {
        let entries = vec![
            CertEntry {
                guid: guid::VCEK,
                data: vec![1, 2, 3],
            },
            CertEntry {
                guid: guid::ASK,
                data: vec![4; 100],
            },
            CertEntry {
                guid: guid::ARK,
                data: Vec::new(),
            },
        ];
        let buf = encode(&entries).unwrap();
        assert_eq!(buf.len(), 4 * ENTRY_LEN + 103);
        assert_eq!(u32::from_le_bytes(buf[16..20].try_into().unwrap()), 96);
        assert_eq!(decode(&buf).unwrap(), entries);
        // Trailing bytes of the guest's buffer are ignored.
        let mut padded = buf.clone();
        padded.resize(16384, 0);
        assert_eq!(decode(&padded).unwrap(), entries);
    }

    #[test]
    fn empty_table() {
        let buf = encode(&[]).unwrap();
        assert_eq!(buf, vec![0u8; 24]);
        assert_eq!(decode(&buf).unwrap(), Vec::new());
    }

    #[test]
    fn malformed_tables() {
        assert_eq!(decode(&[]), Err(CertTableError::NoTerminator(0)));
        assert_eq!(decode(&[1; 47]), Err(CertTableError::NoTerminator(47)));
        let one = encode(&[CertEntry {
            guid: guid::VCEK,
            data: vec![9; 8],
        }])
        .unwrap();
        let mut bad = one.clone();
        bad[16] = 0; // offset 0: inside the table
        assert!(matches!(decode(&bad), Err(CertTableError::Bounds { .. })));
        let mut bad = one.clone();
        bad[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&bad), Err(CertTableError::Bounds { .. })));
        let mut bad = one.clone();
        bad[..16].fill(0);
        assert_eq!(decode(&bad), Err(CertTableError::ZeroGuid(0)));
        let mut many = Vec::new();
        for i in 0..=MAX_ENTRIES {
            let mut e = [0u8; ENTRY_LEN];
            e[0] = 1;
            e[1] = i as u8;
            many.extend_from_slice(&e);
        }
        many.extend_from_slice(&[0; ENTRY_LEN]);
        assert_eq!(decode(&many), Err(CertTableError::TooManyEntries));
        let dup = CertEntry {
            guid: guid::ARK,
            data: vec![],
        };
        assert!(matches!(
            encode(&[dup.clone(), dup]),
            Err(CertTableError::Duplicate(_))
        ));
        assert_eq!(
            encode(&[CertEntry {
                guid: [0; 16],
                data: vec![]
            }]),
            Err(CertTableError::ZeroGuid(0))
        );
        assert_eq!(
            decode(&vec![0u8; MAX_TABLE_LEN + 1]),
            Err(CertTableError::TooLarge(MAX_TABLE_LEN + 1))
        );
    }
}
