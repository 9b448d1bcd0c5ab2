//! SEV-ES launches of Debian's OVMF through the real `sevm` binary (`-S`):
//! the measurement `query-sev-launch-measure` reports verifies, with the
//! owner's TIK, for the launch digest `sev-snp-measure --mode seves`
//! computes, for a few vCPU counts and types (`legacy-vm-type=off`: the
//! KVM_SEV_INIT2 VMSAs sev-snp-measure builds for QEMU); with
//! `-kernel/-initrd/-append`, under a `sevctl session`, the same against
//! sev-snp-measure and `sevctl measurement build`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

/// Policy NODBG | ES.
const ES: u32 = 0x5;

/// `sev-snp-measure --mode seves` for these inputs, when installed.
fn seves_measure(test: &str, fw: &Path, vcpus: u32, model: &str) -> Option<[u8; 32]> {
    SnpMeasure::new("seves", fw)
        .vcpus(vcpus, model)
        .digest(test)
}

#[test]
fn debian_ovmf_seves_measurement_verifies_for_sev_snp_measures_digest() {
    const TEST: &str = "debian_ovmf_seves_measurement_verifies_for_sev_snp_measures_digest";
    let Some(fw) = debian_ovmf(TEST) else {
        return;
    };
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for (vcpus, model) in [(1, "EPYC-v4"), (4, "EPYC-Milan")] {
        let Some(ld) = seves_measure(TEST, fw, vcpus, model) else {
            return;
        };
        let platform = fresh_platform(d, &format!("p{vcpus}"));
        let (pdh, chain) = export_pdh(&platform);
        uninit(&platform);
        let owner = owner(d, &pdh, &chain, &amd_chain(&platform), ES);
        let sock = d.join("qmp.sock");
        let _ = std::fs::remove_file(&sock);
        let mut args = sev_args(
            fw,
            16,
            &sev_object(&platform, ES, Some(&owner), ",legacy-vm-type=off"),
            Some(&sock),
        );
        args.extend(smp_args(vcpus, model));
        let mut vm = Sevm::spawn(&args);
        let mut q = vm.qmp(&sock);
        q.ok("qmp_capabilities", Value::Null);
        let info = q.ok("query-sev", Value::Null);
        let blob = unb64(
            q.ok("query-sev-launch-measure", Value::Null)["data"]
                .as_str()
                .unwrap(),
        );
        verify_measurement(&owner, &info, &blob, &ld)
            .unwrap_or_else(|e| panic!("{vcpus} vCPUs of {model}: {e}"));
        q.ok("quit", Value::Null);
        let st = vm.wait();
        assert_exit(st, 0, &vm.stderr_text());
    }
}

/// SEV-ES launches with `-kernel/-initrd/-append` and `kernel-hashes=on`
/// (`legacy-vm-type=off`), the owner's files made by `sevctl session`: the
/// measurement `query-sev-launch-measure` reports is the one `sevctl
/// measurement build` computes both from `sev-snp-measure --mode seves`'s
/// digest for the same kernel, initrd and command line (`--launch-digest`)
/// and from the firmware, kernel, initrd, command line and VMSAs
/// (`--vmsa-cpu0/1`: sevctl has no vCPU types of its own for SEV-ES, it
/// measures the pages it is given, here the ones sev-snp-measure built and
/// dumped). Debian's OVMF cannot take part: its SEV hashes table area has
/// base 0, so sev-snp-measure refuses it with a kernel and so does sevm (as
/// QEMU does); the measured kernels run on the edk2 AmdSev fixture and the
/// demo firmware.
#[test]
fn seves_kernel_hashes_equal_sev_snp_measure_and_sevctl() {
    const TEST: &str = "seves_kernel_hashes_equal_sev_snp_measure_and_sevctl";
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    let Some(amdsev) = sevm_testutil::fixture_path(TEST, "ovmf/ovmf_AmdSev_suffix.bin") else {
        return;
    };
    let Some(sevctl) = sevctl(TEST) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let k = Kernel::write(
        d,
        "fake",
        &b"not really a bzImage\n".repeat(500),
        b"not really an initrd\n",
        "console=ttyS0 root=/dev/vda1",
    );

    let debian = Path::new(DEBIAN_OVMF);
    if debian.exists() {
        let platform = fresh_platform(d, "debian");
        let mut args = sev_args(
            debian,
            64,
            &sev_object(&platform, ES, None, ",legacy-vm-type=off,kernel-hashes=on"),
            None,
        );
        args.extend(k.sevm_args());
        let out = Command::new(sevm_bin()).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_exit(out.status, 1, &err);
        assert!(err.contains("cannot measure -kernel"), "{err}");
        if let Some(why) = SnpMeasure::new("seves", debian)
            .vcpus(1, "EPYC-Milan")
            .kernel(Some(&k))
            .refusal(TEST)
        {
            assert!(why.contains("doesn't support kernel"), "{why}");
        }
    } else {
        sevm_testutil::skip(
            TEST,
            "Debian's OVMF (/usr/share/OVMF/OVMF_CODE.fd, package ovmf) is not installed",
        );
    }

    let demo = demo_image(d);
    for (fw, vcpus, model) in [
        (amdsev.as_path(), 1, "EPYC-Milan"),
        (amdsev.as_path(), 4, "EPYC-Rome"),
        (demo.as_path(), 2, "EPYC-Genoa"),
    ] {
        let case = d.join(format!("case-{vcpus}"));
        std::fs::create_dir(&case).unwrap();
        let Some(ld) = SnpMeasure::new("seves", fw)
            .vcpus(vcpus, model)
            .kernel(Some(&k))
            .dump_vmsa_in(&case)
            .digest::<32>(TEST)
        else {
            return;
        };
        // The owner: `sevctl session` for the platform's PDH.
        let platform = fresh_platform(d, &format!("p{vcpus}"));
        let (pdh, _) = export_pdh(&platform);
        uninit(&platform);
        let session = sevctl_session(&sevctl, &case, &pdh, ES);
        let object = format!(",legacy-vm-type=off,kernel-hashes=on{session}");
        let sock = case.join("qmp.sock");
        let mut args = sev_args(
            fw,
            16,
            &sev_object(&platform, ES, None, &object),
            Some(&sock),
        );
        args.extend(smp_args(vcpus, model));
        args.extend(k.sevm_args());
        let mut vm = Sevm::spawn(&args);
        let mut q = vm.qmp(&sock);
        q.ok("qmp_capabilities", Value::Null);
        let info = q.ok("query-sev", Value::Null);
        let blob = q.ok("query-sev-launch-measure", Value::Null)["data"]
            .as_str()
            .unwrap()
            .to_string();
        let build =
            |inputs: &[String]| sevctl_measurement_build(&sevctl, &case, &info, &blob, inputs);
        let what = format!("{fw:?}, {vcpus} x {model}");
        assert_eq!(
            build(&["--launch-digest".into(), b64(&ld)]),
            blob,
            "{what}: from sev-snp-measure's digest"
        );
        let inputs = vec![
            "--firmware".to_string(),
            fw.display().to_string(),
            "--kernel".into(),
            k.kernel.display().to_string(),
            "--initrd".into(),
            k.initrd.display().to_string(),
            "--cmdline".into(),
            k.append.clone(),
            "--num-cpus".into(),
            vcpus.to_string(),
            "--vmsa-cpu0".into(),
            "vmsa0.bin".into(),
            // sevctl wants an AP page even for one vCPU (it measures none).
            "--vmsa-cpu1".into(),
            if vcpus > 1 { "vmsa1.bin" } else { "vmsa0.bin" }.into(),
        ];
        assert_eq!(
            build(&inputs),
            blob,
            "{what}: from the firmware, kernel and VMSAs"
        );
        q.ok("quit", Value::Null);
        assert_exit(vm.wait(), 0, &vm.stderr_text());
    }
}
