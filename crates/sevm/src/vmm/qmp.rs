//! The VMM's QMP command handler: typed commands in (their base64
//! arguments already decoded by the schema), QEMU-shaped replies and errors
//! out. SEV errors carry the firmware status in the description.
//!
//! What controls the VM -- `cont`, `stop`, `quit`, the run state, guest
//! memory and vCPU access, events -- goes through [`VmControl`], the
//! interface the GDB stub and migration use; the SEV and migration
//! commands use the VMM's SEV context and migrations.

use std::sync::Arc;

use serde_json::{json, Value};
use sev_proto::abi::GuestState;
use sev_proto::secret::PacketHeader;
use sevm_qmp::base64::encode as b64;
use sevm_qmp::response::{
    self, CpuInfoFast, KvmInfo, NameInfo, RunState, SevAttestationReport, SevCapability,
    SevGuestType, SevInfo, SevLaunchMeasureInfo, SevSnpInfo, SevState, SnpLaunchDigestInfo,
    StatusInfo,
};
use sevm_qmp::{Base64Bytes, MigrateSetParameters, QmpCommand, QmpError, QmpHandler};

use super::state::{lock, LaunchPhase, SevContext, SnpContext, VmmState};
use crate::control::VmControl;
use crate::debug::commands as debug;
use crate::memory::Gpa;
use crate::migration::Parameters;

/// The handler the QMP servers call.
pub(crate) struct Handler {
    /// The VM, as QMP controls it.
    vm: Arc<dyn VmControl>,
    /// The VMM (its SEV context and migrations).
    vmm: Arc<VmmState>,
}

impl Handler {
    /// The handler of `vmm`'s QMP servers.
    pub(crate) fn new(vmm: Arc<VmmState>) -> Self {
        Handler {
            vm: Arc::clone(&vmm) as _,
            vmm,
        }
    }
}

fn generic(desc: impl Into<String>) -> QmpError {
    QmpError::generic(desc)
}

/// `migrate-set-parameters`' arguments as the migration's own parameters
/// (the certificates arrive decoded: QMP's schema checks their base64).
fn migration_parameters(p: MigrateSetParameters) -> Parameters {
    Parameters {
        max_bandwidth: p.max_bandwidth,
        downtime_limit: p.downtime_limit,
        avail_switchover_bandwidth: p.avail_switchover_bandwidth,
        sev_pdh: p.sev_pdh.map(Base64Bytes::into_bytes),
        sev_plat_cert: p.sev_plat_cert.map(Base64Bytes::into_bytes),
        sev_amd_cert: p.sev_amd_cert.map(Base64Bytes::into_bytes),
        x_peer_timeout: p.x_peer_timeout,
    }
}

/// The reply of `query-migrate-parameters`: the certificates in base64.
fn qmp_migration_parameters(p: &Parameters) -> MigrateSetParameters {
    let cert = |c: &Option<Vec<u8>>| c.clone().map(Base64Bytes::new);
    MigrateSetParameters {
        max_bandwidth: p.max_bandwidth,
        downtime_limit: p.downtime_limit,
        avail_switchover_bandwidth: p.avail_switchover_bandwidth,
        sev_pdh: cert(&p.sev_pdh),
        sev_plat_cert: cert(&p.sev_plat_cert),
        sev_amd_cert: cert(&p.sev_amd_cert),
        x_peer_timeout: p.x_peer_timeout,
    }
}

fn sev_state(s: GuestState) -> SevState {
    match s {
        GuestState::Uninit => SevState::Uninit,
        GuestState::LaunchUpdate => SevState::LaunchUpdate,
        GuestState::LaunchSecret => SevState::LaunchSecret,
        GuestState::Running => SevState::Running,
        // QEMU's SevState has no "sent"; a sent guest is still being sent.
        GuestState::SendUpdate | GuestState::Sent => SevState::SendUpdate,
        GuestState::ReceiveUpdate => SevState::ReceiveUpdate,
    }
}

impl Handler {
    fn sev(&self, what: &str) -> Result<&SevContext, QmpError> {
        self.vmm.sev.as_ref().ok_or_else(|| {
            generic(format!(
                "SEV {what} is not available: SEV is not enabled for this guest"
            ))
        })
    }

    /// `query-sev` of an SNP guest, as QEMU 9.1 answers it: the `sev-snp`
    /// branch with the 64-bit policy; LAUNCH_UPDATE until SNP_LAUNCH_FINISH.
    fn query_sev_snp(&self, snp: &SnpContext) -> Result<Value, QmpError> {
        let (policy, _) = snp
            .policy_and_handle()
            .ok_or_else(|| generic("SEV-SNP: the launch is changing state; try again"))?;
        let state = if snp.finished() {
            SevState::Running
        } else {
            SevState::LaunchUpdate
        };
        response::to_value(&SevSnpInfo {
            enabled: true,
            api_major: snp.info.api.major,
            api_minor: snp.info.api.minor,
            build_id: snp.info.build,
            state,
            sev_type: SevGuestType::SevSnp,
            snp_policy: policy.bits(),
            emulated: snp.platform.is_emulated(),
        })
    }

    /// `x-sevm-query-snp-launch-digest`: the SNP guest's launch digest from
    /// the firmware's guest context (docs/snp.md#the-launch-digest-extension).
    fn snp_launch_digest(&self) -> Result<Value, QmpError> {
        let snp = self.vmm.snp.as_ref().ok_or_else(|| {
            generic("SEV-SNP launch digest is not available: the guest is not an SEV-SNP guest")
        })?;
        let (policy, _) = snp
            .policy_and_handle()
            .ok_or_else(|| generic("SEV-SNP: the launch is changing state; try again"))?;
        let digest = snp
            .backend
            .snp_launch_digest()
            .map_err(|e| generic(e.to_string()))?;
        response::to_value(&SnpLaunchDigestInfo {
            digest: b64(&digest),
            snp_policy: policy.bits(),
            host_data: b64(&snp.finish.host_data),
            finished: snp.finished(),
        })
    }

    fn query_sev(&self) -> Result<Value, QmpError> {
        if let Some(snp) = &self.vmm.snp {
            return self.query_sev_snp(snp);
        }
        let sev = self
            .vmm
            .sev
            .as_ref()
            .ok_or_else(|| generic("SEV feature is not available"))?;
        let state = match sev.backend.guest_status() {
            Ok(s) => s.state.map(sev_state),
            Err(e) => {
                log::warn!("query-sev: GUEST_STATUS failed: {e}");
                None
            }
        }
        .unwrap_or_else(|| match &*lock(&sev.launch) {
            LaunchPhase::Secret(_) => SevState::LaunchSecret,
            LaunchPhase::Incoming => SevState::Uninit,
            _ => SevState::Running,
        });
        response::to_value(&SevInfo {
            enabled: true,
            api_major: sev.info.api.major,
            api_minor: sev.info.api.minor,
            build_id: sev.info.build,
            state,
            sev_type: SevGuestType::Sev,
            policy: sev.policy.bits(),
            handle: sev.handle.load(std::sync::atomic::Ordering::SeqCst),
            emulated: sev.platform.is_emulated(),
        })
    }

    fn launch_measure(&self) -> Result<Value, QmpError> {
        let sev = self
            .vmm
            .sev
            .as_ref()
            .ok_or_else(|| generic("SEV launch measurement is not available"))?;
        let data = match &*lock(&sev.launch) {
            LaunchPhase::Secret(l) => b64(l.measurement().as_bytes()),
            LaunchPhase::Running(l) => b64(l.measurement().as_bytes()),
            LaunchPhase::Incoming | LaunchPhase::Received | LaunchPhase::Moving => {
                return Err(generic(
                    "SEV launch measurement is not available (the guest was received by migration)",
                ))
            }
        };
        response::to_value(&SevLaunchMeasureInfo { data })
    }

    fn capabilities(&self) -> Result<Value, QmpError> {
        // An SNP host answers as an SEV host does (QEMU exports the PDH of
        // the same device for both).
        let (platform, params) = match (&self.vmm.sev, &self.vmm.snp) {
            (Some(sev), _) => (&sev.platform, sev.params),
            (None, Some(snp)) => (&snp.platform, snp.params),
            (None, None) => {
                self.sev("capabilities")?;
                return Err(generic("SEV capabilities are not available"));
            }
        };
        let certs = platform
            .pdh_cert_export()
            .map_err(|e| generic(e.to_string()))?;
        let id = platform.get_id().map_err(|e| generic(e.to_string()))?;
        // QEMU reports the first socket's 64-byte id as cpu0-id.
        let cpu0 = id.get(..64).unwrap_or(&id);
        response::to_value(&SevCapability {
            pdh: b64(&certs.pdh.encode()),
            cert_chain: b64(&certs.chain.encode()),
            cpu0_id: b64(cpu0),
            cbitpos: i64::from(params.cbitpos),
            // QEMU reports 1: the C-bit costs the guest one address bit
            // whatever the host's reduction (docs/protocol/memory.md#cbitpos).
            reduced_phys_bits: 1,
        })
    }

    fn inject_secret(
        &self,
        header: &[u8],
        data: &[u8],
        gpa: Option<u64>,
    ) -> Result<Value, QmpError> {
        let sev = self
            .vmm
            .sev
            .as_ref()
            .ok_or_else(|| generic("SEV not enabled for guest"))?;
        let header = PacketHeader::decode(header).map_err(|_| {
            generic(format!(
                "SEV: packet-header is {} bytes, expected {} bytes",
                header.len(),
                PacketHeader::SIZE
            ))
        })?;
        if data.is_empty() {
            return Err(generic("SEV: secret is empty"));
        }
        let gpa = match gpa {
            Some(g) => g,
            None => sev.secret_area.map(|a| u64::from(a.base)).ok_or_else(|| {
                generic("SEV: no secret area found in OVMF, gpa must be specified.")
            })?,
        };
        let phase = lock(&sev.launch);
        let LaunchPhase::Secret(launch) = &*phase else {
            return Err(generic(
                "SEV: Not in correct state (launch-secret): secrets can only be injected \
                 before the guest starts (-S, before 'cont')",
            ));
        };
        if !self
            .vm
            .machine()
            .guest_memory()
            .contains(Gpa(gpa), data.len() as u64)
        {
            return Err(generic(format!(
                "SEV: Failed to calculate the HVA for GPA {gpa:#x} ({} bytes are not inside guest memory)",
                data.len()
            )));
        }
        launch
            .inject_secret(&header, Gpa(gpa), data)
            .map_err(|e| generic(e.to_string()))?;
        Ok(json!({}))
    }

    fn migrate(&self, uri: &str) -> Result<Value, QmpError> {
        let sev = self.vmm.sev.as_ref().ok_or_else(|| {
            generic("sevm migrates SEV guests only: SEV is not enabled for this guest")
        })?;
        let state = self.vm.run_state();
        if state == RunState::Inmigrate {
            return Err(generic(
                "the guest has not arrived yet (incoming migration): there is nothing to migrate",
            ));
        }
        if state == RunState::Shutdown {
            return Err(generic(
                "the guest has shut down: there is nothing to migrate",
            ));
        }
        let parts = crate::migration::SevParts {
            backend: Arc::clone(&sev.backend) as Arc<dyn crate::sev::MigrationCommands>,
            platform: Arc::clone(&sev.platform) as Arc<dyn crate::sev::PlatformManagement>,
        };
        self.vmm
            .migration
            .start(uri, Arc::clone(&self.vm), parts)
            .map(|()| json!({}))
            .map_err(|e| generic(e.to_string()))
    }

    fn attestation(&self, nonce: &[u8]) -> Result<Value, QmpError> {
        let sev = self.sev("attestation report")?;
        let nonce: [u8; 16] = nonce.try_into().map_err(|_| {
            generic(format!(
                "SEV: mnonce is {} bytes (expected 16 bytes)",
                nonce.len()
            ))
        })?;
        let report = sev
            .backend
            .attestation_report(nonce)
            .map_err(|e| generic(e.to_string()))?;
        response::to_value(&SevAttestationReport { data: b64(&report) })
    }
}

impl QmpHandler for Handler {
    fn handle(&self, command: QmpCommand) -> Result<Value, QmpError> {
        let s = &self.vmm;
        let vm = self.vm.as_ref();
        let read_vcpu = |i| vm.vcpu_state(i);
        match command {
            QmpCommand::QueryStatus => response::to_value(&StatusInfo::new(vm.run_state())),
            QmpCommand::QueryName => response::to_value(&NameInfo {
                name: s.name.clone(),
            }),
            QmpCommand::QueryKvm => response::to_value(&KvmInfo {
                enabled: true,
                present: true,
            }),
            QmpCommand::QueryCpusFast => {
                let pid = i64::from(std::process::id());
                let cpus: Vec<CpuInfoFast> = (0..vm.machine().vcpu_count())
                    .map(|i| CpuInfoFast {
                        cpu_index: i as i64,
                        qom_path: format!("/machine/unattached/device[{i}]"),
                        thread_id: pid,
                        target: "x86_64".into(),
                    })
                    .collect();
                response::to_value(&cpus)
            }
            QmpCommand::Stop => vm.stop().map(|()| json!({})).map_err(generic),
            QmpCommand::Cont => vm.cont().map(|()| json!({})).map_err(generic),
            QmpCommand::Quit => Ok(json!({})),
            QmpCommand::QuerySev => self.query_sev(),
            QmpCommand::QuerySevLaunchMeasure => self.launch_measure(),
            QmpCommand::QuerySevCapabilities => self.capabilities(),
            QmpCommand::XSevmQuerySnpLaunchDigest => self.snp_launch_digest(),
            QmpCommand::SevInjectLaunchSecret {
                packet_header,
                secret,
                gpa,
            } => self.inject_secret(packet_header.as_bytes(), secret.as_bytes(), gpa),
            QmpCommand::QuerySevAttestationReport { mnonce } => self.attestation(mnonce.as_bytes()),
            QmpCommand::HumanMonitorCommand {
                command_line,
                cpu_index,
            } => debug::human_monitor_command(&vm.debug(), &read_vcpu, &command_line, cpu_index),
            QmpCommand::Pmemsave {
                val,
                size,
                filename,
            } => debug::pmemsave(&vm.debug(), val, size, &filename),
            QmpCommand::Memsave {
                val,
                size,
                filename,
                cpu_index,
            } => debug::memsave(&vm.debug(), &read_vcpu, val, size, &filename, cpu_index),
            QmpCommand::SevDbgDecrypt {
                gpa,
                size,
                filename,
            } => debug::dbg_decrypt(&vm.debug(), gpa, size, filename.as_deref()),
            QmpCommand::SevDbgEncrypt {
                gpa,
                data,
                filename,
            } => debug::dbg_encrypt(
                &vm.debug(),
                gpa,
                data.as_ref().map(|d| d.as_bytes()),
                filename.as_deref(),
            ),
            QmpCommand::Migrate { uri, .. } => self.migrate(&uri),
            QmpCommand::MigrateCancel => s
                .migration
                .cancel(vm)
                .map(|()| json!({}))
                .map_err(|e| generic(e.to_string())),
            QmpCommand::MigrateIncoming { uri, exit_on_error } => {
                let cfg = crate::options::parse_incoming("migrate-incoming", &uri)
                    .map_err(|e| generic(e.to_string()))?;
                s.start_incoming(cfg, exit_on_error.unwrap_or(true))
                    .map(|()| json!({}))
                    .map_err(generic)
            }
            QmpCommand::QueryMigrate => response::to_value(&s.migration.info()),
            QmpCommand::MigrateSetParameters(p) => s
                .migration
                .set_parameters(migration_parameters(p))
                .map(|()| json!({}))
                .map_err(|e| generic(e.to_string())),
            QmpCommand::QueryMigrateParameters => {
                response::to_value(&qmp_migration_parameters(&s.migration.parameters()))
            }
            QmpCommand::SystemPowerdown => {
                // The guest control port's "finish now" request: what a
                // cooperating guest (the demo memtest) treats as its
                // power button.
                vm.machine().control().request_finish();
                vm.emit_event(&sevm_qmp::QmpEvent::Powerdown);
                Ok(json!({}))
            }
            QmpCommand::SystemReset => Err(generic(format!(
                "{} is not supported by sevm (the machine has no reset or ACPI power button)",
                command.name()
            ))),
            other => Err(generic(format!(
                "{} is not implemented by this sevm build",
                other.name()
            ))),
        }
    }

    fn after_reply(&self, command: &'static str) {
        if command == "quit" {
            self.vm.quit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::Migrations;

    #[test]
    fn migration_parameters_round_trip() {
        let m = Migrations::default();
        let set = |p: MigrateSetParameters| m.set_parameters(migration_parameters(p));
        set(MigrateSetParameters {
            max_bandwidth: Some(5),
            ..Default::default()
        })
        .unwrap();
        set(MigrateSetParameters {
            sev_pdh: Some(Base64Bytes::decode("AAAA").unwrap()),
            ..Default::default()
        })
        .unwrap();
        let p = qmp_migration_parameters(&m.parameters());
        assert_eq!(p.max_bandwidth, Some(5));
        assert_eq!(
            p.sev_pdh.as_ref().map(|b| b.as_bytes()),
            Some(&[0u8; 3][..])
        );
        assert_eq!(
            serde_json::to_value(&p).unwrap()["sev-pdh"],
            serde_json::json!("AAAA")
        );
        // Bad base64 (`sev-plat-cert: "!!"`) is refused by the QMP schema,
        // naming the parameter: see sevm-qmp's
        // `base64_arguments_are_decoded_where_they_are_parsed`.
        // Line breaks in the base64 text are ignored, as in the files.
        set(MigrateSetParameters {
            sev_amd_cert: Some(Base64Bytes::decode("AAAA\nAAAA\n").unwrap()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(m.parameters().sev_amd_cert, Some(vec![0; 6]));
        for bad in [0, 99, 3_600_001] {
            let e = set(MigrateSetParameters {
                x_peer_timeout: Some(bad),
                ..Default::default()
            })
            .unwrap_err();
            assert!(e.to_string().contains("x-peer-timeout"), "{e}");
        }
    }
}
