//! Parsing every command with right, wrong, missing and extra arguments;
//! envelope errors; garbage.

use super::*;
use serde_json::json;

fn ok(v: Value) -> QmpCommand {
    match parse_request(v.to_string().as_bytes()) {
        Ok(r) => r.command,
        Err(e) => panic!("{v}: {e:?}"),
    }
}

fn fails(v: Value) -> QmpError {
    match parse_request(v.to_string().as_bytes()) {
        Ok(r) => panic!("{v} accepted: {r:?}"),
        Err(e) => e.error,
    }
}

fn generic(desc: &str) -> QmpError {
    QmpError::generic(desc)
}

fn b64(text: &str) -> Base64Bytes {
    Base64Bytes::decode(text).unwrap()
}

#[test]
fn commands_without_arguments() {
    let table = [
        ("query-version", QmpCommand::QueryVersion),
        ("query-commands", QmpCommand::QueryCommands),
        ("query-name", QmpCommand::QueryName),
        ("query-status", QmpCommand::QueryStatus),
        ("query-kvm", QmpCommand::QueryKvm),
        ("query-cpus-fast", QmpCommand::QueryCpusFast),
        ("stop", QmpCommand::Stop),
        ("cont", QmpCommand::Cont),
        ("system_reset", QmpCommand::SystemReset),
        ("system_powerdown", QmpCommand::SystemPowerdown),
        ("quit", QmpCommand::Quit),
        ("query-sev", QmpCommand::QuerySev),
        (
            "query-sev-launch-measure",
            QmpCommand::QuerySevLaunchMeasure,
        ),
        ("query-sev-capabilities", QmpCommand::QuerySevCapabilities),
        (
            "x-sevm-query-snp-launch-digest",
            QmpCommand::XSevmQuerySnpLaunchDigest,
        ),
        ("migrate_cancel", QmpCommand::MigrateCancel),
        ("query-migrate", QmpCommand::QueryMigrate),
        (
            "query-migrate-parameters",
            QmpCommand::QueryMigrateParameters,
        ),
    ];
    for (name, cmd) in table {
        assert_eq!(ok(json!({"execute": name})), cmd, "{name}");
        assert_eq!(ok(json!({"execute": name, "arguments": {}})), cmd, "{name}");
        assert_eq!(cmd.name(), name);
        assert_eq!(
            fails(json!({"execute": name, "arguments": {"foo": 1}})),
            generic("Parameter 'foo' is unexpected"),
            "{name}"
        );
    }
}

#[test]
fn every_command_name_parses_and_round_trips() {
    // Minimal valid arguments for each command.
    let args = |name: &str| match name {
        "sev-inject-launch-secret" => json!({"packet-header": "aA==", "secret": "cw=="}),
        "query-sev-attestation-report" => json!({"mnonce": "bg=="}),
        "human-monitor-command" => json!({"command-line": "info status"}),
        "pmemsave" => json!({"val": 0, "size": 1, "filename": "f"}),
        "memsave" => json!({"val": 0, "size": 1, "filename": "f"}),
        "sev-dbg-decrypt" => json!({"gpa": 0, "size": 1}),
        "sev-dbg-encrypt" => json!({"gpa": 0, "data": "AA=="}),
        "migrate" | "migrate-incoming" => json!({"uri": "unix:/x"}),
        _ => json!({}),
    };
    for name in COMMAND_NAMES {
        let cmd = ok(json!({"execute": name, "arguments": args(name)}));
        assert_eq!(cmd.name(), *name);
    }
}

#[test]
fn qmp_capabilities() {
    assert_eq!(
        ok(json!({"execute": "qmp_capabilities"})),
        QmpCommand::QmpCapabilities { enable: vec![] }
    );
    assert_eq!(
        ok(json!({"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}})),
        QmpCommand::QmpCapabilities {
            enable: vec![QmpCapability::Oob]
        }
    );
    assert_eq!(
        fails(json!({"execute": "qmp_capabilities", "arguments": {"enable": "oob"}})),
        generic("Invalid parameter type for 'enable', expected: array")
    );
    assert_eq!(
        fails(json!({"execute": "qmp_capabilities", "arguments": {"enable": [1]}})),
        generic("Invalid parameter type for 'enable[0]', expected: string")
    );
    assert_eq!(
        fails(json!({"execute": "qmp_capabilities", "arguments": {"enable": ["foo"]}})),
        generic("Parameter 'null' does not accept value 'foo'")
    );
    assert_eq!(
        fails(json!({"execute": "qmp_capabilities", "arguments": {"x": 1}})),
        generic("Parameter 'x' is unexpected")
    );
}

#[test]
fn sev_inject_launch_secret() {
    assert_eq!(
        ok(json!({"execute": "sev-inject-launch-secret",
                  "arguments": {"packet-header": "aGRy", "secret": "c2Vj"}})),
        QmpCommand::SevInjectLaunchSecret {
            packet_header: b64("aGRy"),
            secret: b64("c2Vj"),
            gpa: None
        }
    );
    assert_eq!(
        ok(json!({"execute": "sev-inject-launch-secret",
                  "arguments": {"packet-header": "aA==", "secret": "cw==", "gpa": 8392704}})),
        QmpCommand::SevInjectLaunchSecret {
            packet_header: b64("aA=="),
            secret: b64("cw=="),
            gpa: Some(0x80_1000)
        }
    );
    // uint64: full range, and negative values wrap as in QEMU.
    assert!(matches!(
        ok(json!({"execute": "sev-inject-launch-secret",
                  "arguments": {"packet-header": "aA==", "secret": "cw==", "gpa": u64::MAX}})),
        QmpCommand::SevInjectLaunchSecret {
            gpa: Some(u64::MAX),
            ..
        }
    ));
    assert!(matches!(
        ok(json!({"execute": "sev-inject-launch-secret",
                  "arguments": {"packet-header": "aA==", "secret": "cw==", "gpa": -1}})),
        QmpCommand::SevInjectLaunchSecret {
            gpa: Some(u64::MAX),
            ..
        }
    ));
    for bad_gpa in [
        json!("0x1000"),
        json!(1.5),
        json!(null),
        json!(true),
        json!([1]),
    ] {
        assert_eq!(
            fails(json!({"execute": "sev-inject-launch-secret",
                         "arguments": {"packet-header": "aA==", "secret": "cw==", "gpa": bad_gpa}})),
            generic("Parameter 'gpa' expects uint64")
        );
    }
    assert_eq!(
        fails(json!({"execute": "sev-inject-launch-secret", "arguments": {"secret": "cw=="}})),
        generic("Parameter 'packet-header' is missing")
    );
    assert_eq!(
        fails(json!({"execute": "sev-inject-launch-secret"})),
        generic("Parameter 'packet-header' is missing")
    );
    assert_eq!(
        fails(
            json!({"execute": "sev-inject-launch-secret", "arguments": {"packet-header": "aA=="}})
        ),
        generic("Parameter 'secret' is missing")
    );
    assert_eq!(
        fails(json!({"execute": "sev-inject-launch-secret",
                     "arguments": {"packet-header": 5, "secret": "cw=="}})),
        generic("Invalid parameter type for 'packet-header', expected: string")
    );
    assert_eq!(
        fails(json!({"execute": "sev-inject-launch-secret",
                     "arguments": {"packet-header": "aA==", "secret": "cw==", "foo": 1}})),
        generic("Parameter 'foo' is unexpected")
    );
}

#[test]
fn query_sev_attestation_report() {
    assert_eq!(
        ok(json!({"execute": "query-sev-attestation-report",
                  "arguments": {"mnonce": "AAAAAAAAAAAAAAAAAAAAAA=="}})),
        QmpCommand::QuerySevAttestationReport {
            mnonce: b64("AAAAAAAAAAAAAAAAAAAAAA==")
        }
    );
    assert_eq!(
        fails(json!({"execute": "query-sev-attestation-report"})),
        generic("Parameter 'mnonce' is missing")
    );
    assert_eq!(
        fails(json!({"execute": "query-sev-attestation-report", "arguments": {"mnonce": 16}})),
        generic("Invalid parameter type for 'mnonce', expected: string")
    );
    assert_eq!(
        fails(json!({"execute": "query-sev-attestation-report",
                     "arguments": {"mnonce": "eA==", "nonce": "y"}})),
        generic("Parameter 'nonce' is unexpected")
    );
}

#[test]
fn human_monitor_command() {
    assert_eq!(
        ok(json!({"execute": "human-monitor-command",
                  "arguments": {"command-line": "info registers", "cpu-index": 1}})),
        QmpCommand::HumanMonitorCommand {
            command_line: "info registers".into(),
            cpu_index: Some(1)
        }
    );
    assert_eq!(
        fails(json!({"execute": "human-monitor-command"})),
        generic("Parameter 'command-line' is missing")
    );
    assert_eq!(
        fails(json!({"execute": "human-monitor-command",
                     "arguments": {"command-line": "x", "cpu-index": "0"}})),
        generic("Invalid parameter type for 'cpu-index', expected: integer")
    );
}

#[test]
fn pmemsave_and_memsave() {
    assert_eq!(
        ok(json!({"execute": "pmemsave",
                  "arguments": {"val": 4096, "size": 512, "filename": "/tmp/m"}})),
        QmpCommand::Pmemsave {
            val: 4096,
            size: 512,
            filename: "/tmp/m".into()
        }
    );
    assert_eq!(
        ok(json!({"execute": "memsave",
                  "arguments": {"val": 0, "size": 16, "filename": "f", "cpu-index": 0}})),
        QmpCommand::Memsave {
            val: 0,
            size: 16,
            filename: "f".into(),
            cpu_index: Some(0)
        }
    );
    assert_eq!(
        fails(json!({"execute": "pmemsave", "arguments": {"size": 1, "filename": "f"}})),
        generic("Parameter 'val' is missing")
    );
    assert_eq!(
        fails(json!({"execute": "pmemsave", "arguments": {"val": 0, "filename": "f"}})),
        generic("Parameter 'size' is missing")
    );
    assert_eq!(
        fails(json!({"execute": "pmemsave", "arguments": {"val": 0, "size": 1}})),
        generic("Parameter 'filename' is missing")
    );
    // 'int' rejects strings, floats and values beyond i64.
    for bad in [json!("0"), json!(0.5), json!(u64::MAX)] {
        assert_eq!(
            fails(json!({"execute": "pmemsave",
                         "arguments": {"val": bad, "size": 1, "filename": "f"}})),
            generic("Invalid parameter type for 'val', expected: integer")
        );
    }
    assert_eq!(
        fails(json!({"execute": "memsave",
                     "arguments": {"val": 0, "size": 1, "filename": "f", "cpu": 0}})),
        generic("Parameter 'cpu' is unexpected")
    );
}

#[test]
fn migration_commands() {
    assert_eq!(
        ok(json!({"execute": "migrate", "arguments": {"uri": "tcp:1.2.3.4:4444"}})),
        QmpCommand::Migrate {
            uri: "tcp:1.2.3.4:4444".into(),
            detach: None,
            resume: None
        }
    );
    assert_eq!(
        ok(json!({"execute": "migrate",
                  "arguments": {"uri": "file:/x", "detach": true, "resume": false}})),
        QmpCommand::Migrate {
            uri: "file:/x".into(),
            detach: Some(true),
            resume: Some(false)
        }
    );
    assert_eq!(
        fails(json!({"execute": "migrate"})),
        generic("Need either 'uri' or 'channels' argument")
    );
    assert_eq!(
        fails(json!({"execute": "migrate", "arguments": {"channels": []}})),
        generic("Parameter 'channels' is not supported by sevm; use 'uri'")
    );
    assert_eq!(
        fails(json!({"execute": "migrate", "arguments": {"uri": "x", "detach": "yes"}})),
        generic("Invalid parameter type for 'detach', expected: boolean")
    );
    assert_eq!(
        fails(json!({"execute": "migrate", "arguments": {"uri": "x", "blk": true}})),
        generic("Parameter 'blk' is unexpected")
    );
    assert_eq!(
        ok(json!({"execute": "migrate-incoming",
                  "arguments": {"uri": "unix:/s", "exit-on-error": false}})),
        QmpCommand::MigrateIncoming {
            uri: "unix:/s".into(),
            exit_on_error: Some(false)
        }
    );
    assert_eq!(
        fails(json!({"execute": "migrate-incoming", "arguments": {"uri": 1}})),
        generic("Invalid parameter type for 'uri', expected: string")
    );

    assert_eq!(
        ok(json!({"execute": "migrate-set-parameters",
                  "arguments": {"max-bandwidth": 1048576, "downtime-limit": 300}})),
        QmpCommand::MigrateSetParameters(MigrateSetParameters {
            max_bandwidth: Some(1 << 20),
            downtime_limit: Some(300),
            ..Default::default()
        })
    );
    assert_eq!(
        ok(json!({"execute": "migrate-set-parameters",
                  "arguments": {"sev-pdh": "UERI", "sev-plat-cert": "Q0hBSU4=", "sev-amd-cert": ""}})),
        QmpCommand::MigrateSetParameters(MigrateSetParameters {
            sev_pdh: Some(b64("UERI")),
            sev_plat_cert: Some(b64("Q0hBSU4=")),
            sev_amd_cert: Some(b64("")),
            ..Default::default()
        })
    );
    assert_eq!(
        ok(json!({"execute": "migrate-set-parameters"})),
        QmpCommand::MigrateSetParameters(MigrateSetParameters::default())
    );
    assert_eq!(
        fails(json!({"execute": "migrate-set-parameters",
                     "arguments": {"max-bandwidth": "fast"}})),
        generic("Parameter 'max-bandwidth' expects uint64")
    );
    assert_eq!(
        fails(json!({"execute": "migrate-set-parameters",
                     "arguments": {"multifd-channels": 4}})),
        generic("Parameter 'multifd-channels' is not supported by sevm")
    );
    assert_eq!(
        fails(json!({"execute": "migrate-set-parameters", "arguments": {"bogus": 4}})),
        generic("Parameter 'bogus' is unexpected")
    );
}

#[test]
fn envelope_errors_as_qemu() {
    assert_eq!(
        fails(json!({"arguments": {}})),
        generic("QMP input lacks member 'execute'")
    );
    assert_eq!(
        fails(json!({})),
        generic("QMP input lacks member 'execute'")
    );
    assert_eq!(
        fails(json!({"execute": 1})),
        generic("QMP input member 'execute' must be a string")
    );
    assert_eq!(
        fails(json!({"execute": "stop", "arguments": []})),
        generic("QMP input member 'arguments' must be an object")
    );
    assert_eq!(
        fails(json!({"execute": "stop", "arguments": null})),
        generic("QMP input member 'arguments' must be an object")
    );
    assert_eq!(
        fails(json!({"execute": "stop", "extra": 1})),
        generic("QMP input member 'extra' is unexpected")
    );
    assert_eq!(
        fails(json!({"execute": "frobnicate"})),
        QmpError::command_not_found("The command frobnicate has not been found")
    );
    for v in [json!([1]), json!(42), json!("execute"), json!(null)] {
        assert_eq!(fails(v), generic("QMP input must be a JSON object"));
    }
}

#[test]
fn id_is_echoed_in_errors_when_readable() {
    let e = parse_request(br#"{"execute": "nope", "id": {"tag": [1]}}"#).unwrap_err();
    assert_eq!(e.id, Some(json!({"tag": [1]})));
    assert_eq!(e.error.class, ErrorClass::CommandNotFound);
    let e = parse_request(br#"{"id": 7}"#).unwrap_err();
    assert_eq!(e.id, Some(json!(7)));
    let e = parse_request(br#"{"execute": "pmemsave", "id": "x"}"#).unwrap_err();
    assert_eq!(e.id, Some(json!("x")));
    let r = parse_request(br#"{"execute": "stop", "id": "s1"}"#).unwrap();
    assert_eq!(r.id, Some(json!("s1")));
    assert!(!r.oob);
    // Not an object: no id.
    assert_eq!(parse_request(b"[1]").unwrap_err().id, None);
}

#[test]
fn negotiation_stage() {
    let neg = |s: &str| parse_request_in(s.as_bytes(), Stage::Negotiation);
    assert_eq!(
        neg(r#"{"execute": "qmp_capabilities"}"#).unwrap().command,
        QmpCommand::QmpCapabilities { enable: vec![] }
    );
    let expecting =
        QmpError::command_not_found("Expecting capabilities negotiation with 'qmp_capabilities'");
    // Known, unknown, and known-with-bad-arguments commands all get the
    // negotiation error (QEMU never parses their arguments).
    for s in [
        r#"{"execute": "query-status"}"#,
        r#"{"execute": "frobnicate", "id": 1}"#,
        r#"{"execute": "pmemsave", "arguments": {"bogus": 1}}"#,
    ] {
        assert_eq!(neg(s).unwrap_err().error, expecting, "{s}");
    }
    assert_eq!(
        neg(r#"{"execute": "frobnicate", "id": 1}"#).unwrap_err().id,
        Some(json!(1))
    );
    // Envelope errors are not rewritten.
    assert_eq!(
        neg(r#"{"arguments": {}}"#).unwrap_err().error,
        generic("QMP input lacks member 'execute'")
    );
    // qmp_capabilities' own argument errors are reported.
    assert_eq!(
        neg(r#"{"execute": "qmp_capabilities", "arguments": {"enable": ["x"]}}"#)
            .unwrap_err()
            .error,
        generic("Parameter 'null' does not accept value 'x'")
    );
    // exec-oob is not recognised before negotiation.
    assert_eq!(
        neg(r#"{"exec-oob": "qmp_capabilities"}"#)
            .unwrap_err()
            .error,
        generic("QMP input member 'exec-oob' is unexpected")
    );
}

#[test]
fn exec_oob() {
    let with_oob = |s: &str| parse_request_in(s.as_bytes(), Stage::Command { oob: true });
    // Without the capability, exec-oob is an unexpected member.
    assert_eq!(
        fails(json!({"exec-oob": "query-status"})),
        generic("QMP input member 'exec-oob' is unexpected")
    );
    // With it: no sevm command supports OOB.
    assert_eq!(
        with_oob(r#"{"exec-oob": "query-status", "id": 3}"#).unwrap_err(),
        RequestError {
            id: Some(json!(3)),
            error: generic("The command query-status does not support OOB")
        }
    );
    assert_eq!(
        with_oob(r#"{"exec-oob": "nope"}"#).unwrap_err().error,
        QmpError::command_not_found("The command nope has not been found")
    );
    assert_eq!(
        with_oob(r#"{"exec-oob": 1}"#).unwrap_err().error,
        generic("QMP input member 'exec-oob' must be a string")
    );
    let clash = with_oob(r#"{"execute": "stop", "exec-oob": "stop"}"#)
        .unwrap_err()
        .error;
    assert_eq!(
        clash,
        generic("QMP input member 'execute' clashes with 'exec-oob'")
    );
    // execute still works with OOB enabled.
    assert_eq!(
        with_oob(r#"{"execute": "stop"}"#).unwrap().command,
        QmpCommand::Stop
    );
}

#[test]
fn json_syntax_errors() {
    for bad in [
        &b"{"[..],
        b"{\"execute\": }",
        b"{\"execute\": \"stop\",}",
        b"foo",
        b"{'execute': 'stop'}",
        b"\xff\xfe",
        b"{\"execute\": \"\xff\"}",
        b"",
    ] {
        let e = parse_request(bad).unwrap_err();
        assert_eq!(e.id, None);
        assert_eq!(e.error.class, ErrorClass::GenericError);
        assert!(
            e.error.desc.starts_with("JSON parse error, "),
            "{:?}: {}",
            String::from_utf8_lossy(bad),
            e.error.desc
        );
    }
}

/// Deterministic pseudo-random garbage never panics the parser or framer.
#[test]
fn garbage_never_panics() {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let alphabet = b"{}[]\":,\\ aex0123456789-+.tfnul\xff\x00\n";
    for _ in 0..2000 {
        let len = (next() % 64) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                let i = (next() % alphabet.len() as u64) as usize;
                alphabet.get(i).copied().unwrap_or(b' ')
            })
            .collect();
        let _ = parse_request(&bytes);
        let _ = parse_request_in(&bytes, Stage::Negotiation);
        let mut framer = crate::framing::JsonFramer::new();
        for frame in framer.push(&bytes) {
            if let crate::framing::Frame::Message(m) = frame {
                let _ = parse_request_in(&m, Stage::Command { oob: true });
            }
        }
        let _ = framer.finish();
    }
    // Structured garbage: valid JSON of random shapes as arguments.
    for args in [
        json!({"packet-header": {"a": [1, 2]}, "secret": [], "gpa": {}}),
        json!({"": null}),
        json!({"val": -9223372036854775808i64, "size": 9223372036854775807i64, "filename": ""}),
    ] {
        for name in COMMAND_NAMES {
            let _ = parse_request(
                json!({"execute": name, "arguments": args})
                    .to_string()
                    .as_bytes(),
            );
        }
    }
}

/// base64 arguments arrive decoded; bad text is a GenericError naming the
/// argument, with the messages sevm gave when its handlers decoded them.
#[test]
fn base64_arguments_are_decoded_where_they_are_parsed() {
    assert_eq!(
        ok(json!({"execute": "sev-dbg-encrypt",
                  "arguments": {"gpa": 0, "data": " AAEC\r\n/w==\n"}})),
        QmpCommand::SevDbgEncrypt {
            gpa: 0,
            data: Some(Base64Bytes::new(vec![0, 1, 2, 0xff])),
            filename: None
        }
    );
    for (command, args, desc) in [
        (
            "sev-inject-launch-secret",
            json!({"packet-header": "!!notbase64", "secret": "cw=="}),
            "SEV: packet-header is not valid base64: Invalid symbol 33, offset 0.",
        ),
        (
            "sev-inject-launch-secret",
            json!({"packet-header": "aA==", "secret": "s"}),
            "SEV: secret is not valid base64: Invalid input length: 1",
        ),
        (
            "query-sev-attestation-report",
            json!({"mnonce": "a*"}),
            "SEV: mnonce is not valid base64: Invalid symbol 42, offset 1.",
        ),
        (
            "sev-dbg-encrypt",
            json!({"gpa": 0, "data": "!!"}),
            "SEV: data is not valid base64: Invalid symbol 33, offset 0.",
        ),
        (
            "migrate-set-parameters",
            json!({"sev-plat-cert": "!!"}),
            "migration parameter sev-plat-cert: not valid base64: Invalid symbol 33, offset 0.",
        ),
        (
            "migrate-set-parameters",
            json!({"sev-pdh": "UERI", "sev-amd-cert": "QQ"}),
            "migration parameter sev-amd-cert: not valid base64: Invalid padding",
        ),
    ] {
        assert_eq!(
            fails(json!({"execute": command, "arguments": args})),
            generic(desc),
            "{command} {args}"
        );
    }
    // The type is checked before the text.
    assert_eq!(
        fails(json!({"execute": "sev-dbg-encrypt", "arguments": {"gpa": 0, "data": 1}})),
        generic("Invalid parameter type for 'data', expected: string")
    );
}
