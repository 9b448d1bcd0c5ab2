//! The emulated platform (sev-psp). NOT DONE: waiting for sev-psp phase 2's
//! firmware commands; until then opening it reports that it is unavailable.

use std::path::Path;
use std::sync::Arc;

use super::{EncryptionParams, PlatformInfo, SevBackend, SevError, SevPlatform};
use crate::machine::{Machine, PreVcpuHook};

/// The emulated AMD Secure Processor (not available in this build yet).
#[derive(Debug)]
pub enum EmulatedPlatform {}

impl EmulatedPlatform {
    /// Opens the platform state directory.
    pub fn open(dir: &Path) -> Result<Self, SevError> {
        Err(SevError::Unsupported {
            command: "emulated platform",
            reason: format!(
                "the emulated platform ({}) is not available in this build yet",
                dir.display()
            ),
        })
    }
}

impl SevPlatform for EmulatedPlatform {
    fn is_emulated(&self) -> bool {
        match *self {}
    }
    fn describe(&self) -> String {
        match *self {}
    }
    fn status(&self) -> Result<PlatformInfo, SevError> {
        match *self {}
    }
    fn pdh_cert_export(&self) -> Result<(Vec<u8>, Vec<u8>), SevError> {
        match *self {}
    }
    fn get_id(&self) -> Result<Vec<u8>, SevError> {
        match *self {}
    }
    fn encryption_params(&self) -> Result<EncryptionParams, SevError> {
        match *self {}
    }
    fn pre_vcpu_hook(&self, _es: bool) -> Option<PreVcpuHook> {
        match *self {}
    }
    fn attach(&self, _machine: &Machine, _es: bool) -> Result<Arc<dyn SevBackend>, SevError> {
        match *self {}
    }
}
