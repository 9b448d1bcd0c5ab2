use super::*;
use sev_proto::abi::policy::ApiVersion;

fn report(test: &str) -> Option<AttestationReport> {
    let path = sevm_testutil::fixture_path(test, "snp/virtee-sev/certs_data/report_milan.hex")?;
    Some(read_report(&path).unwrap())
}

fn failed(checks: &[Check]) -> Vec<&'static str> {
    checks.iter().filter(|c| !c.ok).map(|c| c.name).collect()
}

#[test]
fn tcb_minimums_compare_component_by_component() {
    let Some(r) = report("tcb_minimums_compare_component_by_component") else {
        return;
    };
    // The report: bootloader 3, TEE 0, SNP 8, microcode 0x73.
    let tcb = |bl: u8, snp: u8, ucode: u8| u64::from_le_bytes([bl, 0, 0, 0, 0, 0, snp, ucode]);
    let at_least = |min: u64| Expectations {
        min_tcb: Some(min),
        min_launch_tcb: Some(min),
        ..Expectations::default()
    };
    let c = checks(&r, Product::Milan, &at_least(tcb(3, 8, 0x73)));
    assert!(failed(&c).is_empty(), "{c:?}");
    // A higher microcode does not make up for a lower SNP SVN.
    let c = checks(&r, Product::Milan, &at_least(tcb(2, 9, 0x10)));
    assert_eq!(failed(&c), ["min-tcb", "min-launch-tcb"]);
    assert!(c[0].actual.contains("REPORTED_TCB"), "{c:?}");
    // A minimum that is not a Milan TCB fails and says why.
    let c = checks(&r, Product::Milan, &at_least(0xFF_0000));
    assert_eq!(failed(&c), ["min-tcb", "min-launch-tcb"]);
    assert!(c[0].expected.contains("reserves"), "{c:?}");
}

#[test]
fn digests_are_one_of_the_trusted_and_policy_bits_are_read() {
    let Some(r) = report("digests_are_one_of_the_trusted_and_policy_bits_are_read") else {
        return;
    };
    let e = Expectations {
        id_key_digests: vec![[1; 48], [0; 48]],
        author_key_digests: vec![[1; 48]],
        policy_min_abi: Some(ApiVersion::new(0, 0)),
        policy_no_debug: true,
        policy_no_smt: true,
        policy_single_socket: true,
        policy_no_migrate_ma: true,
        ..Expectations::default()
    };
    // Policy 0x30000: SMT allowed, no debug, no migration agent, any socket.
    let c = checks(&r, Product::Milan, &e);
    assert_eq!(
        failed(&c),
        ["author-key-digest", "policy-no-smt", "policy-single-socket"]
    );
    let higher = Expectations {
        policy_min_abi: Some(ApiVersion::new(1, 51)),
        ..Expectations::default()
    };
    assert_eq!(
        failed(&checks(&r, Product::Milan, &higher)),
        ["policy-min-abi"]
    );
}
