//! The emulated SNP guest behind `/dev/sev-guest`
//! (docs/guide/sev-emulate.md#dev-sev-guest): a real SNP launch of an OVMF
//! image on the emulated platform, planned as sevm plans it
//! (`sevm::sev::snp::launch_firmware` over the firmware's SEV metadata, the
//! plan `sev-owner measure --mode snp` measures), then the VMSAs and
//! SNP_LAUNCH_FINISH with the host data. The guest's VMPCK0 is read from the
//! secrets page the firmware filled, and the extended report's certificate
//! table is the emulated issuer's VCEK, ASK and ARK.
//!
//! No vCPU runs: the launched program plays the guest's software.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sev_firmware::emulated::{EmulatedPlatform, EmulatedSnpGuest};
use sev_firmware::{GuestMemory, SnpGuestContext, SnpLaunchCommands};
use sev_proto::ovmf::{FooterTable, SectionType};
use sev_proto::snp::cert::Certificate;
use sev_proto::snp::cert_table::{self, guid, CertEntry};
use sev_proto::snp::chain::VekKind;
use sev_proto::snp::kds::KdsRequest;
use sev_proto::snp::measure::metadata_updates;
use sev_proto::snp::GuestPolicy;
use sev_proto::vmsa::{CpuSignature, SevFeatures, VcpuModel, VmmType, VmsaConfig};
use sevm::memory::{Gpa, GuestRam, RamBacking};
use sevm::sev::snp::{cpuid_page, launch_firmware, FinishInputs, FirmwarePlan, SnpLaunch};

use crate::devsevguest::SevGuestDevice;

/// The largest firmware image read (OVMF images are a few MiB).
pub const MAX_FIRMWARE_LEN: u64 = 64 << 20;
/// Guest RAM below the firmware: room for OVMF's SEV metadata ranges
/// (they lie in the first 16 MiB); mapped lazily, never touched beyond them.
const RAM_SIZE: u64 = 64 << 20;
/// QEMU's default SNP policy (SMT allowed, reserved bit 17).
pub const DEFAULT_POLICY: u64 = 0x30000;
/// The default vCPU model.
pub const DEFAULT_VCPU_TYPE: &str = "EPYC-v4";
/// Most vCPUs (as `sev-owner measure`).
const MAX_VCPUS: u32 = 512;

/// What the launcher's `--snp-guest` gives: the launch inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestSpec {
    /// The OVMF image (with SEV metadata).
    pub firmware: PathBuf,
    /// The guest policy.
    pub policy: u64,
    /// HOST_DATA.
    pub host_data: [u8; 32],
    /// The number of vCPUs (VMSAs measured).
    pub vcpus: u32,
    /// The vCPU model (its signature goes into the VMSAs).
    pub vcpu_type: String,
    /// SEV_FEATURES of the VMSAs.
    pub guest_features: u64,
}

/// Why `--snp-guest` or the launch failed.
#[derive(Debug, thiserror::Error)]
pub enum GuestLaunchError {
    /// The `--snp-guest` text is malformed.
    #[error("--snp-guest: {0}")]
    Spec(String),
    /// The firmware image cannot be read.
    #[error("cannot read the firmware {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The firmware image is not an SNP-capable OVMF.
    #[error("firmware {path}: {detail}")]
    Firmware {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The emulated platform refused a step of the launch.
    #[error("SNP launch on the emulated platform: {0}")]
    Launch(String),
}

fn spec_err(s: impl Into<String>) -> GuestLaunchError {
    GuestLaunchError::Spec(s.into())
}

fn parse_u64(key: &str, v: &str) -> Result<u64, GuestLaunchError> {
    let r = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => v.parse(),
    };
    r.map_err(|_| spec_err(format!("{key}={v:?} is not a number")))
}

impl GuestSpec {
    /// Parses `firmware=FILE[,policy=N][,host-data=HEX64][,vcpus=N]
    /// [,vcpu-type=NAME][,guest-features=N]`.
    pub fn parse(text: &str) -> Result<Self, GuestLaunchError> {
        let mut firmware = None;
        let mut spec = GuestSpec {
            firmware: PathBuf::new(),
            policy: DEFAULT_POLICY,
            host_data: [0; 32],
            vcpus: 1,
            vcpu_type: DEFAULT_VCPU_TYPE.to_owned(),
            guest_features: SevFeatures::SNP_ACTIVE.bits(),
        };
        for item in text.split(',') {
            let Some((key, value)) = item.split_once('=') else {
                return Err(spec_err(format!("{item:?} is not KEY=VALUE")));
            };
            match key {
                "firmware" if !value.is_empty() => firmware = Some(PathBuf::from(value)),
                "policy" => spec.policy = parse_u64(key, value)?,
                "host-data" => {
                    let bytes = hex::decode(value)
                        .ok()
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                        .ok_or_else(|| {
                            spec_err(format!("host-data={value:?} is not 64 hex digits"))
                        })?;
                    spec.host_data = bytes;
                }
                "vcpus" => {
                    let n = parse_u64(key, value)?;
                    spec.vcpus = u32::try_from(n)
                        .ok()
                        .filter(|n| (1..=MAX_VCPUS).contains(n))
                        .ok_or_else(|| {
                            spec_err(format!("vcpus={value}: expected 1..={MAX_VCPUS}"))
                        })?;
                }
                "vcpu-type" => {
                    if VcpuModel::by_name(value).is_none() {
                        return Err(spec_err(format!("unknown vcpu-type {value:?}")));
                    }
                    spec.vcpu_type = value.to_owned();
                }
                "guest-features" => spec.guest_features = parse_u64(key, value)?,
                _ => return Err(spec_err(format!("unknown or empty key {key:?}"))),
            }
        }
        spec.firmware = firmware.ok_or_else(|| spec_err("firmware=FILE is required"))?;
        GuestPolicy::new(spec.policy)
            .map_err(|e| spec_err(format!("policy {:#x}: {e}", spec.policy)))?;
        Ok(spec)
    }

    /// The VMSA parameters (as `sev-owner measure --mode snp
    /// --vcpu-type T --guest-features F` takes them).
    pub fn vmsa_config(&self) -> Result<VmsaConfig, GuestLaunchError> {
        let model = VcpuModel::by_name(&self.vcpu_type)
            .ok_or_else(|| spec_err(format!("unknown vcpu-type {:?}", self.vcpu_type)))?;
        let signature: CpuSignature = model.signature();
        Ok(VmsaConfig::new(
            VmmType::Qemu,
            signature,
            SevFeatures::from_bits(self.guest_features),
        ))
    }
}

/// Reads at most [`MAX_FIRMWARE_LEN`] bytes of `path`.
fn read_firmware(path: &Path) -> Result<Vec<u8>, GuestLaunchError> {
    let err = |source| GuestLaunchError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(err)?;
    let mut out = Vec::new();
    file.take(MAX_FIRMWARE_LEN + 1)
        .read_to_end(&mut out)
        .map_err(err)?;
    if out.len() as u64 > MAX_FIRMWARE_LEN {
        return Err(GuestLaunchError::Firmware {
            path: path.to_path_buf(),
            detail: format!("larger than {MAX_FIRMWARE_LEN} bytes"),
        });
    }
    Ok(out)
}

/// A launched emulated SNP guest: its context and what the driver needs.
#[derive(Debug)]
pub struct LaunchedGuest {
    /// The guest's SNP context (RUNNING).
    pub context: Arc<dyn SnpGuestContext>,
    /// The launch digest (the reports' MEASUREMENT).
    pub measurement: [u8; 48],
    /// VMPCK0 from the secrets page.
    vmpck0: zeroize::Zeroizing<[u8; 32]>,
    /// The guest memory (kept alive with the context).
    _ram: Arc<GuestRam>,
}

impl LaunchedGuest {
    /// The guest driver of this guest, handing out `cert_table` with
    /// extended reports.
    pub fn device(&self, cert_table: Vec<u8>) -> SevGuestDevice {
        let ctx: Arc<dyn SnpLaunchCommands> = Arc::clone(&self.context) as _;
        SevGuestDevice::new(ctx, self.vmpck0.clone(), cert_table)
    }
}

fn launch_err(e: impl std::fmt::Display) -> GuestLaunchError {
    GuestLaunchError::Launch(e.to_string())
}

/// Launches `spec`'s guest on `platform` (SNP_INITed first if needed).
pub fn launch(
    platform: &EmulatedPlatform,
    spec: &GuestSpec,
) -> Result<LaunchedGuest, GuestLaunchError> {
    let image = read_firmware(&spec.firmware)?;
    let fw_err = |detail: String| GuestLaunchError::Firmware {
        path: spec.firmware.clone(),
        detail,
    };
    let table = FooterTable::parse(&image).map_err(|e| fw_err(e.to_string()))?;
    let metadata = table
        .sev_metadata()
        .map_err(|e| fw_err(e.to_string()))?
        .ok_or_else(|| fw_err("no SEV metadata (not an SNP-capable OVMF)".into()))?;
    let secrets = metadata
        .sections
        .iter()
        .find(|s| s.section_type == SectionType::SnpSecrets)
        .ok_or_else(|| fw_err("no SNP secrets page in the SEV metadata".into()))?
        .gpa;
    let updates =
        metadata_updates(&metadata, false, VmmType::Qemu).map_err(|e| fw_err(e.to_string()))?;
    let vmsa = spec.vmsa_config()?;
    let reset = table
        .sev_es_reset_vector()
        .map_err(|e| fw_err(e.to_string()))?;
    let vmsas: Vec<[u8; 4096]> = vmsa
        .pages(spec.vcpus, reset)
        .map_err(|e| fw_err(e.to_string()))?
        .collect();
    let policy = GuestPolicy::new(spec.policy).map_err(|e| spec_err(e.to_string()))?;

    let ram =
        Arc::new(GuestRam::with_firmware(RAM_SIZE, &image).map_err(|e| fw_err(e.to_string()))?);
    let memory: Arc<dyn GuestMemory> = Arc::new(RamBacking::new(Arc::clone(&ram)));
    platform.init_for_snp_guests().map_err(launch_err)?;
    let context: Arc<dyn SnpGuestContext> = Arc::new(
        EmulatedSnpGuest::new(Arc::clone(platform.firmware()), memory).map_err(launch_err)?,
    );
    let mut launch = SnpLaunch::start(Arc::clone(&context), policy, [0; 16]).map_err(launch_err)?;
    let plan = FirmwarePlan {
        firmware_size: image.len() as u64,
        updates,
        hashes_page: None,
        cpuid_page: cpuid_page(&[]).map_err(launch_err)?,
    };
    launch_firmware(&mut launch, &ram, &plan).map_err(launch_err)?;
    launch.update_vmsas(&vmsas).map_err(launch_err)?;
    let finish = FinishInputs {
        host_data: spec.host_data,
        ..FinishInputs::default()
    };
    let done = launch.finish(&finish).map_err(|f| launch_err(f.error))?;
    let measurement = done.backend().snp_launch_digest().map_err(launch_err)?;
    let mut page = zeroize::Zeroizing::new([0u8; 4096]);
    ram.read_plain(Gpa(u64::from(secrets)), &mut page[..])
        .map_err(|e| launch_err(format!("cannot read the secrets page: {e:?}")))?;
    let mut vmpck0 = zeroize::Zeroizing::new([0u8; 32]);
    vmpck0.copy_from_slice(&page[0x20..0x40]);
    log::info!(
        "emulated SNP guest launched: measurement {}, policy {policy}",
        hex::encode(measurement)
    );
    Ok(LaunchedGuest {
        context,
        measurement,
        vmpck0,
        _ram: ram,
    })
}

/// The emulated issuer's certificate table for the platform's reported
/// TCB: VCEK, ASK and ARK (DER) with their GUIDs.
pub fn cert_table(platform: &EmulatedPlatform) -> Result<Vec<u8>, GuestLaunchError> {
    let fw = platform.firmware();
    let req = fw.kds_vcek_request(None).map_err(launch_err)?;
    let KdsRequest::Vcek { product, .. } = req else {
        return Err(launch_err(format!("unexpected KDS request {req}")));
    };
    let vcek = fw.kds_object(&req).map_err(launch_err)?.bytes;
    let chain = fw
        .kds_object(&KdsRequest::CertChain {
            product,
            kind: VekKind::Vcek,
        })
        .map_err(launch_err)?
        .bytes;
    let certs = Certificate::from_pem_chain(&chain).map_err(launch_err)?;
    let (Some(ask), Some(ark)) = (certs.first(), certs.get(1)) else {
        return Err(launch_err(
            "the emulated cert_chain does not hold an ASK and an ARK",
        ));
    };
    cert_table::encode(&[
        CertEntry {
            guid: guid::VCEK,
            data: vcek,
        },
        CertEntry {
            guid: guid::ASK,
            data: ask.der().to_vec(),
        },
        CertEntry {
            guid: guid::ARK,
            data: ark.der().to_vec(),
        },
    ])
    .map_err(launch_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_defaults_and_bad_ones_are_named() {
        let s = GuestSpec::parse("firmware=/x/ovmf.fd").unwrap();
        assert_eq!(s.firmware, Path::new("/x/ovmf.fd"));
        assert_eq!(
            (s.policy, s.host_data, s.vcpus, s.guest_features),
            (DEFAULT_POLICY, [0; 32], 1, 1)
        );
        assert_eq!(s.vcpu_type, DEFAULT_VCPU_TYPE);
        let s = GuestSpec::parse(&format!(
            "vcpus=4,firmware=f,policy=0x70000,host-data={},vcpu-type=EPYC-Milan,guest-features=33",
            "0f".repeat(32)
        ))
        .unwrap();
        assert_eq!(
            (s.policy, s.host_data, s.vcpus, s.guest_features),
            (0x70000, [0x0f; 32], 4, 33)
        );
        assert_eq!(s.vcpu_type, "EPYC-Milan");
        for (bad, want) in [
            ("policy=0x30000", "firmware=FILE is required"),
            ("firmware=", "empty key \"firmware\""),
            ("firmware=f,vcpus=513", "vcpus=513"),
            ("firmware=f,vcpus=x", "\"x\" is not a number"),
            ("firmware=f,host-data=zz", "host-data"),
            ("firmware=f,vcpu-type=Pentium", "Pentium"),
            ("firmware=f,policy=0x1", "policy 0x1"),
            ("firmware=f,size", "\"size\" is not KEY=VALUE"),
        ] {
            let e = GuestSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn firmware_without_sev_metadata_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let opts = sev_psp::CreateOptions {
            ark_bits: 2048,
            ..Default::default()
        };
        let p = sev_psp::Platform::create(dir.path().join("p"), opts, sev_psp::rng::seeded_rng(3))
            .unwrap();
        let platform = EmulatedPlatform::from_firmware(p);
        let fw = dir.path().join("zeros.fd");
        std::fs::write(&fw, [0u8; 4096]).unwrap();
        let spec = GuestSpec::parse(&format!("firmware={}", fw.display())).unwrap();
        let e = launch(&platform, &spec).unwrap_err();
        assert!(matches!(e, GuestLaunchError::Firmware { .. }), "{e}");
        assert!(e.to_string().contains("zeros.fd"), "{e}");
        let spec = GuestSpec::parse("firmware=/nonexistent/x.fd").unwrap();
        let e = launch(&platform, &spec).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.fd"), "{e}");
    }
}
