//! The published AMD roots, by processor generation
//! (docs/protocol/certificates.md#amd-ca-certificate).
//!
//! Only the KEY_IDs and modulus sizes are carried here; the certificates
//! themselves are third-party data that tools load from a file and check
//! with [`AmdGeneration::check_ark`] before pinning them.

use std::fmt;
use std::str::FromStr;

use super::ca::{self, KEY_ID_LEN};
use super::Usage;

/// Why an ARK is not the genuine root of a generation.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RootError {
    /// The certificate is not an ARK.
    #[error("certificate has usage {0}, expected ARK")]
    NotArk(Usage),
    /// KEY_ID differs from the generation's ARK KEY_ID.
    #[error("ARK key id {found} is not the {generation} ARK key id {expected}")]
    KeyId {
        /// The generation checked against.
        generation: AmdGeneration,
        /// KEY_ID of the certificate (hex).
        found: String,
        /// The published KEY_ID (hex).
        expected: String,
    },
    /// The modulus has the wrong size for the generation.
    #[error("{generation} ARK must have a {expected}-bit modulus, this one has {found}")]
    ModulusBits {
        /// The generation checked against.
        generation: AmdGeneration,
        /// Expected size.
        expected: u32,
        /// Found size.
        found: u32,
    },
    /// The ARK's self-signature (or its CERTIFYING_ID) is wrong.
    #[error("{generation} ARK self-signature")]
    SelfSignature {
        /// The generation checked against.
        generation: AmdGeneration,
        /// Why.
        #[source]
        source: ca::Error,
    },
    /// A generation name was not recognised.
    #[error("unknown AMD generation {0:?} (expected naples, rome, milan, genoa or turin)")]
    UnknownName(String),
}

/// AMD EPYC generations and their SEV roots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AmdGeneration {
    /// EPYC 7001.
    Naples,
    /// EPYC 7002.
    Rome,
    /// EPYC 7003.
    Milan,
    /// EPYC 9004.
    Genoa,
    /// EPYC 9005.
    Turin,
}

const fn id(hex: &[u8; 32]) -> [u8; KEY_ID_LEN] {
    const fn nib(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("bad hex digit in key id literal"),
        }
    }
    let mut out = [0u8; KEY_ID_LEN];
    let mut i = 0;
    while i < KEY_ID_LEN {
        out[i] = (nib(hex[2 * i]) << 4) | nib(hex[2 * i + 1]);
        i += 1;
    }
    out
}

fn hex16(bytes: &[u8; KEY_ID_LEN]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl AmdGeneration {
    /// Every generation.
    pub const ALL: [AmdGeneration; 5] = [
        AmdGeneration::Naples,
        AmdGeneration::Rome,
        AmdGeneration::Milan,
        AmdGeneration::Genoa,
        AmdGeneration::Turin,
    ];

    /// Lower-case name ("naples", ...).
    pub const fn name(self) -> &'static str {
        match self {
            AmdGeneration::Naples => "naples",
            AmdGeneration::Rome => "rome",
            AmdGeneration::Milan => "milan",
            AmdGeneration::Genoa => "genoa",
            AmdGeneration::Turin => "turin",
        }
    }

    /// The ARK's KEY_ID as stored at offset 0x04
    /// (docs/protocol/certificates.md#amd-ca-certificate).
    pub const fn ark_key_id(self) -> [u8; KEY_ID_LEN] {
        match self {
            AmdGeneration::Naples => id(b"1bb987c359494606b174945601c9ea5b"),
            AmdGeneration::Rome => id(b"e6002122fb58419399d15fee7b131351"),
            AmdGeneration::Milan => id(b"94c38e4177d0479292a7ae671d083fb6"),
            AmdGeneration::Genoa => id(b"9f9d4a8fe761456599f6946c4c010f3a"),
            AmdGeneration::Turin => id(b"d05c3a8bde484904b49552422ceb3942"),
        }
    }

    /// The ASK's KEY_ID as stored at offset 0x04
    /// (docs/protocol/certificates.md#amd-ca-certificate).
    pub const fn ask_key_id(self) -> [u8; KEY_ID_LEN] {
        match self {
            AmdGeneration::Naples => id(b"e139970cfc464377ae61b289e2f9e96e"),
            AmdGeneration::Rome => id(b"c6cbcf145b3146f498e40ecb4ad4fded"),
            AmdGeneration::Milan => id(b"73478c05cc174bfeb06e718fa75dc3c8"),
            AmdGeneration::Genoa => id(b"acbb4ad21acc436fb3e932f812cd01b0"),
            AmdGeneration::Turin => id(b"15051693f7304d65a527b4a7f3f7cb77"),
        }
    }

    /// The root's modulus size in bits (2048 for Naples, 4096 after).
    pub const fn modulus_bits(self) -> u32 {
        match self {
            AmdGeneration::Naples => 2048,
            _ => 4096,
        }
    }

    /// The generation whose ARK has this KEY_ID.
    pub fn from_ark_key_id(key_id: &[u8; KEY_ID_LEN]) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.ark_key_id() == *key_id)
    }

    /// Checks that `ark` is this generation's ARK: usage ARK, the published
    /// KEY_ID, the expected modulus size and a valid self-signature. A
    /// certificate that passes can be pinned for chain verification.
    pub fn check_ark(self, ark: &ca::Certificate) -> Result<(), RootError> {
        if ark.usage() != Usage::Ark {
            return Err(RootError::NotArk(ark.usage()));
        }
        let expected = self.ark_key_id();
        if *ark.key_id() != expected {
            return Err(RootError::KeyId {
                generation: self,
                found: hex16(ark.key_id()),
                expected: hex16(&expected),
            });
        }
        if ark.modulus_bits() != self.modulus_bits() {
            return Err(RootError::ModulusBits {
                generation: self,
                expected: self.modulus_bits(),
                found: ark.modulus_bits(),
            });
        }
        ark.verify_signed_by(ark)
            .map_err(|source| RootError::SelfSignature {
                generation: self,
                source,
            })
    }
}

impl fmt::Display for AmdGeneration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AmdGeneration {
    type Err = RootError;
    fn from_str(s: &str) -> Result<Self, RootError> {
        Self::ALL
            .into_iter()
            .find(|g| g.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| RootError::UnknownName(s.chars().take(64).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::testutil::{fixtures, rng, rsa_keys};

    fn load(g: AmdGeneration) -> Option<(ca::Certificate, ca::Certificate)> {
        let ark = format!("amd-roots/{}-ark.cert", g.name());
        let ask = format!("amd-roots/{}-ask.cert", g.name());
        let [ark, ask] = fixtures("roots::load", [ark.as_str(), ask.as_str()])?;
        Some((
            ca::Certificate::decode(&ark).unwrap(),
            ca::Certificate::decode(&ask).unwrap(),
        ))
    }

    #[test]
    fn every_generation_checks_its_own_ark_only() {
        let mut loaded = Vec::new();
        for g in AmdGeneration::ALL {
            let Some((ark, ask)) = load(g) else { return };
            // docs/protocol/certificates.md#amd-ca-certificate key id table.
            assert_eq!(*ark.key_id(), g.ark_key_id());
            assert_eq!(*ask.key_id(), g.ask_key_id());
            assert_eq!(AmdGeneration::from_ark_key_id(ark.key_id()), Some(g));
            g.check_ark(&ark).unwrap();
            assert_eq!(ark.modulus_bits(), g.modulus_bits());
            assert_eq!(g.check_ark(&ask), Err(RootError::NotArk(Usage::Ask)));
            loaded.push((g, ark));
        }
        // Rome's check refuses Naples' ARK, and so on.
        for (g, _) in &loaded {
            for (other, ark) in &loaded {
                if g != other {
                    assert!(matches!(g.check_ark(ark), Err(RootError::KeyId { .. })));
                }
            }
        }
    }

    #[test]
    fn self_made_ark_is_not_a_genuine_root() {
        let [ark_key, _] = rsa_keys();
        let ark = ca::Certificate::sign_new_ark(&mut rng(40), ark_key).unwrap();
        for g in AmdGeneration::ALL {
            assert!(matches!(g.check_ark(&ark), Err(RootError::KeyId { .. })));
        }
        assert_eq!(AmdGeneration::from_ark_key_id(ark.key_id()), None);
    }

    #[test]
    fn names() {
        for g in AmdGeneration::ALL {
            assert_eq!(g.to_string().parse::<AmdGeneration>(), Ok(g));
        }
        assert_eq!("ROME".parse::<AmdGeneration>(), Ok(AmdGeneration::Rome));
        assert!(matches!(
            "bergamo".parse::<AmdGeneration>(),
            Err(RootError::UnknownName(_))
        ));
    }
}
