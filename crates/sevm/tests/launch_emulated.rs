//! End to end through the real binary on the emulated platform: the owner
//! gets the PDH over QMP, makes a session, the VMM launches with -S, the
//! owner verifies the measurement and injects a secret, `cont`, and the demo
//! guest prints the secret and exits cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};

const GUID: &str = "736869e5-84f0-4973-92ec-06879ce3da0b";

both_backends!(
    attested_launch => owner_attests_injects_a_secret_and_the_guest_prints_it,
    owner_attests_injects_a_secret_and_the_guest_prints_it_hardware_under_launcher
);

fn attested_launch() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let platform = fresh_platform(d, "platform");
    let fw = demo_image(d);
    let sock = d.join("qmp.sock");

    // 1. The host exports the platform's certificates over QMP.
    let obj = sev_object(&platform, 0x1, None, "");
    let mut vm = Sevm::spawn(sev_args(&fw, 16, &obj, Some(&sock)));
    let mut q = vm.qmp(&sock);
    q.ok("qmp_capabilities", Value::Null);
    let caps = q.ok("query-sev-capabilities", Value::Null);
    assert_eq!(caps["cbitpos"], expected_cbitpos());
    assert_eq!(caps["reduced-phys-bits"], 1);
    assert_eq!(unb64(caps["cpu0-id"].as_str().unwrap()).len(), 64);
    let info = q.ok("query-sev", Value::Null);
    // Only the emulated backend says so (the hardware one cannot tell).
    assert_eq!(info["emulated"], !hardware(), "{info}");
    assert_eq!(info["enabled"], true);
    assert_eq!(info["state"], "launch-secret");
    q.ok("quit", Value::Null);
    let st = vm.wait();
    assert_exit(st, 0, &vm.stderr_text());
    assert_eq!(
        vm.stderr_text()
            .matches("sevm: using the EMULATED AMD SP in")
            .count(),
        usize::from(!hardware()),
        "said once: {}",
        vm.stderr_text()
    );

    // 2. The owner verifies the chain (pinning the emulated ARK explicitly)
    //    and makes the session.
    let pdh = unb64(caps["pdh"].as_str().unwrap());
    let chain = unb64(caps["cert-chain"].as_str().unwrap());
    let owner = owner(d, &pdh, &chain, &amd_chain(&platform), 0x1);

    // 3. The attested launch.
    let obj = sev_object(&platform, 0x1, Some(&owner), "");
    let mut vm = Sevm::spawn(sev_args(&fw, 16, &obj, Some(&sock)));
    let mut q = vm.qmp(&sock);
    q.ok("qmp_capabilities", Value::Null);
    assert_eq!(q.ok("query-status", Value::Null)["status"], "prelaunch");
    let info = q.ok("query-sev", Value::Null);
    assert_eq!(info["state"], "launch-secret");
    assert_eq!(info["policy"], 1);
    assert_eq!(info["sev-type"], "sev");
    assert!(info["handle"].as_u64().unwrap() > 0);
    let blob = unb64(
        q.ok("query-sev-launch-measure", Value::Null)["data"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(blob.len(), 48);
    let image = std::fs::read(&fw).unwrap();
    let ld = sev_proto::ovmf::sev_launch_digest(&image, None).unwrap();
    verify_measurement(&owner, &info, &blob, &ld).unwrap();
    // A different firmware would not verify.
    let mut other = image.clone();
    other[0] ^= 1;
    let wrong = sev_proto::ovmf::sev_launch_digest(&other, None).unwrap();
    assert!(verify_measurement(&owner, &info, &blob, &wrong).is_err());

    // The attestation report (PEK-signed) carries the same digest.
    let mnonce = [0x5Au8; 16];
    let report = unb64(
        q.ok(
            "query-sev-attestation-report",
            json!({"mnonce": b64(&mnonce)}),
        )["data"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(report.len(), 0xD0);
    assert_eq!(&report[..16], &mnonce);
    assert_eq!(&report[16..48], &ld);

    // 4. Bad secrets are refused with the firmware's status; nothing changes.
    let table = sevm_demo::secret_table(&[(GUID.parse().unwrap(), b"MY-LUKS-PASSPHRASE")]);
    let (hdr, secret) = secret_packet(&owner, &blob, &table);
    let e = q.err(
        "sev-inject-launch-secret",
        json!({"packet-header": "!!notbase64", "secret": secret}),
    );
    assert!(e.contains("packet-header is not valid base64"), "{e}");
    let e = q.err(
        "sev-inject-launch-secret",
        json!({"packet-header": b64(&[0u8; 12]), "secret": secret}),
    );
    assert!(e.contains("packet-header is 12 bytes, expected 52"), "{e}");
    let mut bad = unb64(&hdr);
    bad[30] ^= 0x80; // a MAC byte
    let e = q.err(
        "sev-inject-launch-secret",
        json!({"packet-header": b64(&bad), "secret": secret}),
    );
    assert!(
        e.starts_with("SEV: LAUNCH_SECRET failed: BAD_MEASUREMENT (0x0B)"),
        "{e}"
    );
    let e = q.err(
        "sev-inject-launch-secret",
        json!({"packet-header": hdr, "secret": secret, "gpa": 0x4000_0000u64}),
    );
    assert!(e.contains("GPA 0x40000000"), "{e}");
    let e = q.err(
        "query-sev-attestation-report",
        json!({"mnonce": b64(&[1u8; 8])}),
    );
    assert!(e.contains("mnonce is 8 bytes (expected 16 bytes)"), "{e}");
    assert_eq!(q.ok("query-sev", Value::Null)["state"], "launch-secret");
    assert_eq!(q.ok("query-status", Value::Null)["status"], "prelaunch");

    // 5. The real secret, at the firmware's default secret area; then cont.
    q.ok(
        "sev-inject-launch-secret",
        json!({"packet-header": hdr, "secret": secret}),
    );
    q.ok("cont", Value::Null);
    q.event("RESUME");
    let ev = q.event("SHUTDOWN");
    assert_eq!(ev["data"]["guest"], true);
    let st = vm.wait();
    let out = vm.stdout_text();
    assert_exit(st, 0, &vm.stderr_text());
    assert!(out.contains(sevm_demo::GREETING), "{out}");
    assert!(
        out.contains(&format!("secret {GUID}: MY-LUKS-PASSPHRASE")),
        "{out}"
    );
    assert!(out.contains("secret table: 1 entries"), "{out}");
}

both_backends!(
    running_guest => running_guest_refuses_secrets_and_keeps_running,
    running_guest_refuses_secrets_and_keeps_running_hardware_under_launcher
);

fn running_guest() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let platform = fresh_platform(d, "platform");
    let fw = spin_firmware(d);
    let sock = d.join("qmp.sock");
    let obj = sev_object(&platform, 0x1, None, "");
    let mut vm = Sevm::spawn(sev_args(&fw, 16, &obj, Some(&sock)));
    let mut q = vm.qmp(&sock);
    q.ok("qmp_capabilities", Value::Null);
    // No footer table: the secret area must be given.
    let e = q.err(
        "sev-inject-launch-secret",
        json!({"packet-header": b64(&[0u8; 52]), "secret": b64(&[0u8; 16])}),
    );
    assert!(
        e.contains("no secret area found in OVMF, gpa must be specified"),
        "{e}"
    );
    // A packet not made with this launch's TIK (unattested launch).
    let e = q.err(
        "sev-inject-launch-secret",
        json!({"packet-header": b64(&[0u8; 52]), "secret": b64(&[0u8; 16]), "gpa": 0x1000}),
    );
    assert!(e.contains("BAD_MEASUREMENT (0x0B)"), "{e}");
    q.ok("cont", Value::Null);
    q.event("RESUME");
    assert_eq!(q.ok("query-sev", Value::Null)["state"], "running");
    let e = q.err(
        "sev-inject-launch-secret",
        json!({"packet-header": b64(&[0u8; 52]), "secret": b64(&[0u8; 16]), "gpa": 0x1000}),
    );
    assert!(e.contains("Not in correct state"), "{e}");
    // Garbage while running.
    q.send_raw(b"{\"execute\": \"cont\", \"arguments\": 5}\n");
    assert_eq!(q.reply()["error"]["class"], "GenericError");
    q.send_raw(b"\xff\xfe garbage }\n");
    let errors = q.sync();
    assert!(!errors.is_empty());
    assert!(
        errors.iter().all(|e| e["error"]["class"] == "GenericError"),
        "{errors:?}"
    );
    q.ok("stop", Value::Null);
    q.event("STOP");
    assert_eq!(q.ok("query-status", Value::Null)["status"], "paused");
    q.ok("cont", Value::Null);
    q.event("RESUME");
    assert_eq!(q.ok("query-status", Value::Null)["status"], "running");
    // The measurement stays queryable; the attestation report works.
    assert_eq!(
        unb64(
            q.ok("query-sev-launch-measure", Value::Null)["data"]
                .as_str()
                .unwrap()
        )
        .len(),
        48
    );
    q.ok(
        "query-sev-attestation-report",
        json!({"mnonce": b64(&[7u8; 16])}),
    );
    q.ok("quit", Value::Null);
    q.event("SHUTDOWN");
    let st = vm.wait();
    assert_exit(st, 0, &vm.stderr_text());
}

fn run_sevm(args: &[String]) -> (std::process::ExitStatus, String) {
    let out = sevm_command(args).output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

both_backends!(
    bad_owner_inputs => bad_owner_files_and_foreign_sessions_are_refused,
    bad_owner_files_and_foreign_sessions_are_refused_hardware_under_launcher,
    emulated_without_kvm
);

fn bad_owner_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let platform = fresh_platform(d, "a");
    let fw = demo_image(d);

    // The session for another platform: B has a different PDH.
    let other = fresh_platform(d, "b");
    rotate_pdh(&other);
    let (pdh_b, chain_b) = export_pdh(&other);
    let owner_b = owner(d, &pdh_b, &chain_b, &amd_chain(&other), 0x1);
    if sevm_testutil::kvm("bad_owner_files_and_foreign_sessions_are_refused") {
        let (st, err) = run_sevm(&sev_args(
            &fw,
            16,
            &sev_object(&platform, 1, Some(&owner_b), ""),
            None,
        ));
        assert_exit(st, 1, &err);
        assert!(
            err.contains("sevm: error: SEV: LAUNCH_START failed: BAD_MEASUREMENT (0x0B)"),
            "{err}"
        );
        // The right platform, but a policy the session was not made for.
        let (pdh, chain) = export_pdh(&platform);
        let owner_a = owner(d, &pdh, &chain, &amd_chain(&platform), 0x1);
        let (st, err) = run_sevm(&sev_args(
            &fw,
            16,
            &sev_object(&platform, 3, Some(&owner_a), ""),
            None,
        ));
        assert_exit(st, 1, &err);
        assert!(
            err.contains("LAUNCH_START failed: BAD_MEASUREMENT (0x0B)"),
            "{err}"
        );
        // Key sharing with a guest this platform does not have.
        let obj = sev_object(&platform, 1, None, ",handle=7");
        let (st, err) = run_sevm(&sev_args(&fw, 16, &obj, None));
        assert_exit(st, 1, &err);
        assert!(
            err.contains("LAUNCH_START failed: INVALID_GUEST (0x10)"),
            "{err}"
        );
    }

    let godh = owner_b.godh_file.display().to_string();
    let session = owner_b.session_file.display().to_string();
    let write = |name: &str, text: &str| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let truncated_godh = write("t_godh.b64", &b64(&[1u8; 100]));
    let truncated_session = write("t_session.b64", &b64(&[1u8; 64]));
    let not_base64 = write("x.b64", "this is not base64!");
    let missing = d.join("missing.b64").display().to_string();
    let p = platform.display().to_string();
    let cbitpos_error = format!(
        "cbitpos check failed, host '{}' requested '51'",
        expected_cbitpos()
    );
    let cases: Vec<(String, &str)> = vec![
        (
            format!("dh-cert-file={truncated_godh},session-file={session}"),
            "decodes to 100 bytes, but an SEV certificate is 2084 bytes",
        ),
        (
            format!("dh-cert-file={godh},session-file={truncated_session}"),
            "decodes to 64 bytes, but a launch session buffer is 128 bytes",
        ),
        (
            format!("dh-cert-file={not_base64},session-file={session}"),
            "not valid base64",
        ),
        (
            format!("dh-cert-file={missing},session-file={session}"),
            "missing.b64",
        ),
        (format!("dh-cert-file={godh}"), "must be given together"),
        ("cbitpos=51".into(), &cbitpos_error),
    ];
    for (extra, fragment) in cases {
        let obj = format!("sev-guest,id=sev0,policy=0x1,sev-device=emulated:{p},{extra}");
        let (st, err) = run_sevm(&sev_args(&fw, 16, &obj, None));
        assert_exit(st, 1, &err);
        assert!(err.contains(fragment), "{extra}: {err}");
        assert_eq!(err.matches("sevm:").count(), err.lines().count(), "{err}");
    }
    // Policy ES: refused, before anything runs, by a platform INITed
    // without SEV-ES (SEV-ES guests themselves run on the emulated platform:
    // tests/sev_es.rs).
    let fw_platform = sev_psp::Platform::open(&platform, sev_psp::rng::os_rng()).unwrap();
    // The VMs above INITed it (with SEV-ES, as Linux does) and it stays
    // INIT after they exit.
    if fw_platform.platform_status().unwrap().state != sev_proto::abi::PlatformState::Uninit {
        fw_platform.shutdown().unwrap();
    }
    fw_platform.init(false).unwrap();
    let (st, err) = run_sevm(&sev_args(
        &fw,
        16,
        &sev_object(&platform, 0x5, None, ""),
        None,
    ));
    assert_exit(st, 1, &err);
    assert!(err.contains("requires SEV-ES"), "{err}");
    assert!(err.contains("does not support SEV-ES"), "{err}");
    // A platform directory that does not exist: say how to make one.
    let obj = format!(
        "sev-guest,id=sev0,sev-device=emulated:{}",
        d.join("nope").display()
    );
    let (st, err) = run_sevm(&sev_args(&fw, 16, &obj, None));
    // Under the launcher it is the launcher that opens the platform and
    // says so, with its own exit code for "the launcher failed".
    assert_exit(st, if hardware() { 125 } else { 1 }, &err);
    assert!(err.contains("create one first"), "{err}");
}
