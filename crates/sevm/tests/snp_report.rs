//! The SNP demo guest asks the emulated firmware for an attestation report
//! through sevm's guest-request exits, with the real `sevm` binary: the
//! report it prints decodes, is signed by the platform's VCEK, carries the
//! report data given in the image, the launch digest the owner computes,
//! the host data and the policy of the launch.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use sev_proto::snp::report::AttestationReport;
use sev_proto::snp::{GuestPolicy, SnpLaunch};
use sev_proto::vmsa::{SevFeatures, VcpuModel, VmmType, VmsaConfig};

/// The report lines the guest printed, decoded.
fn printed_report(stdout: &str) -> Vec<u8> {
    let mut hex_text = String::new();
    let mut ended = false;
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("snp report: ") else {
            continue;
        };
        if rest == "end" {
            ended = true;
            break;
        }
        if rest.len() == 64 && rest.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex_text.push_str(rest);
        }
    }
    assert!(ended, "no complete report in:\n{stdout}");
    hex::decode(hex_text).unwrap()
}

#[test]
fn the_snp_demo_guest_gets_a_signed_report_over_its_launch() {
    const TEST: &str = "the_snp_demo_guest_gets_a_signed_report_over_its_launch";
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let nonce: [u8; 64] = std::array::from_fn(|i| (i * 5 + 1) as u8);
    let mut image = sevm_demo::build(&sevm_demo::DemoOptions::default()).unwrap();
    sevm_demo::set_report_data(&mut image, &nonce).unwrap();
    let fw = d.join("demo-report.fd");
    std::fs::write(&fw, &image).unwrap();
    let platform = fresh_platform(d, "platform");
    let host_data = [0x5Au8; 32];
    let model = "EPYC-Milan";
    let args: Vec<String> = vec![
        "-bios".into(),
        fw.display().to_string(),
        "-m".into(),
        "64".into(),
        "-cpu".into(),
        model.into(),
        "-machine".into(),
        "q35,memory-encryption=snp0".into(),
        "-object".into(),
        format!(
            "sev-snp-guest,id=snp0,sev-device=emulated:{},host-data={}",
            platform.display(),
            base64_encode(&host_data)
        ),
    ];
    let mut vm = Sevm::spawn(&args);
    let st = vm.wait();
    let stdout = vm.stdout_text();
    assert_exit(st, 0, &format!("{}\nstdout:\n{stdout}", vm.stderr_text()));
    assert!(
        stdout.contains("snp report: certificate table entries: 0\n"),
        "{stdout}"
    );
    let bytes = printed_report(&stdout);
    let report = AttestationReport::decode(&bytes).unwrap();

    // Signed by this platform's VCEK for the reported TCB.
    let p = sev_psp::Platform::open(&platform, sev_psp::rng::os_rng()).unwrap();
    let tcb = report
        .reported_tcb(report.product().expect("the report names its product"))
        .unwrap();
    let vcek = p.snp_vcek_public(Some(tcb)).unwrap();
    report.verify_signature(&vcek).unwrap();
    // A flipped bit breaks it.
    let mut forged = bytes.clone();
    forged[0x50] ^= 1;
    let forged = AttestationReport::decode(&forged).unwrap();
    assert!(forged.verify_signature(&vcek).is_err());

    // Over this launch: report data, measurement, host data, policy.
    assert_eq!(report.report_data, nonce);
    let sig = VcpuModel::by_name(model).unwrap().signature();
    let launch = SnpLaunch {
        ovmf_hash: None,
        kernel_hashes: None,
        vcpus: 1,
        vmsa: VmsaConfig::new(VmmType::Qemu, sig, SevFeatures::SNP_ACTIVE),
    };
    let expected = sev_proto::snp::snp_launch_digest(&image, &launch).unwrap();
    assert_eq!(
        hex::encode(report.measurement),
        hex::encode(expected.bytes())
    );
    assert_eq!(report.host_data, host_data);
    assert_eq!(report.policy, GuestPolicy::new(0x30000).unwrap());
    assert_eq!(report.vmpl, 0);
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
