//! Unmodified snpguest (crates.io) under `sev-emulate --snp-guest`: its
//! report, derived key, extended report's certificates and the verification
//! of that report against the emulated chain as `sev-platform snp certs`
//! writes it: the emulated issuer's ARK, ASK and VCEK for the reported TCB
//! (docs/guide/sev-emulate.md#dev-sev-guest). The report's measurement is
//! the owner's for the launch inputs (`sev_proto::snp::snp_launch_digest`,
//! which `sev-owner measure --mode snp` computes, and sev-snp-measure when
//! installed).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{launcher, output_within, p, peer, Scratch};

use sev_firmware::emulated::EmulatedPlatform;
use sev_proto::snp::cert::Certificate;
use sev_proto::snp::chain::VekKind;
use sev_proto::snp::kds::KdsRequest;
use sev_proto::snp::AttestationReport;
use sev_proto::vmsa::{SevFeatures, VcpuModel, VmmType, VmsaConfig};
use sev_psp::{CreateOptions, Platform};

/// The longest one launcher run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `cmd` to its end within [`RUN_TIMEOUT`] (killed after it).
fn run(mut cmd: Command) -> Output {
    output_within(&mut cmd, RUN_TIMEOUT)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The demo firmware's file in a [`setup`]'s directory.
const FIRMWARE: &str = "demo.fd";

/// An emulated platform made at `path` with 2048-bit roots, `opts`
/// otherwise.
fn create_platform(path: PathBuf, opts: CreateOptions) -> PathBuf {
    let opts = CreateOptions {
        ark_bits: 2048,
        ..opts
    };
    Platform::create(&path, opts, sev_psp::rng::os_rng()).unwrap();
    path
}

/// A new platform and the demo firmware ([`FIRMWARE`]) in a scratch
/// directory.
fn setup() -> Scratch {
    Scratch::new(|dir| {
        let demo = sevm_demo::build(&sevm_demo::DemoOptions::default()).unwrap();
        std::fs::write(dir.join(FIRMWARE), demo).unwrap();
        create_platform(dir.join("platform"), CreateOptions::default())
    })
}

/// snpguest (None once test `test` said it is skipped) and a [`setup`].
fn snpguest(test: &str) -> Option<(PathBuf, Scratch)> {
    Some((peer(test, "snpguest", "--help")?, setup()))
}

const HOST_DATA: [u8; 32] = [0x42; 32];

fn spec(s: &Scratch, vcpus: u32) -> String {
    format!(
        "firmware={},policy=0x30000,host-data={},vcpus={vcpus},vcpu-type=EPYC-v4",
        p(&s.dir.join(FIRMWARE)),
        hex::encode(HOST_DATA)
    )
}

/// `sev-emulate --platform PLATFORM --snp-guest SPEC --` (the program
/// and its arguments to follow), in `s.dir`.
fn snp_launcher(s: &Scratch, platform: &Path, vcpus: u32) -> Command {
    let mut cmd = launcher(platform);
    cmd.args(["--snp-guest", &spec(s, vcpus), "--"])
        .current_dir(&s.dir);
    cmd
}

/// `sh -c script` under the launcher, with `$SNPGUEST` the snpguest
/// binary.
fn under_launcher(s: &Scratch, vcpus: u32, snpguest: &Path, script: &str) -> Output {
    let mut cmd = snp_launcher(s, &s.platform, vcpus);
    cmd.args(["sh", "-c", script]).env("SNPGUEST", snpguest);
    run(cmd)
}

/// The report the guest program wrote to `report.bin`.
fn written_report(s: &Scratch) -> AttestationReport {
    AttestationReport::decode(&std::fs::read(s.dir.join("report.bin")).unwrap()).unwrap()
}

/// sev-snp-measure, when installed, computes `expected` for the launch
/// of the demo firmware with `vcpus` EPYC-v4 vCPUs.
fn sev_snp_measure_agrees(test: &str, s: &Scratch, vcpus: u32, expected: &[u8; 48]) {
    let Some(measure) = peer(test, "sev-snp-measure", "--help") else {
        return;
    };
    let mut cmd = Command::new(measure);
    cmd.args(["--mode", "snp", "--vcpus", &vcpus.to_string()])
        .args(["--vcpu-type", "EPYC-v4", "--ovmf"])
        .arg(s.dir.join(FIRMWARE));
    let o = run(cmd);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        hex::encode(expected)
    );
}

fn owner_measurement(s: &Scratch, vcpus: u32) -> [u8; 48] {
    let model = VcpuModel::by_name("EPYC-v4").unwrap();
    let image = std::fs::read(s.dir.join(FIRMWARE)).unwrap();
    let launch = sev_proto::snp::SnpLaunch {
        ovmf_hash: None,
        kernel_hashes: None,
        vcpus,
        vmsa: VmsaConfig::new(VmmType::Qemu, model.signature(), SevFeatures::SNP_ACTIVE),
    };
    *sev_proto::snp::snp_launch_digest(&image, &launch)
        .unwrap()
        .bytes()
}

fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Writes the emulated chain (ark.pem, ask.pem, vcek.pem for the reported
/// TCB) into `chain` in `s.dir` from the platform's issuer, as `sev-platform
/// snp certs --format pem` does; returns that directory.
fn export_chain(s: &Scratch) -> PathBuf {
    let out = s.dir.join("chain");
    let plat = EmulatedPlatform::open(&s.platform).unwrap();
    let fw = plat.firmware();
    let req = fw.kds_vcek_request(None).unwrap();
    let KdsRequest::Vcek { product, .. } = req else {
        panic!("{req}");
    };
    let vcek = fw.kds_object(&req).unwrap().bytes;
    let chain = fw
        .kds_object(&KdsRequest::CertChain {
            product,
            kind: VekKind::Vcek,
        })
        .unwrap()
        .bytes;
    let certs = Certificate::from_pem_chain(&chain).unwrap();
    std::fs::create_dir(&out).unwrap();
    for (name, der) in [
        ("vcek", &vcek[..]),
        ("ask", certs[0].der()),
        ("ark", certs[1].der()),
    ] {
        std::fs::write(out.join(format!("{name}.pem")), pem(der)).unwrap();
    }
    out
}

/// The certificates in directories `got` and `want` (vcek.pem, ask.pem,
/// ark.pem) are the same.
fn same_chain(got: &Path, want: &Path) {
    let der = |path: PathBuf| {
        Certificate::from_der_or_pem(&std::fs::read(path).unwrap())
            .unwrap()
            .der()
            .to_vec()
    };
    for name in ["vcek.pem", "ask.pem", "ark.pem"] {
        assert_eq!(der(got.join(name)), der(want.join(name)), "{name}");
    }
}

#[test]
fn snpguest_reports_keys_certificates_and_verifies_under_the_launcher() {
    const TEST: &str = "snpguest_reports_keys_certificates_and_verifies_under_the_launcher";
    let Some((snpguest, s)) = snpguest(TEST) else {
        return;
    };
    // The chain as `sev-platform snp certs` writes it.
    let chain = export_chain(&s);
    let script = r#"set -e
"$SNPGUEST" report report.bin request.bin --random
"$SNPGUEST" key key.bin vcek
"$SNPGUEST" key key2.bin vcek
"$SNPGUEST" key key3.bin vcek --guest_field_select 8
"$SNPGUEST" certificates pem certs
"$SNPGUEST" verify certs chain
"$SNPGUEST" verify attestation chain report.bin
"$SNPGUEST" verify attestation certs report.bin
"#;
    let o = under_launcher(&s, 1, &snpguest, script);
    let t = text(&o);
    assert!(
        o.status.success(),
        "snpguest under sev-emulate failed:\n{t}"
    );
    assert!(t.contains("VEK signed the Attestation Report!"), "{t}");
    assert!(
        t.contains("Reported TCB Boot Loader from certificate matches the attestation report"),
        "{t}"
    );

    // The report: the launch's measurement (the owner's for these inputs),
    // host data, the request data snpguest drew.
    let report = written_report(&s);
    let expected = owner_measurement(&s, 1);
    assert_eq!(report.measurement, expected);
    assert_eq!(report.host_data, HOST_DATA);
    let request = std::fs::read(s.dir.join("request.bin")).unwrap();
    assert_eq!(&report.report_data[..], &request[..]);
    assert_eq!(report.vmpl, 1);
    assert_eq!(report.policy.bits(), 0x30000);

    // sev-snp-measure agrees, when installed.
    sev_snp_measure_agrees(TEST, &s, 1, &expected);

    // Keys: 32 bytes (bincode: an 8-byte length is not written for arrays),
    // the same for the same request, another when the measurement is mixed in.
    let key = |n: &str| std::fs::read(s.dir.join(n)).unwrap();
    assert_eq!(key("key.bin").len(), 32);
    assert_ne!(key("key.bin"), vec![0u8; 32]);
    assert_eq!(key("key.bin"), key("key2.bin"));
    assert_ne!(key("key.bin"), key("key3.bin"));

    // The extended report's certificates are the exported chain.
    same_chain(&s.dir.join("certs"), &chain);
}

#[test]
fn another_vcpu_count_is_another_measurement() {
    const TEST: &str = "another_vcpu_count_is_another_measurement";
    let Some((snpguest, s)) = snpguest(TEST) else {
        return;
    };
    let o = under_launcher(
        &s,
        4,
        &snpguest,
        r#""$SNPGUEST" report report.bin request.bin --random -v 0"#,
    );
    assert!(o.status.success(), "{}", text(&o));
    let report = written_report(&s);
    assert_eq!(report.measurement, owner_measurement(&s, 4));
    assert_ne!(report.measurement, owner_measurement(&s, 1));
    assert_eq!(report.vmpl, 0);
}

#[test]
fn without_snp_guest_the_device_is_the_kernels() {
    let s = setup();
    let mut cmd = launcher(&s.platform);
    cmd.args([
        "--",
        "sh",
        "-c",
        "test ! -e /dev/sev-guest && exec 3</dev/sev-guest",
    ])
    .current_dir(&s.dir);
    let o = run(cmd);
    // The shell's redirection fails as the kernel answers (no such file).
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("sev-guest"), "{}", text(&o));
}

#[test]
fn a_bad_snp_guest_spec_is_refused_before_the_program_runs() {
    let s = setup();
    let fw = s.dir.join(FIRMWARE);
    let fw = p(&fw);
    for (bad, want) in [
        ("policy=0x30000".to_owned(), "firmware=FILE is required"),
        (format!("firmware={fw},vcpus=0"), "vcpus=0"),
        (format!("firmware={fw},host-data=12"), "host-data"),
        (
            "firmware=/nonexistent/ovmf.fd".to_owned(),
            "/nonexistent/ovmf.fd",
        ),
        (format!("firmware={fw},colour=blue"), "colour"),
    ] {
        let mut cmd = launcher(&s.platform);
        cmd.args(["--snp-guest", &bad, "--", "touch", "ran"])
            .current_dir(&s.dir);
        let o = run(cmd);
        assert_eq!(o.status.code(), Some(125), "{bad}: {}", text(&o));
        assert!(text(&o).contains(want), "{bad}: {}", text(&o));
        assert!(!s.dir.join("ran").exists(), "{bad}");
    }
}

/// A client of the ioctls in Python (ctypes buffers and libc's `ioctl`): the report, the extended report's length protocol,
/// a bad pointer. Prints one `key=value` line per outcome.
const PY_CLIENT: &str = r#"
import ctypes, os, struct
libc = ctypes.CDLL(None, use_errno=True)
libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
fd = os.open("/dev/sev-guest", os.O_RDONLY)
def call(nr, version, req, resp):
    arg = ctypes.create_string_buffer(
        struct.pack("<B7xQQQ", version, req, resp, 0x5a), 32)
    rc = 0
    if libc.ioctl(fd, nr, ctypes.addressof(arg)) != 0:
        rc = ctypes.get_errno()
    return rc, struct.unpack_from("<Q", arg.raw, 24)[0]
req = ctypes.create_string_buffer(bytes([0x11] * 64) + struct.pack("<I", 0) + bytes(28), 96)
resp = ctypes.create_string_buffer(4000)
rc, info = call(0xC0205300, 1, ctypes.addressof(req), ctypes.addressof(resp))
print("report=%d exitinfo2=%#x" % (rc, info))
open("report.bin", "wb").write(resp.raw[32:32 + 1184])
ext = ctypes.create_string_buffer(req.raw + struct.pack("<QI4x", 0, 0), 112)
rc, info = call(0xC0205302, 1, ctypes.addressof(ext), ctypes.addressof(resp))
need = struct.unpack_from("<I", ext.raw, 104)[0]
print("ext_nobuf=%d exitinfo2=%#x need=%d" % (rc, info, need))
certs = ctypes.create_string_buffer(need)
struct.pack_into("<QI", ext, 96, ctypes.addressof(certs), need)
rc, info = call(0xC0205302, 1, ctypes.addressof(ext), ctypes.addressof(resp))
print("ext=%d exitinfo2=%#x" % (rc, info))
open("certs.bin", "wb").write(certs.raw)
rc, info = call(0xC0205300, 1, 8, ctypes.addressof(resp))
print("badptr=%d exitinfo2=%#x" % (rc, info))
rc, info = call(0xC0205300, 0, ctypes.addressof(req), ctypes.addressof(resp))
print("version0=%d exitinfo2=%#x" % (rc, info))
"#;

/// The ioctls through the real seccomp path from another language's
/// program, and the measurement against sev-snp-measure.
#[test]
fn a_python_client_gets_reports_and_certificates_through_the_launcher() {
    const TEST: &str = "a_python_client_gets_reports_and_certificates_through_the_launcher";
    let Some(python) = peer(TEST, "python3", "--version") else {
        return;
    };
    let s = setup();
    let mut cmd = snp_launcher(&s, &s.platform, 2);
    cmd.arg(&python).args(["-c", PY_CLIENT]);
    let o = run(cmd);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let pages = |n: usize| n.div_ceil(4096) * 4096;
    let certs = std::fs::read(s.dir.join("certs.bin")).unwrap();
    let need = certs.len();
    assert_eq!(need, pages(need));
    for line in [
        "report=0 exitinfo2=0x5a".to_owned(),
        format!("ext_nobuf={} exitinfo2=0x100000000 need={need}", libc::EIO),
        "ext=0 exitinfo2=0x5a".to_owned(),
        format!("badptr={} exitinfo2=0xffffffffffffffff", libc::EFAULT),
        format!("version0={} exitinfo2=0x5a", libc::EINVAL),
    ] {
        assert!(t.lines().any(|l| l == line), "no {line:?} in:\n{t}");
    }
    let report = written_report(&s);
    let expected = owner_measurement(&s, 2);
    assert_eq!(report.measurement, expected);
    assert_eq!(report.report_data, [0x11; 64]);
    assert_eq!(report.host_data, HOST_DATA);
    let entries = sev_proto::snp::cert_table::decode(&certs).unwrap();
    let vcek = entries
        .iter()
        .find(|e| e.guid == sev_proto::snp::cert_table::guid::VCEK)
        .unwrap();
    let key = Certificate::from_der(&vcek.data)
        .unwrap()
        .p384_public_key()
        .unwrap();
    report.verify_signature(&key).unwrap();

    sev_snp_measure_agrees(TEST, &s, 2, &expected);
}

/// Each launcher run launches its own guest on the shared platform; the
/// guests of launchers that ended do not pile up (a run after many
/// earlier ones still gets a guest context and an ASID).
#[test]
fn launches_on_one_platform_do_not_pile_up() {
    let s = setup();
    // A platform with two SEV-ES/SNP ASIDs: six runs after two killed
    // launchers need them reused.
    let opts = CreateOptions {
        min_sev_asid: 3,
        ..Default::default()
    };
    let small = create_platform(s.dir.join("small"), opts);
    let launcher = |script: &str| {
        let mut cmd = snp_launcher(&s, &small, 1);
        cmd.args(["sh", "-c", script]);
        cmd
    };
    // Two guests at once hold both ASIDs; a third launcher meanwhile is
    // refused, by name, before its program runs.
    let mut held = Vec::new();
    for i in 0..2 {
        let mut c = launcher(&format!("touch up{i}; sleep 30"));
        held.push(c.spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(60);
        while !s.dir.join(format!("up{i}")).exists() {
            assert!(Instant::now() < deadline, "launcher {i} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let o = run(launcher("touch third"));
    for mut h in held {
        let _ = h.kill();
        let _ = h.wait();
    }
    assert_eq!(o.status.code(), Some(125), "{}", text(&o));
    assert!(text(&o).contains("SNP launch"), "{}", text(&o));
    assert!(!s.dir.join("third").exists());
    for run_no in 0..6 {
        let mut cmd = snp_launcher(&s, &small, 1);
        cmd.args(["test", "-e", "/dev/sev-guest"]);
        let o = run(cmd);
        // `test -e` stats the path: the kernel answers (no such device
        // here), the launch itself must have succeeded.
        assert_ne!(o.status.code(), Some(125), "run {run_no}: {}", text(&o));
    }
}

/// `snpguest fetch ca` and `fetch vcek` reach AMD's key server at its
/// built-in host; under `--emulated-kds` the emulated one answers them
/// (docs/guide/sev-emulate.md#kds), and what they fetch is the chain the
/// platform's issuer makes, against which the guest's report verifies.
#[test]
fn snpguest_fetches_the_emulated_chain_through_emulated_kds() {
    const TEST: &str = "snpguest_fetches_the_emulated_chain_through_emulated_kds";
    let Some((snpguest, s)) = snpguest(TEST) else {
        return;
    };
    let chain = export_chain(&s);
    let script = r#"set -e
"$SNPGUEST" report report.bin request.bin --random
"$SNPGUEST" fetch ca pem fetched -r report.bin
"$SNPGUEST" fetch vcek pem fetched report.bin
"$SNPGUEST" verify certs fetched
"$SNPGUEST" verify attestation fetched report.bin
"#;
    let mut cmd = launcher(&s.platform);
    cmd.args(["--snp-guest", &spec(&s, 1), "--emulated-kds"])
        .args(["--", "sh", "-c", script])
        .current_dir(&s.dir)
        .env("SNPGUEST", &snpguest);
    let o = run(cmd);
    let t = text(&o);
    assert!(
        o.status.success(),
        "snpguest fetch under --emulated-kds:\n{t}"
    );
    assert!(t.contains("VEK signed the Attestation Report!"), "{t}");
    same_chain(&s.dir.join("fetched"), &chain);
}
