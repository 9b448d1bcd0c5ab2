//! Test helpers: fixture access (skip or fail per `SEVM_REQUIRE_ALL`) and
//! deterministic keys shared by the tests of this crate.

use std::path::PathBuf;
use std::sync::OnceLock;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// The shared fixture directory: `$SEVM_TESTDATA` if set (for checkouts that
/// are not a sibling of `shared/`, such as git worktrees), else
/// `shared/sev-testdata` beside the repository.
pub(crate) fn testdata_dir() -> PathBuf {
    match std::env::var_os("SEVM_TESTDATA") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/sev-testdata"
        )),
    }
}

/// Reads fixture files (paths relative to `sev-testdata/`). When one is
/// missing, prints `SKIPPED: <test>: ...` and returns `None`, or panics when
/// `SEVM_REQUIRE_ALL=1`.
pub(crate) fn fixtures<const N: usize>(test: &str, rel: [&str; N]) -> Option<[Vec<u8>; N]> {
    let dir = testdata_dir();
    let mut out: [Vec<u8>; N] = std::array::from_fn(|_| Vec::new());
    for (slot, rel) in out.iter_mut().zip(rel) {
        let path = dir.join(rel);
        match std::fs::read(&path) {
            Ok(bytes) => *slot = bytes,
            Err(e) => {
                let what = format!("{}: {e}", path.display());
                if std::env::var("SEVM_REQUIRE_ALL").as_deref() == Ok("1") {
                    panic!("{test}: missing fixture {what}");
                }
                eprintln!("SKIPPED: {test}: missing fixture {what}");
                return None;
            }
        }
    }
    Some(out)
}

/// A deterministic RNG for a test.
pub(crate) fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Two 2048-bit RSA keys, generated once per test process from a fixed seed.
pub(crate) fn rsa_keys() -> &'static [rsa::RsaPrivateKey; 2] {
    static KEYS: OnceLock<[rsa::RsaPrivateKey; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut r = rng(0x5e0_2048);
        let a = rsa::RsaPrivateKey::new(&mut r, 2048).expect("rsa keygen");
        let b = rsa::RsaPrivateKey::new(&mut r, 2048).expect("rsa keygen");
        [a, b]
    })
}

/// A deterministic P-384 signing key.
pub(crate) fn ec_key(seed: u64) -> p384::ecdsa::SigningKey {
    p384::ecdsa::SigningKey::random(&mut rng(seed))
}
