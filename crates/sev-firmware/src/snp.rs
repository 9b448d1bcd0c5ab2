//! The SEV-SNP jobs of one guest: the SNP launch commands
//! ([`SnpLaunchCommands`]) and the guest context that holds them with the
//! host view of the guest's memory ([`SnpGuestContext`]).
//!
//! An SNP guest is not an SEV guest with more commands: its context is
//! created by SNP_GCTX_CREATE, its pages are measured one by one with a page
//! type into a SHA-384 launch digest, and it has no LAUNCH_MEASURE or
//! LAUNCH_SECRET. So it has traits of its own rather than extra methods on
//! [`crate::LaunchCommands`]. A platform creates one with
//! [`crate::SevPlatform::attach_snp`].
//!
//! Decoded values cross the boundary ([`GuestPolicy`], [`PageType`],
//! [`IdBlock`], [`IdAuth`]); each implementation encodes them for its
//! firmware: [`crate::emulated::EmulatedSnpGuest`] over `sev-psp`'s SNP
//! firmware, [`crate::hardware::HardwareSnpGuest`] over `sev-host`'s KVM SNP
//! commands.

use std::fmt;
use std::sync::Arc;

use sev_proto::hash::SHA384_LEN;
use sev_proto::snp::{GuestPolicy, IdAuth, IdBlock, PageType};

use crate::memory::HostView;
use crate::vmsa_window::VmsaPage;
use crate::SevError;

/// The size of an SNP page (and of the CPUID page).
pub const SNP_PAGE_LEN: usize = 4096;

/// What SNP_LAUNCH_FINISH gives the firmware besides the guest.
#[derive(Debug, Clone, Copy, Default)]
pub struct SnpFinish<'a> {
    /// The owner's ID block and ID authentication structure (QEMU's
    /// `id-block` and `id-auth`), checked by the firmware.
    pub id: Option<(&'a IdBlock, &'a IdAuth)>,
    /// AUTH_KEY_EN: the ID authentication structure carries an author key
    /// (QEMU's `author-key-enabled`).
    pub author_key_en: bool,
    /// HOST_DATA, copied into every attestation report (QEMU's `host-data`).
    pub host_data: [u8; 32],
}

/// An SNP guest's state, as SNP_GUEST_STATUS reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnpGuestState {
    /// Created, not launched.
    Init,
    /// SNP_LAUNCH_START done, pages being added.
    Launch,
    /// SNP_LAUNCH_FINISH done.
    Running,
}

impl SnpGuestState {
    /// `INIT`, `LAUNCH` or `RUNNING`.
    pub const fn name(self) -> &'static str {
        match self {
            SnpGuestState::Init => "INIT",
            SnpGuestState::Launch => "LAUNCH",
            SnpGuestState::Running => "RUNNING",
        }
    }
}

/// What SNP_GUEST_STATUS returns, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnpGuestStatus {
    /// The guest's handle on the platform (what the VMM reports; on
    /// hardware KVM keeps the context's address to itself and reports 0).
    pub handle: u32,
    /// The policy (`None` before SNP_LAUNCH_START).
    pub policy: Option<GuestPolicy>,
    /// The guest's ASID (0: not activated).
    pub asid: u32,
    /// The state.
    pub state: SnpGuestState,
}

/// Why an SNP_LAUNCH_UPDATE failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchUpdateError {
    /// The firmware (or the host) refused the update.
    #[error(transparent)]
    Sev(#[from] SevError),
    /// The firmware refused a CPUID page that breaks the platform's CPUID
    /// policy and handed back the table it would accept (written back to
    /// the page's source, unencrypted, as the firmware and KVM do). The
    /// launch digest is unchanged: the caller may retry once with
    /// `corrected`.
    #[error("{error}")]
    CpuidRefused {
        /// The firmware's refusal (INVALID_PARAM).
        error: SevError,
        /// The corrected CPUID page.
        corrected: Box<[u8; SNP_PAGE_LEN]>,
    },
}

/// The SNP launch commands of one guest (and its status).
pub trait SnpLaunchCommands: Send + Sync + fmt::Debug {
    /// SNP_LAUNCH_START with `policy` and the guest-OS-visible workarounds
    /// `gosvw` (the context was created and is ACTIVATEd on an SEV-ES/SNP
    /// ASID around it, as KVM_SEV_SNP_LAUNCH_START does). Returns the
    /// guest's handle.
    fn snp_launch_start(&self, policy: GuestPolicy, gosvw: [u8; 16]) -> Result<u32, SevError>;
    /// SNP_LAUNCH_UPDATE of the `len` bytes (whole 4 KiB pages) at `gpa`,
    /// each page as `page_type`. The bytes are what the VMM wrote into guest
    /// memory (NORMAL, UNMEASURED, CPUID) or are filled by the firmware
    /// (ZERO, SECRETS). A CPUID page the firmware refuses is
    /// [`LaunchUpdateError::CpuidRefused`].
    fn snp_launch_update(
        &self,
        gpa: u64,
        len: u64,
        page_type: PageType,
    ) -> Result<(), LaunchUpdateError>;
    /// The VMSA of every vCPU, in vCPU-index order, as SNP_LAUNCH_UPDATE
    /// pages of type VMSA at `INITIAL_VMSA_GPA`. KVM adds them itself from
    /// the vCPUs' registers at KVM_SEV_SNP_LAUNCH_FINISH and checks only
    /// their number here; the emulated firmware measures these pages
    /// (docs/snp.md#the-vmsas).
    fn snp_launch_update_vmsas(&self, vmsas: &[VmsaPage]) -> Result<(), SevError>;
    /// SNP_LAUNCH_FINISH.
    fn snp_launch_finish(&self, finish: &SnpFinish<'_>) -> Result<(), SevError>;
    /// SNP_GUEST_STATUS.
    fn snp_guest_status(&self) -> Result<SnpGuestStatus, SevError>;
    /// The launch digest so far (what the guest's attestation reports carry
    /// as MEASUREMENT): the host operator's check of a launch it ran. The
    /// emulated platform has it; the SNP ABI gives the hypervisor no such
    /// command, so hardware refuses it as unsupported
    /// (docs/snp.md#the-launch-digest-extension).
    fn snp_launch_digest(&self) -> Result<[u8; SHA384_LEN], SevError>;
    /// A page-state change the guest asked for (the GHCB request the VMM
    /// forwards): `pages` 4 KiB pages at `gpa` become private or shared.
    fn snp_page_state_change(&self, gpa: u64, pages: u64, private: bool) -> Result<(), SevError>;
    /// SNP_GUEST_REQUEST: the guest's message page `request` (a header and
    /// a payload sealed under one of its VMPCKs,
    /// `sev_proto::snp::guest_msg`); returns the firmware's response page.
    /// A firmware refusal is [`SevError::Firmware`], whose
    /// [`SevError::status`] is the FW_ERROR a VMM reports to the guest (e.g.
    /// BAD_MEASUREMENT for a message that does not authenticate, AEAD_OFLOW
    /// for a wrong sequence number). On hardware KVM handles the guest's
    /// request exits itself, so this is refused as unsupported there.
    fn snp_guest_request(
        &self,
        request: &[u8; SNP_PAGE_LEN],
    ) -> Result<Box<[u8; SNP_PAGE_LEN]>, SevError>;
}

/// One VM's SNP guest context: the SNP launch commands and the host view of
/// its memory.
pub trait SnpGuestContext: SnpLaunchCommands {
    /// The host view of this guest's memory (assigned pages are ciphertext
    /// and not writable by the host).
    fn host_view(&self) -> Arc<dyn HostView>;
}

/// An SNP_LAUNCH_UPDATE range must be whole pages at a page boundary.
pub(crate) fn check_pages(command: &'static str, gpa: u64, len: u64) -> Result<(), SevError> {
    let page = SNP_PAGE_LEN as u64;
    if len == 0 || !gpa.is_multiple_of(page) || !len.is_multiple_of(page) {
        return Err(SevError::Host {
            command,
            detail: format!("{gpa:#x}+{len:#x} is not whole 4 KiB pages"),
        });
    }
    gpa.checked_add(len)
        .map(drop)
        .ok_or(SevError::OutOfRange { command, gpa, len })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_ranges_are_whole_pages() {
        check_pages("X", 0x1000, 0x2000).unwrap();
        for (gpa, len) in [(0x1000, 0), (0x1001, 0x1000), (0x1000, 0x800)] {
            let e = check_pages("X", gpa, len).unwrap_err();
            assert!(e.to_string().contains("whole 4 KiB pages"), "{e}");
        }
        assert!(matches!(
            check_pages("X", !0xfff, 0x2000),
            Err(SevError::OutOfRange { .. })
        ));
        assert_eq!(SnpGuestState::Launch.name(), "LAUNCH");
    }
}
