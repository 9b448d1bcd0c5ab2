//! SNP attestation report verification (`sev-owner snp verify`,
//! docs/guide/sev-owner.md#snp-verify): the report's VCEK chain to a pinned
//! AMD root (or a root trusted explicitly), the report's signature, then the
//! owner's checks in the manner of go-sev-guest's `check` tool.
//!
//! The VCEK, the `cert_chain` and the ARK's CRL come from files the user
//! names, else the roots directories (the chain), else the KDS cache, else
//! a key distribution service when fetching is allowed ([`crate::kds::client`]); a
//! fetched object is cached only once it verified ([`remember_verified`]).
//!
//! The outcome has three levels, each with its own exit status in the CLI:
//! the inputs may be unreadable ([`load`] fails: bad input), the report may
//! not be authentic ([`Verdict::NotAuthentic`]), or it may be authentic but
//! fail a check ([`Verdict::CheckFailed`]).

mod checks;
mod output;
mod sources;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use sev_proto::snp::cert::{self, Certificate};
use sev_proto::snp::chain::{Chain, Trust, VerifiedChain};
use sev_proto::snp::crl::Crl;
use sev_proto::snp::kds::KdsRequest;
use sev_proto::snp::report::{AttestationReport, REPORT_LEN};
use sev_proto::snp::Product;

pub use checks::{checks, Check, Expectations};
pub use sources::{default_cache_dir, remember_verified};

use crate::io;
use crate::kds::client::{KdsSource, Obtained, Origin};

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
    /// The VCEK (or VLEK): DER or PEM. Without it, the VCEK is taken from
    /// the KDS cache or service by the report's CHIP_ID and REPORTED_TCB.
    pub vcek: Option<PathBuf>,
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
    /// The ARK's CRL (DER), instead of the cache or the service.
    pub crl: Option<PathBuf>,
    /// Skip the revocation check.
    pub no_crl: bool,
    /// The KDS cache, and the service when fetching is allowed.
    pub kds: KdsSource,
}

/// Where each certificate (and the CRL) came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// The VCEK or VLEK.
    pub vek: Origin,
    /// The ASK or ASVK.
    pub ask: Origin,
    /// The ARK.
    pub ark: Origin,
    /// The CRL, unless the check was skipped.
    pub crl: Option<Origin>,
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
    /// The ARK's CRL, unless the check is skipped.
    pub crl: Option<Crl>,
    /// Where each object came from.
    pub provenance: Provenance,
    /// Objects fetched from the KDS, to cache once they verify.
    pub fetched: Vec<(KdsRequest, Obtained)>,
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
    /// Where each object came from.
    pub provenance: Provenance,
    /// Whether the chain was checked against the ARK's CRL (and passed).
    pub crl_checked: bool,
    /// The owner's checks (empty when the report is not authentic).
    pub checks: Vec<Check>,
    /// The verdict.
    pub verdict: Verdict,
}

fn certs_of(bytes: &[u8], what: &str) -> Result<Vec<Certificate>> {
    let certs = if cert::is_pem(bytes) {
        Certificate::from_pem_chain(bytes)
    } else {
        Certificate::from_der(bytes).map(|c| vec![c])
    };
    certs.with_context(|| format!("{what} is not a DER or PEM X.509 certificate"))
}

fn read_cert_file(path: &Path) -> Result<Vec<Certificate>> {
    let bytes = io::read_file_max(path, MAX_CERT_FILE)?;
    certs_of(&bytes, &path.display().to_string())
}

fn one_cert(mut certs: Vec<Certificate>, what: &str) -> Result<Certificate> {
    if certs.len() != 1 {
        bail!("{what} holds {} certificates, expected one", certs.len());
    }
    Ok(certs.remove(0))
}

fn read_one_cert(path: &Path) -> Result<Certificate> {
    one_cert(read_cert_file(path)?, &path.display().to_string())
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

/// Reads (or fetches) and decodes every input; any failure is bad input.
pub fn load(s: &Sources) -> Result<Loaded> {
    sources::load(s)
}

/// Verifies `loaded` at time `at`: chain, revocation, binding, signature,
/// then the checks.
pub fn verify(loaded: &Loaded, expect: &Expectations, at: SystemTime) -> Outcome {
    let c = &loaded.chain;
    let names = [c.ark.subject_cn(), c.ask.subject_cn(), c.vek.subject_cn()];
    let trust = match &loaded.trusted_ark {
        Some(ark) => Trust::Explicit(ark),
        None => Trust::AmdPinned,
    };
    let not_authentic =
        |e: &dyn std::error::Error| Verdict::NotAuthentic(crate::error::error_chain(e));
    let mut crl_checked = false;
    let (chain, checks, verdict) = match c.verify(trust, loaded.product, at) {
        Err(e) => (None, Vec::new(), not_authentic(&e)),
        Ok(v) => {
            let revocation = loaded.crl.as_ref().map(|crl| crl.check_chain(c));
            crl_checked = matches!(revocation, Some(Ok(())));
            let authentic = match revocation {
                Some(Err(e)) => Err(Verdict::NotAuthentic(format!(
                    "CRL: {}",
                    crate::error::error_chain(&e)
                ))),
                _ => v
                    .verify_report(&loaded.report)
                    .map_err(|e| not_authentic(&e)),
            };
            match authentic {
                Err(verdict) => (Some(v), Vec::new(), verdict),
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
            }
        }
    };
    Outcome {
        report: loaded.report.clone(),
        chain,
        names,
        explicit_root: loaded.trusted_ark.is_some(),
        provenance: loaded.provenance.clone(),
        crl_checked,
        checks,
        verdict,
    }
}
