//! The platform side of the tools: `sev-firmware`'s platform management
//! (AMD hardware through `/dev/sev`, or the emulated AMD Secure Processor
//! in a platform state directory), with the tools' rendering of what it
//! reports ([`Status`], [`KindJson`]).
//!
//! Also the owner-CA side of platform ownership: generating an OCA key pair
//! and signing a PEK CSR with it ([`sign_csr`]), which
//! `sev-platform pek-cert-import` then imports.

use std::path::{Path, PathBuf};

use p384::ecdsa::SigningKey;
use serde::{Serialize, Serializer};
use sev_proto::abi::{Owner, PlatformState};
use sev_proto::cert::sev::{self, Slot};
use sev_proto::cert::{Algorithm, Usage};
use zeroize::Zeroizing;

pub use sev_firmware::emulated::{CreateOptions, EmulatedPlatform, SnpOptions};
pub use sev_firmware::hardware::HardwarePlatform;
pub use sev_firmware::{OpenError, PlatformKind, PlatformManagement, PlatformStatus, SevError};

use crate::io::{self, IoError};

/// Why a platform command failed.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The platform ran the command and it failed.
    #[error("{}{source}", platform_prefix(.kind))]
    Firmware {
        /// Which platform.
        kind: PlatformKind,
        /// What failed, with the firmware status where there is one.
        source: SevError,
    },
    /// The platform could not be opened or created.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The command is not available on this backend.
    #[error("{0}")]
    Unsupported(String),
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A certificate is malformed.
    #[error("{what}")]
    Cert {
        /// Which certificate.
        what: String,
        /// Why.
        #[source]
        source: sev::Error,
    },
    /// An OCA key file is malformed.
    #[error("{} is not an OCA private key (48-byte P-384 scalar, as `sev-platform oca-gen` writes)", .0.display())]
    Key(PathBuf),
}

/// What a failed command's message starts with: the emulated platform's
/// directory (hardware has one platform; the command names the device).
fn platform_prefix(kind: &PlatformKind) -> String {
    match kind {
        PlatformKind::Emulated(dir) => format!("emulated platform {}: ", dir.display()),
        PlatformKind::Hardware(_) => String::new(),
    }
}

impl PlatformError {
    /// A failed command of the platform `p`.
    pub fn firmware(p: &dyn PlatformManagement) -> impl FnOnce(SevError) -> PlatformError + '_ {
        move |source| PlatformError::Firmware {
            kind: p.kind().clone(),
            source,
        }
    }
}

/// [`PlatformKind`] as the tools' JSON shows it:
/// `{"kind": "emulated", "path": "/x"}`.
#[derive(Debug, Clone, Copy)]
pub struct KindJson<'a>(pub &'a PlatformKind);

impl Serialize for KindJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Tagged<'a> {
            kind: &'static str,
            path: &'a Path,
        }
        let (kind, path) = match self.0 {
            PlatformKind::Hardware(p) => ("hardware", p),
            PlatformKind::Emulated(p) => ("emulated", p),
        };
        Tagged { kind, path }.serialize(serializer)
    }
}

/// PLATFORM_STATUS, as the tools report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// API major version.
    pub api_major: u8,
    /// API minor version.
    pub api_minor: u8,
    /// Firmware build.
    pub build: u8,
    /// Platform state name (UNINIT, INIT, WORKING; raw value if unknown).
    pub state: String,
    /// Whether an OCA was imported.
    pub externally_owned: bool,
    /// Whether SEV-ES was enabled at INIT.
    pub es: bool,
    /// Number of guests.
    pub guests: u32,
}

impl Status {
    /// From the raw PLATFORM_STATUS fields.
    pub fn from_raw(
        api_major: u8,
        api_minor: u8,
        build: u8,
        state: u8,
        flags: u32,
        guests: u32,
    ) -> Self {
        Status {
            api_major,
            api_minor,
            build,
            state: PlatformState::from_u8(state)
                .map(|s| s.to_string())
                .unwrap_or_else(|| format!("unknown ({state})")),
            externally_owned: flags & 1 != 0,
            es: flags & 0x100 != 0,
            guests,
        }
    }

    /// The owner as SEV names it.
    pub fn owner(&self) -> Owner {
        if self.externally_owned {
            Owner::External
        } else {
            Owner::SelfOwned
        }
    }
}

impl From<&PlatformStatus> for Status {
    fn from(s: &PlatformStatus) -> Self {
        let flags = u32::from(s.owner == Owner::External) | if s.es_enabled { 0x100 } else { 0 };
        Status::from_raw(
            s.api.major,
            s.api.minor,
            s.build,
            s.state_code,
            flags,
            s.guest_count,
        )
    }
}

/// PLATFORM_STATUS of `p`, as the tools report it.
pub fn status(p: &dyn PlatformManagement) -> Result<Status, PlatformError> {
    let s = p.status().map_err(PlatformError::firmware(p))?;
    Ok(Status::from(&s))
}

/// A new OCA: a P-384 key pair and its self-signed certificate (usage OCA,
/// ECDSA_SHA256, API 0.0 as PEK_CERT_IMPORT requires).
pub fn oca_gen(
    rng: &mut impl rand_core::CryptoRngCore,
) -> Result<(sev::Certificate, SigningKey), PlatformError> {
    let key = SigningKey::random(rng);
    let public = p384::PublicKey::from(key.verifying_key());
    let cert_err = |source| PlatformError::Cert {
        what: "new OCA certificate".into(),
        source,
    };
    let mut cert = sev::Certificate::new_ec(Usage::Oca, Algorithm::EcdsaSha256, 0, 0, &public)
        .map_err(cert_err)?;
    cert.sign(Slot::Sig1, Usage::Oca, &key, Algorithm::EcdsaSha256)
        .map_err(cert_err)?;
    Ok((cert, key))
}

/// Reads an OCA private key file (the 48-byte big-endian P-384 scalar).
pub fn read_oca_key(path: &Path) -> Result<SigningKey, PlatformError> {
    let bytes = Zeroizing::new(io::read_file_max(path, 4096)?);
    SigningKey::from_slice(&bytes).map_err(|_| PlatformError::Key(path.to_path_buf()))
}

/// The bytes of an OCA key file.
pub fn oca_key_bytes(key: &SigningKey) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(key.to_bytes().to_vec())
}

/// Signs a PEK CSR as the OCA: checks that the CSR is a PEK certificate and
/// that the key matches `oca`, then puts the OCA's signature in slot 1
/// (the firmware adds the CEK's in slot 2 on import).
pub fn sign_csr(
    csr: &[u8],
    oca: &sev::Certificate,
    key: &SigningKey,
) -> Result<sev::Certificate, PlatformError> {
    let mut pek = sev::Certificate::decode(csr).map_err(|source| PlatformError::Cert {
        what: "PEK CSR".into(),
        source,
    })?;
    if pek.usage() != Usage::Pek {
        return Err(PlatformError::Unsupported(format!(
            "the CSR certifies a {} key, expected a PEK",
            pek.usage().name()
        )));
    }
    let oca_key = oca.ec_public_key().map_err(|source| PlatformError::Cert {
        what: "OCA certificate".into(),
        source,
    })?;
    if *oca_key != p384::PublicKey::from(key.verifying_key()) {
        return Err(PlatformError::Unsupported(
            "the OCA private key does not belong to the OCA certificate".into(),
        ));
    }
    pek.sign(Slot::Sig1, Usage::Oca, key, Algorithm::EcdsaSha256)
        .map_err(|source| PlatformError::Cert {
            what: "signing the PEK".into(),
            source,
        })?;
    Ok(pek)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_decoding() {
        let s = Status::from_raw(1, 55, 21, 1, 0x101, 2);
        assert_eq!(s.state, "INIT");
        assert!(s.externally_owned && s.es);
        assert_eq!(s.owner(), Owner::External);
        assert_eq!(Status::from_raw(0, 0, 0, 9, 0, 0).state, "unknown (9)");
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["api_minor"], 55);
        let k = serde_json::to_value(KindJson(&PlatformKind::Emulated("/x".into()))).unwrap();
        assert_eq!(k, serde_json::json!({"kind": "emulated", "path": "/x"}));
    }

    #[test]
    fn csr_signing_checks_usage_and_key() {
        let mut rng = rand_core::OsRng;
        let (oca, key) = oca_gen(&mut rng).unwrap();
        oca.verify_signed_by_sev(&oca).unwrap();
        let pek_key = SigningKey::random(&mut rng);
        let csr = sev::Certificate::new_ec(
            Usage::Pek,
            Algorithm::EcdsaSha256,
            1,
            55,
            &p384::PublicKey::from(pek_key.verifying_key()),
        )
        .unwrap();
        let signed = sign_csr(&csr.encode(), &oca, &key).unwrap();
        signed.verify_signed_by_sev(&oca).unwrap();
        let (_, other_key) = oca_gen(&mut rng).unwrap();
        assert!(sign_csr(&csr.encode(), &oca, &other_key).is_err());
        assert!(
            sign_csr(&oca.encode(), &oca, &key).is_err(),
            "an OCA is not a PEK"
        );
        assert!(sign_csr(&[0u8; 10], &oca, &key).is_err());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("oca.key");
        std::fs::write(&f, oca_key_bytes(&key)).unwrap();
        assert_eq!(read_oca_key(&f).unwrap(), key);
        std::fs::write(&f, [0u8; 48]).unwrap();
        assert!(matches!(read_oca_key(&f), Err(PlatformError::Key(_))));
    }

    #[test]
    fn failed_commands_name_the_emulated_platform() {
        let fail = || SevError::Host {
            command: "PDH_GEN",
            detail: "x".into(),
        };
        let e = PlatformError::Firmware {
            kind: PlatformKind::Emulated("/p".into()),
            source: fail(),
        };
        assert_eq!(
            e.to_string(),
            "emulated platform /p: SEV: PDH_GEN failed: x"
        );
        let e = PlatformError::Firmware {
            kind: PlatformKind::Hardware("/dev/sev".into()),
            source: fail(),
        };
        assert_eq!(e.to_string(), "SEV: PDH_GEN failed: x");
    }

    /// No /dev/sev here: opening it fails with a message naming the node.
    #[test]
    fn hardware_open_names_the_device() {
        if Path::new("/dev/sev").exists() {
            return;
        }
        let e = HardwarePlatform::open(Path::new("/dev/sev")).unwrap_err();
        assert!(e.to_string().contains("/dev/sev"), "{e}");
    }
}
