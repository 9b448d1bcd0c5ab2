//! The expected launch digest and measurement (docs/protocol/measurement.md#launch-measure,
//! docs/protocol/measurement.md#launch-digest, docs/protocol/ovmf.md#kernel-hashes,
//! docs/protocol/ovmf.md#sev-digest, docs/protocol/ovmf.md#seves-digest), computed fast, and the
//! check of a launch-measure blob that says which input would have to differ when it fails.
//!
//! ```text
//! LD = SHA-256(firmware ‖ [176-byte hashes table] ‖ [VMSA pages])
//! table = {SHA-256(cmdline ‖ NUL), SHA-256(initrd), SHA-256(kernel)}
//! ```
//!
//! The firmware stream is one sequential SHA-256, but the kernel and initrd
//! digests are independent: [`launch_digest`] hashes the three files at once
//! and finishes the firmware stream with the table once the others are
//! done. No measurement can end before the largest input (typically the
//! initrd) is hashed, so that stream is kept free of everything else:
//!
//! - with fewer CPUs than files, the largest file gets a thread of its own
//!   and the smaller ones share the rest, one after another, instead of
//!   three threads taking turns on two CPUs;
//! - how a regular file reaches the hash depends on the machine
//!   (docs/protocol/choices.md#u97). On the AMD EPYC machines it is mapped
//!   and hashed where it lies in the page cache: copying it out with `read`
//!   first made a loaded run 38.8 ms instead of 31.5 ms (best of 40; the
//!   initrd's SHA-256 alone 24.5 ms). On the Intel Xeon machine the mapping
//!   was the slower one (a run 30.0 ms mapped, 26.4 ms read, against a
//!   20.7 ms bound), so there, and on every CPU other than AMD's, files are
//!   read. Reading goes through one page-aligned buffer (see
//!   `PageAligned`), as do pipes, devices and files the kernel does not
//!   map; a reader thread ahead of the hash cost more in wake-ups than it
//!   saved (on both machines).
//!
//! SHA-256 is [`sev_proto::hash::Sha256`], the fastest implementation for
//! the CPU (SHA-NI where present; see that module for the measured choice);
//! the result is checked against `sev-proto`'s reference computation in
//! tests.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sev_proto::hash::Sha256;
use sev_proto::measurement::{self, MeasureBlob};
use sev_proto::ovmf::{FooterTable, KernelHashes, OvmfError, VMSA_PAGE_LEN};
use sev_proto::session::Tik;
use sev_proto::snp::{self, LaunchDigest, SnpLaunch, SnpMeasureError};
use sev_proto::vmsa::VmsaConfig;
use subtle::ConstantTimeEq;

/// Read size of the streaming hashers.
const CHUNK: usize = 256 << 10;
/// The footer table ends 32 bytes before EOF and its length is a u16: this
/// many trailing bytes always contain it.
const FOOTER_TAIL: usize = 0x1_0000 + 64;

/// Why a digest or measurement could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// An input file could not be read.
    #[error("cannot read {what} {}", path.display())]
    Read {
        /// firmware, kernel, initrd, VMSA.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The firmware's OVMF metadata is unusable for the requested launch.
    #[error("firmware {}", path.display())]
    Firmware {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: OvmfError,
    },
    /// Kernel-hashes inputs without a kernel.
    #[error("--initrd and --cmdline are measured only with --kernel (QEMU kernel-hashes=on)")]
    NoKernel,
    /// A VMSA page of the wrong size.
    #[error("VMSA {} is {actual} bytes, expected 4096", path.display())]
    VmsaSize {
        /// The file.
        path: PathBuf,
        /// Its size.
        actual: u64,
    },
    /// More than one vCPU, and the firmware has no SEV-ES AP reset address.
    #[error("firmware {}: {vcpus} vCPUs need the SEV-ES AP reset address (footer entry 00f771de-1a7e-4fcb-890e-68c77e2fb44e), and the firmware has none", path.display())]
    NoApResetVector {
        /// The file.
        path: PathBuf,
        /// The vCPU count asked for.
        vcpus: u32,
    },
    /// The firmware cannot be measured for an SNP launch.
    #[error("firmware {}", path.display())]
    Snp {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: SnpMeasureError,
    },
    /// The firmware is larger than any OVMF image.
    #[error("firmware {} is {len} bytes, more than the {max} an SNP launch can map below 4 GiB", path.display())]
    FirmwareTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A hashing thread could not be started, or panicked (a bug).
    #[error("a hashing thread failed")]
    Thread,
}

/// The vCPUs of an SEV-ES guest whose VMSAs are built here (instead of read
/// from files).
#[derive(Debug, Clone, Copy)]
pub struct EsVcpus {
    /// The number of vCPUs.
    pub count: u32,
    /// Their VMSA parameters (SEV features 0 for QEMU's SEV-ES guests).
    pub vmsa: VmsaConfig,
}

/// What the launch digest covers.
#[derive(Debug, Clone, Default)]
pub struct DigestInputs {
    /// The firmware image (whole file, as QEMU maps it).
    pub firmware: PathBuf,
    /// `-kernel` with `kernel-hashes=on`.
    pub kernel: Option<PathBuf>,
    /// `-initrd` (needs a kernel).
    pub initrd: Option<PathBuf>,
    /// `-append` (needs a kernel), hashed exactly as given plus one NUL.
    pub cmdline: Option<String>,
    /// SEV-ES VMSA pages in vCPU order (each 4096 bytes).
    pub vmsas: Vec<PathBuf>,
    /// SEV-ES vCPUs whose VMSAs are built from the firmware's reset address
    /// (after any `vmsas`; normally one or the other).
    pub es_vcpus: Option<EsVcpus>,
}

/// A computed launch digest and what went into it.
#[derive(Debug, Clone)]
pub struct DigestOutcome {
    /// The launch digest.
    pub launch_digest: [u8; 32],
    /// The kernel-hashes table digests, when a kernel was given.
    pub hashes: Option<KernelHashes>,
    /// Bytes of input hashed (firmware + kernel + initrd + VMSAs).
    pub input_bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl DigestOutcome {
    /// Input throughput in bytes per second.
    pub fn throughput(&self) -> f64 {
        self.input_bytes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Page size for [`PageAligned`].
const PAGE: usize = 4096;

/// A read buffer that starts on a page boundary. The kernel copies file data
/// into a page-aligned buffer much faster on some CPUs: on AMD EPYC (Zen),
/// reading a 38 MB file into the 16-byte-offset block the allocator returns
/// for a large `Vec` took 38 ms of CPU with the hash instead of 27 ms.
struct PageAligned {
    raw: Vec<u8>,
    start: usize,
}

impl PageAligned {
    fn new(len: usize) -> Self {
        let raw = vec![0u8; len + PAGE];
        let start = match raw.as_ptr().align_offset(PAGE) {
            off if off < PAGE => off,
            _ => 0,
        };
        PageAligned { raw, start }
    }

    /// The usable bytes.
    fn bytes(&self) -> &[u8] {
        let end = self.raw.len() - PAGE + self.start;
        self.raw.get(self.start..end).unwrap_or_default()
    }

    /// The usable bytes, to fill.
    fn bytes_mut(&mut self) -> &mut [u8] {
        let end = self.raw.len() - PAGE + self.start;
        self.raw.get_mut(self.start..end).unwrap_or_default()
    }
}

/// Hashes the file at `path` into `hash`, keeping its last `keep_tail`
/// bytes: mapped when it is a regular file, else (a pipe, a device, or a
/// file the kernel will not map) read. Returns its length and its tail.
fn stream_file(
    what: &'static str,
    path: &Path,
    hash: &mut Sha256,
    keep_tail: usize,
) -> Result<(u64, Vec<u8>), MeasureError> {
    stream_file_as(what, path, hash, keep_tail, maps_files())
}

/// [`stream_file`], mapping regular files only if `map`.
fn stream_file_as(
    what: &'static str,
    path: &Path,
    hash: &mut Sha256,
    keep_tail: usize,
    map: bool,
) -> Result<(u64, Vec<u8>), MeasureError> {
    let err = |source| MeasureError::Read {
        what,
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(err)?;
    if !map {
        return stream_read(file, hash, keep_tail).map_err(err);
    }
    if let Some(map) = map_regular(&file).map_err(err)? {
        let bytes: &[u8] = &map;
        hash.update(bytes);
        let tail = bytes
            .get(bytes.len().saturating_sub(keep_tail)..)
            .unwrap_or_default()
            .to_vec();
        return Ok((bytes.len() as u64, tail));
    }
    stream_read(file, hash, keep_tail).map_err(err)
}

/// Whether regular files are mapped rather than read: on AMD CPUs only,
/// where it was measured faster (docs/protocol/choices.md#u97). Decided
/// once, from the CPU's vendor string.
fn maps_files() -> bool {
    static MAPS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *MAPS.get_or_init(|| cpu_vendor() == *b"AuthenticAMD")
}

/// The CPU's vendor string (CPUID leaf 0: EBX, EDX, ECX); zeros where
/// there is no CPUID.
fn cpu_vendor() -> [u8; 12] {
    let mut vendor = [0u8; 12];
    #[cfg(target_arch = "x86_64")]
    {
        let id = std::arch::x86_64::__cpuid(0);
        for (at, reg) in [(0, id.ebx), (4, id.edx), (8, id.ecx)] {
            if let Some(dst) = vendor.get_mut(at..at + 4) {
                dst.copy_from_slice(&reg.to_le_bytes());
            }
        }
    }
    vendor
}

/// Maps `file` read-only if it is a regular, non-empty file that the kernel
/// maps; `None` means "read it instead".
#[allow(unsafe_code)]
fn map_regular(file: &File) -> std::io::Result<Option<memmap2::Mmap>> {
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() == 0 || usize::try_from(meta.len()).is_err() {
        return Ok(None);
    }
    // SAFETY: a new private, read-only mapping of a file we hold open; its
    // bytes are only hashed, and it is unmapped when the `Mmap` drops, after
    // every borrow of it. The one thing Rust cannot promise here is that no
    // other process changes the file meanwhile: a concurrent write changes
    // the bytes hashed (as it would between two `read` calls), and a
    // concurrent truncation ends this process with SIGBUS, never a wrong
    // digest. The measured files are the owner's inputs, at rest.
    let map = unsafe { memmap2::Mmap::map(file) };
    Ok(map.ok())
}

/// Streams `reader` into `hash` in [`CHUNK`] pieces through one
/// page-aligned buffer, keeping its last `keep_tail` bytes. Returns its
/// length and its tail.
fn stream_read(
    mut reader: impl Read,
    hash: &mut Sha256,
    keep_tail: usize,
) -> std::io::Result<(u64, Vec<u8>)> {
    let mut buf = PageAligned::new(CHUNK);
    let mut tail: Vec<u8> = Vec::new();
    let mut total = 0u64;
    loop {
        let n = match reader.read(buf.bytes_mut()) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = buf.bytes().get(..n).unwrap_or_default();
        hash.update(chunk);
        total += n as u64;
        if keep_tail > 0 {
            let chunk_tail = chunk.get(n.saturating_sub(keep_tail)..).unwrap_or_default();
            tail.extend_from_slice(chunk_tail);
            let excess = tail.len().saturating_sub(keep_tail);
            tail.drain(..excess);
        }
    }
    Ok((total, tail))
}

/// One input file to stream into a hash.
#[derive(Debug, Clone, Copy)]
struct Stream<'a> {
    what: &'static str,
    path: &'a Path,
    /// Trailing bytes to keep (the firmware's footer table).
    keep_tail: usize,
}

/// A streamed file: its hash (to finish, or to extend), length and tail.
struct Streamed {
    hash: Sha256,
    len: u64,
    tail: Vec<u8>,
}

impl Stream<'_> {
    fn run(self) -> Result<Streamed, MeasureError> {
        let mut hash = Sha256::new();
        let (len, tail) = stream_file(self.what, self.path, &mut hash, self.keep_tail)?;
        Ok(Streamed { hash, len, tail })
    }
}

/// Splits streams of `sizes` bytes among at most `workers` threads so that
/// the busiest thread has as little as possible: largest first, each to the
/// least loaded thread. With fewer cores than streams, the small ones then
/// share a thread instead of taking turns with the largest on its core.
fn plan(sizes: &[u64], workers: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(sizes.get(i).copied().unwrap_or(0)));
    let mut plan: Vec<(u64, Vec<usize>)> =
        vec![(0, Vec::new()); workers.clamp(1, sizes.len().max(1))];
    for i in order {
        if let Some(least) = plan.iter_mut().min_by_key(|(load, _)| *load) {
            least.0 += sizes.get(i).copied().unwrap_or(0);
            least.1.push(i);
        }
    }
    plan.into_iter().map(|(_, streams)| streams).collect()
}

type Outcomes = Vec<(usize, Result<Streamed, MeasureError>)>;

/// Streams every file, on as many threads as [`plan`] gives for the CPUs
/// available (the calling thread is one of them); results in input order.
fn stream_all(streams: &[Stream<'_>]) -> Vec<Result<Streamed, MeasureError>> {
    // A size unknown here shows as an error when the file is opened.
    let sizes: Vec<u64> = streams
        .iter()
        .map(|s| std::fs::metadata(s.path).map_or(0, |m| m.len()))
        .collect();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut groups = plan(&sizes, cpus).into_iter();
    let run = |group: Vec<usize>| -> Outcomes {
        group
            .into_iter()
            .filter_map(|i| streams.get(i).map(|s| (i, s.run())))
            .collect()
    };
    let own = groups.next().unwrap_or_default();
    let mut outcomes: Outcomes = std::thread::scope(|s| {
        let spawned: Vec<_> = groups
            .map(|group| {
                let fallback = group.clone();
                let handle = std::thread::Builder::new()
                    .name("hash".into())
                    .spawn_scoped(s, move || run(group));
                (fallback, handle)
            })
            .collect();
        let mut all = run(own);
        for (group, handle) in spawned {
            match handle
                .map_err(|_| ())
                .and_then(|h| h.join().map_err(|_| ()))
            {
                Ok(done) => all.extend(done),
                Err(()) => all.extend(group.into_iter().map(|i| (i, Err(MeasureError::Thread)))),
            }
        }
        all
    });
    outcomes.sort_by_key(|(i, _)| *i);
    outcomes.into_iter().map(|(_, r)| r).collect()
}

/// Computes the launch digest of `inputs` (see the module documentation).
pub fn launch_digest(inputs: &DigestInputs) -> Result<DigestOutcome, MeasureError> {
    if inputs.kernel.is_none() && (inputs.initrd.is_some() || inputs.cmdline.is_some()) {
        return Err(MeasureError::NoKernel);
    }
    let start = Instant::now();
    let mut streams = vec![Stream {
        what: "firmware",
        path: &inputs.firmware,
        keep_tail: if inputs.kernel.is_some() || inputs.es_vcpus.is_some() {
            FOOTER_TAIL
        } else {
            0
        },
    }];
    for (what, path) in [("kernel", &inputs.kernel), ("initrd", &inputs.initrd)] {
        if let Some(path) = path {
            streams.push(Stream {
                what,
                path,
                keep_tail: 0,
            });
        }
    }
    let mut streamed = stream_all(&streams).into_iter();
    let mut next = || streamed.next().unwrap_or(Err(MeasureError::Thread));
    let fw = next();
    let kernel = inputs.kernel.as_ref().map(|_| next()).transpose();
    let initrd = inputs.initrd.as_ref().map(|_| next()).transpose();
    let Streamed {
        hash: mut ctx,
        len: fw_len,
        tail,
    } = fw?;
    let kernel = kernel?.map(|k| (k.hash.finish(), k.len));
    let initrd = initrd?.map(|i| (i.hash.finish(), i.len));
    let mut input_bytes = fw_len;
    let hashes = match kernel {
        Some((kernel_digest, kernel_len)) => {
            FooterTable::parse(&tail)
                .and_then(|t| t.check_hashes_area())
                .map_err(|source| MeasureError::Firmware {
                    path: inputs.firmware.clone(),
                    source,
                })?;
            input_bytes += kernel_len;
            let initrd_digest = initrd.map(|(d, n)| {
                input_bytes += n;
                d
            });
            let cmdline =
                KernelHashes::cmdline_digest(inputs.cmdline.as_deref().map(str::as_bytes));
            let hashes = KernelHashes::from_digests(cmdline, initrd_digest, kernel_digest);
            ctx.update(&hashes.to_table());
            Some(hashes)
        }
        None => None,
    };
    for path in &inputs.vmsas {
        let mut page_ctx_bytes = Vec::with_capacity(VMSA_PAGE_LEN);
        let err = |source| MeasureError::Read {
            what: "VMSA",
            path: path.clone(),
            source,
        };
        File::open(path)
            .map_err(err)?
            .take(VMSA_PAGE_LEN as u64 + 1)
            .read_to_end(&mut page_ctx_bytes)
            .map_err(err)?;
        if page_ctx_bytes.len() != VMSA_PAGE_LEN {
            return Err(MeasureError::VmsaSize {
                path: path.clone(),
                actual: page_ctx_bytes.len() as u64,
            });
        }
        ctx.update(&page_ctx_bytes);
        input_bytes += VMSA_PAGE_LEN as u64;
    }
    if let Some(es) = &inputs.es_vcpus {
        let fw_err = |source| MeasureError::Firmware {
            path: inputs.firmware.clone(),
            source,
        };
        let reset = FooterTable::parse(&tail)
            .and_then(|t| t.sev_es_reset_vector())
            .map_err(fw_err)?;
        let pages = es
            .vmsa
            .pages(es.count, reset)
            .map_err(|e| MeasureError::NoApResetVector {
                path: inputs.firmware.clone(),
                vcpus: e.vcpus,
            })?;
        for page in pages {
            ctx.update(&page);
            input_bytes += VMSA_PAGE_LEN as u64;
        }
    }
    Ok(DigestOutcome {
        launch_digest: ctx.finish(),
        hashes,
        input_bytes,
        elapsed: start.elapsed(),
    })
}

/// The largest firmware an SNP launch maps (it ends at 4 GiB and must leave
/// room below it; OVMF images are a few MiB).
const SNP_FIRMWARE_MAX: u64 = 256 << 20;

/// What an SNP launch digest covers (docs/protocol/snp.md#ovmf-launch-order).
#[derive(Debug, Clone)]
pub struct SnpInputs {
    /// The firmware image: its footer table and metadata always, its pages
    /// unless `ovmf_hash` is given.
    pub firmware: PathBuf,
    /// `-kernel` (needs an SNP_KERNEL_HASHES range in the firmware).
    pub kernel: Option<PathBuf>,
    /// `-initrd` (needs a kernel).
    pub initrd: Option<PathBuf>,
    /// `-append` (needs a kernel).
    pub cmdline: Option<String>,
    /// The digest of the firmware pages computed earlier (`snp:ovmf-hash`).
    pub ovmf_hash: Option<[u8; 48]>,
    /// The number of vCPUs.
    pub vcpus: u32,
    /// The VMSA parameters (SEV features = the guest features).
    pub vmsa: VmsaConfig,
}

/// A computed SNP launch digest and what went into it.
#[derive(Debug, Clone)]
pub struct SnpOutcome {
    /// The launch digest (the attestation report's MEASUREMENT).
    pub launch_digest: [u8; 48],
    /// The kernel-hashes table digests, when a kernel was given.
    pub hashes: Option<KernelHashes>,
    /// Bytes of input hashed (firmware pages, kernel, initrd).
    pub input_bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
}

fn read_firmware(path: &Path) -> Result<Vec<u8>, MeasureError> {
    let err = |source| MeasureError::Read {
        what: "firmware",
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(err)?;
    let mut out = Vec::new();
    file.take(SNP_FIRMWARE_MAX + 1)
        .read_to_end(&mut out)
        .map_err(err)?;
    let len = out.len() as u64;
    if len > SNP_FIRMWARE_MAX {
        return Err(MeasureError::FirmwareTooLarge {
            path: path.to_path_buf(),
            len,
            max: SNP_FIRMWARE_MAX,
        });
    }
    Ok(out)
}

/// sev-snp-measure's `snp:ovmf-hash`: the SNP launch digest after the
/// firmware pages alone, from which [`snp_launch_digest`] can resume.
pub fn snp_ovmf_hash(firmware: &Path) -> Result<[u8; 48], MeasureError> {
    let image = read_firmware(firmware)?;
    snp::measure::ovmf_hash(&image)
        .map(|ld| *ld.bytes())
        .map_err(|source| MeasureError::Snp {
            path: firmware.to_path_buf(),
            source,
        })
}

/// Computes the SNP launch digest of `inputs`: the kernel and initrd are
/// hashed (SHA-256, on their own threads) while the firmware pages are
/// measured (SHA-384).
pub fn snp_launch_digest(inputs: &SnpInputs) -> Result<SnpOutcome, MeasureError> {
    if inputs.kernel.is_none() && (inputs.initrd.is_some() || inputs.cmdline.is_some()) {
        return Err(MeasureError::NoKernel);
    }
    let start = Instant::now();
    let mut streams = Vec::new();
    for (what, path) in [("kernel", &inputs.kernel), ("initrd", &inputs.initrd)] {
        if let Some(path) = path {
            streams.push(Stream {
                what,
                path,
                keep_tail: 0,
            });
        }
    }
    let image = read_firmware(&inputs.firmware)?;
    let snp_err = |source| MeasureError::Snp {
        path: inputs.firmware.clone(),
        source,
    };
    let (firmware_ld, streamed) = std::thread::scope(|s| {
        let files = std::thread::Builder::new()
            .name("hash".into())
            .spawn_scoped(s, || stream_all(&streams));
        let firmware_ld = match inputs.ovmf_hash {
            Some(ld) => Ok(LaunchDigest::from_bytes(ld)),
            None => snp::measure::ovmf_hash(&image),
        };
        let streamed = match files {
            Ok(h) => h.join().unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        (firmware_ld, streamed)
    });
    if streamed.len() != streams.len() {
        return Err(MeasureError::Thread);
    }
    let firmware_ld = firmware_ld.map_err(snp_err)?;
    let mut input_bytes = if inputs.ovmf_hash.is_some() {
        0
    } else {
        image.len() as u64
    };
    let mut streamed = streamed.into_iter();
    let mut next = || streamed.next().unwrap_or(Err(MeasureError::Thread));
    let kernel = inputs.kernel.as_ref().map(|_| next()).transpose()?;
    let initrd = inputs.initrd.as_ref().map(|_| next()).transpose()?;
    let hashes = kernel.map(|k| {
        input_bytes += k.len;
        let initrd = initrd.map(|i| {
            input_bytes += i.len;
            i.hash.finish()
        });
        let cmdline = KernelHashes::cmdline_digest(inputs.cmdline.as_deref().map(str::as_bytes));
        KernelHashes::from_digests(cmdline, initrd, k.hash.finish())
    });
    let launch = SnpLaunch {
        ovmf_hash: Some(firmware_ld),
        kernel_hashes: hashes.as_ref(),
        vcpus: inputs.vcpus,
        vmsa: inputs.vmsa,
    };
    let ld = snp::snp_launch_digest(&image, &launch).map_err(snp_err)?;
    Ok(SnpOutcome {
        launch_digest: *ld.bytes(),
        hashes,
        input_bytes,
        elapsed: start.elapsed(),
    })
}

/// The platform's running firmware version (PLATFORM_STATUS / `query-sev`),
/// which enters the measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirmwareVersion {
    /// API_MAJOR.
    pub api_major: u8,
    /// API_MINOR.
    pub api_minor: u8,
    /// BUILD.
    pub build: u8,
}

impl std::fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "API {}.{} build {}",
            self.api_major, self.api_minor, self.build
        )
    }
}

/// The measurement the firmware returns for these inputs.
pub fn expected_measurement(
    tik: &Tik,
    fw: FirmwareVersion,
    policy: u32,
    ld: &[u8; 32],
    mnonce: &[u8; 16],
) -> [u8; 32] {
    measurement::launch_measurement_for_api(
        tik,
        fw.api_major,
        fw.api_minor,
        fw.build,
        policy,
        ld,
        mnonce,
    )
}

/// Which input would have to differ for a measurement to match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// The measurement matches the expected digest and firmware version with
    /// another policy: the guest was launched with that policy.
    Policy {
        /// The expected policy.
        expected: u32,
        /// The policy that matches.
        actual: u32,
    },
    /// The measurement matches the expected digest and policy with another
    /// firmware version.
    FirmwareVersion {
        /// The expected version.
        expected: FirmwareVersion,
        /// A version that matches.
        actual: FirmwareVersion,
    },
    /// The measurement matches the pre-0.17 formula (no version, build or
    /// context byte): the firmware is older than API 0.17.
    LegacyFirmware {
        /// The expected version.
        expected: FirmwareVersion,
    },
    /// Nothing but the launch digest (or the TIK) can explain it.
    Digest,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Policy { expected, actual } => write!(
                f,
                "policy differs: the measurement matches policy {} instead of the expected {}",
                sev_proto::abi::Policy::from_bits(*actual),
                sev_proto::abi::Policy::from_bits(*expected)
            ),
            Mismatch::FirmwareVersion { expected, actual } => write!(
                f,
                "firmware version differs: the measurement matches {actual} instead of the expected \
                 {expected}"
            ),
            Mismatch::LegacyFirmware { expected } => write!(
                f,
                "firmware version differs: the measurement uses the pre-0.17 format (firmware \
                 older than API 0.17), not {expected}"
            ),
            Mismatch::Digest => write!(
                f,
                "launch digest differs: no policy or firmware version explains the measurement, so \
                 the measured firmware, kernel, initrd or command line differ from the expected \
                 ones (or the launch did not use this session's TIK)"
            ),
        }
    }
}

/// Compares `blob` with the expected measurement in constant time; on a
/// mismatch, searches which single input explains it: other policies
/// (every flag combination, with the expected and with any minimum API
/// version up to 3.255), other firmware versions (API 0.0–3.255, every
/// build) and the pre-0.17 format; else the digest.
pub fn verify_blob(
    tik: &Tik,
    fw: FirmwareVersion,
    policy: u32,
    ld: &[u8; 32],
    blob: &MeasureBlob,
) -> Result<(), Mismatch> {
    let matches = |fw: FirmwareVersion, policy: u32| -> bool {
        expected_measurement(tik, fw, policy, ld, &blob.mnonce)
            .ct_eq(&blob.measurement)
            .into()
    };
    if matches(fw, policy) {
        return Ok(());
    }
    Err(diagnose(fw, policy, matches))
}

fn diagnose(
    fw: FirmwareVersion,
    policy: u32,
    matches: impl Fn(FirmwareVersion, u32) -> bool,
) -> Mismatch {
    let flags_mask = sev_proto::abi::Policy::FLAGS_MASK;
    let keep = policy & !flags_mask;
    for flags in 0..=flags_mask {
        let p = keep | flags;
        if p != policy && matches(fw, p) {
            return Mismatch::Policy {
                expected: policy,
                actual: p,
            };
        }
    }
    let modern = measurement::api_has_measurement_context(fw.api_major, fw.api_minor);
    if modern
        && matches(
            FirmwareVersion {
                api_major: 0,
                api_minor: 0,
                build: 0,
            },
            policy,
        )
    {
        return Mismatch::LegacyFirmware { expected: fw };
    }
    for api_major in 0..=3u8 {
        for api_minor in 0..=255u8 {
            if !measurement::api_has_measurement_context(api_major, api_minor) {
                continue;
            }
            for build in 0..=255u8 {
                let v = FirmwareVersion {
                    api_major,
                    api_minor,
                    build,
                };
                if v != fw && matches(v, policy) {
                    return Mismatch::FirmwareVersion {
                        expected: fw,
                        actual: v,
                    };
                }
            }
        }
    }
    for min in 0..=0x03ffu32 {
        let api = ((min >> 8) << 16) | ((min & 0xff) << 24);
        for flags in 0..=flags_mask {
            let p = (policy & sev_proto::abi::Policy::RESERVED_MASK) | api | flags;
            if p != policy && matches(fw, p) {
                return Mismatch::Policy {
                    expected: policy,
                    actual: p,
                };
            }
        }
    }
    Mismatch::Digest
}

#[cfg(test)]
mod tests {
    use super::*;
    use sev_proto::ovmf::sev_launch_digest;
    use sevm_testutil::fixture;

    fn unhex<const N: usize>(s: &str) -> [u8; N] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// docs/protocol/test-vectors.md#launch-digests (virtee/sev-snp-measure tests/test_guest.py):
    /// ovmf_AmdSev_suffix.bin, empty kernel and initrd, append
    /// "console=ttyS0 loglevel=7" → 82a3ee5d…; empty kernel, no initrd, no
    /// append → 77f613d7…; OvmfX64 without a kernel = SHA-256 of the file,
    /// with a kernel an error.
    #[test]
    fn launch_digest_known_answers_sev_snp_measure() {
        let test = "launch_digest_known_answers_sev_snp_measure";
        let Some(amdsev) = fixture(test, "ovmf/ovmf_AmdSev_suffix.bin") else {
            return;
        };
        let Some(x64) = fixture(test, "ovmf/ovmf_OvmfX64_suffix.bin") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let fw = write(dir.path(), "amdsev.bin", &amdsev);
        let empty = write(dir.path(), "empty", b"");
        let ld = launch_digest(&DigestInputs {
            firmware: fw.clone(),
            kernel: Some(empty.clone()),
            initrd: Some(empty.clone()),
            cmdline: Some("console=ttyS0 loglevel=7".into()),
            vmsas: vec![],
            es_vcpus: None,
        })
        .unwrap();
        assert_eq!(
            hex::encode(ld.launch_digest),
            "82a3ee5d537c3620628270c292ae30cb40c3c878666a7890ee7ef2a08fb535ff"
        );
        assert_eq!(
            hex::encode(ld.hashes.unwrap().cmdline),
            "321c8eec6a77bad179511397f913a083067ad8cb737bb260aacbfe8df70fc50a"
        );
        let ld = launch_digest(&DigestInputs {
            firmware: fw,
            kernel: Some(empty.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            hex::encode(ld.launch_digest),
            "77f613d7bbcdf12a73782ea9e88b0172aeda50d1a54201cb903594ff52846898"
        );
        let fw = write(dir.path(), "x64.bin", &x64);
        let ld = launch_digest(&DigestInputs {
            firmware: fw.clone(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            hex::encode(ld.launch_digest),
            "b4c021e085fb83ceffe6571a3d357b4a98773c83c474e47f76c876708fe316da"
        );
        let e = launch_digest(&DigestInputs {
            firmware: fw,
            kernel: Some(empty),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(e, MeasureError::Firmware { .. }), "{e}");
    }

    /// docs/protocol/test-vectors.md#sevctl-measurement case c (virtee/sevctl
    /// tests/measurementbuild.rs): sevctl's trimmed OVMF, kernel "fake vmlinuz\n", initrd "fake
    /// initrd\n", cmdline "foo bar baz fake kernel=cmdline", TIK tik1.bin,
    /// API 1.40 build 40, policy 3 → LD 4b47fec6…, measurement 8776ae61….
    #[test]
    fn sevctl_measurement_build_known_answer() {
        let test = "sevctl_measurement_build_known_answer";
        let Some(ovmf) = fixture(test, "ovmf/sevctl_OVMF.amdsev_trimmed.bin") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let ld = launch_digest(&DigestInputs {
            firmware: write(dir.path(), "ovmf", &ovmf),
            kernel: Some(write(dir.path(), "k", b"fake vmlinuz\n")),
            initrd: Some(write(dir.path(), "i", b"fake initrd\n")),
            cmdline: Some("foo bar baz fake kernel=cmdline".into()),
            vmsas: vec![],
            es_vcpus: None,
        })
        .unwrap();
        assert_eq!(
            hex::encode(ld.launch_digest),
            "4b47fec6f851487c33714c8a00a832a1b705ad0a7cac4a647388eccfa9f0c570"
        );
        let tik = Tik::from_bytes(unhex("3569cf61a32a602b87185ac6e0f55913"));
        let fw = FirmwareVersion {
            api_major: 1,
            api_minor: 40,
            build: 40,
        };
        let mnonce = unhex("c313fab511c216b1505b1b2ea9903c40");
        let m = expected_measurement(&tik, fw, 3, &ld.launch_digest, &mnonce);
        assert_eq!(
            hex::encode(m),
            "8776ae61b5909d55bb1062d63781dff52374a0460c3d4dac2b86cb9de7d63f0b"
        );
        assert_eq!(ld.input_bytes, 4096 + 13 + 12);
    }

    /// The parallel digest equals sev-proto's reference
    /// computation on a multi-chunk firmware with a footer table.
    #[test]
    fn parallel_digest_equals_reference() {
        let test = "parallel_digest_equals_reference";
        let Some(suffix) = fixture(test, "ovmf/ovmf_AmdSev_suffix.bin") else {
            return;
        };
        let mut fw = (0..3 * CHUNK + 12345)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<u8>>();
        fw.extend_from_slice(&suffix);
        let kernel: Vec<u8> = (0..CHUNK * 2 + 1).map(|i| (i % 13) as u8).collect();
        let initrd: Vec<u8> = (0..5000).map(|i| (i % 17) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let out = launch_digest(&DigestInputs {
            firmware: write(dir.path(), "fw", &fw),
            kernel: Some(write(dir.path(), "k", &kernel)),
            initrd: Some(write(dir.path(), "i", &initrd)),
            cmdline: Some(" x ".into()),
            vmsas: vec![],
            es_vcpus: None,
        })
        .unwrap();
        let hashes = KernelHashes::new(Some(b" x "), Some(&initrd), &kernel);
        assert_eq!(
            out.launch_digest,
            sev_launch_digest(&fw, Some(&hashes)).unwrap()
        );
        assert_eq!(
            out.input_bytes,
            (fw.len() + kernel.len() + initrd.len()) as u64
        );
    }

    /// A file, mapped or read, gives every byte once and in order, and the
    /// exact tail, for lengths around the chunk size.
    #[test]
    fn stream_file_hashes_every_byte_and_keeps_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let lens = [
            0,
            1,
            FOOTER_TAIL - 1,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            3 * CHUNK,
            5 * CHUNK + 333,
        ];
        for len in lens {
            let data: Vec<u8> = (0..len).map(|i| (i * 131 % 251) as u8).collect();
            let path = write(dir.path(), "f", &data);
            for (keep, map) in [0, 100, FOOTER_TAIL]
                .into_iter()
                .flat_map(|keep| [(keep, true), (keep, false)])
            {
                let mut hash = Sha256::new();
                let (n, tail) = stream_file_as("firmware", &path, &mut hash, keep, map).unwrap();
                assert_eq!(n, len as u64);
                assert_eq!(hash.finish(), roots_sha(&data), "len {len}, map {map}");
                let want = if keep == 0 {
                    &[][..]
                } else {
                    &data[len.saturating_sub(keep)..]
                };
                assert_eq!(tail, want, "len {len}, keep {keep}");
            }
        }
    }

    /// Files are mapped on AMD CPUs only, decided from the vendor string.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn files_are_mapped_on_amd_cpus_only() {
        let vendor = cpu_vendor();
        assert!(
            vendor.iter().all(|b| b.is_ascii_graphic()),
            "vendor string {vendor:?}"
        );
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        if let Some(line) = cpuinfo.lines().find(|l| l.starts_with("vendor_id")) {
            let named = line.rsplit(':').next().unwrap_or_default().trim();
            assert_eq!(named.as_bytes(), vendor, "/proc/cpuinfo says {named}");
        }
        assert_eq!(maps_files(), &vendor == b"AuthenticAMD");
    }

    /// The read path (pipes, devices) gives every byte once and in order,
    /// and the exact tail, whatever sizes the reads return.
    #[test]
    fn stream_read_hashes_every_byte_and_keeps_the_tail() {
        /// Returns at most `max` bytes per read and an interruption first.
        struct Dribble<'a> {
            data: &'a [u8],
            max: usize,
            interrupted: bool,
        }
        impl Read for Dribble<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if !self.interrupted {
                    self.interrupted = true;
                    return Err(std::io::ErrorKind::Interrupted.into());
                }
                let n = buf.len().min(self.max).min(self.data.len());
                let (head, rest) = self.data.split_at(n);
                buf[..n].copy_from_slice(head);
                self.data = rest;
                Ok(n)
            }
        }
        for len in [0, 1, CHUNK - 1, CHUNK, 3 * CHUNK + 333] {
            let data: Vec<u8> = (0..len).map(|i| (i * 131 % 251) as u8).collect();
            for max in [7, 4096, usize::MAX] {
                for keep in [0, 100, FOOTER_TAIL] {
                    let mut hash = Sha256::new();
                    let reader = Dribble {
                        data: &data,
                        max,
                        interrupted: false,
                    };
                    let (n, tail) = stream_read(reader, &mut hash, keep).unwrap();
                    assert_eq!(n, len as u64);
                    assert_eq!(hash.finish(), roots_sha(&data), "len {len}, max {max}");
                    assert_eq!(tail, &data[len.saturating_sub(keep)..][..keep.min(len)]);
                }
            }
        }
    }

    /// The largest stream gets a thread of its own; the others share what
    /// is left, and no thread is planned without a stream.
    #[test]
    fn plan_balances_the_largest_stream() {
        let sizes = [4 << 20, 8_000_000, 38_000_000];
        assert_eq!(plan(&sizes, 1), vec![vec![2, 1, 0]]);
        assert_eq!(plan(&sizes, 2), vec![vec![2], vec![1, 0]]);
        assert_eq!(plan(&sizes, 3), vec![vec![2], vec![1], vec![0]]);
        assert_eq!(plan(&sizes, 64), vec![vec![2], vec![1], vec![0]]);
        assert_eq!(plan(&[30, 30, 4], 2), vec![vec![0, 2], vec![1]]);
        assert_eq!(plan(&[7], 0), vec![vec![0]]);
    }

    /// A read error on a hashing thread reaches the caller as the file's
    /// read error (here a directory: it opens, its read fails).
    #[test]
    fn read_errors_name_the_input() {
        let dir = tempfile::tempdir().unwrap();
        let fw = write(dir.path(), "fw", &[1u8; 3 * CHUNK]);
        let e = launch_digest(&DigestInputs {
            firmware: fw.clone(),
            kernel: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            matches!(e, MeasureError::Read { what: "kernel", .. }),
            "{e}"
        );
        let e = launch_digest(&DigestInputs {
            firmware: dir.path().to_path_buf(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().starts_with("cannot read firmware"), "{e}");
    }

    #[test]
    fn vmsas_are_appended_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let fw = write(dir.path(), "fw", b"firmware");
        let page = write(dir.path(), "vmsa", &[3u8; 4096]);
        let bad = write(dir.path(), "bad", &[3u8; 4095]);
        let out = launch_digest(&DigestInputs {
            firmware: fw.clone(),
            vmsas: vec![page.clone(), page],
            ..Default::default()
        })
        .unwrap();
        let mut all = b"firmware".to_vec();
        all.extend([3u8; 8192]);
        assert_eq!(out.launch_digest, roots_sha(&all));
        let e = launch_digest(&DigestInputs {
            firmware: fw.clone(),
            vmsas: vec![bad],
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("4095 bytes"), "{e}");
        let e = launch_digest(&DigestInputs {
            firmware: fw,
            cmdline: Some("x".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(e, MeasureError::NoKernel));
        let e = launch_digest(&DigestInputs {
            firmware: dir.path().join("absent"),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("cannot read firmware"), "{e}");
    }

    fn roots_sha(b: &[u8]) -> [u8; 32] {
        crate::roots::sha256(b)
    }

    fn blob(tik: &Tik, fw: FirmwareVersion, policy: u32, ld: &[u8; 32]) -> MeasureBlob {
        let mnonce = [0x42; 16];
        MeasureBlob {
            measurement: expected_measurement(tik, fw, policy, ld, &mnonce),
            mnonce,
        }
    }

    /// The diagnosis names the one input that differs.
    #[test]
    fn mismatches_are_explained() {
        let tik = Tik::from_bytes([5; 16]);
        let fw = FirmwareVersion {
            api_major: 1,
            api_minor: 55,
            build: 21,
        };
        let ld = [9u8; 32];
        assert_eq!(
            verify_blob(&tik, fw, 1, &ld, &blob(&tik, fw, 1, &ld)),
            Ok(())
        );
        assert_eq!(
            verify_blob(&tik, fw, 1, &ld, &blob(&tik, fw, 0x3, &ld)),
            Err(Mismatch::Policy {
                expected: 1,
                actual: 3
            })
        );
        assert_eq!(
            verify_blob(&tik, fw, 1, &ld, &blob(&tik, fw, 0x0102_0001, &ld)),
            Err(Mismatch::Policy {
                expected: 1,
                actual: 0x0102_0001
            })
        );
        let older = FirmwareVersion {
            api_major: 1,
            api_minor: 49,
            build: 6,
        };
        assert_eq!(
            verify_blob(&tik, fw, 1, &ld, &blob(&tik, older, 1, &ld)),
            Err(Mismatch::FirmwareVersion {
                expected: fw,
                actual: older
            })
        );
        let legacy = FirmwareVersion {
            api_major: 0,
            api_minor: 16,
            build: 3,
        };
        assert_eq!(
            verify_blob(&tik, fw, 1, &ld, &blob(&tik, legacy, 1, &ld)),
            Err(Mismatch::LegacyFirmware { expected: fw })
        );
        let e = verify_blob(&tik, fw, 1, &ld, &blob(&tik, fw, 1, &[8u8; 32])).unwrap_err();
        assert_eq!(e, Mismatch::Digest);
        assert!(e.to_string().starts_with("launch digest differs"));
    }
}
