//! The platform-wide jobs: managing the platform, and creating the per-VM
//! guest contexts.

use std::fmt;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

use sev_proto::cert::chain::CaChain;
use sev_proto::cert::sev::Certificate;

use crate::guest::GuestContext;
use crate::memory::{GuestMemory, HostRegion};
use crate::snp::SnpGuestContext;
use crate::types::{
    EncryptionParams, GuestKind, PlatformCerts, PlatformKind, PlatformStatus, VcekChain,
};
use crate::SevError;

/// Platform management: the commands of the platform owner (`sev-platform`)
/// and the platform facts a VMM checks before a launch.
pub trait PlatformManagement: Send + Sync + fmt::Debug {
    /// Which platform this is.
    fn kind(&self) -> &PlatformKind;
    /// `true` for the emulated AMD Secure Processor.
    fn is_emulated(&self) -> bool {
        matches!(self.kind(), PlatformKind::Emulated(_))
    }
    /// Human-readable description for messages (`SEV hardware through
    /// /dev/sev`, `the EMULATED SEV platform in DIR`).
    fn describe(&self) -> String;
    /// PLATFORM_STATUS.
    fn status(&self) -> Result<PlatformStatus, SevError>;
    /// PDH_CERT_EXPORT: the PDH certificate and PEK ‖ OCA ‖ CEK.
    fn pdh_cert_export(&self) -> Result<PlatformCerts, SevError>;
    /// PEK_CSR: the PEK certificate with empty signatures.
    fn pek_csr(&self) -> Result<Certificate, SevError>;
    /// PEK_CERT_IMPORT of an OCA-signed PEK and the OCA certificate.
    fn pek_cert_import(&self, pek: &Certificate, oca: &Certificate) -> Result<(), SevError>;
    /// PDH_GEN.
    fn pdh_gen(&self) -> Result<(), SevError>;
    /// PEK_GEN.
    fn pek_gen(&self) -> Result<(), SevError>;
    /// PLATFORM_RESET.
    fn platform_reset(&self) -> Result<(), SevError>;
    /// GET_ID: the chip id (64 bytes per socket).
    fn get_id(&self) -> Result<Vec<u8>, SevError>;
    /// The C-bit position and physical address reduction of this platform.
    fn encryption_params(&self) -> Result<EncryptionParams, SevError>;
    /// The ASK ‖ ARK that certify the CEK when the platform itself has them
    /// (the emulated platform's own roots); `None` on hardware, whose roots
    /// are AMD's and come out of band.
    fn amd_chain(&self) -> Result<Option<CaChain>, SevError>;
    /// The SNP certificates of this platform's VCEK for the TCB its reports
    /// carry now (REPORTED_TCB), when the platform issues them itself (the
    /// emulated platform, docs/guide/kds.md); `None` on hardware, whose
    /// certificates come from AMD's key distribution service.
    fn snp_vcek_chain(&self) -> Result<Option<VcekChain>, SevError> {
        Ok(None)
    }
}

/// A platform that runs guests: platform management, plus the per-VM
/// contexts of the guest commands.
pub trait SevPlatform: PlatformManagement {
    /// Work that must happen after the KVM VM `vm` and its memory slots
    /// exist but before vCPUs are created (hardware: `KVM_SEV_INIT` or
    /// `KVM_SEV_ES_INIT`, and `KVM_MEMORY_ENCRYPT_REG_REGION` for every
    /// region; nothing on the emulated platform).
    fn prepare_vm(
        &self,
        vm: BorrowedFd<'_>,
        regions: &[HostRegion],
        kind: GuestKind,
    ) -> Result<(), SevError>;
    /// The guest context of the VM `vm` over `memory` (before its
    /// LAUNCH_START or RECEIVE_START).
    fn attach(
        &self,
        vm: BorrowedFd<'_>,
        memory: Arc<dyn GuestMemory>,
        kind: GuestKind,
    ) -> Result<Arc<dyn GuestContext>, SevError>;
    /// The SNP guest context of the VM `vm` over `memory`, before its
    /// SNP_LAUNCH_START (which creates the firmware's guest context). The
    /// emulated platform SNP_INITs itself first when needed; on hardware
    /// `vm` must be a KVM VM of the SNP type whose memory is backed by
    /// guest_memfd. Unsupported unless the platform implements it.
    fn attach_snp(
        &self,
        vm: BorrowedFd<'_>,
        memory: Arc<dyn GuestMemory>,
    ) -> Result<Arc<dyn SnpGuestContext>, SevError> {
        let _ = (vm, memory);
        Err(SevError::Unsupported {
            command: "SNP_GCTX_CREATE",
            reason: format!("{} runs no SEV-SNP guests", self.describe()),
        })
    }
}
