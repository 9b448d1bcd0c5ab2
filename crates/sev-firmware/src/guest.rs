//! The per-VM jobs: launch, debug and migration commands of one guest, and
//! the host's view of its memory.
//!
//! Guest ranges are guest-physical addresses; host buffers are slices. Each
//! implementation turns them into what its firmware takes (host virtual
//! addresses for KVM, the guest backing for the emulated firmware).

use std::fmt;
use std::sync::Arc;

use sev_proto::abi::Policy;
use sev_proto::cert::sev::Certificate;
use sev_proto::secret::PacketHeader;
use sev_proto::session::SessionBuffer;

use crate::memory::HostView;
use crate::types::{GuestStatus, LaunchMeasurement, LaunchSession, MigrationTarget};
use crate::vmsa_window::VmsaPage;
use crate::SevError;

/// The launch commands (and the status and attestation of a launched
/// guest).
pub trait LaunchCommands: Send + Sync + fmt::Debug {
    /// LAUNCH_START with the owner's session (or none, for an unattested
    /// launch); `share_handle` non-zero shares that guest's key (QEMU's
    /// `handle=`). The kernel (or the emulated platform, playing its part)
    /// then ACTIVATEs the guest. Returns the firmware handle.
    fn launch_start(
        &self,
        share_handle: u32,
        policy: Policy,
        session: Option<&LaunchSession>,
    ) -> Result<u32, SevError>;
    /// LAUNCH_UPDATE_DATA: measures `len` bytes at `gpa` and encrypts them in
    /// place.
    fn launch_update_data(&self, gpa: u64, len: u64) -> Result<(), SevError>;
    /// LAUNCH_UPDATE_VMSA for every vCPU (SEV-ES), in vCPU-index order:
    /// `vmsas[i]` is vCPU `i`'s initial VMSA as the VMM built it. KVM
    /// builds the pages itself from the vCPUs' registers (which the VMM set
    /// from the same VMSAs) and checks only their number; the emulated
    /// firmware measures and encrypts these pages
    /// (docs/sev-es.md#where-the-vmsa-pages-live).
    fn launch_update_vmsa(&self, vmsas: &[VmsaPage]) -> Result<(), SevError>;
    /// LAUNCH_MEASURE.
    fn launch_measure(&self) -> Result<LaunchMeasurement, SevError>;
    /// LAUNCH_SECRET: the owner's packet header and encrypted payload, into
    /// guest memory at `gpa` (GUEST_LEN = TRANS_LEN = `secret.len()`).
    fn launch_secret(&self, header: &PacketHeader, gpa: u64, secret: &[u8])
        -> Result<(), SevError>;
    /// LAUNCH_FINISH.
    fn launch_finish(&self) -> Result<(), SevError>;
    /// GUEST_STATUS.
    fn guest_status(&self) -> Result<GuestStatus, SevError>;
    /// ATTESTATION with the caller's nonce: the 208-byte report.
    fn attestation_report(&self, mnonce: [u8; 16]) -> Result<Vec<u8>, SevError>;
}

/// The debug commands (any alignment: the implementation bounces to the
/// firmware's 16-byte granularity, as KVM does).
pub trait DebugCommands: Send + Sync + fmt::Debug {
    /// DBG_DECRYPT of `buf.len()` bytes at `gpa`.
    fn dbg_decrypt(&self, gpa: u64, buf: &mut [u8]) -> Result<(), SevError>;
    /// DBG_ENCRYPT of `data` to `gpa`.
    fn dbg_encrypt(&self, data: &[u8], gpa: u64) -> Result<(), SevError>;
}

/// The migration commands, both sides.
pub trait MigrationCommands: Send + Sync + fmt::Debug {
    /// SEND_START towards `target`: the guest's policy and the session
    /// made for the target's PDH.
    fn send_start(&self, target: &MigrationTarget) -> Result<(Policy, SessionBuffer), SevError>;
    /// SEND_UPDATE_DATA of `len` bytes at `gpa` (within one page) into
    /// caller buffers, resized to the packet header and `len`, so a
    /// migration can reuse them page after page.
    fn send_update_data_into(
        &self,
        gpa: u64,
        len: u64,
        header: &mut Vec<u8>,
        trans: &mut Vec<u8>,
    ) -> Result<(), SevError>;
    /// SEND_UPDATE_DATA of `len` bytes at `gpa`: packet header and
    /// transport buffer.
    fn send_update_data(&self, gpa: u64, len: u64) -> Result<(Vec<u8>, Vec<u8>), SevError> {
        let (mut header, mut trans) = (Vec::new(), Vec::new());
        self.send_update_data_into(gpa, len, &mut header, &mut trans)?;
        Ok((header, trans))
    }
    /// Whether this context implements [`MigrationCommands::send_update_vmsa`]
    /// and [`MigrationCommands::receive_update_vmsa`] (an SEV-ES guest on
    /// the emulated platform), so that a migration of an SEV-ES guest can
    /// be refused before SEND_START where they are missing.
    fn migrates_vmsas(&self) -> bool {
        false
    }
    /// SEND_UPDATE_VMSA of vCPU `index` (SEV-ES), after the VMM stopped the
    /// vCPUs: `state` is the vCPU's current register state as a VMSA, which
    /// the processor has saved into the vCPU's VMSA page on hardware (and
    /// the emulated platform saves there first,
    /// docs/sev-es.md#migration). Returns the packet header and transport
    /// buffer. Unsupported unless the context implements it.
    fn send_update_vmsa(
        &self,
        index: usize,
        state: &VmsaPage,
    ) -> Result<(Vec<u8>, Vec<u8>), SevError> {
        let _ = (index, state);
        Err(SevError::Unsupported {
            command: "SEND_UPDATE_VMSA",
            reason: "this platform does not migrate SEV-ES register state".into(),
        })
    }
    /// SEND_FINISH.
    fn send_finish(&self) -> Result<(), SevError>;
    /// SEND_CANCEL.
    fn send_cancel(&self) -> Result<(), SevError>;
    /// RECEIVE_START with the source's policy, PDH and session; returns the
    /// new handle.
    fn receive_start(
        &self,
        policy: Policy,
        pdh: &Certificate,
        session: &SessionBuffer,
    ) -> Result<u32, SevError>;
    /// RECEIVE_UPDATE_DATA of one packet into `gpa`.
    fn receive_update_data(&self, header: &[u8], gpa: u64, trans: &[u8]) -> Result<(), SevError>;
    /// RECEIVE_UPDATE_VMSA of one packet into vCPU `index`'s VMSA page
    /// (SEV-ES); returns the register state the vCPU resumes with, as the
    /// processor loads it on VMRUN (the emulated platform's vCPUs are set
    /// from it, docs/sev-es.md#migration). Unsupported unless the context
    /// implements it.
    fn receive_update_vmsa(
        &self,
        index: usize,
        header: &[u8],
        trans: &[u8],
    ) -> Result<Box<VmsaPage>, SevError> {
        let _ = (index, header, trans);
        Err(SevError::Unsupported {
            command: "RECEIVE_UPDATE_VMSA",
            reason: "this platform does not migrate SEV-ES register state".into(),
        })
    }
    /// RECEIVE_FINISH.
    fn receive_finish(&self) -> Result<(), SevError>;
}

/// One VM's SEV guest context: every per-VM job, and the host view of its
/// memory. SEV-ES and SEV-SNP contexts add their commands as traits of
/// their own next to these.
pub trait GuestContext: LaunchCommands + DebugCommands + MigrationCommands {
    /// The host view of this guest's memory (what a hypervisor sees).
    fn host_view(&self) -> Arc<dyn HostView>;
}
