//! The error type of the hardware backend, and the argument checks that run
//! before any ioctl is issued.

use std::io;
use std::path::PathBuf;

use crate::abi::{SEV_RET_INVALID_LEN, SEV_RET_NO_FW_CALL};

/// Everything that can go wrong talking to `/dev/sev` or to KVM's SEV ioctls.
///
/// Firmware failures carry the raw SEV status code (`code`, docs/protocol/abi.md#status-codes);
/// mapping it to a typed status is left to the caller.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A device node could not be opened.
    #[error("cannot open {}", path.display())]
    Open {
        /// The path that was opened.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },

    /// An ioctl failed before or without a firmware status (bad fd, EINVAL
    /// from the kernel's own checks, ENOTTY when SEV is not enabled, ...).
    #[error("{cmd} ioctl failed")]
    Ioctl {
        /// Sub-command name (e.g. `KVM_SEV_LAUNCH_START`).
        cmd: &'static str,
        /// The errno, as an `io::Error`.
        #[source]
        errno: io::Error,
    },

    /// The firmware ran the command and returned a non-zero status.
    #[error("{cmd}: firmware returned status {code:#04x}")]
    Firmware {
        /// Sub-command name.
        cmd: &'static str,
        /// Raw SEV firmware status code (docs/protocol/abi.md#status-codes).
        code: u32,
    },

    /// A caller-supplied buffer that must not be empty was empty.
    #[error("{what} is empty")]
    Empty {
        /// Which argument.
        what: &'static str,
    },

    /// A caller-supplied buffer or range exceeds what the kernel accepts.
    #[error("{what} is {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// Which argument.
        what: &'static str,
        /// Its length.
        len: u64,
        /// The limit.
        max: u64,
    },

    /// A caller-supplied address was zero.
    #[error("{what} is a null address")]
    NullAddress {
        /// Which argument.
        what: &'static str,
    },

    /// An address or a length is not aligned as the firmware requires.
    #[error("{what} {value:#x} is not a multiple of {align}")]
    Misaligned {
        /// Which argument.
        what: &'static str,
        /// The offending value.
        value: u64,
        /// The required alignment.
        align: u64,
    },

    /// `addr + len` wraps around the address space.
    #[error("{what} at {addr:#x} with length {len:#x} wraps around the address space")]
    AddressOverflow {
        /// Which argument.
        what: &'static str,
        /// Start address.
        addr: u64,
        /// Length.
        len: u64,
    },

    /// A guest range for SEND/RECEIVE_UPDATE_DATA crosses a 4 KiB page.
    #[error("{what} at {addr:#x} with length {len:#x} crosses a 4 KiB page boundary")]
    CrossesPage {
        /// Which argument.
        what: &'static str,
        /// Start address.
        addr: u64,
        /// Length.
        len: u64,
    },

    /// A command that KVM carries out in steps and resumes from what it
    /// wrote back (KVM_SEV_SNP_LAUNCH_UPDATE) stopped making progress, or
    /// wrote back a remainder that is not a smaller whole number of pages.
    #[error("{cmd}: no progress, {left:#x} bytes left after {attempts} calls")]
    Stalled {
        /// Sub-command name.
        cmd: &'static str,
        /// Bytes KVM reported as left to do.
        left: u64,
        /// Calls made.
        attempts: u32,
    },

    /// The firmware reported a length (in answer to a length query, or after
    /// a fetch) that is zero, larger than any buffer the kernel would copy, or
    /// not the fixed size the output must have.
    #[error("{cmd}: firmware reported {what} length {len}, expected {expected}")]
    BadReportedLength {
        /// Sub-command name.
        cmd: &'static str,
        /// Which length.
        what: &'static str,
        /// The length the firmware reported.
        len: u32,
        /// What was acceptable, in words (e.g. `"1..=16384"` or `"48"`).
        expected: &'static str,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, HostError>;

/// Turn a failed ioctl into a [`HostError`]: a firmware status when the kernel
/// says EIO and the `error` field holds a real firmware code, the errno
/// otherwise.
pub(crate) fn ioctl_failure(cmd: &'static str, errno: io::Error, fw_error: u32) -> HostError {
    if errno.raw_os_error() == Some(libc::EIO) && fw_error != 0 && fw_error != SEV_RET_NO_FW_CALL {
        HostError::Firmware {
            cmd,
            code: fw_error,
        }
    } else {
        HostError::Ioctl { cmd, errno }
    }
}

/// Accept the outcome of a "query the length first" call: success, or the
/// firmware's INVALID_LEN answer (the lengths it wrote back are valid either
/// way). Anything else is a real failure.
pub(crate) fn accept_length_query(result: Result<()>) -> Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(HostError::Firmware {
            code: SEV_RET_INVALID_LEN,
            ..
        }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A blob passed in to the kernel: non-empty and at most `max` bytes.
/// Returns its length as the `u32` the ABI carries.
pub(crate) fn check_blob(what: &'static str, blob: &[u8], max: usize) -> Result<u32> {
    if blob.is_empty() {
        return Err(HostError::Empty { what });
    }
    check_len(what, blob.len(), max)
}

/// A length of at most `max` (and of at most `u32::MAX`), as `u32`.
pub(crate) fn check_len(what: &'static str, len: usize, max: usize) -> Result<u32> {
    let too_large = || HostError::TooLarge {
        what,
        len: u64::try_from(len).unwrap_or(u64::MAX),
        max: u64::try_from(max).unwrap_or(u64::MAX),
    };
    if len > max {
        return Err(too_large());
    }
    u32::try_from(len).map_err(|_| too_large())
}

/// A host address range: non-null, non-empty, not wrapping.
pub(crate) fn check_range(what: &'static str, addr: u64, len: u64) -> Result<()> {
    if addr == 0 {
        return Err(HostError::NullAddress { what });
    }
    if len == 0 {
        return Err(HostError::Empty { what });
    }
    if addr.checked_add(len).is_none() {
        return Err(HostError::AddressOverflow { what, addr, len });
    }
    Ok(())
}

/// `value` must be a multiple of `align` (a power of two).
pub(crate) fn check_aligned(what: &'static str, value: u64, align: u64) -> Result<()> {
    if !value.is_multiple_of(align) {
        return Err(HostError::Misaligned { what, value, align });
    }
    Ok(())
}

/// A length the firmware reported: 1..=`max`, returned as `usize`.
pub(crate) fn reported_len(
    cmd: &'static str,
    what: &'static str,
    len: u32,
    max: usize,
    expected: &'static str,
) -> Result<usize> {
    let bad = || HostError::BadReportedLength {
        cmd,
        what,
        len,
        expected,
    };
    let len_usize = usize::try_from(len).map_err(|_| bad())?;
    if len_usize == 0 || len_usize > max {
        return Err(bad());
    }
    Ok(len_usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eio_with_status_is_firmware_error() {
        let e = ioctl_failure("X", io::Error::from_raw_os_error(libc::EIO), 7);
        assert!(matches!(e, HostError::Firmware { cmd: "X", code: 7 }));
        assert_eq!(e.to_string(), "X: firmware returned status 0x07");
    }

    #[test]
    fn other_errno_or_no_fw_call_is_ioctl_error() {
        let e = ioctl_failure("X", io::Error::from_raw_os_error(libc::EINVAL), 7);
        assert!(
            matches!(&e, HostError::Ioctl { cmd: "X", errno } if errno.raw_os_error() == Some(libc::EINVAL))
        );
        let e = ioctl_failure("X", io::Error::from_raw_os_error(libc::EIO), 0);
        assert!(matches!(e, HostError::Ioctl { .. }));
        let e = ioctl_failure(
            "X",
            io::Error::from_raw_os_error(libc::EIO),
            SEV_RET_NO_FW_CALL,
        );
        assert!(matches!(e, HostError::Ioctl { .. }));
    }

    #[test]
    fn length_query_accepts_invalid_len_only() {
        assert!(accept_length_query(Ok(())).is_ok());
        assert!(accept_length_query(Err(HostError::Firmware { cmd: "X", code: 4 })).is_ok());
        assert!(matches!(
            accept_length_query(Err(HostError::Firmware { cmd: "X", code: 7 })),
            Err(HostError::Firmware { code: 7, .. })
        ));
        assert!(matches!(
            accept_length_query(Err(HostError::Empty { what: "w" })),
            Err(HostError::Empty { what: "w" })
        ));
    }

    #[test]
    fn blob_checks() {
        assert!(matches!(
            check_blob("pdh", &[], 16),
            Err(HostError::Empty { what: "pdh" })
        ));
        assert!(matches!(
            check_blob("pdh", &[0; 17], 16),
            Err(HostError::TooLarge {
                what: "pdh",
                len: 17,
                max: 16
            })
        ));
        assert_eq!(check_blob("pdh", &[0; 16], 16).unwrap(), 16);
        assert!(check_len("x", usize::MAX, usize::MAX).is_err());
    }

    #[test]
    fn range_checks() {
        assert!(matches!(
            check_range("r", 0, 16),
            Err(HostError::NullAddress { what: "r" })
        ));
        assert!(matches!(
            check_range("r", 16, 0),
            Err(HostError::Empty { what: "r" })
        ));
        assert!(matches!(
            check_range("r", u64::MAX - 1, 16),
            Err(HostError::AddressOverflow { .. })
        ));
        assert!(check_range("r", 0x1000, 0x1000).is_ok());
        assert!(matches!(
            check_aligned("a", 0x1001, 16),
            Err(HostError::Misaligned {
                value: 0x1001,
                align: 16,
                ..
            })
        ));
        assert!(check_aligned("a", 0x1010, 16).is_ok());
    }

    #[test]
    fn reported_length_bounds() {
        assert_eq!(reported_len("C", "w", 48, 48, "48").unwrap(), 48);
        assert!(matches!(
            reported_len("C", "w", 0, 48, "48"),
            Err(HostError::BadReportedLength { len: 0, .. })
        ));
        assert!(matches!(
            reported_len("C", "w", 49, 48, "48"),
            Err(HostError::BadReportedLength { len: 49, .. })
        ));
    }
}
