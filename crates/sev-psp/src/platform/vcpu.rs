//! The CPU's part of an SEV-ES guest's register state, which no firmware
//! command does: on hardware the processor saves a vCPU's registers into its
//! VMSA page (encrypted under the guest's key) when the vCPU exits, and loads
//! them from it on VMRUN. The emulated platform runs its guests as normal KVM
//! vCPUs, so the VMM hands these two steps their registers
//! (docs/sev-es.md#migration).

use sev_proto::abi::{CommandId, Status};

use super::guest::check_vmsa_args;
use super::{cmd, FwError, Op, Platform};
use crate::memory::{self, GuestBacking, MemoryState};

impl Platform {
    /// The vCPU's exit before SEND_UPDATE_VMSA: writes `state` (one 4 KiB
    /// VMSA) into the page at `gpa`, encrypted under the guest's key (the
    /// page is private afterwards). The guest must be an SEV-ES guest in
    /// SUPDATE (after SEND_START), as when the VMM has stopped its vCPUs to
    /// send their VMSAs; errors are reported as SEND_UPDATE_VMSA's.
    pub fn vcpu_save_vmsa(
        &self,
        handle: u32,
        mem: &dyn GuestBacking,
        gpa: u64,
        state: &[u8],
    ) -> Result<(), FwError> {
        let id = CommandId::SendUpdateVmsa;
        self.on_vmsa(id, handle, mem, gpa, page_len(state), |op, memory_state| {
            memory::encrypt_for_guest(mem, memory_state, gpa, state)
                .map_err(|e| FwError::new(op, Status::InvalidAddress, e.to_string()))
        })
    }

    /// The vCPU's VMRUN after RECEIVE_UPDATE_VMSA: reads the private VMSA
    /// page at `gpa` decrypted under the guest's key into `out` (4 KiB). The
    /// guest must be an SEV-ES guest in RUPDATE; a page that is not private
    /// (never received) is refused, as the CPU would not run it; errors are
    /// reported as RECEIVE_UPDATE_VMSA's.
    pub fn vcpu_load_vmsa(
        &self,
        handle: u32,
        mem: &dyn GuestBacking,
        gpa: u64,
        out: &mut [u8],
    ) -> Result<(), FwError> {
        let id = CommandId::ReceiveUpdateVmsa;
        self.on_vmsa(id, handle, mem, gpa, page_len(out), |op, memory_state| {
            if !memory_state.is_private(gpa) {
                return Err(FwError::new(
                    op,
                    Status::InvalidAddress,
                    format!("no VMSA was received at {gpa:#x}"),
                ));
            }
            memory::decrypt_from_guest(mem, memory_state, gpa, out)
                .map_err(|e| FwError::new(op, Status::InvalidAddress, e.to_string()))
        })
    }

    /// The checks of VMSA command `id` on the page at `gpa` (`len` bytes)
    /// of SEV-ES guest `handle`, then `f` on the guest's memory state under
    /// the platform lock.
    fn on_vmsa(
        &self,
        id: CommandId,
        handle: u32,
        mem: &dyn GuestBacking,
        gpa: u64,
        len: u32,
        f: impl FnOnce(Op, &MemoryState) -> Result<(), FwError>,
    ) -> Result<(), FwError> {
        let op = cmd(id);
        check_vmsa_args(op, mem, gpa, len)?;
        let mut inner = self.lock();
        let guest = inner.guest(op, id, handle, true)?;
        if !guest.policy.es() {
            return Err(FwError::new(
                op,
                Status::PolicyFailure,
                "only an SEV-ES guest has a VMSA",
            ));
        }
        let memory_state = guest.memory(op, mem)?;
        f(op, &memory_state)
    }
}

/// A buffer's length as the VMSA commands' `len` (anything but 4 KiB fails
/// their length check).
fn page_len(buf: &[u8]) -> u32 {
    u32::try_from(buf.len()).unwrap_or(u32::MAX)
}
