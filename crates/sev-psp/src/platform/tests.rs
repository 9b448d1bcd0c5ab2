//! Unit tests of the platform and guest commands' checks. One identity
//! (2048-bit roots, seeded RNG) is created per test process and copied into
//! a fresh directory for each test.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use p384::ecdsa::SigningKey;
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
            snp: crate::snp::SnpOptions::default(),
            unsigned_cek: false,
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

pub(crate) fn fresh(seed: u64) -> Fresh {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("platform");
    sevm_testutil::copy_platform(template(), &path);
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
}

use sha2::Digest as _;

/// A guest launched without an owner session, activated on `asid`, with the
/// platform INIT'd (with SEV-ES when the policy asks for it).
fn simple_guest(p: &Platform, policy: u32, asid: u32) -> u32 {
    if p.platform_status().unwrap().state == PlatformState::Uninit {
        p.init(Policy::from_bits(policy).es()).unwrap();
    }
    let h = p
        .launch_start(0, Policy::from_bits(policy), None, None)
        .unwrap();
    p.activate(h, asid).unwrap();
    h
}

#[test]
fn platform_state_machine() {
    // docs/protocol/abi.md#platform-states: which platform commands each state allows.
    type Cmd = fn(&Platform) -> Status;
    let cmds: [(&str, Cmd, [bool; 3]); 10] = [
        ("SHUTDOWN", |p| status_of(p.shutdown()), [false, true, true]),
        (
            "PLATFORM_RESET",
            |p| status_of(p.platform_reset()),
            [true, false, false],
        ),
        (
            "PLATFORM_STATUS",
            |p| status_of(p.platform_status()),
            [true, true, true],
        ),
        ("PEK_GEN", |p| status_of(p.pek_gen()), [false, true, false]),
        (
            "PEK_CSR",
            |p| status_of(p.pek_csr(&mut [0; 0x824])),
            [false, true, false],
        ),
        (
            "PEK_CERT_IMPORT",
            |p| status_of(p.pek_cert_import(&[0; 0x824], &[0; 0x824])),
            [false, true, false],
        ),
        ("PDH_GEN", |p| status_of(p.pdh_gen()), [false, true, true]),
        (
            "PDH_CERT_EXPORT",
            |p| status_of(p.pdh_cert_export(&mut [0; 0x824], &mut [0; 0x186c])),
            [false, true, true],
        ),
        ("DF_FLUSH", |p| status_of(p.df_flush()), [false, true, true]),
        (
            "GET_ID",
            |p| status_of(p.get_id(&mut [0; 64])),
            [true, true, true],
        ),
    ];
    for (name, run, legal) in cmds {
        for (i, state) in PlatformState::ALL.into_iter().enumerate() {
            let f = fresh(10);
            if state != PlatformState::Uninit {
                f.p.init(false).unwrap();
            }
            if state == PlatformState::Working {
                f.p.launch_start(0, Policy::from_bits(0), None, None)
                    .unwrap();
            }
            assert_eq!(f.p.platform_status().unwrap().state, state);
            let got = run(&f.p);
            if legal[i] {
                assert_ne!(got, Status::InvalidPlatformState, "{name} in {state}");
            } else {
                assert_eq!(got, Status::InvalidPlatformState, "{name} in {state}");
            }
        }
    }
    // INIT only from UNINIT; SHUTDOWN destroys guests.
    let f = fresh(11);
    f.p.init(false).unwrap();
    assert_eq!(status_of(f.p.init(false)), Status::InvalidPlatformState);
    let h =
        f.p.launch_start(0, Policy::from_bits(0), None, None)
            .unwrap();
    f.p.shutdown().unwrap();
    let st = f.p.platform_status().unwrap();
    assert_eq!(
        (st.state, st.guest_count, st.es_enabled),
        (PlatformState::Uninit, 0, false)
    );
    f.p.init(true).unwrap();
    assert!(f.p.platform_status().unwrap().es_enabled);
    assert_eq!(status_of(f.p.guest_status(h)), Status::InvalidGuest);
}

#[test]
fn output_lengths_are_reported() {
    let f = fresh(12);
    let p = &f.p;
    p.init(false).unwrap();
    let e = p.pek_csr(&mut [0; 10]).unwrap_err();
    assert_eq!(
        (e.status, e.required_len.unwrap().first),
        (Status::InvalidLen, 0x824)
    );
    let e = p.pdh_cert_export(&mut [], &mut []).unwrap_err();
    assert_eq!(
        e.required_len,
        Some(RequiredLen {
            first: 0x824,
            second: Some(0x186c)
        })
    );
    let e = p
        .pdh_cert_export(&mut [0; 0x824], &mut [0; 0x186b])
        .unwrap_err();
    assert_eq!(e.status, Status::InvalidLen);
    let e = p.get_id(&mut [0; 63]).unwrap_err();
    assert_eq!(e.required_len.unwrap().first, 64);
    let mut id = [0u8; 128];
    assert_eq!(p.get_id(&mut id).unwrap(), 64);
    assert_ne!(id[..64], [0; 64]);
    let h = simple_guest(p, 0, 5);
    let e = p.launch_measure(h, &mut []).unwrap_err();
    assert_eq!(
        (e.status, e.required_len.unwrap().first),
        (Status::InvalidLen, 48)
    );
    // The query did not move the guest on.
    assert_eq!(p.guest_status(h).unwrap().state, GuestState::LaunchUpdate);
    p.launch_measure(h, &mut [0; 48]).unwrap();
    let e = p.attestation(h, &[0; 16], &mut [0; 0xcf]).unwrap_err();
    assert_eq!(e.required_len.unwrap().first, 0xd0);
}

#[test]
fn identity_changes_are_persistent_and_seen_by_other_processes() {
    let f = fresh(13);
    let other = Platform::open(&f.path, seeded_rng(99)).unwrap();
    f.p.init(false).unwrap();
    // One firmware per platform: the INIT is everybody's.
    assert_eq!(status_of(other.init(false)), Status::InvalidPlatformState);
    let (pdh_before, chain_before) = export(&other);
    f.p.pdh_gen().unwrap();
    let (pdh_after, chain_after) = export(&other);
    assert_ne!(pdh_before, pdh_after);
    assert_eq!(chain_before, chain_after);
    assert_eq!(export(&f.p).0, pdh_after);
    f.p.pek_gen().unwrap();
    let (_, chain) = export(&other);
    assert_ne!(chain, chain_after);
    // A third open sees the same state.
    let third = Platform::open(&f.path, seeded_rng(98)).unwrap();
    assert_eq!(third.platform_status().unwrap().state, PlatformState::Init);
    assert_eq!(export(&third), export(&f.p));
    // The CEK survives PEK_GEN and PLATFORM_RESET.
    let cek = |c: &[u8]| c[2 * 0x824..].to_vec();
    assert_eq!(cek(&chain), cek(&chain_before));
    f.p.shutdown().unwrap();
    f.p.platform_reset().unwrap();
    // SHUTDOWN was the platform's: the other process INITs it again.
    other.init(false).unwrap();
    let (_, reset_chain) = export(&other);
    assert_eq!(cek(&reset_chain), cek(&chain_before));
    assert_ne!(reset_chain, chain);
}

#[test]
fn damaged_identity_fails_commands_with_secure_data_invalid() {
    let f = fresh(14);
    let id = f.path.join("identity");
    let mut bytes = std::fs::read(&id).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x80;
    // Replace the file (new inode), as another process's write would.
    std::fs::remove_file(&id).unwrap();
    std::fs::write(&id, &bytes).unwrap();
    let e = f.p.init(false).unwrap_err();
    assert_eq!(e.status, Status::SecureDataInvalid, "{e}");
    assert_eq!(status_of(f.p.platform_status()), Status::SecureDataInvalid);
    // Never replaced silently.
    assert_eq!(std::fs::read(&id).unwrap(), bytes);
}

#[test]
fn init_with_es_needs_an_es_capable_platform() {
    let f = fresh(15);
    let dir = crate::store::StateDir::open(&f.path, false).unwrap();
    let conf = StoredConfig {
        es_capable: false,
        max_asid: 16,
        min_sev_asid: 5,
        unsigned_cek: false,
    };
    dir.write_sealed(CONFIG_FILE, &conf.encode().unwrap())
        .unwrap();
    let p = Platform::open(&f.path, seeded_rng(1)).unwrap();
    assert!(!p.config().es_capable);
    assert_eq!(status_of(p.init(true)), Status::Unsupported);
    p.init(false).unwrap();
    // An ES policy on a non-ES INIT is a policy failure.
    let e = p
        .launch_start(0, Policy::from_bits(Policy::ES), None, None)
        .unwrap_err();
    assert_eq!(e.status, Status::PolicyFailure);
}

/// The owner's OCA: self-signed, API 0.0.
fn owner_oca(seed: u64) -> (SigningKey, Certificate) {
    let key = SecretKey::random(&mut seeded_rng(seed));
    let mut cert =
        Certificate::new_ec(Usage::Oca, Algorithm::EcdsaSha256, 0, 0, &key.public_key()).unwrap();
    let signer = SigningKey::from(&key);
    cert.sign(Slot::Sig1, Usage::Oca, &signer, Algorithm::EcdsaSha256)
        .unwrap();
    (signer, cert)
}

#[test]
fn external_ownership_with_pek_csr_and_import() {
    let f = fresh(16);
    let p = &f.p;
    p.init(false).unwrap();
    let mut csr = [0u8; 0x824];
    p.pek_csr(&mut csr).unwrap();
    let csr_cert = Certificate::decode(&csr).unwrap();
    assert!(csr_cert.signature(Slot::Sig1).is_empty() && csr_cert.signature(Slot::Sig2).is_empty());
    let (oca_key, oca) = owner_oca(7);
    let mut signed = csr_cert.clone();
    signed
        .sign(Slot::Sig1, Usage::Oca, &oca_key, Algorithm::EcdsaSha256)
        .unwrap();

    // Refusals: lengths, wrong OCA version, bad signature, not our PEK.
    assert_eq!(
        status_of(p.pek_cert_import(&csr[..100], &oca.encode())),
        Status::InvalidLen
    );
    let mut bad_oca = oca.encode();
    bad_oca[4] = 1; // API major 1: must be 0.0
    assert_eq!(
        status_of(p.pek_cert_import(&signed.encode(), &bad_oca)),
        Status::InvalidCertificate
    );
    let (_, other_oca) = owner_oca(8);
    assert_eq!(
        status_of(p.pek_cert_import(&signed.encode(), &other_oca.encode())),
        Status::BadSignature
    );
    let mut foreign = Certificate::new_ec(
        Usage::Pek,
        Algorithm::EcdsaSha256,
        API.major,
        API.minor,
        &SecretKey::random(&mut seeded_rng(3)).public_key(),
    )
    .unwrap();
    foreign
        .sign(Slot::Sig1, Usage::Oca, &oca_key, Algorithm::EcdsaSha256)
        .unwrap();
    assert_eq!(
        status_of(p.pek_cert_import(&foreign.encode(), &oca.encode())),
        Status::InvalidCertificate
    );
    assert_eq!(p.platform_status().unwrap().owner, Owner::SelfOwned);

    // The OCA signature may come in either slot.
    let mut in_slot2 = csr_cert.clone();
    in_slot2
        .sign(Slot::Sig2, Usage::Oca, &oca_key, Algorithm::EcdsaSha256)
        .unwrap();
    p.pek_cert_import(&in_slot2.encode(), &oca.encode())
        .unwrap();
    assert_eq!(p.platform_status().unwrap().owner, Owner::External);
    let (pdh, chain) = export(p);
    let chain = PlatformChain::decode(&chain).unwrap();
    assert_eq!(chain.oca, oca);
    assert_eq!(chain.pek.signature(Slot::Sig1).usage(), Usage::Oca);
    assert_eq!(chain.pek.signature(Slot::Sig2).usage(), Usage::Cek);
    let (ask, ark) = p.amd_chain();
    let full = FullChain::from_parts(
        Certificate::decode(&pdh).unwrap(),
        chain,
        CaChain::decode(&[ask, ark.clone()].concat()).unwrap(),
    );
    full.verify(&ca::Certificate::decode(&ark).unwrap())
        .unwrap();
    // Persistent, and a second import is refused.
    let reopened = Platform::open(&f.path, seeded_rng(5)).unwrap();
    assert_eq!(reopened.platform_status().unwrap().owner, Owner::External);
    assert_eq!(
        status_of(p.pek_cert_import(&signed.encode(), &oca.encode())),
        Status::AlreadyOwned
    );
    // PEK_GEN makes the platform self-owned again.
    p.pek_gen().unwrap();
    assert_eq!(p.platform_status().unwrap().owner, Owner::SelfOwned);
}

#[test]
fn activation_and_asids() {
    let f = fresh(17);
    let p = &f.p;
    p.init(true).unwrap();
    let sev = p.launch_start(0, Policy::from_bits(0), None, None).unwrap();
    let es = p
        .launch_start(0, Policy::from_bits(Policy::ES), None, None)
        .unwrap();
    // Ranges: ES 1..=4, SEV 5..=16 (template options).
    for (h, asid) in [(sev, 0), (sev, 4), (sev, 17), (es, 5), (es, 0)] {
        assert_eq!(
            status_of(p.activate(h, asid)),
            Status::InvalidAsid,
            "{h} {asid}"
        );
    }
    p.activate(sev, 5).unwrap();
    p.activate(sev, 5).unwrap();
    assert_eq!(status_of(p.activate(sev, 6)), Status::Active);
    p.activate(es, 1).unwrap();
    let other = p.launch_start(0, Policy::from_bits(0), None, None).unwrap();
    assert_eq!(status_of(p.activate(other, 5)), Status::AsidOwned);
    // A guest sharing sev's key may share its ASID.
    let shared = p
        .launch_start(sev, Policy::from_bits(0), None, None)
        .unwrap();
    p.activate(shared, 5).unwrap();
    p.deactivate(shared).unwrap();
    p.deactivate(sev).unwrap();
    assert_eq!(p.guest_status(sev).unwrap().asid, 0);
    // Released: DF_FLUSH first.
    assert_eq!(status_of(p.activate(other, 5)), Status::DfFlushRequired);
    p.df_flush().unwrap();
    p.activate(other, 5).unwrap();
    assert_eq!(status_of(p.activate(999, 6)), Status::InvalidGuest);
    assert_eq!(status_of(p.deactivate(999)), Status::InvalidGuest);
    assert_eq!(status_of(p.decommission(999)), Status::InvalidGuest);
    assert_eq!(status_of(p.decommission(other)), Status::Active);
}

#[test]
fn launch_start_checks() {
    let f = fresh(18);
    let p = &f.p;
    assert_eq!(
        status_of(p.launch_start(0, Policy::from_bits(0), None, None)),
        Status::InvalidPlatformState
    );
    p.init(false).unwrap();
    let (pdh, _) = export(p);
    let pdh_key = *Certificate::decode(&pdh).unwrap().ec_public_key().unwrap();
    let owner = OwnerSession::new(&pdh_key, 0, &mut seeded_rng(4));
    let godh = Certificate::godh(&owner.godh_public()).encode();
    let session = owner.session_buffer().to_bytes();
    let launch = |share: u32, policy: u32, g: Option<&[u8]>, s: Option<&[u8]>| {
        status_of(p.launch_start(share, Policy::from_bits(policy), g, s))
    };
    assert_eq!(
        launch(0, 0, Some(&godh[..100]), Some(&session)),
        Status::InvalidLen
    );
    assert_eq!(
        launch(0, 0, Some(&godh), Some(&session[..127])),
        Status::InvalidLen
    );
    assert_eq!(launch(0, 0, Some(&godh), None), Status::InvalidParam);
    assert_eq!(launch(0, 0, None, Some(&session)), Status::InvalidParam);
    assert_eq!(launch(77, 0, None, None), Status::InvalidGuest);
    assert_eq!(launch(0, 1 << 6, None, None), Status::PolicyFailure);
    assert_eq!(launch(0, Policy::ES, None, None), Status::PolicyFailure);
    // API minimum 1.56 > 1.55; 1.55 is fine.
    assert_eq!(
        launch(0, (56 << 24) | (1 << 16), None, None),
        Status::PolicyFailure
    );
    assert_eq!(
        launch(0, (55 << 24) | (1 << 16), None, None),
        Status::Success
    );
    // Key sharing and NOKS.
    let noks = p
        .launch_start(0, Policy::from_bits(Policy::NOKS), None, None)
        .unwrap();
    let plain = p.launch_start(0, Policy::from_bits(0), None, None).unwrap();
    assert_eq!(launch(noks, 0, None, None), Status::PolicyFailure);
    assert_eq!(
        launch(plain, Policy::NOKS, None, None),
        Status::PolicyFailure
    );
    assert_eq!(launch(plain, 0, None, None), Status::Success);
    // The owner's session: the right policy, then a wrong one.
    assert_eq!(launch(0, 0, Some(&godh), Some(&session)), Status::Success);
    assert_eq!(
        launch(0, Policy::NODBG, Some(&godh), Some(&session)),
        Status::BadMeasurement
    );
    let mut bad_godh = godh;
    bad_godh[8] = 0x02; // usage PEK
    assert_eq!(
        launch(0, 0, Some(&bad_godh), Some(&session)),
        Status::InvalidCertificate
    );
}

#[test]
fn key_sharing_shares_the_memory_key() {
    let f = fresh(19);
    let p = &f.p;
    let mem = mem();
    let a = simple_guest(p, 0, 5);
    let b = p.launch_start(a, Policy::from_bits(0), None, None).unwrap();
    let c = p.launch_start(0, Policy::from_bits(0), None, None).unwrap();
    p.activate(b, 5).unwrap();
    p.activate(c, 6).unwrap();
    for h in [a, b, c] {
        p.launch_update_data(h, &mem, 0x3000, 0x1000).unwrap();
    }
    let view = |h: u32| {
        let mut buf = [0u8; 64];
        p.host_read(h, &mem, 0x3000, &mut buf).unwrap();
        buf
    };
    assert_eq!(view(a), view(b));
    assert_ne!(view(a), view(c));
}

#[test]
fn launch_update_checks_and_vmsa() {
    let f = fresh(20);
    let p = &f.p;
    let mem = mem();
    let h = simple_guest(p, 0, 5);
    let upd = |gpa: u64, len: u32| status_of(p.launch_update_data(h, &mem, gpa, len));
    assert_eq!(upd(0x1008, 16), Status::InvalidAddress);
    assert_eq!(upd(0x1000, 15), Status::InvalidLen);
    assert_eq!(upd(0x1000, 0), Status::InvalidLen);
    assert_eq!(upd(0xff000, 0x2000), Status::InvalidAddress);
    assert_eq!(upd(0x1000, 16), Status::Success);
    assert_eq!(
        status_of(p.launch_update_data(999, &mem, 0, 16)),
        Status::InvalidGuest
    );
    let inactive = p.launch_start(0, Policy::from_bits(0), None, None).unwrap();
    assert_eq!(
        status_of(p.launch_update_data(inactive, &mem, 0, 16)),
        Status::Inactive
    );
    // VMSA on a non-ES guest.
    assert_eq!(
        status_of(p.launch_update_vmsa(h, &mem, 0x4000, 4096)),
        Status::PolicyFailure
    );
    // Another memory layout for the same guest.
    let other = VecBacking::new(&[Region {
        gpa: 0,
        len: 0x20_0000,
    }])
    .unwrap();
    assert_eq!(
        status_of(p.launch_update_data(h, &other, 0, 16)),
        Status::InvalidAddress
    );

    // An ES guest: data, then two VMSAs, all in the digest.
    let f = fresh(21);
    let p = &f.p;
    let mem = self::mem();
    p.init(true).unwrap();
    let es = p
        .launch_start(0, Policy::from_bits(Policy::ES), None, None)
        .unwrap();
    p.activate(es, 1).unwrap();
    let vmsa = |gpa: u64, len: u32| status_of(p.launch_update_vmsa(es, &mem, gpa, len));
    assert_eq!(vmsa(0x4010, 4096), Status::InvalidAddress);
    assert_eq!(vmsa(0x4000, 4080), Status::InvalidLen);
    crate::memory::firmware_write(&mem, 0, &[7u8; 0x6000]).unwrap();
    p.launch_update_data(es, &mem, 0, 0x100).unwrap();
    assert_eq!(vmsa(0x4000, 4096), Status::Success);
    assert_eq!(vmsa(0x5000, 4096), Status::Success);
    let mut report = [0u8; 0xd0];
    p.launch_measure(es, &mut [0; 48]).unwrap();
    p.attestation(es, &[0; 16], &mut report).unwrap();
    let mut expected = sha2::Sha256::new();
    expected.update([7u8; 0x100]);
    expected.update([7u8; 0x2000]);
    assert_eq!(report[0x10..0x30], expected.finalize()[..]);
}

#[test]
fn debug_commands() {
    let f = fresh(22);
    let p = &f.p;
    let mem = mem();
    let nodbg = simple_guest(p, Policy::NODBG, 5);
    assert_eq!(
        status_of(p.dbg_decrypt(nodbg, &mem, 0, &mut [0; 16])),
        Status::PolicyFailure
    );
    assert_eq!(
        status_of(p.dbg_encrypt(nodbg, &mem, &[0; 16], 0)),
        Status::PolicyFailure
    );
    let h = p.launch_start(0, Policy::from_bits(0), None, None).unwrap();
    assert_eq!(
        status_of(p.dbg_decrypt(h, &mem, 0, &mut [0; 16])),
        Status::Inactive
    );
    p.activate(h, 6).unwrap();
    assert_eq!(
        status_of(p.dbg_decrypt(h, &mem, 8, &mut [0; 16])),
        Status::InvalidAddress
    );
    // Each names its own address field.
    for (e, field) in [
        (p.dbg_decrypt(h, &mem, 8, &mut [0; 16]), "SRC_PADDR 0x8"),
        (p.dbg_encrypt(h, &mem, &[0; 16], 8), "DST_PADDR 0x8"),
    ] {
        let e = e.unwrap_err().to_string();
        assert!(e.contains(field), "{e}");
    }
    assert_eq!(
        status_of(p.dbg_decrypt(h, &mem, 0, &mut [0; 8])),
        Status::InvalidLen
    );
    assert_eq!(
        status_of(p.dbg_encrypt(h, &mem, &[0; 16], 0x10_0000)),
        Status::InvalidAddress
    );
    p.dbg_encrypt(h, &mem, &[0xab; 32], 0x2000).unwrap();
    let mut plain = [0u8; 32];
    crate::memory::firmware_read(&mem, 0x2000, &mut plain).unwrap();
    assert_eq!(plain, [0xab; 32]);
    let mut back = [0u8; 32];
    p.dbg_decrypt(h, &mem, 0x2000, &mut back).unwrap();
    assert_eq!(back, [0xab; 32]);
    let mut seen = [0u8; 32];
    p.host_read(h, &mem, 0x2000, &mut seen).unwrap();
    assert_ne!(seen, [0xab; 32]);
    // A hypervisor write into the private page decrypts to garbage.
    p.host_write(h, &mem, 0x2000, &[0xab; 16]).unwrap();
    crate::memory::firmware_read(&mem, 0x2000, &mut plain).unwrap();
    assert_ne!(plain[..16], [0xab; 16]);
    assert_eq!(
        status_of(p.host_read(999, &mem, 0, &mut seen)),
        Status::InvalidGuest
    );
    assert_eq!(
        status_of(p.host_read(h, &mem, 0xfffff, &mut seen)),
        Status::InvalidAddress
    );
}

#[test]
fn trusted_roots_are_checked_and_persistent() {
    let f = fresh(23);
    let (_, ark) = f.p.amd_chain();
    assert_eq!(
        status_of(f.p.trust_ark(&ark[..100])),
        Status::InvalidCertificate
    );
    let (ask, _) = f.p.amd_chain();
    assert_eq!(status_of(f.p.trust_ark(&ask)), Status::InvalidCertificate);
    assert_eq!(f.p.trusted_arks().unwrap(), vec![ark.clone()]);
    let test = "trusted_roots_are_checked_and_persistent";
    let Some(milan) = sevm_testutil::fixture(test, "amd-roots/milan-ark.cert") else {
        return;
    };
    f.p.trust_ark(&milan).unwrap();
    f.p.trust_ark(&milan).unwrap();
    let reopened = Platform::open(&f.path, seeded_rng(2)).unwrap();
    assert_eq!(reopened.trusted_arks().unwrap(), vec![ark, milan]);
}

#[test]
fn state_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    // As Platform::create made them.
    assert_eq!(mode(template()), 0o700);
    for name in ["identity", "config"] {
        assert_eq!(mode(&template().join(name)), 0o600, "{name}");
    }
    // As a command that changes persistent state rewrites them.
    let f = fresh(24);
    f.p.init(false).unwrap();
    f.p.pdh_gen().unwrap();
    f.p.trust_ark(&f.p.amd_chain().1).unwrap();
    for name in ["identity", "trusted-arks"] {
        assert_eq!(mode(&f.path.join(name)), 0o600, "{name}");
    }
}

#[test]
fn platform_is_shareable_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Platform>();
    // Debug shows no key material.
    let f = fresh(25);
    let h = simple_guest(&f.p, 0, 5);
    let shown = format!("{:?} {:?}", f.p, f.p.lock().guests.get(&h));
    assert!(shown.contains("<redacted>"), "{shown}");
}

#[test]
fn concurrent_identity_changes_stay_consistent() {
    // Two PSPs (as two processes would) on one directory, changing the
    // identity at the same time: each change is a locked read-modify-write,
    // so the final PDH is always signed by the final PEK.
    let f = fresh(26);
    let other = Platform::open(&f.path, seeded_rng(27)).unwrap();
    f.p.init(false).unwrap();
    assert_eq!(other.platform_status().unwrap().state, PlatformState::Init);
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..8 {
                f.p.pek_gen().unwrap();
            }
        });
        s.spawn(|| {
            for _ in 0..8 {
                other.pdh_gen().unwrap();
            }
        });
    });
    for p in [&f.p, &other] {
        let (pdh, chain) = export(p);
        let (ask, ark) = p.amd_chain();
        let full = FullChain::from_parts(
            Certificate::decode(&pdh).unwrap(),
            PlatformChain::decode(&chain).unwrap(),
            CaChain::decode(&[ask, ark.clone()].concat()).unwrap(),
        );
        full.verify(&ca::Certificate::decode(&ark).unwrap())
            .unwrap();
    }
    assert_eq!(export(&f.p), export(&other));
}

/// A platform made with `unsigned_cek` exports its CEK as real firmware
/// does (no ASK signature, same key); `signed_cek` is the ASK-signed one a
/// key server serves; the choice survives reopening; a default platform's
/// stored configuration has no record for it.
#[test]
fn an_unsigned_cek_platform_exports_the_cek_without_the_ask_signature() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("unsigned");
    let options = CreateOptions {
        ark_bits: 2048,
        unsigned_cek: true,
        ..CreateOptions::default()
    };
    let p = Platform::create(&path, options, seeded_rng(7)).unwrap();
    assert!(p.config().unsigned_cek);
    p.init(false).unwrap();
    let (_, chain) = export(&p);
    let exported = Certificate::decode(&chain[2 * 0x824..]).unwrap();
    assert_eq!(exported.usage(), Usage::Cek);
    for slot in Slot::BOTH {
        assert_eq!(exported.signature(slot).usage(), Usage::None);
    }
    let signed = Certificate::decode(&p.signed_cek()).unwrap();
    assert_eq!(signed.public_key(), exported.public_key());
    let (ask, _) = p.amd_chain();
    signed
        .verify_signed_by_ca(&ca::Certificate::decode(&ask).unwrap())
        .unwrap();
    assert!(exported
        .verify_signed_by_ca(&ca::Certificate::decode(&ask).unwrap())
        .is_err());
    drop(p);
    let p = Platform::open(&path, seeded_rng(8)).unwrap();
    assert!(p.config().unsigned_cek);

    let f = fresh(9);
    assert!(!f.p.config().unsigned_cek);
    assert_eq!(f.p.signed_cek(), {
        f.p.init(false).unwrap();
        let (_, chain) = export(&f.p);
        <[u8; 0x824]>::try_from(&chain[2 * 0x824..]).unwrap()
    });
    let stored = StoredConfig {
        es_capable: true,
        max_asid: 16,
        min_sev_asid: 5,
        unsigned_cek: false,
    };
    let payload = stored.encode().unwrap();
    assert!(!payload
        .windows(2)
        .any(|w| w == config_tag::UNSIGNED_CEK.to_le_bytes()));
    assert_eq!(StoredConfig::decode(&payload).unwrap(), stored);
    let set = StoredConfig {
        unsigned_cek: true,
        ..stored
    };
    assert_eq!(StoredConfig::decode(&set.encode().unwrap()).unwrap(), set);
}
