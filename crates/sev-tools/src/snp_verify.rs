//! SNP attestation report verification (`sev-owner snp verify`,
//! docs/guide/sev-owner.md#snp-verify): the report's VCEK chain to a pinned
//! AMD root (or a root trusted explicitly), the report's signature, then the
//! owner's checks in the manner of go-sev-guest's `check` tool.
//!
//! The outcome has three levels, each with its own exit status in the CLI:
//! the inputs may be unreadable ([`load`] fails: bad input), the report may
//! not be authentic ([`Verdict::NotAuthentic`]), or it may be authentic but
//! fail a check ([`Verdict::CheckFailed`]).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use sev_proto::abi::policy::ApiVersion;
use sev_proto::snp::cert::{self, Certificate};
use sev_proto::snp::chain::{Chain, Trust, VerifiedChain};
use sev_proto::snp::report::{AttestationReport, ReportSigner, REPORT_LEN};
use sev_proto::snp::{GuestPolicy, Product, TcbVersion};

use crate::io;

/// The largest report file read: a binary report, or its hex text with
/// line breaks.
const MAX_REPORT_FILE: u64 = 16 << 10;
/// The largest certificate or `cert_chain` file read.
const MAX_CERT_FILE: u64 = 256 << 10;

/// Where the report and its chain come from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The report: 1184 bytes, or their hex text.
    pub report: PathBuf,
    /// The VCEK (or VLEK): DER or PEM.
    pub vcek: PathBuf,
    /// The ASK (or ASVK) and usually the ARK, PEM, as KDS's `cert_chain`.
    pub chain: Option<PathBuf>,
    /// The ARK (DER or PEM), when not in `chain`.
    pub ark: Option<PathBuf>,
    /// Trust `ark` itself instead of AMD's pinned roots.
    pub trust_ark_explicitly: bool,
    /// The product the chain must be of.
    pub product: Option<Product>,
    /// Where to look for `ask_ark_<product>.pem` when `chain` is not given.
    pub roots_dirs: Vec<PathBuf>,
}

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

/// The report and the certificates, decoded.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The report.
    pub report: AttestationReport,
    /// The chain.
    pub chain: Chain,
    /// The explicitly trusted ARK, if any.
    pub trusted_ark: Option<Certificate>,
    /// The product asked for.
    pub product: Option<Product>,
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

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Authentic, and every check passed.
    Verified,
    /// The chain or the report's signature or binding failed.
    NotAuthentic(String),
    /// Authentic, but these checks failed.
    CheckFailed(Vec<&'static str>),
}

/// The result of [`verify`].
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The report.
    pub report: AttestationReport,
    /// The chain, when it verified (the report may still not match it).
    pub chain: Option<VerifiedChain>,
    /// CNs of the ARK, ASK and VCEK.
    pub names: [String; 3],
    /// Whether the root was AMD's pinned one or trusted explicitly.
    pub explicit_root: bool,
    /// The owner's checks (empty when the report is not authentic).
    pub checks: Vec<Check>,
    /// The verdict.
    pub verdict: Verdict,
}

fn read_cert_file(path: &Path) -> Result<Vec<Certificate>> {
    let bytes = io::read_file_max(path, MAX_CERT_FILE)?;
    let certs = if cert::is_pem(&bytes) {
        Certificate::from_pem_chain(&bytes)
    } else {
        Certificate::from_der(&bytes).map(|c| vec![c])
    };
    certs.with_context(|| format!("{} is not a DER or PEM X.509 certificate", path.display()))
}

fn read_one_cert(path: &Path) -> Result<Certificate> {
    let mut certs = read_cert_file(path)?;
    if certs.len() != 1 {
        bail!(
            "{} holds {} certificates, expected one",
            path.display(),
            certs.len()
        );
    }
    Ok(certs.remove(0))
}

/// Reads a report file: 1184 bytes, or hex text of them (whitespace
/// ignored, as virtee's `report_milan.hex`).
pub fn read_report(path: &Path) -> Result<AttestationReport> {
    let bytes = io::read_file_max(path, MAX_REPORT_FILE)?;
    let raw = if bytes.len() == REPORT_LEN {
        bytes
    } else {
        let text: Vec<u8> = bytes
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        match hex::decode(&text) {
            Ok(raw) if raw.len() == REPORT_LEN => raw,
            Ok(raw) => bail!(
                "{}: hex text of {} bytes, an SNP report is {REPORT_LEN}",
                path.display(),
                raw.len()
            ),
            Err(_) => bail!(
                "{} is {} bytes: neither an SNP report ({REPORT_LEN} bytes) nor its hex text",
                path.display(),
                bytes.len()
            ),
        }
    };
    AttestationReport::decode(&raw).with_context(|| format!("{}", path.display()))
}

/// The `ask_ark_<product>.pem` (or `ask_ark_<product>_vcek.pem`, as
/// go-sev-guest names Turin's) of the first roots directory that has one;
/// for a report signed by a VLEK, `ask_ark_<product>_vlek.pem` (the ASVK
/// and the ARK).
fn find_cert_chain(product: Product, vlek: bool, dirs: &[PathBuf]) -> Result<PathBuf> {
    let lower = product.name().to_ascii_lowercase();
    let names = if vlek {
        vec![format!("ask_ark_{lower}_vlek.pem")]
    } else {
        vec![
            format!("ask_ark_{lower}.pem"),
            format!("ask_ark_{lower}_vcek.pem"),
        ]
    };
    let (kind, path) = if vlek {
        ("VLEK ", "vlek")
    } else {
        ("", "vcek")
    };
    dirs.iter()
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!(
                "no {} in {}; pass KDS's {kind}cert_chain for {product} with --chain FILE \
                 (https://kdsintf.amd.com/{path}/v1/{product}/cert_chain) or put it in one of \
                 those directories",
                names[0],
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// Reads and decodes every input; any failure is bad input.
pub fn load(s: &Sources) -> Result<Loaded> {
    if s.trust_ark_explicitly && s.ark.is_none() {
        bail!("--trust-ark-explicitly needs the ARK to trust: --ark FILE");
    }
    let report = read_report(&s.report)?;
    let vek = read_one_cert(&s.vcek)?;
    let ark_file = s.ark.as_deref().map(read_one_cert).transpose()?;

    let product = s.product.or_else(|| report.product());
    let chain_path = match (&s.chain, &ark_file, product) {
        (Some(p), _, _) => Some(p.clone()),
        // An explicitly trusted ARK may come with the ASK in --chain only.
        (None, Some(_), _) if s.trust_ark_explicitly => None,
        (None, _, Some(product)) => Some(find_cert_chain(
            product,
            report.signing_key == ReportSigner::Vlek,
            &s.roots_dirs,
        )?),
        (None, _, None) => bail!(
            "the report (version {}) does not name its product: give --product or --chain",
            report.version
        ),
    };
    let mut certs = match &chain_path {
        Some(p) => read_cert_file(p)?,
        None => Vec::new(),
    };
    let describe = |p: &Option<PathBuf>| {
        p.as_ref()
            .map_or_else(|| "no --chain".to_owned(), |p| p.display().to_string())
    };
    let (ask, ark) = match (certs.len(), ark_file.clone()) {
        (2, Some(ark)) => {
            let chain_ark = certs.remove(1);
            if chain_ark.der() != ark.der() {
                bail!(
                    "{} ends in an ARK ({}) other than --ark ({})",
                    describe(&chain_path),
                    chain_ark.subject_cn(),
                    ark.subject_cn()
                );
            }
            (certs.remove(0), ark)
        }
        (2, None) => {
            let ark = certs.remove(1);
            (certs.remove(0), ark)
        }
        (1, Some(ark)) => (certs.remove(0), ark),
        (n, _) => bail!(
            "{} holds {n} certificates: expected the ASK then the ARK (KDS cert_chain), or the ASK \
             alone with --ark",
            describe(&chain_path)
        ),
    };
    Ok(Loaded {
        report,
        chain: Chain { ark, ask, vek },
        trusted_ark: if s.trust_ark_explicitly {
            ark_file
        } else {
            None
        },
        product: s.product,
    })
}

fn hex_of(b: &[u8]) -> String {
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

fn tcb_text(raw: u64, product: Product) -> String {
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

/// Verifies `loaded` at time `at`: chain, binding, signature, then the
/// checks.
pub fn verify(loaded: &Loaded, expect: &Expectations, at: SystemTime) -> Outcome {
    let c = &loaded.chain;
    let names = [c.ark.subject_cn(), c.ask.subject_cn(), c.vek.subject_cn()];
    let trust = match &loaded.trusted_ark {
        Some(ark) => Trust::Explicit(ark),
        None => Trust::AmdPinned,
    };
    let (chain, checks, verdict) = match c.verify(trust, loaded.product, at) {
        Err(e) => (
            None,
            Vec::new(),
            Verdict::NotAuthentic(crate::error::error_chain(&e)),
        ),
        Ok(v) => match v.verify_report(&loaded.report) {
            Err(e) => (
                Some(v),
                Vec::new(),
                Verdict::NotAuthentic(crate::error::error_chain(&e)),
            ),
            Ok(()) => {
                let checks = checks(&loaded.report, v.product, expect);
                let failed: Vec<&'static str> =
                    checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
                let verdict = if failed.is_empty() {
                    Verdict::Verified
                } else {
                    Verdict::CheckFailed(failed)
                };
                (Some(v), checks, verdict)
            }
        },
    };
    Outcome {
        report: loaded.report.clone(),
        chain,
        names,
        explicit_root: loaded.trusted_ark.is_some(),
        checks,
        verdict,
    }
}

impl Outcome {
    fn root_text(&self) -> String {
        match &self.chain {
            Some(v) if self.explicit_root => format!(
                "trusted explicitly, NOT AMD's pinned root, sha256 {}",
                v.ark_sha256
            ),
            Some(v) => format!("AMD's genuine {} root, sha256 {}", v.product, v.ark_sha256),
            None => "chain not verified".into(),
        }
    }

    /// The human-readable report of what was verified.
    pub fn render(&self) -> String {
        let r = &self.report;
        let mut s = format!(
            "SNP attestation report: version {}, signed by {}, policy 0x{:x}, VMPL {}, guest SVN {}\n",
            r.version,
            r.signing_key.name(),
            r.policy.bits(),
            r.vmpl,
            r.guest_svn
        );
        s += &format!("  measurement    {}\n", hex_of(&r.measurement));
        s += &format!("  host data      {}\n", hex_of(&r.host_data));
        s += &format!("  report data    {}\n", hex_of(&r.report_data));
        s += &format!("  chip id        {}\n", hex_of(&r.chip_id));
        s += &format!(
            "  firmware       {} (committed {})\n",
            r.current_version, r.committed_version
        );
        if let Some(v) = &self.chain {
            s += &format!("  reported TCB   {}\n", tcb_text(r.reported_tcb, v.product));
        }
        s += &format!(
            "chain: {} ({}) -> {} -> {}\n",
            self.names[0],
            self.root_text(),
            self.names[1],
            self.names[2]
        );
        for c in &self.checks {
            if c.ok {
                s += &format!("check {}: ok\n", c.name);
            } else {
                s += &format!(
                    "check {}: FAILED (expected {}, report has {})\n",
                    c.name, c.expected, c.actual
                );
            }
        }
        s += &match &self.verdict {
            Verdict::Verified => "verdict: verified\n".to_owned(),
            Verdict::NotAuthentic(why) => format!("verdict: NOT AUTHENTIC: {why}\n"),
            Verdict::CheckFailed(names) => {
                format!("verdict: authentic, CHECKS FAILED: {}\n", names.join(", "))
            }
        };
        s
    }

    /// The same as JSON.
    pub fn to_json(&self) -> Value {
        let r = &self.report;
        let (verdict, reason) = match &self.verdict {
            Verdict::Verified => ("verified", Value::Null),
            Verdict::NotAuthentic(why) => ("not-authentic", json!(why)),
            Verdict::CheckFailed(names) => ("check-failed", json!(names)),
        };
        json!({
            "verdict": verdict,
            "reason": reason,
            "report": {
                "version": r.version,
                "guest_svn": r.guest_svn,
                "policy": format!("0x{:x}", r.policy.bits()),
                "vmpl": r.vmpl,
                "signing_key": r.signing_key.name(),
                "measurement": hex_of(&r.measurement),
                "host_data": hex_of(&r.host_data),
                "report_data": hex_of(&r.report_data),
                "family_id": hex_of(&r.family_id),
                "image_id": hex_of(&r.image_id),
                "id_key_digest": hex_of(&r.id_key_digest),
                "author_key_digest": hex_of(&r.author_key_digest),
                "report_id": hex_of(&r.report_id),
                "chip_id": hex_of(&r.chip_id),
                "current_tcb": format!("0x{:016x}", r.current_tcb),
                "reported_tcb": format!("0x{:016x}", r.reported_tcb),
                "committed_tcb": format!("0x{:016x}", r.committed_tcb),
                "launch_tcb": format!("0x{:016x}", r.launch_tcb),
                "firmware": r.current_version.to_string(),
            },
            "chain": {
                "ark": self.names[0],
                "ask": self.names[1],
                "vek": self.names[2],
                "product": self.chain.as_ref().map(|v| v.product.name()),
                "root": match (&self.chain, self.explicit_root) {
                    (None, _) => "not-verified",
                    (Some(_), true) => "explicit",
                    (Some(_), false) => "amd-pinned",
                },
                "ark_sha256": self.chain.as_ref().map(|v| v.ark_sha256.clone()),
            },
            "checks": self.checks.iter().map(|c| json!({
                "name": c.name,
                "ok": c.ok,
                "expected": c.expected,
                "actual": c.actual,
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
