//! The OVMF / Linux `efi_secret` secret table (docs/protocol/secret.md#secret-table):
//! the plaintext a guest owner encrypts into a LAUNCH_SECRET packet.
//!
//! ```text
//! 0   16  header GUID 1e74f542-71dd-4d66-963e-ef4287ff173b
//! 16   4  u32 LE total length = 20 + sum of entry lengths (padding excluded)
//! 20  ..  entries back to back: GUID (16) || u32 LE length (= 20 + data) || data
//! end 0-15 zero padding to a multiple of 16 bytes
//! ```

use core::fmt;

use zeroize::Zeroizing;

use crate::guid::Guid;

/// The table header GUID 1e74f542-71dd-4d66-963e-ef4287ff173b.
pub const SECRET_TABLE_GUID: Guid = Guid::from_str_const("1e74f542-71dd-4d66-963e-ef4287ff173b");

/// Size of the secret area OVMF (AmdSev build) reserves (docs/protocol/secret.md#secret-area).
pub const OVMF_SECRET_AREA_SIZE: usize = 0xC00;

/// Size of the table header (GUID + total length).
pub const TABLE_HEADER_SIZE: usize = 20;

/// Size of an entry header (GUID + length).
pub const ENTRY_HEADER_SIZE: usize = 20;

/// Why a secret table could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretTableError {
    /// The buffer is shorter than the 20-byte table header.
    #[error("secret table is {len} bytes, shorter than its {TABLE_HEADER_SIZE}-byte header")]
    Truncated {
        /// Buffer length.
        len: usize,
    },
    /// The first 16 bytes are not the secret table GUID.
    #[error("secret table header GUID is {found}, expected {SECRET_TABLE_GUID}")]
    BadHeader {
        /// The GUID found.
        found: Guid,
    },
    /// The total length is smaller than the table header itself.
    #[error(
        "secret table total length {total} is smaller than the {TABLE_HEADER_SIZE}-byte header"
    )]
    TotalLengthTooSmall {
        /// The total length field.
        total: u32,
    },
    /// The total length runs past the end of the buffer.
    #[error("secret table total length {total} exceeds the {available} bytes available")]
    TotalLengthBeyondBuffer {
        /// The total length field.
        total: u32,
        /// Buffer length.
        available: usize,
    },
    /// Fewer than 20 bytes remain in the table where an entry header starts.
    #[error("secret table entry at offset {offset} is truncated: {remaining} bytes left, an entry header needs {ENTRY_HEADER_SIZE}")]
    TruncatedEntry {
        /// Offset of the entry in the table.
        offset: usize,
        /// Bytes left before the table's total length.
        remaining: usize,
    },
    /// An entry whose length field is smaller than its own header.
    #[error("secret table entry at offset {offset} has length {len}, less than its {ENTRY_HEADER_SIZE}-byte header")]
    EntryLengthTooSmall {
        /// Offset of the entry in the table.
        offset: usize,
        /// The entry's length field.
        len: u32,
    },
    /// An entry that runs past the table's total length.
    #[error("secret table entry at offset {offset} with length {len} runs past the table's total length {total}")]
    EntryBeyondTable {
        /// Offset of the entry in the table.
        offset: usize,
        /// The entry's length field.
        len: u32,
        /// The table's total length.
        total: usize,
    },
    /// The table does not fit: the secret area, or a 32-bit length field.
    #[error("secret table needs {size} bytes but at most {limit} fit")]
    TooLarge {
        /// Bytes needed (padded size for an area, unpadded for a length field).
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// One secret: a GUID naming it and its bytes (zeroed on drop, not shown by
/// `Debug`). An all-zero GUID marks an entry the guest has wiped.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// The GUID naming the secret (Linux: `/sys/kernel/security/secrets/coco/<guid>`).
    pub guid: Guid,
    /// The secret bytes.
    pub data: Zeroizing<Vec<u8>>,
}

impl Entry {
    /// Whether the guest wiped this entry (its GUID is all zero).
    pub fn is_wiped(&self) -> bool {
        self.guid == Guid::ZERO
    }

    /// The entry's encoded length: 20 + data length.
    pub fn encoded_len(&self) -> usize {
        ENTRY_HEADER_SIZE.saturating_add(self.data.len())
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("guid", &self.guid)
            .field("len", &self.data.len())
            .finish_non_exhaustive()
    }
}

/// A secret table being built by the guest owner.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretTable {
    entries: Vec<Entry>,
}

impl SecretTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a secret (builder style).
    #[must_use]
    pub fn add(mut self, guid: Guid, data: impl AsRef<[u8]>) -> Self {
        self.push(guid, data);
        self
    }

    /// Adds a secret.
    pub fn push(&mut self, guid: Guid, data: impl AsRef<[u8]>) {
        self.entries.push(Entry {
            guid,
            data: Zeroizing::new(data.as_ref().to_vec()),
        });
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The total length field: 20 + Σ (20 + data length), without padding.
    /// Saturates at `usize::MAX` (then refused by the encoders).
    pub fn table_len(&self) -> usize {
        self.entries.iter().fold(TABLE_HEADER_SIZE, |acc, e| {
            acc.saturating_add(e.encoded_len())
        })
    }

    /// The table length rounded up to a multiple of 16 (what is encrypted).
    pub fn padded_len(&self) -> usize {
        self.table_len().saturating_add(15) & !15
    }

    /// Checks that the padded table fits a secret area of `area_size` bytes
    /// (0xC00 for OVMF, [`OVMF_SECRET_AREA_SIZE`]).
    pub fn check_size(&self, area_size: usize) -> Result<(), SecretTableError> {
        let size = self.padded_len();
        if size > area_size {
            return Err(SecretTableError::TooLarge {
                size,
                limit: area_size,
            });
        }
        Ok(())
    }

    /// Encodes the table with zero padding to a multiple of 16 bytes.
    /// Fails only if a length does not fit its 32-bit field.
    pub fn to_padded_bytes(&self) -> Result<Zeroizing<Vec<u8>>, SecretTableError> {
        let total = self.table_len();
        let too_large = || SecretTableError::TooLarge {
            size: total,
            limit: u32::MAX as usize,
        };
        let total32 = u32::try_from(total).map_err(|_| too_large())?;
        let mut out = Zeroizing::new(Vec::with_capacity(self.padded_len()));
        out.extend_from_slice(SECRET_TABLE_GUID.as_bytes());
        out.extend_from_slice(&total32.to_le_bytes());
        for entry in &self.entries {
            // Each entry length is at most the total, which fits a u32.
            let len = u32::try_from(entry.encoded_len()).map_err(|_| too_large())?;
            out.extend_from_slice(entry.guid.as_bytes());
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&entry.data);
        }
        out.resize(self.padded_len(), 0);
        Ok(out)
    }

    /// [`Self::check_size`] then [`Self::to_padded_bytes`].
    pub fn to_padded_bytes_within(
        &self,
        area_size: usize,
    ) -> Result<Zeroizing<Vec<u8>>, SecretTableError> {
        self.check_size(area_size)?;
        self.to_padded_bytes()
    }

    /// Parses a table (e.g. a decrypted secret area). Bytes after the total
    /// length (padding, the rest of the area) are ignored. Wiped entries
    /// (all-zero GUID) are returned too; see [`Entry::is_wiped`].
    pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>, SecretTableError> {
        let header = bytes
            .get(..TABLE_HEADER_SIZE)
            .ok_or(SecretTableError::Truncated { len: bytes.len() })?;
        let (guid, total) = read_entry_header(header);
        if guid != SECRET_TABLE_GUID {
            return Err(SecretTableError::BadHeader { found: guid });
        }
        if (total as usize) < TABLE_HEADER_SIZE {
            return Err(SecretTableError::TotalLengthTooSmall { total });
        }
        let table =
            bytes
                .get(..total as usize)
                .ok_or(SecretTableError::TotalLengthBeyondBuffer {
                    total,
                    available: bytes.len(),
                })?;

        let mut entries = Vec::new();
        let mut offset = TABLE_HEADER_SIZE;
        while offset < table.len() {
            let rest = table.get(offset..).unwrap_or_default();
            let entry_header =
                rest.get(..ENTRY_HEADER_SIZE)
                    .ok_or(SecretTableError::TruncatedEntry {
                        offset,
                        remaining: rest.len(),
                    })?;
            let (guid, len) = read_entry_header(entry_header);
            if (len as usize) < ENTRY_HEADER_SIZE {
                return Err(SecretTableError::EntryLengthTooSmall { offset, len });
            }
            let data = rest.get(ENTRY_HEADER_SIZE..len as usize).ok_or(
                SecretTableError::EntryBeyondTable {
                    offset,
                    len,
                    total: table.len(),
                },
            )?;
            entries.push(Entry {
                guid,
                data: Zeroizing::new(data.to_vec()),
            });
            offset = offset.saturating_add(len as usize);
        }
        Ok(entries)
    }
}

/// Reads a GUID and a little-endian u32 from a 20-byte header.
fn read_entry_header(header: &[u8]) -> (Guid, u32) {
    let mut guid = [0u8; 16];
    let mut len = [0u8; 4];
    for (dst, src) in guid.iter_mut().chain(len.iter_mut()).zip(header) {
        *dst = *src;
    }
    (Guid::from_bytes(guid), u32::from_le_bytes(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::{build_launch_secret, open_launch_secret};
    use crate::session::{Tek, Tik, TransportKeys};

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    fn arr<const N: usize>(s: &str) -> [u8; N] {
        unhex(s).try_into().unwrap()
    }

    fn guid(s: &str) -> Guid {
        s.parse().unwrap()
    }

    // docs/protocol/test-vectors.md#sevctl-secret (virtee/sevctl tests/secretbuild.rs).
    const GUID1: &str = "736869e5-84f0-4973-92ec-06879ce3da0b";
    const GUID2: &str = "736869e5-aaaa-4973-92ec-06879ce3da0b";

    fn case1() -> SecretTable {
        SecretTable::new().add(guid(GUID1), "MY-LUKS-PASSPHRASE")
    }

    fn case2() -> SecretTable {
        case1().add(guid(GUID2), b"SOME OTHER SECRET")
    }

    #[test]
    fn header_guid_bytes() {
        assert_eq!(
            hex::encode(SECRET_TABLE_GUID.as_bytes()),
            "42f5741edd71664d963eef4287ff173b"
        );
    }

    /// docs/protocol/test-vectors.md#sevctl-secret case 1: the 64-byte plaintext table [derived].
    #[test]
    fn table_bytes_case1() {
        let t = case1();
        assert_eq!(t.table_len(), 0x3a);
        assert_eq!(t.padded_len(), 64);
        let bytes = t.to_padded_bytes().unwrap();
        assert_eq!(
            hex::encode(&*bytes),
            "42f5741edd71664d963eef4287ff173b3a000000\
             e5696873f084734992ec06879ce3da0b26000000\
             4d592d4c554b532d50415353504852415345000000000000"
        );
    }

    /// docs/protocol/test-vectors.md#sevctl-secret case 2: the 96-byte plaintext table [derived].
    #[test]
    fn table_bytes_case2() {
        let bytes = case2().to_padded_bytes().unwrap();
        assert_eq!(
            hex::encode(&*bytes),
            "42f5741edd71664d963eef4287ff173b5f000000\
             e5696873f084734992ec06879ce3da0b26000000\
             4d592d4c554b532d50415353504852415345\
             e5696873aaaa734992ec06879ce3da0b25000000\
             534f4d45204f544845522053454352455400"
        );
    }

    /// docs/protocol/test-vectors.md#sevctl-secret end to end: table → LAUNCH_SECRET packet gives
    /// sevctl's published header and payload (cases 1 and 2), and the
    /// firmware side recovers and parses the table.
    #[test]
    fn sevctl_secret_build_end_to_end() {
        let keys = TransportKeys {
            tek: Tek::from_bytes(arr("52a869b79ab9c13bb6a92b0561619cb3")),
            tik: Tik::from_bytes(arr("c6d5a9956133050912b24bbe5c372686")),
        };
        let iv = arr::<16>("ac5474ed4dd32c7d989ec523d92559ec");
        let m = arr::<32>("4cb780efad3b959427b4b8d1635fe2fac6ed75267eef9cf1a73e0fc7d873a412");
        let cases = [
            (
                case1(),
                "bc152cde610e17f0aef557334a2d4fca42c22c4312e3b5b85a3d47b0aac857e5",
                "d14ddee4f717bf4516f87e2d48114a39d0987ca135fa3dfc05cd9fb8ed7a9988\
                 b223eb16c7b20d7e7fa58188f9e862f5db2ca29c36be9557c20b00ffdb0e5c3c",
            ),
            (
                case2(),
                "99debd1d38428750e84846acc6618bd326074cb413cbd672ba183f5a1844fb36",
                "d14ddee4f717bf4516f87e2d48114a39b5987ca135fa3dfc05cd9fb8ed7a9988\
                 b223eb16c7b20d7e7fa58188f9e862f5db2ca29c36be9557c20be596b37df696\
                 92cd517d5923760aeef620b72b385feb86c4422590843dd2ff3fc3c64599031e",
            ),
        ];
        for (table, mac, payload_hex) in cases {
            let plain = table.to_padded_bytes_within(OVMF_SECRET_AREA_SIZE).unwrap();
            let (header, payload) = build_launch_secret(&keys, &iv, &plain, Some(&m));
            assert_eq!(header.flags, 0);
            assert_eq!(header.iv, iv);
            assert_eq!(hex::encode(header.mac), mac);
            assert_eq!(hex::encode(&payload), payload_hex);

            let opened =
                open_launch_secret(&keys, &header, payload.len() as u32, &payload, Some(&m))
                    .unwrap();
            let entries = SecretTable::parse(&opened).unwrap();
            assert_eq!(entries, table.entries());
        }
    }

    #[test]
    fn parse_round_trip_and_ignores_trailing_bytes() {
        let t = case2()
            .add(Guid::ZERO, b"")
            .add(guid(GUID1), vec![0u8; 300]);
        let mut area = t.to_padded_bytes().unwrap().to_vec();
        area.resize(OVMF_SECRET_AREA_SIZE, 0xEE);
        let entries = SecretTable::parse(&area).unwrap();
        assert_eq!(entries.len(), 4);
        assert_eq!(entries, t.entries());
        assert_eq!(&entries[0].data[..], b"MY-LUKS-PASSPHRASE");
        assert!(entries[2].is_wiped());
        assert!(entries[2].data.is_empty());
        assert!(!entries[3].is_wiped());
        // An empty table is just the header.
        let empty = SecretTable::new().to_padded_bytes().unwrap();
        assert_eq!(empty.len(), 32);
        assert!(SecretTable::parse(&empty).unwrap().is_empty());
    }

    #[test]
    fn entry_debug_hides_data() {
        let t = case1();
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("LUKS"), "{dbg}");
        assert!(!dbg.contains("77, 89"), "{dbg}");
        assert!(dbg.contains("len: 18"), "{dbg}");
    }

    fn with_total(mut bytes: Vec<u8>, total: u32) -> Vec<u8> {
        bytes[16..20].copy_from_slice(&total.to_le_bytes());
        bytes
    }

    #[test]
    fn parse_errors() {
        let good = case2().to_padded_bytes().unwrap().to_vec(); // total 0x5f, 96 bytes

        assert_eq!(
            SecretTable::parse(&good[..19]).unwrap_err(),
            SecretTableError::Truncated { len: 19 }
        );
        let mut bad = good.clone();
        bad[3] ^= 1;
        assert!(matches!(
            SecretTable::parse(&bad).unwrap_err(),
            SecretTableError::BadHeader { found } if found != SECRET_TABLE_GUID
        ));
        assert_eq!(
            SecretTable::parse(&with_total(good.clone(), 19)).unwrap_err(),
            SecretTableError::TotalLengthTooSmall { total: 19 }
        );
        assert_eq!(
            SecretTable::parse(&with_total(good.clone(), 97)).unwrap_err(),
            SecretTableError::TotalLengthBeyondBuffer {
                total: 97,
                available: 96
            }
        );
        assert_eq!(
            SecretTable::parse(&with_total(good.clone(), u32::MAX)).unwrap_err(),
            SecretTableError::TotalLengthBeyondBuffer {
                total: u32::MAX,
                available: 96
            }
        );
        // Total cut inside the second entry's header: 0x3a + 10.
        assert_eq!(
            SecretTable::parse(&with_total(good.clone(), 0x3a + 10)).unwrap_err(),
            SecretTableError::TruncatedEntry {
                offset: 0x3a,
                remaining: 10
            }
        );
        // Total cut inside the second entry's data.
        assert_eq!(
            SecretTable::parse(&with_total(good.clone(), 0x5e)).unwrap_err(),
            SecretTableError::EntryBeyondTable {
                offset: 0x3a,
                len: 0x25,
                total: 0x5e
            }
        );
        // Entry length smaller than its header (would loop or underflow).
        for len in [0u32, 1, 19] {
            let mut b = good.clone();
            b[36..40].copy_from_slice(&len.to_le_bytes());
            assert_eq!(
                SecretTable::parse(&b).unwrap_err(),
                SecretTableError::EntryLengthTooSmall { offset: 20, len }
            );
        }
        // Entry length far past the table.
        let mut b = good.clone();
        b[36..40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            SecretTable::parse(&b).unwrap_err(),
            SecretTableError::EntryBeyondTable {
                offset: 20,
                len: u32::MAX,
                total: 0x5f
            }
        );
    }

    /// Every truncation of a valid table is refused cleanly (no panic).
    #[test]
    fn parse_never_panics_on_prefixes_or_lengths() {
        let good = case2().to_padded_bytes().unwrap().to_vec();
        for cut in 0..good.len() {
            let _ = SecretTable::parse(&good[..cut]);
        }
        for total in 0..=200u32 {
            let _ = SecretTable::parse(&with_total(good.clone(), total));
        }
    }

    /// Random mutations of a valid table (seeded, hermetic) never panic, and
    /// whatever parses stays inside the declared total length.
    #[test]
    fn parse_survives_random_mutations() {
        use rand_chacha::rand_core::{RngCore, SeedableRng};
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0x5ec7);
        let good = case2().to_padded_bytes().unwrap().to_vec();
        for _ in 0..5000 {
            let mut b = good.clone();
            for _ in 0..1 + rng.next_u32() % 4 {
                let i = 16 + (rng.next_u32() as usize) % (b.len() - 16);
                b[i] = rng.next_u32() as u8;
            }
            let cut = (rng.next_u32() as usize) % (b.len() + 1);
            let b = &b[..cut.max(20)];
            if let Ok(entries) = SecretTable::parse(b) {
                let total = u32::from_le_bytes(b[16..20].try_into().unwrap()) as usize;
                let used: usize = 20 + entries.iter().map(Entry::encoded_len).sum::<usize>();
                assert_eq!(used, total);
                assert!(total <= b.len());
            }
        }
    }

    #[test]
    fn size_check_against_area() {
        // 20 + 20 + n padded to 16: n = 0xC00 - 40 fits exactly.
        let fits = SecretTable::new().add(guid(GUID1), vec![1u8; 0xC00 - 40]);
        assert_eq!(fits.padded_len(), 0xC00);
        assert!(fits.check_size(OVMF_SECRET_AREA_SIZE).is_ok());
        assert_eq!(
            fits.to_padded_bytes_within(OVMF_SECRET_AREA_SIZE)
                .unwrap()
                .len(),
            0xC00
        );
        let too_big = SecretTable::new().add(guid(GUID1), vec![1u8; 0xC00 - 39]);
        assert_eq!(
            too_big.check_size(OVMF_SECRET_AREA_SIZE).unwrap_err(),
            SecretTableError::TooLarge {
                size: 0xC10,
                limit: 0xC00
            }
        );
        assert!(too_big
            .to_padded_bytes_within(OVMF_SECRET_AREA_SIZE)
            .is_err());
    }
}
