//! Tests of the SNP guest commands: a whole launch against an independent
//! digest, and the refusal matrices (policy against the platform, commands
//! in wrong states, pages twice / out of range / overlapping, a wrong CPUID
//! entry), each leaving nothing changed.

use sev_proto::abi::Status;
use sev_proto::snp::{id_block, GuestPolicy, LaunchDigest, PageType};

use super::buffers::init_flags;
use super::guest::{fms, SECRETS_VERSION};
use super::identity::SNP_IDENTITY_FILE;
use super::*;
use crate::memory::{GuestBacking, Region, VecBacking};
use crate::platform::tests::{fresh, Fresh};
use crate::platform::FwError;
use crate::store::StateDir;

pub(super) const QEMU_POLICY: u64 = 0x30000;
const MIB2: u64 = 2 << 20;

pub(super) fn status_of<T: std::fmt::Debug>(r: Result<T, FwError>) -> Status {
    r.expect_err("the command must fail").status
}

pub(super) fn mem() -> VecBacking {
    VecBacking::new(&[Region {
        gpa: 0,
        len: 4 * MIB2,
    }])
    .unwrap()
}

/// SNP INIT, a guest context launched with `policy` and active on ASID 1.
pub(super) fn launched(seed: u64, policy: u64) -> (Fresh, u32) {
    let f = fresh(seed);
    f.p.snp_init().unwrap();
    let h = f.p.snp_gctx_create().unwrap();
    f.p.snp_launch_start(h, &SnpLaunchStart::with_policy(policy))
        .unwrap();
    f.p.snp_activate(h, 1).unwrap();
    (f, h)
}

pub(super) fn page_of(mem: &VecBacking, gpa: u64) -> [u8; 4096] {
    let mut page = [0u8; 4096];
    mem.read_plain(gpa, &mut page).unwrap();
    page
}

fn cpuid_page(leaf1_eax: u32) -> [u8; 4096] {
    let mut page = [0u8; 4096];
    page[0] = 2;
    // Entry 0: leaf 0; entry 1: leaf 1 with EAX.
    let e1 = 16 + 48;
    page[e1..e1 + 4].copy_from_slice(&1u32.to_le_bytes());
    page[e1 + 0x18..e1 + 0x1c].copy_from_slice(&leaf1_eax.to_le_bytes());
    page
}

#[test]
fn a_launch_with_every_page_type_matches_the_independent_digest() {
    let (f, h) = launched(20, QEMU_POLICY);
    let m = mem();
    let mut expected = LaunchDigest::new();
    // NORMAL, 4 KiB and 2 MiB.
    m.write_plain(0x1000, &[0xab; 4096]).unwrap();
    f.p.snp_launch_update(h, &m, &SnpLaunchUpdate::page(PageType::Normal, 0x1000))
        .unwrap();
    expected.add_page(PageType::Normal, 0x1000, &[0xab; 4096]);
    let big: Vec<u8> = (0..MIB2).map(|i| (i % 251) as u8).collect();
    m.write_plain(MIB2, &big).unwrap();
    let large = SnpLaunchUpdate {
        large: true,
        ..SnpLaunchUpdate::page(PageType::Normal, MIB2)
    };
    f.p.snp_launch_update(h, &m, &large).unwrap();
    expected.add_region(PageType::Normal, MIB2, &big).unwrap();
    // ZERO: the contents are replaced by zeros.
    m.write_plain(0x2000, &[7; 4096]).unwrap();
    f.p.snp_launch_update(h, &m, &SnpLaunchUpdate::page(PageType::Zero, 0x2000))
        .unwrap();
    assert_eq!(page_of(&m, 0x2000), [0; 4096]);
    expected.add_page(PageType::Zero, 0x2000, &[0; 4096]);
    // UNMEASURED: kept, not hashed.
    m.write_plain(0x3000, &[9; 4096]).unwrap();
    f.p.snp_launch_update(h, &m, &SnpLaunchUpdate::page(PageType::Unmeasured, 0x3000))
        .unwrap();
    assert_eq!(page_of(&m, 0x3000), [9; 4096]);
    expected.add_page(PageType::Unmeasured, 0x3000, &[9; 4096]);
    // SECRETS: built by the firmware.
    m.write_plain(0x4000, &[0xff; 4096]).unwrap();
    f.p.snp_launch_update(h, &m, &SnpLaunchUpdate::page(PageType::Secrets, 0x4000))
        .unwrap();
    let secrets = page_of(&m, 0x4000);
    assert_eq!(&secrets[0..4], &SECRETS_VERSION.to_le_bytes());
    assert_eq!(&secrets[8..12], &fms(Product::Genoa).to_le_bytes());
    for i in 0..4 {
        let key = &secrets[0x20 + 32 * i..0x40 + 32 * i];
        assert_ne!(key, &[0u8; 32], "VMPCK{i}");
    }
    assert_ne!(&secrets[0x20..0x40], &secrets[0x40..0x60]);
    assert!(secrets[0xa0..].iter().all(|b| *b == 0));
    expected.add_page(PageType::Secrets, 0x4000, &[0; 4096]);
    // CPUID: a table the platform accepts.
    let table = cpuid_page(fms(Product::Genoa));
    m.write_plain(0x5000, &table).unwrap();
    f.p.snp_launch_update(h, &m, &SnpLaunchUpdate::page(PageType::Cpuid, 0x5000))
        .unwrap();
    expected.add_page(PageType::Cpuid, 0x5000, &table);
    // VMSA, with TSC fields that do not count.
    let mut vmsa = [0x11u8; 4096];
    vmsa[0x2f0..0x300].fill(0x55);
    m.write_plain(0x6000, &vmsa).unwrap();
    f.p.snp_launch_update(h, &m, &SnpLaunchUpdate::page(PageType::Vmsa, 0x6000))
        .unwrap();
    expected.add_page(PageType::Vmsa, 0x6000, &vmsa);

    assert_eq!(f.p.snp_launch_digest(h).unwrap(), *expected.bytes());
    let host_data = [0x42; 32];
    f.p.snp_launch_finish(
        h,
        &SnpLaunchFinish {
            host_data,
            ..SnpLaunchFinish::default()
        },
    )
    .unwrap();
    let s = f.p.snp_guest_status(h).unwrap();
    assert_eq!(
        (s.policy, s.asid, s.state),
        (QEMU_POLICY, 1, SnpGuestState::Running)
    );
    assert_eq!(s.to_bytes()[12], 2);
    assert_eq!(f.p.snp_platform_status().unwrap().guest_count, 1);
    // Teardown: DECOMMISSION, the ASID needs a flush before SHUTDOWN.
    f.p.snp_decommission(h).unwrap();
    assert_eq!(f.p.snp_platform_status().unwrap().guest_count, 0);
    assert_eq!(status_of(f.p.snp_shutdown()), Status::DfFlushRequired);
    f.p.snp_df_flush().unwrap();
    f.p.snp_shutdown().unwrap();
}

#[test]
fn every_policy_bit_is_checked_against_the_platform() {
    let f = fresh(21);
    f.p.snp_init().unwrap();
    let h = f.p.snp_gctx_create().unwrap();
    let mbo = GuestPolicy::MUST_BE_ONE | GuestPolicy::SMT;
    let refused = [
        GuestPolicy::SMT,                     // bit 17 clear
        mbo | 1 << 26,                        // reserved
        mbo | 1 << 63,                        // reserved
        GuestPolicy::MUST_BE_ONE,             // SMT forbidden, platform SMT on
        mbo | 0x0138,                         // ABI 1.56 > 1.55
        mbo | 0x0200,                         // ABI 2.0
        mbo | GuestPolicy::MEM_AES_256_XTS,   // not advertised
        mbo | GuestPolicy::CIPHERTEXT_HIDING, // not enabled
        mbo | GuestPolicy::RAPL_DIS,          // INIT without RAPL_DIS
    ];
    for policy in refused {
        let r =
            f.p.snp_launch_start(h, &SnpLaunchStart::with_policy(policy));
        assert_eq!(status_of(r), Status::PolicyFailure, "{policy:#x}");
        assert_eq!(f.p.snp_guest_status(h).unwrap().state, SnpGuestState::Init);
    }
    // MA_EN without MIGRATE_MA is a policy failure; with it, unsupported.
    let ma = SnpLaunchStart {
        ma_en: true,
        ..SnpLaunchStart::with_policy(mbo)
    };
    assert_eq!(
        status_of(f.p.snp_launch_start(h, &ma)),
        Status::PolicyFailure
    );
    let ma = SnpLaunchStart {
        ma_en: true,
        ..SnpLaunchStart::with_policy(mbo | GuestPolicy::MIGRATE_MA)
    };
    assert_eq!(status_of(f.p.snp_launch_start(h, &ma)), Status::Unsupported);
    // Accepted: the ABI the platform has, the bits it can honour.
    let ok = mbo
        | 0x0137
        | GuestPolicy::MIGRATE_MA
        | GuestPolicy::DEBUG
        | GuestPolicy::SINGLE_SOCKET
        | GuestPolicy::CXL_ALLOW
        | GuestPolicy::PAGE_SWAP_DISABLE;
    f.p.snp_launch_start(h, &SnpLaunchStart::with_policy(ok))
        .unwrap();
    assert_eq!(f.p.snp_guest_status(h).unwrap().policy, ok);
    // SINGLE_SOCKET is fine on one socket.
    f.p.snp_activate(h, 1).unwrap();
}

#[test]
fn rapl_dis_and_single_socket_follow_the_platform_configuration() {
    let f = fresh(22);
    // Two sockets.
    let mut id = f.p.snp_identity().unwrap();
    id.sockets = 2;
    StateDir::open(&f.path, false)
        .unwrap()
        .write_sealed(SNP_IDENTITY_FILE, &id.encode().unwrap())
        .unwrap();
    f.p.snp_init_ex(&SnpInitEx {
        flags: init_flags::INIT_RMP | init_flags::RAPL_DIS,
        ..SnpInitEx::default()
    })
    .unwrap();
    let base = QEMU_POLICY | GuestPolicy::RAPL_DIS;
    let h = f.p.snp_gctx_create().unwrap();
    f.p.snp_launch_start(
        h,
        &SnpLaunchStart::with_policy(base | GuestPolicy::SINGLE_SOCKET),
    )
    .unwrap();
    assert_eq!(status_of(f.p.snp_activate(h, 1)), Status::PolicyFailure);
    assert_eq!(f.p.snp_guest_status(h).unwrap().asid, 0);
    let g = f.p.snp_gctx_create().unwrap();
    f.p.snp_launch_start(g, &SnpLaunchStart::with_policy(base))
        .unwrap();
    f.p.snp_activate(g, 1).unwrap();
}

#[test]
fn every_command_in_every_wrong_state() {
    let f = fresh(23);
    let m = mem();
    let page = SnpLaunchUpdate::page(PageType::Normal, 0);
    let start = SnpLaunchStart::with_policy(QEMU_POLICY);
    // SNP UNINIT: every guest command.
    let uninit = [
        status_of(f.p.snp_gctx_create()),
        status_of(f.p.snp_launch_start(1, &start)),
        status_of(f.p.snp_activate(1, 1)),
        status_of(f.p.snp_launch_update(1, &m, &page)),
        status_of(f.p.snp_launch_finish(1, &SnpLaunchFinish::default())),
        status_of(f.p.snp_guest_status(1)),
        status_of(f.p.snp_decommission(1)),
    ];
    assert_eq!(uninit, [Status::InvalidPlatformState; 7]);
    f.p.snp_init().unwrap();
    // An unknown handle.
    assert_eq!(status_of(f.p.snp_guest_status(77)), Status::InvalidGuest);
    assert_eq!(
        status_of(f.p.snp_launch_start(77, &start)),
        Status::InvalidGuest
    );
    // INIT: no ACTIVATE, UPDATE or FINISH.
    let h = f.p.snp_gctx_create().unwrap();
    assert_eq!(status_of(f.p.snp_activate(h, 1)), Status::InvalidGuestState);
    assert_eq!(
        status_of(f.p.snp_launch_update(h, &m, &page)),
        Status::InvalidGuestState
    );
    assert_eq!(
        status_of(f.p.snp_launch_finish(h, &SnpLaunchFinish::default())),
        Status::InvalidGuestState
    );
    // LAUNCH, inactive: no UPDATE or FINISH; no second START.
    f.p.snp_launch_start(h, &start).unwrap();
    assert_eq!(
        status_of(f.p.snp_launch_start(h, &start)),
        Status::InvalidGuestState
    );
    assert_eq!(
        status_of(f.p.snp_launch_update(h, &m, &page)),
        Status::Inactive
    );
    assert_eq!(
        status_of(f.p.snp_launch_finish(h, &SnpLaunchFinish::default())),
        Status::Inactive
    );
    // ACTIVATE: ASIDs of the SNP range only, one guest per ASID.
    assert_eq!(status_of(f.p.snp_activate(h, 0)), Status::InvalidAsid);
    assert_eq!(status_of(f.p.snp_activate(h, 5)), Status::InvalidAsid);
    f.p.snp_activate(h, 2).unwrap();
    f.p.snp_activate(h, 2).unwrap();
    assert_eq!(status_of(f.p.snp_activate(h, 3)), Status::Active);
    let other = f.p.snp_gctx_create().unwrap();
    f.p.snp_launch_start(other, &start).unwrap();
    assert_eq!(status_of(f.p.snp_activate(other, 2)), Status::AsidOwned);
    // An ID block is checked: zeros match the digest of a launch without
    // pages, not its policy.
    let with_id = SnpLaunchFinish {
        id: Some(IdBlockInput {
            id_block: vec![0; 0x60],
            id_auth: vec![0; 0x1000],
        }),
        ..SnpLaunchFinish::default()
    };
    assert_eq!(
        status_of(f.p.snp_launch_finish(h, &with_id)),
        Status::PolicyFailure
    );
    assert_eq!(
        f.p.snp_guest_status(h).unwrap().state,
        SnpGuestState::Launch
    );
    // RUNNING: no START, UPDATE or FINISH; ACTIVATE again is fine.
    f.p.snp_launch_finish(h, &SnpLaunchFinish::default())
        .unwrap();
    assert_eq!(
        status_of(f.p.snp_launch_start(h, &start)),
        Status::InvalidGuestState
    );
    assert_eq!(
        status_of(f.p.snp_launch_update(h, &m, &page)),
        Status::InvalidGuestState
    );
    assert_eq!(
        status_of(f.p.snp_launch_finish(h, &SnpLaunchFinish::default())),
        Status::InvalidGuestState
    );
    f.p.snp_activate(h, 2).unwrap();
    // DECOMMISSION: the handle is gone, its ASID needs a flush.
    f.p.snp_decommission(h).unwrap();
    assert_eq!(status_of(f.p.snp_guest_status(h)), Status::InvalidGuest);
    assert_eq!(status_of(f.p.snp_decommission(h)), Status::InvalidGuest);
    assert_eq!(
        status_of(f.p.snp_activate(other, 2)),
        Status::DfFlushRequired
    );
    f.p.snp_df_flush().unwrap();
    f.p.snp_activate(other, 2).unwrap();
    // SNP_SHUTDOWN destroys the rest.
    f.p.snp_decommission(other).unwrap();
    f.p.snp_df_flush().unwrap();
    let third = f.p.snp_gctx_create().unwrap();
    f.p.snp_shutdown().unwrap();
    f.p.snp_init().unwrap();
    assert_eq!(status_of(f.p.snp_guest_status(third)), Status::InvalidGuest);
    assert_eq!(f.p.snp_platform_status().unwrap().guest_count, 0);
}

#[test]
fn pages_twice_out_of_range_overlapping_or_misaligned_change_nothing() {
    let (f, h) = launched(24, QEMU_POLICY);
    let m = mem();
    f.p.snp_launch_update(
        h,
        &m,
        &SnpLaunchUpdate::page(PageType::Normal, MIB2 + 0x1000),
    )
    .unwrap();
    let before = f.p.snp_launch_digest(h).unwrap();
    let large = |gpa| SnpLaunchUpdate {
        large: true,
        ..SnpLaunchUpdate::page(PageType::Normal, gpa)
    };
    let cases = [
        // Measured twice.
        (
            SnpLaunchUpdate::page(PageType::Normal, MIB2 + 0x1000),
            Status::InvalidPageState,
        ),
        // A 2 MiB page over it.
        (large(MIB2), Status::InvalidPageState),
        // Out of range.
        (
            SnpLaunchUpdate::page(PageType::Normal, 4 * MIB2),
            Status::InvalidAddress,
        ),
        (large(4 * MIB2), Status::InvalidAddress),
        (
            SnpLaunchUpdate::page(PageType::Normal, !0xfff),
            Status::InvalidAddress,
        ),
        // Misaligned.
        (
            SnpLaunchUpdate::page(PageType::Normal, 0x800),
            Status::InvalidAddress,
        ),
        (large(0x1000), Status::InvalidAddress),
        // One-page types as 2 MiB pages.
        (
            SnpLaunchUpdate {
                large: true,
                ..SnpLaunchUpdate::page(PageType::Vmsa, 0)
            },
            Status::InvalidPageSize,
        ),
        (
            SnpLaunchUpdate {
                large: true,
                ..SnpLaunchUpdate::page(PageType::Secrets, 0)
            },
            Status::InvalidPageSize,
        ),
        (
            SnpLaunchUpdate {
                imi: true,
                ..SnpLaunchUpdate::page(PageType::Normal, 0)
            },
            Status::InvalidParam,
        ),
    ];
    for (update, want) in cases {
        assert_eq!(
            status_of(f.p.snp_launch_update(h, &m, &update)),
            want,
            "{update:?}"
        );
        assert_eq!(f.p.snp_launch_digest(h).unwrap(), before);
    }
    // The neighbours are still free.
    f.p.snp_launch_update(h, &m, &SnpLaunchUpdate::page(PageType::Normal, MIB2))
        .unwrap();
}

#[test]
fn a_wrong_cpuid_entry_is_corrected_in_plaintext_and_not_measured() {
    let (f, h) = launched(25, QEMU_POLICY);
    let m = mem();
    let before = f.p.snp_launch_digest(h).unwrap();
    let mut wrong = cpuid_page(0x0080_0f12);
    // A reserved quadword too.
    wrong[16 + 0x28] = 1;
    m.write_plain(0x7000, &wrong).unwrap();
    let update = SnpLaunchUpdate::page(PageType::Cpuid, 0x7000);
    let e = f.p.snp_launch_update(h, &m, &update).unwrap_err();
    assert_eq!(e.status, Status::InvalidParam);
    assert!(e.detail.contains("leaf 0x1"), "{e}");
    assert_eq!(f.p.snp_launch_digest(h).unwrap(), before);
    let corrected = page_of(&m, 0x7000);
    assert_eq!(corrected, cpuid_page(fms(Product::Genoa)));
    // The host resubmits the corrected table.
    f.p.snp_launch_update(h, &m, &update).unwrap();
    let mut expected = LaunchDigest::from_bytes(before);
    expected.add_page(PageType::Cpuid, 0x7000, &corrected);
    assert_eq!(f.p.snp_launch_digest(h).unwrap(), *expected.bytes());
    // A malformed header is refused without a rewrite.
    let mut bad = [0u8; 4096];
    bad[0] = 65;
    m.write_plain(0x8000, &bad).unwrap();
    let r =
        f.p.snp_launch_update(h, &m, &SnpLaunchUpdate::page(PageType::Cpuid, 0x8000));
    assert_eq!(status_of(r), Status::InvalidParam);
    assert_eq!(page_of(&m, 0x8000), bad);
}

#[test]
fn launch_buffers_decode_with_reserved_fields_checked() {
    let update = SnpLaunchUpdate {
        gpa: 0x1234_5000,
        large: true,
        page_type: PageType::Unmeasured,
        imi: false,
        vmpl_perms: [1, 2, 3],
    };
    assert_eq!(SnpLaunchUpdate::decode(&update.to_bytes()).unwrap(), update);
    for (at, bit) in [(0x08usize, 0x20u8), (0x0c, 1), (0x18, 1), (0x1f, 1)] {
        let mut b = update.to_bytes();
        b[at] |= bit;
        assert_eq!(
            status_of(SnpLaunchUpdate::decode(&b)),
            Status::InvalidParam,
            "{at:#x}"
        );
    }
    for bad_type in [0u8, 7] {
        let mut b = update.to_bytes();
        b[8] = (b[8] & !0x0e) | bad_type << 1;
        assert_eq!(status_of(SnpLaunchUpdate::decode(&b)), Status::InvalidParam);
    }
    let mut start = [0u8; 0x30];
    start[0x08..0x10].copy_from_slice(&QEMU_POLICY.to_le_bytes());
    start[0x20] = 9;
    let s = SnpLaunchStart::decode(&start).unwrap();
    assert_eq!((s.policy, s.gosvw[0]), (QEMU_POLICY, 9));
    start[0x18] = 4;
    assert_eq!(
        status_of(SnpLaunchStart::decode(&start)),
        Status::InvalidParam
    );
    assert_eq!(
        status_of(SnpLaunchStart::decode(&[0; 0x20])),
        Status::InvalidParam
    );
}

fn signing_key(seed: u64) -> p384::ecdsa::SigningKey {
    p384::ecdsa::SigningKey::from(p384::SecretKey::random(&mut crate::rng::seeded_rng(seed)))
}

/// A launched guest with one measured page, and ID structures for it.
fn id_for(seed: u64, author: bool) -> (Fresh, u32, id_block::IdBlock, IdBlockInput) {
    let (f, h) = launched(seed, QEMU_POLICY);
    let m = mem();
    m.write_plain(0, &[3; 4096]).unwrap();
    f.p.snp_launch_update(h, &m, &SnpLaunchUpdate::page(PageType::Normal, 0))
        .unwrap();
    let policy = GuestPolicy::new(QEMU_POLICY).unwrap();
    let mut block = id_block::IdBlock::new(f.p.snp_launch_digest(h).unwrap(), policy);
    block.family_id = [1; 16];
    block.image_id = [2; 16];
    block.guest_svn = 7;
    let author_key = signing_key(2);
    let auth = block
        .sign(&signing_key(1), author.then_some(&author_key))
        .unwrap();
    let input = IdBlockInput {
        id_block: block.encode().to_vec(),
        id_auth: auth.encode().to_vec(),
    };
    (f, h, block, input)
}

#[test]
fn launch_finish_verifies_the_id_block_and_keeps_its_identity() {
    for author in [false, true] {
        let (f, h, block, input) = id_for(30, author);
        let finish = SnpLaunchFinish {
            id: Some(input.clone()),
            auth_key_en: author,
            host_data: [5; 32],
            ..SnpLaunchFinish::default()
        };
        f.p.snp_launch_finish(h, &finish).unwrap();
        let ids = f.p.snp_launch_identity(h).unwrap();
        assert_eq!(ids.author_key_en, author);
        let id = ids.id_block.unwrap();
        assert_eq!(
            (id.family_id, id.image_id, id.guest_svn),
            (block.family_id, block.image_id, 7)
        );
        assert_eq!(id.author_key_digest.is_some(), author);
        let auth = id_block::IdAuth::decode(&input.id_auth, author).unwrap();
        assert_eq!(id.id_key_digest, auth.id_key_digest());
    }
}

#[test]
fn a_bad_id_block_or_auth_is_refused_with_the_firmwares_status() {
    let (f, h, block, input) = id_for(31, true);
    let finish = |id_block: Vec<u8>, id_auth: Vec<u8>| SnpLaunchFinish {
        id: Some(IdBlockInput { id_block, id_auth }),
        auth_key_en: true,
        ..SnpLaunchFinish::default()
    };
    let mut wrong_ld = block;
    wrong_ld.launch_digest[0] ^= 1;
    let mut wrong_policy = block;
    wrong_policy.policy = GuestPolicy::new(QEMU_POLICY | GuestPolicy::DEBUG).unwrap();
    let mut bad_sig = input.id_auth.clone();
    bad_sig[0x40] ^= 1;
    // The author's signature over the ID key, corrupted.
    let mut bad_author_sig = input.id_auth.clone();
    bad_author_sig[0x680] ^= 1;
    let mut bad_algo = input.id_auth.clone();
    bad_algo[0] = 2;
    let cases = [
        (
            finish(wrong_ld.encode().to_vec(), input.id_auth.clone()),
            Status::BadMeasurement,
        ),
        (
            finish(wrong_policy.encode().to_vec(), input.id_auth.clone()),
            Status::PolicyFailure,
        ),
        (
            finish(input.id_block.clone(), bad_sig),
            Status::BadSignature,
        ),
        (
            finish(input.id_block.clone(), bad_author_sig),
            Status::BadSignature,
        ),
        (
            finish(input.id_block.clone(), bad_algo),
            Status::InvalidParam,
        ),
        (
            finish(input.id_block.clone(), input.id_auth[..0x800].to_vec()),
            Status::InvalidParam,
        ),
    ];
    for (finish, want) in cases {
        assert_eq!(status_of(f.p.snp_launch_finish(h, &finish)), want);
        assert_eq!(
            f.p.snp_guest_status(h).unwrap().state,
            SnpGuestState::Launch
        );
        assert_eq!(f.p.snp_launch_identity(h).unwrap().id_block, None);
    }
    f.p.snp_launch_finish(h, &finish(input.id_block, input.id_auth))
        .unwrap();
}

#[test]
fn sev_and_snp_guests_share_one_asid_table() {
    use sev_proto::abi::Policy;
    // SNP guest `h` on ASID 1, then SEV INIT with SEV-ES (ASIDs 1..=4).
    let (f, h) = launched(30, QEMU_POLICY);
    f.p.init(true).unwrap();
    let es = |p: &crate::Platform| {
        p.launch_start(0, Policy::from_bits(Policy::ES), None, None)
            .unwrap()
    };
    let a = es(&f.p);
    // An SNP context's ASID is owned, for ACTIVATE as for SNP_ACTIVATE.
    assert_eq!(status_of(f.p.activate(a, 1)), Status::AsidOwned);
    assert_eq!(f.p.guest_status(a).unwrap().asid, 0);
    // KVM's choice skips it.
    assert_eq!(f.p.activate_free_asid(a).unwrap(), 2);
    let other = f.p.snp_gctx_create().unwrap();
    f.p.snp_launch_start(other, &SnpLaunchStart::with_policy(QEMU_POLICY))
        .unwrap();
    assert_eq!(status_of(f.p.snp_activate(other, 2)), Status::AsidOwned);
    assert_eq!(f.p.snp_guest_status(other).unwrap().asid, 0);
    // A decommissioned SNP context's ASID needs a flush before an SEV guest
    // takes it; DF_FLUSH does it as SNP_DF_FLUSH would.
    f.p.snp_decommission(h).unwrap();
    let b = es(&f.p);
    assert_eq!(status_of(f.p.activate(b, 1)), Status::DfFlushRequired);
    assert_eq!(f.p.guest_status(b).unwrap().asid, 0);
    f.p.df_flush().unwrap();
    f.p.activate(b, 1).unwrap();
    // And the other way: an ASID an SEV guest released needs a flush before
    // an SNP context takes it; SNP_DF_FLUSH does it.
    f.p.deactivate(a).unwrap();
    assert_eq!(
        status_of(f.p.snp_activate(other, 2)),
        Status::DfFlushRequired
    );
    f.p.snp_df_flush().unwrap();
    f.p.snp_activate(other, 2).unwrap();
    // With only released ASIDs left, KVM's choice flushes both kinds.
    f.p.snp_decommission(other).unwrap();
    let c = es(&f.p);
    let d = es(&f.p);
    assert_eq!(f.p.activate_free_asid(c).unwrap(), 3);
    assert_eq!(f.p.activate_free_asid(d).unwrap(), 4);
    let e = es(&f.p);
    assert_eq!(f.p.activate_free_asid(e).unwrap(), 2);
}

#[test]
fn kvms_asid_choice_for_an_snp_guest_is_one_command() {
    use sev_proto::abi::Policy;
    // SNP guest `h` on ASID 1, an SEV-ES guest on ASID 2 (ASIDs 1..=4).
    let (f, h) = launched(32, QEMU_POLICY);
    f.p.init(true).unwrap();
    let a =
        f.p.launch_start(0, Policy::from_bits(Policy::ES), None, None)
            .unwrap();
    assert_eq!(f.p.activate_free_asid(a).unwrap(), 2);
    let started = |p: &crate::Platform| {
        let g = p.snp_gctx_create().unwrap();
        p.snp_launch_start(g, &SnpLaunchStart::with_policy(QEMU_POLICY))
            .unwrap();
        g
    };
    let x = started(&f.p);
    assert_eq!(f.p.snp_activate_free_asid(x).unwrap(), 3);
    // Already active: it keeps its ASID.
    assert_eq!(f.p.snp_activate_free_asid(x).unwrap(), 3);
    let y = started(&f.p);
    assert_eq!(f.p.snp_activate_free_asid(y).unwrap(), 4);
    let z = started(&f.p);
    assert_eq!(
        status_of(f.p.snp_activate_free_asid(z)),
        Status::ResourceLimit
    );
    assert_eq!(f.p.snp_guest_status(z).unwrap().asid, 0);
    // A released ASID is flushed and taken in the same command.
    f.p.snp_decommission(h).unwrap();
    assert_eq!(status_of(f.p.snp_activate(z, 1)), Status::DfFlushRequired);
    assert_eq!(f.p.snp_activate_free_asid(z).unwrap(), 1);
    assert_eq!(f.p.snp_guest_status(z).unwrap().asid, 1);
}

#[test]
fn a_ranged_launch_update_is_the_per_page_command_page_by_page() {
    const BASE: u64 = 0x10_0000;
    const PAGES: u64 = 64;
    const BLOCKED: u64 = 40;
    let content: Vec<u8> = (0..PAGES * 4096).map(|i| (i % 253) as u8 + 1).collect();
    for page_type in [PageType::Normal, PageType::Zero, PageType::Unmeasured] {
        // The same launch twice: page by page, then as one range; in both
        // one page in the middle was launched before (INVALID_PAGE_STATE).
        let runs: Vec<_> = [false, true]
            .into_iter()
            .map(|ranged| {
                let (f, h) = launched(31, QEMU_POLICY);
                let m = mem();
                m.write_plain(BASE, &content).unwrap();
                let blocked = BASE + BLOCKED * 4096;
                f.p.snp_launch_update(h, &m, &SnpLaunchUpdate::page(page_type, blocked))
                    .unwrap();
                let err = if ranged {
                    f.p.snp_launch_update_range(h, &m, BASE, PAGES * 4096, page_type)
                        .unwrap_err()
                } else {
                    (0..PAGES)
                        .find_map(|i| {
                            let page = SnpLaunchUpdate::page(page_type, BASE + i * 4096);
                            f.p.snp_launch_update(h, &m, &page).err()
                        })
                        .unwrap()
                };
                let digest = f.p.snp_launch_digest(h).unwrap();
                let mut after = vec![0u8; ((PAGES - BLOCKED - 1) * 4096) as usize];
                m.read_plain(blocked + 4096, &mut after).unwrap();
                // Nothing after the failing page was launched.
                f.p.snp_launch_update(h, &m, &SnpLaunchUpdate::page(page_type, blocked + 4096))
                    .unwrap();
                (err.status, err.detail, digest, after)
            })
            .collect();
        assert_eq!(runs[0].0, Status::InvalidPageState, "{page_type:?}");
        assert!(
            runs[0] == runs[1],
            "{page_type:?}: {:?} / {:?}",
            runs[0].1,
            runs[1].1
        );
        let measured = |i: u64| {
            let page = &content[(i * 4096) as usize..][..4096];
            if page_type == PageType::Zero {
                [0; 4096]
            } else {
                page.try_into().unwrap()
            }
        };
        let expect_blocked = measured(BLOCKED);
        let mut expected = LaunchDigest::new();
        expected.add_page(page_type, BASE + BLOCKED * 4096, &expect_blocked);
        for i in 0..BLOCKED {
            expected.add_page(page_type, BASE + i * 4096, &measured(i));
        }
        assert_eq!(&runs[1].2, expected.bytes(), "{page_type:?}");
        // The pages after the failing one are as they were (not zeroed).
        assert!(
            runs[1].3 == content[((BLOCKED + 1) * 4096) as usize..],
            "{page_type:?}"
        );
    }
}

/// Padding pages (all bytes equal) take remembered digests and the other
/// pages are hashed on the calling thread when they are few, on several
/// when they are many: the digest is the per-page chain either way.
#[test]
fn a_ranged_launch_update_of_mostly_padding_measures_every_page() {
    const BASE: u64 = 0x10_0000;
    const PAGES: u64 = 64;
    // Few non-uniform pages (hashed inline), then most of them (threads).
    for (seed, data_pages) in [
        (33u64, vec![0u64, 17, 63]),
        (34, (0..PAGES).step_by(2).collect()),
    ] {
        let mut content = vec![0u8; (PAGES * 4096) as usize];
        content[(5 * 4096) as usize..(6 * 4096) as usize].fill(0xFF);
        for &i in &data_pages {
            let page = &mut content[(i * 4096) as usize..((i + 1) * 4096) as usize];
            for (j, b) in page.iter_mut().enumerate() {
                *b = (j as u64 + i) as u8;
            }
        }
        let (f, h) = launched(seed, QEMU_POLICY);
        let m = mem();
        m.write_plain(BASE, &content).unwrap();
        f.p.snp_launch_update_range(h, &m, BASE, PAGES * 4096, PageType::Normal)
            .unwrap();
        let mut expected = LaunchDigest::new();
        for i in 0..PAGES {
            let page: &[u8; 4096] = content[(i * 4096) as usize..][..4096].try_into().unwrap();
            expected.add_page(PageType::Normal, BASE + i * 4096, page);
        }
        assert_eq!(
            &f.p.snp_launch_digest(h).unwrap(),
            expected.bytes(),
            "{} data pages",
            data_pages.len()
        );
    }
}

#[test]
fn a_ranged_launch_update_refuses_bad_ranges_and_stops_at_the_end_of_memory() {
    let (f, h) = launched(32, QEMU_POLICY);
    let m = mem();
    let before = f.p.snp_launch_digest(h).unwrap();
    let range = |gpa: u64, len: u64| {
        f.p.snp_launch_update_range(h, &m, gpa, len, PageType::Normal)
    };
    for (gpa, len) in [(0, 0), (0, 100), (0x800, 4096), (0, 4096 + 1)] {
        assert_eq!(
            status_of(range(gpa, len)),
            Status::InvalidAddress,
            "{gpa:#x}+{len:#x}"
        );
    }
    // Past 2^64: the first page fails, nothing is launched.
    assert_eq!(
        status_of(range(0u64.wrapping_sub(4096), 8192)),
        Status::InvalidAddress
    );
    assert_eq!(f.p.snp_launch_digest(h).unwrap(), before);
    // A range running past guest memory launches the pages inside it and
    // stops at the first page outside, as the per-page command would.
    let end = 4 * MIB2;
    m.write_plain(end - 8192, &[5; 8192]).unwrap();
    let e = range(end - 8192, 4 * 4096).unwrap_err();
    assert_eq!(e.status, Status::InvalidAddress);
    assert!(e.detail.contains(&format!("{end:#x}")), "{e}");
    let mut expected = LaunchDigest::new();
    expected.add_page(PageType::Normal, end - 8192, &[5; 4096]);
    expected.add_page(PageType::Normal, end - 4096, &[5; 4096]);
    assert_eq!(&f.p.snp_launch_digest(h).unwrap(), expected.bytes());
    // The guest's state is checked once for the range.
    let g = f.p.snp_gctx_create().unwrap();
    assert_eq!(
        status_of(f.p.snp_launch_update_range(g, &m, 0, 4096, PageType::Normal)),
        Status::InvalidGuestState
    );
    f.p.snp_launch_start(g, &SnpLaunchStart::with_policy(QEMU_POLICY))
        .unwrap();
    assert_eq!(
        status_of(f.p.snp_launch_update_range(g, &m, 0, 4096, PageType::Normal)),
        Status::Inactive
    );
}
