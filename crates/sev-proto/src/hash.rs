//! SHA-256 for bulk input: the launch digest's firmware, kernel and initrd
//! (`sev-owner measure`) and the guest pages the emulated firmware measures
//! (LAUNCH_UPDATE_DATA). Small protocol hashes (HMACs, certificate digests)
//! stay with the RustCrypto `sha2` crate, which is also this crate's
//! reference for tests.
//!
//! # Which implementation, and why
//!
//! [`Sha256`] is `ring`'s SHA-256. `ring` picks its code path from the CPU's
//! features when the program runs: on x86-64 the SHA extensions (SHA-NI)
//! when present, else AVX assembly (Intel CPUs) or SSSE3 assembly, else a
//! portable fallback; on AArch64 the ARMv8 SHA-2 instructions. [`active`]
//! names the path taken on this CPU.
//!
//! Both candidate crates were measured on one AMD EPYC core with SHA-NI, AVX2
//! and SSSE3, each of `ring`'s assembly paths called directly and `sha2`
//! built twice (its default run-time SHA-NI detection, and `force-soft` for
//! CPUs without SHA-NI), hashing 1 MiB in memory, best of 300:
//!
//! | feature set | `ring` 0.17 | `sha2` 0.10 |
//! |---|---|---|
//! | SHA-NI | 1.59 GB/s | 1.59 GB/s (same instructions) |
//! | no SHA-NI: SSSE3 | 0.43 GB/s | 0.27 GB/s (portable Rust) |
//! | no SHA-NI: AVX (what `ring` uses on Intel only) | 0.21 GB/s on this AMD core | — |
//! | nothing | 0.33 GB/s | 0.27 GB/s |
//!
//! `ring` is as fast as `sha2` with SHA-NI and 1.6 times faster without it,
//! so it is the choice on every feature set. (`sha2`'s optional `asm`
//! feature, assembly from the `sha2-asm` crate for CPUs without SHA-NI, was
//! not measured: it is not among this workspace's dependencies.) The
//! benchmark of `sev-owner measure` (`cargo bench -p sev-tools --bench
//! measure`) prints both crates' speed on the machine it runs on, so a
//! regression shows.

use std::fmt;

use ring::digest::{Context, SHA256, SHA384};

/// Length of a SHA-256 digest.
pub const DIGEST_LEN: usize = 32;

/// A streaming SHA-256 with the fastest implementation for this CPU (see the
/// module documentation).
#[derive(Clone)]
pub struct Sha256(Context);

impl Sha256 {
    /// An empty hash.
    pub fn new() -> Self {
        Sha256(Context::new(&SHA256))
    }

    /// Appends `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest of everything appended.
    pub fn finish(self) -> [u8; DIGEST_LEN] {
        let mut out = [0u8; DIGEST_LEN];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sha256")
    }
}

/// Length of a SHA-384 digest (every SNP digest: the launch digest, page
/// contents, ID-block and key digests).
pub const SHA384_LEN: usize = 48;

/// A streaming SHA-384 (SNP), `ring`'s implementation like [`Sha256`].
#[derive(Clone)]
pub struct Sha384(Context);

impl Sha384 {
    /// An empty hash.
    pub fn new() -> Self {
        Sha384(Context::new(&SHA384))
    }

    /// Appends `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest of everything appended.
    pub fn finish(self) -> [u8; SHA384_LEN] {
        let mut out = [0u8; SHA384_LEN];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }
}

impl Default for Sha384 {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Sha384 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sha384")
    }
}

/// The SHA-384 digest of `data`.
pub fn sha384(data: &[u8]) -> [u8; SHA384_LEN] {
    let mut h = Sha384::new();
    h.update(data);
    h.finish()
}

/// The SHA-256 digest of `data`.
pub fn sha256(data: &[u8]) -> [u8; DIGEST_LEN] {
    let mut h = Sha256::new();
    h.update(data);
    h.finish()
}

/// The code path [`Sha256`] takes on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implementation {
    /// x86-64 SHA extensions (SHA-NI).
    ShaNi,
    /// x86-64 SIMD assembly without SHA extensions (AVX on Intel, SSSE3
    /// otherwise).
    X86Simd,
    /// ARMv8 SHA-2 instructions.
    ArmSha2,
    /// Portable code: no SHA or SIMD instructions were detected.
    Portable,
}

impl fmt::Display for Implementation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Implementation::ShaNi => "ring SHA-256, x86-64 SHA extensions (SHA-NI)",
            Implementation::X86Simd => "ring SHA-256, x86-64 AVX/SSSE3 assembly (no SHA-NI)",
            Implementation::ArmSha2 => "ring SHA-256, ARMv8 SHA-2 instructions",
            Implementation::Portable => "ring SHA-256, portable code",
        })
    }
}

/// The implementation [`Sha256`] uses on this CPU, detected the way `ring`
/// detects it.
pub fn active() -> Implementation {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("ssse3")
        {
            return Implementation::ShaNi;
        }
        if std::arch::is_x86_feature_detected!("ssse3") {
            return Implementation::X86Simd;
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("sha2") {
            return Implementation::ArmSha2;
        }
    }
    Implementation::Portable
}

/// The CPU features that decide the SHA-256 code path and its speed, as
/// Linux names them in `/proc/cpuinfo` (for benchmark reports).
pub fn cpu_features() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut found = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let checks = [
            ("sha_ni", has!("sha")),
            ("avx512f", has!("avx512f")),
            ("avx2", has!("avx2")),
            ("avx", has!("avx")),
            ("bmi2", has!("bmi2")),
            ("ssse3", has!("ssse3")),
        ];
        found.extend(checks.iter().filter(|(_, on)| *on).map(|(name, _)| *name));
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("sha2") {
            found.push("sha2");
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    /// FIPS 180-4 / NIST CAVP known answers, long enough to cross several
    /// blocks and the padding boundary.
    fn known_answers() -> Vec<(Vec<u8>, &'static str)> {
        vec![
            (
                Vec::new(),
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                b"abc".to_vec(),
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".to_vec(),
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
            ),
            (
                vec![b'a'; 1_000_000],
                "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
            ),
        ]
    }

    fn hex(d: &[u8]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Every implementation available here gives the known answers: the one
    /// chosen ([`Sha256`], whole and streamed in odd pieces) and the RustCrypto
    /// reference.
    #[test]
    fn every_implementation_gives_the_known_answers() {
        for (msg, want) in known_answers() {
            assert_eq!(hex(&sha256(&msg)), want, "chosen, one call");
            let mut h = Sha256::new();
            for piece in msg.chunks(1000 + 7) {
                h.update(piece);
            }
            assert_eq!(hex(&h.clone().finish()), want, "chosen, streamed");
            assert_eq!(hex(&sha2::Sha256::digest(&msg)), want, "sha2");
        }
    }

    /// The detected path agrees with the detected features.
    #[test]
    fn active_matches_the_features() {
        let features = cpu_features();
        let active = active();
        if features.contains(&"sha_ni") && features.contains(&"ssse3") {
            assert_eq!(active, Implementation::ShaNi);
        } else if cfg!(target_arch = "x86_64") && features.contains(&"ssse3") {
            assert_eq!(active, Implementation::X86Simd);
        }
        assert!(active.to_string().starts_with("ring SHA-256"));
        assert_eq!(format!("{:?}", Sha256::default()), "Sha256");
    }

    #[test]
    fn sha384_matches_the_reference_in_pieces() {
        // FIPS 180-4 "abc", then a long message fed in uneven pieces.
        assert_eq!(
            hex(&sha384(b"abc")),
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
             8086072ba1e7cc2358baeca134c825a7"
        );
        let msg: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut h = Sha384::new();
        for piece in msg.chunks(333) {
            h.update(piece);
        }
        assert_eq!(h.finish().as_slice(), sha2::Sha384::digest(&msg).as_slice());
        assert_eq!(format!("{:?}", Sha384::default()), "Sha384");
    }
}
