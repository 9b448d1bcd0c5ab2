//! The chip's versioned chip endorsement keys (VCEKs): one P-384 key per
//! (chip, TCB), derived from the chip's sealed VCEK seed
//! (docs/protocol/choices.md#u58).
//!
//! AMD's derivation inside the chip is not public and nobody outside the
//! chip can check it; what matters is that the key is stable for a chip
//! and a TCB, differs between TCBs, and cannot be computed without the
//! seed. The emulator keeps the shape of AMD's "hash sticks": each TCB
//! component's seed is hashed (255 − SVN) times, so a key for an older
//! TCB can be derived from a newer one's sticks but not the other way.

use hmac::{Hmac, Mac};
use p384::ecdsa::{SigningKey, VerifyingKey};
use p384::SecretKey;
use sev_proto::hash::{sha384, Sha384, SHA384_LEN};
use sev_proto::kdf::kdf;
use sev_proto::snp::{Product, TcbVersion};
use zeroize::Zeroizing;

use super::identity::VCEK_SEED_LEN;

/// The KDF label of the final derivation (the one AMD's firmware uses for
/// its VCEKs).
const VCEK_LABEL: &str = "sev-versioned-chip-endorsement-key";

/// The prefix of each component seed's HMAC input.
const COMPONENT_LABEL: &[u8] = b"sevm-emulated-vcek-component";

/// How many scalar candidates are tried before giving up. A candidate is
/// refused only when it is zero or not below the group order, with
/// probability below 2^-190; the bound keeps the loop finite.
const MAX_CANDIDATES: u32 = 16;

type HmacSha384 = Hmac<sha2::Sha384>;

/// The component's "hash stick": its seed hashed (255 − `svn`) times.
fn hash_stick(seed: &[u8; VCEK_SEED_LEN], index: u8, svn: u8) -> Zeroizing<[u8; SHA384_LEN]> {
    let mut stick = Zeroizing::new([0u8; SHA384_LEN]);
    // HMAC takes a key of any length: `new_from_slice` cannot fail here.
    if let Ok(mut mac) = <HmacSha384 as Mac>::new_from_slice(seed) {
        mac.update(COMPONENT_LABEL);
        mac.update(&[index]);
        stick.copy_from_slice(&mac.finalize().into_bytes());
    }
    for _ in 0..(255 - svn) {
        let next = sha384(&stick[..]);
        stick.copy_from_slice(&next);
    }
    stick
}

/// The VCEK of the chip whose seed is `seed`, emulating `product`, for
/// `tcb`. `None` only if no valid scalar came out of the KDF (never in
/// practice, see [`MAX_CANDIDATES`]).
pub(crate) fn vcek_signing_key(
    seed: &[u8; VCEK_SEED_LEN],
    product: Product,
    tcb: &TcbVersion,
) -> Option<SigningKey> {
    let root = vcek_secret(seed, product, tcb);
    (0..MAX_CANDIDATES).find_map(|counter| {
        let candidate = kdf(&root[..], 48, VCEK_LABEL, &counter.to_le_bytes());
        SecretKey::from_slice(&candidate)
            .ok()
            .map(|key| SigningKey::from(&key))
    })
}

/// The 48-byte secret of the chip's VCEK for `tcb`: SHA-384 over the
/// product's name and the five components' hash sticks. The VCEK's scalar
/// is drawn from it, and so are the keys a guest derives from the VCEK
/// (docs/protocol/snp.md#derived-keys), each with its own KDF label.
pub(crate) fn vcek_secret(
    seed: &[u8; VCEK_SEED_LEN],
    product: Product,
    tcb: &TcbVersion,
) -> Zeroizing<[u8; SHA384_LEN]> {
    let components = [tcb.fmc, tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode];
    let mut chain = Sha384::new();
    chain.update(product.name().as_bytes());
    for (index, svn) in (0u8..).zip(components) {
        chain.update(&hash_stick(seed, index, svn)[..]);
    }
    Zeroizing::new(chain.finish())
}

/// The public half of [`vcek_signing_key`].
pub(crate) fn vcek_public(
    seed: &[u8; VCEK_SEED_LEN],
    product: Product,
    tcb: &TcbVersion,
) -> Option<VerifyingKey> {
    vcek_signing_key(seed, product, tcb).map(|key| *key.verifying_key())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcb(snp: u8) -> TcbVersion {
        TcbVersion {
            fmc: 0,
            bootloader: 4,
            tee: 0,
            snp,
            microcode: 213,
        }
    }

    #[test]
    fn stable_per_seed_and_tcb() {
        let seed = [7u8; VCEK_SEED_LEN];
        let a = vcek_public(&seed, Product::Milan, &tcb(23)).expect("key");
        let b = vcek_public(&seed, Product::Milan, &tcb(23)).expect("key");
        assert_eq!(a, b);
    }

    #[test]
    fn differs_by_tcb_product_and_seed() {
        let seed = [7u8; VCEK_SEED_LEN];
        let base = vcek_public(&seed, Product::Milan, &tcb(23)).expect("key");
        let other_tcb = vcek_public(&seed, Product::Milan, &tcb(22)).expect("key");
        let other_product = vcek_public(&seed, Product::Genoa, &tcb(23)).expect("key");
        let other_seed = vcek_public(&[8u8; VCEK_SEED_LEN], Product::Milan, &tcb(23)).expect("key");
        assert_ne!(base, other_tcb);
        assert_ne!(base, other_product);
        assert_ne!(base, other_seed);
    }

    #[test]
    fn older_sticks_follow_from_newer_ones() {
        // The hash-stick property: hashing SVN n's stick once gives SVN n−1's.
        let seed = [3u8; VCEK_SEED_LEN];
        let newer = hash_stick(&seed, 3, 23);
        let older = hash_stick(&seed, 3, 22);
        assert_eq!(sha384(&newer[..]), *older);
    }
}
