//! The per-run TLS certificate authority of `--emulated-kds`
//! (docs/guide/sev-emulate.md#kds): a CA labelled emulated, constrained to
//! the key server's host name, that signs one server certificate for
//! `kdsintf.amd.com` and is then forgotten (its key never leaves memory and
//! is dropped at once: nothing else can be signed under it, not even by
//! the launcher). Its profile: docs/protocol/choices.md#u95.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, KeyPair, KeyUsagePurpose, NameConstraints, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

use super::{KdsRouteError, KDS_HOST};

/// The CA's common name: what a user sees when a program shows the issuer.
pub const CA_NAME: &str = "sevm EMULATED key server TLS CA (per run, not AMD, not public)";
/// The organisation of both certificates.
const ORGANISATION: &str = "sevm emulated platform (not AMD)";
/// How long the certificates are valid: a run of the launcher (QEMU may
/// run for days), with an hour's slack for clocks.
const VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);
const SLACK: Duration = Duration::from_secs(3600);

/// The CA's certificate and the server's certificate and key.
pub struct Issued {
    /// The CA (PEM), what the program trusts.
    pub ca_pem: String,
    /// The server's certificate then the CA's (DER), as the front sends them.
    pub chain: Vec<CertificateDer<'static>>,
    /// The server's key (PKCS#8; the caller wipes it once loaded).
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

fn names(common: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANISATION);
    dn.push(DnType::CommonName, common);
    dn
}

fn err(what: &'static str) -> impl Fn(rcgen::Error) -> KdsRouteError {
    move |e| KdsRouteError::Tls(format!("{what}: {e}"))
}

/// Makes a fresh CA and the server certificate for [`KDS_HOST`] under it.
pub fn issue() -> Result<Issued, KdsRouteError> {
    let now = OffsetDateTime::now_utc();
    let (not_before, not_after) = (now - SLACK, now + VALIDITY);

    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err("the CA's key"))?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err("the CA"))?;
    ca.distinguished_name = names(CA_NAME);
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    // Even if the bundle leaks, the CA vouches for no other host.
    ca.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![GeneralSubtree::DnsName(KDS_HOST.into())],
        excluded_subtrees: Vec::new(),
    });
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_cert = ca.self_signed(&ca_key).map_err(err("signing the CA"))?;

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err("the server's key"))?;
    let mut leaf = CertificateParams::new(vec![KDS_HOST.to_string()]).map_err(err("the server"))?;
    leaf.distinguished_name = names(KDS_HOST);
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    leaf.not_before = not_before;
    leaf.not_after = not_after;
    let leaf_cert = leaf
        .signed_by(&key, &ca_cert, &ca_key)
        .map_err(err("signing the server's certificate"))?;
    // The CA's key is dropped here: nothing more is signed under it. (rcgen
    // frees its key pairs' encodings without wiping them; the keys serve
    // this run's emulated host name only.)
    drop(ca_key);
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok(Issued {
        ca_pem: ca_cert.pem(),
        chain: vec![leaf_cert.der().clone(), ca_cert.der().clone()],
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_labelled_emulated_and_the_server_names_the_key_server() {
        let issued = issue().unwrap();
        assert!(issued.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(issued.chain.len(), 2);
        let has = |der: &[u8], s: &str| der.windows(s.len()).any(|w| w == s.as_bytes());
        assert!(has(issued.chain[1].as_ref(), "EMULATED"));
        assert!(has(issued.chain[0].as_ref(), KDS_HOST));
        // Fresh per call.
        assert_ne!(issue().unwrap().chain[1], issued.chain[1]);
    }
}
