//! The VM's configuration: the typed settings a command line describes,
//! their defaults and the rules between them ([`VmConfig::validate`]).
//!
//! The QEMU argv parser ([`crate::options`]) builds a [`VmConfig`]; the
//! VMM, the GDB stub and the SEV layer read it. Nothing here parses argv or
//! opens files.

use std::path::PathBuf;

/// QEMU's default guest policy (`DEFAULT_GUEST_POLICY` in target/i386/sev.c:
/// NODBG).
pub const DEFAULT_POLICY: u32 = 0x1;
/// QEMU's default `sev-device`.
pub const DEFAULT_SEV_DEVICE: &str = "/dev/sev";
/// QEMU's default RAM size (128 MiB).
pub const DEFAULT_MEMORY: u64 = 128 << 20;
/// The most vCPUs sevm accepts (xAPIC ids; sevm has no x2APIC setup).
pub const MAX_CPUS: u32 = 255;
/// The `-s` shorthand's gdb port.
pub const DEFAULT_GDB_PORT: u16 = 1234;
/// The `sev-device` prefix that selects the emulated platform.
pub const EMULATED_PREFIX: &str = "emulated:";

/// An option error. Every variant names the option it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// A command-line argument that is not valid UTF-8.
    #[error("argument {arg:?} is not valid UTF-8")]
    NotUtf8 {
        /// The argument, lossily decoded.
        arg: String,
    },
    /// An option neither sevm nor QEMU knows.
    #[error("unknown option {option}")]
    UnknownOption {
        /// The option as written.
        option: String,
    },
    /// A QEMU option sevm does not implement.
    #[error("QEMU option {option} is not supported by sevm")]
    Unsupported {
        /// The option as written.
        option: String,
    },
    /// An option that takes an argument was last on the command line.
    #[error("{option}: requires an argument")]
    MissingArgument {
        /// The option as written.
        option: String,
    },
    /// A non-option argument (QEMU would take it as a `-hda` image).
    #[error(
        "unexpected argument \"{arg}\" (QEMU's implicit -hda disk image is not supported by sevm)"
    )]
    StrayArgument {
        /// The argument.
        arg: String,
    },
    /// An option's argument is wrong as a whole.
    #[error("{option}: {problem}")]
    Invalid {
        /// The option (with its type where it has one, e.g. `-object sev-guest`).
        option: String,
        /// What is wrong.
        problem: String,
    },
    /// One property of an option's argument is wrong.
    #[error("{option}: {property}: {problem}")]
    InvalidProperty {
        /// The option (with its type where it has one).
        option: String,
        /// The property name.
        property: String,
        /// What is wrong.
        problem: String,
    },
    /// A property the option does not have.
    #[error("{option}: unknown property '{property}'")]
    UnknownProperty {
        /// The option.
        option: String,
        /// The property name.
        property: String,
    },
    /// A required property is absent.
    #[error("{option}: property '{property}' is required")]
    MissingProperty {
        /// The option.
        option: String,
        /// The property name.
        property: String,
    },
    /// A property given twice in one option argument.
    #[error("{option}: property '{property}' is given more than once")]
    DuplicateProperty {
        /// The option.
        option: String,
        /// The property name.
        property: String,
    },
    /// `-initrd`/`-append` without `-kernel` (QEMU's message).
    #[error("{option} only allowed with -kernel option")]
    RequiresKernel {
        /// `-initrd` or `-append`.
        option: String,
    },
    /// `-machine memory-encryption=ID` names no `-object sev-guest`.
    #[error("-machine memory-encryption={id}: there is no -object sev-guest with id '{id}'")]
    NoSuchSevGuest {
        /// The id the machine refers to.
        id: String,
    },
    /// Two options that cannot be combined.
    #[error("{first} conflicts with {second}: {problem}")]
    Conflict {
        /// The first option.
        first: String,
        /// The second option.
        second: String,
        /// Why they conflict.
        problem: String,
    },
}

/// Something suspicious but allowed; the binary prints these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsWarning {
    /// `kernel-hashes=on` without `-kernel`: nothing to measure. QEMU says
    /// nothing in this case (it only consults `kernel-hashes` while loading
    /// a kernel); sevm warns because the owner probably expected a measured
    /// kernel.
    #[error("-object sev-guest,id={id}: kernel-hashes=on has no effect without -kernel")]
    KernelHashesWithoutKernel {
        /// The sev-guest id.
        id: String,
    },
    /// A `-object sev-guest` that `-machine memory-encryption` does not
    /// name: the guest would run unencrypted.
    #[error("-object sev-guest,id={id} is not used by -machine memory-encryption: the guest will not be encrypted")]
    UnusedSevGuest {
        /// The sev-guest id.
        id: String,
    },
    /// `-kernel` without `kernel-hashes=on` under SEV: the kernel, initrd
    /// and command line are not part of the launch measurement.
    #[error("-kernel with SEV but kernel-hashes is off: the kernel, initrd and command line are not measured")]
    KernelNotMeasured,
    /// `-kernel` without SEV: sevm does not boot kernels (it has no fw_cfg);
    /// `-kernel` only feeds the SEV kernel-hashes measurement.
    #[error("-kernel is ignored: sevm does not boot kernels; it only measures them for SEV (kernel-hashes=on)")]
    KernelIgnored,
}

/// The machine type (`-machine type=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MachineType {
    /// `pc` / `pc-i440fx-*` (QEMU's x86 default).
    #[default]
    Pc,
    /// `q35` / `pc-q35-*`.
    Q35,
}

/// `-machine` settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MachineOptions {
    /// The machine type.
    pub machine_type: MachineType,
    /// The type exactly as written (e.g. `pc-q35-8.2`), if given.
    pub type_name: Option<String>,
    /// `memory-encryption=` / `confidential-guest-support=`: the id of the
    /// `-object sev-guest` that encrypts this VM.
    pub memory_encryption: Option<String>,
}

/// Which SEV firmware interface a guest uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SevDevice {
    /// Real hardware through this device node (QEMU's `sev-device`).
    Hardware(PathBuf),
    /// sevm's emulated AMD Secure Processor with its state in `state_dir`
    /// (spelled `sev-device=emulated:<state-dir>`).
    Emulated {
        /// The platform state directory.
        state_dir: PathBuf,
    },
}

impl Default for SevDevice {
    fn default() -> Self {
        SevDevice::Hardware(PathBuf::from(DEFAULT_SEV_DEVICE))
    }
}

/// QEMU's OnOffAuto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnOffAuto {
    /// `on`
    On,
    /// `off`
    Off,
    /// `auto`
    Auto,
}

/// One `-object sev-guest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SevGuestConfig {
    /// `id=` (required).
    pub id: String,
    /// `policy=` (default [`DEFAULT_POLICY`]).
    pub policy: u32,
    /// `handle=`: a non-zero handle shares the key of that running guest
    /// (default 0: a new key).
    // UNCERTAIN (docs/protocol/choices.md#u11): stored as given; which checks apply
    // to a key-sharing launch (NOKS, same owner) is decided at launch.
    pub handle: u32,
    /// `dh-cert-file=`: the owner's base64 GODH certificate.
    pub dh_cert_file: Option<PathBuf>,
    /// `session-file=`: the owner's base64 launch session blob.
    pub session_file: Option<PathBuf>,
    /// `cbitpos=`; `None` means "the platform's value" (checked at launch).
    pub cbitpos: Option<u32>,
    /// `reduced-phys-bits=`; `None` means 1 (docs/protocol/memory.md#cbitpos).
    pub reduced_phys_bits: Option<u32>,
    /// `kernel-hashes=` (default off).
    pub kernel_hashes: bool,
    /// `sev-device=`.
    pub sev_device: SevDevice,
    /// `legacy-vm-type=` (QEMU 9.1+: `on` and `auto` initialise the guest
    /// with KVM_SEV_INIT / KVM_SEV_ES_INIT, `off` with KVM_SEV_INIT2, whose
    /// SEV-ES VMSAs carry the reset FPU state). On hardware sevm has the
    /// legacy path only and refuses `off`; the emulated platform takes it
    /// (docs/sev-es.md#the-initial-vmsas).
    pub legacy_vm_type: Option<OnOffAuto>,
    /// The SEV-SNP properties when the object is a `sev-snp-guest` (then
    /// `policy`, `handle`, the files and `legacy-vm-type` are unused).
    pub snp: Option<SnpGuestOptions>,
}

/// QEMU's default SEV-SNP guest policy: SMT allowed, the must-be-one bit.
pub const DEFAULT_SNP_POLICY: u64 = 0x30000;

/// The properties of a `sev-snp-guest` object besides those it shares with
/// `sev-guest` (`sev-device`, `cbitpos`, `reduced-phys-bits`,
/// `kernel-hashes`), checked as QEMU checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpGuestOptions {
    /// `policy=` (default [`DEFAULT_SNP_POLICY`]), checked as a 64-bit
    /// SNP guest policy.
    pub policy: sev_proto::snp::GuestPolicy,
    /// `guest-visible-workarounds=`: base64 of exactly 16 bytes (default
    /// zeros).
    pub gosvw: [u8; 16],
    /// `id-block=`: base64 of exactly 96 bytes, decoded at launch.
    pub id_block: Option<Vec<u8>>,
    /// `id-auth=`: base64 of at most 4096 bytes (zero-padded to 4096, as
    /// QEMU and KVM do), decoded at launch.
    pub id_auth: Option<Vec<u8>>,
    /// `author-key-enabled=` (default off).
    pub author_key_enabled: bool,
    /// `host-data=`: base64 of exactly 32 bytes (default zeros).
    pub host_data: [u8; 32],
    /// `x-sevm-certs=`: the certificate table of the guest's extended
    /// requests (sevm's own property; default none, the empty table).
    pub certs: SnpCertSource,
}

/// Where the certificate table sevm hands the guest with an extended
/// guest request comes from (`x-sevm-certs=`,
/// docs/snp.md#certificates-for-extended-requests). Only the emulated SEV
/// device takes one: on hardware KVM answers the guest's requests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SnpCertSource {
    /// `none` (the default): the empty table, as mainline KVM answers.
    #[default]
    None,
    /// `platform`: the emulated platform's ARK, ASK and VCEK of the TCB
    /// its reports carry, issued at start-up.
    Platform,
    /// A file holding a certificate table in the GHCB format, or a
    /// directory holding `ark`, `ask`, `vcek` and/or `vlek` certificates
    /// (`.der` or `.pem`, the layout `snpguest` writes).
    Path(PathBuf),
}

impl Default for SnpGuestOptions {
    fn default() -> Self {
        SnpGuestOptions {
            policy: sev_proto::snp::GuestPolicy::QEMU_DEFAULT,
            gosvw: [0; 16],
            id_block: None,
            id_auth: None,
            author_key_enabled: false,
            host_data: [0; 32],
            certs: SnpCertSource::None,
        }
    }
}

impl SevGuestConfig {
    /// The object's QOM type: `sev-snp-guest` or `sev-guest`.
    pub fn qom_type(&self) -> &'static str {
        if self.snp.is_some() {
            "sev-snp-guest"
        } else {
            "sev-guest"
        }
    }

    /// A sev-guest with QEMU's defaults for every property but `id`.
    pub fn new(id: String) -> Self {
        SevGuestConfig {
            id,
            policy: DEFAULT_POLICY,
            handle: 0,
            dh_cert_file: None,
            session_file: None,
            cbitpos: None,
            reduced_phys_bits: None,
            kernel_hashes: false,
            sev_device: SevDevice::default(),
            legacy_vm_type: None,
            snp: None,
        }
    }
}

/// One `-drive if=pflash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PflashDrive {
    /// `unit=` (0: firmware code, 1: variable store).
    pub unit: u32,
    /// `file=`.
    pub file: PathBuf,
    /// `readonly=`.
    pub readonly: bool,
}

/// Where the firmware comes from, after combining `-bios` and pflash drives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Firmware {
    /// `-bios FILE`.
    Bios(PathBuf),
    /// `-drive if=pflash` units 0 and (optionally) 1.
    Pflash {
        /// Unit 0: the firmware image (measured under SEV).
        code: PflashDrive,
        /// Unit 1: the variable store.
        vars: Option<PflashDrive>,
    },
}

/// `-qmp unix:PATH,server=on[,wait=on|off]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QmpSocketConfig {
    /// The socket path.
    pub path: PathBuf,
    /// `wait=on` (QEMU's default for a server): block until a client
    /// connects before starting the VM.
    pub wait: bool,
}

/// `-serial`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialConfig {
    /// `stdio`.
    Stdio,
    /// `file:PATH` (output only).
    File(PathBuf),
    /// `null`: a port whose output is discarded.
    Null,
    /// `none`: no serial port.
    None,
}

/// `-gdb tcp:[HOST]:PORT` / `-s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GdbConfig {
    /// The host to listen on; `None` for all addresses (`tcp::PORT`).
    pub host: Option<String>,
    /// The port.
    pub port: u16,
}

/// `-incoming`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncomingConfig {
    /// `file:PATH[,offset=N]`.
    File {
        /// The stream file.
        path: PathBuf,
        /// Byte offset of the stream in the file.
        offset: u64,
    },
    /// `tcp:HOST:PORT` (HOST may be empty or `[v6]`).
    Tcp {
        /// Host to listen on (empty = all).
        host: String,
        /// Port.
        port: u16,
    },
    /// `unix:PATH`.
    Unix(PathBuf),
    /// `defer`: wait for QMP `migrate-incoming`.
    Defer,
}

/// `-cpu`. Gives an SEV-ES guest's VMSAs their CPU signature
/// ([`crate::sev::es::cpu_signature`]); the vCPUs see KVM's supported CPUID
/// whatever the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuConfig {
    /// The model as written: `host`, `max`, `qemu64` or one of QEMU's EPYC
    /// models with its versions (`EPYC`, `EPYC-v1`..`EPYC-v4`, `EPYC-IBPB`,
    /// `EPYC-Rome[-v1..v5]`, `EPYC-Milan[-v1..v3]`, `EPYC-Genoa[-v1..v2]`,
    /// `EPYC-Turin[-v1]`).
    pub model: String,
    /// Feature items after the model (`+x`, `-y`, `z=on`), as written.
    pub features: Vec<String>,
}

/// The VM described by the command line. Build it with
/// [`crate::options::parse_args`], then check cross-option rules with
/// [`VmConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// `-machine`.
    pub machine: MachineOptions,
    /// Every `-object sev-guest`, in command-line order.
    pub sev_guests: Vec<SevGuestConfig>,
    /// `-m`, in bytes (rounded up to 8 KiB as QEMU does).
    pub memory: u64,
    /// `-smp`.
    pub cpus: u32,
    /// `-bios`.
    pub bios: Option<PathBuf>,
    /// `-drive if=pflash`, in command-line order.
    pub pflash: Vec<PflashDrive>,
    /// `-kernel`.
    pub kernel: Option<PathBuf>,
    /// `-initrd`.
    pub initrd: Option<PathBuf>,
    /// `-append`.
    pub append: Option<String>,
    /// `-S`.
    pub start_paused: bool,
    /// `-qmp` sockets.
    pub qmp: Vec<QmpSocketConfig>,
    /// `-serial` as given (see [`VmConfig::effective_serial`]).
    pub serial: Option<SerialConfig>,
    /// `-nographic`.
    pub nographic: bool,
    /// `-display none`.
    pub display_none: bool,
    /// `-name`.
    pub name: Option<String>,
    /// `-name ...,debug-threads=on`: name the vCPU threads `CPU n/KVM`, as
    /// QEMU does.
    pub debug_threads: bool,
    /// `-no-reboot` (QEMU: exit instead of rebooting on a guest reset).
    /// Recorded only: sevm never reboots a guest, a reset (or triple
    /// fault) always ends the VM with a `SHUTDOWN` event, reason
    /// `guest-reset`.
    pub no_reboot: bool,
    /// `-gdb` / `-s`.
    pub gdb: Option<GdbConfig>,
    /// `-incoming`.
    pub incoming: Option<IncomingConfig>,
    /// `-cpu`.
    pub cpu: Option<CpuConfig>,
    /// `-nodefaults`.
    pub nodefaults: bool,
    /// `-enable-kvm`, `-accel kvm` or `-machine accel=kvm` was given (sevm
    /// always uses KVM; this only records the spelling).
    pub enable_kvm: bool,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            machine: MachineOptions::default(),
            sev_guests: Vec::new(),
            memory: DEFAULT_MEMORY,
            cpus: 1,
            bios: None,
            pflash: Vec::new(),
            kernel: None,
            initrd: None,
            append: None,
            start_paused: false,
            qmp: Vec::new(),
            serial: None,
            nographic: false,
            display_none: false,
            name: None,
            debug_threads: false,
            no_reboot: false,
            gdb: None,
            incoming: None,
            cpu: None,
            nodefaults: false,
            enable_kvm: false,
        }
    }
}

impl VmConfig {
    /// The `-object sev-guest` that `-machine memory-encryption=` names, if
    /// any (None also when the id names no object; [`validate`] rejects
    /// that).
    ///
    /// [`validate`]: VmConfig::validate
    pub fn sev_guest(&self) -> Option<&SevGuestConfig> {
        let id = self.machine.memory_encryption.as_deref()?;
        self.sev_guests.iter().find(|g| g.id == id)
    }

    /// The serial port to create: `-serial` if given; otherwise none with
    /// `-nodefaults`, else stdio.
    ///
    /// QEMU's default is a virtual console (stdio only with `-nographic`);
    /// sevm has no graphical console, so its default is what QEMU does with
    /// `-nographic`.
    pub fn effective_serial(&self) -> SerialConfig {
        match &self.serial {
            Some(s) => s.clone(),
            None if self.nodefaults => SerialConfig::None,
            None => SerialConfig::Stdio,
        }
    }

    /// The firmware after combining `-bios` and pflash drives (assumes
    /// [`validate`](VmConfig::validate) passed; returns `None` when neither
    /// was given).
    pub fn firmware(&self) -> Option<Firmware> {
        if let Some(bios) = &self.bios {
            return Some(Firmware::Bios(bios.clone()));
        }
        let code = self.pflash.iter().find(|d| d.unit == 0)?.clone();
        let vars = self.pflash.iter().find(|d| d.unit == 1).cloned();
        Some(Firmware::Pflash { code, vars })
    }

    /// Cross-option rules. Returns the warnings to print, or the first
    /// error:
    /// * `-initrd`/`-append` need `-kernel` (QEMU's rule and message);
    /// * `memory-encryption=ID` must name an `-object sev-guest`;
    /// * `-bios` and pflash unit 0 both give the firmware (QEMU refuses);
    ///   pflash unit 1 needs unit 0;
    /// * `reduced-phys-bits` must be 1..=63 and `cbitpos` 1..=63
    ///   (docs/protocol/memory.md#cbitpos; the exact platform value is checked at launch).
    ///
    /// Warnings: `kernel-hashes=on` without `-kernel`; a sev-guest object
    /// the machine does not use; `-kernel` under SEV without kernel-hashes.
    pub fn validate(&self) -> Result<Vec<OptionsWarning>, OptionsError> {
        let mut warnings = Vec::new();
        if self.kernel.is_none() {
            if self.append.is_some() {
                return Err(OptionsError::RequiresKernel {
                    option: "-append".into(),
                });
            }
            if self.initrd.is_some() {
                return Err(OptionsError::RequiresKernel {
                    option: "-initrd".into(),
                });
            }
        }
        if let Some(id) = &self.machine.memory_encryption {
            if self.sev_guest().is_none() {
                return Err(OptionsError::NoSuchSevGuest { id: id.clone() });
            }
        }
        let unit0 = self.pflash.iter().any(|d| d.unit == 0);
        if self.bios.is_some() && unit0 {
            return Err(OptionsError::Conflict {
                first: "-bios".into(),
                second: "-drive if=pflash,unit=0".into(),
                problem: "both give the firmware image".into(),
            });
        }
        if !unit0 && self.pflash.iter().any(|d| d.unit == 1) {
            return Err(OptionsError::Invalid {
                option: "-drive if=pflash,unit=1".into(),
                problem: "a variable store needs a firmware image in pflash unit 0".into(),
            });
        }
        for g in &self.sev_guests {
            let option = format!("-object {}", g.qom_type());
            let option = option.as_str();
            if let Some(bits) = g.reduced_phys_bits {
                if !(1..=63).contains(&bits) {
                    return Err(OptionsError::InvalidProperty {
                        option: option.into(),
                        property: "reduced-phys-bits".into(),
                        problem: format!("{bits} is out of range (1..=63)"),
                    });
                }
            }
            if let Some(pos) = g.cbitpos {
                if !(1..=63).contains(&pos) {
                    return Err(OptionsError::InvalidProperty {
                        option: option.into(),
                        property: "cbitpos".into(),
                        problem: format!("{pos} is out of range (1..=63)"),
                    });
                }
            }
            if g.kernel_hashes && self.kernel.is_none() {
                warnings.push(OptionsWarning::KernelHashesWithoutKernel { id: g.id.clone() });
            }
            if self.machine.memory_encryption.as_deref() != Some(g.id.as_str()) {
                warnings.push(OptionsWarning::UnusedSevGuest { id: g.id.clone() });
            }
        }
        match self.sev_guest() {
            Some(g) if self.kernel.is_some() && !g.kernel_hashes => {
                warnings.push(OptionsWarning::KernelNotMeasured);
            }
            None if self.kernel.is_some() => warnings.push(OptionsWarning::KernelIgnored),
            _ => {}
        }
        Ok(warnings)
    }
}

/// A TCP port number: decimal digits only, 0..=65535.
pub fn parse_port(s: &str) -> Result<u16, String> {
    let invalid = || format!("invalid port \"{s}\"");
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
        return Err(invalid());
    }
    s.parse::<u16>().map_err(|_| invalid())
}

/// Splits `HOST:PORT` (of `-gdb` and `-incoming`) where HOST may be empty
/// or a bracketed IPv6 address.
pub fn split_host_port(s: &str) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("unterminated '[' in \"{s}\""))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("missing port in \"{s}\""))?;
        (h, port)
    } else {
        s.rsplit_once(':')
            .ok_or_else(|| format!("expected HOST:PORT, got \"{s}\""))?
    };
    Ok((host, parse_port(port)?))
}
