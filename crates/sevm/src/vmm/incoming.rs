//! The builder of a VM whose guest arrives by migration (`-incoming URI`,
//! or `-incoming defer` and then QMP `migrate-incoming`): the machine is
//! prepared and the SEV context attached, but nothing is launched; the
//! guest arrives through RECEIVE_* on the incoming thread, and starts then
//! unless `-S` (or `stop` while waiting).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use sevm_qmp::QmpEvent;

use super::setup::{self, Prepared};
use super::state::{lock, IncomingPhase, LaunchPhase, VmmState};
use super::{Vmm, VmmError};
use crate::config::{IncomingConfig, VmConfig};

/// Builds a VM that waits for an incoming migration: prepares the machine
/// and attaches the SEV guest context the stream is received into.
pub(super) fn build(config: &VmConfig) -> Result<Vmm, VmmError> {
    if let Some(g) = config.sev_guest().filter(|g| g.snp.is_some()) {
        return Err(VmmError::Config {
            option: setup::sev_option(g),
            problem: "sevm does not migrate SEV-SNP guests (-incoming needs -object sev-guest)"
                .into(),
        });
    }
    let Prepared {
        mut machine,
        secret_area,
        sev,
        ..
    } = setup::prepare(config)?;
    let Some(platform) = sev else {
        return Err(VmmError::Config {
            option: "-incoming".into(),
            problem: "sevm migrates SEV guests only (add -object sev-guest and \
                      -machine memory-encryption=)"
                .into(),
        });
    };
    // The guest arrives later, on the incoming thread (`Vmm::run`).
    let backend = platform.attach(&mut machine)?;
    let sev = platform.into_context(backend, 0, secret_area, LaunchPhase::Incoming);
    Ok(Vmm::new(
        config,
        machine,
        Some(sev),
        None,
        IncomingPhase::Deferred,
    ))
}

impl VmmState {
    /// Starts receiving the guest (`-incoming URI`, or `migrate-incoming`
    /// after `-incoming defer`) on a thread; QMP keeps serving meanwhile.
    pub(super) fn start_incoming(
        self: &Arc<Self>,
        cfg: IncomingConfig,
        exit_on_error: bool,
    ) -> Result<(), String> {
        {
            let mut phase = lock(&self.incoming);
            match *phase {
                IncomingPhase::Deferred => {}
                IncomingPhase::None => {
                    return Err("this VM was not started with -incoming defer".into())
                }
                _ => return Err("The incoming migration has already been started".into()),
            }
            if matches!(cfg, IncomingConfig::Defer) {
                return Err("migrate-incoming needs a URI (file:, tcp: or unix:)".into());
            }
            *phase = IncomingPhase::Receiving;
        }
        let me = Arc::clone(self);
        let vm: Arc<dyn crate::control::VmControl> = Arc::clone(self) as _;
        let started = self.migration.start_incoming(
            vm,
            Box::new(move |ctl| me.receive(&cfg, ctl, exit_on_error)),
        );
        started.map_err(|e| {
            *lock(&self.incoming) = IncomingPhase::Failed;
            e.to_string()
        })
    }

    /// The incoming migration thread's work; on success the guest starts
    /// if `autostart`.
    fn receive(
        &self,
        cfg: &IncomingConfig,
        ctl: &crate::migration::target::Control<'_>,
        exit_on_error: bool,
    ) -> Result<(), crate::migration::MigrationError> {
        let result = match &self.sev {
            Some(sev) => crate::migration::target::receive(
                &self.machine,
                sev.backend.as_ref(),
                cfg,
                sev.policy,
                ctl,
            )
            .map(|restored| {
                sev.handle.store(restored.handle, Ordering::SeqCst);
                *lock(&sev.launch) = LaunchPhase::Received;
            }),
            None => Err(crate::migration::MigrationError::Machine(
                "sevm migrates SEV guests only".into(),
            )),
        };
        let _g = lock(&self.control);
        match result {
            Ok(()) => {
                *lock(&self.incoming) = IncomingPhase::Done;
                if self.autostart.load(Ordering::SeqCst) {
                    self.machine
                        .start()
                        .map_err(|e| crate::migration::MigrationError::Machine(e.to_string()))?;
                    self.emit(&QmpEvent::Resume);
                }
                Ok(())
            }
            Err(e) => {
                *lock(&self.incoming) = IncomingPhase::Failed;
                if self.quit_requested.load(Ordering::SeqCst) {
                    // `quit` or a signal ended the wait: not a failure.
                    log::info!("incoming migration stopped: {e}");
                } else if exit_on_error {
                    *lock(&self.fatal) = Some(format!("incoming migration failed: {e}"));
                    self.machine.request_quit();
                } else {
                    eprintln!("sevm: incoming migration failed: {e}");
                }
                Err(e)
            }
        }
    }
}
