//! The SEV key-derivation function (docs/protocol/session.md#kdf) and the
//! HMAC-SHA-256 it is built on. The session key hierarchy derived with it
//! lives in [`crate::session`].
//!
//! `KDF` is NIST SP 800-108 in counter mode with HMAC-SHA-256 as the PRF and
//! little-endian encodings of the counter and of the output length:
//!
//! ```text
//! block_i = HMAC-SHA256(K_in, LE32(i) || label || 0x00 || context || LE32(L_bytes * 8))
//! ```
//!
//! The session keys are `master = KDF(Z, 16, "sev-master-secret", NONCE)`,
//! `KEK = KDF(master, 16, "sev-kek", "")` and `KIK = KDF(master, 16, "sev-kik", "")`.

use hmac::digest::generic_array::GenericArray;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// HMAC-SHA-256, the only MAC and PRF SEV uses.
pub(crate) type HmacSha256 = Hmac<Sha256>;

/// The label of the master-secret derivation.
pub const LABEL_MASTER_SECRET: &str = "sev-master-secret";
/// The label of the key-encryption-key derivation.
pub const LABEL_KEK: &str = "sev-kek";
/// The label of the key-integrity-key derivation.
pub const LABEL_KIK: &str = "sev-kik";

/// The longest output [`kdf`] produces: the largest byte count whose length
/// in bits still fits the 32-bit `L` field (2^29 − 1 bytes).
pub const KDF_MAX_LEN: usize = (u32::MAX / 8) as usize;

/// SHA-256's block size, the width HMAC pads its key to.
const HMAC_BLOCK: usize = 64;

/// Keys HMAC-SHA-256 with `key` of any length, without a fallible call.
///
/// RFC 2104 pads a key of at most one block with zeros to the block size
/// and first hashes a longer key; doing exactly that here lets us use the
/// infallible fixed-size constructor instead of `new_from_slice` (whose
/// `InvalidLength` error cannot occur for HMAC but would otherwise need an
/// `unwrap`).
pub(crate) fn hmac_sha256(key: &[u8]) -> HmacSha256 {
    let mut block = Zeroizing::new([0u8; HMAC_BLOCK]);
    if key.len() <= HMAC_BLOCK {
        for (dst, src) in block.iter_mut().zip(key) {
            *dst = *src;
        }
    } else {
        let digest = Zeroizing::new(Sha256::digest(key));
        for (dst, src) in block.iter_mut().zip(digest.iter()) {
            *dst = *src;
        }
    }
    let key_block = Zeroizing::new(GenericArray::from(*block));
    <HmacSha256 as KeyInit>::new(&key_block)
}

/// SP 800-108 counter-mode KDF with HMAC-SHA-256 (docs/protocol/session.md#kdf).
///
/// Returns `len` bytes. `len` is clamped to [`KDF_MAX_LEN`] (beyond it the
/// bit length cannot be encoded); every SEV derivation asks for 16 bytes, so
/// the clamp is never reached in practice and the returned vector's length is
/// authoritative.
pub fn kdf(key: &[u8], len: usize, label: &str, context: &[u8]) -> Zeroizing<Vec<u8>> {
    let len = len.min(KDF_MAX_LEN);
    // `len <= KDF_MAX_LEN` so `len * 8` fits in a u32; the fallback is dead.
    let bits = u32::try_from(len.saturating_mul(8)).unwrap_or(u32::MAX);
    let prf = hmac_sha256(key);
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    let mut counter: u32 = 1;
    while out.len() < len {
        let mut mac = prf.clone();
        mac.update(&counter.to_le_bytes());
        mac.update(label.as_bytes());
        mac.update(&[0u8]);
        mac.update(context);
        mac.update(&bits.to_le_bytes());
        let block = Zeroizing::new(mac.finalize().into_bytes());
        let take = (len - out.len()).min(block.len());
        out.extend_from_slice(block.get(..take).unwrap_or_default());
        // At most ceil(KDF_MAX_LEN / 32) < 2^32 blocks, so this never wraps.
        counter = counter.wrapping_add(1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    /// docs/protocol/test-vectors.md#kdf-and-session (virtee/sev src/session/key.rs, test
    /// `derive`): KDF(00×16, 16, "sev-master-secret", 00×16).
    #[test]
    fn kdf_known_answer_master_secret() {
        let out = kdf(&[0u8; 16], 16, "sev-master-secret", &[0u8; 16]);
        assert_eq!(hex::encode(&*out), "ab4d269fcc62bedb4511d56c386ce706");
    }

    /// docs/protocol/test-vectors.md#kdf-and-session: the single HMAC message of that KDF call,
    /// checked by MACing the reference's message bytes independently.
    #[test]
    fn kdf_message_layout_matches_reference() {
        let msg = unhex(
            "01000000 7365762d6d61737465722d736563726574 00 \
             00000000000000000000000000000000 80000000",
        );
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&[0u8; 16]).unwrap();
        mac.update(&msg);
        let block = mac.finalize().into_bytes();
        let out = kdf(&[0u8; 16], 16, "sev-master-secret", &[0u8; 16]);
        assert_eq!(&block[..16], &out[..]);
    }

    /// docs/protocol/test-vectors.md#kdf-and-session (virtee/sev src/session/mod.rs, test `mac`):
    /// HMAC-SHA256(00×16, 00×4).
    #[test]
    fn hmac_known_answer() {
        let mut mac = hmac_sha256(&[0u8; 16]);
        mac.update(&[0u8; 4]);
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "aa7855e13839dd767cd5da7c1ff5036540c9264b7a803029315e55375287b4af"
        );
    }

    /// Multi-block output: each block uses its own counter and the same L;
    /// checked against HMAC computed directly from the formula.
    #[test]
    fn kdf_multi_block_follows_formula() {
        let key = b"some key material";
        let out = kdf(key, 70, "label", b"ctx");
        assert_eq!(out.len(), 70);
        let mut expected = Vec::new();
        for i in 1u32..=3 {
            let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap();
            mac.update(&i.to_le_bytes());
            mac.update(b"label\0ctx");
            mac.update(&(70u32 * 8).to_le_bytes());
            expected.extend_from_slice(&mac.finalize().into_bytes());
        }
        assert_eq!(&out[..], &expected[..70]);
        assert!(kdf(key, 0, "label", b"ctx").is_empty());
    }

    /// The padded-key HMAC constructor agrees with the library's own keying
    /// for short, block-sized and long keys.
    #[test]
    fn hmac_keying_matches_library_for_all_key_lengths() {
        for len in [0usize, 1, 16, 48, 63, 64, 65, 100, 200] {
            let key: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut a = hmac_sha256(&key);
            let mut b = <HmacSha256 as Mac>::new_from_slice(&key).unwrap();
            a.update(b"message");
            b.update(b"message");
            assert_eq!(
                a.finalize().into_bytes(),
                b.finalize().into_bytes(),
                "{len}"
            );
        }
    }
}
