//! Guest-owner session establishment: ECDH, the transport keys and the
//! 128-byte session buffer of LAUNCH_START / SEND_START / RECEIVE_START
//! (docs/protocol/session.md#key-agreement, docs/protocol/session.md#wrapping,
//! docs/protocol/session.md#firmware-checks, docs/protocol/session.md#session-buffer,
//! docs/protocol/migration.md#send-start).
//!
//! The owner side (or the source firmware in SEND_START) calls [`wrap`]; the
//! firmware side (LAUNCH_START, RECEIVE_START) calls [`unwrap`], which checks
//! WRAP_MAC, decrypts TEK ‖ TIK and then checks POLICY_MAC, all MAC
//! comparisons in constant time. [`OwnerSession`] bundles the owner's whole
//! job: an ephemeral GODH key pair, fresh TEK/TIK, nonce and wrap IV.

use core::fmt;

use aes::cipher::{KeyIvInit, StreamCipher};
use hmac::Mac;
use p384::{PublicKey, SecretKey};
use rand_core::CryptoRngCore;
use subtle::{Choice, ConstantTimeEq};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::kdf::{hmac_sha256, kdf, LABEL_KEK, LABEL_KIK, LABEL_MASTER_SECRET};

/// AES-128 in CTR mode with a 128-bit big-endian counter (OpenSSL semantics).
pub(crate) type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// Why a session buffer or key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// WRAP_MAC does not match HMAC(KIK, WRAP_TK): wrong PDH/GODH pair,
    /// wrong nonce, or a modified WRAP_TK / WRAP_MAC.
    #[error("session WRAP_MAC check failed (wrong key agreement or tampered wrapped keys)")]
    WrapMac,
    /// POLICY_MAC does not match HMAC(TIK, POLICY): the policy given with the
    /// command is not the one the guest owner wrapped the keys for.
    #[error("session POLICY_MAC check failed for policy {policy:#010x}")]
    PolicyMac {
        /// The policy the check was made against.
        policy: u32,
    },
    /// A session buffer of the wrong size.
    #[error("session buffer is {actual} bytes, expected {expected}")]
    SessionLength {
        /// Required size (0x80).
        expected: usize,
        /// Size given.
        actual: usize,
    },
    /// A raw key of the wrong size (e.g. a `tek.bin` file).
    #[error("{key} is {actual} bytes, expected {expected}")]
    KeyLength {
        /// Which key.
        key: &'static str,
        /// Required size (16).
        expected: usize,
        /// Size given.
        actual: usize,
    },
}

macro_rules! key_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// 16 bytes, zeroed on drop, compared in constant time, and never
        /// printed by `Debug`.
        #[derive(Clone, Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; 16]);

        impl $name {
            /// The key's size in bytes.
            pub const LEN: usize = 16;

            /// A key from its raw bytes.
            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                $name(bytes)
            }

            /// A key from a slice that must be exactly 16 bytes long.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, SessionError> {
                let array: [u8; 16] = bytes.try_into().map_err(|_| SessionError::KeyLength {
                    key: stringify!($name),
                    expected: Self::LEN,
                    actual: bytes.len(),
                })?;
                Ok($name(array))
            }

            /// A fresh random key.
            pub fn random(rng: &mut impl CryptoRngCore) -> Self {
                let mut key = $name([0u8; 16]);
                rng.fill_bytes(&mut key.0);
                key
            }

            /// The raw key bytes.
            pub const fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(..)"))
            }
        }

        impl ConstantTimeEq for $name {
            fn ct_eq(&self, other: &Self) -> Choice {
                self.0.ct_eq(&other.0)
            }
        }
    };
}

key_type!(
    /// Transport Encryption Key: AES-128 key of secret and transport packets.
    Tek
);
key_type!(
    /// Transport Integrity Key: HMAC key of the policy, the measurement,
    /// secret and transport packets.
    Tik
);
key_type!(
    /// Key Encryption Key: AES-128-CTR key that wraps TEK ‖ TIK.
    Kek
);
key_type!(
    /// Key Integrity Key: HMAC key over the wrapped TEK ‖ TIK.
    Kik
);
key_type!(
    /// The session master secret, derived from the ECDH secret and nonce.
    MasterSecret
);

/// The pair of transport keys a session carries.
#[derive(Clone, Debug)]
pub struct TransportKeys {
    /// Transport encryption key.
    pub tek: Tek,
    /// Transport integrity key.
    pub tik: Tik,
}

impl TransportKeys {
    /// Fresh random TEK and TIK.
    pub fn random(rng: &mut impl CryptoRngCore) -> Self {
        TransportKeys {
            tek: Tek::random(rng),
            tik: Tik::random(rng),
        }
    }
}

impl ConstantTimeEq for TransportKeys {
    fn ct_eq(&self, other: &Self) -> Choice {
        self.tek.ct_eq(&other.tek) & self.tik.ct_eq(&other.tik)
    }
}

/// The ECDH shared secret Z: the affine x coordinate of `secret · public`,
/// 48 bytes big-endian (docs/protocol/session.md#key-agreement; OpenSSL's ECDH output).
///
/// `PublicKey` guarantees its point is on P-384 and not the identity, so the
/// result is always defined.
pub fn shared_secret(secret: &SecretKey, public: &PublicKey) -> Zeroizing<[u8; 48]> {
    let shared = p384::ecdh::diffie_hellman(secret.to_nonzero_scalar(), public.as_affine());
    let mut z = Zeroizing::new([0u8; 48]);
    for (dst, src) in z.iter_mut().zip(shared.raw_secret_bytes().iter()) {
        *dst = *src;
    }
    z
}

/// The session buffer (docs/protocol/session.md#session-buffer), 0x80 bytes. Nothing in it is
/// secret: TEK ‖ TIK are wrapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionBuffer {
    /// 0x00: the nonce that enters the master-secret derivation.
    pub nonce: [u8; 16],
    /// 0x10: AES-128-CTR(KEK, WRAP_IV, TEK ‖ TIK).
    pub wrap_tk: [u8; 32],
    /// 0x30: the IV of that encryption.
    pub wrap_iv: [u8; 16],
    /// 0x40: HMAC-SHA256(KIK, WRAP_TK).
    pub wrap_mac: [u8; 32],
    /// 0x60: HMAC-SHA256(TIK, LE32(POLICY)).
    pub policy_mac: [u8; 32],
}

impl SessionBuffer {
    /// Encoded size (0x80).
    pub const SIZE: usize = 0x80;

    /// The 128 bytes in firmware order.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        let (nonce, rest) = out.split_at_mut(16);
        let (wrap_tk, rest) = rest.split_at_mut(32);
        let (wrap_iv, rest) = rest.split_at_mut(16);
        let (wrap_mac, policy_mac) = rest.split_at_mut(32);
        nonce.copy_from_slice(&self.nonce);
        wrap_tk.copy_from_slice(&self.wrap_tk);
        wrap_iv.copy_from_slice(&self.wrap_iv);
        wrap_mac.copy_from_slice(&self.wrap_mac);
        policy_mac.copy_from_slice(&self.policy_mac);
        out
    }

    /// Decodes the 128 firmware bytes.
    pub fn from_bytes(bytes: &[u8; Self::SIZE]) -> Self {
        let (nonce, rest) = split::<16>(bytes);
        let (wrap_tk, rest) = split::<32>(rest);
        let (wrap_iv, rest) = split::<16>(rest);
        let (wrap_mac, rest) = split::<32>(rest);
        let (policy_mac, _) = split::<32>(rest);
        SessionBuffer {
            nonce,
            wrap_tk,
            wrap_iv,
            wrap_mac,
            policy_mac,
        }
    }

    /// Decodes a buffer that must be exactly 0x80 bytes long (e.g. the
    /// decoded contents of a sevctl `*_session.b64` file).
    pub fn decode(bytes: &[u8]) -> Result<Self, SessionError> {
        let array: &[u8; Self::SIZE] =
            bytes.try_into().map_err(|_| SessionError::SessionLength {
                expected: Self::SIZE,
                actual: bytes.len(),
            })?;
        Ok(Self::from_bytes(array))
    }
}

/// Splits `N` bytes off the front of `bytes`, zero-filling if it is shorter
/// (only ever called with lengths that fit).
fn split<const N: usize>(bytes: &[u8]) -> ([u8; N], &[u8]) {
    let mut head = [0u8; N];
    let n = N.min(bytes.len());
    let (h, rest) = bytes.split_at(n);
    for (dst, src) in head.iter_mut().zip(h) {
        *dst = *src;
    }
    (head, rest)
}

/// HMAC-SHA256 of `msg` under a 16-byte key.
fn mac16(key: &[u8; 16], msg: &[u8]) -> [u8; 32] {
    let mut mac = hmac_sha256(key);
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// Copies the first 16 bytes of a KDF output into an array.
fn first16(bytes: &[u8]) -> Zeroizing<[u8; 16]> {
    let mut key = Zeroizing::new([0u8; 16]);
    for (dst, src) in key.iter_mut().zip(bytes) {
        *dst = *src;
    }
    key
}

/// `master = KDF(Z, 16, "sev-master-secret", NONCE)` (docs/protocol/session.md#kdf).
///
/// `z` is the ECDH shared secret (48 bytes, big-endian x coordinate, see
/// [`shared_secret`]); any length is accepted because the
/// published test vectors use a 16-byte all-zero `z`.
pub fn master_secret(z: &[u8], nonce: &[u8; 16]) -> MasterSecret {
    let out = kdf(z, 16, LABEL_MASTER_SECRET, nonce);
    MasterSecret::from_bytes(*first16(&out))
}

/// `KEK = KDF(master, 16, "sev-kek", "")` (docs/protocol/session.md#kdf).
pub fn kek(master: &MasterSecret) -> Kek {
    let out = kdf(master.as_bytes(), 16, LABEL_KEK, &[]);
    Kek::from_bytes(*first16(&out))
}

/// `KIK = KDF(master, 16, "sev-kik", "")` (docs/protocol/session.md#kdf).
pub fn kik(master: &MasterSecret) -> Kik {
    let out = kdf(master.as_bytes(), 16, LABEL_KIK, &[]);
    Kik::from_bytes(*first16(&out))
}

/// POLICY_MAC = HMAC-SHA256(TIK, LE32(policy)).
fn policy_mac(tik: &Tik, policy: u32) -> [u8; 32] {
    mac16(tik.as_bytes(), &policy.to_le_bytes())
}

/// Wraps TEK ‖ TIK for a session (docs/protocol/session.md#wrapping): the owner's side of
/// LAUNCH_START and the source firmware's side of SEND_START.
///
/// `z` is the ECDH shared secret ([`shared_secret`]), `nonce` and `wrap_iv`
/// must be fresh random values.
pub fn wrap(
    z: &[u8],
    nonce: &[u8; 16],
    wrap_iv: &[u8; 16],
    keys: &TransportKeys,
    policy: u32,
) -> SessionBuffer {
    let master = master_secret(z, nonce);
    let kek = kek(&master);
    let kik = kik(&master);

    let mut plain = Zeroizing::new([0u8; 32]);
    let (tek_half, tik_half) = plain.split_at_mut(16);
    tek_half.copy_from_slice(keys.tek.as_bytes());
    tik_half.copy_from_slice(keys.tik.as_bytes());
    let mut wrap_tk = *plain;
    Aes128Ctr::new(kek.as_bytes().into(), wrap_iv.into()).apply_keystream(&mut wrap_tk);

    SessionBuffer {
        nonce: *nonce,
        wrap_tk,
        wrap_iv: *wrap_iv,
        wrap_mac: mac16(kik.as_bytes(), &wrap_tk),
        policy_mac: policy_mac(&keys.tik, policy),
    }
}

/// Unwraps the transport keys from a session buffer, as the firmware does in
/// LAUNCH_START and RECEIVE_START (docs/protocol/session.md#firmware-checks (step 3),
/// docs/protocol/migration.md#send-start).
///
/// Checks WRAP_MAC first ([`SessionError::WrapMac`]), then decrypts TEK ‖ TIK
/// and checks POLICY_MAC against `policy`, the policy of the command
/// ([`SessionError::PolicyMac`]). Both comparisons are constant-time.
///
/// The firmware status code for either failure is the caller's choice;
/// docs/protocol/choices.md#u2 recommends BAD_MEASUREMENT (0x0B) for both.
pub fn unwrap(
    z: &[u8],
    session: &SessionBuffer,
    policy: u32,
) -> Result<TransportKeys, SessionError> {
    let master = master_secret(z, &session.nonce);
    let kek = kek(&master);
    let kik = kik(&master);

    let wrap_mac = mac16(kik.as_bytes(), &session.wrap_tk);
    if !bool::from(wrap_mac.ct_eq(&session.wrap_mac)) {
        return Err(SessionError::WrapMac);
    }

    let mut plain = Zeroizing::new(session.wrap_tk);
    Aes128Ctr::new(kek.as_bytes().into(), (&session.wrap_iv).into())
        .apply_keystream(plain.as_mut_slice());
    // Copy straight into the zeroize-on-drop key types (no loose copies).
    let mut keys = TransportKeys {
        tek: Tek::from_bytes([0; 16]),
        tik: Tik::from_bytes([0; 16]),
    };
    let (tek, tik) = plain.split_at(16);
    keys.tek.0.copy_from_slice(tek);
    keys.tik.0.copy_from_slice(tik);

    let expected = policy_mac(&keys.tik, policy);
    if !bool::from(expected.ct_eq(&session.policy_mac)) {
        return Err(SessionError::PolicyMac { policy });
    }
    Ok(keys)
}

/// The guest owner's half of a launch session: the GODH public key to put
/// in the GODH certificate, the session buffer to hand to the VMM, and the
/// transport keys to keep (for measurement checks and secret packets).
///
/// The GODH private key is used once, to compute Z, and is not retained.
#[derive(Clone, Debug)]
pub struct OwnerSession {
    godh_public: PublicKey,
    keys: TransportKeys,
    session: SessionBuffer,
    policy: u32,
}

impl OwnerSession {
    /// Starts a session with the platform whose (already validated) PDH
    /// public key is `pdh`: generates the GODH key pair, TEK, TIK, nonce and
    /// wrap IV from `rng`.
    pub fn new(pdh: &PublicKey, policy: u32, rng: &mut impl CryptoRngCore) -> Self {
        let godh = SecretKey::random(rng);
        let keys = TransportKeys::random(rng);
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        let mut wrap_iv = [0u8; 16];
        rng.fill_bytes(&mut wrap_iv);
        Self::from_parts(pdh, &godh, &nonce, &wrap_iv, keys, policy)
    }

    /// A session from fixed values (known-answer tests, reproducible runs).
    pub fn from_parts(
        pdh: &PublicKey,
        godh: &SecretKey,
        nonce: &[u8; 16],
        wrap_iv: &[u8; 16],
        keys: TransportKeys,
        policy: u32,
    ) -> Self {
        let z = shared_secret(godh, pdh);
        let session = wrap(z.as_slice(), nonce, wrap_iv, &keys, policy);
        OwnerSession {
            godh_public: godh.public_key(),
            keys,
            session,
            policy,
        }
    }

    /// The owner's ephemeral public key (goes into the GODH certificate).
    pub fn godh_public(&self) -> PublicKey {
        self.godh_public
    }

    /// The session buffer for LAUNCH_START.
    pub fn session_buffer(&self) -> &SessionBuffer {
        &self.session
    }

    /// The transport keys the firmware will unwrap.
    pub fn keys(&self) -> &TransportKeys {
        &self.keys
    }

    /// The policy POLICY_MAC was computed for.
    pub fn policy(&self) -> u32 {
        self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p384::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
    use p384::EncodedPoint;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;
    use std::path::PathBuf;

    fn unhex<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s.replace(' ', "")).unwrap().try_into().unwrap()
    }

    fn seq16(start: u8) -> [u8; 16] {
        core::array::from_fn(|i| start + i as u8)
    }

    /// The path of a shared fixture, or `None` (after printing SKIPPED) when
    /// it is missing and `SEVM_REQUIRE_ALL` is not set.
    fn testdata(test: &str, rel: &str) -> Option<PathBuf> {
        sevm_testutil::fixture_path(test, rel)
    }

    fn public_key_be(qx: &[u8; 48], qy: &[u8; 48]) -> PublicKey {
        let point = EncodedPoint::from_affine_coordinates(qx.into(), qy.into(), false);
        PublicKey::from_encoded_point(&point).unwrap()
    }

    /// docs/protocol/test-vectors.md#kdf-and-session (virtee/sev src/session/mod.rs, test
    /// `session`): Z = 00×16, NONCE = WRAP_IV = TEK = TIK = 00×16, POLICY = 0.
    #[test]
    fn session_known_answer_zero_inputs() {
        let keys = TransportKeys {
            tek: Tek::from_bytes([0; 16]),
            tik: Tik::from_bytes([0; 16]),
        };
        let s = wrap(&[0u8; 16], &[0; 16], &[0; 16], &keys, 0);
        assert_eq!(
            hex::encode(s.wrap_tk),
            "2137bc7f9bb8bd7c3e55a576a15d3454b3856b8ba27afadf46dcfee9f02c02c4"
        );
        assert_eq!(
            hex::encode(s.wrap_mac),
            "3176c0752738bd9d5e86689534020f528c088f16238826b000b327dee6aeed7d"
        );
        assert_eq!(
            hex::encode(s.policy_mac),
            "aa7855e13839dd767cd5da7c1ff5036540c9264b7a803029315e55375287b4af"
        );
        let back = unwrap(&[0u8; 16], &s, 0).unwrap();
        assert!(bool::from(back.ct_eq(&keys)));
    }

    // docs/protocol/test-vectors.md#ecdh-session (derived): the Naples PDH and the fixed GODH key.
    const PDH_QX: &str = "36024908d6d5b6a134c1c9aff652c39eaec13f3afeb487ac6210f119199e08e677245f8f4fe9c63ad525245457205295";
    const PDH_QY: &str = "3ec89bb2111b4297695805b4111982f44540f44bc45e5c19719dd726a1e05bb450a41736f6d21d84e92aab209ff16f03";
    const GODH_D: &str = "8fe744ddc6481f755c4ea0234fbfd45e44374c265107bf7b47de043007e469369e830f953ac8b691b136e3cddb269fae";
    const GODH_QX: &str = "f54bc86bea69e515d9688fd1767b3aef5017385f85e84ca17edc411d7a8b5d20cf94491a30b145890b202883da4be08f";
    const GODH_QY: &str = "0bba090a345fd7c1ea9e3b73262efb1d1b272ed877242da6d880b5696b0fdd6347f977dead28b4ddafc9d0c8ac0869b8";
    const Z_11_2: &str = "7be34c0ef47fc437ebcc45d14503c5c4aeb458f60e0de7431337fef73d8f57e1a6287e945a73d04e9cdf8b66362c143b";
    const SESSION_11_2: &str = "000102030405060708090a0b0c0d0e0f\
        c44cc3e6e390f099014391ec0fc00ecee4a5adf68a0a4f9ae70f5e273f556ee4\
        101112131415161718191a1b1c1d1e1f\
        d92eaf0eb5b84aa18d70d021931d665b031578972a9bedbbb28bdd730a07b1ad\
        da0e0ec9ab90ccdf7f3e24a586511c2dc55694b3541828e79ec83d525299c961";

    fn keys_11_2() -> TransportKeys {
        TransportKeys {
            tek: Tek::from_bytes(seq16(0x20)),
            tik: Tik::from_bytes(seq16(0x30)),
        }
    }

    fn check_session_11_2(pdh: &PublicKey) {
        let godh = SecretKey::from_bytes(&unhex::<48>(GODH_D).into()).unwrap();
        let pub_point = godh.public_key().to_encoded_point(false);
        assert_eq!(hex::encode(pub_point.x().unwrap()), GODH_QX);
        assert_eq!(hex::encode(pub_point.y().unwrap()), GODH_QY);

        let z = shared_secret(&godh, pdh);
        assert_eq!(hex::encode(*z), Z_11_2);

        let owner =
            OwnerSession::from_parts(pdh, &godh, &seq16(0x00), &seq16(0x10), keys_11_2(), 1);
        assert_eq!(owner.godh_public(), godh.public_key());
        assert_eq!(owner.policy(), 1);
        let bytes = owner.session_buffer().to_bytes();
        assert_eq!(hex::encode(bytes), SESSION_11_2);
        assert_eq!(SessionBuffer::from_bytes(&bytes), *owner.session_buffer());

        let back = unwrap(z.as_slice(), owner.session_buffer(), 1).unwrap();
        assert!(bool::from(back.ct_eq(owner.keys())));
    }

    /// docs/protocol/test-vectors.md#ecdh-session, hermetic variant: PDH coordinates hard-coded
    /// from the reference table (big-endian).
    #[test]
    fn ecdh_session_known_answer_hardcoded_pdh() {
        let pdh = public_key_be(&unhex(PDH_QX), &unhex(PDH_QY));
        check_session_11_2(&pdh);
    }

    /// docs/protocol/test-vectors.md#ecdh-session from the real Naples PDH certificate: QX at 0x14
    /// and QY at 0x5C, 72 bytes little-endian each (docs/protocol/certificates.md#sev-certificate).
    #[test]
    fn ecdh_session_known_answer_naples_pdh_cert() {
        let test = "ecdh_session_known_answer_naples_pdh_cert";
        let Some(path) = testdata(test, "certs/naples/pdh.cert") else {
            return;
        };
        let cert = std::fs::read(path).unwrap();
        assert_eq!(cert.len(), 0x824);
        let coord = |off: usize| -> [u8; 48] {
            let le = &cert[off..off + 72];
            assert!(le[48..].iter().all(|&b| b == 0), "padding not zero");
            let mut be: [u8; 48] = le[..48].try_into().unwrap();
            be.reverse();
            be
        };
        let (qx, qy) = (coord(0x14), coord(0x5C));
        assert_eq!(hex::encode(qx), PDH_QX);
        assert_eq!(hex::encode(qy), PDH_QY);
        check_session_11_2(&public_key_be(&qx, &qy));
    }

    /// docs/protocol/test-vectors.md#ecdh-session: the GODH QX as stored little-endian in a cert.
    #[test]
    fn godh_qx_little_endian_storage() {
        let mut le = unhex::<48>(GODH_QX);
        le.reverse();
        assert_eq!(
            hex::encode(le),
            "8fe04bda8328200b8945b1301a4994cf205d8b7a1d41dc7ea14ce8855f381750ef3a7b76d18f68d915e569ea6bc84bf5"
        );
    }

    /// Owner and firmware agree on Z and the keys with random key pairs.
    #[test]
    fn owner_session_round_trip_with_firmware_side() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let pdh_secret = SecretKey::random(&mut rng);
        let owner = OwnerSession::new(&pdh_secret.public_key(), 0x0000_0005, &mut rng);
        // Firmware side: Z from the PDH private key and the GODH public key.
        let z = shared_secret(&pdh_secret, &owner.godh_public());
        let keys = unwrap(z.as_slice(), owner.session_buffer(), 0x5).unwrap();
        assert!(bool::from(keys.ct_eq(owner.keys())));
        // A second session uses fresh values.
        let other = OwnerSession::new(&pdh_secret.public_key(), 0x5, &mut rng);
        assert_ne!(other.session_buffer(), owner.session_buffer());
        assert_ne!(other.godh_public(), owner.godh_public());
        // A different platform key cannot unwrap.
        let wrong = SecretKey::random(&mut rng);
        let z_wrong = shared_secret(&wrong, &owner.godh_public());
        assert_eq!(
            unwrap(z_wrong.as_slice(), owner.session_buffer(), 0x5).unwrap_err(),
            SessionError::WrapMac
        );
    }

    /// Every byte of the session buffer is authenticated: flipping one makes
    /// `unwrap` fail with the variant of the MAC that covers it. NONCE,
    /// WRAP_TK and WRAP_MAC break WRAP_MAC; WRAP_IV (only the decryption
    /// changes) and POLICY_MAC break POLICY_MAC.
    #[test]
    fn tampering_any_session_byte_fails() {
        let pdh = public_key_be(&unhex(PDH_QX), &unhex(PDH_QY));
        let godh = SecretKey::from_bytes(&unhex::<48>(GODH_D).into()).unwrap();
        let z = shared_secret(&godh, &pdh);
        let good = wrap(z.as_slice(), &seq16(0), &seq16(0x10), &keys_11_2(), 1).to_bytes();
        for i in 0..SessionBuffer::SIZE {
            for bit in [0x01u8, 0x80] {
                let mut bytes = good;
                bytes[i] ^= bit;
                let s = SessionBuffer::from_bytes(&bytes);
                let err = unwrap(z.as_slice(), &s, 1).unwrap_err();
                let expected = match i {
                    0x00..=0x2F | 0x40..=0x5F => SessionError::WrapMac,
                    _ => SessionError::PolicyMac { policy: 1 },
                };
                assert_eq!(err, expected, "byte {i:#x} bit {bit:#x}");
            }
        }
    }

    /// A policy other than the wrapped one fails POLICY_MAC.
    #[test]
    fn changed_policy_fails_policy_mac() {
        let z = [0x42u8; 48];
        let s = wrap(&z, &seq16(1), &seq16(2), &keys_11_2(), 0x3);
        assert!(unwrap(&z, &s, 0x3).is_ok());
        for policy in [0x0, 0x1, 0x2, 0x7, 0x0001_0003, 0x0100_0003, 0x8000_0003] {
            assert_eq!(
                unwrap(&z, &s, policy).unwrap_err(),
                SessionError::PolicyMac { policy }
            );
        }
    }

    #[test]
    fn session_buffer_decode_checks_length() {
        let bytes = [7u8; 0x81];
        assert_eq!(
            SessionBuffer::decode(&bytes).unwrap_err(),
            SessionError::SessionLength {
                expected: 0x80,
                actual: 0x81
            }
        );
        assert_eq!(
            SessionBuffer::decode(&bytes[..0x7F]).unwrap_err(),
            SessionError::SessionLength {
                expected: 0x80,
                actual: 0x7F
            }
        );
        let s = SessionBuffer::decode(&bytes[..0x80]).unwrap();
        assert_eq!(s.to_bytes(), [7u8; 0x80]);
    }

    #[test]
    fn key_types_redact_debug_and_check_length() {
        let tek = Tek::from_bytes([0xAB; 16]);
        assert_eq!(format!("{tek:?}"), "Tek(..)");
        assert_eq!(format!("{:?}", Tik::from_bytes([1; 16])), "Tik(..)");
        assert_eq!(format!("{:?}", Kek::from_bytes([1; 16])), "Kek(..)");
        assert_eq!(format!("{:?}", Kik::from_bytes([1; 16])), "Kik(..)");
        assert_eq!(
            format!("{:?}", MasterSecret::from_bytes([1; 16])),
            "MasterSecret(..)"
        );
        let keys = TransportKeys {
            tek,
            tik: Tik::from_bytes([0xCD; 16]),
        };
        let dbg = format!("{keys:?}");
        assert!(!dbg.to_lowercase().contains("ab"), "{dbg}");
        assert!(!dbg.contains("171"), "{dbg}");

        assert_eq!(
            Tik::from_slice(&[0; 15]).unwrap_err(),
            SessionError::KeyLength {
                key: "Tik",
                expected: 16,
                actual: 15
            }
        );
        assert_eq!(Tek::from_slice(&[9; 16]).unwrap().as_bytes(), &[9; 16]);
    }

    /// docs/protocol/test-vectors.md#kdf-and-session (virtee/sev src/session/key.rs, test
    /// `derive`): the master secret of KDF(00×16, 16, "sev-master-secret", 00×16).
    #[test]
    fn master_secret_known_answer() {
        let master = master_secret(&[0u8; 16], &[0u8; 16]);
        assert_eq!(
            hex::encode(master.as_bytes()),
            "ab4d269fcc62bedb4511d56c386ce706"
        );
    }

    /// docs/protocol/test-vectors.md#kdf-and-session session test (derived values): KEK and KIK
    /// from the published master secret.
    #[test]
    fn kek_kik_known_answer() {
        let master = master_secret(&[0u8; 16], &[0u8; 16]);
        assert_eq!(
            hex::encode(kek(&master).as_bytes()),
            "b6abfbfb75ea1ea74ed8750b8afdb973"
        );
        assert_eq!(
            hex::encode(kik(&master).as_bytes()),
            "53b524bf5669a363f365c864acba8572"
        );
    }

    /// docs/protocol/test-vectors.md#ecdh-session (derived): master/KEK/KIK from the Naples ECDH Z.
    #[test]
    fn kdf_chain_from_real_z() {
        let z: [u8; 48] = unhex("7be34c0ef47fc437ebcc45d14503c5c4aeb458f60e0de7431337fef73d8f57e1a6287e945a73d04e9cdf8b66362c143b");
        let nonce: [u8; 16] = core::array::from_fn(|i| i as u8);
        let master = master_secret(&z, &nonce);
        assert_eq!(
            hex::encode(master.as_bytes()),
            "014d09949d42108057fc783a252b6781"
        );
        assert_eq!(
            hex::encode(kek(&master).as_bytes()),
            "b56cdd777a5fbc9bce11a7217598ac8a"
        );
        assert_eq!(
            hex::encode(kik(&master).as_bytes()),
            "8b5d0e91f211c152df0bf95383a424e2"
        );
    }
}
