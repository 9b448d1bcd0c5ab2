//! SNP guests on hardware: KVM's SNP commands through `sev-host`
//! ([`SnpVm`]). The VM must be a KVM VM of the SNP type, initialised with
//! KVM_SEV_INIT2 ([`crate::SevPlatform::prepare_vm`] with
//! [`crate::GuestKind::Snp`]), whose memory slots are backed by guest_memfd.
//! Ranges are made private (KVM_SET_MEMORY_ATTRIBUTES) before
//! KVM_SEV_SNP_LAUNCH_UPDATE, as QEMU does.
//!
//! KVM hides the firmware's guest context: it builds and measures the VMSAs
//! itself at KVM_SEV_SNP_LAUNCH_FINISH, and offers no SNP guest status and
//! no launch digest to the hypervisor; those are refused as unsupported.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use sev_host::snp::{SnpIdentity, SnpLaunchFinish, SnpLaunchStart, SnpPageType};
use sev_host::{SevDevice, SnpVm};
use sev_proto::abi::Status;
use sev_proto::hash::SHA384_LEN;
use sev_proto::snp::{GuestPolicy, PageType};

use super::{host_error, KvmGuest};
use crate::memory::{GuestMemory, HostView};
use crate::snp::{
    check_pages, LaunchUpdateError, SnpFinish, SnpGuestContext, SnpGuestStatus, SnpLaunchCommands,
    SNP_PAGE_LEN,
};
use crate::vmsa_window::VmsaPage;
use crate::SevError;

/// The KVM page type of an SNP page type; VMSAs are KVM's own.
fn kvm_page_type(page_type: PageType) -> Result<SnpPageType, SevError> {
    Ok(match page_type {
        PageType::Normal => SnpPageType::Normal,
        PageType::Zero => SnpPageType::Zero,
        PageType::Unmeasured => SnpPageType::Unmeasured,
        PageType::Secrets => SnpPageType::Secrets,
        PageType::Cpuid => SnpPageType::Cpuid,
        PageType::Vmsa => {
            return Err(SevError::Unsupported {
                command: "KVM_SEV_SNP_LAUNCH_UPDATE",
                reason: "KVM measures the VMSAs itself at KVM_SEV_SNP_LAUNCH_FINISH".into(),
            })
        }
    })
}

/// One VM's SNP context on hardware.
#[derive(Debug)]
pub struct HardwareSnpGuest {
    kvm: KvmGuest,
}

impl HardwareSnpGuest {
    /// The SNP context of the KVM VM `vm` (duplicated) over `memory`.
    pub(crate) fn new(
        vm: BorrowedFd<'_>,
        device: Arc<SevDevice>,
        memory: Arc<dyn GuestMemory>,
    ) -> Result<Self, SevError> {
        let kvm = KvmGuest::attach(vm, device, memory)?;
        Ok(HardwareSnpGuest { kvm })
    }

    fn snp(&self) -> SnpVm<'_> {
        SnpVm::new(self.kvm.vm.as_fd(), self.kvm.device.as_fd())
    }
}

fn unsupported(command: &'static str, reason: &str) -> SevError {
    SevError::Unsupported {
        command,
        reason: reason.into(),
    }
}

impl SnpLaunchCommands for HardwareSnpGuest {
    fn snp_launch_start(&self, policy: GuestPolicy, gosvw: [u8; 16]) -> Result<u32, SevError> {
        let start = SnpLaunchStart {
            policy: policy.bits(),
            gosvw,
        };
        self.snp()
            .launch_start(&start)
            .map_err(|e| host_error("KVM_SEV_SNP_LAUNCH_START", e))?;
        // KVM keeps the guest context to itself: no handle.
        Ok(0)
    }

    fn snp_launch_update(
        &self,
        gpa: u64,
        len: u64,
        page_type: PageType,
    ) -> Result<(), LaunchUpdateError> {
        const CMD: &str = "KVM_SEV_SNP_LAUNCH_UPDATE";
        check_pages(CMD, gpa, len)?;
        let kvm_type = kvm_page_type(page_type)?;
        let host_addr = self.kvm.host_addr(CMD, gpa, len)?;
        let snp = self.snp();
        snp.set_memory_private(gpa, len, true)
            .map_err(|e| host_error("KVM_SET_MEMORY_ATTRIBUTES", e))?;
        let mut before = Box::new([0u8; SNP_PAGE_LEN]);
        if page_type == PageType::Cpuid {
            self.kvm
                .memory
                .read_plain(gpa, &mut before[..])
                .map_err(|_| SevError::OutOfRange {
                    command: CMD,
                    gpa,
                    len,
                })?;
        }
        // SAFETY: `host_addr..host_addr + len` lies in one of the regions of
        // `self.kvm.memory`, live writable mappings with no Rust references into
        // them for as long as `self.kvm.memory` exists (`GuestMemory`'s contract).
        let result = unsafe { snp.launch_update(gpa, host_addr, len, kvm_type) };
        let error = match result {
            Ok(()) => return Ok(()),
            Err(e) => host_error(CMD, e),
        };
        if page_type == PageType::Cpuid
            && error.status().map(|s| s.0) == Some(Status::InvalidParam.code())
        {
            // KVM copied the firmware's corrected page back to the source.
            let mut corrected = Box::new([0u8; SNP_PAGE_LEN]);
            if self.kvm.memory.read_plain(gpa, &mut corrected[..]).is_ok() && corrected != before {
                return Err(LaunchUpdateError::CpuidRefused { error, corrected });
            }
        }
        Err(error.into())
    }

    /// KVM builds the VMSAs from the vCPUs' registers at
    /// KVM_SEV_SNP_LAUNCH_FINISH: nothing to do here.
    fn snp_launch_update_vmsas(&self, _vmsas: &[VmsaPage]) -> Result<(), SevError> {
        Ok(())
    }

    fn snp_launch_finish(&self, finish: &SnpFinish<'_>) -> Result<(), SevError> {
        let encoded = finish
            .id
            .map(|(block, auth)| (block.encode(), auth.encode()));
        let identity = encoded.as_ref().map(|(block, auth)| SnpIdentity {
            id_block: block,
            id_auth: &auth[..],
            author_key: finish.author_key_en,
        });
        let input = SnpLaunchFinish {
            identity,
            vcek_disabled: false,
            host_data: finish.host_data,
        };
        self.snp()
            .launch_finish(&input)
            .map_err(|e| host_error("KVM_SEV_SNP_LAUNCH_FINISH", e))
    }

    fn snp_guest_status(&self) -> Result<SnpGuestStatus, SevError> {
        Err(unsupported(
            "SNP_GUEST_STATUS",
            "KVM does not expose the SNP guest context to the VMM",
        ))
    }

    fn snp_launch_digest(&self) -> Result<[u8; SHA384_LEN], SevError> {
        Err(unsupported(
            "the SNP launch digest",
            "the SNP ABI gives the hypervisor no command that returns a guest's launch digest \
             (only the guest's own attestation report carries it)",
        ))
    }

    fn snp_page_state_change(&self, gpa: u64, pages: u64, private: bool) -> Result<(), SevError> {
        const CMD: &str = "KVM_SET_MEMORY_ATTRIBUTES";
        let len = pages
            .checked_mul(SNP_PAGE_LEN as u64)
            .ok_or(SevError::OutOfRange {
                command: CMD,
                gpa,
                len: u64::MAX,
            })?;
        self.snp()
            .set_memory_private(gpa, len, private)
            .map_err(|e| host_error(CMD, e))
    }

    fn snp_guest_request(
        &self,
        _request: &[u8; SNP_PAGE_LEN],
    ) -> Result<Box<[u8; SNP_PAGE_LEN]>, SevError> {
        Err(unsupported(
            "SNP_GUEST_REQUEST",
            "on hardware the kernel handles the guest's request exits (KVM issues \
             SNP_GUEST_REQUEST itself); the VMM never sees the messages",
        ))
    }
}

impl SnpGuestContext for HardwareSnpGuest {
    fn host_view(&self) -> Arc<dyn HostView> {
        self.kvm.view.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmsas_are_kvms_and_every_other_page_type_maps_to_kvms() {
        for (t, k) in [
            (PageType::Normal, SnpPageType::Normal),
            (PageType::Zero, SnpPageType::Zero),
            (PageType::Unmeasured, SnpPageType::Unmeasured),
            (PageType::Secrets, SnpPageType::Secrets),
            (PageType::Cpuid, SnpPageType::Cpuid),
        ] {
            assert_eq!(kvm_page_type(t).unwrap(), k);
            assert_eq!(k.kvm_type(), t as u8);
        }
        assert!(matches!(
            kvm_page_type(PageType::Vmsa),
            Err(SevError::Unsupported { .. })
        ));
    }
}
