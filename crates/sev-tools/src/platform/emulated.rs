//! The emulated platform backend (`sev-psp`).

use std::path::{Path, PathBuf};

use sev_proto::cert::chain::CaChain;

use super::{Backend, PlatformError, PlatformKind, Status};

/// The emulated AMD-SP in a platform state directory.
#[derive(Debug)]
pub struct Emulated {
    dir: PathBuf,
}

impl Emulated {
    fn unavailable(&self) -> PlatformError {
        PlatformError::Emulated {
            dir: self.dir.clone(),
            message: "the emulated firmware is not available in this build".into(),
        }
    }

    /// Creates a platform directory; `false` if it already held a platform.
    pub fn init(dir: &Path) -> Result<bool, PlatformError> {
        Err(PlatformError::Emulated {
            dir: dir.to_path_buf(),
            message: "the emulated firmware is not available in this build".into(),
        })
    }

    /// Opens an existing platform directory.
    pub fn open(dir: &Path) -> Result<Self, PlatformError> {
        Ok(Emulated {
            dir: dir.to_path_buf(),
        })
    }
}

impl Backend for Emulated {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Emulated(self.dir.clone())
    }
    fn status(&mut self) -> Result<Status, PlatformError> {
        Err(self.unavailable())
    }
    fn pdh_cert_export(&mut self) -> Result<(Vec<u8>, Vec<u8>), PlatformError> {
        Err(self.unavailable())
    }
    fn pek_csr(&mut self) -> Result<Vec<u8>, PlatformError> {
        Err(self.unavailable())
    }
    fn pek_cert_import(&mut self, _pek: &[u8], _oca: &[u8]) -> Result<(), PlatformError> {
        Err(self.unavailable())
    }
    fn pdh_gen(&mut self) -> Result<(), PlatformError> {
        Err(self.unavailable())
    }
    fn pek_gen(&mut self) -> Result<(), PlatformError> {
        Err(self.unavailable())
    }
    fn reset(&mut self) -> Result<(), PlatformError> {
        Err(self.unavailable())
    }
    fn get_id(&mut self) -> Result<Vec<u8>, PlatformError> {
        Err(self.unavailable())
    }
    fn ca_chain(&mut self) -> Result<Option<CaChain>, PlatformError> {
        Err(self.unavailable())
    }
}
