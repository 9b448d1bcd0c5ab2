//! The platform identity: generating it ([`generate`]), the key and
//! certificate operations of PLATFORM_RESET / PEK_GEN / PDH_GEN /
//! PEK_CERT_IMPORT on the stored record, and loading it into usable keys
//! ([`Identity`]).
//!
//! What the emulator makes (docs/protocol/certificates.md#usage-and-algorithms,
//! docs/protocol/certificates.md#chain-of-trust, docs/protocol/emulator.md):
//!
//! * ARK (self-signed) and ASK (signed by the ARK): RSA, AMD CA format, each
//!   with its own random KEY_ID; RSA-PSS with SHA-256 for 2048-bit keys and
//!   SHA-384 for 4096-bit keys;
//! * CEK: P-384 ECDSA_SHA256, SIG1 by the ASK (RSA_SHA256 / RSA_SHA384);
//! * OCA: P-384 ECDSA_SHA256, self-signed in SIG1 (self-owned platform);
//! * PEK: P-384 ECDSA_SHA256, SIG1 by the OCA, SIG2 by the CEK;
//! * PDH: P-384 ECDH_SHA256, SIG1 by the PEK;
//! * a 64-byte random chip id.
//!
//! Every SEV certificate carries the platform's API version, as the
//! firmware-made certificates of real platforms do.

use std::fmt;

use p384::ecdsa::SigningKey;
use p384::SecretKey;
use rand_core::CryptoRngCore;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::RsaPrivateKey;
use sev_proto::abi::ApiVersion;
use sev_proto::cert::sev::{self, Slot};
use sev_proto::cert::{ca, Algorithm, Usage};
use zeroize::Zeroizing;

use crate::store::record::{P384Scalar, CHIP_ID_LEN};
use crate::store::{PersistentIdentity, RsaKeyBytes};

/// Why an identity could not be generated or modified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// RSA key generation or an RSA signature failed.
    #[error("RSA operation failed: {0}")]
    Rsa(String),
    /// Making or signing a SEV certificate failed.
    #[error("certificate operation failed: {0}")]
    Cert(String),
    /// A stored key or certificate does not decode or does not match
    /// (the state is damaged).
    #[error("stored {what} is unusable: {reason}")]
    Damaged {
        /// Which item.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

fn cert_err(e: impl fmt::Display) -> IdentityError {
    IdentityError::Cert(e.to_string())
}

fn damaged(what: &'static str) -> impl Fn(String) -> IdentityError {
    move |reason| IdentityError::Damaged { what, reason }
}

/// A fresh P-384 key and its scalar bytes for the record.
fn new_ec_key(mut rng: &mut dyn CryptoRngCore) -> (SecretKey, P384Scalar) {
    let key = SecretKey::random(&mut rng);
    let mut scalar = Zeroizing::new([0u8; 48]);
    scalar.copy_from_slice(&key.to_bytes());
    (key, scalar)
}

fn rsa_bytes(key: &RsaPrivateKey) -> Result<RsaKeyBytes, IdentityError> {
    let [p, q] = key.primes() else {
        return Err(IdentityError::Rsa("key does not have two primes".into()));
    };
    Ok(RsaKeyBytes {
        n: key.n().to_bytes_be(),
        e: key.e().to_bytes_be(),
        d: Zeroizing::new(key.d().to_bytes_be()),
        p: Zeroizing::new(p.to_bytes_be()),
        q: Zeroizing::new(q.to_bytes_be()),
    })
}

fn rsa_sig_algorithm(bits: u32) -> Algorithm {
    match ca::hash_for_modulus_bits(bits) {
        sev_proto::cert::HashAlgorithm::Sha256 => Algorithm::RsaSha256,
        sev_proto::cert::HashAlgorithm::Sha384 => Algorithm::RsaSha384,
    }
}

/// Certificate for `key` with `usage`/`algorithm` and both slots empty.
fn ec_cert(
    api: ApiVersion,
    usage: Usage,
    algorithm: Algorithm,
    key: &SecretKey,
) -> Result<sev::Certificate, IdentityError> {
    sev::Certificate::new_ec(usage, algorithm, api.major, api.minor, &key.public_key())
        .map_err(cert_err)
}

fn signing(key: &SecretKey) -> SigningKey {
    SigningKey::from(key)
}

/// A self-signed OCA.
fn make_oca(api: ApiVersion, oca: &SecretKey) -> Result<sev::Certificate, IdentityError> {
    let mut cert = ec_cert(api, Usage::Oca, Algorithm::EcdsaSha256, oca)?;
    cert.sign(
        Slot::Sig1,
        Usage::Oca,
        &signing(oca),
        Algorithm::EcdsaSha256,
    )
    .map_err(cert_err)?;
    Ok(cert)
}

/// A PEK certificate signed by the OCA (SIG1) and the CEK (SIG2).
fn make_pek(
    api: ApiVersion,
    pek: &SecretKey,
    oca: &SecretKey,
    cek: &SecretKey,
) -> Result<sev::Certificate, IdentityError> {
    let mut cert = ec_cert(api, Usage::Pek, Algorithm::EcdsaSha256, pek)?;
    cert.sign(
        Slot::Sig1,
        Usage::Oca,
        &signing(oca),
        Algorithm::EcdsaSha256,
    )
    .map_err(cert_err)?;
    cert.sign(
        Slot::Sig2,
        Usage::Cek,
        &signing(cek),
        Algorithm::EcdsaSha256,
    )
    .map_err(cert_err)?;
    Ok(cert)
}

/// A PDH certificate signed by the PEK (SIG1).
fn make_pdh(
    api: ApiVersion,
    pdh: &SecretKey,
    pek: &SecretKey,
) -> Result<sev::Certificate, IdentityError> {
    let mut cert = ec_cert(api, Usage::Pdh, Algorithm::EcdhSha256, pdh)?;
    cert.sign(
        Slot::Sig1,
        Usage::Pek,
        &signing(pek),
        Algorithm::EcdsaSha256,
    )
    .map_err(cert_err)?;
    Ok(cert)
}

/// Generates a complete new identity. RSA key generation dominates (seconds
/// for 4096-bit roots).
pub(crate) fn generate(
    mut rng: &mut dyn CryptoRngCore,
    api: ApiVersion,
    build: u8,
    ark_bits: u32,
) -> Result<PersistentIdentity, IdentityError> {
    let bits = usize::try_from(ark_bits).map_err(|e| IdentityError::Rsa(e.to_string()))?;
    let rsa_err = |e: rsa::Error| IdentityError::Rsa(e.to_string());
    let ark_key = RsaPrivateKey::new(&mut rng, bits).map_err(rsa_err)?;
    let ask_key = RsaPrivateKey::new(&mut rng, bits).map_err(rsa_err)?;
    let ca_err = |e: ca::Error| IdentityError::Rsa(e.to_string());
    let ark = ca::Certificate::sign_new_ark(&mut rng, &ark_key).map_err(ca_err)?;
    let ask = ca::Certificate::sign_new_ask(&mut rng, &ask_key.to_public_key(), &ark, &ark_key)
        .map_err(ca_err)?;

    let (cek, cek_private) = new_ec_key(rng);
    let mut cek_cert = ec_cert(api, Usage::Cek, Algorithm::EcdsaSha256, &cek)?;
    cek_cert
        .sign_rsa(
            &mut rng,
            Slot::Sig1,
            Usage::Ask,
            &ask_key,
            rsa_sig_algorithm(ask.modulus_bits()),
        )
        .map_err(cert_err)?;

    let mut chip_id = [0u8; CHIP_ID_LEN];
    rng.fill_bytes(&mut chip_id);

    let mut id = PersistentIdentity {
        api_major: api.major,
        api_minor: api.minor,
        build,
        chip_id,
        cek_private,
        pek_private: Zeroizing::new([0; 48]),
        oca_private: None,
        pdh_private: Zeroizing::new([0; 48]),
        ark: rsa_bytes(&ark_key)?,
        ask: rsa_bytes(&ask_key)?,
        ark_cert: ark.encode(),
        ask_cert: ask.encode(),
        cek_cert: cek_cert.encode().to_vec(),
        oca_cert: Vec::new(),
        pek_cert: Vec::new(),
        pdh_cert: Vec::new(),
        externally_owned: false,
    };
    regenerate_owner_keys(rng, &mut id)?;
    Ok(id)
}

fn secret_key(what: &'static str, scalar: &[u8; 48]) -> Result<SecretKey, IdentityError> {
    SecretKey::from_slice(scalar).map_err(|e| damaged(what)(e.to_string()))
}

fn identity_api(id: &PersistentIdentity) -> ApiVersion {
    ApiVersion::new(id.api_major, id.api_minor)
}

/// PLATFORM_RESET and PEK_GEN: a new self-signed OCA, a new PEK signed by it
/// and the CEK, a new PDH; the platform becomes self-owned. The CEK (bound
/// to the chip) is kept.
pub(crate) fn regenerate_owner_keys(
    rng: &mut dyn CryptoRngCore,
    id: &mut PersistentIdentity,
) -> Result<(), IdentityError> {
    let api = identity_api(id);
    let cek = secret_key("CEK private key", &id.cek_private)?;
    let (oca, oca_private) = new_ec_key(rng);
    let (pek, pek_private) = new_ec_key(rng);
    let oca_cert = make_oca(api, &oca)?;
    let pek_cert = make_pek(api, &pek, &oca, &cek)?;
    id.oca_private = Some(oca_private);
    id.oca_cert = oca_cert.encode().to_vec();
    id.pek_private = pek_private;
    id.pek_cert = pek_cert.encode().to_vec();
    id.externally_owned = false;
    regenerate_pdh(rng, id)
}

/// PDH_GEN: a new PDH signed by the current PEK.
pub(crate) fn regenerate_pdh(
    rng: &mut dyn CryptoRngCore,
    id: &mut PersistentIdentity,
) -> Result<(), IdentityError> {
    let pek = secret_key("PEK private key", &id.pek_private)?;
    let (pdh, pdh_private) = new_ec_key(rng);
    let pdh_cert = make_pdh(identity_api(id), &pdh, &pek)?;
    id.pdh_private = pdh_private;
    id.pdh_cert = pdh_cert.encode().to_vec();
    Ok(())
}

/// The PEK certificate signing request: the current PEK certificate with
/// both signature slots empty (sev-tool `validate_pek_csr`).
pub(crate) fn pek_csr(pek_cert: &sev::Certificate) -> [u8; sev::CERT_LEN] {
    unsigned(pek_cert)
}

/// `cert` with both signature slots empty (a CSR; the CEK as real firmware
/// exports it).
pub(crate) fn unsigned(cert: &sev::Certificate) -> [u8; sev::CERT_LEN] {
    let mut bare = cert.clone();
    bare.clear_signature(Slot::Sig1);
    bare.clear_signature(Slot::Sig2);
    bare.encode()
}

const SIG1_OFFSET: usize = 0x414;
const SLOT_LEN: usize = 8 + 512;
const SIG2_OFFSET: usize = SIG1_OFFSET + SLOT_LEN;

/// PEK_CERT_IMPORT's result: the owner's OCA certificate and the PEK
/// certificate with the OCA's signature in SIG1 and the CEK's in SIG2.
pub(crate) fn import_signed_pek(
    id: &mut PersistentIdentity,
    signed_pek: &sev::Certificate,
    oca: &sev::Certificate,
) -> Result<(), IdentityError> {
    let cek = secret_key("CEK private key", &id.cek_private)?;
    // Normalise: the OCA's signature in SIG1 (wherever the owner put it),
    // the firmware's CEK signature in SIG2.
    let oca_slot = Slot::BOTH
        .into_iter()
        .find(|s| signed_pek.signature(*s).usage() == Usage::Oca)
        .ok_or_else(|| IdentityError::Cert("PEK carries no OCA signature".into()))?;
    let mut bytes = signed_pek.encode();
    if oca_slot == Slot::Sig2 {
        // Each slot is 4 + 4 + 512 bytes; SIG1 at 0x414, SIG2 right after.
        let (sig1, sig2) = bytes.split_at_mut(SIG2_OFFSET);
        if let (Some(dst), Some(src)) = (sig1.get_mut(SIG1_OFFSET..), sig2.get(..SLOT_LEN)) {
            dst.copy_from_slice(src);
        }
    }
    let mut pek = sev::Certificate::decode(&bytes).map_err(cert_err)?;
    pek.clear_signature(Slot::Sig2);
    pek.sign(
        Slot::Sig2,
        Usage::Cek,
        &signing(&cek),
        Algorithm::EcdsaSha256,
    )
    .map_err(cert_err)?;
    id.pek_cert = pek.encode().to_vec();
    id.oca_cert = oca.encode().to_vec();
    id.oca_private = None;
    id.externally_owned = true;
    Ok(())
}

/// The identity in usable form, as loaded from the state directory.
pub(crate) struct Identity {
    pub(crate) api: ApiVersion,
    pub(crate) build: u8,
    pub(crate) chip_id: [u8; CHIP_ID_LEN],
    pub(crate) externally_owned: bool,
    pub(crate) pek: SigningKey,
    pub(crate) pdh: SecretKey,
    pub(crate) pek_cert: sev::Certificate,
    pub(crate) pdh_cert_bytes: [u8; sev::CERT_LEN],
    pub(crate) pek_cert_bytes: [u8; sev::CERT_LEN],
    pub(crate) oca_cert_bytes: [u8; sev::CERT_LEN],
    pub(crate) cek_cert_bytes: [u8; sev::CERT_LEN],
    /// The CEK with both signature slots empty.
    pub(crate) cek_unsigned_bytes: [u8; sev::CERT_LEN],
    pub(crate) ark: ca::Certificate,
    pub(crate) ark_cert_bytes: Vec<u8>,
    pub(crate) ask_cert_bytes: Vec<u8>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("api", &self.api)
            .field("build", &self.build)
            .field("externally_owned", &self.externally_owned)
            .field("keys", &"<redacted>")
            .finish_non_exhaustive()
    }
}

fn sev_cert(
    what: &'static str,
    bytes: &[u8],
) -> Result<(sev::Certificate, [u8; sev::CERT_LEN]), IdentityError> {
    let cert = sev::Certificate::decode(bytes).map_err(|e| damaged(what)(e.to_string()))?;
    let raw: [u8; sev::CERT_LEN] = bytes
        .try_into()
        .map_err(|_| damaged(what)(format!("{} bytes", bytes.len())))?;
    Ok((cert, raw))
}

fn check_key_matches(
    what: &'static str,
    cert: &sev::Certificate,
    key: &SecretKey,
) -> Result<(), IdentityError> {
    let public = cert
        .ec_public_key()
        .map_err(|e| damaged(what)(e.to_string()))?;
    if *public != key.public_key() {
        return Err(damaged(what)(
            "private key does not match the certificate".into(),
        ));
    }
    Ok(())
}

impl Identity {
    /// Turns the stored record into keys and certificates, checking that
    /// every certificate decodes and that the PEK and PDH private keys match
    /// their certificates.
    pub(crate) fn load(id: &PersistentIdentity) -> Result<Self, IdentityError> {
        let pek_key = secret_key("PEK private key", &id.pek_private)?;
        let pdh = secret_key("PDH private key", &id.pdh_private)?;
        let (pek_cert, pek_cert_bytes) = sev_cert("PEK certificate", &id.pek_cert)?;
        let (pdh_cert, pdh_cert_bytes) = sev_cert("PDH certificate", &id.pdh_cert)?;
        let (_, oca_cert_bytes) = sev_cert("OCA certificate", &id.oca_cert)?;
        let (cek_cert, cek_cert_bytes) = sev_cert("CEK certificate", &id.cek_cert)?;
        let cek_unsigned_bytes = unsigned(&cek_cert);
        check_key_matches("PEK certificate", &pek_cert, &pek_key)?;
        check_key_matches("PDH certificate", &pdh_cert, &pdh)?;
        let ark = ca::Certificate::decode(&id.ark_cert)
            .map_err(|e| damaged("ARK certificate")(e.to_string()))?;
        ca::Certificate::decode(&id.ask_cert)
            .map_err(|e| damaged("ASK certificate")(e.to_string()))?;
        Ok(Identity {
            api: identity_api(id),
            build: id.build,
            chip_id: id.chip_id,
            externally_owned: id.externally_owned,
            pek: SigningKey::from(&pek_key),
            pdh,
            pek_cert,
            pdh_cert_bytes,
            pek_cert_bytes,
            oca_cert_bytes,
            cek_cert_bytes,
            cek_unsigned_bytes,
            ark,
            ark_cert_bytes: id.ark_cert.clone(),
            ask_cert_bytes: id.ask_cert.clone(),
        })
    }

    /// PEK ‖ OCA ‖ CEK.
    pub(crate) fn platform_chain(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 * sev::CERT_LEN);
        out.extend_from_slice(&self.pek_cert_bytes);
        out.extend_from_slice(&self.oca_cert_bytes);
        out.extend_from_slice(&self.cek_cert_bytes);
        out
    }
}
