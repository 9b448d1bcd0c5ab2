//! The platform commands `sev-platform` runs, behind one trait with two
//! implementations chosen at run time: AMD hardware through `/dev/sev`
//! ([`Hardware`], `sev-host`) and the emulated AMD Secure Processor in a
//! platform state directory ([`Emulated`], `sev-psp`).
//!
//! Also the owner-CA side of platform ownership: generating an OCA key pair
//! and signing a PEK CSR with it ([`sign_csr`]), which
//! `sev-platform pek-cert-import` then imports.

use std::path::{Path, PathBuf};

use p384::ecdsa::SigningKey;
use serde::Serialize;
use sev_proto::abi::{Owner, PlatformState, StatusCode};
use sev_proto::cert::chain::CaChain;
use sev_proto::cert::sev::{self, Slot};
use sev_proto::cert::{Algorithm, Usage};
use zeroize::Zeroizing;

use crate::io::{self, IoError};

mod emulated;
pub use emulated::{Emulated, InitOptions};

/// Why a platform command failed.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The hardware backend failed.
    #[error("{}", describe_host(.0))]
    Host(#[source] sev_host::HostError),
    /// The emulated platform failed.
    #[error("emulated platform {}: {message}", dir.display())]
    Emulated {
        /// The platform directory.
        dir: PathBuf,
        /// What failed, with the firmware status where there is one.
        message: String,
    },
    /// An emulated platform directory could not be created or opened.
    #[error(transparent)]
    Open(#[from] sev_psp::PlatformError),
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

fn describe_host(e: &sev_host::HostError) -> String {
    match e {
        sev_host::HostError::Firmware { cmd, code } => {
            format!("{cmd}: firmware status {}", StatusCode(*code))
        }
        other => other.to_string(),
    }
}

/// Which platform a backend talks to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "path", rename_all = "lowercase")]
pub enum PlatformKind {
    /// AMD hardware through a `/dev/sev` node.
    Hardware(PathBuf),
    /// The emulated AMD-SP in a state directory.
    Emulated(PathBuf),
}

impl std::fmt::Display for PlatformKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlatformKind::Hardware(p) => write!(f, "hardware ({})", p.display()),
            PlatformKind::Emulated(p) => write!(f, "emulated ({})", p.display()),
        }
    }
}

/// PLATFORM_STATUS, decoded.
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

/// The platform commands, on either backend.
pub trait Backend {
    /// Which platform this is.
    fn kind(&self) -> PlatformKind;
    /// PLATFORM_STATUS.
    fn status(&mut self) -> Result<Status, PlatformError>;
    /// PDH_CERT_EXPORT: `(PDH, PEK ‖ OCA ‖ CEK)`.
    fn pdh_cert_export(&mut self) -> Result<(Vec<u8>, Vec<u8>), PlatformError>;
    /// PEK_CSR.
    fn pek_csr(&mut self) -> Result<Vec<u8>, PlatformError>;
    /// PEK_CERT_IMPORT.
    fn pek_cert_import(&mut self, pek: &[u8], oca: &[u8]) -> Result<(), PlatformError>;
    /// PDH_GEN.
    fn pdh_gen(&mut self) -> Result<(), PlatformError>;
    /// PEK_GEN.
    fn pek_gen(&mut self) -> Result<(), PlatformError>;
    /// PLATFORM_RESET.
    fn reset(&mut self) -> Result<(), PlatformError>;
    /// GET_ID.
    fn get_id(&mut self) -> Result<Vec<u8>, PlatformError>;
    /// The ASK ‖ ARK that certify the CEK, when the backend knows them (the
    /// emulated platform's own roots; `None` on hardware, whose roots are
    /// AMD's and come from the roots directory).
    fn ca_chain(&mut self) -> Result<Option<CaChain>, PlatformError>;
}

/// AMD hardware through `/dev/sev`.
#[derive(Debug)]
pub struct Hardware {
    dev: sev_host::SevDevice,
}

impl Hardware {
    /// Opens the device node.
    pub fn open(path: &Path) -> Result<Self, PlatformError> {
        Ok(Hardware {
            dev: sev_host::SevDevice::open_path(path).map_err(PlatformError::Host)?,
        })
    }
}

impl Backend for Hardware {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Hardware(self.dev.path().to_path_buf())
    }

    fn status(&mut self) -> Result<Status, PlatformError> {
        let s = self.dev.platform_status().map_err(PlatformError::Host)?;
        Ok(Status::from_raw(
            s.api_major,
            s.api_minor,
            s.build,
            s.state,
            s.flags,
            s.guest_count,
        ))
    }

    fn pdh_cert_export(&mut self) -> Result<(Vec<u8>, Vec<u8>), PlatformError> {
        self.dev.pdh_cert_export().map_err(PlatformError::Host)
    }

    fn pek_csr(&mut self) -> Result<Vec<u8>, PlatformError> {
        self.dev.pek_csr().map_err(PlatformError::Host)
    }

    fn pek_cert_import(&mut self, pek: &[u8], oca: &[u8]) -> Result<(), PlatformError> {
        self.dev
            .pek_cert_import(pek, oca)
            .map_err(PlatformError::Host)
    }

    fn pdh_gen(&mut self) -> Result<(), PlatformError> {
        self.dev.pdh_gen().map_err(PlatformError::Host)
    }

    fn pek_gen(&mut self) -> Result<(), PlatformError> {
        self.dev.pek_gen().map_err(PlatformError::Host)
    }

    fn reset(&mut self) -> Result<(), PlatformError> {
        self.dev.factory_reset().map_err(PlatformError::Host)
    }

    fn get_id(&mut self) -> Result<Vec<u8>, PlatformError> {
        self.dev.get_id().map_err(PlatformError::Host)
    }

    fn ca_chain(&mut self) -> Result<Option<CaChain>, PlatformError> {
        Ok(None)
    }
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
        let k = serde_json::to_value(PlatformKind::Emulated("/x".into())).unwrap();
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

    /// No /dev/sev here: opening it fails with a message naming the node.
    #[test]
    fn hardware_open_names_the_device() {
        if Path::new("/dev/sev").exists() {
            return;
        }
        let e = Hardware::open(Path::new("/dev/sev")).unwrap_err();
        assert!(e.to_string().contains("/dev/sev"), "{e}");
    }
}
