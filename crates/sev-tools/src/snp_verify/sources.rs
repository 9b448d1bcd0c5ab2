//! Where the VCEK, the `cert_chain` and the CRL of a report come from
//! (docs/guide/sev-owner.md#snp-verify-fetching): files named, the roots
//! directories, the KDS cache, a key distribution service.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{anyhow, bail, Context, Result};
use sev_proto::snp::cert::Certificate;
use sev_proto::snp::chain::{Chain, VekKind};
use sev_proto::snp::crl::Crl;
use sev_proto::snp::kds::KdsRequest;
use sev_proto::snp::report::{AttestationReport, ReportSigner};
use sev_proto::snp::Product;

use super::{certs_of, one_cert, read_cert_file, read_one_cert, read_report, Loaded};
use super::{Outcome, Provenance, Sources, Verdict};
use crate::io;
use crate::kds::client::{KdsSource, Obtained, Origin};

/// The default KDS cache directory: `$SEV_OWNER_KDS_CACHE`, else
/// `$XDG_CACHE_HOME/sevm/kds`, else `~/.cache/sevm/kds`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("SEV_OWNER_KDS_CACHE").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    match std::env::var_os("XDG_CACHE_HOME") {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d).join("sevm/kds")),
        _ => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/sevm/kds")),
    }
}

/// The `ask_ark_<product>.pem` (or `ask_ark_<product>_vcek.pem`, as
/// go-sev-guest names Turin's) of the first roots directory that has one;
/// for a report signed by a VLEK, `ask_ark_<product>_vlek.pem` (the ASVK
/// and the ARK).
fn find_cert_chain(product: Product, kind: VekKind, dirs: &[PathBuf]) -> Option<PathBuf> {
    let lower = product.name().to_ascii_lowercase();
    let names = match kind {
        VekKind::Vlek => vec![format!("ask_ark_{lower}_vlek.pem")],
        VekKind::Vcek => vec![
            format!("ask_ark_{lower}.pem"),
            format!("ask_ark_{lower}_vcek.pem"),
        ],
    };
    dirs.iter()
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

fn dirs_text(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Gets `request` from the KDS source, recording a fetched object.
fn obtain(
    kds: &KdsSource,
    request: KdsRequest,
    fetched: &mut Vec<(KdsRequest, Obtained)>,
) -> Result<Obtained, crate::kds::client::KdsError> {
    let got = kds.get(&request)?;
    if matches!(got.origin, Origin::Fetched(_)) {
        fetched.push((request, got.clone()));
    }
    Ok(got)
}

/// `origin` for an error about what came from it: a cached file that does
/// not decode is named with the way out.
fn described(origin: &Origin) -> String {
    match origin {
        Origin::Cache(path) => format!(
            "cache {} (remove the file to fetch it again)",
            path.display()
        ),
        other => other.to_string(),
    }
}

/// What to add to a "not cached" error: how to get the object.
const FETCH_HINT: &str = "fetch it with --fetch (and --kds-url URL for another service)";

/// The VCEK of `report`: the file named, else by CHIP_ID and REPORTED_TCB.
fn vek(
    s: &Sources,
    report: &AttestationReport,
    product: Option<Product>,
    fetched: &mut Vec<(KdsRequest, Obtained)>,
) -> Result<(Certificate, Origin)> {
    if let Some(path) = &s.vcek {
        return Ok((read_one_cert(path)?, Origin::File(path.clone())));
    }
    if report.signing_key == ReportSigner::Vlek {
        bail!("the report is signed by a VLEK, which the KDS does not serve by chip id: pass it with --vcek FILE");
    }
    let Some(product) = product else {
        bail!(
            "the report (version {}) does not name its product: give --product to fetch its VCEK, \
             or the VCEK with --vcek FILE",
            report.version
        );
    };
    if report.chip_id.iter().all(|b| *b == 0) {
        bail!("the report's CHIP_ID is masked (zero): its VCEK cannot be looked up; pass it with --vcek FILE");
    }
    let tcb = report
        .reported_tcb(product)
        .with_context(|| format!("the report's REPORTED_TCB is not a {product} TCB"))?;
    let request = KdsRequest::Vcek {
        product,
        chip_id: report.chip_id,
        tcb,
    };
    let got = obtain(&s.kds, request, fetched).map_err(|e| match e {
        crate::kds::client::KdsError::NotCached { .. } => {
            anyhow!("the VCEK: {e}; {FETCH_HINT}, or pass it with --vcek FILE")
        }
        e => anyhow!(e).context("the VCEK"),
    })?;
    let what = described(&got.origin);
    let cert = one_cert(certs_of(&got.bytes, &what)?, &what)?;
    Ok((cert, got.origin))
}

/// The ASK (or ASVK) and ARK: `--chain`/`--ark`, else a roots directory,
/// else the KDS.
fn ask_ark(
    s: &Sources,
    kind: VekKind,
    product: Option<Product>,
    fetched: &mut Vec<(KdsRequest, Obtained)>,
) -> Result<(Certificate, Origin, Certificate, Origin)> {
    let ark_file = s.ark.as_deref().map(read_one_cert).transpose()?;
    // AMD's roots directories are no place for an explicitly trusted root's chain.
    let roots_dirs: &[PathBuf] = if s.trust_ark_explicitly {
        &[]
    } else {
        &s.roots_dirs
    };
    let (mut certs, chain_origin) = match (&s.chain, product) {
        (Some(p), _) => (read_cert_file(p)?, Origin::File(p.clone())),
        (None, Some(product)) => match find_cert_chain(product, kind, roots_dirs) {
            Some(p) => (read_cert_file(&p)?, Origin::File(p)),
            None => {
                let request = KdsRequest::CertChain { product, kind };
                let got = obtain(&s.kds, request, fetched).map_err(|e| {
                    let (what, path) = match kind {
                        VekKind::Vcek => ("", "vcek"),
                        VekKind::Vlek => ("VLEK ", "vlek"),
                    };
                    let lower = product.name().to_ascii_lowercase();
                    anyhow!(
                        "no ask_ark_{lower}{}.pem in {}, and {e}; {FETCH_HINT}, or pass KDS's \
                         {what}cert_chain for {product} with --chain FILE \
                         (https://kdsintf.amd.com/{path}/v1/{product}/cert_chain)",
                        if kind == VekKind::Vlek { "_vlek" } else { "" },
                        dirs_text(roots_dirs)
                    )
                })?;
                let what = described(&got.origin);
                (certs_of(&got.bytes, &what)?, got.origin)
            }
        },
        (None, None) => bail!("the report does not name its product: give --product or --chain"),
    };
    let describe = chain_origin.to_string();
    // The ARK given as a file is the one used (a chain's copy must equal it).
    let ark_origin = match &s.ark {
        Some(p) => Origin::File(p.clone()),
        None => chain_origin.clone(),
    };
    let ask_origin = chain_origin;
    match (certs.len(), ark_file) {
        (2, Some(ark)) => {
            let chain_ark = certs.remove(1);
            if chain_ark.der() != ark.der() {
                bail!(
                    "{describe} ends in an ARK ({}) other than --ark ({})",
                    chain_ark.subject_cn(),
                    ark.subject_cn()
                );
            }
            Ok((certs.remove(0), ask_origin, ark, ark_origin))
        }
        (2, None) => {
            let ark = certs.remove(1);
            Ok((certs.remove(0), ask_origin, ark, ark_origin))
        }
        (1, Some(ark)) => Ok((certs.remove(0), ask_origin, ark, ark_origin)),
        (n, _) => bail!(
            "{describe} holds {n} certificates: expected the ASK then the ARK (KDS cert_chain), or \
             the ASK alone with --ark"
        ),
    }
}

/// The product a chain is of, by its ARK's CN (`ARK-<Product>`).
fn product_of_ark(ark: &Certificate) -> Option<Product> {
    ark.subject_cn().strip_prefix("ARK-")?.parse().ok()
}

/// The ARK's CRL: `--crl`, else the cache (fetched again when its
/// nextUpdate has passed and fetching is allowed), else the KDS.
fn crl(
    s: &Sources,
    kind: VekKind,
    product: Option<Product>,
    fetched: &mut Vec<(KdsRequest, Obtained)>,
) -> Result<(Crl, Origin)> {
    let decode = |bytes: &[u8], what: &str| {
        Crl::from_der(bytes).with_context(|| format!("the CRL from {what}"))
    };
    if let Some(path) = &s.crl {
        let bytes = io::read_file_max(path, sev_proto::snp::crl::MAX_CRL_LEN as u64)?;
        let crl = decode(&bytes, &path.display().to_string())?;
        return Ok((crl, Origin::File(path.clone())));
    }
    let Some(product) = product else {
        bail!("the chain's product is unknown: give --product to find its CRL, --crl FILE, or --no-crl");
    };
    let request = KdsRequest::Crl { product, kind };
    let not_had = |e: crate::kds::client::KdsError| {
        anyhow!(
            "the ARK's CRL: {e}; {FETCH_HINT}, pass it with --crl FILE, or skip the revocation \
             check with --no-crl"
        )
    };
    let got = obtain(&s.kds, request.clone(), fetched).map_err(not_had)?;
    let crl = decode(&got.bytes, &described(&got.origin))?;
    let stale = crl.next_update().is_some_and(|t| t < SystemTime::now());
    if stale && matches!(got.origin, Origin::Cache(_)) && s.kds.client.is_some() {
        let fresh = KdsSource {
            cache: None,
            ..s.kds.clone()
        };
        let got = obtain(&fresh, request, fetched).map_err(not_had)?;
        let crl = decode(&got.bytes, &described(&got.origin))?;
        return Ok((crl, got.origin));
    }
    Ok((crl, got.origin))
}

/// Reads (or fetches) and decodes every input; any failure is bad input.
pub(super) fn load(s: &Sources) -> Result<Loaded> {
    if s.trust_ark_explicitly && s.ark.is_none() {
        bail!("--trust-ark-explicitly needs the ARK to trust: --ark FILE");
    }
    let report = read_report(&s.report)?;
    let product = s.product.or_else(|| report.product());
    let kind = if report.signing_key == ReportSigner::Vlek {
        VekKind::Vlek
    } else {
        VekKind::Vcek
    };
    let mut fetched = Vec::new();
    let (vek, vek_origin) = vek(s, &report, product, &mut fetched)?;
    let (ask, ask_origin, ark, ark_origin) = ask_ark(s, kind, product, &mut fetched)?;
    let crl = if s.no_crl {
        None
    } else {
        Some(crl(
            s,
            kind,
            product.or_else(|| product_of_ark(&ark)),
            &mut fetched,
        )?)
    };
    let trusted_ark = if s.trust_ark_explicitly {
        Some(ark.clone())
    } else {
        None
    };
    let (crl, crl_origin) = crl.map_or((None, None), |(c, o)| (Some(c), Some(o)));
    Ok(Loaded {
        report,
        chain: Chain { ark, ask, vek },
        trusted_ark,
        product: s.product,
        crl,
        provenance: Provenance {
            vek: vek_origin,
            ask: ask_origin,
            ark: ark_origin,
            crl: crl_origin,
        },
        fetched,
    })
}

/// Caches the objects of `loaded` that were fetched, now that `outcome`
/// shows them genuine: the VCEK and `cert_chain` once the chain verified
/// (and the report's binding to it: a VCEK for another TCB is not kept),
/// the CRL once its signature did. Returns the files written; a failure to
/// write is reported, not fatal.
pub fn remember_verified(
    loaded: &Loaded,
    outcome: &Outcome,
    kds: &KdsSource,
) -> Vec<Result<PathBuf, String>> {
    let authentic = !matches!(outcome.verdict, Verdict::NotAuthentic(_));
    let chain_ok = outcome.chain.is_some();
    loaded
        .fetched
        .iter()
        .filter(|(request, _)| match request {
            KdsRequest::Vcek { .. } => authentic,
            KdsRequest::CertChain { .. } => chain_ok,
            KdsRequest::Crl { .. } => chain_ok && outcome.crl_checked,
            KdsRequest::Cek { .. } => false,
        })
        .filter_map(|(request, got)| match kds.remember(request, got) {
            Ok(Some(path)) => Some(Ok(path)),
            Ok(None) => None,
            Err(e) => Some(Err(crate::error::error_chain(&e))),
        })
        .collect()
}
