//! SNP attestation report verification (`sev-owner snp verify`,
//! docs/guide/sev-owner.md#snp-verify): the report's VCEK chain to a pinned
//! AMD root (or a root trusted explicitly), the report's signature, then the
//! owner's checks in the manner of go-sev-guest's `check` tool.
//!
//! The outcome has three levels, each with its own exit status in the CLI:
//! the inputs may be unreadable ([`load`] fails: bad input), the report may
//! not be authentic ([`Verdict::NotAuthentic`]), or it may be authentic but
//! fail a check ([`Verdict::CheckFailed`]).

mod checks;
mod output;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{anyhow, bail, Context, Result};
use sev_proto::snp::cert::{self, Certificate};
use sev_proto::snp::chain::{Chain, Trust, VerifiedChain};
use sev_proto::snp::report::{AttestationReport, ReportSigner, REPORT_LEN};
use sev_proto::snp::Product;

pub use checks::{checks, Check, Expectations};

use crate::io;

/// The largest report file read: a binary report, or its hex text with
/// line breaks.
const MAX_REPORT_FILE: u64 = 16 << 10;
/// The largest certificate or `cert_chain` file read.
const MAX_CERT_FILE: u64 = 256 << 10;

/// Where the report and its chain come from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The report: 1184 bytes, or their hex text.
    pub report: PathBuf,
    /// The VCEK (or VLEK): DER or PEM.
    pub vcek: PathBuf,
    /// The ASK (or ASVK) and usually the ARK, PEM, as KDS's `cert_chain`.
    pub chain: Option<PathBuf>,
    /// The ARK (DER or PEM), when not in `chain`.
    pub ark: Option<PathBuf>,
    /// Trust `ark` itself instead of AMD's pinned roots.
    pub trust_ark_explicitly: bool,
    /// The product the chain must be of.
    pub product: Option<Product>,
    /// Where to look for `ask_ark_<product>.pem` when `chain` is not given.
    pub roots_dirs: Vec<PathBuf>,
}

/// The report and the certificates, decoded.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The report.
    pub report: AttestationReport,
    /// The chain.
    pub chain: Chain,
    /// The explicitly trusted ARK, if any.
    pub trusted_ark: Option<Certificate>,
    /// The product asked for.
    pub product: Option<Product>,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Authentic, and every check passed.
    Verified,
    /// The chain or the report's signature or binding failed.
    NotAuthentic(String),
    /// Authentic, but these checks failed.
    CheckFailed(Vec<&'static str>),
}

/// The result of [`verify`].
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The report.
    pub report: AttestationReport,
    /// The chain, when it verified (the report may still not match it).
    pub chain: Option<VerifiedChain>,
    /// CNs of the ARK, ASK and VCEK.
    pub names: [String; 3],
    /// Whether the root was AMD's pinned one or trusted explicitly.
    pub explicit_root: bool,
    /// The owner's checks (empty when the report is not authentic).
    pub checks: Vec<Check>,
    /// The verdict.
    pub verdict: Verdict,
}

fn read_cert_file(path: &Path) -> Result<Vec<Certificate>> {
    let bytes = io::read_file_max(path, MAX_CERT_FILE)?;
    let certs = if cert::is_pem(&bytes) {
        Certificate::from_pem_chain(&bytes)
    } else {
        Certificate::from_der(&bytes).map(|c| vec![c])
    };
    certs.with_context(|| format!("{} is not a DER or PEM X.509 certificate", path.display()))
}

fn read_one_cert(path: &Path) -> Result<Certificate> {
    let mut certs = read_cert_file(path)?;
    if certs.len() != 1 {
        bail!(
            "{} holds {} certificates, expected one",
            path.display(),
            certs.len()
        );
    }
    Ok(certs.remove(0))
}

/// Reads a report file: 1184 bytes, or hex text of them (whitespace
/// ignored, as virtee's `report_milan.hex`).
pub fn read_report(path: &Path) -> Result<AttestationReport> {
    let bytes = io::read_file_max(path, MAX_REPORT_FILE)?;
    let raw = if bytes.len() == REPORT_LEN {
        bytes
    } else {
        let text: Vec<u8> = bytes
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        match hex::decode(&text) {
            Ok(raw) if raw.len() == REPORT_LEN => raw,
            Ok(raw) => bail!(
                "{}: hex text of {} bytes, an SNP report is {REPORT_LEN}",
                path.display(),
                raw.len()
            ),
            Err(_) => bail!(
                "{} is {} bytes: neither an SNP report ({REPORT_LEN} bytes) nor its hex text",
                path.display(),
                bytes.len()
            ),
        }
    };
    AttestationReport::decode(&raw).with_context(|| format!("{}", path.display()))
}

/// The `ask_ark_<product>.pem` (or `ask_ark_<product>_vcek.pem`, as
/// go-sev-guest names Turin's) of the first roots directory that has one;
/// for a report signed by a VLEK, `ask_ark_<product>_vlek.pem` (the ASVK
/// and the ARK).
fn find_cert_chain(product: Product, vlek: bool, dirs: &[PathBuf]) -> Result<PathBuf> {
    let lower = product.name().to_ascii_lowercase();
    let names = if vlek {
        vec![format!("ask_ark_{lower}_vlek.pem")]
    } else {
        vec![
            format!("ask_ark_{lower}.pem"),
            format!("ask_ark_{lower}_vcek.pem"),
        ]
    };
    let (kind, path) = if vlek {
        ("VLEK ", "vlek")
    } else {
        ("", "vcek")
    };
    dirs.iter()
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!(
                "no {} in {}; pass KDS's {kind}cert_chain for {product} with --chain FILE \
                 (https://kdsintf.amd.com/{path}/v1/{product}/cert_chain) or put it in one of \
                 those directories",
                names[0],
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// Reads and decodes every input; any failure is bad input.
pub fn load(s: &Sources) -> Result<Loaded> {
    if s.trust_ark_explicitly && s.ark.is_none() {
        bail!("--trust-ark-explicitly needs the ARK to trust: --ark FILE");
    }
    let report = read_report(&s.report)?;
    let vek = read_one_cert(&s.vcek)?;
    let ark_file = s.ark.as_deref().map(read_one_cert).transpose()?;

    let product = s.product.or_else(|| report.product());
    let chain_path = match (&s.chain, &ark_file, product) {
        (Some(p), _, _) => Some(p.clone()),
        // An explicitly trusted ARK may come with the ASK in --chain only.
        (None, Some(_), _) if s.trust_ark_explicitly => None,
        (None, _, Some(product)) => Some(find_cert_chain(
            product,
            report.signing_key == ReportSigner::Vlek,
            &s.roots_dirs,
        )?),
        (None, _, None) => bail!(
            "the report (version {}) does not name its product: give --product or --chain",
            report.version
        ),
    };
    let mut certs = match &chain_path {
        Some(p) => read_cert_file(p)?,
        None => Vec::new(),
    };
    let describe = |p: &Option<PathBuf>| {
        p.as_ref()
            .map_or_else(|| "no --chain".to_owned(), |p| p.display().to_string())
    };
    let (ask, ark) = match (certs.len(), ark_file.clone()) {
        (2, Some(ark)) => {
            let chain_ark = certs.remove(1);
            if chain_ark.der() != ark.der() {
                bail!(
                    "{} ends in an ARK ({}) other than --ark ({})",
                    describe(&chain_path),
                    chain_ark.subject_cn(),
                    ark.subject_cn()
                );
            }
            (certs.remove(0), ark)
        }
        (2, None) => {
            let ark = certs.remove(1);
            (certs.remove(0), ark)
        }
        (1, Some(ark)) => (certs.remove(0), ark),
        (n, _) => bail!(
            "{} holds {n} certificates: expected the ASK then the ARK (KDS cert_chain), or the ASK \
             alone with --ark",
            describe(&chain_path)
        ),
    };
    Ok(Loaded {
        report,
        chain: Chain { ark, ask, vek },
        trusted_ark: if s.trust_ark_explicitly {
            ark_file
        } else {
            None
        },
        product: s.product,
    })
}

/// Verifies `loaded` at time `at`: chain, binding, signature, then the
/// checks.
pub fn verify(loaded: &Loaded, expect: &Expectations, at: SystemTime) -> Outcome {
    let c = &loaded.chain;
    let names = [c.ark.subject_cn(), c.ask.subject_cn(), c.vek.subject_cn()];
    let trust = match &loaded.trusted_ark {
        Some(ark) => Trust::Explicit(ark),
        None => Trust::AmdPinned,
    };
    let (chain, checks, verdict) = match c.verify(trust, loaded.product, at) {
        Err(e) => (
            None,
            Vec::new(),
            Verdict::NotAuthentic(crate::error::error_chain(&e)),
        ),
        Ok(v) => match v.verify_report(&loaded.report) {
            Err(e) => (
                Some(v),
                Vec::new(),
                Verdict::NotAuthentic(crate::error::error_chain(&e)),
            ),
            Ok(()) => {
                let checks = checks(&loaded.report, v.product, expect);
                let failed: Vec<&'static str> =
                    checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
                let verdict = if failed.is_empty() {
                    Verdict::Verified
                } else {
                    Verdict::CheckFailed(failed)
                };
                (Some(v), checks, verdict)
            }
        },
    };
    Outcome {
        report: loaded.report.clone(),
        chain,
        names,
        explicit_root: loaded.trusted_ark.is_some(),
        checks,
        verdict,
    }
}
