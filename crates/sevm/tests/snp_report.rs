//! The SNP demo guest asks the emulated firmware for an attestation report
//! through sevm's guest-request exits, with the real `sevm` binary: the
//! report it prints decodes, is signed by the platform's VCEK, carries the
//! report data given in the image, the launch digest the owner computes,
//! the host data and the policy of the launch; with `x-sevm-certs=` the
//! extended request's certificate table reaches the guest (the platform's
//! VCEK, ASK and ARK, or a directory's certificates) and its VCEK verifies
//! the report; bad values stop sevm at start-up.

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

/// The certificate table entries the guest printed (`snp cert:` lines).
fn printed_certs(stdout: &str) -> Vec<sev_proto::snp::cert_table::CertEntry> {
    let mut out: Vec<sev_proto::snp::cert_table::CertEntry> = Vec::new();
    let mut ended = false;
    for line in stdout.lines() {
        if let Some(hex_text) = line.strip_prefix("snp cert data: ") {
            out.last_mut()
                .expect("data before an entry")
                .data
                .extend(hex::decode(hex_text).unwrap());
        } else if let Some(rest) = line.strip_prefix("snp cert: ") {
            if rest == "end" {
                ended = true;
                break;
            }
            let fields: Vec<&str> = rest.split(' ').collect();
            assert_eq!(fields.len(), 3, "{line}");
            let length = u32::from_str_radix(fields[2], 16).unwrap();
            out.push(sev_proto::snp::cert_table::CertEntry {
                guid: hex::decode(fields[0]).unwrap().try_into().unwrap(),
                data: Vec::with_capacity(length as usize),
            });
        }
    }
    assert!(ended, "no complete certificate table in:\n{stdout}");
    out
}

/// Runs the SNP demo guest with report data on `platform`, with `extra`
/// properties on its sev-snp-guest object; its exit status, stdout and
/// stderr.
fn run_demo(d: &std::path::Path, platform: &std::path::Path, extra: &str) -> (i32, String, String) {
    run_demo_request(d, platform, extra, false)
}

/// [`run_demo`], the guest's request plain (0x8000_0011) or extended.
fn run_demo_request(
    d: &std::path::Path,
    platform: &std::path::Path,
    extra: &str,
    plain: bool,
) -> (i32, String, String) {
    let nonce = [0x33u8; 64];
    let mut image = sevm_demo::build(&sevm_demo::DemoOptions::default()).unwrap();
    sevm_demo::set_report_data(&mut image, &nonce).unwrap();
    if plain {
        sevm_demo::set_plain_report_request(&mut image).unwrap();
    }
    let fw = d.join("demo-certs.fd");
    std::fs::write(&fw, &image).unwrap();
    let args: Vec<String> = vec![
        "-bios".into(),
        fw.display().to_string(),
        "-m".into(),
        "64".into(),
        "-cpu".into(),
        "EPYC-Milan".into(),
        "-machine".into(),
        "q35,memory-encryption=snp0".into(),
        "-object".into(),
        format!(
            "sev-snp-guest,id=snp0,sev-device=emulated:{}{extra}",
            platform.display()
        ),
    ];
    let mut vm = Sevm::spawn(&args);
    let st = vm.wait();
    (st.code().unwrap_or(-1), vm.stdout_text(), vm.stderr_text())
}

#[test]
fn the_platform_certificates_reach_the_guest_and_their_vcek_verifies_its_report() {
    use sev_proto::snp::cert::Certificate;
    use sev_proto::snp::cert_table::guid;
    use sev_proto::snp::chain::{Chain, Trust};
    const TEST: &str =
        "the_platform_certificates_reach_the_guest_and_their_vcek_verifies_its_report";
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let platform = fresh_platform(d, "platform");
    let (code, stdout, stderr) = run_demo(d, &platform, ",x-sevm-certs=platform");
    assert_eq!(code, 0, "{stderr}\nstdout:\n{stdout}");
    assert!(
        stdout.contains("snp report: certificate table entries: 3\n"),
        "{stdout}"
    );
    let entries = printed_certs(&stdout);
    let guids: Vec<[u8; 16]> = entries.iter().map(|e| e.guid).collect();
    assert_eq!(guids, [guid::VCEK, guid::ASK, guid::ARK]);
    let chain = Chain {
        vek: Certificate::from_der(&entries[0].data).unwrap(),
        ask: Certificate::from_der(&entries[1].data).unwrap(),
        ark: Certificate::from_der(&entries[2].data).unwrap(),
    };
    // The platform's own root (the one `sev-platform snp certs` exports).
    let p = sev_psp::Platform::open(&platform, sev_psp::rng::os_rng()).unwrap();
    let sev_proto::snp::kds::KdsRequest::Vcek { product, .. } = p.kds_vcek_request(None).unwrap()
    else {
        panic!("not a VCEK request")
    };
    let issued = p
        .kds_object(&sev_proto::snp::kds::KdsRequest::CertChain {
            product,
            kind: sev_proto::snp::chain::VekKind::Vcek,
        })
        .unwrap()
        .bytes;
    let issued_ark = Certificate::from_pem_chain(&issued).unwrap().pop().unwrap();
    assert_eq!(chain.ark.der(), issued_ark.der());
    let verified = chain
        .verify(
            Trust::Explicit(&issued_ark),
            None,
            std::time::SystemTime::now(),
        )
        .unwrap();
    // The table's VCEK verifies the report the guest received with it.
    let report = AttestationReport::decode(&printed_report(&stdout)).unwrap();
    report.verify_signature(&verified.key).unwrap();
    // And binds to it: chip id and reported TCB against the VCEK's extensions.
    verified
        .verify_report(&report)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_directory_of_certificates_reaches_the_guest_and_bad_values_stop_sevm() {
    const TEST: &str = "a_directory_of_certificates_reaches_the_guest_and_bad_values_stop_sevm";
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let platform = fresh_platform(d, "platform");
    let p = sev_psp::Platform::open(&platform, sev_psp::rng::os_rng()).unwrap();
    let req = p.kds_vcek_request(None).unwrap();
    let vcek = p.kds_object(&req).unwrap().bytes;
    let certs = d.join("certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::write(certs.join("vcek.der"), &vcek).unwrap();
    let (code, stdout, stderr) =
        run_demo(d, &platform, &format!(",x-sevm-certs={}", certs.display()));
    assert_eq!(code, 0, "{stderr}\nstdout:\n{stdout}");
    assert!(
        stdout.contains("snp report: certificate table entries: 1\n"),
        "{stdout}"
    );
    let entries = printed_certs(&stdout);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].guid, sev_proto::snp::cert_table::guid::VCEK);
    assert_eq!(entries[0].data, vcek);

    // Bad values: sevm refuses to start, naming the property and the file.
    let junk = d.join("junk.bin");
    std::fs::write(&junk, [0x41u8; 100]).unwrap();
    let empty = d.join("empty");
    std::fs::create_dir(&empty).unwrap();
    for (extra, wanted) in [
        (
            format!(",x-sevm-certs={}", junk.display()),
            "no all-zero terminator",
        ),
        (
            format!(",x-sevm-certs={}", empty.display()),
            "holds no vcek.der",
        ),
        (
            ",x-sevm-certs=/nonexistent/certs".to_string(),
            "/nonexistent/certs",
        ),
    ] {
        let (code, stdout, stderr) = run_demo(d, &platform, &extra);
        assert_eq!(code, 1, "{extra}: {stderr}");
        assert!(
            stderr.contains("x-sevm-certs") && stderr.contains(wanted),
            "{extra}: {stderr}"
        );
        assert!(!stdout.contains("snp report"), "{stdout}");
    }
}

#[test]
fn a_plain_request_gets_a_signed_report_and_no_certificates() {
    const TEST: &str = "a_plain_request_gets_a_signed_report_and_no_certificates";
    if !sevm_testutil::kvm(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let platform = fresh_platform(d, "platform");
    let (code, stdout, stderr) = run_demo_request(d, &platform, ",x-sevm-certs=platform", true);
    assert_eq!(code, 0, "{stderr}\nstdout:\n{stdout}");
    assert!(
        stdout.contains("snp report: plain guest request, no certificate table\n"),
        "{stdout}"
    );
    assert!(!stdout.contains("snp cert"), "{stdout}");
    let report = AttestationReport::decode(&printed_report(&stdout)).unwrap();
    let p = sev_psp::Platform::open(&platform, sev_psp::rng::os_rng()).unwrap();
    let vcek = p.snp_vcek_public(None).unwrap();
    report.verify_signature(&vcek).unwrap();
    assert_eq!(report.report_data, [0x33u8; 64]);
}
