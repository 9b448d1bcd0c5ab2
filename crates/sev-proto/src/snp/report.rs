//! The SNP attestation report (docs/protocol/snp.md#attestation-report):
//! 0x4A0 bytes, versions 2, 3 and 5, signed ECDSA P-384 with SHA-384 over
//! bytes 0x000..0x2A0 by the VCEK or the VLEK.
//!
//! Decoding is strict in the manner of go-sev-guest: every reserved range of
//! the report's version must be zero, the policy must be a valid SNP policy,
//! the key-info word must name a known signing key, and the high bytes of R
//! and S must be zero. So a report that decodes encodes back to exactly its
//! input, and every byte is either signed, fixed, or part of R and S.

use p384::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p384::ecdsa::{Signature, SigningKey, VerifyingKey};

use super::policy::{GuestPolicy, GuestPolicyError};
use super::tcb::{Product, TcbError, TcbVersion};
use crate::hash::sha384;

/// Length of a report.
pub const REPORT_LEN: usize = 0x4A0;
/// Length of the signed part (offsets 0x000..0x2A0).
pub const SIGNED_LEN: usize = 0x2A0;
/// SIGNATURE_ALGO of ECDSA P-384 with SHA-384, the only one defined.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

/// Width of R and of S in the report: 48 significant bytes, 24 zero bytes.
const SIG_COMPONENT_LEN: usize = 72;
const OFF_SIGNATURE: usize = SIGNED_LEN;

/// The report versions this module knows the layout of.
pub const KNOWN_VERSIONS: [u32; 3] = [2, 3, 5];

/// Why bytes are not an attestation report, or a report does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// The input is not 1184 bytes.
    #[error("SNP attestation report is {0} bytes, expected 1184 (0x4A0)")]
    Length(usize),
    /// VERSION is not one of [`KNOWN_VERSIONS`].
    #[error("SNP attestation report version {0} is not supported (known: 2, 3, 5)")]
    Version(u32),
    /// A reserved range of the version's layout is not zero.
    #[error(
        "SNP attestation report (version {version}) byte 0x{offset:03x} is 0x{value:02x}: \
         {what} must be zero"
    )]
    Reserved {
        /// The report's version.
        version: u32,
        /// Offset of the first non-zero byte.
        offset: usize,
        /// Its value.
        value: u8,
        /// The range's name.
        what: &'static str,
    },
    /// POLICY is not a valid SNP guest policy.
    #[error("SNP attestation report POLICY")]
    Policy(#[source] GuestPolicyError),
    /// SIGNING_KEY (bits 4:2 of offset 0x048) is not 0, 1 or 7.
    #[error("SNP attestation report SIGNING_KEY is {0}: expected 0 (VCEK), 1 (VLEK) or 7 (none)")]
    SigningKey(u32),
    /// SIGNATURE_ALGO is not ECDSA P-384 with SHA-384.
    #[error("SNP attestation report SIGNATURE_ALGO is {0}, expected 1 (ECDSA P-384 with SHA-384)")]
    SignatureAlgorithm(u32),
    /// The report says no key signed it (SIGNING_KEY 7).
    #[error("SNP attestation report is unsigned (SIGNING_KEY 7: chip key masked, no VLEK)")]
    Unsigned,
    /// R or S is not a valid P-384 scalar.
    #[error("SNP attestation report signature is not a valid P-384 (R, S) pair")]
    MalformedSignature,
    /// The signature does not verify with the given key.
    #[error("SNP attestation report signature does not verify with the {0} public key")]
    BadSignature(&'static str),
    /// Signing failed (a key that cannot sign).
    #[error("signing the SNP attestation report failed")]
    Signing,
}

/// Which key signed a report (bits 4:2 of offset 0x048).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportSigner {
    /// The chip's versioned chip endorsement key.
    Vcek,
    /// A cloud provider's versioned loaded endorsement key.
    Vlek,
    /// No key: the chip key is masked and no VLEK is loaded.
    None,
}

impl ReportSigner {
    const fn code(self) -> u32 {
        match self {
            ReportSigner::Vcek => 0,
            ReportSigner::Vlek => 1,
            ReportSigner::None => 7,
        }
    }

    /// `VCEK`, `VLEK` or `none`.
    pub const fn name(self) -> &'static str {
        match self {
            ReportSigner::Vcek => "VCEK",
            ReportSigner::Vlek => "VLEK",
            ReportSigner::None => "none",
        }
    }
}

/// The CPUID family, model and stepping of the processor (report version 3
/// and later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Cpuid {
    /// Extended family plus base family (e.g. 0x19, 0x1A).
    pub family: u8,
    /// Extended model shifted left by 4, plus base model.
    pub model: u8,
    /// Stepping.
    pub stepping: u8,
}

impl Cpuid {
    /// The product these family and model belong to, by the ranges virtee's
    /// tools use (docs/protocol/snp.md#attestation-report).
    pub fn product(&self) -> Option<Product> {
        match (self.family, self.model) {
            (0x19, 0x00..=0x0F) => Some(Product::Milan),
            (0x19, 0x10..=0x1F | 0xA0..=0xAF) => Some(Product::Genoa),
            (0x1A, 0x00..=0x11) => Some(Product::Turin),
            _ => None,
        }
    }
}

/// A firmware version as the report writes it: build, minor, major.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FirmwareVersion {
    /// Major version.
    pub major: u8,
    /// Minor version.
    pub minor: u8,
    /// Build number.
    pub build: u8,
}

impl std::fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{} build {}", self.major, self.minor, self.build)
    }
}

/// The mitigation vectors of a version 5 report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MitigationVectors {
    /// LAUNCH_MIT_VECTOR: the vector when the guest was launched.
    pub launch: u64,
    /// CURRENT_MIT_VECTOR: the vector now.
    pub current: u64,
}

/// The report's ECDSA signature: R and S as little-endian 48-byte integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReportSignature {
    /// R, little-endian.
    pub r: [u8; 48],
    /// S, little-endian.
    pub s: [u8; 48],
}

impl ReportSignature {
    /// The all-zero signature of an unsigned report.
    pub const ZERO: ReportSignature = ReportSignature {
        r: [0; 48],
        s: [0; 48],
    };

    /// As a P-384 signature (big-endian R ‖ S), if R and S are valid scalars.
    pub fn to_p384(&self) -> Result<Signature, ReportError> {
        let mut fixed = [0u8; 96];
        for (dst, src) in fixed[..48].iter_mut().zip(self.r.iter().rev()) {
            *dst = *src;
        }
        for (dst, src) in fixed[48..].iter_mut().zip(self.s.iter().rev()) {
            *dst = *src;
        }
        Signature::from_slice(&fixed).map_err(|_| ReportError::MalformedSignature)
    }

    /// From a P-384 signature.
    pub fn from_p384(signature: &Signature) -> Self {
        let bytes = signature.to_bytes();
        let mut out = ReportSignature::ZERO;
        for (dst, src) in out.r.iter_mut().zip(bytes[..48].iter().rev()) {
            *dst = *src;
        }
        for (dst, src) in out.s.iter_mut().zip(bytes[48..].iter().rev()) {
            *dst = *src;
        }
        out
    }
}

/// An SNP attestation report, decoded. TCB values stay raw (`u64`): their
/// layout depends on the product ([`TcbVersion::decode`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationReport {
    /// VERSION: 2, 3 or 5.
    pub version: u32,
    /// GUEST_SVN, from the ID block.
    pub guest_svn: u32,
    /// POLICY.
    pub policy: GuestPolicy,
    /// FAMILY_ID, from the ID block.
    pub family_id: [u8; 16],
    /// IMAGE_ID, from the ID block.
    pub image_id: [u8; 16],
    /// VMPL the guest asked the report for.
    pub vmpl: u32,
    /// SIGNATURE_ALGO (1: ECDSA P-384 with SHA-384).
    pub signature_algo: u32,
    /// CURRENT_TCB.
    pub current_tcb: u64,
    /// PLATFORM_INFO.
    pub platform_info: u64,
    /// AUTHOR_KEY_EN: the ID block was signed by an author key.
    pub author_key_en: bool,
    /// MASK_CHIP_KEY.
    pub mask_chip_key: bool,
    /// SIGNING_KEY.
    pub signing_key: ReportSigner,
    /// REPORT_DATA, chosen by the guest.
    pub report_data: [u8; 64],
    /// MEASUREMENT, the launch digest.
    pub measurement: [u8; 48],
    /// HOST_DATA, given at launch finish.
    pub host_data: [u8; 32],
    /// ID_KEY_DIGEST.
    pub id_key_digest: [u8; 48],
    /// AUTHOR_KEY_DIGEST.
    pub author_key_digest: [u8; 48],
    /// REPORT_ID.
    pub report_id: [u8; 32],
    /// REPORT_ID_MA (all 0xFF without a migration agent).
    pub report_id_ma: [u8; 32],
    /// REPORTED_TCB: the TCB of the VCEK that signs.
    pub reported_tcb: u64,
    /// CPUID_FAM_ID, CPUID_MOD_ID, CPUID_STEP (version 3 and later).
    pub cpuid: Option<Cpuid>,
    /// CHIP_ID (zero when masked).
    pub chip_id: [u8; 64],
    /// COMMITTED_TCB.
    pub committed_tcb: u64,
    /// CURRENT_BUILD, CURRENT_MINOR, CURRENT_MAJOR.
    pub current_version: FirmwareVersion,
    /// COMMITTED_BUILD, COMMITTED_MINOR, COMMITTED_MAJOR.
    pub committed_version: FirmwareVersion,
    /// LAUNCH_TCB.
    pub launch_tcb: u64,
    /// LAUNCH_MIT_VECTOR and CURRENT_MIT_VECTOR (version 5).
    pub mitigation_vectors: Option<MitigationVectors>,
    /// SIGNATURE.
    pub signature: ReportSignature,
}

fn array<const N: usize>(bytes: &[u8], off: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[off..off + N]);
    out
}

fn u32_at(bytes: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(array(bytes, off))
}

fn u64_at(bytes: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(array(bytes, off))
}

/// The reserved ranges of `version`'s layout, with their names.
fn reserved_ranges(version: u32) -> Vec<(std::ops::Range<usize>, &'static str)> {
    let mut ranges = vec![
        (0x04C..0x050, "reserved 0x04C..0x050"),
        (0x1EB..0x1EC, "reserved 0x1EB"),
        (0x1EF..0x1F0, "reserved 0x1EF"),
        (0x208..0x2A0, "reserved 0x208..0x2A0"),
        (0x2D0..0x2E8, "the high bytes of signature R"),
        (0x318..0x330, "the high bytes of signature S"),
        (0x330..REPORT_LEN, "signature padding 0x330..0x4A0"),
    ];
    if version >= 3 {
        ranges.push((0x18B..0x1A0, "reserved 0x18B..0x1A0"));
    } else {
        ranges.push((
            0x188..0x1A0,
            "reserved 0x188..0x1A0 (CPUID bytes of version 3)",
        ));
    }
    if version < 5 {
        ranges.push((
            0x1F8..0x208,
            "0x1F8..0x208 (mitigation vectors of version 5)",
        ));
    }
    ranges.sort_by_key(|(r, _)| r.start);
    ranges
}

impl AttestationReport {
    /// A well-formed report of `version` with every field set (the CPUID
    /// fields from version 3, the mitigation vectors from version 5),
    /// unsigned: for the tests and fuzz targets that need one.
    #[doc(hidden)]
    pub fn sample(version: u32) -> Self {
        let tcb = 0x7308_0000_0000_0003;
        let firmware = FirmwareVersion {
            major: 1,
            minor: 55,
            build: 21,
        };
        AttestationReport {
            version,
            guest_svn: 3,
            policy: GuestPolicy::QEMU_DEFAULT,
            family_id: [0xf1; 16],
            image_id: [0x1a; 16],
            vmpl: 0,
            signature_algo: SIG_ALGO_ECDSA_P384_SHA384,
            current_tcb: tcb,
            platform_info: 1,
            author_key_en: false,
            mask_chip_key: false,
            signing_key: ReportSigner::Vcek,
            report_data: [0x5d; 64],
            measurement: [0x5a; 48],
            host_data: [0x40; 32],
            id_key_digest: [0x1d; 48],
            author_key_digest: [0; 48],
            report_id: [0x1e; 32],
            report_id_ma: [0xff; 32],
            reported_tcb: tcb,
            cpuid: (version >= 3).then_some(Cpuid {
                family: 0x19,
                model: 0x11,
                stepping: 1,
            }),
            chip_id: [0xc1; 64],
            committed_tcb: tcb,
            current_version: firmware,
            committed_version: firmware,
            launch_tcb: tcb,
            mitigation_vectors: (version >= 5).then_some(MitigationVectors {
                launch: 1,
                current: 3,
            }),
            signature: ReportSignature::ZERO,
        }
    }

    /// Decodes a report (exactly 1184 bytes), checking every reserved range
    /// of its version.
    pub fn decode(bytes: &[u8]) -> Result<Self, ReportError> {
        if bytes.len() != REPORT_LEN {
            return Err(ReportError::Length(bytes.len()));
        }
        let version = u32_at(bytes, 0x000);
        if !KNOWN_VERSIONS.contains(&version) {
            return Err(ReportError::Version(version));
        }
        for (range, what) in reserved_ranges(version) {
            if let Some((i, &value)) = bytes[range.clone()]
                .iter()
                .enumerate()
                .find(|(_, b)| **b != 0)
            {
                return Err(ReportError::Reserved {
                    version,
                    offset: range.start + i,
                    value,
                    what,
                });
            }
        }
        let policy = GuestPolicy::new(u64_at(bytes, 0x008)).map_err(ReportError::Policy)?;
        let key_info = u32_at(bytes, 0x048);
        let key_info_reserved = key_info & !0x1F;
        if key_info_reserved != 0 {
            let offset = 0x048 + key_info_reserved.trailing_zeros() as usize / 8;
            return Err(ReportError::Reserved {
                version,
                offset,
                value: bytes[offset],
                what: "bits 31:5 of 0x048",
            });
        }
        let signing_key = match (key_info >> 2) & 7 {
            0 => ReportSigner::Vcek,
            1 => ReportSigner::Vlek,
            7 => ReportSigner::None,
            other => return Err(ReportError::SigningKey(other)),
        };
        let firmware = |off: usize| FirmwareVersion {
            build: bytes[off],
            minor: bytes[off + 1],
            major: bytes[off + 2],
        };
        Ok(AttestationReport {
            version,
            guest_svn: u32_at(bytes, 0x004),
            policy,
            family_id: array(bytes, 0x010),
            image_id: array(bytes, 0x020),
            vmpl: u32_at(bytes, 0x030),
            signature_algo: u32_at(bytes, 0x034),
            current_tcb: u64_at(bytes, 0x038),
            platform_info: u64_at(bytes, 0x040),
            author_key_en: key_info & 1 != 0,
            mask_chip_key: key_info & 2 != 0,
            signing_key,
            report_data: array(bytes, 0x050),
            measurement: array(bytes, 0x090),
            host_data: array(bytes, 0x0C0),
            id_key_digest: array(bytes, 0x0E0),
            author_key_digest: array(bytes, 0x110),
            report_id: array(bytes, 0x140),
            report_id_ma: array(bytes, 0x160),
            reported_tcb: u64_at(bytes, 0x180),
            cpuid: (version >= 3).then(|| Cpuid {
                family: bytes[0x188],
                model: bytes[0x189],
                stepping: bytes[0x18A],
            }),
            chip_id: array(bytes, 0x1A0),
            committed_tcb: u64_at(bytes, 0x1E0),
            current_version: firmware(0x1E8),
            committed_version: firmware(0x1EC),
            launch_tcb: u64_at(bytes, 0x1F0),
            mitigation_vectors: (version >= 5).then(|| MitigationVectors {
                launch: u64_at(bytes, 0x1F8),
                current: u64_at(bytes, 0x200),
            }),
            signature: ReportSignature {
                r: array(bytes, OFF_SIGNATURE),
                s: array(bytes, OFF_SIGNATURE + SIG_COMPONENT_LEN),
            },
        })
    }

    /// Encodes the report. Fields the version lacks (`cpuid` before 3, the
    /// mitigation vectors before 5) are written as zero whatever they hold.
    pub fn encode(&self) -> [u8; REPORT_LEN] {
        let mut out = [0u8; REPORT_LEN];
        out[..SIGNED_LEN].copy_from_slice(&self.signed_bytes());
        out[OFF_SIGNATURE..OFF_SIGNATURE + 48].copy_from_slice(&self.signature.r);
        out[OFF_SIGNATURE + SIG_COMPONENT_LEN..OFF_SIGNATURE + SIG_COMPONENT_LEN + 48]
            .copy_from_slice(&self.signature.s);
        out
    }

    /// The signed part of the report, offsets 0x000..0x2A0.
    pub fn signed_bytes(&self) -> [u8; SIGNED_LEN] {
        let mut out = [0u8; SIGNED_LEN];
        let mut put = |off: usize, b: &[u8]| out[off..off + b.len()].copy_from_slice(b);
        put(0x000, &self.version.to_le_bytes());
        put(0x004, &self.guest_svn.to_le_bytes());
        put(0x008, &self.policy.bits().to_le_bytes());
        put(0x010, &self.family_id);
        put(0x020, &self.image_id);
        put(0x030, &self.vmpl.to_le_bytes());
        put(0x034, &self.signature_algo.to_le_bytes());
        put(0x038, &self.current_tcb.to_le_bytes());
        put(0x040, &self.platform_info.to_le_bytes());
        let key_info = u32::from(self.author_key_en)
            | (u32::from(self.mask_chip_key) << 1)
            | (self.signing_key.code() << 2);
        put(0x048, &key_info.to_le_bytes());
        put(0x050, &self.report_data);
        put(0x090, &self.measurement);
        put(0x0C0, &self.host_data);
        put(0x0E0, &self.id_key_digest);
        put(0x110, &self.author_key_digest);
        put(0x140, &self.report_id);
        put(0x160, &self.report_id_ma);
        put(0x180, &self.reported_tcb.to_le_bytes());
        if let (true, Some(c)) = (self.version >= 3, self.cpuid) {
            put(0x188, &[c.family, c.model, c.stepping]);
        }
        put(0x1A0, &self.chip_id);
        put(0x1E0, &self.committed_tcb.to_le_bytes());
        let v = self.current_version;
        put(0x1E8, &[v.build, v.minor, v.major]);
        let v = self.committed_version;
        put(0x1EC, &[v.build, v.minor, v.major]);
        put(0x1F0, &self.launch_tcb.to_le_bytes());
        if let (true, Some(m)) = (self.version >= 5, self.mitigation_vectors) {
            put(0x1F8, &m.launch.to_le_bytes());
            put(0x200, &m.current.to_le_bytes());
        }
        out
    }

    /// Signs the report with `key` (what the firmware does with the VCEK or
    /// VLEK): SIGNATURE_ALGO becomes 1 and SIGNATURE is replaced.
    pub fn sign(&mut self, key: &SigningKey) -> Result<(), ReportError> {
        self.signature_algo = SIG_ALGO_ECDSA_P384_SHA384;
        let digest = sha384(&self.signed_bytes());
        let signature: Signature = key
            .sign_prehash(&digest)
            .map_err(|_| ReportError::Signing)?;
        self.signature = ReportSignature::from_p384(&signature);
        Ok(())
    }

    /// Verifies the signature with the public key of the report's signer
    /// (the VCEK or VLEK certificate's key): ECDSA P-384 over SHA-384 of
    /// [`signed_bytes`](Self::signed_bytes).
    pub fn verify_signature(&self, key: &VerifyingKey) -> Result<(), ReportError> {
        if self.signing_key == ReportSigner::None {
            return Err(ReportError::Unsigned);
        }
        if self.signature_algo != SIG_ALGO_ECDSA_P384_SHA384 {
            return Err(ReportError::SignatureAlgorithm(self.signature_algo));
        }
        let signature = self.signature.to_p384()?;
        let digest = sha384(&self.signed_bytes());
        key.verify_prehash(&digest, &signature)
            .map_err(|_| ReportError::BadSignature(self.signing_key.name()))
    }

    /// The product, from the CPUID bytes (version 3 and later); `None` for
    /// version 2 reports, which do not say, and for unknown models.
    pub fn product(&self) -> Option<Product> {
        self.cpuid.and_then(|c| c.product())
    }

    /// REPORTED_TCB in `product`'s layout.
    pub fn reported_tcb(&self, product: Product) -> Result<TcbVersion, TcbError> {
        TcbVersion::decode(self.reported_tcb, product)
    }

    /// LAUNCH_TCB in `product`'s layout.
    pub fn launch_tcb(&self, product: Product) -> Result<TcbVersion, TcbError> {
        TcbVersion::decode(self.launch_tcb, product)
    }

    /// CURRENT_TCB in `product`'s layout.
    pub fn current_tcb(&self, product: Product) -> Result<TcbVersion, TcbError> {
        TcbVersion::decode(self.current_tcb, product)
    }

    /// COMMITTED_TCB in `product`'s layout.
    pub fn committed_tcb(&self, product: Product) -> Result<TcbVersion, TcbError> {
        TcbVersion::decode(self.committed_tcb, product)
    }
}

#[cfg(test)]
pub(crate) mod tests;
