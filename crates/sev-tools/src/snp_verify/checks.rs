//! The owner's checks of an authentic report, in the manner of
//! go-sev-guest's `check` tool.

use sev_proto::abi::policy::ApiVersion;
use sev_proto::snp::report::AttestationReport;
use sev_proto::snp::{GuestPolicy, Product, TcbVersion};

/// What the owner requires of an authentic report. `None`/empty/false: not
/// checked.
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    /// MEASUREMENT.
    pub measurement: Option<[u8; 48]>,
    /// HOST_DATA.
    pub host_data: Option<[u8; 32]>,
    /// REPORT_DATA.
    pub report_data: Option<[u8; 64]>,
    /// FAMILY_ID.
    pub family_id: Option<[u8; 16]>,
    /// IMAGE_ID.
    pub image_id: Option<[u8; 16]>,
    /// ID_KEY_DIGEST must be one of these.
    pub id_key_digests: Vec<[u8; 48]>,
    /// AUTHOR_KEY_DIGEST must be one of these.
    pub author_key_digests: Vec<[u8; 48]>,
    /// VMPL.
    pub vmpl: Option<u32>,
    /// Minimum GUEST_SVN.
    pub min_guest_svn: Option<u32>,
    /// CURRENT, COMMITTED and REPORTED TCB at least this (raw, in the
    /// product's layout), component by component.
    pub min_tcb: Option<u64>,
    /// LAUNCH_TCB at least this.
    pub min_launch_tcb: Option<u64>,
    /// POLICY exactly.
    pub policy: Option<u64>,
    /// The policy's minimum ABI version at least this.
    pub policy_min_abi: Option<ApiVersion>,
    /// The policy must not allow debugging.
    pub policy_no_debug: bool,
    /// The policy must not allow SMT.
    pub policy_no_smt: bool,
    /// The policy must not allow a migration agent.
    pub policy_no_migrate_ma: bool,
    /// The policy must require a single socket.
    pub policy_single_socket: bool,
}

/// One owner check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Its name (the option's, without `--`).
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What was required.
    pub expected: String,
    /// What the report has.
    pub actual: String,
}

pub(super) fn hex_of(b: &[u8]) -> String {
    hex::encode(b)
}

fn eq_check(name: &'static str, expected: Option<&[u8]>, actual: &[u8], out: &mut Vec<Check>) {
    if let Some(e) = expected {
        out.push(Check {
            name,
            ok: e == actual,
            expected: hex_of(e),
            actual: hex_of(actual),
        });
    }
}

fn one_of_check(name: &'static str, allowed: &[[u8; 48]], actual: &[u8; 48], out: &mut Vec<Check>) {
    if !allowed.is_empty() {
        out.push(Check {
            name,
            ok: allowed.contains(actual),
            expected: allowed
                .iter()
                .map(|a| hex_of(a))
                .collect::<Vec<_>>()
                .join(" or "),
            actual: hex_of(actual),
        });
    }
}

pub(super) fn tcb_text(raw: u64, product: Product) -> String {
    TcbVersion::decode(raw, product)
        .map_or_else(|e| e.to_string(), |t| format!("{t} (0x{raw:016x})"))
}

fn tcb_check(
    name: &'static str,
    min: Option<u64>,
    values: &[(&str, u64)],
    product: Product,
    out: &mut Vec<Check>,
) {
    let Some(min) = min else { return };
    let Ok(min_tcb) = TcbVersion::decode(min, product) else {
        out.push(Check {
            name,
            ok: false,
            expected: tcb_text(min, product),
            actual: "not comparable".into(),
        });
        return;
    };
    let failing: Vec<String> = values
        .iter()
        .filter(|(_, raw)| TcbVersion::decode(*raw, product).map_or(true, |t| !min_tcb.le(&t)))
        .map(|(what, raw)| format!("{what} {}", tcb_text(*raw, product)))
        .collect();
    out.push(Check {
        name,
        ok: failing.is_empty(),
        expected: format!("at least {}", tcb_text(min, product)),
        actual: if failing.is_empty() {
            values
                .iter()
                .map(|(what, raw)| format!("{what} {}", tcb_text(*raw, product)))
                .collect::<Vec<_>>()
                .join("; ")
        } else {
            failing.join("; ")
        },
    });
}

fn flag_check(
    name: &'static str,
    wanted: bool,
    ok: bool,
    expected: &str,
    out: &mut Vec<Check>,
    policy: GuestPolicy,
) {
    if wanted {
        out.push(Check {
            name,
            ok,
            expected: expected.to_owned(),
            actual: format!("policy 0x{:x}", policy.bits()),
        });
    }
}

/// The owner's checks of an authentic report.
pub fn checks(report: &AttestationReport, product: Product, e: &Expectations) -> Vec<Check> {
    let mut out = Vec::new();
    eq_check(
        "measurement",
        e.measurement.as_ref().map(|m| &m[..]),
        &report.measurement,
        &mut out,
    );
    eq_check(
        "host-data",
        e.host_data.as_ref().map(|m| &m[..]),
        &report.host_data,
        &mut out,
    );
    eq_check(
        "report-data",
        e.report_data.as_ref().map(|m| &m[..]),
        &report.report_data,
        &mut out,
    );
    eq_check(
        "family-id",
        e.family_id.as_ref().map(|m| &m[..]),
        &report.family_id,
        &mut out,
    );
    eq_check(
        "image-id",
        e.image_id.as_ref().map(|m| &m[..]),
        &report.image_id,
        &mut out,
    );
    one_of_check(
        "id-key-digest",
        &e.id_key_digests,
        &report.id_key_digest,
        &mut out,
    );
    one_of_check(
        "author-key-digest",
        &e.author_key_digests,
        &report.author_key_digest,
        &mut out,
    );
    if let Some(vmpl) = e.vmpl {
        out.push(Check {
            name: "vmpl",
            ok: report.vmpl == vmpl,
            expected: vmpl.to_string(),
            actual: report.vmpl.to_string(),
        });
    }
    if let Some(min) = e.min_guest_svn {
        out.push(Check {
            name: "min-guest-svn",
            ok: report.guest_svn >= min,
            expected: format!("at least {min}"),
            actual: report.guest_svn.to_string(),
        });
    }
    tcb_check(
        "min-tcb",
        e.min_tcb,
        &[
            ("CURRENT_TCB", report.current_tcb),
            ("COMMITTED_TCB", report.committed_tcb),
            ("REPORTED_TCB", report.reported_tcb),
        ],
        product,
        &mut out,
    );
    tcb_check(
        "min-launch-tcb",
        e.min_launch_tcb,
        &[("LAUNCH_TCB", report.launch_tcb)],
        product,
        &mut out,
    );
    let policy = report.policy;
    if let Some(p) = e.policy {
        out.push(Check {
            name: "policy",
            ok: policy.bits() == p,
            expected: format!("0x{p:x}"),
            actual: format!("0x{:x}", policy.bits()),
        });
    }
    if let Some(min) = e.policy_min_abi {
        out.push(Check {
            name: "policy-min-abi",
            ok: policy.abi_minimum() >= min,
            expected: format!("at least {min}"),
            actual: policy.abi_minimum().to_string(),
        });
    }
    flag_check(
        "policy-no-debug",
        e.policy_no_debug,
        !policy.has(GuestPolicy::DEBUG),
        "DEBUG (bit 19) clear",
        &mut out,
        policy,
    );
    flag_check(
        "policy-no-smt",
        e.policy_no_smt,
        !policy.has(GuestPolicy::SMT),
        "SMT (bit 16) clear",
        &mut out,
        policy,
    );
    flag_check(
        "policy-no-migrate-ma",
        e.policy_no_migrate_ma,
        !policy.has(GuestPolicy::MIGRATE_MA),
        "MIGRATE_MA (bit 18) clear",
        &mut out,
        policy,
    );
    flag_check(
        "policy-single-socket",
        e.policy_single_socket,
        policy.has(GuestPolicy::SINGLE_SOCKET),
        "SINGLE_SOCKET (bit 20) set",
        &mut out,
        policy,
    );
    out
}
