//! SEV-ES guests on the emulated platform, through the real `sevm` binary:
//! the demo guest runs to its exit; the launch digest covers the firmware
//! and every vCPU's initial VMSA as `sev_proto::vmsa` builds them (and as
//! `sevctl measurement build` computes it); after the launch the host can
//! no longer read the registers (HMP, GDB); migration: `es_migration.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{json, Value};
use sev_proto::hash::{sha256, Sha256};
use sev_proto::ovmf::FooterTable;
use sev_proto::vmsa::{KvmInit, SevFeatures, VcpuModel, VcpuRole, VmmType, VmsaConfig};

/// Policy NODBG | ES.
const ES: u32 = 0x5;
/// Policy ES with debugging allowed.
const ES_DBG: u32 = 0x4;

/// The launch digest of an SEV-ES guest of `vcpus` vCPUs of `model` on
/// firmware `fw`: SHA-256 of the image, then each VMSA in vCPU order
/// (KVM_SEV_ES_INIT's convention, as sevm initialises the guest).
fn es_digest(fw: &[u8], vcpus: u32, model: &str) -> [u8; 32] {
    es_digest_with(fw, vcpus, model, KvmInit::LegacyEsInit)
}

/// [`es_digest`] for a VM initialised with `init`.
fn es_digest_with(fw: &[u8], vcpus: u32, model: &str, init: KvmInit) -> [u8; 32] {
    let table = FooterTable::parse(fw).unwrap();
    let reset = table.sev_es_reset_vector().unwrap().unwrap();
    let sig = VcpuModel::by_name(model).unwrap().signature();
    let config = VmsaConfig::new(VmmType::Qemu, sig, SevFeatures::NONE).with_kvm_init(init);
    let mut h = Sha256::new();
    h.update(fw);
    for i in 0..vcpus {
        let role = if i == 0 {
            VcpuRole::Bsp
        } else {
            VcpuRole::Ap(reset)
        };
        h.update(&config.page(role));
    }
    h.finish()
}

/// The PDH and chain of `platform`, leaving it UNINIT again: `export_pdh`
/// INITs it without SEV-ES, and a platform INITed so refuses SEV-ES guests
/// (sevm INITs an UNINIT platform with SEV-ES, as Linux does).
fn export_pdh_for_es(platform: &Path) -> (Vec<u8>, Vec<u8>) {
    let certs = export_pdh(platform);
    uninit(platform);
    certs
}

fn es_vm_args(fw: &Path, object: &str, sock: &Path, vcpus: u32, model: &str) -> Vec<String> {
    let mut args = sev_args(fw, 16, object, Some(sock));
    args.extend(smp_args(vcpus, model));
    args
}

#[test]
fn demo_guest_runs_to_its_exit_as_an_sev_es_guest() {
    if !sevm_testutil::kvm("demo_guest_runs_to_its_exit_as_an_sev_es_guest") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let platform = fresh_platform(d, "platform");
    let fw = demo_image(d);
    for vcpus in [1, 4] {
        let mut args = sev_args(&fw, 16, &sev_object(&platform, ES, None, ""), None);
        args.extend(["-smp".into(), vcpus.to_string()]);
        args.extend(["-cpu".into(), "EPYC-Milan".into()]);
        let mut vm = Sevm::spawn(&args);
        let st = vm.wait();
        let stdout = vm.stdout_text();
        assert_exit(st, 0, &vm.stderr_text());
        assert!(stdout.contains(sevm_demo::GREETING), "{stdout}");
    }
}

#[test]
fn es_launch_measures_the_firmware_and_every_vmsa() {
    const TEST: &str = "es_launch_measures_the_firmware_and_every_vmsa";
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let platform = fresh_platform(d, "platform");
    let (pdh, chain) = export_pdh_for_es(&platform);
    let fw = demo_image(d);
    let image = std::fs::read(&fw).unwrap();
    for (vcpus, model) in [
        (1, "EPYC"),
        (2, "EPYC-Milan"),
        (4, "EPYC-Rome-v4"),
        (8, "EPYC-Genoa"),
    ] {
        let owner = owner(d, &pdh, &chain, &amd_chain(&platform), ES);
        let sock = d.join(format!("qmp-{vcpus}.sock"));
        let obj = sev_object(&platform, ES, Some(&owner), "");
        let mut vm = Sevm::spawn(es_vm_args(&fw, &obj, &sock, vcpus, model));
        let mut q = vm.qmp(&sock);
        q.ok("qmp_capabilities", Value::Null);
        let info = q.ok("query-sev", Value::Null);
        assert_eq!(info["policy"], json!(ES), "{info}");
        assert_eq!(info["state"], json!("launch-secret"), "{info}");
        let blob = unb64(
            q.ok("query-sev-launch-measure", Value::Null)["data"]
                .as_str()
                .unwrap(),
        );
        let ld = es_digest(&image, vcpus, model);
        verify_measurement(&owner, &info, &blob, &ld)
            .unwrap_or_else(|e| panic!("{vcpus} x {model}: {e}"));
        // The plain-SEV digest (firmware only) does not verify.
        let plain = sha256(&image);
        assert!(verify_measurement(&owner, &info, &blob, &plain).is_err());
        q.ok("cont", Value::Null);
        let st = vm.wait();
        assert_exit(st, 0, &vm.stderr_text());
    }
}

/// Under a `sevctl session` with the ES policy, `sevctl measurement build`
/// reproduces sevm's measurement of an SEV-ES launch from the launch digest
/// sevm's builder gives, and from the firmware and the VMSAs that
/// `sevctl vmsa build` makes on its own.
#[test]
fn sevctl_measurement_build_verifies_an_es_launch() {
    const TEST: &str = "sevctl_measurement_build_verifies_an_es_launch";
    let Some(sevctl) = sevctl(TEST) else {
        return;
    };
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let platform = fresh_platform(d, "platform");
    let fw = demo_image(d);
    let image = std::fs::read(&fw).unwrap();
    let (pdh, _) = export_pdh_for_es(&platform);
    let session = sevctl_session(&sevctl, d, &pdh, ES);
    for (vcpus, model) in [(1u32, "EPYC"), (4, "EPYC-Milan")] {
        let sock = d.join(format!("qmp-{vcpus}.sock"));
        let obj = sev_object(&platform, ES, None, &session);
        let mut vm = Sevm::spawn(es_vm_args(&fw, &obj, &sock, vcpus, model));
        let mut q = vm.qmp(&sock);
        q.ok("qmp_capabilities", Value::Null);
        let info = q.ok("query-sev", Value::Null);
        let blob_b64 = q.ok("query-sev-launch-measure", Value::Null)["data"]
            .as_str()
            .unwrap()
            .to_string();
        let build =
            |inputs: &[String]| sevctl_measurement_build(&sevctl, d, &info, &blob_b64, inputs);
        let ld = es_digest(&image, vcpus, model);
        let from_digest = build(&["--launch-digest".into(), b64(&ld)]);
        assert_eq!(from_digest.trim(), blob_b64, "{vcpus} x {model}");

        // sevctl's own VMSAs for this model (family/model/stepping). Its
        // BSP page is sevm's byte for byte; its AP page too, but for the CS
        // base: sevctl keeps only bits 16-23 of the AP reset address
        // (0x00FF0000 for the demo's 0xFFFFFF00), where QEMU, KVM and
        // sev-snp-measure take `addr & 0xFFFF0000`. The AP page measured is
        // therefore sevm's, after that one difference is checked.
        let m = VcpuModel::by_name(model).unwrap();
        let sig = m.signature();
        let config = VmsaConfig::new(VmmType::Qemu, sig, SevFeatures::NONE)
            .with_kvm_init(KvmInit::LegacyEsInit);
        let reset = FooterTable::parse(&image)
            .unwrap()
            .sev_es_reset_vector()
            .unwrap()
            .unwrap();
        let mut sevctl_pages = Vec::new();
        for cpu in 0..2 {
            let file = d.join(format!("vmsa{cpu}-{vcpus}.bin"));
            run_ok(
                Command::new(&sevctl)
                    .args(["vmsa", "build", "--userspace", "qemu"])
                    .args(["--cpu", &cpu.to_string()])
                    .args(["--family", &m.family.to_string()])
                    .args(["--model", &m.model.to_string()])
                    .args(["--stepping", &m.stepping.to_string()])
                    .arg("--firmware")
                    .arg(&fw)
                    .arg(&file),
            );
            sevctl_pages.push(std::fs::read(&file).unwrap());
        }
        assert_eq!(sevctl_pages[0], config.page(VcpuRole::Bsp));
        let ours_ap = config.page(VcpuRole::Ap(reset));
        let cs_base = sev_proto::vmsa::offset::CS + 8..sev_proto::vmsa::offset::CS + 16;
        let mut theirs_ap = sevctl_pages[1].clone();
        assert_eq!(theirs_ap[cs_base.clone()], 0x00FF_0000u64.to_le_bytes());
        theirs_ap[cs_base].copy_from_slice(&u64::from(reset.cs_base()).to_le_bytes());
        assert_eq!(theirs_ap, ours_ap);
        let ap_file = d.join(format!("vmsa1-sevm-{vcpus}.bin"));
        std::fs::write(&ap_file, ours_ap).unwrap();
        let extra = vec![
            "--firmware".to_string(),
            fw.display().to_string(),
            "--num-cpus".into(),
            vcpus.to_string(),
            "--vmsa-cpu0".into(),
            d.join(format!("vmsa0-{vcpus}.bin")).display().to_string(),
            "--vmsa-cpu1".into(),
            ap_file.display().to_string(),
        ];
        let from_vmsas = build(&extra);
        assert_eq!(
            from_vmsas.trim(),
            blob_b64,
            "{vcpus} x {model} (sevctl's VMSAs)"
        );
        q.ok("quit", Value::Null);
        vm.wait();
    }
}

/// `sev-snp-measure --mode seves` (which models KVM_SEV_INIT2) for the
/// demo guest.
fn snp_measure_seves(test: &str, fw: &Path, vcpus: u32, model: &str) -> Option<[u8; 32]> {
    SnpMeasure::new("seves", fw)
        .vcpus(vcpus, model)
        .digest(test)
}

/// sev-snp-measure's SEV-ES digests equal the builder's for 1-8 vCPUs and
/// several vCPU types, and a launch with `legacy-vm-type=off` (KVM_SEV_INIT2,
/// what sev-snp-measure models) measures exactly that digest.
#[test]
fn sev_snp_measure_seves_equals_an_init2_launch() {
    const TEST: &str = "sev_snp_measure_seves_equals_an_init2_launch";
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let fw = demo_image(d);
    let image = std::fs::read(&fw).unwrap();
    for vcpus in [1, 2, 4, 8] {
        for model in [
            "EPYC",
            "EPYC-v4",
            "EPYC-Rome",
            "EPYC-Milan-v2",
            "EPYC-Genoa",
        ] {
            let Some(theirs) = snp_measure_seves(TEST, &fw, vcpus, model) else {
                return;
            };
            let ours = es_digest_with(&image, vcpus, model, KvmInit::Init2);
            assert_eq!(ours, theirs, "{vcpus} x {model}");
            // The legacy init (sevm's default) differs in the FPU fields.
            assert_ne!(es_digest(&image, vcpus, model), theirs);
        }
    }
    let platform = fresh_platform(d, "platform");
    let (pdh, chain) = export_pdh_for_es(&platform);
    for (vcpus, model) in [(1, "EPYC-v4"), (8, "EPYC-Genoa")] {
        let ld = snp_measure_seves(TEST, &fw, vcpus, model).unwrap();
        let owner = owner(d, &pdh, &chain, &amd_chain(&platform), ES);
        let sock = d.join(format!("qmp-{vcpus}.sock"));
        let obj = sev_object(&platform, ES, Some(&owner), ",legacy-vm-type=off");
        let mut vm = Sevm::spawn(es_vm_args(&fw, &obj, &sock, vcpus, model));
        let mut q = vm.qmp(&sock);
        q.ok("qmp_capabilities", Value::Null);
        let info = q.ok("query-sev", Value::Null);
        let blob = unb64(
            q.ok("query-sev-launch-measure", Value::Null)["data"]
                .as_str()
                .unwrap(),
        );
        verify_measurement(&owner, &info, &blob, &ld)
            .unwrap_or_else(|e| panic!("{vcpus} x {model}: {e}"));
        q.ok("cont", Value::Null);
        assert_exit(vm.wait(), 0, &vm.stderr_text());
    }
}

#[test]
fn registers_are_refused_after_the_launch_but_memory_follows_nodbg() {
    const TEST: &str = "registers_are_refused_after_the_launch_but_memory_follows_nodbg";
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let platform = fresh_platform(d, "platform");
    // A guest that keeps running (memtest) until it is migrated.
    let fw = memtest_image(d, 64, 0);
    let sock = d.join("qmp.sock");
    let obj = sev_object(&platform, ES_DBG, None, "");
    let mut args = sev_args(&fw, 64, &obj, Some(&sock));
    args.extend(["-smp".into(), "2".into(), "-cpu".into(), "EPYC".into()]);
    let mut vm = Sevm::spawn(args);
    let mut q = vm.qmp(&sock);
    q.ok("qmp_capabilities", Value::Null);
    // HMP `x` with a virtual address needs the vCPU's control registers.
    let x = q.ok(
        "human-monitor-command",
        json!({"command-line": "x /4xb 0xfffffff0"}),
    );
    let text = x.as_str().unwrap();
    assert!(text.contains("register state is protected"), "{text}");
    let mem = q.err(
        "memsave",
        json!({"val": 0xfff0, "size": 16, "filename": d.join("m").display().to_string()}),
    );
    assert!(mem.contains("register state is protected"), "{mem}");
    // Guest memory: DBG_DECRYPT, allowed by this policy.
    let dec = q.ok(
        "sev-dbg-decrypt",
        json!({"gpa": 0xffff_fff0u64, "size": 16}),
    );
    let image = std::fs::read(&fw).unwrap();
    assert_eq!(
        unb64(dec["data"].as_str().unwrap()),
        image[image.len() - 16..]
    );
    // Its migration carries the registers as VMSAs: tests/es_migration.rs.
    q.ok("cont", Value::Null);
    // The guest keeps running.
    assert_eq!(q.ok("query-status", Value::Null)["status"], "running");
    q.ok("quit", Value::Null);
    vm.wait();
}

#[test]
fn gdb_cannot_read_an_es_guests_registers() {
    const TEST: &str = "gdb_cannot_read_an_es_guests_registers";
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    if sevm_testutil::peer_tool(
        TEST,
        "gdb",
        "--version",
        "install gdb (apt-get install gdb)",
    )
    .is_none()
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let platform = fresh_platform(d, "platform");
    let fw = demo_image(d);
    let sock = d.join("qmp.sock");
    let obj = sev_object(&platform, ES_DBG, None, "");
    let mut args = es_vm_args(&fw, &obj, &sock, 1, "EPYC");
    args.extend(["-gdb".into(), "tcp:127.0.0.1:0".into()]);
    let mut vm = Sevm::spawn(args);
    let mut q = vm.qmp(&sock);
    q.ok("qmp_capabilities", Value::Null);
    assert!(
        vm.wait_for_stderr("gdb stub listening on"),
        "{}",
        vm.stderr_text()
    );
    let port: u16 = {
        let lines = vm.stderr.lock().unwrap();
        let line = lines
            .iter()
            .find(|l| l.contains("gdb stub listening on"))
            .unwrap();
        line.rsplit(':').next().unwrap().trim().parse().unwrap()
    };
    let out = Command::new("gdb")
        .args(["-batch", "-nx", "-ex", "set pagination off", "-ex"])
        .arg(format!("target remote 127.0.0.1:{port}"))
        .args(["-ex", "info registers rip", "-ex", "x/4xb 0xfffffff0"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // No register values reach gdb; memory (policy allows debugging) does.
    assert!(!text.contains("rip            0x"), "{text}");
    assert!(text.contains("0xfffffff0:"), "{text}");
    q.ok("quit", Value::Null);
    vm.wait();
}

#[test]
fn es_needs_the_firmwares_reset_block() {
    if !sevm_testutil::kvm("es_needs_the_firmwares_reset_block") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let platform = fresh_platform(d, "platform");
    // A firmware without a footer table.
    let fw = d.join("bare.fd");
    let mut image = vec![0xF4u8; 64 << 10];
    let n = image.len();
    image[n - 16..n - 14].copy_from_slice(&[0xEB, 0xFE]);
    std::fs::write(&fw, &image).unwrap();
    let args = sev_args(&fw, 16, &sev_object(&platform, ES, None, ""), None);
    let mut vm = Sevm::spawn(&args);
    let st = vm.wait();
    let err = vm.stderr_text();
    assert!(!st.success(), "{err}");
    assert!(
        err.contains("SEV information block/Firmware GUID Table block not found"),
        "{err}"
    );
}

#[test]
fn the_es_demo_guest_talks_only_through_the_ghcb_and_a_plain_sev_one_does_not() {
    const TEST: &str = "the_es_demo_guest_talks_only_through_the_ghcb_and_a_plain_sev_one_does_not";
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let platform = fresh_platform(d, "platform");
    let fw = demo_image(d);
    let run = |policy: u32| {
        let mut args = sev_args(&fw, 16, &sev_object(&platform, policy, None, ""), None);
        args.extend(["-cpu".into(), "EPYC-Milan".into()]);
        let mut vm = Sevm::spawn(&args);
        let st = vm.wait();
        assert_exit(st, 0, &vm.stderr_text());
        vm.stdout_text()
    };
    let es = run(ES);
    let lines: Vec<&str> = es.lines().collect();
    assert_eq!(lines[0], sevm_demo::GREETING, "{es}");
    assert_eq!(lines[1], "mode: sev-es", "{es}");
    // The C-bit the platform reports (the emulated platform's position).
    let c_bit: u32 = lines[2]
        .strip_prefix("ghcb: protocol 1-2, c-bit ")
        .and_then(|rest| rest.strip_suffix(", all i/o through the ghcb at 0x00061000"))
        .unwrap_or_else(|| panic!("{es}"))
        .parse()
        .unwrap();
    assert!((32..64).contains(&c_bit), "{es}");
    // CPUID 0x8000001F through the MSR protocol: SEV and SEV-ES, the same
    // C-bit, one bit of address reduction.
    assert_eq!(
        lines[3],
        format!(
            "cpuid 0x8000001f via ghcb msr protocol: eax 0x0000000a, ebx 0x{:08x}",
            c_bit | (1 << 6)
        ),
        "{es}"
    );
    assert!(es.ends_with("no secret injected\n"), "{es}");
    // Plain SEV: the output it always had.
    let sev = run(0x1);
    assert_eq!(
        sev,
        format!(
            "{}\nsecret area: 0x00810000, size 0x00000c00\nno secret injected\n",
            sevm_demo::GREETING
        )
    );
}

/// A firmware that writes `request` to the GHCB MSR from the reset vector
/// (real mode; `jmp` to 0xFFFFE000, then `mov ecx, GHCB; mov eax, lo;
/// mov edx, hi; wrmsr; hlt`), with the demo's footer table (SEV-ES reset
/// block).
fn ghcb_request_firmware(dir: &Path, request: u64) -> std::path::PathBuf {
    let size = 64 << 10;
    let mut image = vec![0u8; size];
    let code = [
        &[0x66, 0xB9][..],
        &0xC001_0130u32.to_le_bytes(),
        &[0x66, 0xB8],
        &(request as u32).to_le_bytes(),
        &[0x66, 0xBA],
        &((request >> 32) as u32).to_le_bytes(),
        &[0x0F, 0x30, 0xF4, 0xEB, 0xFD],
    ]
    .concat();
    image[0xE000..0xE000 + code.len()].copy_from_slice(&code);
    // jmp near 0xE000 from IP 0xFFF3: rel16 = 0xE000 - 0xFFF3.
    image[size - 16..size - 13].copy_from_slice(&[0xE9, 0x0D, 0xE0]);
    let table = sevm_demo::footer_table();
    let at = size - 32 - table.len();
    image[at..size - 32].copy_from_slice(&table);
    let path = dir.join(format!("ghcb-{request:x}.fd"));
    std::fs::write(&path, image).unwrap();
    path
}

#[test]
fn an_es_guests_termination_or_bad_request_ends_sevm_with_a_clear_error() {
    const TEST: &str = "an_es_guests_termination_or_bad_request_ends_sevm_with_a_clear_error";
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let platform = fresh_platform(d, "platform");
    for (request, expect) in [
        // Termination, reason set 1 code 4 (Linux: CPUID table problem).
        (
            (4 << 16) | (1 << 12) | 0x100,
            "the guest requested termination: reason set 1, code 4 (CPUID table problem)",
        ),
        // A page-state change: SNP only, KVM terminates an SEV-ES guest.
        (
            (2u64 << 52) | (0x61 << 12) | 0x014,
            "the SEV-ES guest sent the SNP-only GHCB request \"page-state change\"",
        ),
    ] {
        let fw = ghcb_request_firmware(d, request);
        let args = sev_args(&fw, 16, &sev_object(&platform, ES, None, ""), None);
        let mut vm = Sevm::spawn(&args);
        let st = vm.wait();
        let stderr = vm.stderr_text();
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_ne!(st.code(), Some(0), "{stderr}");
        assert!(stderr.contains(expect), "{stderr}");
    }
}
