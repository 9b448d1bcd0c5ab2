//! Errors of the emulated firmware.
//!
//! Every command fails with a [`FwError`]: the SEV status code the firmware
//! returns (always present), the required length(s) for INVALID_LEN (the
//! firmware writes them back into the command buffer), and a human-readable
//! description of the check that failed. Creating or opening a platform
//! directory fails with a [`PlatformError`].

use std::fmt;
use std::path::PathBuf;

use sev_proto::abi::{CommandId, Status};

use crate::store::StoreError;

/// What failed: a firmware command, or an access through the host view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// A firmware command.
    Command(CommandId),
    /// An SNP firmware command.
    Snp(sev_proto::snp::SnpCommand),
    /// [`crate::Platform::host_read`] (no firmware command on hardware: the
    /// hypervisor reads DRAM).
    HostRead,
    /// [`crate::Platform::host_write`].
    HostWrite,
    /// [`crate::Platform::snp_page_state_change`] (on hardware the
    /// hypervisor's RMPUPDATE and the guest's PVALIDATE, not a firmware
    /// command).
    PageStateChange,
    /// [`crate::Platform::snp_pvalidate`] (the guest's PVALIDATE
    /// instruction, not a firmware command).
    Pvalidate,
    /// [`crate::Platform::trust_ark`] (an administrator's action, not a
    /// firmware command).
    TrustArk,
    /// [`crate::Platform::kds_object`] and the revocation list (the
    /// emulated key server, not a firmware command).
    Issuer,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Command(c) => write!(f, "{c}"),
            Op::Snp(c) => write!(f, "{c}"),
            Op::HostRead => f.write_str("host-view read"),
            Op::HostWrite => f.write_str("host-view write"),
            Op::PageStateChange => f.write_str("page-state change"),
            Op::Pvalidate => f.write_str("PVALIDATE"),
            Op::TrustArk => f.write_str("trusting an ARK"),
            Op::Issuer => f.write_str("the emulated key server"),
        }
    }
}

/// The length(s) the firmware writes back with INVALID_LEN.
///
/// `first` is the command's only or first length field; `second` the other
/// one of the commands that have two: PDH_CERT_EXPORT (PDH_CERT_LEN,
/// CERTS_LEN) and SEND_UPDATE_DATA/VMSA (HDR_LEN, TRANS_LEN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequiredLen {
    /// The (first) length field.
    pub first: u32,
    /// The second length field, for commands with two.
    pub second: Option<u32>,
}

impl fmt::Display for RequiredLen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.second {
            None => write!(f, "{:#x}", self.first),
            Some(second) => write!(f, "{:#x} and {second:#x}", self.first),
        }
    }
}

/// A failed firmware command.
///
/// `Display` names the command, the status code and the check that failed,
/// e.g. `LAUNCH_SECRET (0x034) failed: BAD_MEASUREMENT (0x0B): measurement or
/// MAC check failed: packet MAC does not verify`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op} failed: {status}: {detail}{}", required_suffix(.required_len))]
pub struct FwError {
    /// The command (or host-view access).
    pub op: Op,
    /// The firmware status code.
    pub status: Status,
    /// With [`Status::InvalidLen`]: the length(s) the firmware writes back.
    pub required_len: Option<RequiredLen>,
    /// Which check failed, with the values involved.
    pub detail: String,
}

fn required_suffix(required: &Option<RequiredLen>) -> String {
    match required {
        Some(r) => format!(" (required length {r})"),
        None => String::new(),
    }
}

impl FwError {
    /// An error of `op` with `status` and `detail`.
    pub fn new(op: Op, status: Status, detail: impl Into<String>) -> Self {
        FwError {
            op,
            status,
            required_len: None,
            detail: detail.into(),
        }
    }

    /// INVALID_LEN with one required length.
    pub fn invalid_len(op: Op, required: usize, detail: impl Into<String>) -> Self {
        Self::invalid_len2(op, required, None, detail)
    }

    /// INVALID_LEN with one or two required lengths.
    pub fn invalid_len2(
        op: Op,
        first: usize,
        second: Option<usize>,
        detail: impl Into<String>,
    ) -> Self {
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        FwError {
            op,
            status: Status::InvalidLen,
            required_len: Some(RequiredLen {
                first: clamp(first),
                second: second.map(clamp),
            }),
            detail: detail.into(),
        }
    }
}

/// Why a platform directory could not be created or opened.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The directory does not exist or holds no platform identity.
    #[error(
        "no emulated platform in {path}: create one first (sev-platform init, or Platform::create)"
    )]
    NotInitialized {
        /// The directory.
        path: PathBuf,
    },
    /// `create` was asked for a directory that already holds an identity.
    #[error("{path} already holds an emulated platform identity; open it instead")]
    AlreadyExists {
        /// The directory.
        path: PathBuf,
    },
    /// A state file is damaged: the firmware's SECURE_DATA_INVALID. Never
    /// replaced silently; restore it or reset the directory by hand.
    #[error("emulated platform state in {path} is damaged (SECURE_DATA_INVALID): {detail}")]
    Damaged {
        /// The directory.
        path: PathBuf,
        /// What is damaged.
        detail: String,
    },
    /// The create options are not supported.
    #[error("invalid platform options: {0}")]
    InvalidOptions(String),
    /// Generating a key or certificate failed.
    #[error("generating the platform identity failed: {0}")]
    Generate(String),
    /// A file-system operation on the directory failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PlatformError {
    /// The firmware status this error corresponds to, if any
    /// (SECURE_DATA_INVALID for damaged state).
    pub fn status(&self) -> Option<Status> {
        match self {
            PlatformError::Damaged { .. } => Some(Status::SecureDataInvalid),
            _ => None,
        }
    }
}

/// The firmware error for a failure of the platform directory's storage
/// during `op`.
pub(crate) fn store_err(op: Op) -> impl Fn(StoreError) -> FwError {
    move |e| {
        if e.is_damaged() {
            FwError::new(op, Status::SecureDataInvalid, e.to_string())
        } else {
            // UNCERTAIN (no reference): chose HWERROR_PLATFORM ("hardware
            // error, buffers safe to reuse") for an I/O failure of the NV
            // storage, because it is the closest thing the status list has to
            // a storage fault.
            FwError::new(op, Status::HwErrorPlatform, e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_command_status_and_check() {
        let e = FwError::new(
            Op::Command(CommandId::LaunchSecret),
            Status::BadMeasurement,
            "packet MAC does not verify",
        );
        let s = e.to_string();
        assert!(
            s.starts_with("LAUNCH_SECRET (0x034) failed: BAD_MEASUREMENT (0x0B)"),
            "{s}"
        );
        assert!(s.ends_with("packet MAC does not verify"), "{s}");
        let e = FwError::invalid_len2(
            Op::Command(CommandId::PdhCertExport),
            0x824,
            Some(0x186c),
            "buffers too small",
        );
        assert_eq!(
            e.required_len,
            Some(RequiredLen {
                first: 0x824,
                second: Some(0x186c)
            })
        );
        assert!(e
            .to_string()
            .ends_with("(required length 0x824 and 0x186c)"));
        assert_eq!(Op::HostRead.to_string(), "host-view read");
    }
}
