//! The builder of a VM that boots: the launch flow of
//! docs/architecture.md#launch up to LAUNCH_MEASURE on a prepared machine
//! (LAUNCH_START with the owner's GODH and session, or neither;
//! LAUNCH_UPDATE_DATA over the firmware image; the kernel-hashes table when
//! `-kernel` and `kernel-hashes=on` are given, placed where the firmware's
//! footer table says and measured after the firmware; LAUNCH_UPDATE_VMSA for
//! SEV-ES; LAUNCH_MEASURE), or for an SEV-SNP guest the SNP launch up to
//! SNP_LAUNCH_FINISH ([`launch_snp`]). LAUNCH_FINISH (SNP_LAUNCH_FINISH)
//! comes with the first `cont` (at once without `-S`).

use std::sync::Arc;

use sev_proto::ovmf::PADDED_HASH_TABLE_LEN;

use super::setup::{self, Prepared};
use super::state::{IncomingPhase, LaunchPhase, SnpContext, SnpPhase};
use super::{machine_err, Vmm, VmmError};
use crate::config::VmConfig;
use crate::ghcb::guest_request::StaticCertTable;
use crate::ghcb::SnpGhcbPlatform;
use crate::memory::{Gpa, FOUR_GIB};
use crate::sev::snp::{self, SnpLaunch};
use crate::sev::{Launch, LaunchCommands, SevError};

/// Builds a VM that boots its firmware: prepares the machine and, for an
/// SEV guest, runs the launch up to LAUNCH_MEASURE.
pub(super) fn build(config: &VmConfig) -> Result<Vmm, VmmError> {
    let Prepared {
        mut machine,
        firmware_size,
        launch_session,
        hashes,
        secret_area,
        sev,
        vmsas,
        snp,
    } = setup::prepare(config)?;
    let (sev, snp) = match (sev, snp) {
        (None, _) => (None, None),
        (Some(platform), Some(inputs)) => {
            let vmsas =
                vmsas.ok_or_else(|| VmmError::Guest("SEV-SNP: no VMSAs were built".into()))?;
            let snp = launch_snp(&mut machine, platform, inputs, firmware_size, &vmsas)?;
            (None, Some(snp))
        }
        (Some(platform), None) => {
            let backend = platform.attach(&mut machine)?;
            let policy = platform.policy();
            let mut launch = Launch::start(
                Arc::clone(&backend) as Arc<dyn LaunchCommands>,
                platform.guest.handle,
                policy,
                launch_session.as_ref(),
            )?;
            launch.update_data(Gpa(FOUR_GIB - firmware_size), firmware_size)?;
            if let Some((area, hashes)) = &hashes {
                let gpa = Gpa(u64::from(area.base));
                machine
                    .guest_memory()
                    .write_plain(gpa, &hashes.to_table())
                    .map_err(|e| SevError::OutOfRange {
                        command: "LAUNCH_UPDATE_DATA",
                        gpa: e.gpa,
                        len: e.len,
                    })?;
                launch.update_data(gpa, PADDED_HASH_TABLE_LEN as u64)?;
            }
            if let Some(vmsas) = &vmsas {
                // The vCPUs start from their VMSAs; once these are
                // encrypted the host no longer reads or sets registers.
                vmsas.apply(&machine).map_err(machine_err)?;
                launch.update_vmsa(vmsas.pages())?;
                machine.protect_registers();
            }
            let handle = launch.handle();
            let secret = launch.measure().map_err(|f| f.error)?;
            let sev =
                platform.into_context(backend, handle, secret_area, LaunchPhase::Secret(secret));
            (Some(sev), None)
        }
    };
    Ok(Vmm::new(config, machine, sev, snp, IncomingPhase::None))
}

/// The SNP launch up to SNP_LAUNCH_FINISH (docs/snp.md#the-launch-in-sevm):
/// SNP_LAUNCH_START, the firmware and its metadata ranges as the plan
/// says, the CPUID page from vCPU 0's CPUID, the VMSAs. The vCPUs start
/// from their VMSAs, whose registers the host can no longer read or set.
fn launch_snp(
    machine: &mut crate::machine::Machine,
    platform: setup::SevPlatformSetup<'_>,
    inputs: setup::SnpInputs,
    firmware_size: u64,
    vmsas: &crate::sev::es::InitialVmsas,
) -> Result<SnpContext, VmmError> {
    let options = platform.guest.snp.clone().unwrap_or_default();
    let backend = platform.attach_snp(machine)?;
    // The guest's GHCB exits now reach its SNP context: the RMP decides
    // which pages the host may touch (docs/sev-es.md#the-ghcb-path).
    if let Some(ghcb) = machine.ghcb_host() {
        ghcb.set_platform(Arc::new(SnpGhcbPlatform::new(Arc::clone(&backend))));
        // `x-sevm-certs=`: the table extended requests get
        // (docs/snp.md#certificates-for-extended-requests).
        if let Some(table) = inputs.cert_table {
            ghcb.set_cert_provider(Arc::new(StaticCertTable(table)));
        }
    }
    let cpuid = machine.vcpu_cpuid(0).map_err(machine_err)?;
    let cpuid_page =
        snp::cpuid_page(&cpuid).map_err(|e| VmmError::Guest(format!("SEV-SNP: {e}")))?;
    let plan = snp::FirmwarePlan {
        firmware_size,
        updates: inputs.updates,
        hashes_page: inputs.hashes_page,
        cpuid_page,
    };
    let mut launch = SnpLaunch::start(Arc::clone(&backend), options.policy, options.gosvw)?;
    snp::launch_firmware(&mut launch, machine.guest_memory(), &plan)?;
    vmsas.apply(machine).map_err(machine_err)?;
    launch.update_vmsas(vmsas.pages())?;
    machine.protect_registers();
    Ok(platform.into_snp_context(backend, inputs.finish, SnpPhase::Updating(launch)))
}
