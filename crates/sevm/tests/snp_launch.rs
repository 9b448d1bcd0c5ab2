//! SEV-SNP launches on the emulated platform through the real `sevm`
//! binary (`-S`, on OVMF images that cannot run here): the launch digest of
//! `x-sevm-query-snp-launch-digest` equals what `sev-owner measure --mode
//! snp` computes (its library function, `sev_proto::snp::snp_launch_digest`)
//! and what `sev-snp-measure --mode snp` computes, for a few vCPU counts and
//! types, with and without `-kernel/-initrd/-append`; an ID block made for
//! the digest is accepted at `cont`, a wrong one refused with the
//! firmware's status; an image without SEV metadata is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{json, Value};
use sev_proto::ovmf::KernelHashes;
use sev_proto::snp::{GuestPolicy, IdBlock, SnpLaunch};
use sev_proto::vmsa::{SevFeatures, VcpuModel, VmmType, VmsaConfig};

/// A kernel, initrd and command line for the kernel-hashes cases.
fn kernel(d: &Path) -> Kernel {
    Kernel::write(
        d,
        "fake",
        b"not really a kernel",
        b"not really an initrd",
        "console=ttyS0 loglevel=7",
    )
}

/// What `sev-owner measure --mode snp` computes (the same library call).
fn owner_digest(fw: &Path, vcpus: u32, model: &str, k: Option<&Kernel>) -> [u8; 48] {
    let image = std::fs::read(fw).unwrap();
    let hashes = k.map(|k| {
        KernelHashes::new(
            Some(k.append.as_bytes()),
            Some(&std::fs::read(&k.initrd).unwrap()),
            &std::fs::read(&k.kernel).unwrap(),
        )
    });
    let sig = VcpuModel::by_name(model).unwrap().signature();
    let launch = SnpLaunch {
        ovmf_hash: None,
        kernel_hashes: hashes.as_ref(),
        vcpus,
        vmsa: VmsaConfig::new(VmmType::Qemu, sig, SevFeatures::SNP_ACTIVE),
    };
    *sev_proto::snp::snp_launch_digest(&image, &launch)
        .unwrap()
        .bytes()
}

/// `sev-snp-measure --mode snp` for these inputs, when installed.
fn snp_measure(
    test: &str,
    fw: &Path,
    vcpus: u32,
    model: &str,
    k: Option<&Kernel>,
) -> Option<[u8; 48]> {
    SnpMeasure::new("snp", fw)
        .vcpus(vcpus, model)
        .kernel(k)
        .digest(test)
}

fn snp_args(
    fw: &Path,
    platform: &Path,
    sock: &Path,
    vcpus: u32,
    model: &str,
    object_extra: &str,
    k: Option<&Kernel>,
) -> Vec<String> {
    let mut a = vec![
        "-bios".to_string(),
        fw.display().to_string(),
        "-m".into(),
        "64".into(),
        "-smp".into(),
        vcpus.to_string(),
        "-cpu".into(),
        model.into(),
        "-machine".into(),
        "q35,memory-encryption=snp0".into(),
        "-object".into(),
        format!(
            "sev-snp-guest,id=snp0,sev-device=emulated:{}{object_extra}",
            platform.display()
        ),
        "-S".into(),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", sock.display()),
    ];
    if let Some(k) = k {
        a.extend(k.sevm_args());
    }
    a
}

/// Launches with `-S` and returns the extension's answer (and the VM).
fn launch(d: &Path, args: Vec<String>) -> (Sevm, Qmp, Value) {
    let sock = d.join("qmp.sock");
    let _ = std::fs::remove_file(&sock);
    let vm = Sevm::spawn(args);
    let mut q = vm.qmp(&sock);
    q.ok("qmp_capabilities", Value::Null);
    let info = q.ok("x-sevm-query-snp-launch-digest", json!({}));
    (vm, q, info)
}

fn digest_of(info: &Value) -> [u8; 48] {
    unb64(info["digest"].as_str().unwrap()).try_into().unwrap()
}

/// Checks one configuration against both tools.
fn check(test: &str, d: &Path, fw: &Path, vcpus: u32, model: &str, k: Option<&Kernel>) {
    let platform = fresh_platform(d, &format!("p-{vcpus}-{model}-{}", k.is_some()));
    let sock = d.join("qmp.sock");
    let extra = if k.is_some() { ",kernel-hashes=on" } else { "" };
    let (mut vm, mut q, info) = launch(d, snp_args(fw, &platform, &sock, vcpus, model, extra, k));
    let got = digest_of(&info);
    assert_eq!(info["snp-policy"], json!(0x30000));
    assert_eq!(info["finished"], json!(false));
    let expected = owner_digest(fw, vcpus, model, k);
    assert_eq!(
        hex::encode(got),
        hex::encode(expected),
        "{} vCPUs of {model}, kernel {}",
        vcpus,
        k.is_some()
    );
    if let Some(peer) = snp_measure(test, fw, vcpus, model, k) {
        assert_eq!(hex::encode(got), hex::encode(peer), "sev-snp-measure");
    }
    let sev = q.ok("query-sev", json!({}));
    assert_eq!(sev["sev-type"], json!("sev-snp"));
    assert_eq!(sev["state"], json!("launch-update"));
    assert_eq!(sev["snp-policy"], json!(0x30000));
    // An SNP host answers query-sev-capabilities as an SEV host; there is
    // no SEV launch measurement for an SNP guest, as in QEMU.
    let caps = q.ok("query-sev-capabilities", json!({}));
    assert_eq!(caps["cbitpos"], json!(47));
    assert!(!caps["pdh"].as_str().unwrap().is_empty());
    assert_eq!(
        q.err("query-sev-launch-measure", json!({})),
        "SEV launch measurement is not available"
    );
    q.ok("quit", json!({}));
    vm.wait();
}

#[test]
fn debian_ovmf_digest_equals_the_owners_and_sev_snp_measures() {
    const TEST: &str = "debian_ovmf_digest_equals_the_owners_and_sev_snp_measures";
    let Some(fw) = debian_ovmf(TEST) else {
        return;
    };
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for (vcpus, model) in [(1, "EPYC-v4"), (2, "EPYC-Milan"), (8, "EPYC-Genoa")] {
        check(TEST, d, fw, vcpus, model, None);
    }
}

#[test]
fn amdsev_fixture_digest_with_and_without_kernel_hashes() {
    const TEST: &str = "amdsev_fixture_digest_with_and_without_kernel_hashes";
    let Some(fw) = sevm_testutil::fixture_path(TEST, "ovmf/ovmf_AmdSev_suffix.bin") else {
        return;
    };
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let k = kernel(d);
    check(TEST, d, &fw, 1, "EPYC-Rome", None);
    check(TEST, d, &fw, 2, "EPYC-Milan", Some(&k));
    check(TEST, d, &fw, 8, "EPYC-Genoa-v1", Some(&k));
}

/// The vCPU types sev-snp-measure 0.0.13 knows (`--vcpu-type`).
const SNP_MEASURE_VCPU_TYPES: [&str; 16] = [
    "EPYC",
    "EPYC-v1",
    "EPYC-v2",
    "EPYC-IBPB",
    "EPYC-v3",
    "EPYC-v4",
    "EPYC-Rome",
    "EPYC-Rome-v1",
    "EPYC-Rome-v2",
    "EPYC-Rome-v3",
    "EPYC-Milan",
    "EPYC-Milan-v1",
    "EPYC-Milan-v2",
    "EPYC-Genoa",
    "EPYC-Genoa-v1",
    "EPYC-Turin",
];

/// The demo firmware launched by sevm (`-S`) as an SNP guest once for every
/// vCPU type sev-snp-measure knows, the vCPU count going round 1 to 8 and
/// every third launch with `-kernel/-initrd/-append`: each digest equals
/// `sev-owner measure --mode snp`'s and sev-snp-measure's ([`check`]).
#[test]
fn demo_firmware_digest_for_every_vcpu_type_and_one_to_eight_vcpus() {
    const TEST: &str = "demo_firmware_digest_for_every_vcpu_type_and_one_to_eight_vcpus";
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let fw = demo_image(d);
    let k = kernel(d);
    for (i, model) in SNP_MEASURE_VCPU_TYPES.into_iter().enumerate() {
        let vcpus = i as u32 % 8 + 1;
        let with_kernel = (i % 3 == 2).then_some(&k);
        check(TEST, d, &fw, vcpus, model, with_kernel);
    }
}

/// The ID block a guest owner makes for `digest` (what `sev-owner id-block`
/// writes), base64 block and auth.
fn id_block(digest: [u8; 48], author: bool) -> (String, String) {
    let id_key = p384::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let author_key = p384::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let block = IdBlock::new(digest, GuestPolicy::QEMU_DEFAULT);
    let auth = block.sign(&id_key, author.then_some(&author_key)).unwrap();
    (b64(&block.encode()), b64(&auth.encode()))
}

#[test]
fn id_blocks_are_checked_at_cont_with_the_firmwares_status() {
    const TEST: &str = "id_blocks_are_checked_at_cont_with_the_firmwares_status";
    let Some(fw) = sevm_testutil::fixture_path(TEST, "ovmf/ovmf_AmdSev_suffix.bin") else {
        return;
    };
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let sock = d.join("qmp.sock");
    let digest = owner_digest(&fw, 1, "EPYC-v4", None);
    let host_data = b64(&[0x5a; 32]);

    // Made for the digest, with an author key: accepted.
    let (block, auth) = id_block(digest, true);
    let platform = fresh_platform(d, "good");
    let extra =
        format!(",id-block={block},id-auth={auth},author-key-enabled=on,host-data={host_data}");
    let (mut vm, mut q, info) = launch(
        d,
        snp_args(&fw, &platform, &sock, 1, "EPYC-v4", &extra, None),
    );
    assert_eq!(digest_of(&info), digest);
    q.ok("cont", json!({}));
    let info = q.ok("x-sevm-query-snp-launch-digest", json!({}));
    assert_eq!(info["finished"], json!(true));
    assert_eq!(info["host-data"], json!(host_data));
    assert_eq!(q.ok("query-sev", json!({}))["state"], json!("running"));
    q.ok("quit", json!({}));
    vm.wait();

    // Made for another digest: BAD_MEASUREMENT, and the guest stays in
    // LAUNCH.
    let (block, auth) = id_block([7; 48], false);
    let platform = fresh_platform(d, "bad-digest");
    let extra = format!(",id-block={block},id-auth={auth}");
    let (mut vm, mut q, _) = launch(
        d,
        snp_args(&fw, &platform, &sock, 1, "EPYC-v4", &extra, None),
    );
    let e = q.err("cont", json!({}));
    assert!(
        e.contains("SNP_LAUNCH_FINISH failed: BAD_MEASUREMENT (0x0B)"),
        "{e}"
    );
    assert_eq!(
        q.ok("query-sev", json!({}))["state"],
        json!("launch-update")
    );
    q.ok("quit", json!({}));
    vm.wait();

    // A signature that does not verify (made over another block):
    // BAD_SIGNATURE.
    let block = IdBlock::new(digest, GuestPolicy::QEMU_DEFAULT);
    let other = IdBlock {
        guest_svn: 1,
        ..block
    };
    let id_key = p384::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let other_auth = b64(&other.sign(&id_key, None).unwrap().encode());
    let block = b64(&block.encode());
    let platform = fresh_platform(d, "bad-signature");
    let extra = format!(",id-block={block},id-auth={other_auth}");
    let (mut vm, mut q, _) = launch(
        d,
        snp_args(&fw, &platform, &sock, 1, "EPYC-v4", &extra, None),
    );
    let e = q.err("cont", json!({}));
    assert!(
        e.contains("SNP_LAUNCH_FINISH failed: BAD_SIGNATURE (0x0A)"),
        "{e}"
    );
    q.ok("quit", json!({}));
    vm.wait();
}

#[test]
fn an_image_without_sev_metadata_is_refused() {
    const TEST: &str = "an_image_without_sev_metadata_is_refused";
    let Some(fw) = sevm_testutil::fixture_path(TEST, "ovmf/sevctl_OVMF.amdsev_trimmed.bin") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let platform = fresh_platform(d, "p");
    let mut args = snp_args(&fw, &platform, &d.join("q.sock"), 1, "EPYC-v4", "", None);
    // No QMP, no -S: sevm stops at the check.
    args.truncate(args.len() - 3);
    let out = Command::new(sevm_bin()).args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("SEV-SNP: OVMF has no SEV metadata"),
        "{stderr}"
    );
}

/// The demo guest runs to its exit as an SNP guest: launched from its SEV
/// metadata (the digest equals the owner's and sev-snp-measure's), it
/// makes its GHCB shared through the firmware's page-state change, reads
/// the secrets page the firmware filled (version, VMPCKs present, never
/// their values) and the CPUID page, and prints everything through the GHCB.
#[test]
fn demo_guest_runs_to_its_exit_as_an_snp_guest() {
    const TEST: &str = "demo_guest_runs_to_its_exit_as_an_snp_guest";
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let fw = demo_image(d);
    for (vcpus, model) in [(1, "EPYC-Milan"), (2, "EPYC-Genoa")] {
        // The launch, held at -S: its digest is the owner's.
        check(TEST, d, &fw, vcpus, model, None);
        // The same launch, run.
        let platform = fresh_platform(d, &format!("run-{vcpus}"));
        let sock = d.join("qmp.sock");
        let mut args = snp_args(&fw, &platform, &sock, vcpus, model, "", None);
        args.retain(|a| a != "-S");
        let mut vm = Sevm::spawn(args);
        let st = vm.wait();
        let stdout = vm.stdout_text();
        assert_exit(st, 0, &vm.stderr_text());
        assert!(stdout.contains(sevm_demo::GREETING), "{stdout}");
        for line in [
            "mode: sev-snp\n",
            "ghcb: page made shared by page-state change and registered\n",
            "vmpck0 present, vmpck1 present, vmpck2 present, vmpck3 present\n",
        ] {
            assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
        }
        let version = stdout
            .split("secrets page at 0x")
            .nth(1)
            .and_then(|s| s.split(": version ").nth(1))
            .and_then(|s| s.split(',').next())
            .unwrap_or_else(|| panic!("no secrets page line in:\n{stdout}"));
        assert_ne!(version, "0", "{stdout}");
        let entries = stdout
            .split("snp cpuid page at 0x")
            .nth(1)
            .and_then(|s| s.split(": ").nth(1))
            .and_then(|s| s.split(' ').next())
            .unwrap_or_else(|| panic!("no cpuid page line in:\n{stdout}"));
        assert_ne!(entries.parse::<u32>().unwrap(), 0, "{stdout}");
    }
}
