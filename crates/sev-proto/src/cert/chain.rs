//! Certificate blobs and chain verification (docs/protocol/certificates.md#chain-of-trust).
//!
//! ```text
//! ARK (self-signed, RSA) ──▶ ASK (RSA) ──▶ CEK (ECDSA P-384)
//!                                             │
//! OCA (self-signed ECDSA) ──(SIG1)──▶ PEK ◀──(SIG2)
//!                                      │
//!                                      └──▶ PDH (ECDH P-384)
//! ```
//!
//! Verification is always to an ARK the caller pins (loaded from a trusted
//! file and checked with [`super::AmdGeneration::check_ark`], or the emulated
//! platform's own ARK): never to "whatever ARK is self-signed".
//!
//! Blobs:
//! * [`PlatformChain`]: PEK ‖ OCA ‖ CEK (0x186C bytes, PDH_CERT_EXPORT's
//!   CERT_CHAIN, SEND_START's PLAT_CERTS);
//! * [`CaChain`]: ASK ‖ ARK (SEND_START's AMD_CERTS);
//! * [`FullChain`]: PDH ‖ PEK ‖ OCA ‖ CEK ‖ ASK ‖ ARK (`sevctl export --full`).

use std::fmt;

use p384::ecdsa::VerifyingKey;
use subtle::ConstantTimeEq;

use super::sev::{self, CERT_LEN};
use super::{ca, Algorithm, KeyKind, Usage};

/// Length of a [`PlatformChain`] blob.
pub const PLATFORM_CHAIN_LEN: usize = 3 * CERT_LEN;

/// The position of a certificate in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Position {
    /// Platform Diffie-Hellman key.
    Pdh,
    /// Platform Endorsement Key.
    Pek,
    /// Owner Certificate Authority.
    Oca,
    /// Chip Endorsement Key.
    Cek,
    /// AMD SEV Signing Key.
    Ask,
    /// AMD Root Key.
    Ark,
}

impl Position {
    const fn usage(self) -> Usage {
        match self {
            Position::Pdh => Usage::Pdh,
            Position::Pek => Usage::Pek,
            Position::Oca => Usage::Oca,
            Position::Cek => Usage::Cek,
            Position::Ask => Usage::Ask,
            Position::Ark => Usage::Ark,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.usage().name())
    }
}

/// One step of [`FullChain::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    /// Usages, algorithm kinds and P-384 keys at every position.
    Positions,
    /// The ARK is byte-for-byte the pinned root.
    ArkPinned,
    /// The ASK names the ARK as issuer and the ARK's signature verifies.
    AskByArk,
    /// The ASK's RSA-PSS signature on the CEK verifies.
    CekByAsk,
    /// The OCA's self-signature verifies.
    OcaSelf,
    /// The OCA's signature on the PEK verifies.
    PekByOca,
    /// The CEK's signature on the PEK verifies.
    PekByCek,
    /// The PEK's signature on the PDH verifies.
    PdhByPek,
    /// The ARK's self-signature verifies.
    ArkSelf,
}

impl Check {
    /// Every check, in the order [`FullChain::verify`] runs them.
    pub const ALL: [Check; 9] = [
        Check::Positions,
        Check::ArkPinned,
        Check::AskByArk,
        Check::CekByAsk,
        Check::OcaSelf,
        Check::PekByOca,
        Check::PekByCek,
        Check::PdhByPek,
        Check::ArkSelf,
    ];

    /// The certificates this check reads (a check's result can only change
    /// when one of them changes).
    pub fn reads(self) -> &'static [Position] {
        use Position::*;
        match self {
            Check::Positions => &[Pdh, Pek, Oca, Cek, Ask, Ark],
            Check::ArkPinned | Check::ArkSelf => &[Ark],
            Check::AskByArk => &[Ask, Ark],
            Check::CekByAsk => &[Cek, Ask],
            Check::OcaSelf => &[Oca],
            Check::PekByOca => &[Pek, Oca],
            Check::PekByCek => &[Pek, Cek],
            Check::PdhByPek => &[Pdh, Pek],
        }
    }
}

/// Why a blob does not decode or a chain does not verify. Each check has
/// its own variant naming the certificate.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A blob has the wrong length.
    #[error("{what} is {actual} bytes, expected {expected}")]
    Length {
        /// Which blob.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Given length.
        actual: usize,
    },
    /// A SEV certificate in the blob does not decode.
    #[error("{cert} certificate does not decode")]
    DecodeSev {
        /// Which certificate.
        cert: Position,
        /// Why.
        #[source]
        source: sev::Error,
    },
    /// An AMD certificate in the blob does not decode.
    #[error("{cert} certificate does not decode")]
    DecodeCa {
        /// Which certificate.
        cert: Position,
        /// Why.
        #[source]
        source: ca::Error,
    },
    /// A certificate has the wrong usage for its position.
    #[error("{cert} position holds a certificate with usage {found}")]
    WrongUsage {
        /// Which position.
        cert: Position,
        /// Usage found.
        found: Usage,
    },
    /// A certificate has the wrong kind of algorithm for its position.
    #[error("{cert} certificate has algorithm {found}, expected {expected}")]
    WrongAlgorithm {
        /// Which certificate.
        cert: Position,
        /// Expected family.
        expected: &'static str,
        /// Found algorithm.
        found: Algorithm,
    },
    /// A certificate's key is not a P-384 key.
    #[error("{cert} certificate key is not usable")]
    Key {
        /// Which certificate.
        cert: Position,
        /// Why.
        #[source]
        source: sev::Error,
    },
    /// The ARK is not the pinned root.
    #[error("ARK is not the pinned root certificate")]
    ArkNotPinned,
    /// The ARK's self-signature does not verify.
    #[error("ARK self-signature does not verify")]
    ArkSelfSignature(#[source] ca::Error),
    /// The ASK does not name the ARK as its issuer.
    #[error("ASK certifying id {ask_certifying_id} is not the ARK key id {ark_key_id}")]
    AskIssuer {
        /// CERTIFYING_ID of the ASK (hex).
        ask_certifying_id: String,
        /// KEY_ID of the ARK (hex).
        ark_key_id: String,
    },
    /// The ASK is not signed by the ARK.
    #[error("ASK is not signed by the ARK")]
    AskSignature(#[source] ca::Error),
    /// The CEK is not signed by the ASK.
    #[error("CEK is not signed by the ASK")]
    CekSignature(#[source] sev::Error),
    /// The OCA's self-signature does not verify.
    #[error("OCA is not self-signed")]
    OcaSignature(#[source] sev::Error),
    /// The PEK is not signed by the OCA.
    #[error("PEK is not signed by the OCA")]
    PekByOca(#[source] sev::Error),
    /// The PEK is not signed by the CEK.
    #[error("PEK is not signed by the CEK")]
    PekByCek(#[source] sev::Error),
    /// The PDH is not signed by the PEK.
    #[error("PDH is not signed by the PEK")]
    PdhByPek(#[source] sev::Error),
}

fn hex16(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_sev(cert: Position, bytes: &[u8]) -> Result<sev::Certificate, Error> {
    sev::Certificate::decode(bytes).map_err(|source| Error::DecodeSev { cert, source })
}

fn decode_ca(cert: Position, bytes: &[u8]) -> Result<ca::Certificate, Error> {
    ca::Certificate::decode(bytes).map_err(|source| Error::DecodeCa { cert, source })
}

/// Splits `bytes` into fixed 0x824-byte certificates.
fn split_sev<'a, const N: usize>(
    what: &'static str,
    bytes: &'a [u8],
) -> Result<[&'a [u8]; N], Error> {
    if bytes.len() != N * CERT_LEN {
        return Err(Error::Length {
            what,
            expected: N * CERT_LEN,
            actual: bytes.len(),
        });
    }
    Ok(std::array::from_fn(|i| {
        &bytes[i * CERT_LEN..(i + 1) * CERT_LEN]
    }))
}

/// PEK ‖ OCA ‖ CEK, as exported by PDH_CERT_EXPORT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformChain {
    /// Platform Endorsement Key certificate.
    pub pek: sev::Certificate,
    /// Owner CA certificate.
    pub oca: sev::Certificate,
    /// Chip Endorsement Key certificate.
    pub cek: sev::Certificate,
}

impl PlatformChain {
    /// Decodes the 0x186C-byte blob.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let [pek, oca, cek] = split_sev::<3>("platform chain (PEK, OCA, CEK)", bytes)?;
        Ok(PlatformChain {
            pek: decode_sev(Position::Pek, pek)?,
            oca: decode_sev(Position::Oca, oca)?,
            cek: decode_sev(Position::Cek, cek)?,
        })
    }

    /// Encodes the blob.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PLATFORM_CHAIN_LEN);
        for c in [&self.pek, &self.oca, &self.cek] {
            out.extend_from_slice(&c.encode());
        }
        out
    }
}

/// ASK ‖ ARK, in AMD CA format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaChain {
    /// AMD SEV Signing Key.
    pub ask: ca::Certificate,
    /// AMD Root Key.
    pub ark: ca::Certificate,
}

impl CaChain {
    /// Decodes ASK ‖ ARK (each 832 or 1600 bytes; sizes from the headers).
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let ask_len = ca::Certificate::encoded_len(bytes).map_err(|source| Error::DecodeCa {
            cert: Position::Ask,
            source,
        })?;
        let (ask, ark) = bytes.split_at_checked(ask_len).ok_or(Error::Length {
            what: "CA chain (ASK, ARK)",
            expected: ask_len + ca::HEADER_LEN,
            actual: bytes.len(),
        })?;
        Ok(CaChain {
            ask: decode_ca(Position::Ask, ask)?,
            ark: decode_ca(Position::Ark, ark)?,
        })
    }

    /// Encodes ASK ‖ ARK.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.ask.encode();
        out.extend_from_slice(&self.ark.encode());
        out
    }

    /// Verifies the AMD part to a pinned ARK: positions and usages, ARK equal
    /// to the pin (constant time), ASK issued by and signed by the ARK, ARK
    /// self-signed.
    pub fn verify(&self, pinned_ark: &ca::Certificate) -> Result<(), Error> {
        check_ca_structure(&self.ask, &self.ark)?;
        check_pinned(&self.ark, pinned_ark)?;
        check_ask_by_ark(&self.ask, &self.ark)?;
        check_ark_self(&self.ark)
    }
}

fn check_ca_structure(ask: &ca::Certificate, ark: &ca::Certificate) -> Result<(), Error> {
    for (cert, found) in [(Position::Ask, ask.usage()), (Position::Ark, ark.usage())] {
        if found != cert.usage() {
            return Err(Error::WrongUsage { cert, found });
        }
    }
    Ok(())
}

fn check_pinned(ark: &ca::Certificate, pinned_ark: &ca::Certificate) -> Result<(), Error> {
    let pinned: bool = ark.encode().ct_eq(&pinned_ark.encode()).into();
    if pinned {
        Ok(())
    } else {
        Err(Error::ArkNotPinned)
    }
}

fn check_ask_by_ark(ask: &ca::Certificate, ark: &ca::Certificate) -> Result<(), Error> {
    if ask.certifying_id() != ark.key_id() {
        return Err(Error::AskIssuer {
            ask_certifying_id: hex16(ask.certifying_id()),
            ark_key_id: hex16(ark.key_id()),
        });
    }
    ask.verify_signed_by(ark).map_err(Error::AskSignature)
}

fn check_ark_self(ark: &ca::Certificate) -> Result<(), Error> {
    ark.verify_signed_by(ark).map_err(Error::ArkSelfSignature)
}

/// PDH ‖ PEK ‖ OCA ‖ CEK ‖ ASK ‖ ARK (`sevctl export --full`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullChain {
    /// Platform Diffie-Hellman key certificate.
    pub pdh: sev::Certificate,
    /// Platform Endorsement Key certificate.
    pub pek: sev::Certificate,
    /// Owner CA certificate.
    pub oca: sev::Certificate,
    /// Chip Endorsement Key certificate.
    pub cek: sev::Certificate,
    /// AMD SEV Signing Key.
    pub ask: ca::Certificate,
    /// AMD Root Key.
    pub ark: ca::Certificate,
}

/// How much of the chain a [`VerifiedChain`] was verified to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// PDH ← PEK ← {OCA, CEK ← ASK ← pinned ARK}.
    Full,
    /// PDH ← PEK ← {OCA, CEK}, without the AMD part.
    Platform,
    /// PDH ← PEK ← OCA only (the owner's domain).
    Owner,
}

/// The result of a successful verification: the keys it vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedChain {
    pdh: p384::PublicKey,
    pek: VerifyingKey,
    pdh_api: (u8, u8),
    scope: Scope,
}

impl VerifiedChain {
    /// The PDH public key (for ECDH with the platform).
    pub fn pdh_public_key(&self) -> &p384::PublicKey {
        &self.pdh
    }

    /// The PEK's ECDSA key (verifies attestation reports).
    pub fn pek_verifying_key(&self) -> &VerifyingKey {
        &self.pek
    }

    /// API_MAJOR / API_MINOR recorded in the PDH certificate.
    pub fn pdh_api_version(&self) -> (u8, u8) {
        self.pdh_api
    }

    /// What was verified.
    pub fn scope(&self) -> Scope {
        self.scope
    }
}

fn check_sev_position(cert: Position, c: &sev::Certificate, kind: KeyKind) -> Result<(), Error> {
    if c.usage() != cert.usage() {
        return Err(Error::WrongUsage {
            cert,
            found: c.usage(),
        });
    }
    if c.algorithm().kind() != kind {
        return Err(Error::WrongAlgorithm {
            cert,
            expected: match kind {
                KeyKind::Ecdh => "ECDH_SHA256 or ECDH_SHA384",
                _ => "ECDSA_SHA256 or ECDSA_SHA384",
            },
            found: c.algorithm(),
        });
    }
    c.ec_public_key()
        .map(|_| ())
        .map_err(|source| Error::Key { cert, source })
}

/// Position checks for PDH, PEK, OCA: usages, ECDH for the PDH, ECDSA for the
/// others, P-384 keys.
fn check_owner_structure(
    pdh: &sev::Certificate,
    pek: &sev::Certificate,
    oca: &sev::Certificate,
) -> Result<(), Error> {
    check_sev_position(Position::Pdh, pdh, KeyKind::Ecdh)?;
    check_sev_position(Position::Pek, pek, KeyKind::Ecdsa)?;
    check_sev_position(Position::Oca, oca, KeyKind::Ecdsa)
}

fn verified(
    pdh: &sev::Certificate,
    pek: &sev::Certificate,
    scope: Scope,
) -> Result<VerifiedChain, Error> {
    Ok(VerifiedChain {
        pdh: *pdh.ec_public_key().map_err(|source| Error::Key {
            cert: Position::Pdh,
            source,
        })?,
        pek: pek.verifying_key().map_err(|source| Error::Key {
            cert: Position::Pek,
            source,
        })?,
        pdh_api: pdh.api_version(),
        scope,
    })
}

/// Verifies PDH ← PEK ← OCA (OCA self-signed, PEK signed by the OCA, PDH by
/// the PEK) without the CEK or the AMD roots: the check for the DOMAIN policy
/// (same owner), where the caller also compares the OCA with its own.
pub fn verify_owner_chain(
    pdh: &sev::Certificate,
    pek: &sev::Certificate,
    oca: &sev::Certificate,
) -> Result<VerifiedChain, Error> {
    check_owner_structure(pdh, pek, oca)?;
    oca.verify_signed_by_sev(oca).map_err(Error::OcaSignature)?;
    pek.verify_signed_by_sev(oca).map_err(Error::PekByOca)?;
    pdh.verify_signed_by_sev(pek).map_err(Error::PdhByPek)?;
    verified(pdh, pek, Scope::Owner)
}

/// Verifies PDH ← PEK ← {OCA, CEK}: the platform's own part, without the
/// CEK's certification by AMD (firmware SEND_START without the SEV policy
/// bit).
pub fn verify_platform_part(
    pdh: &sev::Certificate,
    platform: &PlatformChain,
) -> Result<VerifiedChain, Error> {
    check_owner_structure(pdh, &platform.pek, &platform.oca)?;
    check_sev_position(Position::Cek, &platform.cek, KeyKind::Ecdsa)?;
    verify_platform_signatures(pdh, &platform.pek, &platform.oca, &platform.cek)?;
    verified(pdh, &platform.pek, Scope::Platform)
}

fn verify_platform_signatures(
    pdh: &sev::Certificate,
    pek: &sev::Certificate,
    oca: &sev::Certificate,
    cek: &sev::Certificate,
) -> Result<(), Error> {
    oca.verify_signed_by_sev(oca).map_err(Error::OcaSignature)?;
    pek.verify_signed_by_sev(oca).map_err(Error::PekByOca)?;
    pek.verify_signed_by_sev(cek).map_err(Error::PekByCek)?;
    pdh.verify_signed_by_sev(pek).map_err(Error::PdhByPek)
}

impl FullChain {
    /// Assembles a full chain from a PDH and the two exported blobs.
    pub fn from_parts(pdh: sev::Certificate, platform: PlatformChain, ca: CaChain) -> Self {
        FullChain {
            pdh,
            pek: platform.pek,
            oca: platform.oca,
            cek: platform.cek,
            ask: ca.ask,
            ark: ca.ark,
        }
    }

    /// The PEK ‖ OCA ‖ CEK part.
    pub fn platform(&self) -> PlatformChain {
        PlatformChain {
            pek: self.pek.clone(),
            oca: self.oca.clone(),
            cek: self.cek.clone(),
        }
    }

    /// The ASK ‖ ARK part.
    pub fn ca(&self) -> CaChain {
        CaChain {
            ask: self.ask.clone(),
            ark: self.ark.clone(),
        }
    }

    /// Decodes PDH ‖ PEK ‖ OCA ‖ CEK ‖ ASK ‖ ARK; the AMD certificates may be
    /// 832 or 1600 bytes each (sizes from their headers, total length exact).
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let (sev_part, ca_part) = bytes.split_at_checked(4 * CERT_LEN).ok_or(Error::Length {
            what: "full chain",
            expected: 4 * CERT_LEN + 2 * ca::LEN_2048,
            actual: bytes.len(),
        })?;
        let [pdh, pek, oca, cek] = split_sev::<4>("full chain SEV part", sev_part)?;
        let ca = CaChain::decode(ca_part)?;
        Ok(FullChain {
            pdh: decode_sev(Position::Pdh, pdh)?,
            pek: decode_sev(Position::Pek, pek)?,
            oca: decode_sev(Position::Oca, oca)?,
            cek: decode_sev(Position::Cek, cek)?,
            ask: ca.ask,
            ark: ca.ark,
        })
    }

    /// Encodes PDH ‖ PEK ‖ OCA ‖ CEK ‖ ASK ‖ ARK.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for c in [&self.pdh, &self.pek, &self.oca, &self.cek] {
            out.extend_from_slice(&c.encode());
        }
        out.extend_from_slice(&self.ask.encode());
        out.extend_from_slice(&self.ark.encode());
        out
    }

    /// Verifies the whole chain to `pinned_ark`, running every [`Check`] in
    /// [`Check::ALL`] order:
    ///
    /// * positions: usages PDH/PEK/OCA/CEK/ASK/ARK, the PDH an ECDH key and
    ///   PEK/OCA/CEK ECDSA keys, all P-384;
    /// * the ARK equals the pinned root (constant-time comparison of the
    ///   encodings) and is self-signed;
    /// * the ASK's CERTIFYING_ID is the ARK's KEY_ID and the ARK signed it;
    /// * the ASK signed the CEK; the OCA signed itself; the OCA and the CEK
    ///   both signed the PEK; the PEK signed the PDH.
    ///
    /// Checks run cheapest first (the ARK's self-signature last: the pinned
    /// ARK was checked when it was pinned); the order only decides which error
    /// is reported when several checks would fail.
    pub fn verify(&self, pinned_ark: &ca::Certificate) -> Result<VerifiedChain, Error> {
        for check in Check::ALL {
            self.check(check, pinned_ark)?;
        }
        verified(&self.pdh, &self.pek, Scope::Full)
    }

    /// Runs one step of [`FullChain::verify`] (useful to report every failing
    /// step rather than the first).
    pub fn check(&self, check: Check, pinned_ark: &ca::Certificate) -> Result<(), Error> {
        match check {
            Check::Positions => {
                check_ca_structure(&self.ask, &self.ark)?;
                check_owner_structure(&self.pdh, &self.pek, &self.oca)?;
                check_sev_position(Position::Cek, &self.cek, KeyKind::Ecdsa)
            }
            Check::ArkPinned => check_pinned(&self.ark, pinned_ark),
            Check::AskByArk => check_ask_by_ark(&self.ask, &self.ark),
            Check::CekByAsk => self
                .cek
                .verify_signed_by_ca(&self.ask)
                .map_err(Error::CekSignature),
            Check::OcaSelf => self
                .oca
                .verify_signed_by_sev(&self.oca)
                .map_err(Error::OcaSignature),
            Check::PekByOca => self
                .pek
                .verify_signed_by_sev(&self.oca)
                .map_err(Error::PekByOca),
            Check::PekByCek => self
                .pek
                .verify_signed_by_sev(&self.cek)
                .map_err(Error::PekByCek),
            Check::PdhByPek => self
                .pdh
                .verify_signed_by_sev(&self.pek)
                .map_err(Error::PdhByPek),
            Check::ArkSelf => check_ark_self(&self.ark),
        }
    }

    /// [`verify_owner_chain`] on this chain's PDH, PEK and OCA.
    pub fn verify_owner_chain(&self) -> Result<VerifiedChain, Error> {
        verify_owner_chain(&self.pdh, &self.pek, &self.oca)
    }

    /// [`verify_platform_part`] on this chain's PDH, PEK, OCA and CEK.
    pub fn verify_platform_part(&self) -> Result<VerifiedChain, Error> {
        check_owner_structure(&self.pdh, &self.pek, &self.oca)?;
        check_sev_position(Position::Cek, &self.cek, KeyKind::Ecdsa)?;
        verify_platform_signatures(&self.pdh, &self.pek, &self.oca, &self.cek)?;
        verified(&self.pdh, &self.pek, Scope::Platform)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::sev::Slot;
    use crate::cert::testutil::{ec_key, fixtures, rng, rsa_keys};
    use crate::cert::AmdGeneration;
    use p384::ecdsa::SigningKey;
    use Position::*;

    /// PDH, PEK, OCA, CEK, ASK, ARK of a fixture platform.
    fn chain_files(test: &str, gen: &str) -> Option<[Vec<u8>; 6]> {
        let names = [
            format!("certs/{gen}/pdh.cert"),
            format!("certs/{gen}/pek.cert"),
            format!("certs/{gen}/oca.cert"),
            format!("certs/{gen}/cek.cert"),
            format!("amd-roots/{gen}-ask.cert"),
            format!("amd-roots/{gen}-ark.cert"),
        ];
        fixtures(test, names.each_ref().map(String::as_str))
    }

    const POSITIONS: [Position; 6] = [Pdh, Pek, Oca, Cek, Ask, Ark];

    /// Replaces the certificate at `pos` with a decoding of `bytes`; false if
    /// it does not decode.
    fn substitute(chain: &mut FullChain, pos: Position, bytes: &[u8]) -> bool {
        let sev = |slot: &mut sev::Certificate| {
            sev::Certificate::decode(bytes).map(|c| *slot = c).is_ok()
        };
        match pos {
            Pdh => sev(&mut chain.pdh),
            Pek => sev(&mut chain.pek),
            Oca => sev(&mut chain.oca),
            Cek => sev(&mut chain.cek),
            Ask => ca::Certificate::decode(bytes)
                .map(|c| chain.ask = c)
                .is_ok(),
            Ark => ca::Certificate::decode(bytes)
                .map(|c| chain.ark = c)
                .is_ok(),
        }
    }

    #[test]
    fn fixture_chains_verify_to_pinned_ark() {
        // docs/protocol/test-vectors.md#chain-checks.
        for (name, gen) in [
            ("naples", AmdGeneration::Naples),
            ("rome", AmdGeneration::Rome),
        ] {
            let Some(files) = chain_files("chain::fixture_chains_verify_to_pinned_ark", name)
            else {
                return;
            };
            let blob = files.concat();
            let chain = FullChain::decode(&blob).unwrap();
            assert_eq!(chain.encode(), blob, "{name}");
            gen.check_ark(&chain.ark).unwrap();
            let pinned = ca::Certificate::decode(&files[5]).unwrap();
            let v = chain.verify(&pinned).unwrap();
            assert_eq!(v.scope(), Scope::Full);
            assert_eq!(v.pdh_public_key(), chain.pdh.ec_public_key().unwrap());
            assert_eq!(*v.pek_verifying_key(), chain.pek.verifying_key().unwrap());
            assert_eq!(v.pdh_api_version(), chain.pdh.api_version());
            for check in Check::ALL {
                chain.check(check, &pinned).unwrap();
            }
            assert_eq!(
                chain.verify_platform_part().unwrap().scope(),
                Scope::Platform
            );
            assert_eq!(chain.verify_owner_chain().unwrap().scope(), Scope::Owner);

            // The blobs: PEK‖OCA‖CEK and ASK‖ARK.
            let plat_blob = files[1..4].concat();
            let plat = PlatformChain::decode(&plat_blob).unwrap();
            assert_eq!(plat.encode(), plat_blob);
            assert_eq!(plat_blob.len(), PLATFORM_CHAIN_LEN);
            let ca_blob = files[4..].concat();
            let ca_chain = CaChain::decode(&ca_blob).unwrap();
            assert_eq!(ca_chain.encode(), ca_blob);
            ca_chain.verify(&pinned).unwrap();
            let assembled = FullChain::from_parts(chain.pdh.clone(), plat, ca_chain);
            assert_eq!(assembled, chain);
            assert_eq!(
                assembled.platform(),
                PlatformChain::decode(&plat_blob).unwrap()
            );
            assert_eq!(assembled.ca(), CaChain::decode(&ca_blob).unwrap());
            assert_eq!(
                verify_platform_part(&chain.pdh, &chain.platform())
                    .unwrap()
                    .scope(),
                Scope::Platform
            );

            // Negative checks of 11.7 at chain level: PDH and PEK swapped,
            // PEK in the OCA position, PEK in the CEK position.
            let mut swapped = chain.clone();
            std::mem::swap(&mut swapped.pdh, &mut swapped.pek);
            assert_eq!(
                swapped.verify(&pinned),
                Err(Error::WrongUsage {
                    cert: Pdh,
                    found: Usage::Pek
                })
            );
            let mut pek_as_oca = chain.clone();
            pek_as_oca.oca = chain.pek.clone();
            assert!(matches!(
                pek_as_oca.verify(&pinned),
                Err(Error::WrongUsage { cert: Oca, .. })
            ));
            let mut pek_as_cek = chain.clone();
            pek_as_cek.cek = chain.pek.clone();
            assert!(matches!(
                pek_as_cek.verify(&pinned),
                Err(Error::WrongUsage { cert: Cek, .. })
            ));
        }
    }

    #[test]
    fn rome_chain_with_naples_ark_fails() {
        let (Some(rome), Some(naples)) = (
            chain_files("chain::rome_chain_with_naples_ark_fails", "rome"),
            chain_files("chain::rome_chain_with_naples_ark_fails", "naples"),
        ) else {
            return;
        };
        let rome = FullChain::decode(&rome.concat()).unwrap();
        let naples = FullChain::decode(&naples.concat()).unwrap();
        let mut mixed = rome.clone();
        mixed.ark = naples.ark.clone();
        // Pinned to Rome: the ARK is not the pinned one.
        assert_eq!(mixed.verify(&rome.ark), Err(Error::ArkNotPinned));
        // Pinned to Naples: the Rome ASK was not issued by the Naples ARK.
        assert!(matches!(
            mixed.verify(&naples.ark),
            Err(Error::AskIssuer { .. })
        ));
        // Both AMD certificates from Naples: the Rome CEK is not signed by them.
        mixed.ask = naples.ask.clone();
        assert!(matches!(
            mixed.verify(&naples.ark),
            Err(Error::CekSignature(_))
        ));
        // Naples platform with the Rome CEK: PEK not signed by that CEK.
        let mut other_cek = naples.clone();
        other_cek.cek = rome.cek.clone();
        assert!(matches!(
            other_cek.verify(&naples.ark),
            Err(Error::CekSignature(_))
        ));
        assert!(matches!(
            other_cek.verify_platform_part(),
            Err(Error::PekByCek(_))
        ));
        // ... but the owner part (no CEK) still verifies.
        other_cek.verify_owner_chain().unwrap();
        // Mixed-size CA blob decodes (sizes come from the headers).
        let mut blob = naples.ask.encode();
        blob.extend_from_slice(&rome.ark.encode());
        let ca_chain = CaChain::decode(&blob).unwrap();
        assert!(matches!(
            ca_chain.verify(&rome.ark),
            Err(Error::AskIssuer { .. })
        ));
    }

    #[test]
    fn later_generation_roots_verify() {
        // docs/protocol/test-vectors.md#chain-checks: Milan/Genoa/Turin ARK self + ASK by ARK.
        for gen in [
            AmdGeneration::Milan,
            AmdGeneration::Genoa,
            AmdGeneration::Turin,
        ] {
            let ask = format!("amd-roots/{gen}-ask.cert");
            let ark = format!("amd-roots/{gen}-ark.cert");
            let Some([ask, ark]) = fixtures(
                "chain::later_generation_roots_verify",
                [ask.as_str(), ark.as_str()],
            ) else {
                return;
            };
            let blob = [ask, ark.clone()].concat();
            let chain = CaChain::decode(&blob).unwrap();
            let pinned = ca::Certificate::decode(&ark).unwrap();
            gen.check_ark(&pinned).unwrap();
            chain.verify(&pinned).unwrap();
        }
    }

    #[test]
    fn blob_decoding_errors() {
        let Some(files) = chain_files("chain::blob_decoding_errors", "naples") else {
            return;
        };
        let plat = files[1..4].concat();
        assert!(matches!(
            PlatformChain::decode(&plat[1..]),
            Err(Error::Length { .. })
        ));
        let mut bad_oca = plat.clone();
        bad_oca[CERT_LEN] = 2; // OCA version
        assert!(matches!(
            PlatformChain::decode(&bad_oca),
            Err(Error::DecodeSev { cert: Oca, .. })
        ));
        let full = files.concat();
        assert!(matches!(
            FullChain::decode(&full[..full.len() - 1]),
            Err(Error::DecodeCa { cert: Ark, .. })
        ));
        let mut long = full.clone();
        long.push(0);
        assert!(matches!(
            FullChain::decode(&long),
            Err(Error::DecodeCa { cert: Ark, .. })
        ));
        assert!(matches!(
            FullChain::decode(&full[..100]),
            Err(Error::Length { .. })
        ));
        assert!(matches!(
            FullChain::decode(&full[..4 * CERT_LEN + 10]),
            Err(Error::DecodeCa { cert: Ask, .. })
        ));
        let mut bad_pdh = full.clone();
        bad_pdh[8] = 0x99;
        assert!(matches!(
            FullChain::decode(&bad_pdh),
            Err(Error::DecodeSev { cert: Pdh, .. })
        ));
        assert!(matches!(
            CaChain::decode(&files[4][..ca::LEN_2048]),
            Err(Error::DecodeCa { cert: Ark, .. })
        ));
        assert!(matches!(
            CaChain::decode(&files[4][..ca::LEN_2048 - 1]),
            Err(Error::Length { .. })
        ));
    }

    /// A complete self-made chain (2048-bit AMD part) and its private keys.
    struct Made {
        chain: FullChain,
        oca: SigningKey,
        pek: SigningKey,
        cek: SigningKey,
    }

    fn pub_of(k: &SigningKey) -> p384::PublicKey {
        p384::PublicKey::from(k.verifying_key())
    }

    fn made_chain() -> Made {
        let [ark_key, ask_key] = rsa_keys();
        let mut r = rng(50);
        let ark = ca::Certificate::sign_new_ark(&mut r, ark_key).unwrap();
        let ask =
            ca::Certificate::sign_new_ask(&mut r, &ask_key.to_public_key(), &ark, ark_key).unwrap();
        let (cek_k, oca_k, pek_k, pdh_k) = (ec_key(51), ec_key(52), ec_key(53), ec_key(54));
        let algo = Algorithm::EcdsaSha256;
        let mut cek = sev::Certificate::new_ec(Usage::Cek, algo, 0, 24, &pub_of(&cek_k)).unwrap();
        cek.sign_rsa(
            &mut r,
            Slot::Sig1,
            Usage::Ask,
            ask_key,
            Algorithm::RsaSha256,
        )
        .unwrap();
        let mut oca = sev::Certificate::new_ec(Usage::Oca, algo, 0, 24, &pub_of(&oca_k)).unwrap();
        oca.sign(Slot::Sig1, Usage::Oca, &oca_k, algo).unwrap();
        let mut pek = sev::Certificate::new_ec(Usage::Pek, algo, 0, 24, &pub_of(&pek_k)).unwrap();
        pek.sign(Slot::Sig1, Usage::Oca, &oca_k, algo).unwrap();
        pek.sign(Slot::Sig2, Usage::Cek, &cek_k, algo).unwrap();
        let mut pdh =
            sev::Certificate::new_ec(Usage::Pdh, Algorithm::EcdhSha256, 0, 24, &pub_of(&pdh_k))
                .unwrap();
        pdh.sign(Slot::Sig1, Usage::Pek, &pek_k, algo).unwrap();
        Made {
            chain: FullChain {
                pdh,
                pek,
                oca,
                cek,
                ask,
                ark,
            },
            oca: oca_k,
            pek: pek_k,
            cek: cek_k,
        }
    }

    #[test]
    fn self_made_chain_and_each_check_reports_its_own_error() {
        let m = made_chain();
        let c = &m.chain;
        let pinned = c.ark.clone();
        let v = c.verify(&pinned).unwrap();
        assert_eq!(v.pdh_public_key(), c.pdh.ec_public_key().unwrap());
        assert_eq!(v.pdh_api_version(), (0, 24));
        let round = FullChain::decode(&c.encode()).unwrap();
        assert_eq!(&round, c);
        let algo = Algorithm::EcdsaSha256;
        let [ark_key, ask_key] = rsa_keys();
        let mut r = rng(60);

        // ArkNotPinned: pinned to another root.
        let other_root = ca::Certificate::sign_new_ark(&mut r, ask_key).unwrap();
        assert_eq!(c.verify(&other_root), Err(Error::ArkNotPinned));

        // ArkSelf: an ARK (pinned as is) whose self-signature is broken.
        let mut ark_bytes = c.ark.encode();
        let last = ark_bytes.len() - 10;
        ark_bytes[last] ^= 1;
        let mut t = c.clone();
        t.ark = ca::Certificate::decode(&ark_bytes).unwrap();
        assert!(matches!(
            t.verify(&t.ark.clone()),
            Err(Error::ArkSelfSignature(_))
        ));

        // AskIssuer: an ASK issued by another ARK.
        let mut t = c.clone();
        t.ask =
            ca::Certificate::sign_new_ask(&mut r, &ask_key.to_public_key(), &other_root, ask_key)
                .unwrap();
        assert!(matches!(t.verify(&pinned), Err(Error::AskIssuer { .. })));

        // AskSignature: the right issuer id, a broken signature.
        let mut ask_bytes = c.ask.encode();
        let last = ask_bytes.len() - 10;
        ask_bytes[last] ^= 0x10;
        let mut t = c.clone();
        t.ask = ca::Certificate::decode(&ask_bytes).unwrap();
        assert!(matches!(t.verify(&pinned), Err(Error::AskSignature(_))));

        // CekSignature: signed by the ARK key under the ASK usage.
        let mut t = c.clone();
        t.cek
            .sign_rsa(
                &mut r,
                Slot::Sig1,
                Usage::Ask,
                ark_key,
                Algorithm::RsaSha256,
            )
            .unwrap();
        assert!(matches!(t.verify(&pinned), Err(Error::CekSignature(_))));
        t.verify_platform_part().unwrap();

        // OcaSignature.
        let mut t = c.clone();
        t.oca.sign(Slot::Sig1, Usage::Oca, &m.pek, algo).unwrap();
        assert!(matches!(t.verify(&pinned), Err(Error::OcaSignature(_))));
        assert!(matches!(
            t.verify_owner_chain(),
            Err(Error::OcaSignature(_))
        ));

        // PekByOca.
        let mut t = c.clone();
        t.pek.sign(Slot::Sig1, Usage::Oca, &m.pek, algo).unwrap();
        assert!(matches!(t.verify(&pinned), Err(Error::PekByOca(_))));

        // PekByCek: owner chain still fine, platform part and full fail.
        let mut t = c.clone();
        t.pek.sign(Slot::Sig2, Usage::Cek, &m.oca, algo).unwrap();
        assert!(matches!(t.verify(&pinned), Err(Error::PekByCek(_))));
        assert!(matches!(t.verify_platform_part(), Err(Error::PekByCek(_))));
        t.verify_owner_chain().unwrap();

        // PekByCek when the PEK lacks a CEK slot altogether.
        let mut t = c.clone();
        t.pek.clear_signature(Slot::Sig2);
        assert_eq!(
            t.verify(&pinned),
            Err(Error::PekByCek(sev::Error::NoSlotForSigner(Usage::Cek)))
        );

        // PdhByPek.
        let mut t = c.clone();
        t.pdh.sign(Slot::Sig1, Usage::Pek, &m.oca, algo).unwrap();
        assert!(matches!(t.verify(&pinned), Err(Error::PdhByPek(_))));
        assert!(matches!(t.verify_owner_chain(), Err(Error::PdhByPek(_))));

        // Positions: PDH must be ECDH (even when properly signed by the PEK).
        let mut t = c.clone();
        t.pdh = sev::Certificate::new_ec(Usage::Pdh, algo, 0, 24, c.pdh.ec_public_key().unwrap())
            .unwrap();
        t.pdh.sign(Slot::Sig1, Usage::Pek, &m.pek, algo).unwrap();
        assert!(matches!(
            t.verify(&pinned),
            Err(Error::WrongAlgorithm { cert: Pdh, .. })
        ));
        // PEK must be ECDSA.
        let mut t = c.clone();
        t.pek = sev::Certificate::new_ec(
            Usage::Pek,
            Algorithm::EcdhSha384,
            0,
            24,
            c.pek.ec_public_key().unwrap(),
        )
        .unwrap();
        assert!(matches!(
            t.verify(&pinned),
            Err(Error::WrongAlgorithm { cert: Pek, .. })
        ));
        // CEK with a P-256 key.
        let mut cek_bytes = c.cek.encode();
        cek_bytes[0x10] = 1;
        cek_bytes[0x14 + 32..0x14 + 72].fill(0);
        cek_bytes[0x5C + 32..0x5C + 72].fill(0);
        let mut t = c.clone();
        t.cek = sev::Certificate::decode(&cek_bytes).unwrap();
        assert!(matches!(
            t.verify(&pinned),
            Err(Error::Key { cert: Cek, .. })
        ));
        // ASK and ARK swapped.
        let mut t = c.clone();
        std::mem::swap(&mut t.ask, &mut t.ark);
        assert_eq!(
            t.verify(&pinned),
            Err(Error::WrongUsage {
                cert: Ask,
                found: Usage::Ark
            })
        );
        let _ = &m.cek;
    }

    #[test]
    fn check_reads_matches_verify() {
        // The bit-flip tests below run only the checks that read the flipped
        // certificate; this confirms, on the self-made chain, that a change to
        // each certificate makes `verify` fail with an error of such a check.
        let m = made_chain();
        let pinned = m.chain.ark.clone();
        let check_of = |e: &Error| match e {
            Error::WrongUsage { .. } | Error::WrongAlgorithm { .. } | Error::Key { .. } => {
                Check::Positions
            }
            Error::ArkNotPinned => Check::ArkPinned,
            Error::ArkSelfSignature(_) => Check::ArkSelf,
            Error::AskIssuer { .. } | Error::AskSignature(_) => Check::AskByArk,
            Error::CekSignature(_) => Check::CekByAsk,
            Error::OcaSignature(_) => Check::OcaSelf,
            Error::PekByOca(_) => Check::PekByOca,
            Error::PekByCek(_) => Check::PekByCek,
            Error::PdhByPek(_) => Check::PdhByPek,
            other => panic!("unexpected {other:?}"),
        };
        let files: Vec<Vec<u8>> = vec![
            m.chain.pdh.encode().to_vec(),
            m.chain.pek.encode().to_vec(),
            m.chain.oca.encode().to_vec(),
            m.chain.cek.encode().to_vec(),
            m.chain.ask.encode(),
            m.chain.ark.encode(),
        ];
        for (pos, file) in POSITIONS.iter().zip(&files) {
            // The API version byte (SEV certs) / last body byte (CA certs), and
            // the first signature byte.
            let offsets: Vec<usize> = if matches!(pos, Ask | Ark) {
                vec![0x10, file.len() - 256]
            } else {
                vec![4, 0x41C, 0x624]
            };
            for off in offsets {
                let mut f = file.clone();
                f[off] ^= 1;
                let mut chain = m.chain.clone();
                if !substitute(&mut chain, *pos, &f) {
                    continue;
                }
                if off == 0x624 && chain.pek.signature(Slot::Sig2).is_empty() {
                    continue;
                }
                let err = chain.verify(&pinned).unwrap_err();
                assert!(
                    check_of(&err).reads().contains(pos),
                    "{pos} offset {off:#x}: {err:?}"
                );
            }
        }
    }

    /// Flips every bit of every certificate of a fixture chain. Each flip must
    /// be refused by decoding, or make one of the [`Check`]s that read the
    /// flipped certificate fail, and hence [`FullChain::verify`] (which runs
    /// all of them). Running only those checks keeps the test affordable:
    /// about one RSA or ECDSA verification per flip. `which` selects the
    /// certificates to flip (the tests are split so that they run in parallel).
    fn flip_every_bit_of_chain(test: &str, gen: &str, which: &[Position]) {
        let Some(files) = chain_files(test, gen) else {
            return;
        };
        let base = FullChain::decode(&files.concat()).unwrap();
        let pinned = base.ark.clone();
        base.verify(&pinned).unwrap();
        let mut undetected = Vec::new();
        for (pos, file) in POSITIONS.iter().zip(&files) {
            if !which.contains(pos) {
                continue;
            }
            let checks: Vec<Check> = Check::ALL
                .into_iter()
                .filter(|c| c.reads().contains(pos))
                .collect();
            for bit in 0..file.len() * 8 {
                let mut f = file.clone();
                f[bit / 8] ^= 1 << (bit % 8);
                let mut chain = base.clone();
                if !substitute(&mut chain, *pos, &f) {
                    continue;
                }
                if checks.iter().all(|c| chain.check(*c, &pinned).is_ok()) {
                    undetected.push((*pos, bit / 8, bit % 8));
                }
            }
        }
        assert!(
            undetected.is_empty(),
            "{gen}: undetected flips (cert, byte, bit): {undetected:?}"
        );
    }

    #[test]
    fn decoders_never_panic_and_accepted_input_round_trips() {
        use rand_chacha::rand_core::RngCore;
        let Some(files) = chain_files("chain::decoders_never_panic", "rome") else {
            return;
        };
        let Some(naples) = chain_files("chain::decoders_never_panic", "naples") else {
            return;
        };
        let mut r = rng(70);
        // Random buffers of interesting lengths.
        for len in [
            0, 1, 3, 4, 0x3F, 0x40, 0x41, 0x340, 0x640, 0x824, 0x186C, 0x2090, 0x28D0,
        ] {
            for _ in 0..20 {
                let mut b = vec![0u8; len];
                r.fill_bytes(&mut b);
                let _ = sev::Certificate::decode(&b);
                let _ = sev::Certificate::validate_godh_bytes(&b);
                let _ = ca::Certificate::decode(&b);
                let _ = ca::Certificate::encoded_len(&b);
                let _ = PlatformChain::decode(&b);
                let _ = CaChain::decode(&b);
                let _ = FullChain::decode(&b);
                let _ = crate::attestation::Report::decode(&b);
            }
        }
        // Random multi-byte mutations of real certificates: whatever still
        // decodes must re-encode to exactly the mutated bytes.
        for file in files.iter().chain(naples.iter()) {
            for _ in 0..300 {
                let mut b = file.clone();
                let n = 1 + (r.next_u32() % 8) as usize;
                for _ in 0..n {
                    let i = r.next_u32() as usize % b.len();
                    b[i] = r.next_u32() as u8;
                }
                if b.len() == CERT_LEN {
                    if let Ok(c) = sev::Certificate::decode(&b) {
                        assert_eq!(c.encode().as_slice(), b.as_slice());
                    }
                } else if let Ok(c) = ca::Certificate::decode(&b) {
                    assert_eq!(c.encode(), b);
                }
            }
        }
        // Truncations and extensions of a full chain.
        let full = files.concat();
        for cut in [1, 100, 1599, 1600, 1601, 3200] {
            assert!(FullChain::decode(&full[..full.len() - cut]).is_err());
        }
    }

    const PLATFORM: [Position; 4] = [Pdh, Pek, Oca, Cek];
    const AMD: [Position; 2] = [Ask, Ark];

    #[test]
    fn every_bit_flip_of_naples_platform_certs_is_detected() {
        flip_every_bit_of_chain(
            "chain::every_bit_flip_of_naples_platform_certs_is_detected",
            "naples",
            &PLATFORM,
        );
    }

    #[test]
    fn every_bit_flip_of_naples_amd_certs_is_detected() {
        flip_every_bit_of_chain(
            "chain::every_bit_flip_of_naples_amd_certs_is_detected",
            "naples",
            &AMD,
        );
    }

    #[test]
    fn every_bit_flip_of_rome_platform_certs_is_detected() {
        flip_every_bit_of_chain(
            "chain::every_bit_flip_of_rome_platform_certs_is_detected",
            "rome",
            &PLATFORM,
        );
    }

    #[test]
    fn every_bit_flip_of_rome_amd_certs_is_detected() {
        flip_every_bit_of_chain(
            "chain::every_bit_flip_of_rome_amd_certs_is_detected",
            "rome",
            &AMD,
        );
    }

    /// Flips every bit of a generation's ASK and ARK: each flip is refused by
    /// decoding or makes [`CaChain::verify`] to the pinned ARK fail.
    fn flip_every_bit_of_roots(test: &str, gen: AmdGeneration) {
        let ask = format!("amd-roots/{gen}-ask.cert");
        let ark = format!("amd-roots/{gen}-ark.cert");
        let Some([ask, ark]) = fixtures(test, [ask.as_str(), ark.as_str()]) else {
            return;
        };
        let base = CaChain::decode(&[ask.clone(), ark.clone()].concat()).unwrap();
        let pinned = base.ark.clone();
        base.verify(&pinned).unwrap();
        let mut undetected = Vec::new();
        for (is_ark, file) in [(false, &ask), (true, &ark)] {
            for bit in 0..file.len() * 8 {
                let mut f = file.clone();
                f[bit / 8] ^= 1 << (bit % 8);
                let Ok(cert) = ca::Certificate::decode(&f) else {
                    continue;
                };
                let mut chain = base.clone();
                if is_ark {
                    chain.ark = cert;
                } else {
                    chain.ask = cert;
                }
                if chain.verify(&pinned).is_ok() {
                    undetected.push((if is_ark { Ark } else { Ask }, bit / 8, bit % 8));
                }
            }
        }
        assert!(
            undetected.is_empty(),
            "{gen}: undetected flips (cert, byte, bit): {undetected:?}"
        );
    }

    #[test]
    fn every_bit_flip_of_milan_roots_is_detected() {
        flip_every_bit_of_roots(
            "chain::every_bit_flip_of_milan_roots_is_detected",
            AmdGeneration::Milan,
        );
    }

    #[test]
    fn every_bit_flip_of_genoa_roots_is_detected() {
        flip_every_bit_of_roots(
            "chain::every_bit_flip_of_genoa_roots_is_detected",
            AmdGeneration::Genoa,
        );
    }

    #[test]
    fn every_bit_flip_of_turin_roots_is_detected() {
        flip_every_bit_of_roots(
            "chain::every_bit_flip_of_turin_roots_is_detected",
            AmdGeneration::Turin,
        );
    }
}
