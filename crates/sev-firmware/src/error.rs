//! Errors of the platform boundary.

use sev_proto::abi::StatusCode;

/// A failed SEV operation.
///
/// Firmware status codes are data: every firmware failure is a
/// [`SevError::Firmware`] with its [`StatusCode`], and its `Display` is what
/// the VMM's QMP errors and the tools' messages show, e.g.
/// `SEV: LAUNCH_SECRET failed: BAD_MEASUREMENT (0x0B): measurement or MAC check failed`.
#[derive(Debug, thiserror::Error)]
pub enum SevError {
    /// The firmware ran the command and refused it with a status code.
    #[error("SEV: {command} failed: {status}{}", detail_suffix(.detail))]
    Firmware {
        /// The firmware command (e.g. `LAUNCH_SECRET`).
        command: &'static str,
        /// The firmware status code.
        status: StatusCode,
        /// What the firmware (emulated) or the kernel said in addition.
        detail: String,
    },
    /// The host (kernel, ioctl, device) failed before or around the firmware.
    #[error("SEV: {command} failed: {detail}")]
    Host {
        /// The firmware command or host operation.
        command: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// A guest-physical range is not backed by guest memory.
    #[error("SEV: {command}: guest range {gpa:#x}+{len:#x} is outside guest memory")]
    OutOfRange {
        /// The command.
        command: &'static str,
        /// First address.
        gpa: u64,
        /// Length.
        len: u64,
    },
    /// The platform cannot be used (missing device or state directory, ...).
    #[error("{0}")]
    Platform(String),
    /// The operation is not available on this platform or in this build.
    #[error("SEV: {command} is not supported: {reason}")]
    Unsupported {
        /// The command.
        command: &'static str,
        /// Why.
        reason: String,
    },
    /// The firmware answered with bytes that do not decode as the protocol
    /// value they must be (a certificate, a session buffer, ...).
    #[error("SEV: {command}: {problem}")]
    Decode {
        /// The command.
        command: &'static str,
        /// Which value does not decode, and the decoder's complaint.
        problem: String,
    },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

impl SevError {
    /// The firmware status code, when the firmware refused the command.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            SevError::Firmware { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// `r` as a [`SevError::Decode`] of `command`: a value the firmware
    /// returned (`what`) does not decode.
    pub(crate) fn decoded<T, E: std::fmt::Display>(
        command: &'static str,
        what: &'static str,
        r: Result<T, E>,
    ) -> Result<T, SevError> {
        r.map_err(|e| SevError::Decode {
            command,
            problem: format!("the firmware's {what} does not decode: {e}"),
        })
    }
}

/// Why a platform could not be opened (before any firmware command ran).
/// The callers phrase it for their users (the VMM names the option, the
/// tools the flag), so the source is kept as it is.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The emulated platform's state directory cannot be used.
    #[error(transparent)]
    Emulated(#[from] sev_psp::PlatformError),
    /// The SEV device cannot be opened.
    #[error(transparent)]
    Hardware(#[from] sev_host::HostError),
    /// The platform opened but its first command failed.
    #[error(transparent)]
    Firmware(#[from] SevError),
}

/// Renders an error with its sources (`a: b: c`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use sev_proto::abi::Status;

    #[test]
    fn firmware_errors_carry_the_status_code_in_the_text() {
        let e = SevError::Firmware {
            command: "LAUNCH_SECRET",
            status: StatusCode(Status::BadMeasurement.code()),
            detail: String::new(),
        };
        assert_eq!(
            e.to_string(),
            "SEV: LAUNCH_SECRET failed: BAD_MEASUREMENT (0x0B): measurement or MAC check failed"
        );
        assert_eq!(e.status(), Some(StatusCode(0x0B)));
        let e = SevError::Firmware {
            command: "LAUNCH_START",
            status: StatusCode(0x42),
            detail: "KVM_SEV_LAUNCH_START".into(),
        };
        assert_eq!(
            e.to_string(),
            "SEV: LAUNCH_START failed: UNKNOWN (0x42): status code not assigned (KVM_SEV_LAUNCH_START)"
        );
        let e = SevError::Host {
            command: "LAUNCH_MEASURE",
            detail: "ioctl failed".into(),
        };
        assert_eq!(e.status(), None);
    }
}
