//! Shared by the integration tests: one prepared platform identity per host
//! and test process (2048-bit roots, seeded RNG), copied into a fresh
//! directory for each test; the guest owner's side of a launch.
#![allow(dead_code)]
// Test support: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sev_proto::abi::{ApiVersion, Policy};
use sev_proto::cert::ca;
use sev_proto::cert::chain::{CaChain, FullChain, PlatformChain};
use sev_proto::cert::sev::Certificate;
use sev_proto::session::OwnerSession;
use sev_psp::memory::{Region, VecBacking};
use sev_psp::rng::seeded_rng;
use sev_psp::{CreateOptions, Platform};

/// Two emulated hosts with their own identities (and roots).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// API 1.55 build 21.
    A,
    /// API 1.51 build 3 (older firmware).
    B,
}

impl Host {
    pub fn options(self) -> CreateOptions {
        let (api, build) = match self {
            Host::A => (ApiVersion::new(1, 55), 21),
            Host::B => (ApiVersion::new(1, 51), 3),
        };
        CreateOptions {
            api,
            build,
            ark_bits: 2048,
            es_capable: true,
            max_asid: 16,
            min_sev_asid: 5,
            snp: sev_psp::snp::SnpOptions::default(),
            unsigned_cek: false,
        }
    }
}

fn template(host: Host) -> &'static Path {
    static A: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    static B: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let cell = match host {
        Host::A => &A,
        Host::B => &B,
    };
    &cell
        .get_or_init(|| {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join("platform");
            let seed = match host {
                Host::A => 1000,
                Host::B => 2000,
            };
            Platform::create(&path, host.options(), seeded_rng(seed)).unwrap();
            (tmp, path)
        })
        .1
}

/// A platform on its own copy of a host's prepared directory.
pub struct Fresh {
    pub tmp: tempfile::TempDir,
    pub path: PathBuf,
    pub p: Platform,
}

pub fn fresh(host: Host, seed: u64) -> Fresh {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("platform");
    sevm_testutil::copy_platform(template(host), &path);
    let p = Platform::open(&path, seeded_rng(seed)).unwrap();
    Fresh { tmp, path, p }
}

/// Guest RAM: `len` bytes from 0.
pub fn ram(len: u64) -> VecBacking {
    VecBacking::new(&[Region { gpa: 0, len }]).unwrap()
}

/// What PDH_CERT_EXPORT and the AMD chain give a guest owner.
pub struct Exported {
    pub pdh: Vec<u8>,
    pub chain: Vec<u8>,
    pub ask: Vec<u8>,
    pub ark: Vec<u8>,
}

impl Exported {
    pub fn amd_certs(&self) -> Vec<u8> {
        [self.ask.clone(), self.ark.clone()].concat()
    }
}

pub fn export(p: &Platform) -> Exported {
    let mut pdh = vec![0u8; 0x824];
    let mut chain = vec![0u8; 0x186c];
    p.pdh_cert_export(&mut pdh, &mut chain).unwrap();
    let (ask, ark) = p.amd_chain();
    Exported {
        pdh,
        chain,
        ask,
        ark,
    }
}

/// The owner's side: verify the chain to the platform's ARK (trusted
/// explicitly), then build a session for the PDH. Returns the session and
/// the GODH certificate bytes.
pub fn owner_session(exported: &Exported, policy: Policy, seed: u64) -> (OwnerSession, Vec<u8>) {
    let ark = ca::Certificate::decode(&exported.ark).unwrap();
    let full = FullChain::from_parts(
        Certificate::decode(&exported.pdh).unwrap(),
        PlatformChain::decode(&exported.chain).unwrap(),
        CaChain::decode(&exported.amd_certs()).unwrap(),
    );
    let verified = full.verify(&ark).unwrap();
    let session = OwnerSession::new(
        verified.pdh_public_key(),
        policy.bits(),
        &mut seeded_rng(seed),
    );
    let godh = Certificate::godh(&session.godh_public()).encode().to_vec();
    (session, godh)
}
