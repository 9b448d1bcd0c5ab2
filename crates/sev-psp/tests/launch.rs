//! A complete guest-owner ↔ emulated-firmware launch: the owner verifies the
//! exported chain, builds a session from the PDH, the VMM runs
//! LAUNCH_START … LAUNCH_FINISH over guest memory, the owner recomputes the
//! measurement from the expected digest and verifies it, injects a secret;
//! the plaintext lands in guest memory and the host view shows ciphertext.

// Test helpers outside #[test] functions unwrap too: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{export, fresh, owner_session, ram, Host};
use sev_proto::abi::{GuestState, Policy};
use sev_proto::attestation::Report;
use sev_proto::cert::chain::PlatformChain;
use sev_proto::measurement::{verify_measurement, MeasureBlob};
use sev_proto::ovmf::{sev_launch_digest, FooterTable, KernelHashes, LaunchDigest};
use sev_proto::secret::build_launch_secret;
use sev_proto::secret_table::SecretTable;
use sev_proto::Guid;
use sev_psp::memory::{firmware_read, firmware_write, Region, VecBacking};

const IMAGE_GPA: u64 = 0x10_0000;
const IMAGE_LEN: usize = 0x10_0000;
const SECRET_GPA: u64 = 0x81_0000;

fn image() -> Vec<u8> {
    let mut state = 0x1234_5678u32;
    (0..IMAGE_LEN)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

fn host_view(p: &sev_psp::Platform, h: u32, mem: &VecBacking, gpa: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    p.host_read(h, mem, gpa, &mut buf).unwrap();
    buf
}

fn plain(mem: &VecBacking, gpa: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    firmware_read(mem, gpa, &mut buf).unwrap();
    buf
}

#[test]
fn owner_launch_end_to_end() {
    let f = fresh(Host::A, 1);
    let p = &f.p;
    let mem = ram(0x100_0000);
    p.init(false).unwrap();

    // Guest owner: verify the chain to the emulated ARK, session for the PDH.
    let policy = Policy::from_bits(Policy::NODBG | Policy::NOKS);
    let exported = export(p);
    let (owner, godh) = owner_session(&exported, policy, 7);

    // VMM: LAUNCH_START with the owner's blobs, ACTIVATE, the image in two
    // LAUNCH_UPDATE_DATA calls (as KVM splits a region).
    let h = p
        .launch_start(
            0,
            policy,
            Some(&godh),
            Some(&owner.session_buffer().to_bytes()),
        )
        .unwrap();
    p.activate(h, 5).unwrap();
    let image = image();
    firmware_write(&mem, IMAGE_GPA, &image).unwrap();
    let half = (IMAGE_LEN / 2) as u32;
    p.launch_update_data(h, &mem, IMAGE_GPA, half).unwrap();
    p.launch_update_data(h, &mem, IMAGE_GPA + u64::from(half), half)
        .unwrap();
    // The guest still sees its plaintext; the hypervisor sees ciphertext.
    assert_eq!(plain(&mem, IMAGE_GPA, IMAGE_LEN), image);
    let seen = host_view(p, h, &mem, IMAGE_GPA, IMAGE_LEN);
    assert_ne!(seen[..4096], image[..4096]);
    assert_ne!(seen[IMAGE_LEN - 4096..], image[IMAGE_LEN - 4096..]);
    let mut blob = [0u8; 48];
    p.launch_measure(h, &mut blob).unwrap();
    let blob = MeasureBlob::from_bytes(&blob);

    // Owner: the expected digest from the image it expects, the measurement
    // recomputed with its TIK and the platform's reported version.
    let status = p.platform_status().unwrap();
    let mut ld = LaunchDigest::new();
    ld.update(&image);
    let ld = ld.finalize();
    verify_measurement(
        &owner.keys().tik,
        status.api.major,
        status.api.minor,
        status.build,
        policy.bits(),
        &ld,
        &blob,
    )
    .unwrap();
    let mut wrong = image.clone();
    wrong[12345] ^= 1;
    let mut wrong_ld = LaunchDigest::new();
    wrong_ld.update(&wrong);
    assert!(verify_measurement(
        &owner.keys().tik,
        status.api.major,
        status.api.minor,
        status.build,
        policy.bits(),
        &wrong_ld.finalize(),
        &blob,
    )
    .is_err());

    // Owner: a secret table for the measured guest.
    let guid = Guid::from_str_const("736869e5-84f0-4973-92ec-06879ce3da0b");
    let table = SecretTable::new().add(guid, b"MY-LUKS-PASSPHRASE");
    let payload = table.to_padded_bytes().unwrap();
    let (hdr, trans) =
        build_launch_secret(owner.keys(), &[0x42; 16], &payload, Some(&blob.measurement));
    let before = host_view(p, h, &mem, SECRET_GPA, payload.len());
    assert_eq!(
        before,
        vec![0u8; payload.len()],
        "a shared, untouched page reads as it is"
    );
    p.launch_secret(
        h,
        &mem,
        &hdr.to_bytes(),
        SECRET_GPA,
        payload.len() as u32,
        &trans,
    )
    .unwrap();
    // The plaintext landed in guest memory; the host view shows ciphertext.
    let landed = plain(&mem, SECRET_GPA, payload.len());
    assert_eq!(landed, payload.to_vec());
    let entries = SecretTable::parse(&landed).unwrap();
    assert_eq!(entries.len(), 1);
    let after = host_view(p, h, &mem, SECRET_GPA, payload.len());
    assert_ne!(after, landed);
    assert_ne!(
        after, trans,
        "memory ciphertext is not the transport ciphertext"
    );
    assert!(!after.windows(18).any(|w| w == b"MY-LUKS-PASSPHRASE"));

    // LAUNCH_FINISH: all guest memory private, the guest runs.
    let untouched = 0x20_0000;
    assert_eq!(host_view(p, h, &mem, untouched, 64), vec![0u8; 64]);
    p.launch_finish(h).unwrap();
    assert_ne!(host_view(p, h, &mem, untouched, 64), vec![0u8; 64]);
    assert_eq!(p.guest_status(h).unwrap().state, GuestState::Running);

    // Attestation, verifiable with the PEK of the verified chain.
    let mut report = [0u8; 0xd0];
    p.attestation(h, &[9; 16], &mut report).unwrap();
    let report = Report::decode(&report).unwrap();
    report
        .verify(&PlatformChain::decode(&exported.chain).unwrap().pek)
        .unwrap();
    assert_eq!((report.launch_digest(), report.mnonce()), (&ld, &[9; 16]));
    assert_eq!(report.policy(), policy.bits());
}

/// The same flow over the OVMF fixture with kernel hashes: the firmware's
/// launch digest equals the one sev-snp-measure publishes
/// (docs/protocol/test-vectors.md#launch-digests, row 1: ovmf_AmdSev_suffix.bin, kernel and initrd
/// empty, append "console=ttyS0 loglevel=7"), and the owner's sev_launch_digest agrees.
#[test]
fn ovmf_launch_digest_matches_published_value() {
    let test = "ovmf_launch_digest_matches_published_value";
    let Some(ovmf) = sevm_testutil::fixture(test, "ovmf/ovmf_AmdSev_suffix.bin") else {
        return;
    };
    let fw_gpa = 0x1_0000_0000 - ovmf.len() as u64;
    let mem = VecBacking::new(&[
        Region {
            gpa: 0,
            len: 0x100_0000,
        },
        Region {
            gpa: fw_gpa,
            len: ovmf.len() as u64,
        },
    ])
    .unwrap();
    let f = fresh(Host::A, 2);
    let p = &f.p;
    p.init(false).unwrap();
    let policy = Policy::from_bits(Policy::NODBG);
    let exported = export(p);
    let (owner, godh) = owner_session(&exported, policy, 8);
    let h = p
        .launch_start(
            0,
            policy,
            Some(&godh),
            Some(&owner.session_buffer().to_bytes()),
        )
        .unwrap();
    p.activate(h, 6).unwrap();
    firmware_write(&mem, fw_gpa, &ovmf).unwrap();
    p.launch_update_data(h, &mem, fw_gpa, ovmf.len() as u32)
        .unwrap();
    let footer = FooterTable::parse(&ovmf).unwrap();
    let area = footer.check_hashes_area().unwrap();
    let hashes = KernelHashes::new(Some(b"console=ttyS0 loglevel=7"), Some(b""), b"");
    firmware_write(&mem, u64::from(area.base), &hashes.to_table()).unwrap();
    p.launch_update_data(h, &mem, u64::from(area.base), 176)
        .unwrap();
    let mut blob = [0u8; 48];
    p.launch_measure(h, &mut blob).unwrap();
    let blob = MeasureBlob::from_bytes(&blob);

    let published = "82a3ee5d537c3620628270c292ae30cb40c3c878666a7890ee7ef2a08fb535ff";
    let expected = sev_launch_digest(&ovmf, Some(&hashes)).unwrap();
    assert_eq!(hex::encode(expected), published);
    verify_measurement(
        &owner.keys().tik,
        1,
        55,
        21,
        policy.bits(),
        &expected,
        &blob,
    )
    .unwrap();
    let mut report = [0u8; 0xd0];
    p.attestation(h, &[0; 16], &mut report).unwrap();
    assert_eq!(hex::encode(&report[0x10..0x30]), published);

    // The secret goes where the firmware's footer says.
    let secret_area = footer.sev_secret_block().unwrap().unwrap();
    assert_eq!(u64::from(secret_area.base), SECRET_GPA);
    let table = SecretTable::new().add(
        Guid::from_str_const("736869e5-84f0-4973-92ec-06879ce3da0b"),
        b"s3cret",
    );
    let payload = table.to_padded_bytes().unwrap();
    let (hdr, trans) =
        build_launch_secret(owner.keys(), &[1; 16], &payload, Some(&blob.measurement));
    p.launch_secret(
        h,
        &mem,
        &hdr.to_bytes(),
        SECRET_GPA,
        payload.len() as u32,
        &trans,
    )
    .unwrap();
    assert_eq!(plain(&mem, SECRET_GPA, payload.len()), payload.to_vec());
    assert_ne!(
        host_view(p, h, &mem, SECRET_GPA, payload.len()),
        payload.to_vec()
    );
    p.launch_finish(h).unwrap();
}
