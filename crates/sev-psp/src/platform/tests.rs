//! Unit tests of the platform and guest commands' checks. One identity
//! (2048-bit roots, seeded RNG) is created per test process and copied into
//! a fresh directory for each test.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use p384::SecretKey;
use sev_proto::abi::{ApiVersion, GuestState, Owner, PlatformState, Policy, Status};
use sev_proto::cert::chain::{CaChain, FullChain, PlatformChain};
use sev_proto::cert::sev::{Certificate, Slot};
use sev_proto::cert::{ca, Algorithm, Usage};
use sev_proto::measurement::{verify_measurement, MeasureBlob};
use sev_proto::secret::build_launch_secret;
use sev_proto::session::OwnerSession;

use super::*;
use crate::memory::{Region, VecBacking};
use crate::rng::seeded_rng;

pub(crate) const API: ApiVersion = ApiVersion::new(1, 55);
pub(crate) const BUILD: u8 = 21;

fn template() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("platform");
        let options = CreateOptions {
            api: API,
            build: BUILD,
            ark_bits: 2048,
            es_capable: true,
            max_asid: 16,
            min_sev_asid: 5,
        };
        Platform::create(&path, options, seeded_rng(42)).unwrap();
        (tmp, path)
    })
    .1
}

/// A copy of the template directory (own temp dir) and a platform on it.
pub(crate) struct Fresh {
    pub(crate) _tmp: tempfile::TempDir,
    pub(crate) path: PathBuf,
    pub(crate) p: Platform,
}

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

pub(crate) fn fresh(seed: u64) -> Fresh {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("platform");
    copy_dir(template(), &path);
    let p = Platform::open(&path, seeded_rng(seed)).unwrap();
    Fresh { _tmp: tmp, path, p }
}

fn mem() -> VecBacking {
    VecBacking::new(&[Region {
        gpa: 0,
        len: 0x10_0000,
    }])
    .unwrap()
}

fn export(p: &Platform) -> (Vec<u8>, Vec<u8>) {
    let mut pdh = vec![0u8; 0x824];
    let mut chain = vec![0u8; 0x186c];
    p.pdh_cert_export(&mut pdh, &mut chain).unwrap();
    (pdh, chain)
}

fn status_of(r: Result<impl Sized, FwError>) -> Status {
    match r {
        Ok(_) => Status::Success,
        Err(e) => e.status,
    }
}

#[test]
fn create_refuses_existing_and_open_reports_missing_and_damage() {
    let f = fresh(1);
    assert!(matches!(
        Platform::create(&f.path, CreateOptions::default(), seeded_rng(1)),
        Err(PlatformError::AlreadyExists { .. })
    ));
    let missing = f.path.join("nope");
    assert!(matches!(
        Platform::open(&missing, seeded_rng(1)),
        Err(PlatformError::NotInitialized { .. })
    ));
    let id = f.path.join("identity");
    let mut bytes = std::fs::read(&id).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&id, &bytes).unwrap();
    let err = Platform::open(&f.path, seeded_rng(1)).unwrap_err();
    assert_eq!(err.status(), Some(Status::SecureDataInvalid), "{err}");
}

#[test]
fn identity_chain_verifies_to_the_emulated_ark() {
    let f = fresh(2);
    f.p.init(false).unwrap();
    let (pdh, chain) = export(&f.p);
    let (ask, ark) = f.p.amd_chain();
    let ark_cert = ca::Certificate::decode(&ark).unwrap();
    let full = FullChain::from_parts(
        Certificate::decode(&pdh).unwrap(),
        PlatformChain::decode(&chain).unwrap(),
        CaChain::decode(&[ask, ark].concat()).unwrap(),
    );
    full.verify(&ark_cert).unwrap();
    // API version reported consistently: status, certificates, config.
    let status = f.p.platform_status().unwrap();
    assert_eq!(status.api, API);
    assert_eq!(status.build, BUILD);
    assert_eq!(full.pdh.api_version(), (API.major, API.minor));
    assert_eq!(full.pek.api_version(), (API.major, API.minor));
    let config = f.p.config();
    assert!(config.emulated);
    assert_eq!((config.api, config.build, config.cbitpos), (API, BUILD, 47));
    assert_eq!(config.ark_key_id, *ark_cert.key_id());
    assert_eq!(
        full.cek.signature(Slot::Sig1).algorithm(),
        Algorithm::RsaSha256
    );
    assert_eq!(full.pek.signature(Slot::Sig2).usage(), Usage::Cek);
}

#[test]
fn owner_launch_measure_secret_finish() {
    let f = fresh(3);
    let p = &f.p;
    let mem = mem();
    p.init(false).unwrap();
    let (pdh, _) = export(p);
    let pdh_key = *Certificate::decode(&pdh).unwrap().ec_public_key().unwrap();
    let policy = Policy::from_bits(0x1);
    let owner = OwnerSession::new(&pdh_key, policy.bits(), &mut seeded_rng(9));
    let godh = Certificate::godh(&owner.godh_public()).encode();
    let handle = p
        .launch_start(
            0,
            policy,
            Some(&godh),
            Some(&owner.session_buffer().to_bytes()),
        )
        .unwrap();
    assert_eq!(p.platform_status().unwrap().state, PlatformState::Working);
    p.activate(handle, 5).unwrap();
    let image: Vec<u8> = (0..0x2000u32).map(|i| (i * 7) as u8).collect();
    crate::memory::firmware_write(&mem, 0x1000, &image).unwrap();
    p.launch_update_data(handle, &mem, 0x1000, 0x2000).unwrap();
    let mut blob = [0u8; 48];
    assert_eq!(p.launch_measure(handle, &mut blob).unwrap(), 48);
    let blob = MeasureBlob::from_bytes(&blob);
    let ld: [u8; 32] = sha2::Sha256::digest(&image).into();
    verify_measurement(
        &owner.keys().tik,
        API.major,
        API.minor,
        BUILD,
        1,
        &ld,
        &blob,
    )
    .unwrap();

    let secret = [0x5au8; 32];
    let (hdr, trans) =
        build_launch_secret(owner.keys(), &[3; 16], &secret, Some(&blob.measurement));
    p.launch_secret(handle, &mem, &hdr.to_bytes(), 0x8000, 32, &trans)
        .unwrap();
    let mut plain = [0u8; 32];
    crate::memory::firmware_read(&mem, 0x8000, &mut plain).unwrap();
    assert_eq!(plain, secret);
    let mut seen = [0u8; 32];
    p.host_read(handle, &mem, 0x8000, &mut seen).unwrap();
    assert_ne!(seen, secret);
    p.launch_finish(handle).unwrap();
    let st = p.guest_status(handle).unwrap();
    assert_eq!(
        (st.state, st.asid, st.policy),
        (GuestState::Running, 5, policy)
    );
    let mut report = [0u8; 0xd0];
    p.attestation(handle, &[1; 16], &mut report).unwrap();
    let report = sev_proto::attestation::Report::decode(&report).unwrap();
    let full_pek = PlatformChain::decode(&export(p).1).unwrap().pek;
    report.verify(&full_pek).unwrap();
    assert_eq!(report.launch_digest(), &ld);
    assert_eq!(status_of(p.decommission(handle)), Status::Active);
    p.deactivate(handle).unwrap();
    p.decommission(handle).unwrap();
    assert_eq!(p.platform_status().unwrap().state, PlatformState::Init);
    let _ = (SecretKey::random(&mut seeded_rng(1)), Owner::SelfOwned);
}

use sha2::Digest as _;
