//! The owner's secret: the efi_secret table (docs/protocol/secret.md#secret-table) of one or
//! more `GUID:FILE` / `GUID:=string` entries, wrapped into a LAUNCH_SECRET
//! packet header and payload (7.1, 7.2) byte-compatible with
//! `sevctl secret build` (virtee/sevctl `src/secret.rs`): the table padded to
//! 16 bytes, AES-128-CTR under the TEK, HMAC under the TIK over
//! `0x01 ‖ FLAGS ‖ IV ‖ len ‖ len ‖ ciphertext ‖ MEASUREMENT`.

use std::path::Path;

use sev_proto::secret::{build_launch_secret, PacketHeader};
use sev_proto::secret_table::{SecretTable, SecretTableError, OVMF_SECRET_AREA_SIZE};
use sev_proto::session::TransportKeys;
use sev_proto::Guid;
use zeroize::Zeroizing;

use crate::io::{self, IoError};

/// The largest blob the Linux kernel passes to LAUNCH_SECRET
/// (SEV_FW_BLOB_MAX_SIZE, docs/protocol/linux.md#dev-sev).
pub const KERNEL_BLOB_MAX: usize = 0x4000;

/// Why a secret could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// A `--secret` value is not `GUID:FILE` or `GUID:=string`.
    #[error("secret {spec:?}: expected GUID:FILE or GUID:=string")]
    Syntax {
        /// The value (truncated).
        spec: String,
    },
    /// The GUID part is malformed.
    #[error(
        "secret {spec:?}: {guid:?} is not a GUID (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
    )]
    Guid {
        /// The value (truncated).
        spec: String,
        /// The GUID text.
        guid: String,
    },
    /// The same GUID was given twice.
    #[error("secret GUID {0} is given more than once")]
    Duplicate(Guid),
    /// A secret file could not be read.
    #[error("secret {guid}")]
    Read {
        /// Which secret.
        guid: Guid,
        /// Why.
        #[source]
        source: IoError,
    },
    /// No secrets were given.
    #[error("no secrets given: pass at least one --secret GUID:FILE or GUID:=string")]
    Empty,
    /// The table does not fit the firmware's secret area.
    #[error(
        "the secret table needs {size} bytes (padded to 16) but the guest's secret area holds {limit}"
    )]
    TooLarge {
        /// Bytes needed.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The table could not be encoded.
    #[error("secret table")]
    Table(#[source] SecretTableError),
}

/// One parsed `--secret` argument.
pub struct SecretSpec {
    /// The GUID naming the secret.
    pub guid: Guid,
    /// Its bytes.
    pub data: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SecretSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSpec")
            .field("guid", &self.guid)
            .field("len", &self.data.len())
            .finish()
    }
}

fn shown(s: &str) -> String {
    s.chars().take(80).collect()
}

/// The GUID forms sevctl's UUID parser accepts: hyphenated, braced
/// `{...}`, `urn:uuid:...`, or 32 hex digits without hyphens.
fn normalize_guid(text: &str) -> String {
    let t = text.trim();
    let t = t.strip_prefix("urn:uuid:").unwrap_or(t);
    let t = t
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(t);
    if t.len() == 32 && t.chars().all(|c| c.is_ascii_hexdigit()) {
        let (a, r) = t.split_at(8);
        let (b, r) = r.split_at(4);
        let (c, r) = r.split_at(4);
        let (d, e) = r.split_at(4);
        return format!("{a}-{b}-{c}-{d}-{e}");
    }
    t.to_string()
}

/// Parses `GUID:FILE` (the file's bytes, as sevctl) or `GUID:=string` (the
/// string's UTF-8 bytes). A file whose name starts with `=` is written
/// `GUID:./=name`. The GUID may be hyphenated, braced, `urn:uuid:...` or 32
/// hex digits (the forms sevctl accepts).
pub fn parse_spec(spec: &str) -> Result<SecretSpec, SecretError> {
    // `urn:uuid:` carries colons of its own.
    let (prefix, body) = match spec.strip_prefix("urn:uuid:") {
        Some(tail) => ("urn:uuid:", tail),
        None => ("", spec),
    };
    let (guid_tail, rest) = body
        .split_once(':')
        .ok_or_else(|| SecretError::Syntax { spec: shown(spec) })?;
    let guid_text = format!("{prefix}{guid_tail}");
    let guid: Guid = normalize_guid(&guid_text)
        .parse()
        .map_err(|_| SecretError::Guid {
            spec: shown(spec),
            guid: shown(&guid_text),
        })?;
    let data = match rest.strip_prefix('=') {
        Some(literal) => Zeroizing::new(literal.as_bytes().to_vec()),
        None if rest.is_empty() => return Err(SecretError::Syntax { spec: shown(spec) }),
        None => Zeroizing::new(
            io::read_file_max(Path::new(rest), KERNEL_BLOB_MAX as u64)
                .map_err(|source| SecretError::Read { guid, source })?,
        ),
    };
    Ok(SecretSpec { guid, data })
}

/// The packet: the 52-byte header and the encrypted table.
#[derive(Debug, Clone)]
pub struct SecretPacket {
    /// FLAGS ‖ IV ‖ MAC.
    pub header: [u8; PacketHeader::SIZE],
    /// The encrypted, padded table.
    pub payload: Vec<u8>,
    /// The plaintext table size before padding.
    pub table_len: usize,
}

/// The default size limit: the OVMF AmdSev secret area (0xC00 bytes).
pub const DEFAULT_LIMIT: usize = OVMF_SECRET_AREA_SIZE;

/// Builds the table from `specs` and the packet for `measurement` (the
/// first 32 bytes of the launch-measure blob). The padded table must fit
/// `limit` bytes (the guest's secret area; at most the kernel's 16 KiB).
pub fn build(
    specs: &[SecretSpec],
    keys: &TransportKeys,
    measurement: &[u8; 32],
    iv: &[u8; 16],
    limit: usize,
) -> Result<SecretPacket, SecretError> {
    if specs.is_empty() {
        return Err(SecretError::Empty);
    }
    let mut table = SecretTable::new();
    for (i, s) in specs.iter().enumerate() {
        if specs.iter().take(i).any(|o| o.guid == s.guid) {
            return Err(SecretError::Duplicate(s.guid));
        }
        table.push(s.guid, &s.data[..]);
    }
    let limit = limit.min(KERNEL_BLOB_MAX);
    if table.padded_len() > limit {
        return Err(SecretError::TooLarge {
            size: table.padded_len(),
            limit,
        });
    }
    let plain = table.to_padded_bytes().map_err(SecretError::Table)?;
    let (header, payload) = build_launch_secret(keys, iv, &plain, Some(measurement));
    Ok(SecretPacket {
        header: header.to_bytes(),
        payload,
        table_len: table.table_len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sev_proto::session::{Tek, Tik};

    fn unhex<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s.replace(' ', "")).unwrap().try_into().unwrap()
    }

    fn sevctl_keys() -> TransportKeys {
        TransportKeys {
            tek: Tek::from_bytes(unhex("52a869b79ab9c13bb6a92b0561619cb3")),
            tik: Tik::from_bytes(unhex("c6d5a9956133050912b24bbe5c372686")),
        }
    }

    /// docs/protocol/test-vectors.md#sevctl-secret (virtee/sevctl tests/secretbuild.rs), cases 1
    /// and 2: header and payload bytes as sevctl writes them.
    #[test]
    fn sevctl_secret_build_known_answers() {
        let iv = unhex("ac5474ed4dd32c7d989ec523d92559ec");
        let m = unhex("4cb780efad3b959427b4b8d1635fe2fac6ed75267eef9cf1a73e0fc7d873a412");
        let one = [parse_spec("736869e5-84f0-4973-92ec-06879ce3da0b:=MY-LUKS-PASSPHRASE").unwrap()];
        let p = build(&one, &sevctl_keys(), &m, &iv, DEFAULT_LIMIT).unwrap();
        assert_eq!(
            hex::encode(p.header),
            "00000000ac5474ed4dd32c7d989ec523d92559ec\
             bc152cde610e17f0aef557334a2d4fca42c22c4312e3b5b85a3d47b0aac857e5"
        );
        assert_eq!(
            hex::encode(&p.payload),
            "d14ddee4f717bf4516f87e2d48114a39d0987ca135fa3dfc05cd9fb8ed7a9988\
             b223eb16c7b20d7e7fa58188f9e862f5db2ca29c36be9557c20b00ffdb0e5c3c"
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s2");
        std::fs::write(&f, "SOME OTHER SECRET").unwrap();
        let two = [
            parse_spec("736869e5-84f0-4973-92ec-06879ce3da0b:=MY-LUKS-PASSPHRASE").unwrap(),
            parse_spec(&format!(
                "736869e5-aaaa-4973-92ec-06879ce3da0b:{}",
                f.display()
            ))
            .unwrap(),
        ];
        let p = build(&two, &sevctl_keys(), &m, &iv, DEFAULT_LIMIT).unwrap();
        assert_eq!(
            hex::encode(&p.header[20..]),
            "99debd1d38428750e84846acc6618bd326074cb413cbd672ba183f5a1844fb36"
        );
        assert_eq!(
            hex::encode(&p.payload),
            "d14ddee4f717bf4516f87e2d48114a39b5987ca135fa3dfc05cd9fb8ed7a9988\
             b223eb16c7b20d7e7fa58188f9e862f5db2ca29c36be9557c20be596b37df696\
             92cd517d5923760aeef620b72b385feb86c4422590843dd2ff3fc3c64599031e"
        );
        assert_eq!(p.table_len, 0x5f);
    }

    #[test]
    fn guid_forms_sevctl_accepts() {
        let want = "736869e5-84f0-4973-92ec-06879ce3da0b";
        for form in [
            "736869e5-84f0-4973-92ec-06879ce3da0b",
            "{736869e5-84f0-4973-92ec-06879ce3da0b}",
            "urn:uuid:736869e5-84f0-4973-92ec-06879ce3da0b",
            "736869e584f0497392ec06879ce3da0b",
            "736869E584F0497392EC06879CE3DA0B",
        ] {
            let s = parse_spec(&format!("{form}:=x")).unwrap();
            assert_eq!(s.guid.to_string(), want, "{form}");
        }
    }

    #[test]
    fn bad_specs_are_named() {
        for (spec, want) in [
            ("no-colon", "expected GUID:FILE"),
            (
                "736869e5-84f0-4973-92ec-06879ce3da0b:",
                "expected GUID:FILE",
            ),
            ("736869e5-84f0-4973-92ec:=x", "is not a GUID"),
            ("zz6869e5-84f0-4973-92ec-06879ce3da0b:=x", "is not a GUID"),
            (
                "736869e5-84f0-4973-92ec-06879ce3da0b:/no/such/file",
                "/no/such/file",
            ),
        ] {
            let e = parse_spec(spec).unwrap_err();
            assert!(
                crate::error::error_chain(&e).contains(want),
                "{spec}: {}",
                crate::error::error_chain(&e)
            );
        }
    }

    #[test]
    fn size_limits_duplicates_and_empty() {
        let keys = sevctl_keys();
        let (m, iv) = ([0u8; 32], [0u8; 16]);
        let big = format!("736869e5-84f0-4973-92ec-06879ce3da0b:={}", "x".repeat(3072));
        let e = build(&[parse_spec(&big).unwrap()], &keys, &m, &iv, DEFAULT_LIMIT).unwrap_err();
        assert!(
            matches!(
                e,
                SecretError::TooLarge {
                    size: 3120,
                    limit: 3072
                }
            ),
            "{e}"
        );
        // The largest that fits: 3072 - 40 header bytes.
        let fits = format!("736869e5-84f0-4973-92ec-06879ce3da0b:={}", "x".repeat(3032));
        build(&[parse_spec(&fits).unwrap()], &keys, &m, &iv, DEFAULT_LIMIT).unwrap();
        // A larger area is still capped by the kernel's 16 KiB.
        let huge = format!(
            "736869e5-84f0-4973-92ec-06879ce3da0b:={}",
            "x".repeat(0x4000)
        );
        let e = build(&[parse_spec(&huge).unwrap()], &keys, &m, &iv, 1 << 20).unwrap_err();
        assert!(
            matches!(e, SecretError::TooLarge { limit: 0x4000, .. }),
            "{e}"
        );
        let a = parse_spec("736869e5-84f0-4973-92ec-06879ce3da0b:=a").unwrap();
        let b = parse_spec("736869E5-84F0-4973-92EC-06879CE3DA0B:=b").unwrap();
        let e = build(&[a, b], &keys, &m, &iv, DEFAULT_LIMIT).unwrap_err();
        assert!(matches!(e, SecretError::Duplicate(_)), "{e}");
        assert!(matches!(
            build(&[], &keys, &m, &iv, DEFAULT_LIMIT),
            Err(SecretError::Empty)
        ));
    }
}
