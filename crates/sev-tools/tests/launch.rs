//! The owner's launch flow against the real `sevm` on an emulated
//! platform: the demo end to end, and every refusal — a chain signed by
//! another root, a PDH swapped for another platform's, a measurement for
//! other firmware, a policy changed by the host, an API version below the
//! policy's minimum. A refused launch injects nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use sev_tools::launch::VmmProcess;

const GUID: &str = "736869e5-84f0-4973-92ec-06879ce3da0b";

struct Env {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    sevm: PathBuf,
    platform: PathBuf,
    chain: PathBuf,
    ca: PathBuf,
    ark: PathBuf,
    firmware: PathBuf,
}

fn env(test: &str) -> Option<Env> {
    if !sevm_testutil::kvm(test) {
        return None;
    }
    let sevm = sevm(test)?;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let platform = platform_copy(&platform_a(), &dir);
    let (chain, ca, ark) = export(&platform, &dir);
    let firmware = dir.join("demo.fd");
    let o = std::process::Command::new(&sevm)
        .arg("-write-demo-guest")
        .arg(&firmware)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Some(Env {
        _tmp: tmp,
        dir,
        sevm,
        platform,
        chain,
        ca,
        ark,
        firmware,
    })
}

impl Env {
    /// `sev-owner launch` arguments for this platform and firmware, then
    /// `more`.
    fn launch_args(&self, work: &str, more: &[&str]) -> Vec<String> {
        let work = self.dir.join(work);
        let secret = format!("{GUID}:=launch-test-secret");
        let args = [
            "launch",
            "--sevm",
            p(&self.sevm),
            "--emulated",
            p(&self.platform),
            "--firmware",
            p(&self.firmware),
            "--work-dir",
            p(&work),
            "--secret",
            &secret,
            "--ca",
            p(&self.ca),
        ];
        args.iter().chain(more).map(|s| s.to_string()).collect()
    }

    /// `sev-owner launch` arguments attaching to the host's sevm at
    /// `socket` with the session in `sdir`, then `more`.
    fn attach_args(&self, socket: &Path, sdir: &Path, more: &[&str]) -> Vec<String> {
        let attach = ["--trust-ark", p(&self.ark), "--attach", p(socket)];
        let session = ["--session-dir", p(sdir)];
        self.launch_args("w", &[&attach[..], &session, more].concat())
    }

    /// The owner's session for `policy` (in `s`) and sevm started by the
    /// host with it, `host_policy` and `firmware`, its QMP up: the VMM, its
    /// socket and the session directory.
    fn host_with_session(
        &self,
        policy: &str,
        host_policy: &str,
        firmware: &Path,
    ) -> (VmmProcess, PathBuf, PathBuf) {
        let sdir = self.dir.join("s");
        let props = self.session(&sdir, policy);
        let (mut vmm, socket) = self.host_vmm("h", host_policy, &props, firmware);
        drop(vmm.connect().unwrap());
        (vmm, socket, sdir)
    }

    /// `sev-owner demo ARGS` on this platform with this sevm: its stdout.
    fn demo(&self, args: &[&str]) -> String {
        let mut a = vec!["demo"];
        a.extend_from_slice(args);
        a.extend(["--platform", p(&self.platform), "--sevm", p(&self.sevm)]);
        stdout(&ok(OWNER, &a))
    }

    /// Starts sevm as the host would (paused, -S), with `object` extra
    /// sev-guest properties and `firmware`.
    fn host_vmm(
        &self,
        name: &str,
        policy: &str,
        object: &str,
        firmware: &Path,
    ) -> (VmmProcess, PathBuf) {
        let socket = self.dir.join(format!("{name}.sock"));
        let args: Vec<String> = [
            "-machine".to_string(),
            "q35,memory-encryption=sev0".into(),
            "-object".into(),
            format!(
                "sev-guest,id=sev0,policy={policy},sev-device=emulated:{}{object}",
                p(&self.platform)
            ),
            "-bios".into(),
            p(firmware).into(),
            "-m".into(),
            "16".into(),
            "-nographic".into(),
            "-S".into(),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", p(&socket)),
        ]
        .to_vec();
        (
            VmmProcess::start(&self.sevm, &args, socket.clone()).unwrap(),
            socket,
        )
    }

    /// Session files for `policy` in `dir` (as the owner makes them).
    fn session(&self, dir: &Path, policy: &str) -> String {
        std::fs::create_dir_all(dir).unwrap();
        ok(
            OWNER,
            &[
                "session",
                "--chain",
                p(&self.chain),
                "--trust-ark",
                p(&self.ark),
                "--policy",
                policy,
                "--out-dir",
                p(dir),
            ],
        );
        format!(
            ",dh-cert-file={},session-file={}",
            p(&dir.join("vm_godh.b64")),
            p(&dir.join("vm_session.b64"))
        )
    }
}

fn owner(args: &[String]) -> std::process::Output {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    run(OWNER, &a)
}

fn refused(args: &[String], want: &str) -> String {
    let o = owner(args);
    let err = stderr(&o);
    assert!(!o.status.success(), "launch succeeded:\n{}", stdout(&o));
    assert!(err.contains("sev-owner: error: launch refused"), "{err}");
    assert!(err.contains(want), "{err:?} lacks {want:?}");
    assert!(!stdout(&o).contains("inject secret"), "{}", stdout(&o));
    err
}

/// After a refused attach, the paused guest is resumed by the test: it
/// finds no secret (nothing was injected).
fn guest_got_no_secret(mut vmm: VmmProcess) {
    let mut q = vmm.connect().unwrap();
    q.execute("cont", None).unwrap();
    drop(q);
    vmm.wait(Duration::from_secs(60)).unwrap();
    let out = vmm.stdout();
    assert!(out.contains("no secret injected"), "{out}");
}

/// `sev-owner demo --es`: the attested launch of the demo guest as an
/// SEV-ES guest — the owner checks the measurement over the firmware and
/// the VMSA, the secret is injected, and the guest prints it (and
/// everything else) through the GHCB.
#[test]
fn demo_runs_the_attested_launch_as_an_sev_es_guest() {
    let test = "demo_runs_the_attested_launch_as_an_sev_es_guest";
    let Some(e) = env(test) else { return };
    let out = e.demo(&["--es", "--secret", "s3cr3t for the es demo"]);
    for step in ["verify measurement", "inject secret", "cont"] {
        assert!(out.contains(step), "{step}:\n{out}");
    }
    assert!(out.contains("mode: sev-es"), "{out}");
    assert!(out.contains("all i/o through the ghcb"), "{out}");
    assert!(out.contains("s3cr3t for the es demo"), "{out}");
}

/// `sev-owner demo --snp`: the owner's expected SNP launch digest equals
/// the host's, the firmware accepts the ID block signed for it at
/// SNP_LAUNCH_FINISH, and the guest runs as an SNP guest (secrets page with
/// its VMPCKs present, CPUID page) with all its output through the GHCB.
#[test]
fn demo_runs_the_launch_as_an_snp_guest_with_an_id_block() {
    let test = "demo_runs_the_launch_as_an_snp_guest_with_an_id_block";
    let Some(e) = env(test) else { return };
    let out = e.demo(&["--snp"]);
    for line in [
        "host reports the expected digest",
        "firmware verified the ID block",
        "mode: sev-snp",
        "all i/o through the ghcb",
        "vmpck0 present, vmpck1 present, vmpck2 present, vmpck3 present",
        // The guest's report request and the owner's check of the report.
        "snp report: certificate table entries: 3\n",
        "snp cert: end\n",
        "the guest received the platform's VCEK (of the reported TCB), ASK and ARK with its report",
        "snp report: end\n",
        "signed by the platform's VCEK; measurement, report data (nonce), host data, ID key and policy as launched",
        "verdict: OK, the SNP demo guest attested its launch",
    ] {
        assert!(out.contains(line), "{line}:\n{out}");
    }
    // The nonce the owner announced is the report data the guest printed
    // (REPORT_DATA at 0x50 of the report: lines 3 and 4 of its hex dump).
    let nonce = out
        .split("a fresh nonce for the guest's report: ")
        .nth(1)
        .and_then(|s| s.lines().next())
        .unwrap_or_else(|| panic!("no nonce line:\n{out}"));
    let report: String = out
        .lines()
        .filter_map(|l| l.strip_prefix("snp report: "))
        .filter(|l| l.len() == 64)
        .collect();
    assert_eq!(&report[0x50 * 2..0x90 * 2], nonce, "{out}");
    // --snp injects no secret: --secret is refused with it.
    let refused = std::process::Command::new(OWNER)
        .args([
            "demo",
            "--snp",
            "--secret",
            "x",
            "--platform",
            p(&e.platform),
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--secret"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

/// The one-command demo: platform, chain to its own root, session, sevm,
/// measurement, secret, guest output.
#[test]
fn demo_runs_the_attested_launch() {
    let test = "demo_runs_the_attested_launch";
    let Some(e) = env(test) else { return };
    let out = e.demo(&["--secret", "s3cr3t for the demo"]);
    for step in [
        "verify chain",
        "create session",
        "start VMM",
        "verify measurement",
        "inject secret",
        "cont",
    ] {
        assert!(out.contains(step), "{step}:\n{out}");
    }
    assert!(out.contains("not an AMD root"), "{out}");
    // The demo knows its platform: its root is labelled as the emulated
    // platform's own (issue 9, item 13).
    assert!(out.contains("the emulated platform's own root"), "{out}");
    assert!(out.contains("s3cr3t for the demo"), "{out}");
    assert!(out.contains("hello from the encrypted guest"), "{out}");
    // The host's view of the secret page (QMP `xp`) is ciphertext: the
    // secret table's header GUID (42 f5 74 1e ...) that the guest reads in
    // plaintext at the same address must not appear in it.
    let marker = "what the host sees of the secret page in guest memory";
    let view = out
        .split(marker)
        .nth(1)
        .and_then(|rest| rest.split("--- guest serial output ---").next())
        .unwrap_or_else(|| panic!("no host view in the demo output:\n{out}"));
    assert!(view.contains("0000000000810000:"), "{view}");
    assert!(
        !view.contains("0x42 0xf5 0x74 0x1e"),
        "plaintext in the host view:\n{view}"
    );
}

#[test]
fn launch_injects_secret_with_the_chain_from_a_probe_vmm() {
    let test = "launch_injects_secret_with_the_chain_from_a_probe_vmm";
    let Some(e) = env(test) else { return };
    let o = owner(&e.launch_args("w", &["--trust-ark", p(&e.ark)]));
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    assert!(out.contains("probe sevm"), "{out}");
    // --emulated DIR: the root given explicitly is that platform's ARK.
    assert!(out.contains("the emulated platform's own root"), "{out}");
    assert!(
        out.contains(&format!("secret {GUID}: launch-test-secret")),
        "{out}"
    );
}

#[test]
fn refuses_a_chain_signed_by_another_root() {
    let test = "refuses_a_chain_signed_by_another_root";
    let Some(e) = env(test) else { return };
    let other = tempfile::tempdir().unwrap();
    let (_, _, other_ark) = export(&platform_b(), other.path());
    let a = e.launch_args("w", &["--chain", p(&e.chain), "--trust-ark", p(&other_ark)]);
    refused(&a, "ARK is the pinned root");
    // Nothing was started or written.
    assert!(!e.dir.join("w/vm_session.b64").exists());
    assert!(!e.dir.join("w/qmp.sock").exists());
}

#[test]
fn refuses_a_pdh_swapped_for_another_platforms() {
    let test = "refuses_a_pdh_swapped_for_another_platforms";
    let Some(e) = env(test) else { return };
    let other = tempfile::tempdir().unwrap();
    let (other_chain, _, _) = export(&platform_b(), other.path());
    let mut bytes = std::fs::read(&e.chain).unwrap();
    bytes[..0x824].copy_from_slice(&std::fs::read(other_chain).unwrap()[..0x824]);
    let swapped = write(&e.dir, "swapped.cert", &bytes);
    let a = e.launch_args("w", &["--chain", p(&swapped), "--trust-ark", p(&e.ark)]);
    refused(&a, "PDH signed by the PEK");
    assert!(!e.dir.join("w/vm_session.b64").exists());
}

#[test]
fn refuses_an_api_version_below_the_policys_minimum() {
    let test = "refuses_an_api_version_below_the_policys_minimum";
    let Some(e) = env(test) else { return };
    // Policy NODBG with minimum API 1.56; the platform runs 1.55.
    let policy = format!("{:#x}", 1u32 | (1 << 16) | (56 << 24));
    let chain = ["--chain", p(&e.chain), "--trust-ark", p(&e.ark)];
    let a = e.launch_args("w", &[&chain[..], &["--policy", &policy]].concat());
    refused(&a, "firmware API 1.55 is below the policy's minimum 1.56");
}

/// The host starts the guest with firmware one byte different from what
/// the owner expects: the measurement does not match and names the digest.
#[test]
fn refuses_a_measurement_for_other_firmware() {
    let test = "refuses_a_measurement_for_other_firmware";
    let Some(e) = env(test) else { return };
    let mut fw = std::fs::read(&e.firmware).unwrap();
    fw[0x1000] ^= 0xFF;
    let other_fw = write(&e.dir, "other.fd", &fw);
    let (vmm, socket, sdir) = e.host_with_session("0x1", "0x1", &other_fw);
    refused(&e.attach_args(&socket, &sdir, &[]), "launch digest differs");
    guest_got_no_secret(vmm);
}

/// The host launches with policy 0 (debugging allowed) and a session of
/// its own making; the owner expects policy 1 and refuses.
#[test]
fn refuses_a_policy_changed_by_the_host() {
    let test = "refuses_a_policy_changed_by_the_host";
    let Some(e) = env(test) else { return };
    let (vmm, socket, sdir) = e.host_with_session("0x0", "0x0", &e.firmware);
    let a = e.attach_args(&socket, &sdir, &["--policy", "0x1"]);
    refused(&a, "policy changed by the host");
    guest_got_no_secret(vmm);
}

/// With the owner's session but another policy, the firmware itself
/// refuses LAUNCH_START (the POLICY_MAC binds the policy).
#[test]
fn firmware_refuses_a_session_used_with_another_policy() {
    let test = "firmware_refuses_a_session_used_with_another_policy";
    let Some(e) = env(test) else { return };
    let sdir = e.dir.join("s");
    let props = e.session(&sdir, "0x1");
    let (mut vmm, _) = e.host_vmm("h", "0x0", &props, &e.firmware);
    let err = vmm.connect().unwrap_err().to_string();
    assert!(err.contains("LAUNCH_START"), "{err}");
    assert!(err.contains("BAD_MEASUREMENT"), "{err}");
}

/// Attached to a correctly started guest, the owner's launch succeeds.
#[test]
fn attach_to_a_vmm_started_by_the_host() {
    let test = "attach_to_a_vmm_started_by_the_host";
    let Some(e) = env(test) else { return };
    let (mut vmm, socket, sdir) = e.host_with_session("0x1", "0x1", &e.firmware);
    let o = owner(&e.attach_args(&socket, &sdir, &[]));
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    vmm.wait(Duration::from_secs(60)).unwrap();
    assert!(
        vmm.stdout().contains("launch-test-secret"),
        "{}",
        vmm.stdout()
    );
}

/// Against a running sevm: `verify --qmp` reads the chain with
/// query-sev-capabilities; an attestation report fetched over QMP verifies
/// with `attestation verify` (PEK of the verified chain, digest of the demo
/// firmware, policy, MNONCE) and fails for other firmware.
#[test]
fn verify_over_qmp_and_attestation_report() {
    let test = "verify_over_qmp_and_attestation_report";
    let Some(e) = env(test) else { return };
    let (mut vmm, socket, _) = e.host_with_session("0x1", "0x1", &e.firmware);
    let o = ok(
        OWNER,
        &[
            "verify",
            "--qmp",
            p(&socket),
            "--ca",
            p(&e.ca),
            "--trust-ark",
            p(&e.ark),
        ],
    );
    assert!(stdout(&o).contains("chain verified"), "{}", stdout(&o));

    // In launch-secret state (before `cont`), so the guest cannot exit
    // in between.
    let mut q = vmm.connect().unwrap();
    let mnonce = sev_tools::io::b64_encode(&[0x5a; 16]);
    let report = q
        .execute(
            "query-sev-attestation-report",
            Some(serde_json::json!({ "mnonce": mnonce })),
        )
        .unwrap();
    let report = report["data"].as_str().unwrap().to_string();
    q.execute("cont", None).unwrap();
    drop(q);
    let base = [
        "attestation",
        "verify",
        "--report",
        &report,
        "--chain",
        p(&e.chain),
        "--trust-ark",
        p(&e.ark),
        "--policy",
        "0x1",
        "--mnonce",
        &mnonce,
    ];
    let mut a = base.to_vec();
    a.extend(["--firmware", p(&e.firmware)]);
    let o = ok(OWNER, &a);
    assert!(
        stdout(&o).contains("attestation report verified"),
        "{}",
        stdout(&o)
    );
    let other = write(&e.dir, "other.fd", &{
        let mut fw = std::fs::read(&e.firmware).unwrap();
        fw[0] ^= 1;
        fw
    });
    let mut a = base.to_vec();
    a.extend(["--firmware", p(&other)]);
    fails(OWNER, &a, "launch digest");
    let _ = vmm.wait(Duration::from_secs(60));
}
