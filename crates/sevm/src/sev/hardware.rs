//! The hardware SEV platform: `/dev/sev` for platform commands and KVM's
//! `KVM_MEMORY_ENCRYPT_OP` on the VM fd for guest commands (through
//! `sev-host`).
//!
//! Guest ranges are translated from guest-physical addresses to the host
//! virtual addresses of the VMM's mapping, which KVM pins and hands to the
//! firmware. The host view of guest memory is that raw mapping: on SEV
//! hardware the memory controller stores private pages as ciphertext, so
//! reading the mapping *is* the hypervisor's view.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sev_host::{cpuid_8000_001f, HostError, SevDevice, SevVm};
use sev_proto::abi::{GuestState, Policy, StatusCode};

use super::{EncryptionParams, GuestInfo, PlatformInfo, SevBackend, SevError, SevPlatform};
use crate::machine::{Machine, PreVcpuHook};
use crate::memory::{Gpa, GuestRam, MemoryView, PlainView};

/// Renders an error with its sources (`a: b: c`).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}

/// Maps a `sev-host` error of firmware command `command` to a [`SevError`]:
/// firmware statuses stay data.
pub(crate) fn host_error(command: &'static str, e: HostError) -> SevError {
    match e {
        HostError::Firmware { cmd, code } => SevError::Firmware {
            command,
            status: StatusCode(code),
            detail: cmd.to_string(),
        },
        other => SevError::Host {
            command,
            detail: error_chain(&other),
        },
    }
}

/// `/dev/sev` (or another device path given with `sev-device=`).
#[derive(Debug)]
pub struct HardwarePlatform {
    device: Arc<SevDevice>,
    path: PathBuf,
}

impl HardwarePlatform {
    /// Opens the SEV device. A missing device is an error that says how to
    /// use the emulated platform instead; sevm never falls back to it.
    pub fn open(path: &Path) -> Result<Self, SevError> {
        let device = SevDevice::open_path(path).map_err(|e| {
            SevError::Platform(format!(
                "cannot use the SEV device {}: {} (this host has no usable SEV hardware; \
                 to use sevm's emulated AMD Secure Processor instead, pass \
                 sev-device=emulated:STATE-DIR explicitly)",
                path.display(),
                error_chain(&e)
            ))
        })?;
        Ok(HardwarePlatform {
            device: Arc::new(device),
            path: path.to_path_buf(),
        })
    }
}

impl SevPlatform for HardwarePlatform {
    fn is_emulated(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!("SEV hardware through {}", self.path.display())
    }

    fn status(&self) -> Result<PlatformInfo, SevError> {
        let s = self
            .device
            .platform_status()
            .map_err(|e| host_error("PLATFORM_STATUS", e))?;
        Ok(PlatformInfo {
            api_major: s.api_major,
            api_minor: s.api_minor,
            build: s.build,
            es_capable: s.es_enabled(),
        })
    }

    fn pdh_cert_export(&self) -> Result<(Vec<u8>, Vec<u8>), SevError> {
        self.device
            .pdh_cert_export()
            .map_err(|e| host_error("PDH_CERT_EXPORT", e))
    }

    fn get_id(&self) -> Result<Vec<u8>, SevError> {
        self.device.get_id().map_err(|e| host_error("GET_ID", e))
    }

    fn encryption_params(&self) -> Result<EncryptionParams, SevError> {
        let c = cpuid_8000_001f();
        if !c.leaf_present || !c.sev {
            return Err(SevError::Platform(
                "the host CPU does not report SEV support (CPUID 0x8000001F)".into(),
            ));
        }
        Ok(EncryptionParams {
            cbitpos: u32::from(c.cbitpos),
            reduced_phys_bits: u32::from(c.reduced_phys_bits),
        })
    }

    fn pre_vcpu_hook(&self, es: bool) -> Option<PreVcpuHook> {
        let device = Arc::clone(&self.device);
        Some(Box::new(move |vm, ram| {
            // SAFETY: `vm` is a live VM fd for the whole closure call; the
            // borrowed fd does not outlive it.
            let vm_fd = unsafe { BorrowedFd::borrow_raw(vm.as_raw_fd()) };
            let sev = SevVm::new(vm_fd, device.as_fd());
            sev.init(es).map_err(|e| {
                host_error(
                    if es {
                        "KVM_SEV_ES_INIT"
                    } else {
                        "KVM_SEV_INIT"
                    },
                    e,
                )
            })?;
            for region in ram.region_info() {
                sev.register_region(region.host_addr, region.len)
                    .map_err(|e| host_error("KVM_MEMORY_ENCRYPT_REG_REGION", e))?;
            }
            Ok(())
        }))
    }

    fn attach(&self, machine: &Machine, _es: bool) -> Result<Arc<dyn SevBackend>, SevError> {
        let vm = machine.vm_fd().as_raw_fd();
        // SAFETY: the machine's VM fd is open for as long as `machine` is
        // borrowed; it is duplicated before the borrow ends.
        let borrowed = unsafe { BorrowedFd::borrow_raw(vm) };
        let vm = borrowed.try_clone_to_owned().map_err(|e| SevError::Host {
            command: "attach",
            detail: format!("cannot duplicate the KVM VM fd: {e}"),
        })?;
        let ram = Arc::clone(machine.guest_memory());
        let view: Arc<dyn MemoryView> = Arc::new(PlainView::new(Arc::clone(&ram)));
        Ok(Arc::new(HardwareBackend {
            vm,
            device: Arc::clone(&self.device),
            ram,
            view,
        }))
    }
}

/// One VM's SEV context on hardware.
pub struct HardwareBackend {
    vm: OwnedFd,
    device: Arc<SevDevice>,
    ram: Arc<GuestRam>,
    view: Arc<dyn MemoryView>,
}

impl std::fmt::Debug for HardwareBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HardwareBackend")
            .field("vm", &self.vm)
            .field("ram", &self.ram)
            .finish_non_exhaustive()
    }
}

impl HardwareBackend {
    fn sev(&self) -> SevVm<'_> {
        SevVm::new(self.vm.as_fd(), self.device.as_fd())
    }

    fn host_addr(&self, command: &'static str, gpa: Gpa, len: u64) -> Result<u64, SevError> {
        self.ram
            .host_address(gpa, len)
            .map_err(|_| SevError::OutOfRange {
                command,
                gpa: gpa.raw(),
                len,
            })
    }
}

fn usize_len(command: &'static str, gpa: Gpa, len: u64) -> Result<usize, SevError> {
    usize::try_from(len).map_err(|_| SevError::OutOfRange {
        command,
        gpa: gpa.raw(),
        len,
    })
}

impl SevBackend for HardwareBackend {
    fn launch_start(
        &self,
        share_handle: u32,
        policy: Policy,
        godh: Option<&[u8]>,
        session: Option<&[u8]>,
    ) -> Result<u32, SevError> {
        self.sev()
            .launch_start_sharing(share_handle, policy.bits(), godh, session)
            .map_err(|e| host_error("LAUNCH_START", e))
    }

    fn launch_update_data(&self, gpa: Gpa, len: u64) -> Result<(), SevError> {
        const CMD: &str = "LAUNCH_UPDATE_DATA";
        let addr = self.host_addr(CMD, gpa, len)?;
        let len = usize_len(CMD, gpa, len)?;
        // SAFETY: `addr..addr+len` lies inside one of `self.ram`'s mappings
        // (checked by `host_address`), which this backend keeps alive; the
        // VMM never holds Rust references into guest memory (GuestRam only
        // copies bytes), so in-place encryption invalidates nothing.
        unsafe { self.sev().launch_update_data(addr, len) }.map_err(|e| host_error(CMD, e))
    }

    fn launch_update_vmsa(&self) -> Result<(), SevError> {
        self.sev()
            .launch_update_vmsa()
            .map_err(|e| host_error("LAUNCH_UPDATE_VMSA", e))
    }

    fn launch_measure(&self) -> Result<[u8; 48], SevError> {
        self.sev()
            .launch_measure()
            .map_err(|e| host_error("LAUNCH_MEASURE", e))
    }

    fn launch_secret(&self, header: &[u8], gpa: Gpa, secret: &[u8]) -> Result<(), SevError> {
        const CMD: &str = "LAUNCH_SECRET";
        let addr = self.host_addr(CMD, gpa, secret.len() as u64)?;
        // SAFETY: as in `launch_update_data`: the destination lies inside
        // guest memory owned by `self.ram`, never referenced by Rust.
        unsafe { self.sev().launch_secret(header, addr, secret) }.map_err(|e| host_error(CMD, e))
    }

    fn launch_finish(&self) -> Result<(), SevError> {
        self.sev()
            .launch_finish()
            .map_err(|e| host_error("LAUNCH_FINISH", e))
    }

    fn guest_status(&self) -> Result<GuestInfo, SevError> {
        let s = self
            .sev()
            .guest_status()
            .map_err(|e| host_error("GUEST_STATUS", e))?;
        Ok(GuestInfo {
            handle: s.handle,
            policy: Policy::from_bits(s.policy),
            state: u8::try_from(s.state).ok().and_then(GuestState::from_u8),
        })
    }

    fn attestation_report(&self, mnonce: [u8; 16]) -> Result<Vec<u8>, SevError> {
        self.sev()
            .attestation_report(mnonce)
            .map_err(|e| host_error("ATTESTATION", e))
    }

    fn dbg_decrypt(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), SevError> {
        const CMD: &str = "DBG_DECRYPT";
        let addr = self.host_addr(CMD, gpa, buf.len() as u64)?;
        self.sev()
            .dbg_decrypt(addr, buf)
            .map_err(|e| host_error(CMD, e))
    }

    fn dbg_encrypt(&self, data: &[u8], gpa: Gpa) -> Result<(), SevError> {
        const CMD: &str = "DBG_ENCRYPT";
        let addr = self.host_addr(CMD, gpa, data.len() as u64)?;
        // SAFETY: the destination lies inside guest memory owned by
        // `self.ram`, never referenced by Rust.
        unsafe { self.sev().dbg_encrypt(data, addr) }.map_err(|e| host_error(CMD, e))
    }

    fn send_start(
        &self,
        pdh: &[u8],
        plat_certs: &[u8],
        amd_certs: &[u8],
    ) -> Result<(Policy, Vec<u8>), SevError> {
        let (policy, session) = self
            .sev()
            .send_start(pdh, plat_certs, amd_certs)
            .map_err(|e| host_error("SEND_START", e))?;
        Ok((Policy::from_bits(policy), session))
    }

    fn send_update_data(&self, gpa: Gpa, len: u64) -> Result<(Vec<u8>, Vec<u8>), SevError> {
        const CMD: &str = "SEND_UPDATE_DATA";
        let addr = self.host_addr(CMD, gpa, len)?;
        let len = usize_len(CMD, gpa, len)?;
        self.sev()
            .send_update_data(addr, len)
            .map_err(|e| host_error(CMD, e))
    }

    fn send_finish(&self) -> Result<(), SevError> {
        self.sev()
            .send_finish()
            .map_err(|e| host_error("SEND_FINISH", e))
    }

    fn send_cancel(&self) -> Result<(), SevError> {
        self.sev()
            .send_cancel()
            .map_err(|e| host_error("SEND_CANCEL", e))
    }

    fn receive_start(&self, policy: Policy, pdh: &[u8], session: &[u8]) -> Result<u32, SevError> {
        self.sev()
            .receive_start(policy.bits(), pdh, session)
            .map_err(|e| host_error("RECEIVE_START", e))
    }

    fn receive_update_data(&self, header: &[u8], gpa: Gpa, trans: &[u8]) -> Result<(), SevError> {
        const CMD: &str = "RECEIVE_UPDATE_DATA";
        let addr = self.host_addr(CMD, gpa, trans.len() as u64)?;
        // SAFETY: the destination lies inside guest memory owned by
        // `self.ram`, never referenced by Rust.
        unsafe { self.sev().receive_update_data(header, addr, trans) }
            .map_err(|e| host_error(CMD, e))
    }

    fn receive_finish(&self) -> Result<(), SevError> {
        self.sev()
            .receive_finish()
            .map_err(|e| host_error("RECEIVE_FINISH", e))
    }

    fn host_view(&self) -> Arc<dyn MemoryView> {
        Arc::clone(&self.view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_device_says_how_to_get_the_emulator_and_never_falls_back() {
        let e = HardwarePlatform::open(Path::new("/nonexistent/sev")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("/nonexistent/sev"), "{msg}");
        assert!(msg.contains("sev-device=emulated:"), "{msg}");
    }

    #[test]
    fn firmware_status_from_the_kernel_stays_data() {
        let e = host_error(
            "LAUNCH_SECRET",
            HostError::Firmware {
                cmd: "KVM_SEV_LAUNCH_SECRET",
                code: 0x0B,
            },
        );
        assert_eq!(e.status(), Some(StatusCode(0x0B)));
        assert!(e
            .to_string()
            .starts_with("SEV: LAUNCH_SECRET failed: BAD_MEASUREMENT (0x0B)"));
        let e = host_error("LAUNCH_START", HostError::Empty { what: "session" });
        assert_eq!(e.status(), None);
        assert_eq!(e.to_string(), "SEV: LAUNCH_START failed: session is empty");
    }

    /// On a host with SEV hardware: the platform answers and exports its
    /// certificates (the full launch is exercised by the binary's
    /// integration tests).
    #[test]
    fn hardware_platform_status_and_pdh() {
        if !sevm_testutil::sev_device("hardware_platform_status_and_pdh") {
            return;
        }
        let p = HardwarePlatform::open(Path::new("/dev/sev")).unwrap();
        let s = p.status().unwrap();
        assert!(s.api_major > 0 || s.api_minor > 0);
        let (pdh, chain) = p.pdh_cert_export().unwrap();
        assert_eq!(pdh.len(), sev_proto::abi::SEV_CERT_LEN);
        assert_eq!(chain.len(), sev_proto::abi::PLATFORM_CHAIN_LEN);
        assert!(p.encryption_params().unwrap().cbitpos > 0);
    }
}
