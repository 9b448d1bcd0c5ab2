//! The emulated platform backend: [`sev_psp::Platform`] on a platform state
//! directory.
//!
//! The directory is one emulated PSP shared by every process using it (the
//! sevm VMs on it, this tool): its state, guests and handles are
//! platform-wide, as on a host with one firmware. Like the Linux driver
//! (SEV-REFERENCE 1.3), the commands that need INIT (PEK_GEN, PDH_GEN,
//! PEK_CSR, PEK_CERT_IMPORT, PDH_CERT_EXPORT) INIT an UNINIT platform for
//! the command and SHUT it DOWN afterwards (unless guests appeared
//! meanwhile); on an INIT or WORKING platform they run as they are (PEK_GEN
//! and PEK_CERT_IMPORT then fail with INVALID_PLATFORM_STATE while guests
//! run, as the firmware's state table says). PLATFORM_RESET SHUTs an INIT
//! platform DOWN first and is refused while guests run, as Linux does.

use std::path::{Path, PathBuf};

use sev_proto::abi::{ApiVersion, Owner, PlatformState, PLATFORM_CHAIN_LEN, SEV_CERT_LEN};
use sev_proto::cert::chain::CaChain;
use sev_psp::{CreateOptions, FwError, Platform};

use super::{Backend, PlatformError, PlatformKind, Status};

/// The emulated AMD-SP in a platform state directory.
#[derive(Debug)]
pub struct Emulated {
    platform: Platform,
}

/// Options of a new emulated platform.
#[derive(Debug, Clone, Copy)]
pub struct InitOptions {
    /// Firmware API version.
    pub api: ApiVersion,
    /// Firmware build.
    pub build: u8,
    /// Emulated ARK/ASK RSA size (2048 or 4096).
    pub ark_bits: u32,
}

impl Default for InitOptions {
    fn default() -> Self {
        let d = CreateOptions::default();
        InitOptions {
            api: d.api,
            build: d.build,
            ark_bits: d.ark_bits,
        }
    }
}

impl Emulated {
    /// Creates a platform directory; `false` if it already held a platform
    /// (which is kept as it is).
    pub fn init(dir: &Path, options: InitOptions) -> Result<bool, PlatformError> {
        let create = CreateOptions {
            api: options.api,
            build: options.build,
            ark_bits: options.ark_bits,
            ..CreateOptions::default()
        };
        match Platform::create(dir, create, sev_psp::rng::os_rng()) {
            Ok(_) => Ok(true),
            Err(sev_psp::PlatformError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens an existing platform directory.
    pub fn open(dir: &Path) -> Result<Self, PlatformError> {
        Ok(Emulated {
            platform: Platform::open(dir, sev_psp::rng::os_rng())?,
        })
    }

    /// The underlying emulated firmware.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    fn dir(&self) -> PathBuf {
        self.platform.dir().to_path_buf()
    }

    fn fw(&self, e: FwError) -> PlatformError {
        PlatformError::Emulated {
            dir: self.dir(),
            message: e.to_string(),
        }
    }

    fn state(&self) -> Result<PlatformState, PlatformError> {
        let s = self.platform.platform_status().map_err(|e| self.fw(e))?;
        Ok(s.state)
    }

    /// Runs `f` with the platform INITed (as the Linux driver does for
    /// commands that need it): an UNINIT platform is INITed for `f` and shut
    /// down again afterwards, unless another process created guests on it
    /// meanwhile.
    fn with_init<T>(
        &self,
        f: impl FnOnce(&Platform) -> Result<T, FwError>,
    ) -> Result<T, PlatformError> {
        if self.state()? != PlatformState::Uninit {
            return f(&self.platform).map_err(|e| self.fw(e));
        }
        let es = self.platform.config().es_capable;
        if let Err(e) = self.platform.init(es) {
            // Another process may have INITed it in between.
            if self.state()? == PlatformState::Uninit {
                return Err(self.fw(e));
            }
            return f(&self.platform).map_err(|e| self.fw(e));
        }
        let result = f(&self.platform);
        let idle = self
            .platform
            .platform_status()
            .map(|s| s.state == PlatformState::Init);
        let down = match idle {
            Ok(true) => self.platform.shutdown(),
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        };
        let value = result.map_err(|e| self.fw(e))?;
        down.map_err(|e| self.fw(e))?;
        Ok(value)
    }
}

impl Backend for Emulated {
    fn kind(&self) -> PlatformKind {
        PlatformKind::Emulated(self.dir())
    }

    fn status(&mut self) -> Result<Status, PlatformError> {
        let s = self.platform.platform_status().map_err(|e| self.fw(e))?;
        let flags = u32::from(s.owner == Owner::External) | if s.es_enabled { 0x100 } else { 0 };
        Ok(Status::from_raw(
            s.api.major,
            s.api.minor,
            s.build,
            s.state.to_u8(),
            flags,
            s.guest_count,
        ))
    }

    fn pdh_cert_export(&mut self) -> Result<(Vec<u8>, Vec<u8>), PlatformError> {
        self.with_init(|p| {
            let mut pdh = vec![0u8; SEV_CERT_LEN];
            let mut chain = vec![0u8; PLATFORM_CHAIN_LEN];
            let (a, b) = p.pdh_cert_export(&mut pdh, &mut chain)?;
            pdh.truncate(a);
            chain.truncate(b);
            Ok((pdh, chain))
        })
    }

    fn pek_csr(&mut self) -> Result<Vec<u8>, PlatformError> {
        self.with_init(|p| {
            let mut csr = vec![0u8; SEV_CERT_LEN];
            let n = p.pek_csr(&mut csr)?;
            csr.truncate(n);
            Ok(csr)
        })
    }

    fn pek_cert_import(&mut self, pek: &[u8], oca: &[u8]) -> Result<(), PlatformError> {
        self.with_init(|p| p.pek_cert_import(pek, oca))
    }

    fn pdh_gen(&mut self) -> Result<(), PlatformError> {
        self.with_init(|p| p.pdh_gen())
    }

    fn pek_gen(&mut self) -> Result<(), PlatformError> {
        self.with_init(|p| p.pek_gen())
    }

    /// As the Linux driver: refused while guests run (WORKING), an INIT
    /// platform is SHUT DOWN first.
    fn reset(&mut self) -> Result<(), PlatformError> {
        match self.state()? {
            PlatformState::Working => {
                return Err(PlatformError::Emulated {
                    dir: self.dir(),
                    message: "guests are running on the platform (WORKING): \
                              stop them before a reset"
                        .into(),
                })
            }
            PlatformState::Init => self.platform.shutdown().map_err(|e| self.fw(e))?,
            PlatformState::Uninit => {}
        }
        self.platform.platform_reset().map_err(|e| self.fw(e))
    }

    fn get_id(&mut self) -> Result<Vec<u8>, PlatformError> {
        let mut id = vec![0u8; sev_proto::abi::GET_ID_LEN];
        let n = self.platform.get_id(&mut id).map_err(|e| self.fw(e))?;
        id.truncate(n);
        Ok(id)
    }

    fn ca_chain(&mut self) -> Result<Option<CaChain>, PlatformError> {
        let (ask, ark) = self.platform.amd_chain();
        let mut bytes = ask;
        bytes.extend_from_slice(&ark);
        CaChain::decode(&bytes)
            .map(Some)
            .map_err(|e| PlatformError::Emulated {
                dir: self.dir(),
                message: format!("its ASK/ARK do not decode: {e}"),
            })
    }
}
