//! `sev-owner demo`: the attested launch of sevm's demo guest on an
//! emulated platform in the user's state directory, in one command.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sev_proto::abi::Policy;
use sev_proto::snp::cert_table;
use sev_proto::snp::report::AttestationReport;
use sev_proto::snp::{snp_launch_digest, GuestPolicy, IdBlock, SnpLaunch};
use sev_proto::vmsa::{KvmInit, SevFeatures, VcpuModel, VmmType, VmsaConfig};

use crate::chain::{CaOptions, ChainSource, Trust};
use crate::io;
use crate::launch::{self, ChainInput, Device, Plan, Report};
use crate::measure::{DigestInputs, EsVcpus};
use crate::platform::{CreateOptions, EmulatedPlatform, PlatformError, PlatformManagement};
use crate::secret;

use super::tempdir::temp_dir;

/// The GUID the demo's secret is stored under.
pub const DEMO_SECRET_GUID: &str = "f4d5a2c1-6b3e-4c8f-9a1d-2e7b5c3f8a90";

/// Files the demo prepares once per platform: the chain as the platform
/// exports it, the platform's own root, and the demo firmware.
#[derive(Debug)]
pub struct Prepared {
    /// The platform directory.
    pub platform: PathBuf,
    /// PDH ‖ PEK ‖ OCA ‖ CEK ‖ ASK ‖ ARK.
    pub chain: PathBuf,
    /// The platform's ARK (the root the owner trusts explicitly).
    pub ark: PathBuf,
    /// The demo guest firmware.
    pub firmware: PathBuf,
    /// The sevm binary.
    pub sevm: PathBuf,
}

/// Creates the platform if needed, exports its chain and root, and writes
/// the demo firmware with `sevm -write-demo-guest`.
pub fn prepare(platform: &Path, sevm: &Path, say: &mut dyn FnMut(&str)) -> Result<Prepared> {
    if !platform.join("identity").exists() {
        say(&format!(
            "creating an emulated SEV platform in {} (once: generating its RSA-4096 roots takes a few seconds)",
            platform.display()
        ));
        EmulatedPlatform::create(platform, CreateOptions::default())
            .map_err(PlatformError::from)?;
    }
    let files = platform
        .parent()
        .map_or_else(|| PathBuf::from("demo"), |p| p.join("demo"));
    std::fs::create_dir_all(&files).with_context(|| format!("creating {}", files.display()))?;
    let b = EmulatedPlatform::open(platform).map_err(PlatformError::from)?;
    let certs = b.pdh_cert_export().map_err(PlatformError::firmware(&b))?;
    let ca = b
        .amd_chain()
        .map_err(PlatformError::firmware(&b))?
        .context("the emulated platform has no ASK/ARK")?;
    let mut full = certs.pdh.encode().to_vec();
    full.extend_from_slice(&certs.chain.encode());
    full.extend_from_slice(&ca.encode());
    let chain_path = files.join("chain.cert");
    let ark_path = files.join("ark.cert");
    io::write_atomic(&chain_path, &full, 0o644)?;
    io::write_atomic(&ark_path, &ca.ark.encode(), 0o644)?;
    say(&format!(
        "platform {}: exported its chain to {} and its own root (ARK) to {}",
        platform.display(),
        chain_path.display(),
        ark_path.display()
    ));
    let firmware = files.join("demo.fd");
    let out = Command::new(sevm)
        .arg("-write-demo-guest")
        .arg(&firmware)
        .output()
        .with_context(|| {
            format!(
                "running {} (build it with `cargo build --release --bins`, or set SEVM_BIN)",
                sevm.display()
            )
        })?;
    if !out.status.success() {
        bail!(
            "{} -write-demo-guest failed: {}",
            sevm.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(Prepared {
        platform: platform.to_path_buf(),
        chain: chain_path,
        ark: ark_path,
        firmware,
        sevm: sevm.to_path_buf(),
    })
}

/// The `-cpu` model of an SEV-ES demo launch: the VMSAs the owner builds
/// carry its CPU signature.
pub const ES_CPU_MODEL: &str = "EPYC-Milan";

/// How the demo guest runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DemoMode {
    /// A plain SEV guest (policy NODBG | NOKS).
    #[default]
    Sev,
    /// An SEV-ES guest (policy NODBG | NOKS | ES, one vCPU of
    /// [`ES_CPU_MODEL`]): the owner checks the measurement over the firmware
    /// and the VMSA, and the guest talks to sevm through the GHCB.
    SevEs,
}

/// The launch plan of the demo.
pub fn plan(p: &Prepared, secret_text: &str, work_dir: &Path, mode: DemoMode) -> Result<Plan> {
    let spec = secret::parse_spec(&format!("{DEMO_SECRET_GUID}:={secret_text}"))?;
    let (policy, es_vcpus, extra_args) = match mode {
        DemoMode::Sev => (Policy::NODBG | Policy::NOKS, None, vec![]),
        DemoMode::SevEs => {
            let model = VcpuModel::by_name(ES_CPU_MODEL)
                .with_context(|| format!("unknown vCPU model {ES_CPU_MODEL}"))?;
            let vmsa = VmsaConfig::new(VmmType::Qemu, model.signature(), SevFeatures::NONE)
                .with_kvm_init(KvmInit::LegacyEsInit);
            (
                Policy::NODBG | Policy::NOKS | Policy::ES,
                Some(EsVcpus { count: 1, vmsa }),
                vec!["-cpu".to_owned(), ES_CPU_MODEL.to_owned()],
            )
        }
    };
    Ok(Plan {
        sevm: p.sevm.clone(),
        device: Device::Emulated(p.platform.clone()),
        chain: ChainInput::Source(ChainSource::File(p.chain.clone())),
        ca: CaOptions::default(),
        trust: super::recognise_emulated_root(Trust::explicit(&p.ark)?, &p.platform),
        policy: Policy::from_bits(policy),
        digest: DigestInputs {
            firmware: p.firmware.clone(),
            es_vcpus,
            ..DigestInputs::default()
        },
        memory_mib: 16,
        secrets: vec![spec],
        secret_limit: secret::DEFAULT_LIMIT,
        work_dir: work_dir.to_path_buf(),
        attach: None,
        extra_args,
        host_view: true,
        wait_for_guest: true,
        guest_timeout: Duration::from_secs(60),
    })
}

fn print_report(r: &Report) {
    if let Some(payload) = &r.secret_payload {
        println!("what the host was handed to inject (ciphertext under the session's TEK):");
        print!("{}", launch::hexdump(payload, 0));
    }
    match &r.host_view {
        Some(Ok(text)) => {
            println!("what the host sees of the secret page in guest memory (ciphertext under the guest's key):");
            println!("{text}");
        }
        Some(Err(e)) => {
            println!("(the VMM did not answer the host-view read of the secret page: {e})")
        }
        None => {}
    }
    println!("--- guest serial output ---");
    print!("{}", r.guest_output);
    if !r.guest_output.ends_with('\n') {
        println!();
    }
    println!("--- end of guest output ---");
}

/// Runs the demo.
pub fn run(
    platform: Option<PathBuf>,
    secret_text: String,
    sevm: Option<PathBuf>,
    runs: u32,
    mode: DemoMode,
) -> Result<()> {
    let platform = match platform {
        Some(p) => p,
        None => super::platform::default_emulated_dir()?,
    };
    let sevm = sevm.unwrap_or_else(launch::find_sevm);
    let prepared = prepare(&platform, &sevm, &mut |s| println!("{s}"))?;
    println!(
        "trusting the emulated platform's own root explicitly (it is not AMD's): {}",
        prepared.ark.display()
    );
    let mut totals = Vec::new();
    for i in 0..runs.max(1) {
        let work = temp_dir()?;
        let plan = plan(&prepared, &secret_text, work.path(), mode)?;
        let quiet = i > 0;
        let report = launch::run(&plan, &mut |step| {
            if !quiet {
                println!(
                    "[{:>8.2} ms] {:<18} {}",
                    step.elapsed.as_secs_f64() * 1e3,
                    step.name,
                    step.detail
                );
            }
        })?;
        if !quiet {
            print_report(&report);
        }
        if report.exit_code != Some(0) {
            bail!("the demo guest exited with status {:?}", report.exit_code);
        }
        if !report.guest_output.contains(&secret_text) {
            bail!("the guest did not print the injected secret");
        }
        if mode == DemoMode::SevEs && !report.guest_output.contains("mode: sev-es") {
            bail!("the guest did not run as an SEV-ES guest");
        }
        totals.push(report.total);
        if !quiet {
            println!(
                "attested launch of the demo guest: {:.1} ms end to end (chain verified, session created, VMM started, measurement verified, secret injected, guest ran)",
                report.total.as_secs_f64() * 1e3
            );
        }
    }
    if totals.len() > 1 {
        totals.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{} runs: median {:.1} ms, min {:.1} ms, max {:.1} ms",
            totals.len(),
            ms(totals[totals.len() / 2]),
            ms(totals[0]),
            ms(totals[totals.len() - 1])
        );
    }
    Ok(())
}

/// The report lines the demo guest printed (`snp report: ` and 64 hex
/// digits each, up to `snp report: end`), as bytes; its error line if it
/// printed one instead (docs/guide/demo-guest.md#the-report-request).
pub fn printed_report(output: &str) -> Result<Vec<u8>> {
    let mut hex_text = String::new();
    for line in output.lines() {
        if let Some(e) = line.strip_prefix("snp report error: ") {
            bail!("the guest's report request failed: {e}");
        }
        let Some(rest) = line.strip_prefix("snp report: ") else {
            continue;
        };
        if rest == "end" {
            return hex::decode(&hex_text).context("the guest printed a report that is not hex");
        }
        if rest.len() == 64 && rest.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex_text.push_str(rest);
        }
    }
    bail!("the guest printed no complete report")
}

/// What the owner expects of the demo guest's SNP report.
#[derive(Debug, Clone)]
pub struct ExpectedReport {
    /// The launch digest the owner computed.
    pub measurement: [u8; 48],
    /// The nonce given to the guest as report data.
    pub report_data: [u8; 64],
    /// The host data the launch was given.
    pub host_data: [u8; 32],
    /// The launch policy.
    pub policy: GuestPolicy,
    /// The digest of the ID key that signed the ID block.
    pub id_key_digest: [u8; 48],
}

/// Checks a report the demo guest printed: its signature by `vcek`, then
/// every field the owner knows; the first mismatch is the error, named.
pub fn check_report(
    bytes: &[u8],
    vcek: &p384::ecdsa::VerifyingKey,
    want: &ExpectedReport,
) -> Result<AttestationReport> {
    let report = AttestationReport::decode(bytes).context("decoding the guest's report")?;
    report
        .verify_signature(vcek)
        .context("the report's signature does not verify with the platform's VCEK")?;
    let field = |name: &str, got: &[u8], want: &[u8]| -> Result<()> {
        if got != want {
            bail!(
                "report {name} is {}, expected {}",
                hex::encode(got),
                hex::encode(want)
            );
        }
        Ok(())
    };
    field("MEASUREMENT", &report.measurement, &want.measurement)?;
    field("REPORT_DATA", &report.report_data, &want.report_data)?;
    field("HOST_DATA", &report.host_data, &want.host_data)?;
    field("ID_KEY_DIGEST", &report.id_key_digest, &want.id_key_digest)?;
    if report.policy != want.policy {
        bail!(
            "report POLICY is {:#x}, expected {:#x}",
            report.policy.bits(),
            want.policy.bits()
        );
    }
    if report.vmpl != 0 {
        bail!("report VMPL is {}, expected 0", report.vmpl);
    }
    Ok(report)
}

/// The SNP demo: the owner gives the demo firmware a fresh nonce as report
/// data (part of the image, so of the measurement), computes the launch
/// digest (one vCPU of [`ES_CPU_MODEL`]), signs an ID block for it with a
/// fresh ID key, and `sevm` launches the guest with it and fresh host
/// data; the firmware checks the block at SNP_LAUNCH_FINISH (at `cont`)
/// and refuses to run a guest whose measurement differs. The guest prints
/// its mode, its secrets page and CPUID page through the GHCB, then asks
/// the firmware for an attestation report over its launch and prints it;
/// the owner checks the report's signature with the platform's VCEK and
/// its measurement, report data, host data, ID key and policy. Guest-owner
/// secrets reach an SNP guest after attestation, not by injection, so none
/// is injected here.
pub fn run_snp(
    platform: Option<PathBuf>,
    sevm: Option<PathBuf>,
    export: Option<PathBuf>,
) -> Result<()> {
    let platform = match platform {
        Some(p) => p,
        None => super::platform::default_emulated_dir()?,
    };
    if let Some(dir) = &export {
        super::demo_export::check_free(dir)?;
    }
    let sevm = sevm.unwrap_or_else(launch::find_sevm);
    let prepared = prepare(&platform, &sevm, &mut |s| println!("{s}"))?;
    let started = std::time::Instant::now();
    let step = |name: &str, detail: &str| {
        println!(
            "[{:>8.2} ms] {name:<18} {detail}",
            started.elapsed().as_secs_f64() * 1e3
        );
    };
    let work = temp_dir()?;
    let mut image = io::read_file_max(&prepared.firmware, 16 << 20)?;
    let mut nonce = [0u8; 64];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let mut host_data = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut host_data);
    sevm_demo::set_report_data(&mut image, &nonce)
        .context("giving the demo firmware its report data")?;
    let firmware = work.path().join("demo-snp.fd");
    io::write_atomic(&firmware, &image, 0o600)?;
    step(
        "report-data",
        &format!(
            "a fresh nonce for the guest's report: {}",
            hex::encode(nonce)
        ),
    );
    let model = VcpuModel::by_name(ES_CPU_MODEL)
        .with_context(|| format!("unknown vCPU model {ES_CPU_MODEL}"))?;
    let snp_launch = SnpLaunch {
        ovmf_hash: None,
        kernel_hashes: None,
        vcpus: 1,
        vmsa: VmsaConfig::new(VmmType::Qemu, model.signature(), SevFeatures::SNP_ACTIVE),
    };
    let digest = *snp_launch_digest(&image, &snp_launch)
        .context("computing the demo firmware's SNP launch digest")?
        .bytes();
    step(
        "measure",
        &format!("expected SNP launch digest {}", hex::encode(digest)),
    );
    let id_key = p384::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let block = IdBlock::new(digest, GuestPolicy::QEMU_DEFAULT);
    let auth = block.sign(&id_key, None).context("signing the ID block")?;
    step(
        "id-block",
        &format!(
            "signed for policy {:#x} with a fresh ID key (digest {})",
            GuestPolicy::QEMU_DEFAULT.bits(),
            hex::encode(auth.id_key_digest())
        ),
    );
    let socket = work.path().join("qmp.sock");
    let args = vec![
        "-bios".to_owned(),
        firmware.display().to_string(),
        "-m".to_owned(),
        "16".to_owned(),
        "-cpu".to_owned(),
        ES_CPU_MODEL.to_owned(),
        "-machine".to_owned(),
        "q35,memory-encryption=snp0".to_owned(),
        "-object".to_owned(),
        format!(
            "sev-snp-guest,id=snp0,sev-device=emulated:{},id-block={},id-auth={},host-data={},\
             x-sevm-certs=platform",
            platform.display(),
            io::b64_encode(&block.encode()),
            io::b64_encode(&auth.encode()),
            io::b64_encode(&host_data)
        ),
        "-nographic".to_owned(),
        "-S".to_owned(),
        "-qmp".to_owned(),
        format!("unix:{},server=on,wait=off", socket.display()),
    ];
    let mut vmm = launch::VmmProcess::start(&sevm, &args, socket)?;
    let mut qmp = vmm.connect()?;
    let info = qmp
        .execute("x-sevm-query-snp-launch-digest", None)
        .context("asking sevm for the launch digest")?;
    let host_digest = info
        .get("digest")
        .and_then(|d| d.as_str())
        .context("sevm's launch digest answer has no digest")?;
    let host_digest = io::b64_decode("launch digest", host_digest)?;
    if host_digest.as_slice() != digest.as_slice() {
        vmm.stop(Some(&mut qmp));
        bail!(
            "the host reports launch digest {}, the owner expected {}",
            hex::encode(&host_digest),
            hex::encode(digest)
        );
    }
    step(
        "launch",
        "sevm launched the guest (SNP_LAUNCH_START/UPDATE); the host reports the expected digest",
    );
    if let Err(e) = qmp.execute("cont", None) {
        vmm.stop(Some(&mut qmp));
        bail!("SNP_LAUNCH_FINISH with the ID block failed: {e}");
    }
    step(
        "finish",
        "SNP_LAUNCH_FINISH: the firmware verified the ID block against the launch",
    );
    let status = vmm.wait(Duration::from_secs(60))?;
    let output = vmm.stdout();
    println!("--- guest serial output ---");
    print!("{output}");
    if !output.ends_with('\n') {
        println!();
    }
    println!("--- end of guest output ---");
    if !status.success() {
        bail!(
            "the demo guest exited with {status}: {}",
            vmm.stderr().trim()
        );
    }
    if !output.contains("mode: sev-snp") {
        bail!("the guest did not run as an SNP guest");
    }
    let bytes = printed_report(&output)?;
    let b = EmulatedPlatform::open(&platform).map_err(PlatformError::from)?;
    let decoded = AttestationReport::decode(&bytes).context("decoding the guest's report")?;
    let product = decoded
        .product()
        .context("the report does not name its product")?;
    let tcb = decoded
        .reported_tcb(product)
        .context("the report's REPORTED_TCB")?;
    let vcek = b
        .firmware()
        .snp_vcek_public(Some(tcb))
        .context("the platform's VCEK for the reported TCB")?;
    // The certificates the guest received with its report (sevm's
    // x-sevm-certs=platform) are the platform's chain for the reported
    // TCB, which binds to the report (chip id, TCB).
    let (chain, product) =
        crate::kds::chain_of(&b, tcb).context("the platform's VCEK chain for the report's TCB")?;
    let received = super::demo_export::printed_cert_table(&output)?;
    let wanted = [
        (cert_table::guid::VCEK, &chain.vek),
        (cert_table::guid::ASK, &chain.ask),
        (cert_table::guid::ARK, &chain.ark),
    ];
    if received.len() != wanted.len()
        || received
            .iter()
            .zip(wanted)
            .any(|(r, (guid, cert))| r.guid != guid || r.data != cert.der())
    {
        bail!(
            "the guest's certificate table ({} entries) is not the platform's VCEK, ASK and ARK",
            received.len()
        );
    }
    chain
        .verify(
            sev_proto::snp::chain::Trust::Explicit(&chain.ark),
            Some(product),
            std::time::SystemTime::now(),
        )?
        .verify_report(&decoded)
        .context("the report against the VCEK the guest received")?;
    step(
        "certificates",
        "the guest received the platform's VCEK (of the reported TCB), ASK and ARK with its report; \
         the chain verifies to the emulated ARK and the VCEK binds to the report",
    );
    let want = ExpectedReport {
        measurement: digest,
        report_data: nonce,
        host_data,
        policy: GuestPolicy::QEMU_DEFAULT,
        id_key_digest: auth.id_key_digest(),
    };
    let report = check_report(&bytes, &vcek, &want)?;
    step(
        "report",
        &format!(
            "report version {} signed by the platform's VCEK; measurement, report data (nonce), host data, ID key and policy as launched",
            report.version
        ),
    );
    println!(
        "verdict: OK, the SNP demo guest attested its launch: {:.1} ms end to end",
        started.elapsed().as_secs_f64() * 1e3
    );
    if let Some(dir) = export {
        let crl = b
            .firmware()
            .kds_object(&sev_proto::snp::kds::KdsRequest::Crl {
                product,
                kind: sev_proto::snp::chain::VekKind::Vcek,
            })
            .context("the platform's CRL")?
            .bytes;
        let written = super::demo_export::write(&dir, &bytes, &chain, &crl, &image)?;
        println!("exported (the report as the guest received it; the EMULATED platform's chain):");
        for f in &written {
            println!("  {}", f.display());
        }
        let d = dir.display();
        println!(
            "verify with: snpguest verify certs {d} && snpguest verify attestation {d} {d}/report.bin\n\
             or: sev-owner snp verify --report {d}/report.bin --vcek {d}/vcek.pem --chain {d}/ask.pem \
             --ark {d}/ark.pem --trust-ark-explicitly --crl {d}/crl.der --measurement {} --report-data {} --host-data {}",
            hex::encode(digest),
            hex::encode(nonce),
            hex::encode(host_data)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sev_proto::snp::report::{
        Cpuid, FirmwareVersion, MitigationVectors, ReportSignature, ReportSigner,
    };

    fn report() -> AttestationReport {
        let version = FirmwareVersion {
            major: 1,
            minor: 55,
            build: 21,
        };
        AttestationReport {
            version: 5,
            guest_svn: 0,
            policy: GuestPolicy::QEMU_DEFAULT,
            family_id: [0; 16],
            image_id: [0; 16],
            vmpl: 0,
            signature_algo: 1,
            current_tcb: 0x7308_0000_0000_0003,
            platform_info: 1,
            author_key_en: false,
            mask_chip_key: false,
            signing_key: ReportSigner::Vcek,
            report_data: [0x5D; 64],
            measurement: [0x5A; 48],
            host_data: [0x40; 32],
            id_key_digest: [0x1D; 48],
            author_key_digest: [0; 48],
            report_id: [0x1E; 32],
            report_id_ma: [0xFF; 32],
            reported_tcb: 0x7308_0000_0000_0003,
            cpuid: Some(Cpuid {
                family: 0x19,
                model: 0x11,
                stepping: 1,
            }),
            chip_id: [0xC1; 64],
            committed_tcb: 0x7308_0000_0000_0003,
            current_version: version,
            committed_version: version,
            launch_tcb: 0x7308_0000_0000_0003,
            mitigation_vectors: Some(MitigationVectors {
                launch: 1,
                current: 3,
            }),
            signature: ReportSignature::ZERO,
        }
    }

    #[test]
    fn check_report_verifies_the_signature_and_names_a_differing_field() {
        let key = p384::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let vcek = p384::ecdsa::VerifyingKey::from(&key);
        let mut r = report();
        r.sign(&key).unwrap();
        let bytes = r.encode();
        let want = ExpectedReport {
            measurement: [0x5A; 48],
            report_data: [0x5D; 64],
            host_data: [0x40; 32],
            policy: GuestPolicy::QEMU_DEFAULT,
            id_key_digest: [0x1D; 48],
        };
        check_report(&bytes, &vcek, &want).unwrap();
        // Another key, or a changed byte: the signature fails.
        let other = p384::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let e = check_report(&bytes, &p384::ecdsa::VerifyingKey::from(&other), &want)
            .unwrap_err()
            .to_string();
        assert!(e.contains("signature"), "{e}");
        let mut changed = bytes;
        changed[0x50] ^= 1;
        assert!(check_report(&changed, &vcek, &want).is_err());
        // Each expectation that differs is named.
        type Change = fn(&mut ExpectedReport);
        let cases: [(&str, Change); 5] = [
            ("MEASUREMENT", |w| w.measurement[0] ^= 1),
            ("REPORT_DATA", |w| w.report_data[63] ^= 1),
            ("HOST_DATA", |w| w.host_data[0] ^= 1),
            ("ID_KEY_DIGEST", |w| w.id_key_digest[0] ^= 1),
            ("POLICY", |w| {
                w.policy = GuestPolicy::new(0x3_0000 | 1 << 19).unwrap()
            }),
        ];
        for (field, change) in cases {
            let mut w = want.clone();
            change(&mut w);
            let e = check_report(&bytes, &vcek, &w).unwrap_err().to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
    }

    #[test]
    fn the_printed_report_is_read_back_or_its_error_named() {
        let out = "mode: sev-snp\nsnp report: certificate table entries: 0\n\
                   snp report: 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n\
                   snp report: ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n\
                   snp report: end\nsecret table: 0 entries\n";
        let bytes = printed_report(out).unwrap();
        assert_eq!(bytes.len(), 64);
        assert_eq!(bytes[..2], [0x00, 0x11]);
        assert_eq!(bytes[63], 0x00);
        let e = printed_report("snp report error: the response failed authentication\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("the response failed authentication"), "{e}");
        let e = printed_report("snp report: 0011\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no complete report"), "{e}");
    }
}
