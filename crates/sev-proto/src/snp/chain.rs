//! The VCEK chain and what binds it to a report
//! (docs/protocol/snp.md#vcek-chain): ARK (self-signed, pinned) → ASK →
//! VCEK, or ARK → ASVK → VLEK; then the report's signer, chip id and TCB
//! against the VCEK, and the report's signature.
//!
//! AMD's roots are pinned by the SHA-256 of their DER encoding, one per
//! product (docs/protocol/choices.md#u55);
//! an ARK that matches is byte for byte AMD's. Another root (the emulated
//! platform's) is trusted only when the caller passes it explicitly.

use std::time::SystemTime;

use p384::ecdsa::VerifyingKey;

use super::cert::{unix_seconds, AmdExtensions, CertError, Certificate};
use super::report::{AttestationReport, ReportError, ReportSigner};
use super::tcb::{Product, TcbError};

/// SHA-256 of the DER of AMD's genuine ARK of each product, as AMD's key
/// distribution service publishes it (`/vcek/v1/<Product>/cert_chain`).
const PINNED_ARKS: [(Product, &str); 3] = [
    (
        Product::Milan,
        "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    ),
    (
        Product::Genoa,
        "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    ),
    (
        Product::Turin,
        "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
    ),
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 (hex) of AMD's genuine ARK of `product`.
pub fn pinned_ark_sha256(product: Product) -> &'static str {
    PINNED_ARKS
        .iter()
        .find(|(p, _)| *p == product)
        .map_or("", |(_, h)| h)
}

/// The product whose genuine ARK `ark` is, if it is one.
pub fn pinned_product(ark: &Certificate) -> Option<Product> {
    let sha = hex(&ark.sha256());
    PINNED_ARKS.iter().find(|(_, h)| *h == sha).map(|(p, _)| *p)
}

/// Which root a chain must end in.
#[derive(Debug, Clone, Copy)]
pub enum Trust<'a> {
    /// AMD's genuine ARK (of the product, when one is given).
    AmdPinned,
    /// Exactly this certificate (e.g. an emulated platform's ARK); the
    /// caller has decided to trust it.
    Explicit(&'a Certificate),
}

/// Whether a chain ends in a VCEK or a VLEK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VekKind {
    /// The chip's key; issued by the ASK (`SEV-<Product>`).
    Vcek,
    /// A cloud provider's key; issued by the ASVK (`SEV-VLEK-<Product>`).
    Vlek,
}

impl VekKind {
    /// `VCEK` or `VLEK`.
    pub const fn name(self) -> &'static str {
        match self {
            VekKind::Vcek => "VCEK",
            VekKind::Vlek => "VLEK",
        }
    }
}

/// Why a chain does not verify. Every variant names the certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The ARK is not AMD's genuine root (of the product, if one was given).
    #[error("ARK (sha256 {sha256}) is not AMD's genuine ARK{}", .product.map(|p| format!(" for {p}")).unwrap_or_default())]
    ArkNotPinned {
        /// The ARK's fingerprint.
        sha256: String,
        /// The product asked for.
        product: Option<Product>,
    },
    /// The ARK is AMD's, but of another product than the one asked for.
    #[error("ARK is AMD's {found} root, not {expected}'s")]
    ArkProduct {
        /// The ARK's product.
        found: Product,
        /// The product asked for.
        expected: Product,
    },
    /// The ARK is not the explicitly trusted certificate.
    #[error("ARK (sha256 {sha256}) is not the ARK trusted explicitly (sha256 {trusted})")]
    ArkNotTrusted {
        /// The ARK's fingerprint.
        sha256: String,
        /// The trusted certificate's fingerprint.
        trusted: String,
    },
    /// An explicitly trusted ARK whose product cannot be told.
    #[error("ARK subject CN {0:?} names no product (expected ARK-Milan, ARK-Genoa or ARK-Turin)")]
    ArkUnknownProduct(String),
    /// A certificate's subject CN is not the one its place requires.
    #[error("{which}: subject CN is {found:?}, expected {expected:?}")]
    Name {
        /// ARK, ASK, ASVK, VCEK or VLEK.
        which: &'static str,
        /// The CN found.
        found: String,
        /// The CN required.
        expected: String,
    },
    /// A certificate's issuer name is not its issuer's subject.
    #[error("{which}: issuer {found:?} is not {issuer} {expected:?}")]
    Issuer {
        /// The certificate.
        which: &'static str,
        /// Its issuer's CN.
        found: String,
        /// ARK or ASK.
        issuer: &'static str,
        /// The issuer's subject CN.
        expected: String,
    },
    /// A certificate is not valid at the verification time.
    #[error("{which}: not valid at {at} (valid from {from} until {until}, seconds since 1970)")]
    Validity {
        /// The certificate.
        which: &'static str,
        /// The verification time.
        at: u64,
        /// notBefore.
        from: u64,
        /// notAfter.
        until: u64,
    },
    /// A certificate's signature, key or extensions are wrong.
    #[error("{which}")]
    Cert {
        /// The certificate.
        which: &'static str,
        /// What is wrong.
        #[source]
        source: CertError,
    },
    /// The VCEK's or VLEK's productName is another product's.
    #[error("{which}: productName {found:?} is not {expected}")]
    Product {
        /// VCEK or VLEK.
        which: &'static str,
        /// productName.
        found: String,
        /// The chain's product.
        expected: Product,
    },
    /// A VCEK without hwID, or a VLEK with one.
    #[error("{which}: {why}")]
    HwId {
        /// VCEK or VLEK.
        which: &'static str,
        /// What is wrong.
        why: &'static str,
    },
}

/// A report that does not match its verified chain, or whose signature
/// does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// The report names another kind of signing key.
    #[error("report SIGNING_KEY is {report}, but the chain ends in a {chain}")]
    Signer {
        /// The report's SIGNING_KEY.
        report: &'static str,
        /// VCEK or VLEK.
        chain: &'static str,
    },
    /// The report's CPUID names another product.
    #[error("report CPUID names {report}, but the chain is {chain}'s")]
    Product {
        /// From the report.
        report: Product,
        /// The chain's.
        chain: Product,
    },
    /// The report's CHIP_ID is not the VCEK's hwID.
    #[error("report CHIP_ID {report} is not the VCEK's hwID {vcek} (a VCEK of another chip)")]
    ChipId {
        /// CHIP_ID (hex, as compared).
        report: String,
        /// hwID (hex).
        vcek: String,
    },
    /// REPORTED_TCB is not in the product's layout.
    #[error("report REPORTED_TCB")]
    Tcb(#[source] TcbError),
    /// A component of REPORTED_TCB differs from the VCEK's SPL.
    #[error("report REPORTED_TCB {component} SVN is {report}, the {which}'s {extension} is {vek} (a {which} for another TCB)")]
    Spl {
        /// bootloader, TEE, SNP, microcode or FMC.
        component: &'static str,
        /// The extension's name.
        extension: &'static str,
        /// VCEK or VLEK.
        which: &'static str,
        /// From the report.
        report: u8,
        /// From the certificate (`none` when absent).
        vek: String,
    },
    /// The signature does not verify.
    #[error("report signature")]
    Signature(#[source] ReportError),
}

/// The ARK, the ASK (or ASVK) and the VCEK (or VLEK) of a report.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The root.
    pub ark: Certificate,
    /// The intermediate: ASK, or ASVK for a VLEK.
    pub ask: Certificate,
    /// The report's signer: VCEK or VLEK.
    pub vek: Certificate,
}

/// A chain that verified: its product, the kind of key it ends in, that
/// key and AMD's extensions of its certificate.
#[derive(Debug, Clone)]
pub struct VerifiedChain {
    /// The product of the root.
    pub product: Product,
    /// VCEK or VLEK.
    pub kind: VekKind,
    /// The VCEK's or VLEK's public key.
    pub key: VerifyingKey,
    /// Its AMD extensions.
    pub extensions: AmdExtensions,
    /// SHA-256 of the ARK (hex).
    pub ark_sha256: String,
}

fn check_validity(
    which: &'static str,
    cert: &Certificate,
    at: SystemTime,
) -> Result<(), ChainError> {
    if cert.valid_at(at) {
        return Ok(());
    }
    let (from, until) = cert.validity();
    Err(ChainError::Validity {
        which,
        at: unix_seconds(at),
        from: unix_seconds(from),
        until: unix_seconds(until),
    })
}

fn check_name(which: &'static str, cert: &Certificate, expected: String) -> Result<(), ChainError> {
    let found = cert.subject_cn();
    if found == expected {
        Ok(())
    } else {
        Err(ChainError::Name {
            which,
            found,
            expected,
        })
    }
}

fn check_issued(
    which: &'static str,
    cert: &Certificate,
    issuer_which: &'static str,
    issuer: &Certificate,
) -> Result<(), ChainError> {
    if !cert.issued_by_name(issuer) {
        return Err(ChainError::Issuer {
            which,
            found: cert.issuer_cn(),
            issuer: issuer_which,
            expected: issuer.subject_cn(),
        });
    }
    cert.verify_signed_by(issuer)
        .map_err(|source| ChainError::Cert { which, source })
}

impl Chain {
    /// Verifies the chain at time `at`: the ARK is trusted (`trust`) and of
    /// `product` when one is given, and self-signed; the ASK or ASVK is
    /// signed by it; the VCEK or VLEK by that; names, validity periods,
    /// key types and AMD's extensions are checked on the way.
    pub fn verify(
        &self,
        trust: Trust<'_>,
        product: Option<Product>,
        at: SystemTime,
    ) -> Result<VerifiedChain, ChainError> {
        let ark_sha256 = hex(&self.ark.sha256());
        let product = match trust {
            Trust::AmdPinned => {
                let found = pinned_product(&self.ark).ok_or(ChainError::ArkNotPinned {
                    sha256: ark_sha256.clone(),
                    product,
                })?;
                match product {
                    Some(expected) if expected != found => {
                        return Err(ChainError::ArkProduct { found, expected })
                    }
                    _ => found,
                }
            }
            Trust::Explicit(trusted) => {
                if trusted.der() != self.ark.der() {
                    return Err(ChainError::ArkNotTrusted {
                        sha256: ark_sha256,
                        trusted: hex(&trusted.sha256()),
                    });
                }
                let cn = self.ark.subject_cn();
                let named = cn.strip_prefix("ARK-").and_then(|p| p.parse().ok());
                match (product, named) {
                    (Some(p), _) => p,
                    (None, Some(p)) => p,
                    (None, None) => return Err(ChainError::ArkUnknownProduct(cn)),
                }
            }
        };

        check_name("ARK", &self.ark, format!("ARK-{product}"))?;
        check_issued("ARK", &self.ark, "ARK", &self.ark)?;
        check_validity("ARK", &self.ark, at)?;

        let kind = if self.ask.subject_cn() == format!("SEV-VLEK-{product}") {
            VekKind::Vlek
        } else {
            VekKind::Vcek
        };
        let (ask_which, ask_cn) = match kind {
            VekKind::Vcek => ("ASK", format!("SEV-{product}")),
            VekKind::Vlek => ("ASVK", format!("SEV-VLEK-{product}")),
        };
        check_name(ask_which, &self.ask, ask_cn)?;
        check_issued(ask_which, &self.ask, "ARK", &self.ark)?;
        check_validity(ask_which, &self.ask, at)?;

        let which = kind.name();
        check_name(which, &self.vek, format!("SEV-{which}"))?;
        check_issued(which, &self.vek, ask_which, &self.ask)?;
        check_validity(which, &self.vek, at)?;
        let key = self
            .vek
            .p384_public_key()
            .map_err(|source| ChainError::Cert { which, source })?;
        let extensions = self
            .vek
            .amd_extensions()
            .map_err(|source| ChainError::Cert { which, source })?;
        if let Some(name) = &extensions.product_name {
            if extensions.product() != Some(product) {
                return Err(ChainError::Product {
                    which,
                    found: name.clone(),
                    expected: product,
                });
            }
        }
        match (kind, &extensions.hw_id) {
            (VekKind::Vcek, None) => {
                return Err(ChainError::HwId {
                    which,
                    why: "no hwID extension",
                })
            }
            (VekKind::Vlek, Some(_)) => {
                return Err(ChainError::HwId {
                    which,
                    why: "a VLEK must not carry a hwID",
                })
            }
            _ => {}
        }
        Ok(VerifiedChain {
            product,
            kind,
            key,
            extensions,
            ark_sha256,
        })
    }
}

impl VerifiedChain {
    /// Checks that `report` was signed by this chain's key for this chip
    /// and TCB: the signer kind, the product (version 3 and later), CHIP_ID
    /// against hwID (VCEK), REPORTED_TCB against the SPL extensions, then
    /// the signature.
    pub fn verify_report(&self, report: &AttestationReport) -> Result<(), BindingError> {
        let which = self.kind.name();
        let signer_matches = matches!(
            (report.signing_key, self.kind),
            (ReportSigner::Vcek, VekKind::Vcek) | (ReportSigner::Vlek, VekKind::Vlek)
        );
        if !signer_matches {
            return Err(BindingError::Signer {
                report: report.signing_key.name(),
                chain: which,
            });
        }
        if let Some(p) = report.product() {
            if p != self.product {
                return Err(BindingError::Product {
                    report: p,
                    chain: self.product,
                });
            }
        }
        if let Some(hw_id) = &self.extensions.hw_id {
            let chip = report.chip_id.get(..hw_id.len()).unwrap_or(&[]);
            if chip != hw_id.as_slice() {
                return Err(BindingError::ChipId {
                    report: hex(chip),
                    vcek: hex(hw_id),
                });
            }
        }
        let tcb = report
            .reported_tcb(self.product)
            .map_err(BindingError::Tcb)?;
        let ext = &self.extensions;
        let mut spls = vec![
            ("bootloader", "blSPL", tcb.bootloader, ext.bl_spl),
            ("TEE", "teeSPL", tcb.tee, ext.tee_spl),
            ("SNP", "snpSPL", tcb.snp, ext.snp_spl),
            ("microcode", "ucodeSPL", tcb.microcode, ext.ucode_spl),
        ];
        if self.product.has_fmc() {
            spls.insert(0, ("FMC", "fmcSPL", tcb.fmc, ext.fmc_spl));
        }
        for (component, extension, report_svn, vek) in spls {
            if vek != Some(report_svn) {
                return Err(BindingError::Spl {
                    component,
                    extension,
                    which,
                    report: report_svn,
                    vek: vek.map_or_else(|| "none".to_owned(), |v| v.to_string()),
                });
            }
        }
        report
            .verify_signature(&self.key)
            .map_err(BindingError::Signature)
    }
}

#[cfg(test)]
mod tests;
