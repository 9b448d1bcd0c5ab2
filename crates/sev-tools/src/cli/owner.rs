//! `sev-owner`: the guest owner's tool.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use sev_proto::abi::Policy;
use sev_proto::measurement::MeasureBlob;
use sev_proto::ovmf::FooterTable;
use sev_proto::session::Tik;

use super::tempdir::temp_dir;
use super::vcpu::{parse_u64, Mode, VcpuArgs};
use super::{parse_digest, parse_policy, parse_u8, verify_chain, SourceArgs, TrustArgs};
use crate::io::{self, path_or_b64, path_or_b64_array};
use crate::measure::{self, DigestInputs, EsVcpus, FirmwareVersion, SnpInputs};
use crate::session::{self, SessionPaths};
use crate::{attest, launch, secret};
use sev_proto::vmsa::{SevFeatures, VmsaConfig};

/// The guest owner's tool: verify a platform's certificate chain, create the launch session,
/// compute and check the launch measurement, wrap secrets, check attestation reports, and run
/// the whole attested launch against sevm.
#[derive(Debug, Parser)]
#[command(name = "sev-owner", version)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Verify a platform's certificate chain to a pinned root and print what was checked.
    Verify(VerifyArgs),
    /// Create the launch session (GODH and session for a policy) from a verified PDH; writes the
    /// files `sevctl session` writes.
    Session(SessionArgs),
    /// Compute the expected launch digest and measurement; with --verify, check a launch-measure
    /// blob against them.
    Measure(MeasureArgs),
    /// Build the secret table and the LAUNCH_SECRET header and payload (as `sevctl secret build`).
    Secret(SecretArgs),
    /// SNP: create the ID block and ID authentication structure for a launch digest, signed with
    /// an ID key and optionally an author key (QEMU's sev-snp-guest id-block=, id-auth=); with
    /// --verify, check given ones as SNP_LAUNCH_FINISH does.
    IdBlock(super::id_block::IdBlockArgs),
    /// SEV-SNP attestation: verify a report and its VCEK chain.
    Snp {
        #[command(subcommand)]
        cmd: super::snp::SnpCmd,
    },
    /// Attestation reports.
    Attestation {
        #[command(subcommand)]
        cmd: AttestationCmd,
    },
    /// The whole attested launch against sevm: verify the chain, create the session, start sevm
    /// -S (or attach to one), check the measurement, inject the secrets, cont. Refuses to inject
    /// anything when a check fails.
    Launch(LaunchArgs),
    /// The one-command demo: an emulated platform in the user's state directory, its chain
    /// verified to its own root, an attested launch of sevm's demo guest with a secret, the
    /// guest's output.
    Demo(DemoArgs),
}

#[derive(Debug, Subcommand)]
enum AttestationCmd {
    /// Check a query-sev-attestation-report blob: PEK signature of a verified chain, launch
    /// digest, policy and MNONCE.
    Verify(AttestVerifyArgs),
}

#[derive(Debug, Args)]
struct VerifyArgs {
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    trust: TrustArgs,
}

#[derive(Debug, Args)]
struct SessionArgs {
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    trust: TrustArgs,
    /// Guest policy (decimal or 0x hex), e.g. 0x1 (NODBG) or 0x3 (NODBG|NOKS).
    #[arg(long, value_parser = parse_policy)]
    policy: Policy,
    /// File-name prefix: <NAME>_godh.b64, <NAME>_session.b64, <NAME>_tek.bin, <NAME>_tik.bin.
    #[arg(short, long, default_value = "vm")]
    name: String,
    /// Directory for the four files.
    #[arg(long, value_name = "DIR", default_value = ".")]
    out_dir: PathBuf,
}

/// What the launch digest covers (or the digest itself).
#[derive(Debug, Clone, Args)]
pub struct DigestArgs {
    /// Which launch digest: sev (default), seves, snp or snp:ovmf-hash (the last two only for
    /// `measure`).
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Firmware image (OVMF or the demo firmware), measured whole.
    #[arg(long, visible_alias = "ovmf", value_name = "FILE")]
    pub firmware: Option<PathBuf>,
    /// Kernel (QEMU -kernel with kernel-hashes=on).
    #[arg(long, value_name = "FILE", requires = "firmware")]
    pub kernel: Option<PathBuf>,
    /// Initrd (QEMU -initrd); needs --kernel.
    #[arg(long, value_name = "FILE", requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line (QEMU -append), hashed exactly as given; needs --kernel.
    #[arg(
        long,
        visible_alias = "append",
        value_name = "TEXT",
        requires = "kernel"
    )]
    pub cmdline: Option<String>,
    #[command(flatten)]
    pub vcpu: VcpuArgs,
    /// SEV-ES with VMSA files: number of vCPUs (VMSA pages measured). --mode seves with --vcpus
    /// builds the VMSAs instead.
    #[arg(long, value_name = "N", requires_all = ["vmsa_cpu0", "firmware"], conflicts_with = "vcpus")]
    pub num_cpus: Option<u32>,
    /// SEV-ES: VMSA page of the boot CPU.
    #[arg(long, value_name = "FILE", requires = "num_cpus")]
    pub vmsa_cpu0: Option<PathBuf>,
    /// SEV-ES: VMSA page of every other CPU.
    #[arg(long, value_name = "FILE", requires = "num_cpus")]
    pub vmsa_cpu1: Option<PathBuf>,
    /// The launch digest itself (base64 as sevctl takes it, or 64 hex digits).
    #[arg(long, value_name = "DIGEST", conflicts_with = "firmware")]
    pub launch_digest: Option<String>,
}

impl DigestArgs {
    fn inputs(&self) -> Result<Option<DigestInputs>> {
        let mode = self.mode.unwrap_or(Mode::Sev);
        let mut es_vcpus = None;
        match mode {
            Mode::Snp | Mode::SnpOvmfHash => bail!(
                "--mode {}: SNP launch digests are 48 bytes and only `sev-owner measure` computes them",
                mode.name()
            ),
            Mode::Sev if self.vcpu.any() => {
                bail!("--vcpus and --vcpu-* apply to --mode seves and snp")
            }
            Mode::Sev if self.mode.is_some() && self.num_cpus.is_some() => {
                bail!("--num-cpus measures SEV-ES VMSA files: give --mode seves or no --mode")
            }
            Mode::Sev => {}
            Mode::Seves if self.num_cpus.is_some() => {
                if self.vcpu.any() {
                    bail!("--num-cpus measures the given VMSA files: no --vcpus or --vcpu-* options");
                }
            }
            Mode::Seves => {
                let vmsa = VmsaConfig::new(
                    self.vcpu.vmm_type,
                    self.vcpu.signature("seves")?,
                    SevFeatures::NONE,
                )
                .with_kvm_init(self.vcpu.kvm_init());
                es_vcpus = Some(EsVcpus {
                    count: self.vcpu.count("seves")?,
                    vmsa,
                });
            }
        }
        let Some(firmware) = &self.firmware else {
            if mode != Mode::Sev {
                bail!("--mode {} needs --firmware", mode.name());
            }
            return Ok(None);
        };
        let mut vmsas = Vec::new();
        if let Some(n) = self.num_cpus {
            let cpu0 = self
                .vmsa_cpu0
                .clone()
                .context("--num-cpus needs --vmsa-cpu0")?;
            if n == 0 || n > 512 {
                bail!("--num-cpus {n}: expected 1..=512");
            }
            vmsas.push(cpu0);
            if n > 1 {
                let cpu1 = self
                    .vmsa_cpu1
                    .clone()
                    .context("--num-cpus > 1 needs --vmsa-cpu1")?;
                vmsas.extend(std::iter::repeat_n(cpu1, (n - 1) as usize));
            }
        }
        Ok(Some(DigestInputs {
            firmware: firmware.clone(),
            kernel: self.kernel.clone(),
            initrd: self.initrd.clone(),
            cmdline: self.cmdline.clone(),
            vmsas,
            es_vcpus,
        }))
    }

    /// The launch digest, with the computation's details when computed.
    pub fn digest(&self) -> Result<([u8; 32], Option<measure::DigestOutcome>)> {
        if let Some(inputs) = self.inputs()? {
            let out = measure::launch_digest(&inputs)?;
            return Ok((out.launch_digest, Some(out)));
        }
        match &self.launch_digest {
            Some(d) => Ok((parse_digest(d).context("--launch-digest")?, None)),
            None => {
                bail!("give the measured inputs (--firmware [--kernel ...]) or --launch-digest")
            }
        }
    }
}

#[derive(Debug, Args)]
struct MeasureArgs {
    #[command(flatten)]
    digest: DigestArgs,
    /// Guest policy (decimal or 0x hex).
    #[arg(long, value_parser = parse_policy)]
    policy: Option<Policy>,
    /// Platform firmware API major version (int or hex).
    #[arg(long, value_parser = parse_u8)]
    api_major: Option<u8>,
    /// Platform firmware API minor version (int or hex).
    #[arg(long, value_parser = parse_u8)]
    api_minor: Option<u8>,
    /// Platform firmware build id (int or hex).
    #[arg(long, value_parser = parse_u8)]
    build_id: Option<u8>,
    /// The session's TIK (path or base64).
    #[arg(long)]
    tik: Option<String>,
    /// The measurement nonce (path or base64, 16 bytes).
    #[arg(long, conflicts_with = "launch_measure_blob")]
    nonce: Option<String>,
    /// Take the nonce from this LAUNCH_MEASURE output (path or base64, 48 bytes).
    #[arg(long)]
    launch_measure_blob: Option<String>,
    /// Check this LAUNCH_MEASURE output (path or base64, 48 bytes) against the expected
    /// measurement; the nonce is taken from it.
    #[arg(long, value_name = "BLOB", conflicts_with_all = ["nonce", "launch_measure_blob"])]
    verify: Option<String>,
    /// Write the 48-byte measurement ‖ nonce here (as `sevctl measurement build --outfile`).
    #[arg(long, value_name = "FILE")]
    outfile: Option<PathBuf>,
    /// SNP: the guest features, the VMSAs' SEV_FEATURES (default 0x1, SNPActive; 0x21 adds
    /// the DebugSwap of kernels 6.6 and 6.7).
    #[arg(long, value_name = "VALUE", value_parser = parse_u64)]
    guest_features: Option<u64>,
    /// SNP: resume from this digest of the firmware pages (hex, from --mode snp:ovmf-hash)
    /// instead of measuring the firmware's pages.
    #[arg(long, value_name = "HASH")]
    snp_ovmf_hash: Option<String>,
    /// Print only the launch digest, as hex or base64 (as sev-snp-measure prints it).
    #[arg(long, value_enum, conflicts_with = "json")]
    output_format: Option<OutputFormat>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// How `--output-format` prints the launch digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutputFormat {
    /// Lower-case hex.
    Hex,
    /// Standard base64.
    Base64,
}

impl OutputFormat {
    fn encode(self, digest: &[u8]) -> String {
        match self {
            OutputFormat::Hex => hex::encode(digest),
            OutputFormat::Base64 => io::b64_encode(digest),
        }
    }
}

#[derive(Debug, Args)]
struct SecretArgs {
    /// The session's TIK (path or base64).
    #[arg(long)]
    tik: String,
    /// The session's TEK (path or base64).
    #[arg(long)]
    tek: String,
    /// LAUNCH_MEASURE output (path or base64, 48 bytes): its measurement is bound into the MAC.
    #[arg(long)]
    launch_measure_blob: String,
    /// A secret: GUID:FILE (the file's bytes) or GUID:=string; repeat for more.
    #[arg(long, value_name = "GUID:FILE|GUID:=TEXT")]
    secret: Vec<String>,
    /// Fixed IV (base64, 16 bytes) for reproducible output; random by default.
    #[arg(long)]
    iv: Option<String>,
    /// Size of the guest's secret area in bytes (default 3072, OVMF's).
    #[arg(long, value_name = "BYTES", conflicts_with = "firmware")]
    area_size: Option<usize>,
    /// Take the secret area size from this firmware's footer table.
    #[arg(long, value_name = "FILE")]
    firmware: Option<PathBuf>,
    /// Output: the 52-byte packet header.
    header_file: PathBuf,
    /// Output: the encrypted secret table.
    payload_file: PathBuf,
}

#[derive(Debug, Args)]
struct AttestVerifyArgs {
    /// The report (path or base64: query-sev-attestation-report's "data").
    #[arg(long)]
    report: String,
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    trust: TrustArgs,
    #[command(flatten)]
    digest: DigestArgs,
    /// The expected guest policy.
    #[arg(long, value_parser = parse_policy)]
    policy: Policy,
    /// The MNONCE the report was requested with (path or base64, 16 bytes).
    #[arg(long)]
    mnonce: Option<String>,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("platform").multiple(false))]
struct LaunchArgs {
    #[command(flatten)]
    source: SourceArgs,
    #[command(flatten)]
    trust: TrustArgs,
    /// Firmware image given to sevm (-bios) and measured.
    #[arg(long, value_name = "FILE")]
    firmware: PathBuf,
    /// Kernel (-kernel with kernel-hashes=on; measured, not booted by sevm).
    #[arg(long, value_name = "FILE")]
    kernel: Option<PathBuf>,
    /// Initrd (-initrd); needs --kernel.
    #[arg(long, value_name = "FILE", requires = "kernel")]
    initrd: Option<PathBuf>,
    /// Kernel command line (-append); needs --kernel.
    #[arg(long, value_name = "TEXT", requires = "kernel")]
    cmdline: Option<String>,
    /// Guest policy.
    #[arg(long, value_parser = parse_policy, default_value = "0x1")]
    policy: Policy,
    /// Guest RAM in MiB.
    #[arg(short = 'm', long, default_value = "16")]
    memory: u32,
    /// The emulated platform directory sevm uses (sev-device=emulated:DIR).
    #[arg(long, value_name = "DIR", group = "platform")]
    emulated: Option<PathBuf>,
    /// The SEV device of AMD hardware.
    #[arg(long, value_name = "PATH", group = "platform")]
    device: Option<PathBuf>,
    /// A secret to inject: GUID:FILE or GUID:=string; repeat for more.
    #[arg(long, value_name = "GUID:FILE|GUID:=TEXT")]
    secret: Vec<String>,
    /// Size of the guest's secret area in bytes.
    #[arg(long, value_name = "BYTES", default_value = "3072")]
    area_size: usize,
    /// The sevm binary (default: $SEVM_BIN, else beside sev-owner, else on PATH).
    #[arg(long, value_name = "PATH")]
    sevm: Option<PathBuf>,
    /// Attach to a sevm already started with -S on this QMP socket (with the session of
    /// --session-dir/--name) instead of starting one.
    #[arg(long, value_name = "SOCKET", requires = "session_dir")]
    attach: Option<PathBuf>,
    /// Directory of the session files the attached sevm was started with.
    #[arg(long, value_name = "DIR")]
    session_dir: Option<PathBuf>,
    /// Session file-name prefix.
    #[arg(long, default_value = "vm")]
    name: String,
    /// Directory for the session files, the QMP socket and logs (default: a new temporary one).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Read the secret page through the VMM's host view after injecting.
    #[arg(long)]
    host_view: bool,
    /// Leave the guest running after `cont` instead of waiting for it to exit.
    #[arg(long)]
    no_wait: bool,
    /// Seconds the guest may run after `cont`.
    #[arg(long, default_value = "60")]
    guest_timeout: u64,
    /// Extra sevm arguments (after `--`).
    #[arg(last = true)]
    sevm_args: Vec<String>,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// The emulated platform directory (created if missing; default:
    /// $XDG_STATE_HOME/sevm/platform or ~/.local/state/sevm/platform).
    #[arg(long, value_name = "DIR")]
    platform: Option<PathBuf>,
    /// The secret to inject.
    #[arg(
        long,
        default_value = "the owner's disk passphrase: correct horse battery staple"
    )]
    secret: String,
    /// The sevm binary (default: $SEVM_BIN, else beside sev-owner, else on PATH).
    #[arg(long, value_name = "PATH")]
    sevm: Option<PathBuf>,
    /// Run the attested launch this many times and print the timing distribution.
    #[arg(long, default_value = "1")]
    runs: u32,
    /// Launch the demo guest as an SEV-ES guest (policy ES, one EPYC-Milan vCPU whose VMSA the
    /// measurement covers); the guest talks to sevm through the GHCB.
    #[arg(long, conflicts_with = "snp")]
    es: bool,
    /// Launch the demo guest as an SEV-SNP guest (one EPYC-Milan vCPU): the owner signs an ID
    /// block for the expected launch digest, which the firmware checks at SNP_LAUNCH_FINISH; the
    /// guest prints its secrets and CPUID pages through the GHCB (no secret is injected: SNP
    /// guests receive secrets after attestation).
    #[arg(long, conflicts_with_all = ["secret", "runs"])]
    snp: bool,
    /// With --snp: write the guest's report (report.bin), the emulated ARK, ASK and VCEK of its
    /// TCB (ark.pem, ask.pem, vcek.pem, as snpguest reads them) and the measured firmware
    /// (firmware.fd) into DIR (created if missing; existing files are never overwritten).
    #[arg(long, value_name = "DIR", requires = "snp")]
    export: Option<PathBuf>,
}

/// Entry point of the `sev-owner` binary.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    super::run_main("sev-owner", args, run)
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Verify(a) => verify(a),
        Cmd::Session(a) => session_cmd(a),
        Cmd::Measure(a) => measure_cmd(a),
        Cmd::Secret(a) => secret_cmd(a),
        Cmd::IdBlock(a) => super::id_block::run(a),
        Cmd::Attestation {
            cmd: AttestationCmd::Verify(a),
        } => attest_cmd(a),
        Cmd::Snp { cmd } => super::snp::run(cmd),
        Cmd::Launch(a) => launch_cmd(a),
        Cmd::Demo(a) if a.snp => super::demo::run_snp(a.platform, a.sevm, a.export),
        Cmd::Demo(a) => {
            let mode = if a.es {
                super::demo::DemoMode::SevEs
            } else {
                super::demo::DemoMode::Sev
            };
            super::demo::run(a.platform, a.secret, a.sevm, a.runs, mode)
        }
    }
}

fn verify(a: VerifyArgs) -> Result<()> {
    let v = verify_chain(&a.source, &a.trust)?;
    print!("{}", v.render());
    v.into_result()?;
    Ok(())
}

fn session_cmd(a: SessionArgs) -> Result<()> {
    let v = verify_chain(&a.source, &a.trust)?;
    let origin = v.origin.clone();
    let (verified, _) = v.into_result().context(
        "refusing to create a session for an unverified PDH (run `sev-owner verify` for details)",
    )?;
    let paths = SessionPaths::new(&a.out_dir, &a.name)?;
    let files = session::create(&verified, a.policy.bits(), &mut rand_core::OsRng);
    files.write(&paths)?;
    println!(
        "session for policy {} with the verified PDH of {origin}",
        a.policy
    );
    for p in [&paths.godh, &paths.session, &paths.tek, &paths.tik] {
        println!("wrote {}", p.display());
    }
    Ok(())
}

fn firmware_version(a: &MeasureArgs) -> Result<FirmwareVersion> {
    let need = |v: Option<u8>, name: &str| {
        v.with_context(|| format!("{name} is needed to compute the measurement"))
    };
    Ok(FirmwareVersion {
        api_major: need(a.api_major, "--api-major")?,
        api_minor: need(a.api_minor, "--api-minor")?,
        build: need(a.build_id, "--build-id")?,
    })
}

fn measure_cmd(a: MeasureArgs) -> Result<()> {
    if matches!(a.digest.mode, Some(Mode::Snp | Mode::SnpOvmfHash)) {
        return snp_measure_cmd(&a);
    }
    if a.guest_features.is_some() || a.snp_ovmf_hash.is_some() {
        bail!("--guest-features and --snp-ovmf-hash apply to --mode snp");
    }
    let (ld, outcome) = a.digest.digest()?;
    let mut report = json!({ "launch_digest": hex::encode(ld) });
    if let Some(o) = &outcome {
        report["input_bytes"] = json!(o.input_bytes);
        report["seconds"] = json!(o.elapsed.as_secs_f64());
        if let Some(h) = &o.hashes {
            report["kernel_hashes"] = json!({
                "cmdline": hex::encode(h.cmdline),
                "initrd": hex::encode(h.initrd),
                "kernel": hex::encode(h.kernel),
            });
        }
    }
    let Some(tik_arg) = &a.tik else {
        if a.verify.is_some() || a.nonce.is_some() || a.launch_measure_blob.is_some() {
            bail!("--tik is needed to compute the measurement");
        }
        if a.outfile.is_some() {
            bail!("--outfile needs the measurement: give --tik, --nonce or --launch-measure-blob, and the firmware version");
        }
        return print_measure(&a, &report, outcome.as_ref());
    };
    let tik = Tik::from_slice(&io::path_or_b64_key("--tik", tik_arg)?)?;
    let policy = a
        .policy
        .context("--policy is needed to compute the measurement")?;
    let fw = firmware_version(&a)?;
    let verify_blob = match &a.verify {
        Some(v) => Some(MeasureBlob::decode(&path_or_b64("--verify", v, Some(48))?)?),
        None => None,
    };
    let mnonce: [u8; 16] = match (&a.nonce, &a.launch_measure_blob, &verify_blob) {
        (Some(n), _, _) => path_or_b64_array("--nonce", n)?,
        (_, Some(b), _) => {
            MeasureBlob::decode(&path_or_b64("--launch-measure-blob", b, Some(48))?)?.mnonce
        }
        (_, _, Some(b)) => b.mnonce,
        _ => bail!(
            "one of --nonce, --launch-measure-blob or --verify must give the measurement nonce"
        ),
    };
    let m = measure::expected_measurement(&tik, fw, policy.bits(), &ld, &mnonce);
    let blob = MeasureBlob {
        measurement: m,
        mnonce,
    }
    .to_bytes();
    report["measurement"] = json!(hex::encode(m));
    report["mnonce"] = json!(hex::encode(mnonce));
    report["blob"] = json!(io::b64_encode(&blob));
    report["policy"] = json!(policy.bits());
    report["firmware"] =
        json!({"api_major": fw.api_major, "api_minor": fw.api_minor, "build": fw.build});
    if let Some(out) = &a.outfile {
        // Not fsynced: docs/guide/sev-owner.md#measure.
        io::write_atomic_unsynced(out, &blob, 0o644)?;
    }
    let verdict = verify_blob.map(|b| measure::verify_blob(&tik, fw, policy.bits(), &ld, &b));
    if let Some(v) = &verdict {
        report["verified"] = json!(v.is_ok());
        if let Err(m) = v {
            report["mismatch"] = json!(m.to_string());
        }
    }
    print_measure(&a, &report, outcome.as_ref())?;
    match verdict {
        Some(Err(m)) => bail!("measurement does not match: {m}"),
        _ => Ok(()),
    }
}

fn print_measure(
    a: &MeasureArgs,
    report: &serde_json::Value,
    outcome: Option<&measure::DigestOutcome>,
) -> Result<()> {
    if a.json {
        println!("{report:#}");
        return Ok(());
    }
    if let Some(format) = a.output_format {
        let digest = report
            .get("launch_digest")
            .and_then(|v| v.as_str())
            .and_then(|h| hex::decode(h).ok())
            .unwrap_or_default();
        println!("{}", format.encode(&digest));
        return Ok(());
    }
    let s = |k: &str| {
        report
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    println!("launch digest: {}", s("launch_digest"));
    if let Some(o) = outcome {
        println!(
            "  hashed {} bytes in {:.1} ms ({:.0} MB/s)",
            o.input_bytes,
            o.elapsed.as_secs_f64() * 1e3,
            o.throughput() / 1e6
        );
        if let Some(h) = &o.hashes {
            println!("  kernel-hashes table: cmdline {}", hex::encode(h.cmdline));
            println!("                       initrd  {}", hex::encode(h.initrd));
            println!("                       kernel  {}", hex::encode(h.kernel));
        }
    }
    if report.get("measurement").is_some() {
        println!("measurement:   {}", s("measurement"));
        println!("mnonce:        {}", s("mnonce"));
        println!("blob (base64): {}", s("blob"));
        if let Some(out) = &a.outfile {
            println!("wrote {}", out.display());
        }
    }
    match report.get("verified").and_then(|v| v.as_bool()) {
        Some(true) => println!("measurement verified: the launch-measure blob matches"),
        Some(false) => println!("measurement MISMATCH: {}", s("mismatch")),
        None => {}
    }
    Ok(())
}

/// `measure --mode snp` and `--mode snp:ovmf-hash`: the SHA-384 launch digest, which the
/// attestation report carries as MEASUREMENT (there is no LAUNCH_MEASURE to compute).
fn snp_measure_cmd(a: &MeasureArgs) -> Result<()> {
    let d = &a.digest;
    let mode = d.mode.unwrap_or(Mode::Snp);
    if a.tik.is_some()
        || a.nonce.is_some()
        || a.launch_measure_blob.is_some()
        || a.verify.is_some()
        || a.outfile.is_some()
        || a.policy.is_some()
        || a.api_major.is_some()
        || a.api_minor.is_some()
        || a.build_id.is_some()
    {
        bail!("SNP has no LAUNCH_MEASURE: compare the launch digest with the attestation report's MEASUREMENT (--tik, --nonce, --launch-measure-blob, --verify, --outfile, --policy and the firmware version apply to SEV and SEV-ES)");
    }
    if d.num_cpus.is_some() {
        bail!("--num-cpus takes SEV-ES VMSA files; for SNP give --vcpus and --vcpu-type");
    }
    let firmware = d
        .firmware
        .as_ref()
        .with_context(|| format!("--mode {} needs --firmware", mode.name()))?;
    let mut report = json!({ "mode": mode.name() });
    let ld = if mode == Mode::SnpOvmfHash {
        if d.kernel.is_some()
            || d.vcpu.any()
            || a.guest_features.is_some()
            || a.snp_ovmf_hash.is_some()
        {
            bail!("--mode snp:ovmf-hash measures the firmware pages only: no kernel, vCPU or guest-feature options");
        }
        measure::snp_ovmf_hash(firmware)?
    } else {
        let ovmf_hash = a
            .snp_ovmf_hash
            .as_deref()
            .map(|h| {
                hex::decode(h.trim())
                    .ok()
                    .and_then(|b| <[u8; 48]>::try_from(b).ok())
                    .with_context(|| format!("--snp-ovmf-hash {h:?} is not 96 hex digits"))
            })
            .transpose()?;
        if d.vcpu.legacy_es_init {
            bail!("--legacy-es-init is SEV-ES only: every SNP VM is set up with KVM_SEV_INIT2");
        }
        let signature = d.vcpu.signature("snp")?;
        let features = SevFeatures::from_bits(a.guest_features.unwrap_or(1));
        let inputs = SnpInputs {
            firmware: firmware.clone(),
            kernel: d.kernel.clone(),
            initrd: d.initrd.clone(),
            cmdline: d.cmdline.clone(),
            ovmf_hash,
            vcpus: d.vcpu.count("snp")?,
            vmsa: VmsaConfig::new(d.vcpu.vmm_type, signature, features),
        };
        let out = measure::snp_launch_digest(&inputs)?;
        report["vcpus"] = json!(inputs.vcpus);
        report["vcpu_signature"] = json!(format!("{signature}"));
        report["vmm_type"] = json!(d.vcpu.vmm_type.name());
        report["guest_features"] = json!(format!("{:#x}", features.bits()));
        report["input_bytes"] = json!(out.input_bytes);
        report["seconds"] = json!(out.elapsed.as_secs_f64());
        if let Some(h) = &out.hashes {
            report["kernel_hashes"] = json!({
                "cmdline": hex::encode(h.cmdline),
                "initrd": hex::encode(h.initrd),
                "kernel": hex::encode(h.kernel),
            });
        }
        out.launch_digest
    };
    report["launch_digest"] = json!(hex::encode(ld));
    if a.json {
        println!("{report:#}");
    } else if let Some(format) = a.output_format {
        println!("{}", format.encode(&ld));
    } else {
        println!("launch digest: {}", hex::encode(ld));
        if let Some(v) = report.get("vcpus") {
            println!(
                "  {v} vCPU(s), signature {}, VMM {}, guest features {}",
                report["vcpu_signature"].as_str().unwrap_or(""),
                report["vmm_type"].as_str().unwrap_or(""),
                report["guest_features"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

fn secret_area_size(a: &SecretArgs) -> Result<usize> {
    if let Some(n) = a.area_size {
        return Ok(n);
    }
    let Some(fw) = &a.firmware else {
        return Ok(secret::DEFAULT_LIMIT);
    };
    let image = io::read_file_max(fw, 256 << 20)?;
    let table = FooterTable::parse(&image).with_context(|| format!("firmware {}", fw.display()))?;
    let area = table
        .sev_secret_block()
        .with_context(|| format!("firmware {}", fw.display()))?
        .with_context(|| {
            format!(
                "firmware {} has no SEV secret area (footer GUID 4c2eb361-…)",
                fw.display()
            )
        })?;
    Ok(area.size as usize)
}

fn secret_cmd(a: SecretArgs) -> Result<()> {
    let tek = sev_proto::session::Tek::from_slice(&io::path_or_b64_key("--tek", &a.tek)?)?;
    let tik = Tik::from_slice(&io::path_or_b64_key("--tik", &a.tik)?)?;
    let blob = MeasureBlob::decode(&path_or_b64(
        "--launch-measure-blob",
        &a.launch_measure_blob,
        Some(48),
    )?)?;
    let iv: [u8; 16] = match &a.iv {
        Some(text) => {
            let v = io::b64_decode("--iv", text)?;
            <[u8; 16]>::try_from(v.as_slice())
                .map_err(|_| anyhow::anyhow!("--iv is {} bytes, expected 16", v.len()))?
        }
        None => {
            let mut iv = [0u8; 16];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut iv);
            iv
        }
    };
    let specs = a
        .secret
        .iter()
        .map(|s| secret::parse_spec(s))
        .collect::<Result<Vec<_>, _>>()?;
    let limit = secret_area_size(&a)?;
    let keys = sev_proto::session::TransportKeys { tek, tik };
    let packet = secret::build(&specs, &keys, &blob.measurement, &iv, limit)?;
    let mut set = io::OutputSet::new();
    set.stage(&a.header_file, &packet.header, 0o600)?;
    set.stage(&a.payload_file, &packet.payload, 0o600)?;
    set.commit()?;
    println!(
        "secret table: {} entr{}, {} bytes ({} padded, area {limit})",
        specs.len(),
        if specs.len() == 1 { "y" } else { "ies" },
        packet.table_len,
        packet.payload.len()
    );
    println!("Wrote header to: {}", a.header_file.display());
    println!("Wrote payload to: {}", a.payload_file.display());
    Ok(())
}

fn attest_cmd(a: AttestVerifyArgs) -> Result<()> {
    let report = path_or_b64(
        "--report",
        &a.report,
        Some(sev_proto::attestation::REPORT_LEN),
    )?;
    let v = verify_chain(&a.source, &a.trust)?;
    let (verified, _) = v
        .into_result()
        .context("the chain that should vouch for the PEK")?;
    let (ld, _) = a.digest.digest()?;
    let mnonce = match &a.mnonce {
        Some(m) => Some(path_or_b64_array::<16>("--mnonce", m)?),
        None => None,
    };
    let expected = attest::Expected {
        launch_digest: Some(ld),
        policy: Some(a.policy.bits()),
        mnonce,
    };
    let r = attest::verify_report(&report, &verified, &expected)?;
    println!("attestation report verified:");
    println!("  signed by the PEK of the verified chain");
    println!(
        "  launch digest {} (as expected)",
        hex::encode(r.launch_digest())
    );
    println!("  policy {} (as expected)", Policy::from_bits(r.policy()));
    match mnonce {
        Some(_) => println!("  mnonce {} (as requested)", hex::encode(r.mnonce())),
        None => println!(
            "  mnonce {} (not checked: no --mnonce)",
            hex::encode(r.mnonce())
        ),
    }
    Ok(())
}

fn print_step(step: &launch::Step) {
    println!(
        "[{:>8.2} ms] {:<18} {}",
        step.elapsed.as_secs_f64() * 1e3,
        step.name,
        step.detail
    );
}

fn launch_cmd(a: LaunchArgs) -> Result<()> {
    let mut trust = a.trust.trust()?;
    if let Some(dir) = &a.emulated {
        trust = super::recognise_emulated_root(trust, dir);
    }
    let device = match (&a.emulated, &a.device) {
        (Some(d), _) => launch::Device::Emulated(d.clone()),
        (None, Some(p)) => launch::Device::Hardware(p.clone()),
        (None, None) => launch::Device::Hardware(PathBuf::from("/dev/sev")),
    };
    let chain = if a.source.given() {
        launch::ChainInput::Source(a.source.source()?)
    } else if a.attach.is_some() {
        launch::ChainInput::Attached
    } else {
        launch::ChainInput::Probe
    };
    let secrets = a
        .secret
        .iter()
        .map(|s| secret::parse_spec(s))
        .collect::<Result<Vec<_>, _>>()?;
    let tmp;
    let work_dir = match &a.work_dir {
        Some(d) => d.clone(),
        None => {
            tmp = temp_dir()?;
            tmp.path().to_path_buf()
        }
    };
    let attach = match (&a.attach, &a.session_dir) {
        (Some(sock), Some(dir)) => Some(launch::Attach {
            qmp: sock.clone(),
            session: SessionPaths::new(dir, &a.name)?,
        }),
        _ => None,
    };
    let plan = launch::Plan {
        sevm: a.sevm.clone().unwrap_or_else(launch::find_sevm),
        device,
        chain,
        ca: a.trust.ca_options(),
        trust,
        policy: a.policy,
        digest: DigestInputs {
            firmware: a.firmware.clone(),
            kernel: a.kernel.clone(),
            initrd: a.initrd.clone(),
            cmdline: a.cmdline.clone(),
            vmsas: vec![],
            es_vcpus: None,
        },
        memory_mib: a.memory,
        secrets,
        secret_limit: a.area_size,
        work_dir,
        attach,
        extra_args: a.sevm_args.clone(),
        host_view: a.host_view,
        wait_for_guest: !a.no_wait,
        guest_timeout: std::time::Duration::from_secs(a.guest_timeout),
    };
    let report = launch::run(&plan, &mut print_step)?;
    if !report.guest_output.is_empty() {
        println!("--- guest output ---");
        print!("{}", report.guest_output);
        println!("--- end of guest output ---");
    }
    if let Some(hv) = &report.host_view {
        match hv {
            Ok(text) => println!("host view of the secret area:\n{text}"),
            Err(e) => println!("host view of the secret area not available: {e}"),
        }
    }
    println!(
        "attested launch done in {:.1} ms",
        report.total.as_secs_f64() * 1e3
    );
    match report.exit_code {
        Some(0) | None => Ok(()),
        Some(c) => bail!("the guest exited with status {c}"),
    }
}
