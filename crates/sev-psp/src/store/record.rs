//! The record codec of state-file payloads, and the platform identity record.
//!
//! A payload is a sequence of tag-length-value records:
//!
//! ```text
//! u16 tag (LE) | u32 length (LE) | length bytes of value
//! ```
//!
//! Every length is bounded, by [`MAX_VALUE_LEN`] in the codec and by the
//! field's own limits in the typed decoders, before anything is allocated.

use std::fmt;

use zeroize::Zeroizing;

/// Largest value the codec accepts.
pub const MAX_VALUE_LEN: usize = 64 * 1024;

const RECORD_HEADER_LEN: usize = 6;

/// Why a payload could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// A record header or value runs past the end of the payload.
    #[error("record at offset {offset} is truncated")]
    Truncated {
        /// Offset of the record's header.
        offset: usize,
    },
    /// A value is longer than the codec or the field allows.
    #[error("record {tag:#06x} is {len} bytes, more than the {max} allowed")]
    TooLong {
        /// The record's tag.
        tag: u16,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A fixed-size field has the wrong length.
    #[error("record {tag:#06x} is {len} bytes, expected {expected}")]
    WrongLength {
        /// The record's tag.
        tag: u16,
        /// Its length.
        len: usize,
        /// The required length.
        expected: usize,
    },
    /// A variable-size field is empty.
    #[error("record {tag:#06x} is empty")]
    Empty {
        /// The record's tag.
        tag: u16,
    },
    /// A tag appears twice.
    #[error("record {tag:#06x} appears more than once")]
    Duplicate {
        /// The repeated tag.
        tag: u16,
    },
    /// A required tag is absent.
    #[error("required record {tag:#06x} ({name}) is missing")]
    Missing {
        /// The missing tag.
        tag: u16,
        /// What it holds.
        name: &'static str,
    },
    /// A tag this build does not know (a newer writer, or damage).
    #[error("unknown record {tag:#06x}")]
    UnknownTag {
        /// The tag.
        tag: u16,
    },
    /// A flag byte is neither 0 nor 1.
    #[error("record {tag:#06x} holds flag value {value}, expected 0 or 1")]
    BadFlag {
        /// The record's tag.
        tag: u16,
        /// The byte found.
        value: u8,
    },
}

/// Builds a payload of records. The buffer is zeroed on drop (payloads hold
/// private keys).
#[derive(Default)]
pub struct RecordWriter {
    buf: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for RecordWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordWriter")
            .field("len", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl RecordWriter {
    /// An empty payload.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one record.
    pub fn put(&mut self, tag: u16, value: &[u8]) -> Result<(), RecordError> {
        let too_long = RecordError::TooLong {
            tag,
            len: value.len(),
            max: MAX_VALUE_LEN,
        };
        if value.len() > MAX_VALUE_LEN {
            return Err(too_long);
        }
        let len = u32::try_from(value.len()).map_err(|_| too_long)?;
        self.buf.extend_from_slice(&tag.to_le_bytes());
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(value);
        Ok(())
    }

    /// The encoded payload.
    pub fn finish(self) -> Zeroizing<Vec<u8>> {
        self.buf
    }
}

/// Iterates over the records of a payload; yields an error (and then stops)
/// at the first malformed record.
#[derive(Debug, Clone)]
pub struct RecordReader<'a> {
    rest: &'a [u8],
    offset: usize,
    failed: bool,
}

impl<'a> RecordReader<'a> {
    /// Reads `payload`.
    pub fn new(payload: &'a [u8]) -> Self {
        Self {
            rest: payload,
            offset: 0,
            failed: false,
        }
    }

    fn parse(&mut self) -> Result<(u16, &'a [u8]), RecordError> {
        let truncated = RecordError::Truncated {
            offset: self.offset,
        };
        let (header, rest) = self
            .rest
            .split_at_checked(RECORD_HEADER_LEN)
            .ok_or(truncated.clone())?;
        let (tag, len) = header.split_at(2);
        let tag = u16::from_le_bytes(tag.try_into().map_err(|_| truncated.clone())?);
        let len = u32::from_le_bytes(len.try_into().map_err(|_| truncated.clone())?);
        let len = usize::try_from(len)
            .ok()
            .filter(|&n| n <= MAX_VALUE_LEN)
            .ok_or(RecordError::TooLong {
                tag,
                len: usize::try_from(len).unwrap_or(usize::MAX),
                max: MAX_VALUE_LEN,
            })?;
        let (value, rest) = rest.split_at_checked(len).ok_or(truncated)?;
        self.rest = rest;
        self.offset += RECORD_HEADER_LEN + len;
        Ok((tag, value))
    }
}

impl<'a> Iterator for RecordReader<'a> {
    type Item = Result<(u16, &'a [u8]), RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let item = self.parse();
        self.failed = item.is_err();
        Some(item)
    }
}

/// Decodes a payload in which each of `count` tags appears exactly once:
/// `field` is given every record and says whether its tag is one it expects
/// and its value well-formed (storing it). The shared loop of the runtime
/// area's fixed-shape records; the error is a message for the caller's
/// "damaged" report.
pub fn decode_fixed(
    payload: &[u8],
    count: usize,
    mut field: impl FnMut(u16, &[u8]) -> bool,
) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for record in RecordReader::new(payload) {
        let (t, v) = record.map_err(|e| e.to_string())?;
        if !seen.insert(t) {
            return Err(format!("record {t:#06x} repeated"));
        }
        if !field(t, v) {
            return Err(format!("unexpected or malformed record {t:#06x}"));
        }
    }
    if seen.len() != count {
        return Err("missing record".into());
    }
    Ok(())
}

/// Length of a P-384 private scalar.
pub const P384_SCALAR_LEN: usize = 48;
/// Length of the chip id GET_ID returns (one socket).
pub const CHIP_ID_LEN: usize = 64;
/// Largest RSA component stored (4096-bit keys, as AMD's ARK/ASK of Rome and
/// later).
pub const MAX_RSA_COMPONENT_LEN: usize = 512;
/// Largest certificate stored (SEV certificates are 2084 bytes, AMD CA
/// certificates of 4096-bit keys 1600).
pub const MAX_CERT_LEN: usize = 4096;

/// A P-384 private scalar (big-endian, as `p384::SecretKey::to_bytes`).
pub type P384Scalar = Zeroizing<[u8; P384_SCALAR_LEN]>;

/// An RSA private key as its big-endian components.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaKeyBytes {
    /// Modulus.
    pub n: Vec<u8>,
    /// Public exponent.
    pub e: Vec<u8>,
    /// Private exponent.
    pub d: Zeroizing<Vec<u8>>,
    /// First prime.
    pub p: Zeroizing<Vec<u8>>,
    /// Second prime.
    pub q: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for RsaKeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaKeyBytes")
            .field("modulus_bits", &(self.n.len() * 8))
            .field("private", &"<redacted>")
            .finish()
    }
}

/// The platform's persistent identity: what survives a restart of the
/// emulated PSP (docs/protocol/emulator.md#platform-context). Raw bytes only; the
/// firmware turns them into keys and certificates.
#[derive(Clone, PartialEq, Eq)]
pub struct PersistentIdentity {
    /// Firmware API major version.
    pub api_major: u8,
    /// Firmware API minor version.
    pub api_minor: u8,
    /// Firmware build.
    pub build: u8,
    /// The chip id GET_ID reports.
    pub chip_id: [u8; CHIP_ID_LEN],
    /// CEK private scalar.
    pub cek_private: P384Scalar,
    /// PEK private scalar.
    pub pek_private: P384Scalar,
    /// OCA private scalar; `None` when the platform is externally owned (the
    /// owner keeps the OCA key).
    pub oca_private: Option<P384Scalar>,
    /// PDH private scalar.
    pub pdh_private: P384Scalar,
    /// The emulated ARK's RSA key.
    pub ark: RsaKeyBytes,
    /// The emulated ASK's RSA key.
    pub ask: RsaKeyBytes,
    /// ARK certificate (AMD CA format).
    pub ark_cert: Vec<u8>,
    /// ASK certificate (AMD CA format).
    pub ask_cert: Vec<u8>,
    /// CEK certificate (SEV format).
    pub cek_cert: Vec<u8>,
    /// OCA certificate (SEV format).
    pub oca_cert: Vec<u8>,
    /// PEK certificate (SEV format).
    pub pek_cert: Vec<u8>,
    /// PDH certificate (SEV format).
    pub pdh_cert: Vec<u8>,
    /// PLATFORM_STATUS owner bit: true when externally owned (an OCA was
    /// imported), false when self-owned.
    pub externally_owned: bool,
}

impl fmt::Debug for PersistentIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistentIdentity")
            .field(
                "api",
                &format_args!("{}.{} build {}", self.api_major, self.api_minor, self.build),
            )
            .field("externally_owned", &self.externally_owned)
            .field("has_oca_private", &self.oca_private.is_some())
            .field("private_keys", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Record tags of [`PersistentIdentity`]. Stable: they are the file format.
mod tag {
    pub const API_VERSION: u16 = 0x0001;
    pub const CHIP_ID: u16 = 0x0002;
    pub const OWNER: u16 = 0x0003;
    pub const CEK_PRIVATE: u16 = 0x0010;
    pub const PEK_PRIVATE: u16 = 0x0011;
    pub const OCA_PRIVATE: u16 = 0x0012;
    pub const PDH_PRIVATE: u16 = 0x0013;
    /// ARK components n, e, d, p, q are 0x20..=0x24, ASK's 0x28..=0x2C.
    pub const ARK: u16 = 0x0020;
    pub const ASK: u16 = 0x0028;
    pub const ARK_CERT: u16 = 0x0040;
    pub const ASK_CERT: u16 = 0x0041;
    pub const CEK_CERT: u16 = 0x0042;
    pub const OCA_CERT: u16 = 0x0043;
    pub const PEK_CERT: u16 = 0x0044;
    pub const PDH_CERT: u16 = 0x0045;
}

impl PersistentIdentity {
    /// Encodes the identity as a record payload (zeroed on drop).
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, RecordError> {
        let mut w = RecordWriter::new();
        w.put(
            tag::API_VERSION,
            &[self.api_major, self.api_minor, self.build],
        )?;
        w.put(tag::CHIP_ID, &self.chip_id)?;
        w.put(tag::OWNER, &[u8::from(self.externally_owned)])?;
        w.put(tag::CEK_PRIVATE, self.cek_private.as_slice())?;
        w.put(tag::PEK_PRIVATE, self.pek_private.as_slice())?;
        if let Some(oca) = &self.oca_private {
            w.put(tag::OCA_PRIVATE, oca.as_slice())?;
        }
        w.put(tag::PDH_PRIVATE, self.pdh_private.as_slice())?;
        for (base, key) in [(tag::ARK, &self.ark), (tag::ASK, &self.ask)] {
            let parts: [&[u8]; 5] = [&key.n, &key.e, &key.d, &key.p, &key.q];
            for (t, value) in (base..).zip(parts) {
                check_var(t, value.len(), MAX_RSA_COMPONENT_LEN)?;
                w.put(t, value)?;
            }
        }
        for (t, cert) in self.certs() {
            check_var(t, cert.len(), MAX_CERT_LEN)?;
            w.put(t, cert)?;
        }
        Ok(w.finish())
    }

    fn certs(&self) -> [(u16, &Vec<u8>); 6] {
        [
            (tag::ARK_CERT, &self.ark_cert),
            (tag::ASK_CERT, &self.ask_cert),
            (tag::CEK_CERT, &self.cek_cert),
            (tag::OCA_CERT, &self.oca_cert),
            (tag::PEK_CERT, &self.pek_cert),
            (tag::PDH_CERT, &self.pdh_cert),
        ]
    }

    /// Decodes a payload made by [`Self::encode`]. Every record must be known,
    /// present at most once and within its field's limits; every field but the
    /// OCA private key is required.
    pub fn decode(payload: &[u8]) -> Result<Self, RecordError> {
        let mut d = Decoded::default();
        for record in RecordReader::new(payload) {
            let (t, value) = record?;
            d.take(t, value)?;
        }
        d.finish()
    }
}

fn check_var(tag: u16, len: usize, max: usize) -> Result<(), RecordError> {
    if len == 0 {
        return Err(RecordError::Empty { tag });
    }
    if len > max {
        return Err(RecordError::TooLong { tag, len, max });
    }
    Ok(())
}

fn fixed<const N: usize>(tag: u16, value: &[u8]) -> Result<[u8; N], RecordError> {
    value.try_into().map_err(|_| RecordError::WrongLength {
        tag,
        len: value.len(),
        expected: N,
    })
}

fn scalar(tag: u16, value: &[u8]) -> Result<P384Scalar, RecordError> {
    let mut out = Zeroizing::new([0u8; P384_SCALAR_LEN]);
    if value.len() != P384_SCALAR_LEN {
        return Err(RecordError::WrongLength {
            tag,
            len: value.len(),
            expected: P384_SCALAR_LEN,
        });
    }
    out.copy_from_slice(value);
    Ok(out)
}

/// Fields collected while decoding, each at most once.
#[derive(Default)]
struct Decoded {
    api: Option<[u8; 3]>,
    chip_id: Option<[u8; CHIP_ID_LEN]>,
    owner: Option<bool>,
    cek: Option<P384Scalar>,
    pek: Option<P384Scalar>,
    oca: Option<P384Scalar>,
    pdh: Option<P384Scalar>,
    /// ARK then ASK, components n, e, d, p, q.
    rsa: [[Option<Zeroizing<Vec<u8>>>; 5]; 2],
    certs: [Option<Vec<u8>>; 6],
}

fn set<T>(slot: &mut Option<T>, tag: u16, value: T) -> Result<(), RecordError> {
    if slot.is_some() {
        return Err(RecordError::Duplicate { tag });
    }
    *slot = Some(value);
    Ok(())
}

fn required<T>(slot: Option<T>, tag: u16, name: &'static str) -> Result<T, RecordError> {
    slot.ok_or(RecordError::Missing { tag, name })
}

impl Decoded {
    fn take(&mut self, t: u16, value: &[u8]) -> Result<(), RecordError> {
        match t {
            tag::API_VERSION => set(&mut self.api, t, fixed::<3>(t, value)?),
            tag::CHIP_ID => set(&mut self.chip_id, t, fixed::<CHIP_ID_LEN>(t, value)?),
            tag::OWNER => match fixed::<1>(t, value)? {
                [0] => set(&mut self.owner, t, false),
                [1] => set(&mut self.owner, t, true),
                [value] => Err(RecordError::BadFlag { tag: t, value }),
            },
            tag::CEK_PRIVATE => set(&mut self.cek, t, scalar(t, value)?),
            tag::PEK_PRIVATE => set(&mut self.pek, t, scalar(t, value)?),
            tag::OCA_PRIVATE => set(&mut self.oca, t, scalar(t, value)?),
            tag::PDH_PRIVATE => set(&mut self.pdh, t, scalar(t, value)?),
            tag::ARK..=0x0024 | tag::ASK..=0x002C => {
                let (key, base) = if t < tag::ASK {
                    (0, tag::ARK)
                } else {
                    (1, tag::ASK)
                };
                check_var(t, value.len(), MAX_RSA_COMPONENT_LEN)?;
                let slot = self
                    .rsa
                    .get_mut(key)
                    .and_then(|k| k.get_mut(usize::from(t - base)))
                    .ok_or(RecordError::UnknownTag { tag: t })?;
                set(slot, t, Zeroizing::new(value.to_vec()))
            }
            tag::ARK_CERT..=tag::PDH_CERT => {
                check_var(t, value.len(), MAX_CERT_LEN)?;
                let slot = self
                    .certs
                    .get_mut(usize::from(t - tag::ARK_CERT))
                    .ok_or(RecordError::UnknownTag { tag: t })?;
                set(slot, t, value.to_vec())
            }
            _ => Err(RecordError::UnknownTag { tag: t }),
        }
    }

    fn rsa(parts: [Option<Zeroizing<Vec<u8>>>; 5], base: u16) -> Result<RsaKeyBytes, RecordError> {
        let [n, e, d, p, q] = parts;
        Ok(RsaKeyBytes {
            n: required(n, base, "RSA n")?.to_vec(),
            e: required(e, base + 1, "RSA e")?.to_vec(),
            d: required(d, base + 2, "RSA d")?,
            p: required(p, base + 3, "RSA p")?,
            q: required(q, base + 4, "RSA q")?,
        })
    }

    fn finish(self) -> Result<PersistentIdentity, RecordError> {
        let [api_major, api_minor, build] = required(self.api, tag::API_VERSION, "API version")?;
        let [ark, ask] = self.rsa;
        let [ark_cert, ask_cert, cek_cert, oca_cert, pek_cert, pdh_cert] = self.certs;
        Ok(PersistentIdentity {
            api_major,
            api_minor,
            build,
            chip_id: required(self.chip_id, tag::CHIP_ID, "chip id")?,
            externally_owned: required(self.owner, tag::OWNER, "owner flag")?,
            cek_private: required(self.cek, tag::CEK_PRIVATE, "CEK private key")?,
            pek_private: required(self.pek, tag::PEK_PRIVATE, "PEK private key")?,
            oca_private: self.oca,
            pdh_private: required(self.pdh, tag::PDH_PRIVATE, "PDH private key")?,
            ark: Self::rsa(ark, tag::ARK)?,
            ask: Self::rsa(ask, tag::ASK)?,
            ark_cert: required(ark_cert, tag::ARK_CERT, "ARK certificate")?,
            ask_cert: required(ask_cert, tag::ASK_CERT, "ASK certificate")?,
            cek_cert: required(cek_cert, tag::CEK_CERT, "CEK certificate")?,
            oca_cert: required(oca_cert, tag::OCA_CERT, "OCA certificate")?,
            pek_cert: required(pek_cert, tag::PEK_CERT, "PEK certificate")?,
            pdh_cert: required(pdh_cert, tag::PDH_CERT, "PDH certificate")?,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use rand::{RngCore, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    use super::*;

    fn bytes(rng: &mut ChaCha20Rng, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        rng.fill_bytes(&mut v);
        v
    }

    fn rsa(rng: &mut ChaCha20Rng) -> RsaKeyBytes {
        RsaKeyBytes {
            n: bytes(rng, 512),
            e: vec![1, 0, 1],
            d: Zeroizing::new(bytes(rng, 512)),
            p: Zeroizing::new(bytes(rng, 256)),
            q: Zeroizing::new(bytes(rng, 256)),
        }
    }

    fn scalar_of(rng: &mut ChaCha20Rng) -> P384Scalar {
        let mut s = Zeroizing::new([0u8; 48]);
        rng.fill_bytes(s.as_mut_slice());
        s
    }

    /// A synthetic identity with realistic field sizes (random bytes, not
    /// real keys: the codec does not interpret them).
    pub(crate) fn sample_identity(seed: u64) -> PersistentIdentity {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut chip_id = [0u8; CHIP_ID_LEN];
        rng.fill_bytes(&mut chip_id);
        PersistentIdentity {
            api_major: 0,
            api_minor: 24,
            build: 15,
            chip_id,
            cek_private: scalar_of(&mut rng),
            pek_private: scalar_of(&mut rng),
            oca_private: Some(scalar_of(&mut rng)),
            pdh_private: scalar_of(&mut rng),
            ark: rsa(&mut rng),
            ask: rsa(&mut rng),
            ark_cert: bytes(&mut rng, 1600),
            ask_cert: bytes(&mut rng, 1600),
            cek_cert: bytes(&mut rng, 2084),
            oca_cert: bytes(&mut rng, 2084),
            pek_cert: bytes(&mut rng, 2084),
            pdh_cert: bytes(&mut rng, 2084),
            externally_owned: false,
        }
    }

    #[test]
    fn identity_round_trips() {
        let id = sample_identity(1);
        let payload = id.encode().unwrap();
        assert_eq!(PersistentIdentity::decode(&payload).unwrap(), id);

        let mut owned = sample_identity(2);
        owned.oca_private = None;
        owned.externally_owned = true;
        let decoded = PersistentIdentity::decode(&owned.encode().unwrap()).unwrap();
        assert_eq!(decoded, owned);
        assert!(decoded.oca_private.is_none() && decoded.externally_owned);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let payload = sample_identity(3).encode().unwrap();
        for len in 0..payload.len() {
            assert!(
                PersistentIdentity::decode(&payload[..len]).is_err(),
                "prefix {len}"
            );
        }
    }

    fn record(tag: u16, value: &[u8]) -> Vec<u8> {
        let mut w = RecordWriter::new();
        w.put(tag, value).unwrap();
        w.finish().to_vec()
    }

    #[test]
    fn malformed_records_are_named() {
        let good = sample_identity(4).encode().unwrap().to_vec();
        let with = |extra: Vec<u8>| {
            let mut p = good.clone();
            p.extend_from_slice(&extra);
            PersistentIdentity::decode(&p).unwrap_err()
        };
        assert_eq!(
            with(record(0x0002, &[0; 64])),
            RecordError::Duplicate { tag: 2 }
        );
        assert_eq!(
            with(record(0x7777, b"x")),
            RecordError::UnknownTag { tag: 0x7777 }
        );
        assert_eq!(
            with(vec![1, 0, 0, 0]),
            RecordError::Truncated { offset: good.len() }
        );
        // A header announcing more than the codec allows.
        assert_eq!(
            with(vec![0x99, 0, 0xff, 0xff, 0xff, 0xff]),
            RecordError::TooLong {
                tag: 0x99,
                len: u32::MAX as usize,
                max: MAX_VALUE_LEN
            }
        );

        let only =
            |t: u16, value: &[u8]| PersistentIdentity::decode(&record(t, value)).unwrap_err();
        assert_eq!(
            only(0x0010, &[0; 47]),
            RecordError::WrongLength {
                tag: 0x10,
                len: 47,
                expected: 48
            }
        );
        assert_eq!(
            only(0x0003, &[2]),
            RecordError::BadFlag { tag: 3, value: 2 }
        );
        assert_eq!(only(0x0042, &[]), RecordError::Empty { tag: 0x42 });
        assert_eq!(
            only(0x0042, &[0; MAX_CERT_LEN + 1]),
            RecordError::TooLong {
                tag: 0x42,
                len: MAX_CERT_LEN + 1,
                max: MAX_CERT_LEN
            }
        );
        assert_eq!(
            only(0x0020, &[0; 513]),
            RecordError::TooLong {
                tag: 0x20,
                len: 513,
                max: MAX_RSA_COMPONENT_LEN
            }
        );
        assert_eq!(
            PersistentIdentity::decode(&[]).unwrap_err(),
            RecordError::Missing {
                tag: 1,
                name: "API version"
            }
        );
    }

    #[test]
    fn encode_refuses_out_of_bounds_fields() {
        let mut id = sample_identity(5);
        id.pdh_cert = vec![0; MAX_CERT_LEN + 1];
        assert!(matches!(
            id.encode(),
            Err(RecordError::TooLong { tag: 0x45, .. })
        ));
        let mut id = sample_identity(5);
        id.ask.e.clear();
        assert_eq!(id.encode().unwrap_err(), RecordError::Empty { tag: 0x29 });
    }

    #[test]
    fn debug_is_redacted() {
        let id = sample_identity(6);
        let shown = format!("{id:?} {:?}", id.ark);
        assert!(shown.contains("<redacted>"));
        let c = &id.cek_private;
        assert!(
            !shown.contains(&format!("{}, {}, {}", c[0], c[1], c[2])),
            "{shown}"
        );
        let d = &id.ark.d;
        assert!(
            !shown.contains(&format!("{}, {}, {}", d[0], d[1], d[2])),
            "{shown}"
        );
    }
}
