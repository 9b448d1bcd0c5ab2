//! Tests of SNP_DBG_DECRYPT/ENCRYPT and of the RMP model: pages assigned to
//! an SNP guest are not host-writable, and only a page-state change (or
//! LAUNCH_UPDATE) changes which pages are.

use sev_proto::abi::Status;
use sev_proto::snp::{GuestPolicy, PageType};

use super::guest_tests::{launched, mem, page_of, status_of, QEMU_POLICY};
use super::*;
use crate::memory::{GuestBacking, MemoryError, VecBacking};
use crate::platform::tests::{fresh, Fresh};

const DEBUG_POLICY: u64 = QEMU_POLICY | GuestPolicy::DEBUG;
const NORMAL: u64 = 0x1000;
const VMSA: u64 = 0x3000;
const SPARE: u64 = 0x5000;

fn filled(byte: u8) -> [u8; 4096] {
    let mut page = [byte; 4096];
    page[0] = 0x5e;
    page
}

/// A guest launched with `policy`: a NORMAL page at 0x1000 and a VMSA page
/// at 0x3000 (filled with 0x11 and 0x33), RUNNING when `finish`.
fn guest(seed: u64, policy: u64, finish: bool) -> (Fresh, u32, VecBacking) {
    let (f, h) = launched(seed, policy);
    let m = mem();
    m.write_plain(NORMAL, &filled(0x11)).unwrap();
    m.write_plain(VMSA, &filled(0x33)).unwrap();
    for (ty, gpa) in [(PageType::Normal, NORMAL), (PageType::Vmsa, VMSA)] {
        f.p.snp_launch_update(h, &m, &SnpLaunchUpdate::page(ty, gpa))
            .unwrap();
    }
    if finish {
        f.p.snp_launch_finish(h, &SnpLaunchFinish::default())
            .unwrap();
    }
    (f, h, m)
}

#[test]
fn dbg_decrypt_and_encrypt_give_the_plaintext_of_assigned_pages() {
    for finish in [false, true] {
        let (f, h, m) = guest(40, DEBUG_POLICY, finish);
        let mut page = [0u8; 4096];
        f.p.snp_dbg_decrypt(h, &m, NORMAL, &mut page).unwrap();
        assert_eq!(page, filled(0x11));
        // A VMSA page as measured (no register-protection tweak).
        f.p.snp_dbg_decrypt(h, &m, VMSA, &mut page).unwrap();
        assert_eq!(page, filled(0x33));
        // The host sees ciphertext, not what DBG_DECRYPT gives.
        let mut seen = [0u8; 4096];
        f.p.snp_host_read(h, &m, NORMAL, &mut seen).unwrap();
        assert_ne!(seen, filled(0x11));

        let digest = f.p.snp_launch_digest(h).unwrap();
        f.p.snp_dbg_encrypt(h, &m, &filled(0x77), NORMAL).unwrap();
        assert_eq!(page_of(&m, NORMAL), filled(0x77), "the guest reads it");
        f.p.snp_dbg_decrypt(h, &m, NORMAL, &mut page).unwrap();
        assert_eq!(page, filled(0x77));
        assert_eq!(f.p.snp_launch_digest(h).unwrap(), digest);
    }
}

#[test]
fn dbg_commands_are_refused_with_the_firmwares_status_and_change_nothing() {
    // SNP UNINIT.
    let f = fresh(41);
    let m = mem();
    let mut page = [0u8; 4096];
    assert_eq!(
        status_of(f.p.snp_dbg_decrypt(1, &m, NORMAL, &mut page)),
        Status::InvalidPlatformState
    );
    // An unknown guest; a guest that is not active.
    f.p.snp_init().unwrap();
    assert_eq!(
        status_of(f.p.snp_dbg_encrypt(9, &m, &page, NORMAL)),
        Status::InvalidGuest
    );
    let h = f.p.snp_gctx_create().unwrap();
    f.p.snp_launch_start(h, &SnpLaunchStart::with_policy(DEBUG_POLICY))
        .unwrap();
    assert_eq!(
        status_of(f.p.snp_dbg_decrypt(h, &m, NORMAL, &mut page)),
        Status::Inactive
    );

    // No DEBUG in the policy, in LAUNCH and in RUNNING.
    for finish in [false, true] {
        let (f, h, m) = guest(42, QEMU_POLICY, finish);
        assert_eq!(
            status_of(f.p.snp_dbg_decrypt(h, &m, NORMAL, &mut page)),
            Status::PolicyFailure
        );
        assert_eq!(
            status_of(f.p.snp_dbg_encrypt(h, &m, &filled(0x77), NORMAL)),
            Status::PolicyFailure
        );
        assert_eq!(page_of(&m, NORMAL), filled(0x11));
    }

    // DEBUG: a misaligned GPA, a page not assigned, a page outside memory.
    let (f, h, m) = guest(43, DEBUG_POLICY, true);
    let before = page_of(&m, SPARE);
    let refusals = [
        status_of(f.p.snp_dbg_decrypt(h, &m, NORMAL + 0x10, &mut page)),
        status_of(f.p.snp_dbg_encrypt(h, &m, &filled(0x77), NORMAL + 0x10)),
        status_of(f.p.snp_dbg_decrypt(h, &m, SPARE, &mut page)),
        status_of(f.p.snp_dbg_encrypt(h, &m, &filled(0x77), SPARE)),
        status_of(f.p.snp_dbg_decrypt(h, &m, 1 << 40, &mut page)),
    ];
    assert_eq!(
        refusals,
        [
            Status::InvalidAddress,
            Status::InvalidAddress,
            Status::InvalidPageState,
            Status::InvalidPageState,
            Status::InvalidPageState,
        ]
    );
    assert_eq!(page_of(&m, SPARE), before);
    assert_eq!(page_of(&m, NORMAL), filled(0x11));
}

#[test]
fn assigned_pages_are_not_host_writable() {
    let (f, h, m) = guest(44, QEMU_POLICY, true);
    let e =
        f.p.snp_host_write(h, &m, NORMAL + 8, &[0xab; 4])
            .unwrap_err();
    assert_eq!(e.status, Status::InvalidPageOwner);
    assert!(e.to_string().contains("RMP fault"), "{e}");
    // A write from a shared page into an assigned one writes nothing.
    let shared_before = page_of(&m, 0);
    let e =
        f.p.snp_host_write(h, &m, NORMAL - 16, &[0xab; 32])
            .unwrap_err();
    assert_eq!(e.status, Status::InvalidPageOwner);
    assert_eq!(page_of(&m, 0), shared_before);
    assert_eq!(page_of(&m, NORMAL), filled(0x11));
    // The VMSA page too; shared pages take the write as it is.
    assert_eq!(
        status_of(f.p.snp_host_write(h, &m, VMSA, &[1; 16])),
        Status::InvalidPageOwner
    );
    f.p.snp_host_write(h, &m, SPARE, &[0xcd; 32]).unwrap();
    assert_eq!(page_of(&m, SPARE)[..32], [0xcd; 32]);
    // The same through the memory state the VMM keeps for its hot paths.
    let state = f.p.snp_memory_state(h, &m).unwrap();
    assert!(state.is_snp());
    assert_eq!(
        crate::memory::host_write(&m, &state, NORMAL, &[0; 16]),
        Err(MemoryError::RmpFault { gpa: NORMAL })
    );
    crate::memory::host_write(&m, &state, SPARE + 0x800, &[0xee; 16]).unwrap();
    // Out of memory is an address error, not a fault.
    assert_eq!(
        status_of(f.p.snp_host_write(h, &m, 1 << 40, &[0; 16])),
        Status::InvalidAddress
    );
}

#[test]
fn only_a_page_state_change_makes_pages_private_or_shared() {
    let (f, h, m) = guest(45, DEBUG_POLICY, true);
    let mut ciphertext = [0u8; 4096];
    f.p.snp_host_read(h, &m, NORMAL, &mut ciphertext).unwrap();

    // Shared → private: the host can no longer write it, DBG can read it.
    f.p.snp_host_write(h, &m, SPARE, &filled(0x55)).unwrap();
    f.p.snp_page_state_change(h, &m, SPARE, 2, SnpPageState::Private)
        .unwrap();
    assert_eq!(
        status_of(f.p.snp_host_write(h, &m, SPARE + 0x1000, &[0; 16])),
        Status::InvalidPageOwner
    );
    let mut page = [0u8; 4096];
    f.p.snp_dbg_decrypt(h, &m, SPARE, &mut page).unwrap();
    assert_ne!(page, filled(0x55), "the guest reads the decryption");
    let mut seen = [0u8; 4096];
    f.p.snp_host_read(h, &m, SPARE, &mut seen).unwrap();
    assert_eq!(seen, filled(0x55), "the host still reads what it wrote");

    // Private → shared: the host writes it and reads the old ciphertext;
    // DBG no longer reads it.
    f.p.snp_page_state_change(h, &m, NORMAL, 1, SnpPageState::Shared)
        .unwrap();
    f.p.snp_host_read(h, &m, NORMAL, &mut seen).unwrap();
    assert_eq!(seen, ciphertext);
    assert_eq!(page_of(&m, NORMAL), ciphertext, "no plaintext left behind");
    f.p.snp_host_write(h, &m, NORMAL, &[0x99; 16]).unwrap();
    assert_eq!(
        status_of(f.p.snp_dbg_decrypt(h, &m, NORMAL, &mut page)),
        Status::InvalidPageState
    );
    // Asking for the state a page already has changes nothing.
    f.p.snp_page_state_change(h, &m, NORMAL, 1, SnpPageState::Shared)
        .unwrap();
    assert_eq!(page_of(&m, NORMAL)[..16], [0x99; 16]);
}

#[test]
fn page_state_changes_are_refused_with_a_status_and_change_nothing() {
    // Not RUNNING.
    let (f, h, m) = guest(46, QEMU_POLICY, false);
    assert_eq!(
        status_of(f.p.snp_page_state_change(h, &m, SPARE, 1, SnpPageState::Private)),
        Status::InvalidGuestState
    );
    assert_eq!(
        status_of(f.p.snp_page_state_change(9, &m, SPARE, 1, SnpPageState::Private)),
        Status::InvalidGuest
    );

    let (f, h, m) = guest(47, QEMU_POLICY, true);
    let before = (page_of(&m, NORMAL), page_of(&m, VMSA), page_of(&m, SPARE));
    let refusals = [
        // Misaligned, outside guest memory, wrapping.
        status_of(f.p.snp_page_state_change(h, &m, SPARE + 8, 1, SnpPageState::Private)),
        status_of(f.p.snp_page_state_change(h, &m, 1 << 40, 1, SnpPageState::Private)),
        status_of(f.p.snp_page_state_change(h, &m, SPARE, u64::MAX, SnpPageState::Shared)),
        // A range running past the end of memory.
        status_of(f.p.snp_page_state_change(h, &m, (8 << 20) - 0x1000, 2, SnpPageState::Private)),
        // A VMSA page made shared (alone or in a range).
        status_of(f.p.snp_page_state_change(h, &m, VMSA, 1, SnpPageState::Shared)),
        status_of(f.p.snp_page_state_change(h, &m, NORMAL, 4, SnpPageState::Shared)),
    ];
    assert_eq!(
        refusals,
        [
            Status::InvalidAddress,
            Status::InvalidAddress,
            Status::InvalidAddress,
            Status::InvalidAddress,
            Status::InvalidPageState,
            Status::InvalidPageState,
        ]
    );
    assert_eq!(
        (page_of(&m, NORMAL), page_of(&m, VMSA), page_of(&m, SPARE)),
        before
    );
    assert_eq!(
        status_of(f.p.snp_host_write(h, &m, NORMAL, &[0; 16])),
        Status::InvalidPageOwner
    );
    f.p.snp_host_write(h, &m, SPARE, &[0; 16]).unwrap();
}

#[test]
fn sev_memory_states_keep_host_writes_into_private_pages() {
    let vek = crate::memory::Vek::from_bytes([7; crate::memory::VEK_LEN]);
    let m = mem();
    let state = crate::memory::MemoryState::new(&vek, &m.regions()).unwrap();
    state.mark_private(NORMAL, 0x1000).unwrap();
    assert!(!state.is_snp());
    crate::memory::host_write(&m, &state, NORMAL, &[1; 16]).unwrap();
}

fn entry(f: &Fresh, h: u32, gpa: u64) -> SnpRmpEntry {
    f.p.snp_rmp_entry(h, gpa).unwrap()
}

#[test]
fn pvalidate_sets_and_clears_the_validated_bit() {
    // Before LAUNCH_FINISH the guest does not run: no PVALIDATE.
    let (f, h, _) = guest(60, QEMU_POLICY, false);
    assert_eq!(
        status_of(f.p.snp_pvalidate(h, NORMAL, false, true)),
        Status::InvalidGuestState
    );
    let (f, h, m) = guest(61, QEMU_POLICY, true);
    // Launched pages start validated.
    let launched = SnpRmpEntry {
        assigned: true,
        validated: true,
        large: false,
        vmsa: false,
    };
    assert_eq!(entry(&f, h, NORMAL), launched);
    assert_eq!(
        entry(&f, h, VMSA),
        SnpRmpEntry {
            vmsa: true,
            ..launched
        }
    );
    let pv = |gpa, large, validate| f.p.snp_pvalidate(h, gpa, large, validate).unwrap();
    assert_eq!(pv(NORMAL, false, true), Pvalidate::FailNoUpdate);
    assert_eq!(pv(NORMAL, false, false), Pvalidate::Success);
    assert!(!entry(&f, h, NORMAL).validated);
    assert_eq!(pv(NORMAL, false, false), Pvalidate::FailNoUpdate);
    assert_eq!(pv(NORMAL, false, true), Pvalidate::Success);
    // Misaligned for the size asked: FAIL_INPUT, nothing changed.
    assert_eq!(pv(NORMAL + 8, false, false), Pvalidate::FailInput);
    assert_eq!(pv(NORMAL, true, false), Pvalidate::FailInput);
    assert_eq!(entry(&f, h, NORMAL), launched);
    // A page the guest does not own: a fault, not a result.
    assert_eq!(
        status_of(f.p.snp_pvalidate(h, SPARE, false, true)),
        Status::InvalidPageState
    );
    assert_eq!(entry(&f, h, SPARE), SnpRmpEntry::default());
    // Made private it is assigned but not validated until PVALIDATE; made
    // shared again it loses both.
    f.p.snp_page_state_change(h, &m, SPARE, 1, SnpPageState::Private)
        .unwrap();
    assert_eq!(
        entry(&f, h, SPARE),
        SnpRmpEntry {
            assigned: true,
            ..SnpRmpEntry::default()
        }
    );
    assert_eq!(pv(SPARE, false, true), Pvalidate::Success);
    assert!(entry(&f, h, SPARE).validated);
    // Asking again for a page already private keeps its bit.
    f.p.snp_page_state_change(h, &m, SPARE, 1, SnpPageState::Private)
        .unwrap();
    assert!(entry(&f, h, SPARE).validated);
    f.p.snp_page_state_change(h, &m, SPARE, 1, SnpPageState::Shared)
        .unwrap();
    assert_eq!(entry(&f, h, SPARE), SnpRmpEntry::default());
    f.p.snp_page_state_change(h, &m, SPARE, 1, SnpPageState::Private)
        .unwrap();
    assert!(!entry(&f, h, SPARE).validated);
    assert_eq!(Pvalidate::FailNoUpdate.code(), 255);
    assert_eq!(Pvalidate::FailSizeMismatch.code(), 6);
}

#[test]
fn two_mib_entries_from_a_page_state_change_or_the_launch() {
    const BIG: u64 = 2 << 20;
    let (f, h, m) = guest(62, QEMU_POLICY, true);
    let pv = |gpa, large, validate| f.p.snp_pvalidate(h, gpa, large, validate).unwrap();
    // Not 2 MiB aligned: refused, nothing changed.
    assert_eq!(
        status_of(f.p.snp_page_state_change_large(h, &m, BIG + 0x1000, SnpPageState::Private)),
        Status::InvalidAddress
    );
    assert_eq!(entry(&f, h, BIG + 0x1000), SnpRmpEntry::default());
    f.p.snp_page_state_change_large(h, &m, BIG, SnpPageState::Private)
        .unwrap();
    let big = SnpRmpEntry {
        assigned: true,
        large: true,
        ..SnpRmpEntry::default()
    };
    for unit in [BIG, BIG + 0x1000, BIG + 0x1F_F000] {
        assert_eq!(entry(&f, h, unit), big);
    }
    assert_eq!(entry(&f, h, 2 * BIG), SnpRmpEntry::default());
    // The host can no longer write into it.
    assert_eq!(
        status_of(f.p.snp_host_write(h, &m, BIG + 0x1000, &[1])),
        Status::InvalidPageOwner
    );
    // A 4 KiB PVALIDATE of a 2 MiB entry: FAIL_SIZEMISMATCH.
    assert_eq!(pv(BIG + 0x1000, false, true), Pvalidate::FailSizeMismatch);
    assert_eq!(pv(BIG, true, true), Pvalidate::Success);
    assert!(entry(&f, h, BIG + 0x1F_F000).validated);
    assert_eq!(pv(BIG, true, true), Pvalidate::FailNoUpdate);
    // The same 2 MiB entry made private again changes nothing.
    f.p.snp_page_state_change_large(h, &m, BIG, SnpPageState::Private)
        .unwrap();
    assert!(entry(&f, h, BIG).validated);
    // A 4 KiB change inside it splits it: the other pages keep their bit,
    // now 4 KiB entries.
    f.p.snp_page_state_change(h, &m, BIG + 0x3000, 1, SnpPageState::Shared)
        .unwrap();
    assert_eq!(entry(&f, h, BIG + 0x3000), SnpRmpEntry::default());
    assert_eq!(
        entry(&f, h, BIG),
        SnpRmpEntry {
            validated: true,
            large: false,
            ..big
        }
    );
    assert_eq!(pv(BIG, false, true), Pvalidate::FailNoUpdate);
    assert_eq!(
        status_of(f.p.snp_pvalidate(h, BIG, true, false)),
        Status::InvalidPageState
    );
    // Made shared as a whole.
    f.p.snp_page_state_change_large(h, &m, BIG, SnpPageState::Shared)
        .unwrap();
    assert_eq!(entry(&f, h, BIG), SnpRmpEntry::default());
    f.p.snp_host_write(h, &m, BIG + 0x1000, &[1]).unwrap();

    // A 2 MiB LAUNCH_UPDATE makes a validated 2 MiB entry.
    let (f, h) = launched(63, QEMU_POLICY);
    let m = mem();
    let update = SnpLaunchUpdate {
        large: true,
        ..SnpLaunchUpdate::page(PageType::Normal, BIG)
    };
    f.p.snp_launch_update(h, &m, &update).unwrap();
    f.p.snp_launch_finish(h, &SnpLaunchFinish::default())
        .unwrap();
    assert_eq!(
        entry(&f, h, BIG + 0x5000),
        SnpRmpEntry {
            assigned: true,
            validated: true,
            large: true,
            vmsa: false,
        }
    );
    assert_eq!(
        f.p.snp_pvalidate(h, BIG + 0x5000, false, false).unwrap(),
        Pvalidate::FailSizeMismatch
    );
}
