//! Injectable randomness: every random draw of the emulated firmware (VEK,
//! nonces, IVs, MNONCE, key generation) comes from a [`PspRng`], so tests can
//! make runs reproducible (docs/protocol/emulator.md#determinism).

use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRngCore, OsRng, SeedableRng};

/// The firmware's random number generator.
///
/// `Box<dyn CryptoRngCore + Send>` rather than `Box<dyn RngCore + CryptoRng +
/// Send>`: a trait object can name only one non-auto trait, and
/// `CryptoRngCore` is rand_core's combination of the two. The box itself
/// implements `RngCore + CryptoRng`, so it can be passed wherever the RustCrypto
/// crates ask for `impl CryptoRngCore`.
pub type PspRng = Box<dyn CryptoRngCore + Send>;

/// The operating system's generator (`getrandom`), for production.
pub fn os_rng() -> PspRng {
    Box::new(OsRng)
}

/// A deterministic ChaCha20 generator seeded from `seed`, for tests and golden
/// files. Never use it for a real platform.
pub fn seeded_rng(seed: u64) -> PspRng {
    Box::new(ChaCha20Rng::seed_from_u64(seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(rng: &mut PspRng) -> [u8; 32] {
        let mut out = [0u8; 32];
        rng.fill_bytes(&mut out);
        out
    }

    #[test]
    fn seeded_rng_is_reproducible_and_seed_dependent() {
        assert_eq!(draw(&mut seeded_rng(7)), draw(&mut seeded_rng(7)));
        assert_ne!(draw(&mut seeded_rng(7)), draw(&mut seeded_rng(8)));
        // Pinned, so a change of generator (which would silently change every
        // golden file) is noticed. Computed independently in Python: rand_core
        // 0.6 `seed_from_u64` (PCG32 expansion of the seed into the 32-byte
        // key) then the ChaCha20 keystream with zero counter and nonce
        // (pyca/cryptography 48).
        assert_eq!(hex::encode(draw(&mut seeded_rng(7))), SEED7_FIRST_32);
    }

    const SEED7_FIRST_32: &str = "19454a27b752f905909507d6160ddc888e2df8b773098ef3f7bcd321a7caa748";

    #[test]
    fn os_rng_produces_distinct_draws() {
        let mut rng = os_rng();
        assert_ne!(draw(&mut rng), draw(&mut rng));
    }

    #[test]
    fn psp_rng_drives_rustcrypto_key_generation() {
        let mut rng = seeded_rng(1);
        let a = p384::SecretKey::random(&mut rng);
        let b = p384::SecretKey::random(&mut seeded_rng(1));
        assert_eq!(a.to_bytes(), b.to_bytes());
        let vek = crate::memory::Vek::generate(&mut rng);
        assert_ne!(vek.as_bytes(), &[0u8; 16]);
    }
}
