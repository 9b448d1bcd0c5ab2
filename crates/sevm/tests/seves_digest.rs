//! SEV-ES launches of Debian's OVMF through the real `sevm` binary (`-S`):
//! the measurement `query-sev-launch-measure` reports verifies, with the
//! owner's TIK, for the launch digest `sev-snp-measure --mode seves`
//! computes, for a few vCPU counts and types (`legacy-vm-type=off`: the
//! KVM_SEV_INIT2 VMSAs sev-snp-measure builds for QEMU).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

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
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for (vcpus, model) in [(1, "EPYC-v4"), (4, "EPYC-Milan")] {
        let Some(ld) = seves_measure(TEST, fw, vcpus, model) else {
            return;
        };
        let platform = fresh_platform(d, &format!("p{vcpus}"));
        let (pdh, chain) = export_pdh(&platform);
        // export_pdh INITs without SEV-ES; sevm INITs an UNINIT platform
        // with it.
        sev_psp::Platform::open(&platform, sev_psp::rng::os_rng())
            .unwrap()
            .shutdown()
            .unwrap();
        let owner = owner(d, &pdh, &chain, &amd_chain(&platform), ES);
        let sock = d.join("qmp.sock");
        let _ = std::fs::remove_file(&sock);
        let mut args = sev_args(
            fw,
            16,
            &sev_object(&platform, ES, Some(&owner), ",legacy-vm-type=off"),
            Some(&sock),
        );
        args.extend([
            "-smp".into(),
            vcpus.to_string(),
            "-cpu".into(),
            model.to_string(),
        ]);
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
