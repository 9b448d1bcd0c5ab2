//! Tests of the SNP platform commands: every command in every state, with
//! the firmware's status codes, and the buffers' reserved-field checks.

use sev_proto::abi::{ApiVersion, Status};
use sev_proto::snp::{Product, TcbVersion};

use super::buffers::{init_flags, status_flags, SnpPlatformState, PLATFORM_STATUS_LEN};
use super::identity::{default_tcb, SNP_IDENTITY_FILE};
use super::state::SnpShared;
use super::*;
use crate::error::{FwError, Op};
use crate::platform::tests::{fresh, Fresh, API, BUILD};
use crate::rng::seeded_rng;
use crate::store::StateDir;
use crate::{CreateOptions, Platform};

fn status_of<T: std::fmt::Debug>(r: Result<T, FwError>) -> Status {
    r.expect_err("the command must fail").status
}

fn genoa_current() -> u64 {
    default_tcb(Product::Genoa).encode(Product::Genoa).unwrap()
}

/// Changes the platform's SNP runtime record directly (what decommissioned
/// guests would leave behind).
fn edit_runtime(f: &Fresh, edit: impl FnOnce(&mut state::SnpRuntime)) {
    let dir = StateDir::open(&f.path, false).unwrap();
    let _lock = dir.lock().unwrap();
    let run = dir.run_dir().unwrap();
    let mut shared = SnpShared::load(&run, Op::Snp(SnpCommand::DfFlush)).unwrap();
    edit(&mut shared.snp);
    shared.save().unwrap();
}

fn runtime(f: &Fresh) -> state::SnpRuntime {
    let dir = StateDir::open(&f.path, false).unwrap();
    let _lock = dir.lock().unwrap();
    let run = dir.run_dir().unwrap();
    SnpShared::load(&run, Op::Snp(SnpCommand::DfFlush))
        .unwrap()
        .snp
}

#[test]
fn fresh_platform_reports_snp_uninit_with_its_tcb() {
    let f = fresh(1);
    let s = f.p.snp_platform_status().unwrap();
    assert_eq!(s.api, API);
    assert_eq!(s.build_id, u32::from(BUILD));
    assert_eq!(s.state, SnpPlatformState::Uninit);
    assert!(!s.rmp_initialized);
    assert_eq!(s.flags, 0);
    assert_eq!(s.guest_count, 0);
    assert_eq!(s.current_tcb, genoa_current());
    assert_eq!(s.reported_tcb, genoa_current());
    let bytes = s.to_bytes();
    assert_eq!(bytes.len(), PLATFORM_STATUS_LEN);
    assert_eq!(&bytes[..4], &[API.major, API.minor, 0, 0]);
    assert_eq!(SnpPlatformStatus::from_bytes(&bytes), Some(s));
    let id = f.p.snp_identity().unwrap();
    assert_eq!(id.product, Product::Genoa);
    assert!(id.smt);
    assert_eq!(id.sockets, 1);
    assert_eq!(id.committed_version, (API, BUILD));
}

#[test]
fn init_ex_and_shutdown_walk_the_state_machine() {
    let f = fresh(2);
    // SHUTDOWN while UNINIT: success, nothing changes.
    f.p.snp_shutdown().unwrap();
    f.p.snp_shutdown_ex(&SnpShutdownEx::default()).unwrap();
    f.p.snp_init_ex(&SnpInitEx::legacy_init()).unwrap();
    let s = f.p.snp_platform_status().unwrap();
    assert_eq!(s.state, SnpPlatformState::Init);
    assert!(s.rmp_initialized);
    for r in [f.p.snp_init(), f.p.snp_init_ex(&SnpInitEx::legacy_init())] {
        assert_eq!(status_of(r), Status::InvalidPlatformState);
    }
    f.p.snp_shutdown_ex(&SnpShutdownEx {
        iommu_snp_shutdown: true,
        x86_snp_shutdown: true,
    })
    .unwrap();
    assert_eq!(
        f.p.snp_platform_status().unwrap().state,
        SnpPlatformState::Uninit
    );
    f.p.snp_init().unwrap();
    f.p.snp_shutdown().unwrap();
    assert!(!f.p.snp_platform_status().unwrap().rmp_initialized);
}

#[test]
fn snp_and_sev_platform_states_interlock() {
    let f = fresh(3);
    // SNP_INIT needs SEV UNINIT.
    f.p.init(false).unwrap();
    assert_eq!(status_of(f.p.snp_init()), Status::InvalidPlatformState);
    let e = f.p.snp_init_ex(&SnpInitEx::legacy_init()).unwrap_err();
    assert_eq!(e.status, Status::InvalidPlatformState);
    assert_eq!(e.op, Op::Snp(SnpCommand::InitEx));
    assert!(e.to_string().contains("SNP_INIT_EX (0x085)"), "{e}");
    f.p.shutdown().unwrap();
    // SEV may be initialised while SNP is INIT (Linux's order).
    f.p.snp_init().unwrap();
    f.p.init(false).unwrap();
    // SNP_SHUTDOWN needs SEV UNINIT; nothing changes.
    assert_eq!(status_of(f.p.snp_shutdown()), Status::InvalidPlatformState);
    assert_eq!(
        f.p.snp_platform_status().unwrap().state,
        SnpPlatformState::Init
    );
    f.p.shutdown().unwrap();
    f.p.snp_shutdown().unwrap();
}

#[test]
fn init_ex_flags_and_range_list() {
    let f = fresh(4);
    for flag in [init_flags::CIPHERTEXT_HIDING_EN, init_flags::TIO_EN] {
        let params = SnpInitEx {
            flags: init_flags::INIT_RMP | flag,
            ..SnpInitEx::default()
        };
        assert_eq!(status_of(f.p.snp_init_ex(&params)), Status::InvalidParam);
    }
    assert_eq!(
        status_of(f.p.snp_init_ex(&SnpInitEx::default())),
        Status::RmpInitRequired
    );
    assert_eq!(
        f.p.snp_platform_status().unwrap().state,
        SnpPlatformState::Uninit
    );
    let ranges = vec![
        HvFixedRange {
            base: 0x10_0000,
            pages: 16,
        },
        HvFixedRange {
            base: 0xfee0_0000,
            pages: 1,
        },
    ];
    let params = SnpInitEx {
        flags: init_flags::INIT_RMP | init_flags::RAPL_DIS,
        max_snp_asid: 9,
        ranges: Some(ranges.clone()),
    };
    let (buf, list) = params.to_bytes();
    let decoded = SnpInitEx::decode(&buf, list.as_deref()).unwrap();
    assert_eq!(
        decoded.flags,
        init_flags::INIT_RMP | init_flags::RAPL_DIS | init_flags::LIST_PADDR_EN
    );
    f.p.snp_init_ex(&decoded).unwrap();
    let s = f.p.snp_platform_status().unwrap();
    assert_eq!(s.flags, status_flags::RAPL_DIS);
    let r = runtime(&f);
    assert_eq!(r.ranges, ranges);
    assert_eq!(r.max_snp_asid, 9);
    f.p.snp_shutdown().unwrap();
    assert_eq!(runtime(&f), state::SnpRuntime::default());
}

#[test]
fn platform_commands_need_snp_init() {
    let f = fresh(5);
    let uninit = [
        status_of(f.p.snp_config(&SnpConfig::default())),
        status_of(f.p.snp_commit(&SnpCommit)),
        status_of(f.p.snp_df_flush()),
    ];
    assert_eq!(uninit, [Status::InvalidPlatformState; 3]);
    f.p.snp_init().unwrap();
    f.p.snp_config(&SnpConfig::default()).unwrap();
    f.p.snp_commit(&SnpCommit).unwrap();
    f.p.snp_df_flush().unwrap();
    f.p.snp_platform_status().unwrap();
}

#[test]
fn config_sets_reported_tcb_and_masks_within_the_current_tcb() {
    let f = fresh(6);
    f.p.snp_init().unwrap();
    let current = default_tcb(Product::Genoa);
    let older = TcbVersion {
        snp: current.snp - 1,
        ..current
    };
    let raw = older.encode(Product::Genoa).unwrap();
    f.p.snp_config(&SnpConfig {
        reported_tcb: raw,
        mask_chip_id: true,
        mask_chip_key: true,
    })
    .unwrap();
    let s = f.p.snp_platform_status().unwrap();
    assert_eq!(s.reported_tcb, raw);
    assert_eq!(s.current_tcb, genoa_current());
    assert_eq!(
        s.flags,
        status_flags::MASK_CHIP_ID | status_flags::MASK_CHIP_KEY
    );
    // Above the installed firmware, or a byte Genoa reserves: refused,
    // nothing changes.
    let newer = TcbVersion {
        microcode: current.microcode + 1,
        ..current
    };
    let reserved = genoa_current() | 1 << 16;
    for bad in [newer.encode(Product::Genoa).unwrap(), reserved] {
        let cfg = SnpConfig {
            reported_tcb: bad,
            ..SnpConfig::default()
        };
        assert_eq!(status_of(f.p.snp_config(&cfg)), Status::InvalidParam);
    }
    assert_eq!(f.p.snp_platform_status().unwrap(), s);
    // 0: the current TCB again.
    f.p.snp_config(&SnpConfig::default()).unwrap();
    let s = f.p.snp_platform_status().unwrap();
    assert_eq!((s.reported_tcb, s.flags), (genoa_current(), 0));
    // SNP_SHUTDOWN discards the configuration.
    f.p.snp_config(&SnpConfig {
        reported_tcb: raw,
        mask_chip_id: true,
        mask_chip_key: false,
    })
    .unwrap();
    f.p.snp_shutdown().unwrap();
    let s = f.p.snp_platform_status().unwrap();
    assert_eq!((s.reported_tcb, s.flags), (genoa_current(), 0));
}

#[test]
fn the_vcek_follows_the_reported_tcb() {
    let f = fresh(7);
    f.p.snp_init().unwrap();
    let current = default_tcb(Product::Genoa);
    let older = TcbVersion {
        snp: current.snp - 1,
        ..current
    };
    let at_current = f.p.snp_vcek_public(Some(current)).unwrap();
    let at_older = f.p.snp_vcek_public(Some(older)).unwrap();
    assert_ne!(at_current, at_older);
    assert_eq!(f.p.snp_vcek_public(None).unwrap(), at_current);
    f.p.snp_config(&SnpConfig {
        reported_tcb: older.encode(Product::Genoa).unwrap(),
        ..SnpConfig::default()
    })
    .unwrap();
    assert_eq!(f.p.snp_vcek_public(None).unwrap(), at_older);
    // A TCB the product's layout cannot hold (an FMC on Genoa) is refused.
    let fmc = TcbVersion { fmc: 1, ..current };
    assert_eq!(
        status_of(f.p.snp_vcek_public(Some(fmc))),
        Status::InvalidParam
    );
}

#[test]
fn commit_makes_the_current_tcb_and_version_the_committed_ones() {
    let f = fresh(7);
    // An identity whose committed TCB and version are older.
    let mut id = f.p.snp_identity().unwrap();
    let current = id.current_tcb;
    id.committed_tcb = TcbVersion {
        bootloader: 1,
        ..current
    };
    id.committed_version = (ApiVersion::new(1, 51), 3);
    let dir = StateDir::open(&f.path, false).unwrap();
    dir.write_sealed(SNP_IDENTITY_FILE, &id.encode().unwrap())
        .unwrap();
    assert_eq!(f.p.snp_identity().unwrap().committed_tcb.bootloader, 1);
    f.p.snp_init().unwrap();
    f.p.snp_commit(&SnpCommit).unwrap();
    let id = f.p.snp_identity().unwrap();
    assert_eq!(id.committed_tcb, current);
    assert_eq!(id.committed_version, (API, BUILD));
    // Persistent: another process (a new Platform) sees it.
    let other = Platform::open(&f.path, seeded_rng(70)).unwrap();
    assert_eq!(other.snp_identity().unwrap(), id);
}

#[test]
fn shutdown_needs_df_flush_of_decommissioned_asids() {
    let f = fresh(8);
    f.p.snp_init().unwrap();
    edit_runtime(&f, |r| {
        r.needs_flush.insert(3);
    });
    assert_eq!(status_of(f.p.snp_shutdown()), Status::DfFlushRequired);
    assert_eq!(
        status_of(f.p.snp_shutdown_ex(&SnpShutdownEx::default())),
        Status::DfFlushRequired
    );
    assert_eq!(
        f.p.snp_platform_status().unwrap().state,
        SnpPlatformState::Init
    );
    f.p.snp_df_flush().unwrap();
    assert!(runtime(&f).needs_flush.is_empty());
    f.p.snp_shutdown().unwrap();
}

#[test]
fn a_dead_processes_guest_contexts_are_reaped_and_their_asids_need_a_flush() {
    let f = fresh(91);
    f.p.snp_init().unwrap();
    let other = Platform::open(&f.path, seeded_rng(92)).unwrap();
    let mine = f.p.snp_gctx_create().unwrap();
    let a = other.snp_gctx_create().unwrap();
    let b = other.snp_gctx_create().unwrap();
    other
        .snp_launch_start(a, &SnpLaunchStart::with_policy(0x30000))
        .unwrap();
    other.snp_activate(a, 2).unwrap();
    let record = f.path.join("run").join(format!("snp-guest-{a}"));
    assert!(record.exists());
    assert_eq!(f.p.snp_platform_status().unwrap().guest_count, 3);
    // A live process's contexts stay: the ASID is owned.
    f.p.snp_launch_start(mine, &SnpLaunchStart::with_policy(0x30000))
        .unwrap();
    assert_eq!(status_of(f.p.snp_activate(mine, 2)), Status::AsidOwned);
    // The process goes away without SNP_DECOMMISSION (what dropping its
    // Platform, exiting or being killed all do: its locks are released).
    drop(other);
    assert!(record.exists(), "reaped by the next reader, not by drop");
    assert_eq!(f.p.snp_platform_status().unwrap().guest_count, 1);
    assert!(!record.exists(), "the dead context's record was reaped");
    let r = runtime(&f);
    assert_eq!(r.guests.keys().copied().collect::<Vec<_>>(), vec![mine]);
    assert_eq!(r.needs_flush.iter().copied().collect::<Vec<_>>(), vec![2]);
    // Torn down as SNP_DECOMMISSION would: ASID 2 needs SNP_DF_FLUSH, and
    // the handles are gone for good.
    assert_eq!(
        status_of(f.p.snp_activate(mine, 2)),
        Status::DfFlushRequired
    );
    f.p.snp_df_flush().unwrap();
    f.p.snp_activate(mine, 2).unwrap();
    let third = Platform::open(&f.path, seeded_rng(93)).unwrap();
    for h in [a, b] {
        assert_eq!(status_of(third.snp_decommission(h)), Status::InvalidGuest);
    }
    // This process's own context survives every reap; DECOMMISSION removes
    // its record.
    assert_eq!(third.snp_platform_status().unwrap().guest_count, 1);
    f.p.snp_decommission(mine).unwrap();
    assert!(!f
        .path
        .join("run")
        .join(format!("snp-guest-{mine}"))
        .exists());
    assert_eq!(third.snp_platform_status().unwrap().guest_count, 0);
}

#[test]
fn snp_shutdown_removes_every_processes_context_records() {
    let f = fresh(94);
    f.p.snp_init().unwrap();
    let other = Platform::open(&f.path, seeded_rng(95)).unwrap();
    let a = other.snp_gctx_create().unwrap();
    let record = f.path.join("run").join(format!("snp-guest-{a}"));
    assert!(record.exists());
    f.p.snp_shutdown().unwrap();
    assert!(!record.exists());
    f.p.snp_init().unwrap();
    assert_eq!(status_of(other.snp_guest_status(a)), Status::InvalidGuest);
    // The next handle is a new one; nothing stale is left to reap.
    let b = other.snp_gctx_create().unwrap();
    assert_ne!(b, a);
    assert_eq!(f.p.snp_platform_status().unwrap().guest_count, 1);
    // A record nobody holds and no context names (its process died before
    // recording the context) does not keep its handle from being used.
    let stray = f.path.join("run").join(format!("snp-guest-{}", b + 1));
    std::fs::write(&stray, b"left behind").unwrap();
    assert_eq!(f.p.snp_gctx_create().unwrap(), b + 1);
    assert!(stray.exists(), "the new context's own record");
    assert_eq!(f.p.snp_platform_status().unwrap().guest_count, 2);
}

#[test]
fn snp_state_is_platform_wide() {
    let f = fresh(9);
    let other = Platform::open(&f.path, seeded_rng(90)).unwrap();
    f.p.snp_init().unwrap();
    assert_eq!(
        other.snp_platform_status().unwrap().state,
        SnpPlatformState::Init
    );
    assert_eq!(status_of(other.snp_init()), Status::InvalidPlatformState);
    other.snp_shutdown().unwrap();
    assert_eq!(
        f.p.snp_platform_status().unwrap().state,
        SnpPlatformState::Uninit
    );
}

#[test]
fn a_directory_without_snp_identity_gets_one_on_first_use() {
    let f = fresh(10);
    std::fs::remove_file(f.path.join(SNP_IDENTITY_FILE)).unwrap();
    let p = Platform::open(&f.path, seeded_rng(100)).unwrap();
    // The SEV firmware does not need it.
    p.platform_status().unwrap();
    assert!(!f.path.join(SNP_IDENTITY_FILE).exists());
    let s = p.snp_platform_status().unwrap();
    assert_eq!(s.current_tcb, genoa_current());
    assert!(f.path.join(SNP_IDENTITY_FILE).exists());
    // Created once: a second process reads the same identity.
    let q = Platform::open(&f.path, seeded_rng(101)).unwrap();
    assert_eq!(q.snp_identity().unwrap(), p.snp_identity().unwrap());
}

#[test]
fn a_damaged_snp_identity_is_secure_data_invalid() {
    let f = fresh(11);
    let path = f.path.join(SNP_IDENTITY_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    assert_eq!(
        status_of(f.p.snp_platform_status()),
        Status::SecureDataInvalid
    );
    assert_eq!(status_of(f.p.snp_init()), Status::SecureDataInvalid);
}

#[test]
fn turin_platform_has_an_eight_byte_chip_id_and_fmc_tcb() {
    let tmp = tempfile::tempdir().unwrap();
    let options = CreateOptions {
        ark_bits: 2048,
        snp: SnpOptions {
            product: Product::Turin,
            ..SnpOptions::default()
        },
        ..CreateOptions::default()
    };
    let p = Platform::create(tmp.path().join("p"), options, seeded_rng(12)).unwrap();
    let mut id = [0u8; 64];
    p.get_id(&mut id).unwrap();
    assert_ne!(&id[..8], &[0u8; 8]);
    assert_eq!(&id[8..], &[0u8; 56]);
    let snp = p.snp_identity().unwrap();
    assert_eq!(snp.product, Product::Turin);
    let s = p.snp_platform_status().unwrap();
    assert_eq!(
        TcbVersion::decode(s.current_tcb, Product::Turin).unwrap(),
        default_tcb(Product::Turin)
    );
    assert_eq!(
        s.current_tcb.to_le_bytes()[0],
        default_tcb(Product::Turin).fmc
    );
}

#[test]
fn create_refuses_bad_snp_options() {
    let tmp = tempfile::tempdir().unwrap();
    let options = CreateOptions {
        ark_bits: 2048,
        snp: SnpOptions {
            sockets: 0,
            ..SnpOptions::default()
        },
        ..CreateOptions::default()
    };
    let err = Platform::create(tmp.path().join("p"), options, seeded_rng(13)).unwrap_err();
    assert!(err.to_string().contains("sockets"), "{err}");
}

// ----- buffers -----------------------------------------------------------

fn param_status<T: std::fmt::Debug>(r: Result<T, FwError>) -> Status {
    status_of(r)
}

#[test]
fn init_ex_buffer_checks_every_reserved_field() {
    let good = SnpInitEx::legacy_init().to_bytes().0;
    assert_eq!(
        SnpInitEx::decode(&good, None).unwrap(),
        SnpInitEx::legacy_init()
    );
    assert_eq!(
        param_status(SnpInitEx::decode(&good[..0x3f], None)),
        Status::InvalidParam
    );
    for (at, value) in [
        (0usize, 0x20u8),
        (3, 0x80),
        (4, 1),
        (7, 1),
        (0x12, 1),
        (0x3f, 1),
    ] {
        let mut b = good;
        b[at] |= value;
        assert_eq!(
            param_status(SnpInitEx::decode(&b, None)),
            Status::InvalidParam,
            "byte {at:#x}"
        );
    }
    // MAX_SNP_ASID and LIST_PADDR are not reserved.
    let mut b = good;
    b[0x10] = 5;
    b[0x08] = 0x10;
    assert_eq!(SnpInitEx::decode(&b, None).unwrap().max_snp_asid, 5);
    // LIST_PADDR_EN and the list go together.
    let mut with_list = good;
    with_list[0] |= init_flags::LIST_PADDR_EN as u8;
    assert_eq!(
        param_status(SnpInitEx::decode(&with_list, None)),
        Status::InvalidAddress
    );
    let page = vec![0u8; 4096];
    assert_eq!(
        param_status(SnpInitEx::decode(&good, Some(&page))),
        Status::InvalidParam
    );
    assert_eq!(
        SnpInitEx::decode(&with_list, Some(&page)).unwrap().ranges,
        Some(vec![])
    );
}

#[test]
fn range_list_is_checked() {
    let mut with_list = SnpInitEx::legacy_init().to_bytes().0;
    with_list[0] |= init_flags::LIST_PADDR_EN as u8;
    let list = |entries: &[(u64, u32, u32)], n: u32| {
        let mut page = vec![0u8; 4096];
        page[0..4].copy_from_slice(&n.to_le_bytes());
        for (i, (base, pages, rsvd)) in entries.iter().enumerate() {
            let e = 8 + i * 16;
            page[e..e + 8].copy_from_slice(&base.to_le_bytes());
            page[e + 8..e + 12].copy_from_slice(&pages.to_le_bytes());
            page[e + 12..e + 16].copy_from_slice(&rsvd.to_le_bytes());
        }
        page
    };
    let decode = |page: &[u8]| SnpInitEx::decode(&with_list, Some(page));
    let ok = decode(&list(&[(0x2000, 2, 0)], 1)).unwrap();
    assert_eq!(
        ok.ranges,
        Some(vec![HvFixedRange {
            base: 0x2000,
            pages: 2
        }])
    );
    let cases = [
        (list(&[(0x2001, 2, 0)], 1), Status::InvalidAddress),
        (list(&[(0x2000, 2, 1)], 1), Status::InvalidParam),
        (list(&[(!0xfff, 2, 0)], 1), Status::InvalidParam),
        (list(&[], 256), Status::InvalidParam),
        (list(&[], 0)[..4].to_vec(), Status::InvalidParam),
        (vec![0u8; 4097], Status::InvalidParam),
    ];
    for (page, want) in cases {
        assert_eq!(param_status(decode(&page)), want);
    }
    let mut header = list(&[], 0);
    header[5] = 1;
    assert_eq!(param_status(decode(&header)), Status::InvalidParam);
    let full: Vec<(u64, u32, u32)> = (0..255u64).map(|i| (i << 12, 1, 0)).collect();
    assert_eq!(
        decode(&list(&full, 255)).unwrap().ranges.map(|r| r.len()),
        Some(255)
    );
}

#[test]
fn shutdown_ex_config_and_commit_buffers() {
    let s = SnpShutdownEx {
        iommu_snp_shutdown: true,
        x86_snp_shutdown: false,
    };
    assert_eq!(SnpShutdownEx::decode(&s.to_bytes()).unwrap(), s);
    let mut b = s.to_bytes();
    b[0] = 7;
    assert_eq!(
        param_status(SnpShutdownEx::decode(&b)),
        Status::InvalidParam
    );
    let mut b = s.to_bytes();
    b[4] |= 4;
    assert_eq!(
        param_status(SnpShutdownEx::decode(&b)),
        Status::InvalidParam
    );
    assert_eq!(
        param_status(SnpShutdownEx::decode(&[8, 0, 0, 0])),
        Status::InvalidParam
    );

    let c = SnpConfig {
        reported_tcb: 0x1122_3344,
        mask_chip_id: false,
        mask_chip_key: true,
    };
    assert_eq!(SnpConfig::decode(&c.to_bytes()).unwrap(), c);
    for at in [8usize, 0x0c, 0x3f] {
        let mut b = c.to_bytes();
        b[at] |= if at == 8 { 4 } else { 1 };
        assert_eq!(
            param_status(SnpConfig::decode(&b)),
            Status::InvalidParam,
            "{at}"
        );
    }
    assert_eq!(
        param_status(SnpConfig::decode(&[0u8; 0x41])),
        Status::InvalidParam
    );

    assert_eq!(SnpCommit::decode(&SnpCommit.to_bytes()).unwrap(), SnpCommit);
    assert_eq!(
        param_status(SnpCommit::decode(&[8, 0, 0, 0])),
        Status::InvalidParam
    );
    assert_eq!(
        param_status(SnpCommit::decode(&[4, 0, 0, 0, 0])),
        Status::InvalidParam
    );
}

#[test]
fn command_ids_and_names() {
    assert_eq!(SnpCommand::from_id(0x85), Some(SnpCommand::InitEx));
    assert_eq!(SnpCommand::from_id(0x30), None);
    for c in SnpCommand::ALL {
        assert_eq!(SnpCommand::from_id(c.id()), Some(*c));
        assert!(c.name().starts_with("SNP_"));
    }
    assert_eq!(SnpCommand::Config.to_string(), "SNP_CONFIG (0x0C9)");
}
