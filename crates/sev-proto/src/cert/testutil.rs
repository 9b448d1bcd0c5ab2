//! Test helpers: fixture access (skip or fail per `SEVM_REQUIRE_ALL`) and
//! deterministic keys shared by the tests of this crate.

use std::sync::OnceLock;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Reads fixture files (paths relative to `sev-testdata/`). When one is
/// missing, prints `SKIPPED: <test>: ...` and returns `None`, or panics when
/// `SEVM_REQUIRE_ALL=1` (see `sevm-testutil`).
pub(crate) fn fixtures<const N: usize>(test: &str, rel: [&str; N]) -> Option<[Vec<u8>; N]> {
    let mut out: [Vec<u8>; N] = std::array::from_fn(|_| Vec::new());
    for (slot, rel) in out.iter_mut().zip(rel) {
        *slot = sevm_testutil::fixture(test, rel)?;
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
