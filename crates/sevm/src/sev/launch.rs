//! The launch on the caller's side, as a typestate:
//!
//! ```text
//! Launch::start ─▶ Launch<Update> ─measure─▶ Launch<Secret> ─finish─▶ Launch<Running>
//!                  update_data               inject_secret            attestation_report
//!                  update_vmsa
//! ```
//!
//! A guest in LUPDATE cannot be finished, nor a secret injected before the
//! measurement, at compile time. A failed transition hands the launch back
//! unchanged with the error ([`Failed`]), so the VMM keeps the guest in the
//! state the firmware left it in (a failed LAUNCH_FINISH leaves the guest in
//! LSECRET, as on hardware).
//!
//! The typestate stays in the VMM rather than in `sev-firmware`: it
//! sequences this VMM's launch (its guest-physical addresses, the phases it
//! holds for QMP), while the boundary crate carries the commands every user
//! shares. The SEV-SNP launch, a different sequence of commands, will be a
//! typestate of its own over the same job traits.

use std::fmt;
use std::sync::Arc;

use sev_proto::abi::Policy;
use sev_proto::secret::PacketHeader;

use super::{LaunchCommands, LaunchMeasurement, LaunchSession, SevError, VmsaPage};
use crate::memory::Gpa;

/// LUPDATE: data (and VMSAs) may be added to the measurement.
#[derive(Debug)]
pub struct Update;

/// LSECRET: measured; secrets may be injected.
#[derive(Debug)]
pub struct Secret {
    measurement: LaunchMeasurement,
}

/// RUNNING: launched.
#[derive(Debug)]
pub struct Running {
    measurement: LaunchMeasurement,
}

/// A guest being launched, in state `S`.
pub struct Launch<S> {
    backend: Arc<dyn LaunchCommands>,
    handle: u32,
    policy: Policy,
    state: S,
}

impl<S: fmt::Debug> fmt::Debug for Launch<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Launch")
            .field("handle", &self.handle)
            .field("policy", &self.policy)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// A transition that failed: the launch as it was, and why.
pub struct Failed<S> {
    /// The launch, unchanged.
    pub launch: Launch<S>,
    /// The firmware's (or host's) error.
    pub error: SevError,
}

impl<S: fmt::Debug> fmt::Debug for Failed<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failed")
            .field("launch", &self.launch)
            .field("error", &self.error)
            .finish()
    }
}

impl<S> Launch<S> {
    /// The firmware guest handle.
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// The guest policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The guest's launch commands.
    pub fn backend(&self) -> &Arc<dyn LaunchCommands> {
        &self.backend
    }

    fn into_state<T>(self, state: T) -> Launch<T> {
        Launch {
            backend: self.backend,
            handle: self.handle,
            policy: self.policy,
            state,
        }
    }
}

impl Launch<Update> {
    /// LAUNCH_START: creates the guest context (with the owner's GODH
    /// certificate and session, or neither; `share_handle` non-zero shares
    /// that guest's key).
    pub fn start(
        backend: Arc<dyn LaunchCommands>,
        share_handle: u32,
        policy: Policy,
        session: Option<&LaunchSession>,
    ) -> Result<Self, SevError> {
        let handle = backend.launch_start(share_handle, policy, session)?;
        log::info!(
            "SEV: LAUNCH_START: handle {handle}, policy {:#x}",
            policy.bits()
        );
        Ok(Launch {
            backend,
            handle,
            policy,
            state: Update,
        })
    }

    /// LAUNCH_UPDATE_DATA over `len` bytes at `gpa`.
    pub fn update_data(&mut self, gpa: Gpa, len: u64) -> Result<(), SevError> {
        log::debug!("SEV: LAUNCH_UPDATE_DATA {gpa}+{len:#x}");
        self.backend.launch_update_data(gpa.raw(), len)
    }

    /// LAUNCH_UPDATE_VMSA (SEV-ES) of every vCPU's initial VMSA, in vCPU
    /// order.
    pub fn update_vmsa(&mut self, vmsas: &[VmsaPage]) -> Result<(), SevError> {
        log::debug!("SEV: LAUNCH_UPDATE_VMSA of {} vCPUs", vmsas.len());
        self.backend.launch_update_vmsa(vmsas)
    }

    /// LAUNCH_MEASURE: LUPDATE → LSECRET.
    pub fn measure(self) -> Result<Launch<Secret>, Failed<Update>> {
        match self.backend.launch_measure() {
            Ok(measurement) => Ok(self.into_state(Secret { measurement })),
            Err(error) => Err(Failed {
                launch: self,
                error,
            }),
        }
    }
}

impl Launch<Secret> {
    /// MEASUREMENT ‖ MNONCE.
    pub fn measurement(&self) -> &LaunchMeasurement {
        &self.state.measurement
    }

    /// LAUNCH_SECRET at `gpa`.
    pub fn inject_secret(
        &self,
        header: &PacketHeader,
        gpa: Gpa,
        secret: &[u8],
    ) -> Result<(), SevError> {
        log::info!("SEV: LAUNCH_SECRET {} bytes at {gpa}", secret.len());
        self.backend.launch_secret(header, gpa.raw(), secret)
    }

    /// LAUNCH_FINISH: LSECRET → RUNNING.
    pub fn finish(self) -> Result<Launch<Running>, Failed<Secret>> {
        match self.backend.launch_finish() {
            Ok(()) => {
                let measurement = self.state.measurement;
                log::info!("SEV: LAUNCH_FINISH: guest {} running", self.handle);
                Ok(self.into_state(Running { measurement }))
            }
            Err(error) => Err(Failed {
                launch: self,
                error,
            }),
        }
    }
}

impl Launch<Running> {
    /// The launch measurement blob taken before LAUNCH_FINISH.
    pub fn measurement(&self) -> &LaunchMeasurement {
        &self.state.measurement
    }

    /// ATTESTATION with the caller's nonce.
    pub fn attestation_report(&self, mnonce: [u8; 16]) -> Result<Vec<u8>, SevError> {
        self.backend.attestation_report(mnonce)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sev::GuestStatus;
    use sev_proto::abi::{GuestState, Status, StatusCode};
    use sev_proto::cert::sev::Certificate;
    use sev_proto::session::OwnerSession;
    use std::sync::Mutex;

    /// Records the commands it receives; LAUNCH_FINISH fails once.
    #[derive(Debug, Default)]
    struct Recorder {
        calls: Mutex<Vec<String>>,
        finish_failures: Mutex<u32>,
    }

    fn fw(command: &'static str, s: Status) -> SevError {
        SevError::Firmware {
            command,
            status: StatusCode(s.code()),
            detail: String::new(),
        }
    }

    impl Recorder {
        fn log(&self, s: impl Into<String>) {
            self.calls.lock().unwrap().push(s.into());
        }
    }

    impl LaunchCommands for Recorder {
        fn launch_start(
            &self,
            _: u32,
            policy: Policy,
            session: Option<&LaunchSession>,
        ) -> Result<u32, SevError> {
            self.log(format!("start {:#x} {}", policy.bits(), session.is_some()));
            Ok(7)
        }
        fn launch_update_data(&self, gpa: u64, len: u64) -> Result<(), SevError> {
            self.log(format!("update {gpa:#x} {len:#x}"));
            Ok(())
        }
        fn launch_update_vmsa(&self, vmsas: &[VmsaPage]) -> Result<(), SevError> {
            self.log(format!("vmsa {}", vmsas.len()));
            Ok(())
        }
        fn launch_measure(&self) -> Result<LaunchMeasurement, SevError> {
            self.log("measure");
            Ok(LaunchMeasurement::from_bytes([0xAB; 48]))
        }
        fn launch_secret(&self, _: &PacketHeader, gpa: u64, _: &[u8]) -> Result<(), SevError> {
            self.log(format!("secret {gpa:#x}"));
            Err(fw("LAUNCH_SECRET", Status::BadMeasurement))
        }
        fn launch_finish(&self) -> Result<(), SevError> {
            self.log("finish");
            let mut f = self.finish_failures.lock().unwrap();
            if *f == 0 {
                *f += 1;
                return Err(fw("LAUNCH_FINISH", Status::InvalidGuestState));
            }
            Ok(())
        }
        fn guest_status(&self) -> Result<GuestStatus, SevError> {
            Ok(GuestStatus {
                handle: 7,
                policy: Policy::from_bits(1),
                state: Some(GuestState::Running),
            })
        }
        fn attestation_report(&self, m: [u8; 16]) -> Result<Vec<u8>, SevError> {
            Ok(m.to_vec())
        }
    }

    fn owner_session() -> LaunchSession {
        let pdh = p384::SecretKey::random(&mut rand_core::OsRng).public_key();
        let owner = OwnerSession::new(&pdh, 1, &mut rand_core::OsRng);
        LaunchSession {
            godh: Certificate::godh(&owner.godh_public()),
            session: owner.session_buffer().clone(),
        }
    }

    #[test]
    fn typestate_walks_the_launch_and_failed_transitions_keep_the_state() {
        let rec = Arc::new(Recorder::default());
        let backend: Arc<dyn LaunchCommands> = rec.clone();
        let session = owner_session();
        let mut l = Launch::start(backend, 0, Policy::from_bits(1), Some(&session)).unwrap();
        assert_eq!(l.handle(), 7);
        l.update_data(Gpa(0xFFFF_0000), 0x1_0000).unwrap();
        l.update_vmsa(&[[0; 4096]; 2]).unwrap();
        let s = l.measure().unwrap();
        assert_eq!(s.measurement().as_bytes(), &[0xAB; 48]);
        let e = s
            .inject_secret(
                &PacketHeader::from_bytes(&[0; 52]),
                Gpa(0x81_0000),
                &[0; 16],
            )
            .unwrap_err();
        assert_eq!(e.status(), Some(StatusCode(0x0B)));
        // The first LAUNCH_FINISH fails: the launch stays in LSECRET.
        let failed = s.finish().unwrap_err();
        assert_eq!(failed.error.status(), Some(StatusCode(0x02)));
        let r = failed.launch.finish().unwrap();
        assert_eq!(r.measurement().as_bytes(), &[0xAB; 48]);
        assert_eq!(r.attestation_report([3; 16]).unwrap(), vec![3; 16]);
        assert_eq!(
            *rec.calls.lock().unwrap(),
            vec![
                "start 0x1 true",
                "update 0xffff0000 0x10000",
                "vmsa 2",
                "measure",
                "secret 0x810000",
                "finish",
                "finish"
            ]
        );
    }
}
