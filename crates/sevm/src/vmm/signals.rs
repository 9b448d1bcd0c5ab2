//! SIGTERM, SIGINT and SIGHUP end the VM as in QEMU: the signal handler only
//! writes to an eventfd (async-signal-safe); a thread waiting on it asks the
//! machine to quit, and the VMM reports `SHUTDOWN {reason: host-signal}`.

use std::sync::{Arc, OnceLock};

use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC};
use vmm_sys_util::signal::register_signal_handler;

use super::state::{lock, VmmState};
use super::VmmError;

/// The eventfd the handler writes the signal number to (one VM per process).
static SIGNALLED: OnceLock<EventFd> = OnceLock::new();

const SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

extern "C" fn on_signal(num: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    if let Some(e) = SIGNALLED.get() {
        // write(2) on an eventfd: async-signal-safe. Nothing to do on error.
        let _ = e.write(u64::from(num.unsigned_abs()));
    }
}

pub(super) fn install(shared: Arc<VmmState>) -> Result<(), VmmError> {
    let fail = |what: &str, e: std::io::Error| VmmError::Machine(format!("{what}: {e}"));
    if SIGNALLED.get().is_none() {
        let evt = EventFd::new(EFD_CLOEXEC).map_err(|e| fail("cannot create an eventfd", e))?;
        let _ = SIGNALLED.set(evt);
    }
    let Some(evt) = SIGNALLED.get() else {
        return Ok(());
    };
    let waiter = evt
        .try_clone()
        .map_err(|e| fail("cannot duplicate the signal eventfd", e))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Ok(n) = waiter.read() {
                *lock(&shared.signal) = i32::try_from(n).ok();
                shared.request_quit();
            }
        })
        .map_err(|e| fail("cannot start the signal thread", e))?;
    for s in SIGNALS {
        register_signal_handler(s, on_signal).map_err(|e| {
            VmmError::Machine(format!("cannot install the handler for signal {s}: {e}"))
        })?;
    }
    Ok(())
}
