//! The AMD roots the owner's tools trust, pinned by fingerprint.
//!
//! The tools carry the SHA-256 of each generation's genuine ARK and ASK
//! certificate (AMD CA format), not the certificates themselves: the bytes
//! come from the chain file, a `--ca` file, or a roots directory
//! (`<generation>-ark.cert`, `<generation>-ask.cert`, as AMD publishes them),
//! and are accepted only when they hash to the built-in value. An ARK that
//! passes is byte-for-byte AMD's, so pinning by fingerprint is as strong as
//! carrying the certificate.
//!
//! Roots directories, first match wins: `$SEV_OWNER_AMD_ROOTS`,
//! `$XDG_DATA_HOME/sevm/amd-roots` (or `~/.local/share/sevm/amd-roots`),
//! `/usr/share/sevm/amd-roots`.

use std::path::{Path, PathBuf};

use sev_proto::cert::chain::CaChain;
use sev_proto::cert::{ca, AmdGeneration, RootError};
use subtle::ConstantTimeEq;

use crate::io::{self, IoError};

/// Why a root could not be loaded or is not genuine.
#[derive(Debug, thiserror::Error)]
pub enum RootsError {
    /// The certificate's SHA-256 is not the built-in fingerprint.
    #[error(
        "{what} (sha256 {found}) is not AMD's {generation} {what} (sha256 {expected})",
        generation = generation.name()
    )]
    Fingerprint {
        /// ARK or ASK.
        what: &'static str,
        /// The generation.
        generation: AmdGeneration,
        /// The certificate's fingerprint (hex).
        found: String,
        /// The built-in fingerprint (hex).
        expected: String,
    },
    /// The ARK fails the generation's structural checks.
    #[error("ARK is not the {} root", .0.name())]
    Ark(AmdGeneration, #[source] RootError),
    /// No roots directory holds the generation's certificates.
    #[error(
        "no {gen}-ask.cert and {gen}-ark.cert found in {searched}; pass the ASK/ARK with --ca FILE \
         (AMD publishes them as ask_ark_{gen}.cert) or put them in one of those directories",
        gen = generation.name()
    )]
    NotFound {
        /// The generation.
        generation: AmdGeneration,
        /// The directories searched.
        searched: String,
    },
    /// A file could not be read.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A certificate file does not decode.
    #[error("{} does not decode as an AMD CA certificate", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ca::Error,
    },
}

fn unhex32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    if let Ok(v) = hex::decode(s) {
        if v.len() == 32 {
            out.copy_from_slice(&v);
        }
    }
    out
}

/// SHA-256 of the genuine ARK (AMD CA format) of `generation`.
///
/// Source: the published AMD roots (virtee/sev
/// `src/certs/sev/builtin/<gen>/ark.cert`), fingerprints as listed in
/// `sev-testdata/README.md`.
pub fn ark_fingerprint(generation: AmdGeneration) -> [u8; 32] {
    unhex32(match generation {
        AmdGeneration::Naples => "dedabca561e1dece8cc00b7bda864cf5f20b95017864408cfe18eaee0dce24b9",
        AmdGeneration::Rome => "865977b268c16d5b27772b00aaefb4e737ba9499e818ed8e9f65b0cecefbc529",
        AmdGeneration::Milan => "1246469862b78a7a8625579b0378d1f8e975eb8b82a1623b579d7968a5969888",
        AmdGeneration::Genoa => "8f4e3fd36589c23f1fe0c8338465bac7e2e066d97fc92f228bbee4fd356fb674",
        AmdGeneration::Turin => "f6405e5096a6eee1eb7d5df75c49f9b9f7c8357a31c7fff150149d68588a7bf7",
    })
}

/// SHA-256 of the genuine ASK of `generation` (same source as
/// [`ark_fingerprint`]).
pub fn ask_fingerprint(generation: AmdGeneration) -> [u8; 32] {
    unhex32(match generation {
        AmdGeneration::Naples => "c6f30cf923f526c3bcd5c8c221db51e0db65911782f046de17a6603131cdfd7f",
        AmdGeneration::Rome => "7754a69407d25540fe3a695be6b02c58a53bffd12594f5c30793d6cb62875706",
        AmdGeneration::Milan => "c7c73765561c58003a3d09adb2c76993027dd3a1ec4e9be876024c035e015cec",
        AmdGeneration::Genoa => "c30307e4f594fb6c51fd753ab758eb78ad4bb70d9e4d96690e51c0621901031d",
        AmdGeneration::Turin => "2ee285477f0d5eb94a69029197f4cf58ca82d8e1b9a276da1ac45b0db3f4be56",
    })
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Checks that `ark` is AMD's ARK for `generation`: the generation's
/// structural checks (usage, KEY_ID, modulus size, self-signature) and the
/// built-in fingerprint (constant-time comparison).
pub fn check_genuine_ark(
    generation: AmdGeneration,
    ark: &ca::Certificate,
) -> Result<(), RootsError> {
    let found = sha256(&ark.encode());
    let expected = ark_fingerprint(generation);
    if !bool::from(found.ct_eq(&expected)) {
        return Err(RootsError::Fingerprint {
            what: "ARK",
            generation,
            found: hex::encode(found),
            expected: hex::encode(expected),
        });
    }
    generation
        .check_ark(ark)
        .map_err(|e| RootsError::Ark(generation, e))
}

/// The AMD generation whose genuine ARK `ark` is (built-in fingerprint and
/// the generation's structural checks), if any.
pub fn genuine_generation(ark: &ca::Certificate) -> Option<AmdGeneration> {
    AmdGeneration::ALL
        .into_iter()
        .find(|g| check_genuine_ark(*g, ark).is_ok())
}

/// The roots directories to search, from the environment.
pub fn default_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("SEV_OWNER_AMD_ROOTS") {
        dirs.push(PathBuf::from(d));
    }
    match std::env::var_os("XDG_DATA_HOME") {
        Some(d) if !d.is_empty() => dirs.push(PathBuf::from(d).join("sevm/amd-roots")),
        _ => {
            if let Some(home) = std::env::var_os("HOME") {
                dirs.push(PathBuf::from(home).join(".local/share/sevm/amd-roots"));
            }
        }
    }
    dirs.push(PathBuf::from("/usr/share/sevm/amd-roots"));
    dirs
}

fn load_ca(path: &Path) -> Result<ca::Certificate, RootsError> {
    let bytes = io::read_file(path)?;
    ca::Certificate::decode(&bytes).map_err(|source| RootsError::Decode {
        path: path.to_path_buf(),
        source,
    })
}

/// Loads `generation`'s ASK and ARK from the first of `dirs` that has both
/// files, and checks both against the built-in fingerprints.
pub fn load_amd_ca(generation: AmdGeneration, dirs: &[PathBuf]) -> Result<CaChain, RootsError> {
    for dir in dirs {
        let ask_path = dir.join(format!("{}-ask.cert", generation.name()));
        let ark_path = dir.join(format!("{}-ark.cert", generation.name()));
        if !(ask_path.is_file() && ark_path.is_file()) {
            continue;
        }
        let ask = load_ca(&ask_path)?;
        let ark = load_ca(&ark_path)?;
        check_genuine_ark(generation, &ark)?;
        let found = sha256(&ask.encode());
        let expected = ask_fingerprint(generation);
        if !bool::from(found.ct_eq(&expected)) {
            return Err(RootsError::Fingerprint {
                what: "ASK",
                generation,
                found: hex::encode(found),
                expected: hex::encode(expected),
            });
        }
        return Ok(CaChain { ask, ark });
    }
    Err(RootsError::NotFound {
        generation,
        searched: dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sevm_testutil::{fixture, testdata_dir};

    /// The built-in fingerprints are those of the published roots
    /// (sev-testdata/amd-roots, docs/protocol/test-vectors.md#chain-checks), and each ARK passes
    /// its generation's checks while failing every other generation's.
    #[test]
    fn builtin_fingerprints_match_published_roots() {
        for g in AmdGeneration::ALL {
            let test = "builtin_fingerprints_match_published_roots";
            let Some(ark) = fixture(test, &format!("amd-roots/{}-ark.cert", g.name())) else {
                return;
            };
            let Some(ask) = fixture(test, &format!("amd-roots/{}-ask.cert", g.name())) else {
                return;
            };
            assert_eq!(sha256(&ark), ark_fingerprint(g), "{g:?} ARK");
            assert_eq!(sha256(&ask), ask_fingerprint(g), "{g:?} ASK");
            let ark = ca::Certificate::decode(&ark).unwrap();
            check_genuine_ark(g, &ark).unwrap();
            assert_eq!(genuine_generation(&ark), Some(g));
            for other in AmdGeneration::ALL.into_iter().filter(|o| *o != g) {
                let e = check_genuine_ark(other, &ark).unwrap_err();
                assert!(
                    matches!(e, RootsError::Fingerprint { what: "ARK", .. }),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn load_amd_ca_from_a_roots_directory() {
        let Some(dir) = testdata_dir() else {
            sevm_testutil::skip("load_amd_ca_from_a_roots_directory", "sev-testdata");
            return;
        };
        let roots = dir.join("amd-roots");
        let empty = tempfile::tempdir().unwrap();
        let ca = load_amd_ca(AmdGeneration::Milan, &[empty.path().to_path_buf(), roots]).unwrap();
        assert_eq!(
            sha256(&ca.ark.encode()),
            ark_fingerprint(AmdGeneration::Milan)
        );
        let e = load_amd_ca(AmdGeneration::Rome, &[empty.path().to_path_buf()]).unwrap_err();
        assert!(e.to_string().contains("rome-ask.cert"), "{e}");
    }

    #[test]
    fn a_substituted_ask_is_refused() {
        let Some(dir) = testdata_dir() else {
            sevm_testutil::skip("a_substituted_ask_is_refused", "sev-testdata");
            return;
        };
        let tmp = tempfile::tempdir().unwrap();
        let roots = dir.join("amd-roots");
        std::fs::copy(
            roots.join("rome-ark.cert"),
            tmp.path().join("rome-ark.cert"),
        )
        .unwrap();
        // Milan's ASK under Rome's name: decodes, but is not Rome's ASK.
        std::fs::copy(
            roots.join("milan-ask.cert"),
            tmp.path().join("rome-ask.cert"),
        )
        .unwrap();
        let e = load_amd_ca(AmdGeneration::Rome, &[tmp.path().to_path_buf()]).unwrap_err();
        assert!(
            matches!(e, RootsError::Fingerprint { what: "ASK", .. }),
            "{e}"
        );
    }
}
