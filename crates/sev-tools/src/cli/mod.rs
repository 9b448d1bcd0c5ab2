//! Command-line front ends: option parsing (clap) and the commands, which
//! call the library modules and turn their errors into one
//! `<tool>: error: ...` line and a non-zero exit status.

pub mod demo;
pub mod demo_export;
pub mod id_block;
pub mod kds;
pub mod owner;
pub mod platform;
pub mod snp;
pub mod tempdir;
pub mod vcpu;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser};
use sev_proto::abi::Policy;
use sev_proto::cert::AmdGeneration;

use crate::chain::{self, CaOptions, ChainSource, LoadedChain, Trust, Verification};
use sevm_qmp::QmpClient;

/// How long a QMP read may take before the VMM is considered unresponsive.
pub const QMP_TIMEOUT: Duration = Duration::from_secs(60);

/// Parses `args` as `P`, runs `run`, and maps every failure to one line on
/// stderr: `tool: error: ...`. Usage errors exit with 2, others with 1.
pub fn run_main<P: Parser>(
    tool: &str,
    args: impl IntoIterator<Item = OsString>,
    run: impl FnOnce(P) -> Result<()>,
) -> ExitCode {
    let parsed = match P::try_parse_from(args) {
        Ok(p) => p,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
            let text = e.render().to_string();
            // The message is the first paragraph (clap lists missing
            // arguments on the lines after the first).
            let first = text
                .lines()
                .skip_while(|l| l.trim().is_empty())
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ");
            let first = match first.strip_prefix("error: ") {
                Some(rest) => rest.to_string(),
                None if first.is_empty() => "invalid arguments".to_string(),
                None => first,
            };
            eprintln!("{tool}: error: {first} (see {tool} --help)");
            return ExitCode::from(2);
        }
    };
    match run(parsed) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{tool}: error: {}", one_line(&e));
            match e.downcast_ref::<ExitWith>() {
                Some(exit) => ExitCode::from(exit.code),
                None => ExitCode::FAILURE,
            }
        }
    }
}

/// An error that ends the command with its own exit status (a verdict),
/// not the 1 of other failures.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ExitWith {
    /// The exit status.
    pub code: u8,
    /// The error line.
    pub message: String,
}

/// An error and its causes on one line, without repeating a cause that the
/// message above it already contains.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out.replace('\n', " ")
}

/// Parses a number given in decimal or `0x` hexadecimal (as sevctl's
/// "int or hex" options) that must fit a `u8`.
pub fn parse_u8(text: &str) -> Result<u8, String> {
    let t = text.trim();
    let v = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => t.parse::<u32>(),
    }
    .map_err(|_| format!("{text:?} is not a number (decimal or 0x hex)"))?;
    u8::try_from(v).map_err(|_| format!("{text:?} does not fit in one byte (0..=255)"))
}

/// Parses a guest policy (decimal or `0x` hex; reserved bits refused).
pub fn parse_policy(text: &str) -> Result<Policy, String> {
    Policy::parse(text).map_err(|e| e.to_string())
}

/// Parses an AMD generation name.
pub fn parse_generation(text: &str) -> Result<AmdGeneration, String> {
    text.parse::<AmdGeneration>().map_err(|e| e.to_string())
}

/// Where the platform's chain comes from (exactly one).
#[derive(Debug, Clone, Args)]
#[group(id = "chain-source", multiple = false)]
pub struct SourceArgs {
    /// Chain file as `sevctl export [--full]` / `sev-platform export [--full]` writes it:
    /// PDH, PEK, OCA, CEK [, ASK, ARK].
    #[arg(long, value_name = "FILE")]
    pub chain: Option<PathBuf>,
    /// Directory holding pdh.cert, pek.cert, oca.cert, cek.cert [, ask.cert, ark.cert].
    #[arg(long, value_name = "DIR")]
    pub chain_dir: Option<PathBuf>,
    /// QMP socket of a running VMM: the chain from query-sev-capabilities.
    #[arg(long, value_name = "SOCKET")]
    pub qmp: Option<PathBuf>,
    /// A saved query-sev-capabilities reply (JSON with "pdh" and "cert-chain").
    #[arg(long, value_name = "FILE")]
    pub capabilities: Option<PathBuf>,
}

impl SourceArgs {
    /// Whether a source was given.
    pub fn given(&self) -> bool {
        self.chain.is_some()
            || self.chain_dir.is_some()
            || self.qmp.is_some()
            || self.capabilities.is_some()
    }

    /// The source, connecting to QMP if needed.
    pub fn source(&self) -> Result<ChainSource> {
        if let Some(f) = &self.chain {
            return Ok(ChainSource::File(f.clone()));
        }
        if let Some(d) = &self.chain_dir {
            return Ok(ChainSource::Dir(d.clone()));
        }
        if let Some(f) = &self.capabilities {
            return Ok(chain::capabilities_file(f)?);
        }
        if let Some(sock) = &self.qmp {
            let mut q = QmpClient::connect(sock, QMP_TIMEOUT)?;
            let caps = q
                .execute("query-sev-capabilities", None)
                .context("asking the VMM for the platform's certificates")?;
            return Ok(chain::capabilities_from_json(
                &format!("query-sev-capabilities on {}", sock.display()),
                &caps,
            )?);
        }
        bail!("no certificate chain given: pass --chain FILE, --chain-dir DIR, --qmp SOCKET or --capabilities FILE")
    }

    /// Loads the certificates.
    pub fn load(&self) -> Result<LoadedChain> {
        Ok(self.source()?.load()?)
    }
}

/// What the chain is verified to.
#[derive(Debug, Clone, Args)]
pub struct TrustArgs {
    /// ASK and ARK (AMD CA format, ASK first) when the chain does not carry them.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Verify to AMD's pinned root of this generation: naples, rome, milan, genoa or turin.
    #[arg(long, value_name = "GEN", value_parser = parse_generation)]
    pub generation: Option<AmdGeneration>,
    /// Verify to this root (an ARK, or ASK+ARK) instead: for an emulated platform, whose root is
    /// its own and must be trusted explicitly.
    #[arg(long, value_name = "FILE", conflicts_with = "generation")]
    pub trust_ark: Option<PathBuf>,
    /// The platform's CEK signed by the ASK (as AMD's key distribution server serves it for the
    /// chip): replaces a real host's unsigned CEK; its key must be the platform CEK's.
    #[arg(long, value_name = "FILE")]
    pub cek: Option<PathBuf>,
    /// The chip id (128 hex digits as `sev-platform id` prints, or base64) when the chain source
    /// does not carry it (query-sev-capabilities' cpu0-id does): selects the cached or fetched CEK.
    #[arg(long, value_name = "ID", value_parser = parse_chip_id)]
    pub chip_id: Option<crate::cek::ChipId>,
    /// Allow fetching a real host's signed CEK from the key distribution server (GET
    /// <KDS-URL>/cek/id/<chip id>) when it is not in the CEK cache; the fetched CEK is cached.
    #[arg(long)]
    pub fetch_cek: bool,
    /// Base URL of the key distribution server for --fetch-cek.
    #[arg(long, value_name = "URL", default_value = crate::cek::DEFAULT_KDS_URL, requires = "fetch_cek")]
    pub kds_url: String,
    /// The CEK cache directory (default: $SEV_OWNER_CEK_CACHE, $XDG_CACHE_HOME/sevm/cek or
    /// ~/.cache/sevm/cek).
    #[arg(long, value_name = "DIR")]
    pub cek_cache: Option<PathBuf>,
}

/// Parses a chip id option.
pub fn parse_chip_id(text: &str) -> Result<crate::cek::ChipId, String> {
    crate::cek::ChipId::parse(text).map_err(|e| e.to_string())
}

impl TrustArgs {
    /// The trust anchor.
    pub fn trust(&self) -> Result<Trust> {
        match (&self.generation, &self.trust_ark) {
            (Some(g), _) => Ok(Trust::Amd(*g)),
            (None, Some(f)) => Ok(Trust::explicit(f)?),
            (None, None) => Err(chain::ChainError::NoTrust.into()),
        }
    }

    /// Where the ASK/ARK come from.
    pub fn ca_options(&self) -> CaOptions {
        let roots_dirs = crate::roots::default_dirs();
        let cek = crate::cek::CekOptions {
            file: self.cek.clone(),
            chip_id: self.chip_id,
            cache_dir: self
                .cek_cache
                .clone()
                .or_else(crate::cek::default_cache_dir),
            extra_dirs: roots_dirs.iter().map(|d| d.join("cek")).collect(),
            fetch_from: self.fetch_cek.then(|| self.kds_url.clone()),
        };
        CaOptions {
            ca_file: self.ca.clone(),
            roots_dirs,
            cek,
        }
    }
}

/// Labels an explicit root as the emulated platform's own when it is the
/// ARK of the emulated platform in `dir` (see [`Trust::recognise_emulated`]);
/// when the platform cannot be read the root keeps its label.
pub fn recognise_emulated_root(trust: Trust, dir: &Path) -> Trust {
    use crate::platform::PlatformManagement;
    let ark = crate::platform::EmulatedPlatform::open(dir)
        .ok()
        .and_then(|e| e.amd_chain().ok().flatten())
        .map(|ca| ca.ark);
    match ark {
        Some(ark) => trust.recognise_emulated(dir, &ark),
        None => trust,
    }
}

/// Loads and verifies a chain; the report is returned even on failure.
pub fn verify_chain(source: &SourceArgs, trust: &TrustArgs) -> Result<Verification> {
    let trust_anchor = trust.trust()?;
    let loaded = source.load()?;
    Ok(chain::verify(loaded, &trust.ca_options(), &trust_anchor)?)
}

/// A launch digest given as 64 hex digits or base64 (as sevctl takes it).
pub fn parse_digest(text: &str) -> Result<[u8; 32]> {
    let t = text.trim();
    let bytes = if t.len() == 64 && t.chars().all(|c| c.is_ascii_hexdigit()) {
        hex::decode(t).context("launch digest hex")?
    } else {
        crate::io::b64_decode("launch digest", t)?
    };
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| anyhow::anyhow!("launch digest is {} bytes, expected 32", bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_digests() {
        assert_eq!(parse_u8("0x28"), Ok(40));
        assert_eq!(parse_u8("40"), Ok(40));
        assert!(parse_u8("256").unwrap_err().contains("one byte"));
        assert!(parse_u8("x").unwrap_err().contains("not a number"));
        assert!(parse_policy("0x40").unwrap_err().contains("reserved"));
        assert_eq!(parse_generation("Milan"), Ok(AmdGeneration::Milan));
        assert!(parse_generation("zen").is_err());
        let d = parse_digest("xkvRAfyaSizgonxAjZIAkR8TmolUabBKQKb6KJCDDSM=").unwrap();
        assert_eq!(
            hex::encode(d),
            "c64bd101fc9a4a2ce0a27c408d9200911f139a895469b04a40a6fa2890830d23"
        );
        assert_eq!(parse_digest(&hex::encode(d)).unwrap(), d);
        assert!(parse_digest("AAAA").is_err());
    }

    #[test]
    fn one_line_drops_repeated_causes() {
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(one_line(&e), "outer: inner");
    }
}
