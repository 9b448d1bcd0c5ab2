//! The emulated AMD certificate issuer: what AMD's key distribution
//! service (KDS) serves for a chip, made by the emulated platform over its
//! own ARK and ASK (docs/protocol/snp.md#key-distribution-service,
//! docs/guide/kds.md).
//!
//! * the ARK (self-signed) and the ASK (signed by the ARK) as X.509 v3
//!   certificates over the same RSA keys as the plain-SEV AMD-format
//!   certificates of the platform identity (one ARK and ASK per product
//!   serve SEV and SNP, as on real parts);
//! * the VCEK of a chip for a TCB, signed by the ASK, with AMD's extensions;
//! * the ARK's certificate revocation list;
//! * the legacy SEV CEK, signed by the ASK in AMD's SEV format.
//!
//! Names, serial numbers, extensions and their order mirror AMD's
//! certificates (docs/protocol/snp.md#vcek-chain), so verifiers that check
//! exact names accept them; what tells the emulated root apart is its key,
//! which every tool names (docs/protocol/choices.md#u65). Signatures are
//! RSASSA-PSS with SHA-384 and a 48-byte salt derived from the key and the
//! signed bytes, so the same request gives the same bytes in every process
//! (docs/protocol/choices.md#u66).
//!
//! The private keys never leave this crate: [`crate::Platform::kds_object`]
//! is the only entry point.

mod x509;

pub(crate) use x509::{start_of_year, Issuer};

/// The media type of a KDS answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// One DER X.509 certificate (a VCEK).
    PkixCert,
    /// PEM certificates (a `cert_chain`).
    PemFile,
    /// A DER X.509 CRL.
    PkixCrl,
    /// Binary data (the legacy SEV CEK in AMD's format).
    OctetStream,
}

impl ContentType {
    /// The `Content-Type` header value.
    pub const fn mime(self) -> &'static str {
        match self {
            ContentType::PkixCert => "application/pkix-cert",
            ContentType::PemFile => "application/x-pem-file",
            ContentType::PkixCrl => "application/pkix-crl",
            ContentType::OctetStream => "application/octet-stream",
        }
    }
}

/// One object the key server answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdsObject {
    /// The object's bytes (DER, PEM or AMD's SEV format).
    pub bytes: Vec<u8>,
    /// Its media type.
    pub content_type: ContentType,
}

/// Why the issuer has no answer for a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KdsError {
    /// Nothing at this URL for this platform: another chip or product, a
    /// VLEK path (no VLEK on this platform), a TCB this chip cannot have.
    #[error("not found: {0}")]
    NotFound(String),
    /// The platform could not issue the object (its state is unusable).
    #[error("the issuer failed: {0}")]
    Failed(String),
}

#[cfg(test)]
mod tests;
