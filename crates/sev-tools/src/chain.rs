//! Loading a platform's certificate chain from where the owner gets it, and
//! verifying it to a root the owner pins, with a report of every check.
//!
//! Sources ([`ChainSource`]):
//! * a chain file as `sevctl export` writes it: PDH ‖ PEK ‖ OCA ‖ CEK, or
//!   with `--full` PDH ‖ PEK ‖ OCA ‖ CEK ‖ ASK ‖ ARK;
//! * a directory with `pdh.cert`, `pek.cert`, `oca.cert`, `cek.cert` and
//!   optionally `ask.cert`, `ark.cert` (what `sev-platform export --dir`
//!   writes);
//! * QMP `query-sev-capabilities` (`pdh`, `cert-chain` = PEK ‖ OCA ‖ CEK,
//!   base64), live or saved as JSON.
//!
//! The ASK ‖ ARK come from the chain itself, a `--ca` file (ASK ‖ ARK, as
//! `sevctl verify --ca` reads), or — for AMD hardware — the roots
//! directories of [`crate::roots`]. A real host's CEK, exported without the
//! ASK's signature, is replaced by its signed copy ([`crate::cek`]).
//!
//! Trust ([`Trust`]): the ARK the chain carries is never trusted because it
//! is self-signed. It must be the genuine ARK of a named AMD generation
//! (built-in fingerprint), or byte-for-byte a root the user passed
//! explicitly. An explicit root is labelled by what it is ([`RootOrigin`]):
//! AMD's genuine root of a generation when it hashes to a built-in ARK
//! fingerprint, the emulated platform's own root when the tool knows it is
//! (the platform directory's ARK), and otherwise an explicitly trusted root
//! of unknown origin.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sev_proto::cert::chain::{self, CaChain, Check, FullChain, PlatformChain, VerifiedChain};
use sev_proto::cert::sev::{self, Slot, CERT_LEN};
use sev_proto::cert::{ca, AmdGeneration};
use subtle::ConstantTimeEq;

use crate::cek::{self, CekError, CekOptions, ChipId, Resolution};
use crate::io::{self, IoError};
use crate::roots::{self, RootsError};

/// Why a chain could not be loaded or verified.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// A file could not be read.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A file or blob has the wrong size for what it should hold.
    #[error("{what} is {actual} bytes: expected {expected}")]
    Size {
        /// What was read.
        what: String,
        /// What sizes would be accepted.
        expected: String,
        /// The size found.
        actual: usize,
    },
    /// A certificate does not decode.
    #[error("{what} does not decode")]
    Decode {
        /// Which certificate, from where.
        what: String,
        /// Why.
        #[source]
        source: chain::Error,
    },
    /// A SEV certificate does not decode.
    #[error("{what} does not decode as a SEV certificate")]
    DecodeSev {
        /// Which certificate, from where.
        what: String,
        /// Why.
        #[source]
        source: sev::Error,
    },
    /// An AMD certificate does not decode.
    #[error("{what} does not decode as an AMD CA certificate")]
    DecodeCa {
        /// Which certificate, from where.
        what: String,
        /// Why.
        #[source]
        source: ca::Error,
    },
    /// The `query-sev-capabilities` answer lacks a member or has a bad one.
    #[error("query-sev-capabilities: {0}")]
    Capabilities(String),
    /// No ASK/ARK is available.
    #[error(
        "the chain has no ASK/ARK: pass --ca FILE (ASK ‖ ARK), a full chain, --trust-ark with an \
         ASK ‖ ARK file, or --generation to use the AMD roots directory"
    )]
    NoCa,
    /// No trust anchor was named.
    #[error(
        "no root to verify to: name the AMD generation (--generation naples|rome|milan|genoa|turin) \
         or pass the platform's root explicitly (--trust-ark FILE, for an emulated platform)"
    )]
    NoTrust,
    /// The AMD roots could not be loaded.
    #[error(transparent)]
    Roots(#[from] RootsError),
    /// A signed CEK was given or found but is unusable, or fetching it
    /// failed.
    #[error(transparent)]
    Cek(#[from] CekError),
    /// One or more checks failed.
    #[error("certificate chain verification failed: {first}{}", if *.more > 0 { format!(" (and {} more failed check(s))", .more) } else { String::new() })]
    Failed {
        /// The first failing check, described.
        first: String,
        /// How many more failed.
        more: usize,
    },
}

/// Where the chain comes from.
#[derive(Debug, Clone)]
pub enum ChainSource {
    /// A chain file (4 or 6 certificates).
    File(PathBuf),
    /// A directory of single certificates.
    Dir(PathBuf),
    /// The `pdh` and `cert-chain` of `query-sev-capabilities` (decoded).
    Capabilities {
        /// Where they came from (for messages).
        origin: String,
        /// The PDH certificate.
        pdh: Vec<u8>,
        /// PEK ‖ OCA ‖ CEK.
        cert_chain: Vec<u8>,
        /// `cpu0-id`: the chip id of the first socket, when given.
        chip_id: Option<ChipId>,
    },
}

/// What an explicitly given root is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootOrigin {
    /// AMD's genuine ARK of this generation (its SHA-256 is the built-in
    /// fingerprint).
    Amd(AmdGeneration),
    /// The ARK of the emulated platform in this directory.
    Emulated(PathBuf),
    /// Neither: trusted only because the user named it.
    Unknown,
}

/// The root the chain must lead to.
#[derive(Debug, Clone)]
pub enum Trust {
    /// AMD's genuine root for a generation (built-in fingerprint).
    Amd(AmdGeneration),
    /// A root the user passed explicitly (an emulated platform's ARK).
    Explicit {
        /// The root.
        ark: Box<ca::Certificate>,
        /// The ASK, when the root's file was a CA chain ASK ‖ ARK (used
        /// when the chain itself carries no ASK).
        ask: Option<Box<ca::Certificate>>,
        /// Its file.
        path: PathBuf,
        /// What the root is.
        origin: RootOrigin,
    },
}

impl Trust {
    /// Loads an explicit root from a file (an AMD CA certificate, or a
    /// CA chain ASK ‖ ARK whose ARK is taken).
    pub fn explicit(path: &Path) -> Result<Self, ChainError> {
        let bytes = io::read_file(path)?;
        let what = || format!("root {}", path.display());
        let (ask, ark) = match ca::Certificate::decode(&bytes) {
            Ok(ark) => (None, Box::new(ark)),
            Err(single) => match CaChain::decode(&bytes) {
                Ok(ca) => (Some(Box::new(ca.ask)), Box::new(ca.ark)),
                Err(_) => {
                    return Err(ChainError::DecodeCa {
                        what: what(),
                        source: single,
                    })
                }
            },
        };
        let origin = match roots::genuine_generation(&ark) {
            Some(g) => RootOrigin::Amd(g),
            None => RootOrigin::Unknown,
        };
        Ok(Trust::Explicit {
            ark,
            ask,
            path: path.to_path_buf(),
            origin,
        })
    }

    /// Labels an explicit root as the emulated platform's own when it is,
    /// byte for byte, `platform_ark` (the ARK of the emulated platform in
    /// `dir`); anything else is left as it is.
    pub fn recognise_emulated(self, dir: &Path, platform_ark: &ca::Certificate) -> Self {
        match self {
            Trust::Explicit {
                ark,
                ask,
                path,
                origin: RootOrigin::Unknown,
            } if ark.encode() == platform_ark.encode() => Trust::Explicit {
                ark,
                ask,
                path,
                origin: RootOrigin::Emulated(dir.to_path_buf()),
            },
            other => other,
        }
    }

    /// Whether the root is AMD's genuine root (named, or given explicitly
    /// and matching a built-in fingerprint).
    pub fn is_amd(&self) -> bool {
        matches!(
            self,
            Trust::Amd(_)
                | Trust::Explicit {
                    origin: RootOrigin::Amd(_),
                    ..
                }
        )
    }

    /// What the root is, in a few words (the end of the "chain verified"
    /// line).
    pub fn label(&self) -> String {
        match self {
            Trust::Amd(g)
            | Trust::Explicit {
                origin: RootOrigin::Amd(g),
                ..
            } => format!("AMD's genuine {} root", capitalized(g.name())),
            Trust::Explicit {
                origin: RootOrigin::Emulated(dir),
                ..
            } => format!(
                "the emulated platform's own root ({}), not an AMD root",
                dir.display()
            ),
            Trust::Explicit {
                origin: RootOrigin::Unknown,
                ..
            } => "an explicitly trusted root of unknown origin, not an AMD root".to_string(),
        }
    }

    /// A description for reports.
    pub fn describe(&self) -> String {
        match self {
            Trust::Amd(g) => format!(
                "built-in AMD {} root (ARK sha256 {})",
                capitalized(g.name()),
                hex::encode(roots::ark_fingerprint(*g))
            ),
            Trust::Explicit { ark, path, .. } => format!(
                "root given explicitly: {} (ARK sha256 {}) — {}",
                path.display(),
                hex::encode(roots::sha256(&ark.encode())),
                self.label()
            ),
        }
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The four platform certificates and, when available, ASK ‖ ARK.
#[derive(Debug, Clone)]
pub struct LoadedChain {
    /// PDH certificate.
    pub pdh: sev::Certificate,
    /// PEK ‖ OCA ‖ CEK.
    pub platform: PlatformChain,
    /// ASK ‖ ARK, if the source carried them.
    pub ca: Option<CaChain>,
    /// The chip id, if the source carried it (`cpu0-id`).
    pub chip_id: Option<ChipId>,
    /// Where the chain came from.
    pub origin: String,
}

fn decode_sev(what: String, bytes: &[u8]) -> Result<sev::Certificate, ChainError> {
    sev::Certificate::decode(bytes).map_err(|source| ChainError::DecodeSev { what, source })
}

fn decode_platform(origin: &str, bytes: &[u8]) -> Result<PlatformChain, ChainError> {
    if bytes.len() != 3 * CERT_LEN {
        return Err(ChainError::Size {
            what: format!("PEK ‖ OCA ‖ CEK from {origin}"),
            expected: format!("{} (3 certificates of {CERT_LEN})", 3 * CERT_LEN),
            actual: bytes.len(),
        });
    }
    PlatformChain::decode(bytes).map_err(|source| ChainError::Decode {
        what: format!("platform chain from {origin}"),
        source,
    })
}

/// Reads a chain file: PDH ‖ PEK ‖ OCA ‖ CEK [‖ ASK ‖ ARK].
pub fn load_file(path: &Path) -> Result<LoadedChain, ChainError> {
    let bytes = io::read_file(path)?;
    let origin = path.display().to_string();
    let sev_len = 4 * CERT_LEN;
    if bytes.len() < sev_len {
        return Err(ChainError::Size {
            what: format!("chain file {origin}"),
            expected: format!(
                "{sev_len} (PDH, PEK, OCA, CEK) or more (with ASK, ARK), as `sevctl export [--full]` \
                 writes"
            ),
            actual: bytes.len(),
        });
    }
    let (sev_part, ca_part) = bytes.split_at(sev_len);
    let (pdh_bytes, platform_bytes) = sev_part.split_at(CERT_LEN);
    let pdh = decode_sev(format!("PDH in {origin}"), pdh_bytes)?;
    let platform = decode_platform(&origin, platform_bytes)?;
    let ca = if ca_part.is_empty() {
        None
    } else {
        Some(
            CaChain::decode(ca_part).map_err(|source| ChainError::Decode {
                what: format!("ASK ‖ ARK after the SEV certificates in {origin}"),
                source,
            })?,
        )
    };
    Ok(LoadedChain {
        pdh,
        platform,
        ca,
        chip_id: None,
        origin,
    })
}

/// Reads a directory of single certificates.
pub fn load_dir(dir: &Path) -> Result<LoadedChain, ChainError> {
    let read = |name: &str| io::read_file(&dir.join(name));
    let sev = |name: &str| -> Result<sev::Certificate, ChainError> {
        decode_sev(dir.join(name).display().to_string(), &read(name)?)
    };
    let pdh = sev("pdh.cert")?;
    let platform = PlatformChain {
        pek: sev("pek.cert")?,
        oca: sev("oca.cert")?,
        cek: sev("cek.cert")?,
    };
    let (ask_p, ark_p) = (dir.join("ask.cert"), dir.join("ark.cert"));
    let ca = if ask_p.exists() || ark_p.exists() {
        let ca_cert = |p: &Path| -> Result<ca::Certificate, ChainError> {
            ca::Certificate::decode(&io::read_file(p)?).map_err(|source| ChainError::DecodeCa {
                what: p.display().to_string(),
                source,
            })
        };
        Some(CaChain {
            ask: ca_cert(&ask_p)?,
            ark: ca_cert(&ark_p)?,
        })
    } else {
        None
    };
    Ok(LoadedChain {
        pdh,
        platform,
        ca,
        chip_id: None,
        origin: dir.display().to_string(),
    })
}

/// Decodes a `query-sev-capabilities` answer: the `return` object of a QMP
/// reply, or the whole reply.
pub fn capabilities_from_json(origin: &str, value: &Value) -> Result<ChainSource, ChainError> {
    let obj = value.get("return").unwrap_or(value);
    let member = |name: &str| -> Result<Vec<u8>, ChainError> {
        let text = obj.get(name).and_then(Value::as_str).ok_or_else(|| {
            ChainError::Capabilities(format!("{origin}: no string member {name:?}"))
        })?;
        io::b64_decode(&format!("{origin}: {name}"), text)
            .map_err(|e| ChainError::Capabilities(e.to_string()))
    };
    let chip_id = match obj.get("cpu0-id") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(
            ChipId::parse(text)
                .map_err(|e| ChainError::Capabilities(format!("{origin}: cpu0-id: {e}")))?,
        ),
        Some(_) => {
            return Err(ChainError::Capabilities(format!(
                "{origin}: cpu0-id is not a string"
            )))
        }
    };
    Ok(ChainSource::Capabilities {
        origin: origin.to_string(),
        pdh: member("pdh")?,
        cert_chain: member("cert-chain")?,
        chip_id,
    })
}

/// Reads a saved `query-sev-capabilities` JSON file.
pub fn capabilities_file(path: &Path) -> Result<ChainSource, ChainError> {
    let bytes = io::read_file(path)?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ChainError::Capabilities(format!("{} is not JSON: {e}", path.display())))?;
    capabilities_from_json(&path.display().to_string(), &value)
}

impl ChainSource {
    /// Loads the certificates.
    pub fn load(&self) -> Result<LoadedChain, ChainError> {
        match self {
            ChainSource::File(p) => load_file(p),
            ChainSource::Dir(d) => load_dir(d),
            ChainSource::Capabilities {
                origin,
                pdh,
                cert_chain,
                chip_id,
            } => {
                if pdh.len() != CERT_LEN {
                    return Err(ChainError::Size {
                        what: format!("PDH from {origin}"),
                        expected: CERT_LEN.to_string(),
                        actual: pdh.len(),
                    });
                }
                Ok(LoadedChain {
                    pdh: decode_sev(format!("PDH from {origin}"), pdh)?,
                    platform: decode_platform(origin, cert_chain)?,
                    ca: None,
                    chip_id: *chip_id,
                    origin: origin.clone(),
                })
            }
        }
    }
}

/// Reads an ASK ‖ ARK file (what `sevctl verify --ca` reads).
pub fn load_ca_file(path: &Path) -> Result<CaChain, ChainError> {
    let bytes = io::read_file(path)?;
    CaChain::decode(&bytes).map_err(|source| ChainError::Decode {
        what: format!("CA chain (ASK ‖ ARK) {}", path.display()),
        source,
    })
}

/// The outcome of one check.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    /// What was checked.
    pub what: String,
    /// `None` when it passed, else why it failed.
    pub failure: Option<String>,
}

/// Everything [`verify`] found: the chain, the root, each check, and the
/// verified keys when every check passed.
#[derive(Debug, Clone)]
pub struct Verification {
    /// The chain as verified (with the CA part used).
    pub chain: FullChain,
    /// Where it came from.
    pub origin: String,
    /// Where the ASK/ARK came from.
    pub ca_origin: String,
    /// The root.
    pub trust: String,
    /// Where the CEK came from, when a signed CEK replaced the platform's.
    pub cek_origin: Option<String>,
    /// Whether the root is AMD's genuine root.
    pub amd_root: bool,
    /// What the root is ([`Trust::label`]).
    pub root_label: String,
    /// Every check, in order.
    pub checks: Vec<CheckOutcome>,
    /// The verified keys, when every check passed.
    pub verified: Option<VerifiedChain>,
}

impl Verification {
    /// The verified chain, or the error naming the first failing check.
    pub fn into_result(self) -> Result<(VerifiedChain, Verification), ChainError> {
        let failed: Vec<&CheckOutcome> =
            self.checks.iter().filter(|c| c.failure.is_some()).collect();
        if let Some(first) = failed.first() {
            return Err(ChainError::Failed {
                first: format!(
                    "{}: {}",
                    first.what,
                    first.failure.as_deref().unwrap_or_default()
                ),
                more: failed.len() - 1,
            });
        }
        match self.verified.clone() {
            Some(v) => Ok((v, self)),
            None => Err(ChainError::Failed {
                first: "chain did not verify".to_string(),
                more: 0,
            }),
        }
    }

    /// A human-readable report: the certificates, the root and each check.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let c = &self.chain;
        let _ = writeln!(out, "certificate chain: {}", self.origin);
        let _ = writeln!(out, "ASK/ARK: {}", self.ca_origin);
        if let Some(o) = &self.cek_origin {
            let _ = writeln!(
                out,
                "CEK: the platform's CEK as exported replaced by the signed CEK with the same key \
                 from {o}"
            );
        }
        for (name, cert) in [
            ("PDH", &c.pdh),
            ("PEK", &c.pek),
            ("OCA", &c.oca),
            ("CEK", &c.cek),
        ] {
            let _ = writeln!(out, "  {name}  {}", describe_sev(cert));
        }
        for (name, cert) in [("ASK", &c.ask), ("ARK", &c.ark)] {
            let _ = writeln!(out, "  {name}  {}", describe_ca(cert));
        }
        let _ = writeln!(out, "root: {}", self.trust);
        let _ = writeln!(out, "checks:");
        for check in &self.checks {
            match &check.failure {
                None => {
                    let _ = writeln!(out, "  ok    {}", check.what);
                }
                Some(why) => {
                    let _ = writeln!(out, "  FAIL  {}: {why}", check.what);
                }
            }
        }
        if self.verified.is_some() {
            let _ = writeln!(
                out,
                "chain verified: PDH ← PEK ← OCA, CEK ← ASK ← ARK = {}",
                self.root_label
            );
        } else {
            let n = self.checks.iter().filter(|c| c.failure.is_some()).count();
            let _ = writeln!(out, "chain NOT verified: {n} check(s) failed");
        }
        out
    }
}

/// One line describing a SEV certificate.
pub fn describe_sev(cert: &sev::Certificate) -> String {
    let (maj, min) = cert.api_version();
    let sigs: Vec<String> = Slot::BOTH
        .iter()
        .map(|s| {
            let slot = cert.signature(*s);
            if slot.is_empty() {
                "-".to_string()
            } else {
                format!("{} by {}", slot.algorithm().name(), slot.usage().name())
            }
        })
        .collect();
    let reserved = match cert.reserved_nonzero() {
        0 => String::new(),
        n => format!("  {n} non-zero reserved bytes (kept; the signatures cover them)"),
    };
    format!(
        "{} {} api {maj}.{min}  sig1 {}  sig2 {}  sha256 {}{reserved}",
        cert.usage().name(),
        cert.algorithm().name(),
        sigs.first().map(String::as_str).unwrap_or("-"),
        sigs.get(1).map(String::as_str).unwrap_or("-"),
        short_hex(&roots::sha256(&cert.encode()))
    )
}

/// One line describing an AMD CA certificate.
pub fn describe_ca(cert: &ca::Certificate) -> String {
    format!(
        "{} RSA-{} key id {} signed by {}  sha256 {}",
        cert.usage().name(),
        cert.modulus_bits(),
        hex::encode(cert.key_id()),
        hex::encode(cert.certifying_id()),
        short_hex(&roots::sha256(&cert.encode()))
    )
}

fn short_hex(bytes: &[u8]) -> String {
    hex::encode(bytes.get(..8).unwrap_or(bytes))
}

fn describe_check(check: Check) -> &'static str {
    match check {
        Check::Positions => {
            "positions: usages, algorithms and P-384 keys of PDH, PEK, OCA, CEK, ASK, ARK"
        }
        Check::ArkPinned => "ARK is the pinned root",
        Check::AskByArk => "ASK issued and signed by the ARK",
        Check::CekByAsk => "CEK signed by the ASK",
        Check::OcaSelf => "OCA self-signed",
        Check::PekByOca => "PEK signed by the OCA",
        Check::PekByCek => "PEK signed by the CEK",
        Check::PdhByPek => "PDH signed by the PEK",
        Check::ArkSelf => "ARK self-signature",
    }
}

/// Where the ASK/ARK for verification come from.
#[derive(Debug, Clone, Default)]
pub struct CaOptions {
    /// An explicit `--ca` file (ASK ‖ ARK).
    pub ca_file: Option<PathBuf>,
    /// Roots directories to search for AMD roots.
    pub roots_dirs: Vec<PathBuf>,
    /// Where a real host's signed CEK comes from.
    pub cek: CekOptions,
}

/// Verifies `loaded` to `trust`, recording the result of every check (on a
/// failure every check is run on its own, so the report is complete).
///
/// The returned keys come from [`chain::verify_owner_chain`] (scope
/// `Owner`), run beside the CEK, ASK and ARK checks; they are returned only
/// when every check of [`Check::ALL`] passed, so the whole chain is verified.
pub fn verify(
    loaded: LoadedChain,
    ca_opts: &CaOptions,
    trust: &Trust,
) -> Result<Verification, ChainError> {
    let (ca, ca_origin) = match (&ca_opts.ca_file, loaded.ca.clone()) {
        (Some(f), _) => (load_ca_file(f)?, format!("{} (--ca)", f.display())),
        (None, Some(ca)) => (ca, format!("from {}", loaded.origin)),
        (None, None) => match trust {
            Trust::Amd(g) => {
                let ca = roots::load_amd_ca(*g, &ca_opts.roots_dirs)?;
                (ca, format!("AMD {} roots directory", capitalized(g.name())))
            }
            Trust::Explicit {
                ask: Some(ask),
                ark,
                path,
                ..
            } => (
                CaChain {
                    ask: (**ask).clone(),
                    ark: (**ark).clone(),
                },
                format!("{} (--trust-ark)", path.display()),
            ),
            Trust::Explicit { ask: None, .. } => return Err(ChainError::NoCa),
        },
    };
    let mut chain = FullChain::from_parts(loaded.pdh, loaded.platform, ca);
    // The pin: the chain's ARK is used for the remaining checks only once it
    // is shown to be the pinned root; otherwise they run against it anyway
    // (to report them) and the pin check fails.
    let pin_failure = match trust {
        Trust::Amd(g) => roots::check_genuine_ark(*g, &chain.ark)
            .err()
            .map(|e| e.to_string()),
        Trust::Explicit { ark, .. } => {
            let same: bool = chain.ark.encode().ct_eq(&ark.encode()).into();
            (!same).then(|| {
                format!(
                    "ARK in the chain (sha256 {}) is not the given root (sha256 {})",
                    hex::encode(roots::sha256(&chain.ark.encode())),
                    hex::encode(roots::sha256(&ark.encode()))
                )
            })
        }
    };
    // A real host's CEK carries no ASK signature: replace it by the signed
    // CEK with the same key (crate::cek). A fetched one is cached only when
    // the ASK is the pinned root's.
    let ca_trusted = pin_failure.is_none() && chain.check(Check::AskByArk, &chain.ark).is_ok();
    let mut cek_origin = None;
    let mut cek_missing = None;
    match cek::resolve(
        &chain.cek,
        loaded.chip_id.as_ref(),
        &chain.ask,
        &ca_opts.cek,
        ca_trusted,
    )? {
        Resolution::Kept => {}
        Resolution::Replaced(r) => {
            chain.cek = r.cek;
            cek_origin = Some(r.origin);
        }
        Resolution::Missing(why) => cek_missing = Some(why),
    }
    // The owner part (OCA, PEK, PDH: three ECDSA verifications, which also
    // yield the PDH and PEK keys) and the rest (CEK, ASK, ARK) run on two
    // threads. Only when something fails is every check run on its own, so
    // that the report names each failing one.
    let rest = [
        Check::Positions,
        Check::AskByArk,
        Check::CekByAsk,
        Check::PekByCek,
        Check::ArkSelf,
    ];
    let (owner, rest_ok) = std::thread::scope(|s| {
        let rest_thread = s.spawn(|| rest.iter().all(|c| chain.check(*c, &chain.ark).is_ok()));
        let owner = chain.verify_owner_chain();
        (owner, rest_thread.join().unwrap_or(false))
    });
    let mut checks = Vec::with_capacity(Check::ALL.len());
    let verified = match owner {
        Ok(v) if rest_ok && pin_failure.is_none() => {
            for check in Check::ALL {
                checks.push(CheckOutcome {
                    what: describe_check(check).to_string(),
                    failure: None,
                });
            }
            Some(v)
        }
        _ => {
            for check in Check::ALL {
                let failure = if check == Check::ArkPinned {
                    pin_failure.clone()
                } else {
                    chain
                        .check(check, &chain.ark)
                        .err()
                        .map(|e| crate::error::error_chain(&e))
                };
                // Say what is missing for a real host's unsigned CEK.
                let failure = match (failure, check, &cek_missing) {
                    (Some(f), Check::CekByAsk, Some(why)) => Some(format!("{f}; {why}")),
                    (f, _, _) => f,
                };
                checks.push(CheckOutcome {
                    what: describe_check(check).to_string(),
                    failure,
                });
            }
            None
        }
    };
    Ok(Verification {
        chain,
        origin: loaded.origin,
        ca_origin,
        trust: trust.describe(),
        cek_origin,
        amd_root: trust.is_amd(),
        root_label: trust.label(),
        checks,
        verified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sevm_testutil::{fixture, testdata_dir};

    fn fixture_chain(test: &str, gen: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for name in ["pdh", "pek", "oca", "cek"] {
            out.extend(fixture(test, &format!("certs/{gen}/{name}.cert"))?);
        }
        Some(out)
    }

    fn roots_opts() -> Option<CaOptions> {
        Some(CaOptions {
            ca_file: None,
            roots_dirs: vec![testdata_dir()?.join("amd-roots")],
            ..CaOptions::default()
        })
    }

    /// The real Rome chain (docs/protocol/test-vectors.md#chain-checks) verifies to the built-in
    /// Rome root with every check passing, and fails the ARK pin for Milan.
    #[test]
    fn real_rome_chain_verifies_to_pinned_rome_root() {
        let test = "real_rome_chain_verifies_to_pinned_rome_root";
        let Some(bytes) = fixture_chain(test, "rome") else {
            return;
        };
        let Some(opts) = roots_opts() else { return };
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("chain.cert");
        std::fs::write(&f, &bytes).unwrap();
        let loaded = ChainSource::File(f.clone()).load().unwrap();
        let v = verify(loaded.clone(), &opts, &Trust::Amd(AmdGeneration::Rome)).unwrap();
        assert!(
            v.checks.iter().all(|c| c.failure.is_none()),
            "{}",
            v.render()
        );
        assert!(v.render().contains("chain verified"));
        let (verified, v) = v.into_result().unwrap();
        assert_eq!(v.checks.len(), Check::ALL.len());
        assert_eq!(verified.pdh_api_version(), (0, 22));

        // Against Milan's roots: the ARK pin fails and so do the signatures
        // of Milan's ASK on Rome's CEK.
        let v = verify(loaded, &opts, &Trust::Amd(AmdGeneration::Milan)).unwrap();
        let failed: Vec<_> = v.checks.iter().filter(|c| c.failure.is_some()).collect();
        assert!(
            failed
                .iter()
                .any(|c| c.what.contains("CEK signed by the ASK")),
            "{}",
            v.render()
        );
        let e = v.into_result().unwrap_err();
        assert!(
            e.to_string()
                .contains("certificate chain verification failed"),
            "{e}"
        );
    }

    /// A Naples PDH in a Rome chain: only "PDH signed by the PEK" fails.
    #[test]
    fn swapped_pdh_is_named() {
        let test = "swapped_pdh_is_named";
        let Some(mut bytes) = fixture_chain(test, "rome") else {
            return;
        };
        let Some(naples_pdh) = fixture(test, "certs/naples/pdh.cert") else {
            return;
        };
        let Some(opts) = roots_opts() else { return };
        bytes[..CERT_LEN].copy_from_slice(&naples_pdh);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("chain.cert");
        std::fs::write(&f, &bytes).unwrap();
        let v = verify(
            load_file(&f).unwrap(),
            &opts,
            &Trust::Amd(AmdGeneration::Rome),
        )
        .unwrap();
        let failed: Vec<_> = v.checks.iter().filter(|c| c.failure.is_some()).collect();
        assert_eq!(failed.len(), 1, "{}", v.render());
        assert_eq!(failed[0].what, "PDH signed by the PEK");
        assert!(v.render().contains("FAIL  PDH signed by the PEK"));
    }

    /// An explicit root that is not the chain's ARK fails the pin.
    #[test]
    fn explicit_root_must_match() {
        let test = "explicit_root_must_match";
        let Some(bytes) = fixture_chain(test, "naples") else {
            return;
        };
        let Some(dir) = testdata_dir() else { return };
        let dir_roots = dir.join("amd-roots");
        let tmp = tempfile::tempdir().unwrap();
        let mut full = bytes.clone();
        full.extend(std::fs::read(dir_roots.join("naples-ask.cert")).unwrap());
        full.extend(std::fs::read(dir_roots.join("naples-ark.cert")).unwrap());
        let f = tmp.path().join("full.cert");
        std::fs::write(&f, &full).unwrap();
        let good = Trust::explicit(&dir_roots.join("naples-ark.cert")).unwrap();
        let v = verify(load_file(&f).unwrap(), &CaOptions::default(), &good).unwrap();
        assert!(v.verified.is_some(), "{}", v.render());
        // AMD's genuine Naples ARK, given explicitly: labelled as AMD's.
        assert!(v.amd_root);
        assert!(
            v.render().contains("AMD's genuine Naples root"),
            "{}",
            v.render()
        );
        assert!(!v.render().contains("not an AMD root"), "{}", v.render());
        let other = Trust::explicit(&dir_roots.join("rome-ark.cert")).unwrap();
        let v = verify(load_file(&f).unwrap(), &CaOptions::default(), &other).unwrap();
        let e = v.into_result().unwrap_err().to_string();
        assert!(
            e.contains("ARK is the pinned root: ARK in the chain"),
            "{e}"
        );
    }

    #[test]
    fn bad_inputs_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("short.cert");
        std::fs::write(&f, [0u8; 100]).unwrap();
        let e = load_file(&f).unwrap_err().to_string();
        assert!(e.contains("short.cert is 100 bytes"), "{e}");
        std::fs::write(&f, [0u8; 4 * CERT_LEN]).unwrap();
        let e = load_file(&f).unwrap_err().to_string();
        assert!(e.contains("PDH in"), "{e}");
        let e = load_dir(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("pdh.cert"), "{e}");
        let v: Value = serde_json::json!({"return": {"pdh": "!!", "cert-chain": ""}});
        let e = capabilities_from_json("qmp", &v).unwrap_err().to_string();
        assert!(e.contains("pdh"), "{e}");
        let v: Value = serde_json::json!({"pdh": "AAAA"});
        let e = capabilities_from_json("qmp", &v).unwrap_err().to_string();
        assert!(e.contains("cert-chain"), "{e}");
        let src = capabilities_from_json(
            "qmp",
            &serde_json::json!({"pdh": "AAAA", "cert-chain": "AAAA"}),
        )
        .unwrap();
        let e = src.load().unwrap_err().to_string();
        assert!(e.contains("PDH from qmp is 3 bytes"), "{e}");
    }

    /// Arbitrary bytes in every input place: errors, never panics.
    #[test]
    fn random_inputs_are_errors_not_panics() {
        let tmp = tempfile::tempdir().unwrap();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let f = tmp.path().join("blob");
        for round in 0..200 {
            let len = match round % 4 {
                0 => (next() % 64) as usize,
                1 => 4 * CERT_LEN + (next() % 4000) as usize,
                2 => 4 * CERT_LEN,
                _ => (next() % 20000) as usize,
            };
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 3 == 0 && bytes.len() >= 4 {
                // A plausible VERSION field gets the decoders further.
                bytes[..4].copy_from_slice(&1u32.to_le_bytes());
            }
            std::fs::write(&f, &bytes).unwrap();
            let _ = load_file(&f);
            let _ = Trust::explicit(&f);
            let _ = load_ca_file(&f);
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let _ = capabilities_file(&f);
            let v = serde_json::json!({"pdh": io::b64_encode(&bytes), "cert-chain": text});
            if let Ok(src) = capabilities_from_json("fuzz", &v) {
                let _ = src.load();
            }
            let _ = crate::secret::parse_spec(&text);
        }
    }
}
