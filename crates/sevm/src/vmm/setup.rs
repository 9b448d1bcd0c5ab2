//! What both builders do before their paths part: read every input file,
//! open the SEV platform and check the options against it (as QEMU's
//! `sev_kvm_init` does), and create the KVM machine with its devices.
//! [`super::boot`] then runs the launch flow on it, [`super::incoming`]
//! waits for the guest to arrive.

use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};

use sev_proto::abi::Policy;
use sev_proto::ovmf::{FooterTable, KernelHashes, OvmfArea, ResetVector, PADDED_HASH_TABLE_LEN};
use sev_proto::vmsa::KvmInit;

use super::certs;
use super::files::{self, FileError};
use super::state::{LaunchPhase, SevContext, SnpContext, SnpPhase};
use super::{machine_err, VmmError};
use crate::config::{OnOffAuto, SerialConfig, SevGuestConfig, SnpCertSource, VmConfig};
use crate::devices::serial::SerialOutput;
use crate::ghcb::SevMode;
use crate::machine::{Machine, MachineConfig};
use crate::memory::MAX_FIRMWARE_SIZE;
use crate::sev::es::{self, InitialVmsas};
use crate::sev::snp::FinishInputs;
use crate::sev::{
    self, EncryptionParams, GuestContext, GuestKind, LaunchSession, PlatformManagement,
    PlatformStatus, SevError, SevPlatform,
};
use crate::vcpu::SevCpuid;

/// The machine, created, and what the builders need to finish the VM.
pub(super) struct Prepared<'a> {
    /// The KVM machine with its memory and devices (no SEV context yet).
    pub machine: Machine,
    /// The size of the firmware image mapped below 4 GiB.
    pub firmware_size: u64,
    /// The owner's GODH and session (`dh-cert-file`, `session-file`).
    pub launch_session: Option<LaunchSession>,
    /// The kernel-hashes table and where the firmware wants it.
    pub hashes: Option<(OvmfArea, KernelHashes)>,
    /// The firmware's secret area.
    pub secret_area: Option<OvmfArea>,
    /// The opened and checked SEV platform, when the guest is an SEV guest.
    pub sev: Option<SevPlatformSetup<'a>>,
    /// The vCPUs' initial VMSAs, when the guest is an SEV-ES or SNP guest.
    pub vmsas: Option<InitialVmsas>,
    /// What an SNP launch needs besides the machine (`sev-snp-guest`).
    pub snp: Option<SnpInputs>,
}

/// What an SNP launch needs, read and checked before the machine exists.
#[derive(Debug)]
pub(super) struct SnpInputs {
    /// The firmware's metadata ranges in launch order with their page
    /// types, and the kernel-hashes page.
    pub updates: Vec<sev_proto::snp::measure::MetadataUpdate>,
    /// The kernel-hashes page (`-kernel` with `kernel-hashes=on`).
    pub hashes_page: Option<Box<[u8; 4096]>>,
    /// What SNP_LAUNCH_FINISH is given.
    pub finish: FinishInputs,
    /// The certificate table of the guest's extended requests
    /// (`x-sevm-certs=`), `None` for the default empty table.
    pub cert_table: Option<Vec<u8>>,
}

/// The SEV platform, opened and checked against the `sev-guest` options.
pub(super) struct SevPlatformSetup<'a> {
    /// The `sev-guest` object.
    pub guest: &'a SevGuestConfig,
    platform: Arc<dyn SevPlatform>,
    info: PlatformStatus,
    params: EncryptionParams,
    /// The guest's kind (SEV or SEV-ES), from its policy.
    pub kind: GuestKind,
}

impl SevPlatformSetup<'_> {
    /// The guest's policy.
    pub fn policy(&self) -> Policy {
        Policy::from_bits(self.guest.policy)
    }

    /// Attaches the SEV guest context to `machine` (KVM_SEV_INIT on
    /// hardware) before any vCPU runs.
    pub fn attach(&self, machine: &mut Machine) -> Result<Arc<dyn GuestContext>, VmmError> {
        Ok(sev::attach(self.platform.as_ref(), machine, self.kind)?)
    }

    /// Attaches the SNP guest context to `machine` before any vCPU runs.
    pub fn attach_snp(
        &self,
        machine: &mut Machine,
    ) -> Result<Arc<dyn crate::sev::SnpGuestContext>, VmmError> {
        Ok(sev::attach_snp(self.platform.as_ref(), machine)?)
    }

    /// The VM's SEV-SNP side, its launch at `launch`.
    pub fn into_snp_context(
        self,
        backend: Arc<dyn crate::sev::SnpGuestContext>,
        finish: FinishInputs,
        launch: SnpPhase,
    ) -> SnpContext {
        SnpContext {
            platform: self.platform,
            backend,
            info: self.info,
            params: self.params,
            finish,
            launch: Mutex::new(launch),
        }
    }

    /// The VM's SEV side, its launch at `launch`.
    pub fn into_context(
        self,
        backend: Arc<dyn GuestContext>,
        handle: u32,
        secret_area: Option<OvmfArea>,
        launch: LaunchPhase,
    ) -> SevContext {
        SevContext {
            policy: self.policy(),
            platform: self.platform,
            backend,
            info: self.info,
            params: self.params,
            handle: AtomicU32::new(handle),
            secret_area,
            launch: Mutex::new(launch),
        }
    }
}

/// Reads the inputs, opens the SEV platform, checks the options against
/// it and creates the machine.
pub(super) fn prepare(config: &VmConfig) -> Result<Prepared<'_>, VmmError> {
    let sev_cfg = config.sev_guest();
    let mut inputs = read_inputs(config, sev_cfg)?;

    let mut sev_setup = None;
    if let Some(g) = sev_cfg {
        let platform = sev::open_platform(&g.sev_device).map_err(|e| match e {
            SevError::Platform(problem) => VmmError::Config {
                option: sev_option(g),
                problem,
            },
            other => other.into(),
        })?;
        if let crate::config::SevDevice::Emulated { state_dir } = &g.sev_device {
            eprintln!(
                "sevm: using the EMULATED AMD SP in {} (not hardware)",
                state_dir.display()
            );
        }
        let info = platform.status()?;
        let params = platform.encryption_params()?;
        check_platform(g, &info, &params, platform.as_ref())?;
        if let (Some(snp), Some(snp_inputs)) = (&g.snp, inputs.snp.as_mut()) {
            if snp.certs == SnpCertSource::Platform {
                snp_inputs.cert_table =
                    Some(certs::from_platform(platform.as_ref()).map_err(|problem| {
                        VmmError::Config {
                            option: sev_option(g),
                            problem: format!("x-sevm-certs=platform: {problem}"),
                        }
                    })?);
            }
        }
        sev_setup = Some(SevPlatformSetup {
            guest: g,
            platform,
            info,
            params,
            kind: if g.snp.is_some() {
                GuestKind::Snp
            } else {
                GuestKind::of_policy(Policy::from_bits(g.policy))
            },
        });
    }

    let vmsas = match inputs.es_reset {
        Some(reset) => {
            let signature =
                es::cpu_signature(config.cpu.as_ref()).map_err(|e| VmmError::Config {
                    option: "-cpu".into(),
                    problem: e.to_string(),
                })?;
            if inputs.snp.is_some() {
                Some(InitialVmsas::snp(signature, config.cpus, reset))
            } else {
                // UNCERTAIN (docs/protocol/choices.md#u34): the legacy FPU
                // convention unless legacy-vm-type=off.
                let init = match sev_cfg.and_then(|g| g.legacy_vm_type) {
                    Some(OnOffAuto::Off) => KvmInit::Init2,
                    _ => KvmInit::LegacyEsInit,
                };
                Some(InitialVmsas::new(signature, config.cpus, reset, init))
            }
        }
        None => None,
    };
    let kind = sev_setup.as_ref().map_or(GuestKind::Sev, |s| s.kind);
    let firmware_size = inputs.firmware.len() as u64;
    let mut mc = MachineConfig::new(config.memory, inputs.firmware);
    mc.vcpus = config.cpus;
    mc.qemu_thread_names = config.debug_threads;
    // Pre-copy migration needs KVM's dirty page log.
    mc.dirty_logging = sev_setup.is_some();
    mc.serial = serial_output(config)?;
    mc.pre_vcpu_hook = sev_setup
        .as_ref()
        .and_then(|s| sev::pre_vcpu_hook(&s.platform, kind));
    // The emulated platform's guest sees its SEV mode in CPUID and the SEV
    // MSRs, and talks to sevm through the GHCB (docs/sev-es.md#the-ghcb-path).
    mc.emulated_sev = sev_setup
        .as_ref()
        .filter(|s| s.platform.is_emulated())
        .map(|s| SevCpuid {
            mode: SevMode::of_kind(s.kind),
            c_bit: u8::try_from(s.params.cbitpos).unwrap_or(0),
            reduced_phys_bits: u8::try_from(s.params.reduced_phys_bits).unwrap_or(0),
        });
    let machine = Machine::new(mc).map_err(machine_err)?;
    Ok(Prepared {
        machine,
        firmware_size,
        launch_session: inputs.launch_session,
        hashes: inputs.hashes,
        secret_area: inputs.secret_area,
        sev: sev_setup,
        vmsas,
        snp: inputs.snp,
    })
}

/// The option text QEMU would name for the SEV object.
pub(super) fn sev_option(g: &SevGuestConfig) -> String {
    format!("-object {},id={}", g.qom_type(), g.id)
}

fn serial_output(cfg: &VmConfig) -> Result<SerialOutput, VmmError> {
    Ok(match cfg.effective_serial() {
        SerialConfig::Stdio => SerialOutput::Stdout,
        SerialConfig::Null | SerialConfig::None => SerialOutput::Null,
        SerialConfig::File(path) => SerialOutput::File(std::fs::File::create(&path).map_err(
            |source| FileError::Io {
                what: "-serial file",
                path: path.clone(),
                source,
            },
        )?),
    })
}

/// Everything read from disk before the machine exists.
struct Inputs {
    firmware: Vec<u8>,
    firmware_path: PathBuf,
    /// The owner's GODH and session (`dh-cert-file`, `session-file`).
    launch_session: Option<LaunchSession>,
    hashes: Option<(OvmfArea, KernelHashes)>,
    secret_area: Option<OvmfArea>,
    /// The SEV-ES AP reset address from the firmware (SEV-ES and SNP
    /// guests only).
    es_reset: Option<ResetVector>,
    /// What an SNP launch needs (`sev-snp-guest` only).
    snp: Option<SnpInputs>,
}

fn read_inputs(cfg: &VmConfig, sev: Option<&SevGuestConfig>) -> Result<Inputs, VmmError> {
    let firmware_path = match cfg.firmware() {
        Some(crate::config::Firmware::Bios(p)) => p,
        Some(crate::config::Firmware::Pflash { code, vars }) => {
            if let Some(v) = vars {
                log::warn!(
                    "pflash unit 1 ({}) is not mapped: sevm maps only the firmware image",
                    v.file.display()
                );
            }
            code.file
        }
        None => return Err(VmmError::Config {
            option: "-bios".into(),
            problem:
                "no firmware given: use -bios FILE or -drive if=pflash,format=raw,unit=0,file=FILE \
                          (sevm -write-demo-guest FILE writes the bundled demo guest)"
                    .into(),
        }),
    };
    // One byte more than can be mapped, so the size check below names it.
    let firmware = files::read("firmware image", &firmware_path, MAX_FIRMWARE_SIZE + 1)?;
    if firmware.is_empty() {
        return Err(FileError::Size {
            what: "firmware image",
            path: firmware_path,
            problem: "is empty".into(),
        }
        .into());
    }
    if firmware.len() as u64 > MAX_FIRMWARE_SIZE {
        return Err(FileError::Size {
            what: "firmware image",
            path: firmware_path,
            problem: format!(
                "is {} bytes; at most {MAX_FIRMWARE_SIZE} bytes (16 MiB) can be mapped below 4 GiB",
                firmware.len()
            ),
        }
        .into());
    }
    let mut inputs = Inputs {
        firmware,
        firmware_path,
        launch_session: None,
        hashes: None,
        secret_area: None,
        es_reset: None,
        snp: None,
    };
    let Some(g) = sev else {
        return Ok(inputs);
    };
    let option = sev_option(g);
    if !inputs.firmware.len().is_multiple_of(16) {
        return Err(FileError::Size {
            what: "firmware image",
            path: inputs.firmware_path,
            problem: format!(
                "is {} bytes; LAUNCH_UPDATE_DATA needs a multiple of 16 bytes",
                inputs.firmware.len()
            ),
        }
        .into());
    }
    match (&g.dh_cert_file, &g.session_file) {
        (Some(dh), Some(session)) => {
            inputs.launch_session = Some(LaunchSession {
                godh: files::read_godh(dh)?,
                session: files::read_session(session)?,
            });
        }
        (None, None) => {}
        (Some(_), None) | (None, Some(_)) => {
            return Err(VmmError::Config {
                option,
                problem: "dh-cert-file and session-file must be given together \
                          (the owner's GODH certificate and its launch session)"
                    .into(),
            })
        }
    }
    let table = FooterTable::parse(&inputs.firmware).map_err(|e| VmmError::Config {
        option: "-bios".into(),
        problem: format!(
            "{}: bad OVMF footer table: {e}",
            inputs.firmware_path.display()
        ),
    })?;
    inputs.secret_area = table.sev_secret_block().ok().flatten();
    if g.snp.is_some() || Policy::from_bits(g.policy).es() {
        // As QEMU's sev_es_save_reset_vector: an SEV-ES guest needs the
        // firmware's AP reset address, whatever the vCPU count.
        let missing = |problem: String| VmmError::Config {
            option: "-bios".into(),
            problem: format!("{}: SEV-ES: {problem}", inputs.firmware_path.display()),
        };
        inputs.es_reset = Some(
            table
                .sev_es_reset_vector()
                .map_err(|e| missing(format!("bad SEV-ES reset block: {e}")))?
                .ok_or_else(|| {
                    missing(
                        "SEV information block/Firmware GUID Table block not found in pflash \
                         rom (the firmware has no SEV-ES AP reset address, or it is zero)"
                            .into(),
                    )
                })?,
        );
    }
    if g.kernel_hashes {
        if let Some(kernel_path) = &cfg.kernel {
            let area = table.check_hashes_area().map_err(|e| VmmError::Config {
                option: option.clone(),
                problem: format!(
                    "kernel-hashes=on: the firmware {} cannot measure -kernel: {e}",
                    inputs.firmware_path.display()
                ),
            })?;
            let end = u64::from(area.base) + PADDED_HASH_TABLE_LEN as u64;
            if end > cfg.memory {
                return Err(VmmError::Config {
                    option: "-m".into(),
                    problem: format!(
                        "the firmware's kernel-hashes area at {:#x} lies outside the {} bytes of RAM",
                        area.base, cfg.memory
                    ),
                });
            }
            // Neither can be larger than the guest's RAM it is loaded into.
            let kernel = files::read("-kernel", kernel_path, cfg.memory)?;
            let initrd = match &cfg.initrd {
                Some(p) => Some(files::read("-initrd", p, cfg.memory)?),
                None => None,
            };
            let hashes = KernelHashes::new(
                cfg.append.as_deref().map(str::as_bytes),
                initrd.as_deref(),
                &kernel,
            );
            inputs.hashes = Some((area, hashes));
        }
    }
    if let Some(snp) = &g.snp {
        inputs.snp = Some(snp_inputs(g, snp, &table, &inputs)?);
    }
    Ok(inputs)
}

/// The SNP launch plan of the firmware (its SEV metadata, which an image
/// without it cannot give: refused) and the decoded SNP_LAUNCH_FINISH
/// inputs.
fn snp_inputs(
    g: &SevGuestConfig,
    snp: &crate::config::SnpGuestOptions,
    table: &FooterTable<'_>,
    inputs: &Inputs,
) -> Result<SnpInputs, VmmError> {
    use sev_proto::snp::measure::{kernel_hashes_page, metadata_updates};
    use sev_proto::snp::{IdAuth, IdBlock, SnpMeasureError};
    let option = sev_option(g);
    let bios = |problem: String| VmmError::Config {
        option: "-bios".into(),
        problem: format!("{}: SEV-SNP: {problem}", inputs.firmware_path.display()),
    };
    if !inputs.firmware.len().is_multiple_of(4096) {
        return Err(bios(format!(
            "the image is {} bytes; SNP_LAUNCH_UPDATE needs whole 4 KiB pages",
            inputs.firmware.len()
        )));
    }
    let metadata = table
        .sev_metadata()
        .map_err(|e| bios(format!("bad SEV metadata: {e}")))?
        .ok_or_else(|| bios(SnpMeasureError::NoMetadata.to_string()))?;
    let kernel = inputs.hashes.is_some();
    let updates = metadata_updates(&metadata, kernel, sev_proto::vmsa::VmmType::Qemu)
        .map_err(|e| bios(e.to_string()))?;
    let hashes_page = match &inputs.hashes {
        Some((_, hashes)) => Some(Box::new(
            kernel_hashes_page(table, hashes).map_err(|e| bios(e.to_string()))?,
        )),
        None => None,
    };
    let invalid = |property: &str, problem: String| VmmError::Config {
        option: option.clone(),
        problem: format!("{property}: {problem}"),
    };
    let id = match (&snp.id_block, &snp.id_auth) {
        (None, None) => None,
        (Some(block), Some(auth)) => {
            let block = IdBlock::decode(block).map_err(|e| invalid("id-block", e.to_string()))?;
            // KVM reads 4096 bytes: a shorter id-auth is zero-padded, as QEMU
            // pads it.
            let mut padded = vec![0u8; sev_proto::snp::id_block::ID_AUTH_LEN];
            padded[..auth.len()].copy_from_slice(auth);
            let auth = IdAuth::decode(&padded, snp.author_key_enabled)
                .map_err(|e| invalid("id-auth", e.to_string()))?;
            Some((block, auth))
        }
        (Some(_), None) => {
            return Err(invalid(
                "id-block",
                "needs id-auth (SNP_LAUNCH_FINISH takes the ID block with its ID \
                 authentication structure)"
                    .into(),
            ))
        }
        (None, Some(_)) => return Err(invalid("id-auth", "is given without id-block".into())),
    };
    let cert_table = match &snp.certs {
        SnpCertSource::None | SnpCertSource::Platform => None,
        SnpCertSource::Path(path) => Some(certs::read_path(path)?),
    };
    Ok(SnpInputs {
        updates,
        hashes_page,
        cert_table,
        finish: FinishInputs {
            id,
            author_key_en: snp.author_key_enabled,
            host_data: snp.host_data,
        },
    })
}

/// Checks the SEV options against the platform, as QEMU's `sev_kvm_init`.
fn check_platform(
    g: &SevGuestConfig,
    info: &PlatformStatus,
    params: &EncryptionParams,
    platform: &dyn PlatformManagement,
) -> Result<(), VmmError> {
    let option = sev_option(g);
    if let Some(c) = g.cbitpos {
        if c != params.cbitpos {
            return Err(VmmError::Config {
                option,
                problem: format!(
                    "cbitpos check failed, host '{}' requested '{c}'",
                    params.cbitpos
                ),
            });
        }
    }
    // UNCERTAIN (docs/protocol/memory.md#cbitpos): the guest-visible reduced-phys-bits is
    // checked as QEMU does (1..=63), once, by `VmConfig::validate`, not
    // against the host's EBX[11:6]: the architecturally correct guest value
    // is 1 whatever the host reduction is.
    if g.snp
        .as_ref()
        .is_some_and(|s| s.certs != SnpCertSource::None)
        && !platform.is_emulated()
    {
        return Err(VmmError::Config {
            option,
            problem: "x-sevm-certs: only the emulated SEV device takes a certificate table \
                      (on hardware KVM answers the guest's requests itself)"
                .into(),
        });
    }
    if g.legacy_vm_type == Some(OnOffAuto::Off) && !platform.is_emulated() {
        return Err(VmmError::Config {
            option,
            problem: "legacy-vm-type: off (KVM_SEV_INIT2) is not supported by sevm on SEV \
                      hardware: it initialises hardware SEV guests with KVM_SEV_INIT only (use \
                      on or auto)"
                .into(),
        });
    }
    if g.snp.is_some() && !platform.is_emulated() {
        // sev-firmware has the hardware SNP commands, but sevm's machine has
        // no SNP VM type and no guest_memfd memory yet
        // (docs/snp.md#on-hardware).
        return Err(VmmError::Config {
            option,
            problem: format!(
                "SEV-SNP guests run only on the emulated platform for now: on {} an SNP guest \
                 needs a KVM VM of the SNP type with guest_memfd memory, which sevm does not \
                 create yet (use sev-device=emulated:DIR)",
                platform.describe()
            ),
        });
    }
    let policy = Policy::from_bits(g.policy);
    if g.snp.is_none() && policy.es() && !info.es_enabled {
        return Err(VmmError::Config {
            option,
            problem: format!(
                "guest policy {:#x} requires SEV-ES, but {} does not support SEV-ES",
                g.policy,
                platform.describe()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SevDevice;
    use sev_firmware::PlatformKind;
    use sev_proto::abi::{ApiVersion, Owner};

    #[derive(Debug)]
    struct Fake {
        kind: PlatformKind,
    }

    impl Fake {
        fn new(emulated: bool) -> Self {
            let path = "/fake".into();
            Fake {
                kind: if emulated {
                    PlatformKind::Emulated(path)
                } else {
                    PlatformKind::Hardware(path)
                },
            }
        }
    }

    impl PlatformManagement for Fake {
        fn kind(&self) -> &PlatformKind {
            &self.kind
        }
        fn describe(&self) -> String {
            "the fake platform".into()
        }
        fn status(&self) -> Result<PlatformStatus, SevError> {
            unimplemented!()
        }
        fn pdh_cert_export(&self) -> Result<sev_firmware::PlatformCerts, SevError> {
            unimplemented!()
        }
        fn pek_csr(&self) -> Result<sev_proto::cert::sev::Certificate, SevError> {
            unimplemented!()
        }
        fn pek_cert_import(
            &self,
            _: &sev_proto::cert::sev::Certificate,
            _: &sev_proto::cert::sev::Certificate,
        ) -> Result<(), SevError> {
            unimplemented!()
        }
        fn pdh_gen(&self) -> Result<(), SevError> {
            unimplemented!()
        }
        fn pek_gen(&self) -> Result<(), SevError> {
            unimplemented!()
        }
        fn platform_reset(&self) -> Result<(), SevError> {
            unimplemented!()
        }
        fn get_id(&self) -> Result<Vec<u8>, SevError> {
            unimplemented!()
        }
        fn encryption_params(&self) -> Result<EncryptionParams, SevError> {
            unimplemented!()
        }
        fn amd_chain(&self) -> Result<Option<sev_proto::cert::chain::CaChain>, SevError> {
            unimplemented!()
        }
    }

    fn guest(policy: u32, cbitpos: Option<u32>, rpb: Option<u32>) -> SevGuestConfig {
        let mut cfg = match crate::options::parse_args([
            "-object",
            "sev-guest,id=sev0",
            "-machine",
            "q35,memory-encryption=sev0",
        ])
        .unwrap()
        {
            crate::options::Invocation::Run(c) => c,
            other => panic!("{other:?}"),
        };
        let mut g = cfg.sev_guests.remove(0);
        g.policy = policy;
        g.cbitpos = cbitpos;
        g.reduced_phys_bits = rpb;
        g.sev_device = SevDevice::Emulated {
            state_dir: "/x".into(),
        };
        g
    }

    const INFO: PlatformStatus = PlatformStatus {
        api: ApiVersion::new(1, 55),
        build: 21,
        state_code: 1,
        owner: Owner::SelfOwned,
        es_enabled: false,
        guest_count: 0,
    };
    const PARAMS: EncryptionParams = EncryptionParams {
        cbitpos: 47,
        reduced_phys_bits: 1,
    };

    #[test]
    fn sev_options_are_checked_against_the_platform_as_qemu_does() {
        let hw = Fake::new(false);
        check_platform(&guest(1, None, None), &INFO, &PARAMS, &hw).unwrap();
        check_platform(&guest(1, Some(47), Some(5)), &INFO, &PARAMS, &hw).unwrap();
        let e = check_platform(&guest(1, Some(51), None), &INFO, &PARAMS, &hw).unwrap_err();
        assert_eq!(
            e.to_string(),
            "-object sev-guest,id=sev0: cbitpos check failed, host '47' requested '51'"
        );
        assert!(e.is_validation());
        // reduced-phys-bits is not the platform's business: 1..=63 is
        // checked by `VmConfig::validate` (see the options tests).
        check_platform(&guest(1, None, Some(63)), &INFO, &PARAMS, &hw).unwrap();
        let e = check_platform(&guest(0x5, None, None), &INFO, &PARAMS, &hw).unwrap_err();
        assert!(
            e.to_string()
                .contains("requires SEV-ES, but the fake platform does not support SEV-ES"),
            "{e}"
        );
        let es = PlatformStatus {
            es_enabled: true,
            ..INFO
        };
        check_platform(&guest(0x5, None, None), &es, &PARAMS, &hw).unwrap();
        // sevm has the KVM_SEV_INIT path only on hardware; the emulated
        // platform takes legacy-vm-type=off (moved from the parser's tests).
        let mut init2 = guest(1, None, None);
        init2.legacy_vm_type = Some(OnOffAuto::Off);
        let e = check_platform(&init2, &INFO, &PARAMS, &hw).unwrap_err();
        assert_eq!(
            e.to_string(),
            "-object sev-guest,id=sev0: legacy-vm-type: off (KVM_SEV_INIT2) is not supported by \
             sevm on SEV hardware: it initialises hardware SEV guests with KVM_SEV_INIT only (use \
             on or auto)"
        );
        check_platform(&init2, &INFO, &PARAMS, &Fake::new(true)).unwrap();
        // The emulated platform runs SEV-ES guests too, when INITed with ES.
        let emu = Fake::new(true);
        check_platform(&guest(0x5, None, None), &es, &PARAMS, &emu).unwrap();
        let e = check_platform(&guest(0x5, None, None), &INFO, &PARAMS, &emu).unwrap_err();
        assert!(e.to_string().contains("does not support SEV-ES"), "{e}");
    }

    #[test]
    fn snp_guests_run_on_the_emulated_platform_only_for_now() {
        let mut snp = guest(0x1, None, None);
        snp.snp = Some(crate::config::SnpGuestOptions::default());
        // The SEV-ES check of sev-guest's policy does not apply.
        check_platform(&snp, &INFO, &PARAMS, &Fake::new(true)).unwrap();
        let e = check_platform(&snp, &INFO, &PARAMS, &Fake::new(false)).unwrap_err();
        assert!(e.is_validation());
        assert!(
            e.to_string().starts_with(
                "-object sev-snp-guest,id=sev0: SEV-SNP guests run only on the emulated platform"
            ),
            "{e}"
        );
        // The C-bit check applies to both objects.
        snp.cbitpos = Some(51);
        let e = check_platform(&snp, &INFO, &PARAMS, &Fake::new(true)).unwrap_err();
        assert!(e.to_string().contains("cbitpos check failed"), "{e}");
    }
}
