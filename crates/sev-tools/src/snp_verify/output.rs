//! The verdict as text and as JSON.

use serde_json::{json, Value};

use super::checks::{hex_of, tcb_text};
use super::{Outcome, Verdict};
use crate::kds::client::Origin;

/// Where an object came from, as JSON: `{"from": "file"|"cache"|"kds", "location": …}`.
fn origin(o: &Origin) -> Value {
    json!({ "from": o.kind(), "location": o.location() })
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
        let p = &self.provenance;
        s += &format!("  {} from {}\n", self.names[2], p.vek);
        s += &format!("  {} from {}\n", self.names[1], p.ask);
        s += &format!("  {} from {}\n", self.names[0], p.ark);
        s += &match (&p.crl, self.crl_checked) {
            (None, _) => "revocation: NOT CHECKED (--no-crl)\n".to_owned(),
            (Some(o), true) => format!("revocation: ok, not listed in the ARK's CRL from {o}\n"),
            (Some(o), false) => format!("revocation: not established (CRL from {o})\n"),
        };
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
            "sources": {
                "vek": origin(&self.provenance.vek),
                "ask": origin(&self.provenance.ask),
                "ark": origin(&self.provenance.ark),
                "crl": self.provenance.crl.as_ref().map(origin),
            },
            "crl": {
                "checked": self.crl_checked,
                "skipped": self.provenance.crl.is_none(),
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
