//! `sev-owner snp ...`: SNP attestation (docs/guide/sev-owner.md#snp-verify).

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use sev_proto::abi::policy::ApiVersion;
use sev_proto::snp::Product;

use super::vcpu::parse_u64;
use super::ExitWith;
use crate::kds::client::{service_dir, Cache, KdsSource};
use crate::snp_verify::{self, Expectations, Sources, Verdict};

/// Exit status of `snp verify` when the chain, the report's binding to its
/// VCEK or its signature fails.
pub const EXIT_NOT_AUTHENTIC: u8 = 3;
/// Exit status of `snp verify` when the report is authentic but a check
/// fails.
pub const EXIT_CHECK_FAILED: u8 = 4;

/// SNP subcommands.
#[derive(Debug, Subcommand)]
pub enum SnpCmd {
    /// Verify an SNP attestation report: the VCEK chain to AMD's pinned root of the product (or
    /// an ARK trusted explicitly), the report's chip id, TCB and signature against the VCEK,
    /// then the checks given. Exit status: 0 verified, 1 bad input, 2 usage, 3 not authentic
    /// (chain or signature), 4 authentic but a check failed.
    Verify(Box<VerifyArgs>),
}

/// `sev-owner snp verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The report: 1184 bytes, or their hex text.
    #[arg(long, value_name = "FILE")]
    report: PathBuf,
    /// The VCEK certificate (DER or PEM), from KDS or the host. Default: from the KDS cache by
    /// the report's CHIP_ID and REPORTED_TCB, or fetched with --fetch.
    #[arg(long, value_name = "FILE")]
    vcek: Option<PathBuf>,
    /// The ASK then the ARK, PEM, as KDS's /vcek/v1/<Product>/cert_chain serves them.
    /// Default: ask_ark_<product>.pem in $SEV_OWNER_AMD_ROOTS, $XDG_DATA_HOME/sevm/amd-roots
    /// or /usr/share/sevm/amd-roots.
    #[arg(long, value_name = "FILE")]
    chain: Option<PathBuf>,
    /// The product the chain must be of (milan, genoa, turin). Default: the one the pinned ARK
    /// is AMD's root of; a version 2 report without --chain needs it.
    #[arg(long, value_parser = parse_product)]
    product: Option<Product>,
    /// The ARK (DER or PEM), when --chain holds only the ASK or to trust it explicitly.
    #[arg(long, value_name = "FILE")]
    ark: Option<PathBuf>,
    /// Trust --ark itself, not AMD's pinned roots (an emulated platform's root). The verdict
    /// says so.
    #[arg(long, requires = "ark")]
    trust_ark_explicitly: bool,
    /// The ARK's certificate revocation list (DER, as KDS's /vcek/v1/<Product>/crl serves it).
    /// Default: from the KDS cache, or fetched with --fetch.
    #[arg(long, value_name = "FILE", conflicts_with = "no_crl")]
    crl: Option<PathBuf>,
    /// Skip the revocation check (e.g. offline with no CRL cached). The output says so.
    #[arg(long)]
    no_crl: bool,
    /// Allow fetching the VCEK, the cert_chain and the CRL from the key distribution service
    /// (--kds-url) when neither files nor the KDS cache have them; what verifies is cached.
    #[arg(long, conflicts_with = "offline")]
    fetch: bool,
    /// Never use the network: files and the KDS cache only (the default without --fetch).
    #[arg(long)]
    offline: bool,
    /// Base URL of the key distribution service for --fetch (http or https).
    #[arg(long, value_name = "URL", default_value = crate::kds::client::AMD_KDS_BASE)]
    kds_url: String,
    /// The KDS cache directory (default: $SEV_OWNER_KDS_CACHE, $XDG_CACHE_HOME/sevm/kds or
    /// ~/.cache/sevm/kds).
    #[arg(long, value_name = "DIR")]
    kds_cache: Option<PathBuf>,
    /// Expected MEASUREMENT (96 hex digits).
    #[arg(long, value_name = "HEX", value_parser = hex_n::<48>)]
    measurement: Option<[u8; 48]>,
    /// Expected HOST_DATA (64 hex digits).
    #[arg(long, value_name = "HEX", value_parser = hex_n::<32>)]
    host_data: Option<[u8; 32]>,
    /// Expected REPORT_DATA (128 hex digits), e.g. the nonce given to the guest.
    #[arg(long, value_name = "HEX", value_parser = hex_n::<64>)]
    report_data: Option<[u8; 64]>,
    /// Expected FAMILY_ID (32 hex digits).
    #[arg(long, value_name = "HEX", value_parser = hex_n::<16>)]
    family_id: Option<[u8; 16]>,
    /// Expected IMAGE_ID (32 hex digits).
    #[arg(long, value_name = "HEX", value_parser = hex_n::<16>)]
    image_id: Option<[u8; 16]>,
    /// A trusted ID key digest (96 hex digits); repeat for several.
    #[arg(long, value_name = "HEX", value_parser = hex_n::<48>)]
    id_key_digest: Vec<[u8; 48]>,
    /// A trusted author key digest (96 hex digits); repeat for several.
    #[arg(long, value_name = "HEX", value_parser = hex_n::<48>)]
    author_key_digest: Vec<[u8; 48]>,
    /// Expected VMPL.
    #[arg(long, value_parser = parse_u32)]
    vmpl: Option<u32>,
    /// Minimum GUEST_SVN.
    #[arg(long, value_name = "SVN", value_parser = parse_u32)]
    min_guest_svn: Option<u32>,
    /// Minimum TCB (the 64-bit value in the product's layout, decimal or 0x hex) for the current,
    /// committed and reported TCB, component by component.
    #[arg(long, value_name = "TCB", value_parser = parse_u64)]
    min_tcb: Option<u64>,
    /// Minimum LAUNCH_TCB (as --min-tcb).
    #[arg(long, value_name = "TCB", value_parser = parse_u64)]
    min_launch_tcb: Option<u64>,
    /// Expected POLICY, exactly (decimal or 0x hex).
    #[arg(long, value_parser = parse_u64)]
    policy: Option<u64>,
    /// The policy's minimum ABI version must be at least MAJOR.MINOR.
    #[arg(long, value_name = "MAJOR.MINOR", value_parser = parse_abi)]
    policy_min_abi: Option<ApiVersion>,
    /// The policy must not allow debugging (DEBUG clear).
    #[arg(long)]
    policy_no_debug: bool,
    /// The policy must not allow SMT (SMT clear).
    #[arg(long)]
    policy_no_smt: bool,
    /// The policy must not allow a migration agent (MIGRATE_MA clear).
    #[arg(long)]
    policy_no_migrate_ma: bool,
    /// The policy must require a single socket (SINGLE_SOCKET set).
    #[arg(long)]
    policy_single_socket: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn parse_product(text: &str) -> Result<Product, String> {
    text.parse::<Product>().map_err(|e| e.to_string())
}

fn parse_u32(text: &str) -> Result<u32, String> {
    let v = parse_u64(text)?;
    u32::try_from(v).map_err(|_| format!("{text:?} does not fit in 32 bits"))
}

fn parse_abi(text: &str) -> Result<ApiVersion, String> {
    let bad = || format!("{text:?} is not MAJOR.MINOR (e.g. 1.51)");
    let (major, minor) = text.trim().split_once('.').ok_or_else(bad)?;
    Ok(ApiVersion::new(
        major.parse().map_err(|_| bad())?,
        minor.parse().map_err(|_| bad())?,
    ))
}

/// `N` bytes from hex (an optional `0x` prefix allowed).
fn hex_n<const N: usize>(text: &str) -> Result<[u8; N], String> {
    let t = text.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    let bytes = hex::decode(t).map_err(|e| format!("not hex: {e}"))?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "{} bytes given, expected {N} ({} hex digits)",
            bytes.len(),
            2 * N
        )
    })
}

/// Runs an SNP subcommand.
pub fn run(cmd: SnpCmd) -> Result<()> {
    match cmd {
        SnpCmd::Verify(a) => verify(*a),
    }
}

fn verify(a: VerifyArgs) -> Result<()> {
    let client = if a.fetch {
        Some(crate::kds::client::KdsClient::new(&a.kds_url)?)
    } else {
        None
    };
    let kds = KdsSource {
        cache: a
            .kds_cache
            .or_else(snp_verify::default_cache_dir)
            .map(|dir| Cache::new(dir.join(service_dir(&a.kds_url)))),
        client,
        offline_base: a.kds_url,
    };
    let sources = Sources {
        report: a.report,
        vcek: a.vcek,
        crl: a.crl,
        no_crl: a.no_crl,
        kds: kds.clone(),
        chain: a.chain,
        ark: a.ark,
        trust_ark_explicitly: a.trust_ark_explicitly,
        product: a.product,
        roots_dirs: crate::roots::default_dirs(),
    };
    let expect = Expectations {
        measurement: a.measurement,
        host_data: a.host_data,
        report_data: a.report_data,
        family_id: a.family_id,
        image_id: a.image_id,
        id_key_digests: a.id_key_digest,
        author_key_digests: a.author_key_digest,
        vmpl: a.vmpl,
        min_guest_svn: a.min_guest_svn,
        min_tcb: a.min_tcb,
        min_launch_tcb: a.min_launch_tcb,
        policy: a.policy,
        policy_min_abi: a.policy_min_abi,
        policy_no_debug: a.policy_no_debug,
        policy_no_smt: a.policy_no_smt,
        policy_no_migrate_ma: a.policy_no_migrate_ma,
        policy_single_socket: a.policy_single_socket,
    };
    let loaded = snp_verify::load(&sources)?;
    let outcome = snp_verify::verify(&loaded, &expect, SystemTime::now());
    for written in snp_verify::remember_verified(&loaded, &outcome, &kds) {
        if let Err(e) = written {
            eprintln!("sev-owner: warning: not cached: {e}");
        }
    }
    if a.json {
        let text = serde_json::to_string_pretty(&outcome.to_json()).context("JSON output")?;
        println!("{text}");
    } else {
        print!("{}", outcome.render());
    }
    match outcome.verdict {
        Verdict::Verified => Ok(()),
        Verdict::NotAuthentic(why) => Err(ExitWith {
            code: EXIT_NOT_AUTHENTIC,
            message: format!("the report is not authentic: {why}"),
        }
        .into()),
        Verdict::CheckFailed(names) => Err(ExitWith {
            code: EXIT_CHECK_FAILED,
            message: format!("the report is authentic but fails: {}", names.join(", ")),
        }
        .into()),
    }
}
