//! `sev-platform`: the platform owner's tool.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use sev_proto::abi::ApiVersion;
use sev_proto::cert::chain::CaChain;
use sev_proto::cert::sev;
use sev_proto::cert::AmdGeneration;
use sev_proto::snp::Product;

use crate::io::{self, OutputSet};
use crate::platform::{
    self, CreateOptions, EmulatedPlatform, HardwarePlatform, KindJson, PlatformError, PlatformKind,
    PlatformManagement, SnpOptions,
};
use crate::roots;

/// The platform owner's tool: status, certificate export, ownership (PEK CSR, OCA signing,
/// PEK import), PDH/PEK rotation, reset and chip id — on AMD hardware (/dev/sev) or on an
/// emulated platform directory.
#[derive(Debug, Parser)]
#[command(name = "sev-platform", version)]
pub struct Cli {
    /// The SEV device node of AMD hardware.
    #[arg(long, global = true, value_name = "PATH", default_value = "/dev/sev")]
    device: PathBuf,
    /// Use the emulated platform in DIR instead (`--emulated=DIR`; `--emulated` alone:
    /// $XDG_STATE_HOME/sevm/platform or ~/.local/state/sevm/platform).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        num_args = 0..=1,
        require_equals = true
    )]
    emulated: Option<Option<PathBuf>>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create an emulated platform directory (its identity: chip id, CEK, PEK, OCA, PDH and its
    /// own ARK and ASK). Keeps an existing one.
    Init(InitArgs),
    /// Platform status: firmware API version and build, state, owner, SEV-ES, guests.
    Status,
    /// Export the certificate chain in sevctl's formats.
    Export(ExportArgs),
    /// Write the PEK certificate signing request (for an owner CA to sign).
    PekCsr {
        /// Output file (0x824-byte SEV certificate with empty signatures).
        out: PathBuf,
    },
    /// Import an OCA-signed PEK and the OCA certificate: take ownership of the platform.
    PekCertImport {
        /// The PEK certificate signed by the OCA (`sev-platform sign-csr`).
        #[arg(long, value_name = "FILE")]
        pek: PathBuf,
        /// The OCA certificate.
        #[arg(long, value_name = "FILE")]
        oca: PathBuf,
    },
    /// Act as the owner CA: generate an OCA key pair and self-signed certificate.
    OcaGen {
        /// Output: OCA certificate.
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// Output: OCA private key (0600).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
    /// Act as the owner CA: sign a PEK CSR with the OCA key (no platform access).
    SignCsr {
        /// The CSR from `sev-platform pek-csr`.
        csr: PathBuf,
        /// The OCA certificate.
        #[arg(long, value_name = "FILE")]
        oca_cert: PathBuf,
        /// The OCA private key.
        #[arg(long, value_name = "FILE")]
        oca_key: PathBuf,
        /// Output: the signed PEK certificate.
        #[arg(long, short, value_name = "FILE")]
        out: PathBuf,
    },
    /// Generate a new PDH (rotate).
    PdhGen,
    /// Generate a new PEK (and PDH); the platform becomes self-owned.
    PekGen,
    /// Reset the platform: new PEK/PDH/OCA, ownership cleared.
    Reset,
    /// The chip id (GET_ID).
    Id,
    /// SNP: the emulated platform's VCEK chain as files.
    #[command(subcommand)]
    Snp(super::kds::SnpPlatformCmd),
    /// The emulated key distribution service: serve the VCEK chain over HTTP, revoke the ASK.
    #[command(subcommand)]
    Kds(super::kds::KdsCmd),
}

#[derive(Debug, Args)]
struct InitArgs {
    /// The platform directory (same as --emulated=DIR).
    dir: Option<PathBuf>,
    /// Firmware API version MAJOR.MINOR the platform reports.
    #[arg(long, value_name = "MAJOR.MINOR", value_parser = parse_api, default_value = "1.55")]
    api: ApiVersion,
    /// Firmware build id.
    #[arg(long, value_parser = super::parse_u8, default_value = "21")]
    build: u8,
    /// RSA size of the emulated ARK and ASK: 4096 (as AMD's since Rome) or 2048 (faster).
    #[arg(long, value_name = "BITS", default_value = "4096", value_parser = ["2048", "4096"])]
    ark_bits: String,
    /// The EPYC generation whose SNP firmware the platform emulates (TCB layout, chip id):
    /// Milan, Genoa or Turin.
    #[arg(long, value_name = "PRODUCT", default_value = "Genoa")]
    product: Product,
    /// Export the CEK without the ASK's signature, as real firmware does: owners then fetch the
    /// signed CEK from a key server (`sev-owner verify --fetch-cek`).
    #[arg(long)]
    unsigned_cek: bool,
}

fn parse_api(text: &str) -> Result<ApiVersion, String> {
    let (a, b) = text
        .split_once('.')
        .ok_or_else(|| format!("{text:?}: expected MAJOR.MINOR, e.g. 1.55"))?;
    Ok(ApiVersion::new(super::parse_u8(a)?, super::parse_u8(b)?))
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// Chain file: PDH, PEK, OCA, CEK (as `sevctl export`).
    file: Option<PathBuf>,
    /// Append ASK and ARK to FILE (as `sevctl export --full`).
    #[arg(short, long, requires = "file")]
    full: bool,
    /// Also write single certificates pdh.cert ... ark.cert into DIR.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Also write the PDH certificate alone.
    #[arg(long, value_name = "FILE")]
    pdh: Option<PathBuf>,
    /// Also write ASK ‖ ARK (what `sevctl verify --ca` reads).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Also write the ARK alone (the root an owner passes to `sev-owner --trust-ark` for an
    /// emulated platform).
    #[arg(long, value_name = "FILE")]
    ark: Option<PathBuf>,
    /// Hardware: the AMD ASK ‖ ARK to use (default: the AMD roots directory, matched to the CEK).
    #[arg(long, value_name = "FILE")]
    amd_ca: Option<PathBuf>,
}

/// Entry point of the `sev-platform` binary.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    super::run_main("sev-platform", args, run)
}

/// The default emulated platform directory.
pub fn default_emulated_dir() -> Result<PathBuf> {
    match std::env::var_os("XDG_STATE_HOME") {
        Some(d) if !d.is_empty() => Ok(PathBuf::from(d).join("sevm/platform")),
        _ => {
            let home =
                std::env::var_os("HOME").context("neither XDG_STATE_HOME nor HOME is set")?;
            Ok(PathBuf::from(home).join(".local/state/sevm/platform"))
        }
    }
}

fn emulated_dir(cli: &Cli) -> Result<Option<PathBuf>> {
    match &cli.emulated {
        None => Ok(None),
        Some(None) => Ok(Some(default_emulated_dir()?)),
        Some(Some(p)) => Ok(Some(p.clone())),
    }
}

/// The emulated platform of `snp certs` and `kds`: `--emulated`'s directory,
/// else the default one (AMD hardware has AMD's key server).
fn kds_dir(cli: &Cli) -> Result<PathBuf> {
    emulated_dir(cli)?.map_or_else(default_emulated_dir, Ok)
}

fn backend(cli: &Cli) -> Result<Box<dyn PlatformManagement>> {
    match emulated_dir(cli)? {
        Some(dir) => Ok(Box::new(
            EmulatedPlatform::open(&dir).map_err(PlatformError::from)?,
        )),
        None => Ok(Box::new(HardwarePlatform::open(&cli.device).with_context(
            || {
                format!(
                    "no SEV hardware at {} (use --emulated [DIR] for an emulated platform)",
                    cli.device.display()
                )
            },
        )?)),
    }
}

fn emit(cli: &Cli, value: Value, text: &str) {
    if cli.json {
        println!("{value:#}");
    } else {
        print!("{text}");
    }
}

fn run(cli: Cli) -> Result<()> {
    match &cli.cmd {
        Cmd::Init(a) => init(&cli, a),
        Cmd::OcaGen { cert, key } => oca_gen(&cli, cert, key),
        Cmd::SignCsr {
            csr,
            oca_cert,
            oca_key,
            out,
        } => sign_csr(&cli, csr, oca_cert, oca_key, out),
        Cmd::Snp(super::kds::SnpPlatformCmd::Certs(a)) => {
            super::kds::snp_certs(cli.json, &kds_dir(&cli)?, a)
        }
        Cmd::Kds(cmd) => super::kds::kds(cli.json, kds_dir(&cli)?, cmd),
        _ => {
            let b = backend(&cli)?;
            platform_cmd(&cli, b.as_ref())
        }
    }
}

fn init(cli: &Cli, a: &InitArgs) -> Result<()> {
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => emulated_dir(cli)?.map_or_else(default_emulated_dir, Ok)?,
    };
    let options = CreateOptions {
        api: a.api,
        build: a.build,
        ark_bits: if a.ark_bits == "2048" { 2048 } else { 4096 },
        snp: SnpOptions {
            product: a.product,
            ..SnpOptions::default()
        },
        unsigned_cek: a.unsigned_cek,
        ..CreateOptions::default()
    };
    let created = EmulatedPlatform::create(&dir, options).map_err(PlatformError::from)?;
    let b = EmulatedPlatform::open(&dir).map_err(PlatformError::from)?;
    let s = platform::status(&b)?;
    let verb = if created {
        "created"
    } else {
        "already exists:"
    };
    emit(
        cli,
        json!({"platform": KindJson(b.kind()), "created": created, "status": s}),
        &format!(
            "emulated platform {verb} {} (API {}.{} build {})\n",
            dir.display(),
            s.api_major,
            s.api_minor,
            s.build
        ),
    );
    Ok(())
}

fn platform_cmd(cli: &Cli, b: &dyn PlatformManagement) -> Result<()> {
    let kind = b.kind();
    let failed = PlatformError::firmware(b);
    match &cli.cmd {
        Cmd::Status => {
            let s = platform::status(b)?;
            let text = format!(
                "platform:  {kind}\nfirmware:  API {}.{} build {}\nstate:     {}\nowner:     {}\nSEV-ES:    {}\nguests:    {}\n",
                s.api_major,
                s.api_minor,
                s.build,
                s.state,
                s.owner(),
                if s.es { "enabled" } else { "disabled" },
                s.guests
            );
            emit(cli, json!({"platform": KindJson(kind), "status": s}), &text);
        }
        Cmd::Export(a) => export(cli, b, a)?,
        Cmd::PekCsr { out } => {
            let csr = b.pek_csr().map_err(failed)?.encode();
            io::write_atomic(out, &csr, 0o644)?;
            emit(
                cli,
                json!({"platform": KindJson(kind), "written": [out]}),
                &format!(
                    "PEK CSR ({} bytes) written to {}\n",
                    csr.len(),
                    out.display()
                ),
            );
        }
        Cmd::PekCertImport { pek, oca } => {
            let decode = |what: &str, p: &Path| -> Result<sev::Certificate> {
                sev::Certificate::decode(&io::read_file(p)?)
                    .with_context(|| format!("{what} certificate {}", p.display()))
            };
            let (pek, oca) = (decode("PEK", pek)?, decode("OCA", oca)?);
            b.pek_cert_import(&pek, &oca).map_err(failed)?;
            emit(
                cli,
                json!({"platform": KindJson(kind), "ok": true}),
                "PEK and OCA imported: the platform is now owned by that OCA\n",
            );
        }
        Cmd::PdhGen => {
            b.pdh_gen().map_err(failed)?;
            emit(
                cli,
                json!({"platform": KindJson(kind), "ok": true}),
                "new PDH generated\n",
            );
        }
        Cmd::PekGen => {
            b.pek_gen().map_err(failed)?;
            emit(
                cli,
                json!({"platform": KindJson(kind), "ok": true}),
                "new PEK and PDH generated; the platform is self-owned\n",
            );
        }
        Cmd::Reset => {
            b.platform_reset().map_err(failed)?;
            emit(
                cli,
                json!({"platform": KindJson(kind), "ok": true}),
                "platform reset: new OCA, PEK and PDH; ownership cleared\n",
            );
        }
        Cmd::Id => {
            let id = b.get_id().map_err(failed)?;
            emit(
                cli,
                json!({"platform": KindJson(kind), "id": hex::encode(&id)}),
                &format!("{}\n", hex::encode(&id)),
            );
        }
        Cmd::Init(_) | Cmd::OcaGen { .. } | Cmd::SignCsr { .. } | Cmd::Snp(_) | Cmd::Kds(_) => {}
    }
    Ok(())
}

/// ASK ‖ ARK for a hardware CEK: the given file, else the first AMD
/// generation in the roots directories whose ASK signed the CEK.
fn amd_ca_for(cek: &sev::Certificate, amd_ca: Option<&Path>) -> Result<CaChain> {
    if let Some(f) = amd_ca {
        return Ok(crate::chain::load_ca_file(f)?);
    }
    let dirs = roots::default_dirs();
    for g in AmdGeneration::ALL {
        if let Ok(ca) = roots::load_amd_ca(g, &dirs) {
            if cek.verify_signed_by_ca(&ca.ask).is_ok() {
                return Ok(ca);
            }
        }
    }
    bail!(
        "no AMD ASK in the roots directories ({}) signed this platform's CEK; pass --amd-ca FILE",
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn export(cli: &Cli, b: &dyn PlatformManagement, a: &ExportArgs) -> Result<()> {
    if a.file.is_none() && a.dir.is_none() && a.pdh.is_none() && a.ca.is_none() && a.ark.is_none() {
        bail!("nothing to export: give FILE, --dir, --pdh, --ca or --ark");
    }
    let kind = b.kind();
    let failed = PlatformError::firmware(b);
    let certs = b.pdh_cert_export().map_err(PlatformError::firmware(b))?;
    let (pdh_cert, platform) = (&certs.pdh, &certs.chain);
    let pdh = pdh_cert.encode();
    let need_ca = a.full || a.dir.is_some() || a.ca.is_some() || a.ark.is_some();
    let ca = if need_ca {
        match b.amd_chain().map_err(failed)? {
            Some(ca) => Some(ca),
            None => Some(amd_ca_for(&platform.cek, a.amd_ca.as_deref())?),
        }
    } else {
        None
    };
    let mut set = OutputSet::new();
    let mut written: Vec<PathBuf> = Vec::new();
    let mut stage = |set: &mut OutputSet, p: &Path, bytes: &[u8]| -> Result<()> {
        set.stage(p, bytes, 0o644)?;
        written.push(p.to_path_buf());
        Ok(())
    };
    if let Some(f) = &a.file {
        let mut bytes = pdh.to_vec();
        bytes.extend_from_slice(&platform.encode());
        if a.full {
            if let Some(ca) = &ca {
                bytes.extend_from_slice(&ca.encode());
            }
        }
        stage(&mut set, f, &bytes)?;
    }
    if let Some(f) = &a.pdh {
        stage(&mut set, f, &pdh)?;
    }
    if let (Some(f), Some(ca)) = (&a.ca, &ca) {
        stage(&mut set, f, &ca.encode())?;
    }
    if let (Some(f), Some(ca)) = (&a.ark, &ca) {
        stage(&mut set, f, &ca.ark.encode())?;
    }
    if let Some(d) = &a.dir {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        for (name, cert) in [
            ("pdh.cert", pdh_cert),
            ("pek.cert", &platform.pek),
            ("oca.cert", &platform.oca),
            ("cek.cert", &platform.cek),
        ] {
            stage(&mut set, &d.join(name), &cert.encode())?;
        }
        if let Some(ca) = &ca {
            stage(&mut set, &d.join("ask.cert"), &ca.ask.encode())?;
            stage(&mut set, &d.join("ark.cert"), &ca.ark.encode())?;
        }
    }
    set.commit()?;
    let mut text = String::new();
    if let PlatformKind::Emulated(_) = kind {
        text.push_str("platform: emulated — its ARK is its own, not AMD's\n");
    }
    for p in &written {
        text.push_str(&format!("wrote {}\n", p.display()));
    }
    emit(
        cli,
        json!({"platform": KindJson(kind), "written": written}),
        &text,
    );
    Ok(())
}

fn oca_gen(cli: &Cli, cert: &Path, key: &Path) -> Result<()> {
    let (oca, k) = platform::oca_gen(&mut rand_core::OsRng)?;
    let mut set = OutputSet::new();
    set.stage(cert, &oca.encode(), 0o644)?;
    set.stage(key, &platform::oca_key_bytes(&k), 0o600)?;
    set.commit()?;
    emit(
        cli,
        json!({"written": [cert, key]}),
        &format!(
            "OCA certificate {}\nOCA private key {} (0600)\n",
            cert.display(),
            key.display()
        ),
    );
    Ok(())
}

fn sign_csr(cli: &Cli, csr: &Path, oca_cert: &Path, oca_key: &Path, out: &Path) -> Result<()> {
    let csr_bytes = io::read_file(csr)?;
    let oca = sev::Certificate::decode(&io::read_file(oca_cert)?)
        .with_context(|| format!("OCA certificate {}", oca_cert.display()))?;
    oca.verify_signed_by_sev(&oca)
        .with_context(|| format!("OCA certificate {} is not self-signed", oca_cert.display()))?;
    let key = platform::read_oca_key(oca_key)?;
    let pek = platform::sign_csr(&csr_bytes, &oca, &key)
        .with_context(|| format!("CSR {}", csr.display()))?;
    io::write_atomic(out, &pek.encode(), 0o644)?;
    emit(
        cli,
        json!({"written": [out]}),
        &format!("PEK signed by the OCA: {}\n", out.display()),
    );
    Ok(())
}
