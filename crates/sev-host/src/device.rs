//! `/dev/sev`: the platform-management commands of the AMD Secure Processor
//! through the `SEV_ISSUE_CMD` ioctl (docs/protocol/linux.md#dev-sev).

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use crate::abi::{
    FactoryReset, PdhGen, PekGen, SevIssueCmd, SevPlatformCommand, SevUserDataGetId,
    SevUserDataGetId2, SevUserDataPdhCertExport, SevUserDataPekCertImport, SevUserDataPekCsr,
    SevUserDataStatus, SEV_FW_BLOB_MAX_SIZE, SEV_STATUS_FLAGS_CONFIG_ES, SEV_STATUS_FLAGS_OWNER,
};
use crate::error::{accept_length_query, check_blob, ioctl_failure, reported_len, Result};
use crate::ioctl::SEV_ISSUE_CMD;
use crate::HostError;

/// Acceptable firmware-reported blob lengths, in words.
const BLOB_RANGE: &str = "1..=16384";
/// Acceptable length reported after a fetch, in words.
const FETCHED: &str = "1..=the buffer size from the length query";

/// What PLATFORM_STATUS returns (`struct sev_user_data_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlatformStatus {
    /// API major version.
    pub api_major: u8,
    /// API minor version.
    pub api_minor: u8,
    /// Raw platform state (0 UNINIT, 1 INIT, 2 WORKING; docs/protocol/abi.md#platform-states).
    pub state: u8,
    /// Raw flags word (bit 0 owner, bit 8 SEV-ES).
    pub flags: u32,
    /// Firmware build id.
    pub build: u8,
    /// Number of guests.
    pub guest_count: u32,
}

impl PlatformStatus {
    /// Whether the platform is externally owned (an OCA was imported).
    #[must_use]
    pub fn externally_owned(&self) -> bool {
        self.flags & SEV_STATUS_FLAGS_OWNER != 0
    }

    /// Whether SEV-ES was enabled when the platform was initialised.
    #[must_use]
    pub fn es_enabled(&self) -> bool {
        self.flags & SEV_STATUS_FLAGS_CONFIG_ES != 0
    }
}

impl From<SevUserDataStatus> for PlatformStatus {
    fn from(raw: SevUserDataStatus) -> Self {
        Self {
            api_major: raw.api_major,
            api_minor: raw.api_minor,
            state: raw.state,
            flags: raw.flags,
            build: raw.build,
            guest_count: raw.guest_count,
        }
    }
}

/// An open `/dev/sev` (or another path given at open time).
#[derive(Debug)]
pub struct SevDevice {
    fd: OwnedFd,
    path: PathBuf,
}

impl SevDevice {
    /// The usual device node.
    pub const DEFAULT_PATH: &'static str = "/dev/sev";

    /// Open [`Self::DEFAULT_PATH`] read-write.
    ///
    /// # Errors
    /// [`HostError::Open`] naming the path.
    pub fn open() -> Result<Self> {
        Self::open_path(Self::DEFAULT_PATH)
    }

    /// Open `path` read-write (the state-changing commands need a writable
    /// fd; the kernel answers EPERM otherwise).
    ///
    /// # Errors
    /// [`HostError::Open`] naming the path.
    pub fn open_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| HostError::Open {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            fd: file.into(),
            path,
        })
    }

    /// The path this device was opened from.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Issue one `SEV_ISSUE_CMD`.
    ///
    /// # Safety
    ///
    /// Every user address inside `payload` must be null or point to memory
    /// owned by the caller that is valid for reads and writes of the length
    /// given next to it, and not otherwise accessed, for the duration of the
    /// call (the kernel reads and writes those buffers).
    pub(crate) unsafe fn issue<C: SevPlatformCommand>(&self, payload: &mut C) -> Result<()> {
        let data = if C::HAS_DATA {
            std::ptr::from_mut(payload) as u64
        } else {
            0
        };
        let mut cmd = SevIssueCmd {
            cmd: C::ID,
            data,
            error: 0,
        };
        log::debug!("{}: issuing on {}", C::NAME, self.path.display());
        // SAFETY: `self.fd` is open for the lifetime of `self`; `cmd` is a live
        // `struct sev_issue_cmd` whose size is the one encoded in
        // SEV_ISSUE_CMD; `cmd.data` is 0 or points to `*payload`, which the
        // `SevPlatformCommand` impl guarantees is the structure the kernel
        // expects for `C::ID`; the buffers it references are valid per this
        // function's contract. The kernel only writes within those objects.
        let rc = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                SEV_ISSUE_CMD as libc::Ioctl,
                std::ptr::from_mut(&mut cmd),
            )
        };
        if rc < 0 {
            let errno = io::Error::last_os_error();
            let fw_error = cmd.error;
            log::debug!(
                "{}: failed: {errno}, firmware status {fw_error:#x}",
                C::NAME
            );
            return Err(ioctl_failure(C::NAME, errno, fw_error));
        }
        Ok(())
    }

    /// SEV_PLATFORM_STATUS.
    ///
    /// # Errors
    /// [`HostError::Ioctl`] or [`HostError::Firmware`].
    pub fn platform_status(&self) -> Result<PlatformStatus> {
        let mut status = SevUserDataStatus::default();
        // SAFETY: the payload holds no addresses; the kernel writes `status`.
        unsafe { self.issue(&mut status) }?;
        Ok(status.into())
    }

    /// SEV_PEK_GEN: new PEK (and PDH), platform becomes self-owned.
    ///
    /// # Errors
    /// [`HostError::Ioctl`] or [`HostError::Firmware`].
    pub fn pek_gen(&self) -> Result<()> {
        // SAFETY: no payload is sent.
        unsafe { self.issue(&mut PekGen) }
    }

    /// SEV_PDH_GEN: new PDH.
    ///
    /// # Errors
    /// [`HostError::Ioctl`] or [`HostError::Firmware`].
    pub fn pdh_gen(&self) -> Result<()> {
        // SAFETY: no payload is sent.
        unsafe { self.issue(&mut PdhGen) }
    }

    /// SEV_FACTORY_RESET (firmware PLATFORM_RESET): deletes the persistent
    /// platform state.
    ///
    /// # Errors
    /// [`HostError::Ioctl`] (EBUSY while guests run) or [`HostError::Firmware`].
    pub fn factory_reset(&self) -> Result<()> {
        // SAFETY: no payload is sent.
        unsafe { self.issue(&mut FactoryReset) }
    }

    /// SEV_PEK_CSR: the current PEK as an unsigned certificate signing
    /// request. Queries the length first, then fetches.
    ///
    /// # Errors
    /// [`HostError::Ioctl`], [`HostError::Firmware`], or
    /// [`HostError::BadReportedLength`] if the firmware reports a length the
    /// kernel could not copy.
    pub fn pek_csr(&self) -> Result<Vec<u8>> {
        const NAME: &str = <SevUserDataPekCsr as SevPlatformCommand>::NAME;
        let mut query = SevUserDataPekCsr::default();
        // SAFETY: the address is 0: the kernel only writes the length back.
        accept_length_query(unsafe { self.issue(&mut query) })?;
        let len = reported_len(NAME, "CSR", query.length, SEV_FW_BLOB_MAX_SIZE, BLOB_RANGE)?;

        let mut csr = vec![0u8; len];
        let mut fetch = SevUserDataPekCsr {
            address: csr.as_mut_ptr() as u64,
            length: query.length,
        };
        // SAFETY: `address` points to `csr`, a live buffer of exactly `length`
        // bytes that nothing else touches during the call.
        unsafe { self.issue(&mut fetch) }?;
        let got = reported_len(NAME, "CSR", fetch.length, len, FETCHED)?;
        csr.truncate(got);
        Ok(csr)
    }

    /// SEV_PDH_CERT_EXPORT: the PDH certificate and the platform chain
    /// PEK ‖ OCA ‖ CEK, as `(pdh, chain)`. Queries both lengths first.
    ///
    /// # Errors
    /// [`HostError::Ioctl`], [`HostError::Firmware`], or
    /// [`HostError::BadReportedLength`].
    pub fn pdh_cert_export(&self) -> Result<(Vec<u8>, Vec<u8>)> {
        const NAME: &str = <SevUserDataPdhCertExport as SevPlatformCommand>::NAME;
        let mut query = SevUserDataPdhCertExport::default();
        // SAFETY: both addresses are 0: the kernel only writes the lengths.
        accept_length_query(unsafe { self.issue(&mut query) })?;
        let pdh_len = reported_len(
            NAME,
            "PDH certificate",
            query.pdh_cert_len,
            SEV_FW_BLOB_MAX_SIZE,
            BLOB_RANGE,
        )?;
        let chain_len = reported_len(
            NAME,
            "certificate chain",
            query.cert_chain_len,
            SEV_FW_BLOB_MAX_SIZE,
            BLOB_RANGE,
        )?;

        let mut pdh = vec![0u8; pdh_len];
        let mut chain = vec![0u8; chain_len];
        let mut fetch = SevUserDataPdhCertExport {
            pdh_cert_address: pdh.as_mut_ptr() as u64,
            pdh_cert_len: query.pdh_cert_len,
            cert_chain_address: chain.as_mut_ptr() as u64,
            cert_chain_len: query.cert_chain_len,
        };
        // SAFETY: the two addresses point to `pdh` and `chain`, live buffers of
        // exactly the lengths given, untouched by anything else during the call.
        unsafe { self.issue(&mut fetch) }?;
        let pdh_got = reported_len(
            NAME,
            "PDH certificate",
            fetch.pdh_cert_len,
            pdh_len,
            FETCHED,
        )?;
        let chain_got = reported_len(
            NAME,
            "certificate chain",
            fetch.cert_chain_len,
            chain_len,
            FETCHED,
        )?;
        pdh.truncate(pdh_got);
        chain.truncate(chain_got);
        Ok((pdh, chain))
    }

    /// SEV_PEK_CERT_IMPORT: import the OCA-signed PEK and the OCA certificate
    /// (take ownership of the platform).
    ///
    /// # Errors
    /// [`HostError::Empty`] / [`HostError::TooLarge`] before any ioctl if a
    /// certificate is empty or over 16 KiB; then [`HostError::Ioctl`] or
    /// [`HostError::Firmware`].
    pub fn pek_cert_import(&self, pek: &[u8], oca: &[u8]) -> Result<()> {
        let pek_len = check_blob("PEK certificate", pek, SEV_FW_BLOB_MAX_SIZE)?;
        let oca_len = check_blob("OCA certificate", oca, SEV_FW_BLOB_MAX_SIZE)?;
        let mut import = SevUserDataPekCertImport {
            pek_cert_address: pek.as_ptr() as u64,
            pek_cert_len: pek_len,
            oca_cert_address: oca.as_ptr() as u64,
            oca_cert_len: oca_len,
        };
        // SAFETY: both addresses point to caller slices of exactly the lengths
        // given; the kernel only reads them (copy_from_user).
        unsafe { self.issue(&mut import) }
    }

    /// The chip id: SEV_GET_ID2 (length query, then fetch); on kernels that
    /// do not know GET_ID2 (EINVAL), the deprecated SEV_GET_ID.
    ///
    /// # Errors
    /// [`HostError::Ioctl`], [`HostError::Firmware`], or
    /// [`HostError::BadReportedLength`].
    pub fn get_id(&self) -> Result<Vec<u8>> {
        match self.get_id2() {
            Err(HostError::Ioctl { errno, .. }) if errno.raw_os_error() == Some(libc::EINVAL) => {
                log::debug!("SEV_GET_ID2 unknown to this kernel, falling back to SEV_GET_ID");
                self.get_id_legacy()
            }
            other => other,
        }
    }

    fn get_id2(&self) -> Result<Vec<u8>> {
        const NAME: &str = <SevUserDataGetId2 as SevPlatformCommand>::NAME;
        let mut query = SevUserDataGetId2::default();
        // SAFETY: the address is 0: the kernel only writes the length back.
        accept_length_query(unsafe { self.issue(&mut query) })?;
        let len = reported_len(NAME, "ID", query.length, SEV_FW_BLOB_MAX_SIZE, BLOB_RANGE)?;

        let mut id = vec![0u8; len];
        let mut fetch = SevUserDataGetId2 {
            address: id.as_mut_ptr() as u64,
            length: query.length,
        };
        // SAFETY: `address` points to `id`, a live buffer of exactly `length`
        // bytes that nothing else touches during the call.
        unsafe { self.issue(&mut fetch) }?;
        let got = reported_len(NAME, "ID", fetch.length, len, FETCHED)?;
        id.truncate(got);
        Ok(id)
    }

    /// Deprecated GET_ID: two fixed 64-byte slots. The second socket's slot is
    /// dropped when it is all zero (one-socket system), so the result has the
    /// same length GET_ID2 would report (64 or 128 bytes).
    fn get_id_legacy(&self) -> Result<Vec<u8>> {
        let mut id = SevUserDataGetId::default();
        // SAFETY: the payload holds no addresses; the kernel writes `id`.
        unsafe { self.issue(&mut id) }?;
        let (socket1, socket2) = (id.socket1, id.socket2);
        let mut out = socket1.to_vec();
        if socket2.iter().any(|&b| b != 0) {
            out.extend_from_slice(&socket2);
        }
        Ok(out)
    }
}

impl AsFd for SevDevice {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for SevDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{not_a_sev_device, sev_device_or_skip};

    #[test]
    fn open_missing_device_names_the_path() {
        let err = SevDevice::open_path("/nonexistent/sevm-test/sev").unwrap_err();
        match &err {
            HostError::Open { path, source } => {
                assert_eq!(path, Path::new("/nonexistent/sevm-test/sev"));
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("expected Open, got {other:?}"),
        }
        assert!(err.to_string().contains("/nonexistent/sevm-test/sev"));
    }

    #[test]
    fn ioctl_on_a_non_sev_fd_is_an_ioctl_error() {
        // /dev/null answers every ioctl with ENOTTY: the ioctl path is wired
        // and errors name the sub-command.
        let dev = not_a_sev_device();
        let err = dev.platform_status().unwrap_err();
        match err {
            HostError::Ioctl { cmd, errno } => {
                assert_eq!(cmd, "SEV_PLATFORM_STATUS");
                assert_eq!(errno.raw_os_error(), Some(libc::ENOTTY));
            }
            other => panic!("expected Ioctl, got {other:?}"),
        }
        assert!(matches!(
            dev.pdh_cert_export(),
            Err(HostError::Ioctl {
                cmd: "SEV_PDH_CERT_EXPORT",
                ..
            })
        ));
        assert!(matches!(
            dev.pek_csr(),
            Err(HostError::Ioctl {
                cmd: "SEV_PEK_CSR",
                ..
            })
        ));
        assert!(matches!(
            dev.pdh_gen(),
            Err(HostError::Ioctl {
                cmd: "SEV_PDH_GEN",
                ..
            })
        ));
        // ENOTTY (not EINVAL): no fallback to GET_ID.
        assert!(matches!(
            dev.get_id(),
            Err(HostError::Ioctl {
                cmd: "SEV_GET_ID2",
                ..
            })
        ));
    }

    #[test]
    fn pek_cert_import_validates_before_the_ioctl() {
        // On /dev/null any issued ioctl would fail with ENOTTY; these fail
        // earlier, with the argument named.
        let dev = not_a_sev_device();
        let cert = [0u8; 0x824];
        assert!(matches!(
            dev.pek_cert_import(&[], &cert),
            Err(HostError::Empty {
                what: "PEK certificate"
            })
        ));
        assert!(matches!(
            dev.pek_cert_import(&cert, &[]),
            Err(HostError::Empty {
                what: "OCA certificate"
            })
        ));
        let big = vec![0u8; SEV_FW_BLOB_MAX_SIZE + 1];
        assert!(matches!(
            dev.pek_cert_import(&big, &cert),
            Err(HostError::TooLarge {
                what: "PEK certificate",
                len: 16385,
                max: 16384
            })
        ));
        assert!(matches!(
            dev.pek_cert_import(&cert, &big),
            Err(HostError::TooLarge {
                what: "OCA certificate",
                ..
            })
        ));
        // Valid sizes reach the ioctl.
        assert!(matches!(
            dev.pek_cert_import(&cert, &cert),
            Err(HostError::Ioctl {
                cmd: "SEV_PEK_CERT_IMPORT",
                ..
            })
        ));
    }

    #[test]
    fn platform_status_flags() {
        let raw = SevUserDataStatus {
            api_major: 0,
            api_minor: 24,
            state: 1,
            flags: 0x101,
            build: 15,
            guest_count: 3,
        };
        let status = PlatformStatus::from(raw);
        assert_eq!(status.api_minor, 24);
        assert_eq!(status.state, 1);
        assert_eq!(status.build, 15);
        assert_eq!(status.guest_count, 3);
        assert!(status.externally_owned());
        assert!(status.es_enabled());
        let plain = PlatformStatus { flags: 0, ..status };
        assert!(!plain.externally_owned());
        assert!(!plain.es_enabled());
    }

    #[test]
    fn hw_platform_status() {
        let Some(dev) = sev_device_or_skip("hw_platform_status") else {
            return;
        };
        let status = dev.platform_status().unwrap();
        assert!(status.state <= 2, "platform state {}", status.state);
        // Every SEV firmware that Linux supports is API 0.14 or later.
        assert!((status.api_major, status.api_minor) >= (0, 14));
    }

    #[test]
    fn hw_pdh_cert_export() {
        let Some(dev) = sev_device_or_skip("hw_pdh_cert_export") else {
            return;
        };
        let (pdh, chain) = dev.pdh_cert_export().unwrap();
        // docs/protocol/commands.md#buffers: one 0x824-byte certificate, three in the chain.
        assert_eq!(pdh.len(), 0x824);
        assert_eq!(chain.len(), 3 * 0x824);
        // Certificate version 1 (u32 LE at offset 0;
        // docs/protocol/certificates.md#sev-certificate).
        assert_eq!(&pdh[..4], &[1, 0, 0, 0]);
    }

    #[test]
    fn hw_get_id() {
        let Some(dev) = sev_device_or_skip("hw_get_id") else {
            return;
        };
        let id = dev.get_id().unwrap();
        assert!(id.len() == 64 || id.len() == 128, "id length {}", id.len());
    }
}
