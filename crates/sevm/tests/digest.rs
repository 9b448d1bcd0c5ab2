//! The launch digest sevm measures equals what `sev-snp-measure --mode sev`
//! computes for the same firmware, kernel, initrd and command line (and the
//! published known answer of docs/protocol/test-vectors.md#launch-digests).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use serde_json::{json, Value};

/// `sev-snp-measure --mode sev --output-format hex` for these inputs.
fn snp_measure(test: &str, fw: &Path, kernel: Option<&Kernel>) -> Option<[u8; 32]> {
    SnpMeasure::new("sev", fw).kernel(kernel).digest(test)
}

/// Launches `fw` with -S on the emulated platform with an owner session,
/// checks that the measurement verifies for `expected_ld` (and that the
/// attestation report carries it), then quits.
fn launch_and_check(
    d: &Path,
    fw: &Path,
    mem_mib: u32,
    extra_args: &[String],
    object_extra: &str,
    expected_ld: &[u8; 32],
) {
    let platform = fresh_platform(d, "platform");
    let (pdh, chain) = export_pdh(&platform);
    let owner = owner(d, &pdh, &chain, &amd_chain(&platform), 0x1);
    let sock = d.join("qmp.sock");
    let mut args = sev_args(
        fw,
        mem_mib,
        &sev_object(&platform, 0x1, Some(&owner), object_extra),
        Some(&sock),
    );
    args.extend_from_slice(extra_args);
    let mut vm = Sevm::spawn(&args);
    let mut q = vm.qmp(&sock);
    q.ok("qmp_capabilities", Value::Null);
    let info = q.ok("query-sev", Value::Null);
    let blob = unb64(
        q.ok("query-sev-launch-measure", Value::Null)["data"]
            .as_str()
            .unwrap(),
    );
    verify_measurement(&owner, &info, &blob, expected_ld).unwrap();
    let report = unb64(
        q.ok(
            "query-sev-attestation-report",
            json!({"mnonce": b64(&[3u8; 16])}),
        )["data"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(&report[16..48], expected_ld);
    q.ok("quit", Value::Null);
    let st = vm.wait();
    assert_exit(st, 0, &vm.stderr_text());
}

both_backends!(
    debian_ovmf => debian_ovmf_digest_matches_sev_snp_measure,
    debian_ovmf_digest_matches_sev_snp_measure_hardware_under_launcher,
    emulated_without_kvm
);

fn debian_ovmf() {
    const TEST: &str = "debian_ovmf_digest_matches_sev_snp_measure";
    let fw = Path::new("/usr/share/OVMF/OVMF_CODE.fd");
    if !fw.exists() {
        sevm_testutil::skip(
            TEST,
            "Debian's OVMF (/usr/share/OVMF/OVMF_CODE.fd, package ovmf) is not installed",
        );
        return;
    }
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    let Some(ld) = snp_measure(TEST, fw, None) else {
        return;
    };
    // Without a kernel the digest is the SHA-256 of the image.
    let image = std::fs::read(fw).unwrap();
    assert_eq!(
        ld,
        sev_proto::ovmf::sev_launch_digest(&image, None).unwrap()
    );
    let tmp = tempfile::tempdir().unwrap();
    launch_and_check(tmp.path(), fw, 64, &[], "", &ld);
}

fn kernel_files(d: &Path, append: &str) -> Kernel {
    Kernel::write(
        d,
        "vmlinuz",
        &b"not really a bzImage, but hashed like one\n".repeat(1000),
        &b"fake initrd\n".repeat(333),
        append,
    )
}

both_backends!(
    kernel_hashes => kernel_hashes_digest_matches_sev_snp_measure,
    kernel_hashes_digest_matches_sev_snp_measure_hardware_under_launcher,
    emulated_without_kvm
);

fn kernel_hashes() {
    const TEST: &str = "kernel_hashes_digest_matches_sev_snp_measure";
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let fw = demo_image(d);
    let k = kernel_files(d, "console=ttyS0 root=/dev/vda1  quiet ");
    let Some(ld) = snp_measure(TEST, &fw, Some(&k)) else {
        return;
    };
    launch_and_check(d, &fw, 16, &k.sevm_args(), ",kernel-hashes=on", &ld);
}

both_backends!(
    amdsev_fixture => amdsev_fixture_with_kernel_hashes_gives_the_published_digest,
    amdsev_fixture_with_kernel_hashes_gives_the_published_digest_hardware_under_launcher,
    emulated_without_kvm
);

/// docs/protocol/test-vectors.md#launch-digests row 1 (sev-snp-measure tests/test_guest.py,
/// virtee/sev tests/measurement.rs): ovmf_AmdSev_suffix.bin, empty kernel and initrd,
/// append "console=ttyS0 loglevel=7".
fn amdsev_fixture() {
    const TEST: &str = "amdsev_fixture_with_kernel_hashes_gives_the_published_digest";
    let Some(fw) = sevm_testutil::fixture_path(TEST, "ovmf/ovmf_AmdSev_suffix.bin") else {
        return;
    };
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let k = Kernel::write(d, "empty", b"", b"", "console=ttyS0 loglevel=7");
    let published: [u8; 32] =
        hex::decode("82a3ee5d537c3620628270c292ae30cb40c3c878666a7890ee7ef2a08fb535ff")
            .unwrap()
            .try_into()
            .unwrap();
    if let Some(ld) = snp_measure(TEST, &fw, Some(&k)) {
        assert_eq!(ld, published);
    }
    launch_and_check(d, &fw, 16, &k.sevm_args(), ",kernel-hashes=on", &published);
}

both_backends!(
    kernel_hashes_firmware => kernel_hashes_need_a_firmware_that_supports_them,
    kernel_hashes_need_a_firmware_that_supports_them_hardware_under_launcher,
    emulated_without_kvm
);

fn kernel_hashes_firmware() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let platform = fresh_platform(d, "platform");
    let k = kernel_files(d, "");
    // The plain OvmfX64 fixture has an all-zero hashes entry.
    let fw = match sevm_testutil::fixture_path(
        "kernel_hashes_need_a_firmware_that_supports_them",
        "ovmf/ovmf_OvmfX64_suffix.bin",
    ) {
        Some(p) => p,
        None => return,
    };
    let mut args = sev_args(
        &fw,
        16,
        &sev_object(&platform, 1, None, ",kernel-hashes=on"),
        None,
    );
    args.extend(["-kernel".to_string(), k.kernel.display().to_string()]);
    let out = sevm_command(&args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_exit(out.status, 1, &err);
    assert!(
        err.starts_with("sevm: -object sev-guest,id=sev0: kernel-hashes=on"),
        "{err}"
    );
}
