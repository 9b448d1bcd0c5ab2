//! The signed CEK of a real host.
//!
//! On AMD hardware PDH_CERT_EXPORT returns the CEK without the ASK's
//! signature (both slots empty: only its key). AMD's key distribution
//! server (KDS) serves the same key signed by the ASK for each chip, at
//! `{base}/cek/id/{chip id}`, the chip id being GET_ID's 64 bytes in
//! lowercase hex (what `sevctl` fetches). The owner's tools replace the
//! exported CEK with that signed one, taken from, in this order:
//!
//! 1. a file the user names (`--cek FILE`), used whenever given;
//! 2. the CEK directories, as `<chip id>.cert`: the cache directory
//!    (`--cek-cache DIR`, `$SEV_OWNER_CEK_CACHE`, `$XDG_CACHE_HOME/sevm/cek`
//!    or `~/.cache/sevm/cek`), then `cek/` in each AMD roots directory of
//!    [`crate::roots`];
//! 3. the KDS, only when fetching is allowed (`--fetch-cek`, base URL
//!    `--kds-url`, default AMD's), through the owner's KDS client
//!    ([`crate::kds::client`]: timeouts, a size cap, retries of a throttling
//!    server); a fetched CEK that is usable is written into the cache
//!    directory as [`crate::kds::client::Cache::store`] writes every KDS object.
//!    A plain `http://` base URL is accepted (a local mirror, the tests): the
//!    answer is trusted only through the ASK's signature, never through the
//!    transport.
//!
//! A signed CEK replaces the platform's only when its public key is the
//! platform CEK's and its ASK signature verifies under the chain's ASK. The
//! platform's CEK is kept as it is when it already carries an ASK signature
//! (emulated platforms, older firmware) and no file was named. Nothing
//! about the replacement is trusted beyond that: the chain is then verified
//! as usual (ASK by the pinned ARK, PEK by this CEK).

use std::path::PathBuf;

use sev_proto::abi::GET_ID_LEN;
use sev_proto::cert::sev::{Certificate, Slot, CERT_LEN};
use sev_proto::cert::{ca, Usage};
use sev_proto::snp::kds::KdsRequest;

use crate::io::{self, IoError};
use crate::kds::client::{self as kds, Cache, KdsClient, KdsError};

/// AMD's key distribution server.
pub const DEFAULT_KDS_URL: &str = kds::AMD_KDS_BASE;
/// Largest CEK file read.
const MAX_FILE: u64 = 64 << 10;

/// Why no usable signed CEK could be had.
#[derive(Debug, thiserror::Error)]
pub enum CekError {
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A CEK candidate is unusable.
    #[error("signed CEK from {origin}: {problem}")]
    Unusable {
        /// Where it came from (file, cache file, URL).
        origin: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The KDS request failed.
    #[error("fetching the signed CEK: {0}")]
    Fetch(#[from] KdsError),
    /// A chip id could not be parsed.
    #[error("chip id {value:?}: {problem}")]
    ChipId {
        /// The value (shortened).
        value: String,
        /// What is wrong.
        problem: String,
    },
}

/// A chip's GET_ID identifier (64 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChipId(pub [u8; GET_ID_LEN]);

impl ChipId {
    /// Parses 128 hex digits (as `sev-platform id` prints) or base64 (as
    /// QEMU's `cpu0-id`).
    pub fn parse(text: &str) -> Result<Self, CekError> {
        let t = text.trim();
        let bytes = if t.len() == 2 * GET_ID_LEN && t.chars().all(|c| c.is_ascii_hexdigit()) {
            hex::decode(t).map_err(|e| e.to_string())
        } else {
            io::b64_decode("chip id", t).map_err(|e| e.to_string())
        };
        let bad = |problem: String| CekError::ChipId {
            value: t.chars().take(32).collect(),
            problem,
        };
        let bytes = bytes.map_err(|e| bad(format!("neither 128 hex digits nor base64 ({e})")))?;
        <[u8; GET_ID_LEN]>::try_from(bytes.as_slice())
            .map(ChipId)
            .map_err(|_| bad(format!("{} bytes, expected {GET_ID_LEN}", bytes.len())))
    }

    /// Lowercase hex, as the KDS URL and the cache file names use it.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The KDS request for this chip's signed CEK.
    pub fn kds_request(&self) -> KdsRequest {
        KdsRequest::Cek { chip_id: self.0 }
    }
}

/// Where a signed CEK may come from.
#[derive(Debug, Clone, Default)]
pub struct CekOptions {
    /// `--cek FILE`: the signed CEK, used whenever given.
    pub file: Option<PathBuf>,
    /// `--chip-id`: the chip id when the chain source does not carry it.
    pub chip_id: Option<ChipId>,
    /// The cache directory (read, and written after a fetch).
    pub cache_dir: Option<PathBuf>,
    /// More directories to read `<chip id>.cert` from.
    pub extra_dirs: Vec<PathBuf>,
    /// The KDS base URL, when fetching is allowed.
    pub fetch_from: Option<String>,
}

impl CekOptions {
    /// The KDS URL of `chip`'s CEK under `base`.
    pub fn url(base: &str, chip: &ChipId) -> String {
        chip.kds_request().url(base)
    }

    /// The directories searched for `<chip id>.cert`, in order.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.cache_dir
            .iter()
            .chain(&self.extra_dirs)
            .cloned()
            .collect()
    }
}

/// The default cache directory: `$SEV_OWNER_CEK_CACHE`, else
/// `$XDG_CACHE_HOME/sevm/cek`, else `~/.cache/sevm/cek`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("SEV_OWNER_CEK_CACHE").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    match std::env::var_os("XDG_CACHE_HOME") {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d).join("sevm/cek")),
        _ => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/sevm/cek")),
    }
}

/// Whether `cek` carries a signature by the ASK (in either slot).
pub fn is_ask_signed(cek: &Certificate) -> bool {
    Slot::BOTH
        .iter()
        .any(|s| cek.signature(*s).usage() == Usage::Ask)
}

/// A signed CEK that replaced the platform's, and where it came from.
#[derive(Debug, Clone)]
pub struct Replacement {
    /// The signed CEK.
    pub cek: Certificate,
    /// Where it came from (for the report).
    pub origin: String,
}

/// What [`resolve`] found.
#[derive(Debug, Clone)]
pub enum Resolution {
    /// The platform's CEK is used as it is (it carries an ASK signature).
    Kept,
    /// A signed CEK replaces the platform's.
    Replaced(Box<Replacement>),
    /// The platform's CEK carries no ASK signature and no signed CEK is
    /// available; the text says exactly what is missing and how to get it.
    Missing(String),
}

/// Checks that `candidate` (bytes from `origin`) is the platform's CEK
/// signed by `ask`.
fn check_candidate(
    origin: &str,
    bytes: &[u8],
    platform_cek: &Certificate,
    ask: &ca::Certificate,
) -> Result<Certificate, CekError> {
    let unusable = |problem: String| CekError::Unusable {
        origin: origin.to_string(),
        problem,
    };
    if bytes.len() != CERT_LEN {
        return Err(unusable(format!(
            "{} bytes, expected a {CERT_LEN}-byte SEV certificate",
            bytes.len()
        )));
    }
    let cek = Certificate::decode(bytes).map_err(|e| {
        unusable(format!(
            "does not decode: {}",
            crate::error::error_chain(&e)
        ))
    })?;
    if cek.usage() != Usage::Cek {
        return Err(unusable(format!(
            "it is a {} certificate, not a CEK",
            cek.usage().name()
        )));
    }
    if cek.public_key() != platform_cek.public_key() {
        return Err(unusable(
            "its public key is not the platform's CEK key (another chip's CEK?)".into(),
        ));
    }
    cek.verify_signed_by_ca(ask).map_err(|e| {
        unusable(format!(
            "not signed by the chain's ASK: {}",
            crate::error::error_chain(&e)
        ))
    })?;
    Ok(cek)
}

/// Finds the signed CEK for `platform_cek` (see the module documentation).
/// `chip` is the chip id from the chain source or `--chip-id`; `ask` the
/// chain's ASK; `cache_writable` whether a fetched CEK may be cached (the
/// caller passes true only once the ASK is shown to be the pinned root's).
pub fn resolve(
    platform_cek: &Certificate,
    chip: Option<&ChipId>,
    ask: &ca::Certificate,
    opts: &CekOptions,
    cache_writable: bool,
) -> Result<Resolution, CekError> {
    if let Some(f) = &opts.file {
        let bytes = io::read_file_max(f, MAX_FILE)?;
        let origin = format!("{} (--cek)", f.display());
        let cek = check_candidate(&origin, &bytes, platform_cek, ask)?;
        return Ok(Resolution::Replaced(Box::new(Replacement { cek, origin })));
    }
    if is_ask_signed(platform_cek) {
        return Ok(Resolution::Kept);
    }
    let chip = opts.chip_id.as_ref().or(chip);
    let Some(chip) = chip else {
        return Ok(Resolution::Missing(
            "the platform's CEK carries no ASK signature (real hardware exports it so) and the \
             chain source does not give the chip id: pass the signed CEK with --cek FILE, or the \
             chip id (`sev-platform id` on the host) with --chip-id HEX to use the CEK cache or \
             --fetch-cek"
                .into(),
        ));
    };
    let request = chip.kds_request();
    let name = kds::file_name(&request);
    let dirs = opts.dirs();
    for dir in &dirs {
        let path = dir.join(&name);
        // The cache is read as every KDS cache is (no links followed); the
        // read-only directories of the AMD roots as ordinary files.
        let bytes = if opts.cache_dir.as_deref() == Some(dir.as_path()) {
            match Cache::new(dir).read(&request, MAX_FILE)? {
                Some(bytes) => bytes,
                None => continue,
            }
        } else if path.is_file() {
            io::read_file_max(&path, MAX_FILE)?
        } else {
            continue;
        };
        let origin = path.display().to_string();
        let cek = check_candidate(&origin, &bytes, platform_cek, ask).map_err(|e| {
            CekError::Unusable {
                origin: origin.clone(),
                problem: format!(
                    "{}; remove the file to fetch it again",
                    match &e {
                        CekError::Unusable { problem, .. } => problem.clone(),
                        other => other.to_string(),
                    }
                ),
            }
        })?;
        return Ok(Resolution::Replaced(Box::new(Replacement { cek, origin })));
    }
    let searched = if dirs.is_empty() {
        "no CEK directory".to_string()
    } else {
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(base) = &opts.fetch_from else {
        return Ok(Resolution::Missing(format!(
            "the platform's CEK carries no ASK signature (real hardware exports it so) and no \
             signed CEK for chip id {} was found (looked for <chip id>.cert in {searched}); fetch \
             it from AMD's key server with --fetch-cek (GET {}), or pass it with --cek FILE",
            chip.hex(),
            CekOptions::url(DEFAULT_KDS_URL, chip)
        )));
    };
    let client = KdsClient::new(base)?;
    let url = client.url(&request);
    let bytes = client.fetch(&request)?;
    let cek = check_candidate(&url, &bytes, platform_cek, ask)?;
    let mut origin = url.clone();
    if cache_writable {
        if let Some(dir) = &opts.cache_dir {
            match Cache::new(dir).store(&request, &bytes) {
                Ok(path) => origin = format!("{url} (cached in {})", path.display()),
                Err(e) => origin = format!("{url} (not cached: {})", crate::error::error_chain(&e)),
            }
        }
    }
    Ok(Resolution::Replaced(Box::new(Replacement { cek, origin })))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;
    use std::path::Path;

    use super::*;

    #[test]
    fn chip_id_parses_hex_and_base64() {
        let id = ChipId([0xAB; 64]);
        assert_eq!(ChipId::parse(&id.hex()).unwrap(), id);
        assert_eq!(ChipId::parse(&io::b64_encode(&id.0)).unwrap(), id);
        assert_eq!(id.hex(), "ab".repeat(64));
        let e = ChipId::parse("AAAA").unwrap_err().to_string();
        assert!(e.contains("3 bytes, expected 64"), "{e}");
        let e = ChipId::parse("not an id!").unwrap_err().to_string();
        assert!(e.contains("neither 128 hex digits nor base64"), "{e}");
        assert_eq!(
            CekOptions::url("https://kdsintf.amd.com/", &id),
            format!("https://kdsintf.amd.com/cek/id/{}", "ab".repeat(64))
        );
    }

    /// The real Rome CEK (signed by Rome's ASK) is kept; stripped of its
    /// signature it is "missing" until the signed copy is found in a CEK
    /// directory (by chip id) or given as a file; Naples' CEK (another key)
    /// and a cached copy that does not verify are refused.
    #[test]
    fn resolve_keeps_replaces_or_says_what_is_missing() {
        let test = "cek::resolve_keeps_replaces_or_says_what_is_missing";
        let (Some(cek), Some(ask), Some(naples)) = (
            sevm_testutil::fixture(test, "certs/rome/cek.cert"),
            sevm_testutil::fixture(test, "amd-roots/rome-ask.cert"),
            sevm_testutil::fixture(test, "certs/naples/cek.cert"),
        ) else {
            return;
        };
        let signed = Certificate::decode(&cek).unwrap();
        let ask = ca::Certificate::decode(&ask).unwrap();
        let mut unsigned = signed.clone();
        unsigned.clear_signature(Slot::Sig1);
        unsigned.clear_signature(Slot::Sig2);
        let chip = ChipId([7; 64]);
        let tmp = tempfile::tempdir().unwrap();
        let mut opts = CekOptions {
            cache_dir: Some(tmp.path().to_path_buf()),
            ..CekOptions::default()
        };
        assert!(matches!(
            resolve(&signed, Some(&chip), &ask, &opts, true).unwrap(),
            Resolution::Kept
        ));
        let Resolution::Missing(why) = resolve(&unsigned, Some(&chip), &ask, &opts, true).unwrap()
        else {
            panic!("not missing");
        };
        assert!(
            why.contains(&CekOptions::url(DEFAULT_KDS_URL, &chip)),
            "{why}"
        );
        let Resolution::Missing(why) = resolve(&unsigned, None, &ask, &opts, true).unwrap() else {
            panic!("not missing");
        };
        assert!(why.contains("--chip-id"), "{why}");

        let cached = tmp.path().join(format!("{}.cert", chip.hex()));
        fs::write(&cached, &cek).unwrap();
        let Resolution::Replaced(r) = resolve(&unsigned, Some(&chip), &ask, &opts, true).unwrap()
        else {
            panic!("not replaced");
        };
        assert_eq!(r.cek, signed);
        assert_eq!(r.origin, cached.display().to_string());

        fs::write(&cached, unsigned.encode()).unwrap();
        let e = resolve(&unsigned, Some(&chip), &ask, &opts, true).unwrap_err();
        assert!(e.to_string().contains("remove the file"), "{e}");

        let file = tmp.path().join("naples.cert");
        fs::write(&file, &naples).unwrap();
        opts.file = Some(file);
        let e = resolve(&unsigned, Some(&chip), &ask, &opts, true).unwrap_err();
        assert!(
            e.to_string().contains("public key is not the platform's"),
            "{e}"
        );
    }

    #[test]
    fn store_writes_0600_exclusively_and_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache/cek");
        let request = ChipId([9; 64]).kds_request();
        let cache = Cache::new(&dir);
        let path = cache.store(&request, b"cek").unwrap();
        assert_eq!(path, dir.join(format!("{}.cert", "09".repeat(64))));
        assert_eq!(fs::read(&path).unwrap(), b"cek");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir), 0o700);
        cache.store(&request, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temporary left");
    }
}
