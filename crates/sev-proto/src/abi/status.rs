//! Firmware status codes (docs/protocol/abi.md#status-codes).
//!
//! [`Status`] is the closed set of codes any source assigns; it is what the
//! emulated firmware returns and what travels up to QMP errors and CLI
//! messages. A raw code read from hardware (the `error` field of a Linux
//! ioctl) may be one nobody has assigned yet: [`StatusCode`] carries any
//! `u32` and names it when it is known. That split (rather than an
//! `Unknown(u32)` variant) keeps `Status` a plain `#[repr(u32)]` enum whose
//! discriminants are the codes.

use std::fmt;

macro_rules! statuses {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, $name:literal, $text:literal; )*) => {
        /// A firmware status code (docs/protocol/abi.md#status-codes; Linux `SEV_RET_*`).
        ///
        /// `Display` prints `NAME (0xNN): meaning`, e.g.
        /// `INVALID_GUEST_STATE (0x02): command not allowed in the current guest state`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u32)]
        pub enum Status {
            $( $(#[$doc])* $variant = $code, )*
        }

        impl Status {
            /// Every assigned status code, in numeric order.
            pub const ALL: &'static [Status] = &[$(Status::$variant,)*];

            /// The status for a code, or `None` for a code no source assigns
            /// (0x1E, anything above 0x27).
            pub const fn from_code(code: u32) -> Option<Status> {
                match code {
                    $( $code => Some(Status::$variant), )*
                    _ => None,
                }
            }

            /// The spec / Linux name without the `SEV_RET_` prefix, e.g.
            /// `"INVALID_GUEST_STATE"`.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Status::$variant => $name, )*
                }
            }

            /// What the code means (the reference's "Meaning" column).
            pub const fn text(self) -> &'static str {
                match self {
                    $( Status::$variant => $text, )*
                }
            }
        }
    };
}

statuses! {
    /// The command completed.
    Success = 0x00, "SUCCESS", "success";
    InvalidPlatformState = 0x01, "INVALID_PLATFORM_STATE", "command not allowed in the current platform state";
    InvalidGuestState = 0x02, "INVALID_GUEST_STATE", "command not allowed in the current guest state";
    /// Linux spells it `SEV_RET_INAVLID_CONFIG`.
    InvalidConfig = 0x03, "INVALID_CONFIG", "platform configuration invalid";
    /// The firmware writes the required length back into the buffer.
    InvalidLen = 0x04, "INVALID_LEN", "a buffer is too small";
    AlreadyOwned = 0x05, "ALREADY_OWNED", "platform is already owned";
    InvalidCertificate = 0x06, "INVALID_CERTIFICATE", "certificate invalid";
    PolicyFailure = 0x07, "POLICY_FAILURE", "request not allowed by the guest policy";
    Inactive = 0x08, "INACTIVE", "guest not activated (no ASID bound)";
    InvalidAddress = 0x09, "INVALID_ADDRESS", "bad address";
    BadSignature = 0x0A, "BAD_SIGNATURE", "signature invalid";
    BadMeasurement = 0x0B, "BAD_MEASUREMENT", "measurement or MAC check failed";
    AsidOwned = 0x0C, "ASID_OWNED", "ASID already owned by another guest";
    InvalidAsid = 0x0D, "INVALID_ASID", "ASID invalid";
    WbinvdRequired = 0x0E, "WBINVD_REQUIRED", "WBINVD must be executed first";
    DfFlushRequired = 0x0F, "DFFLUSH_REQUIRED", "DF_FLUSH must be issued first";
    InvalidGuest = 0x10, "INVALID_GUEST", "guest handle invalid";
    InvalidCommand = 0x11, "INVALID_COMMAND", "unknown command";
    /// E.g. DECOMMISSION before DEACTIVATE.
    Active = 0x12, "ACTIVE", "guest is active";
    /// Linux `SEV_RET_HWSEV_RET_PLATFORM`.
    HwErrorPlatform = 0x13, "HWERROR_PLATFORM", "hardware error, buffers safe to reuse";
    /// Linux `SEV_RET_HWSEV_RET_UNSAFE`.
    HwErrorUnsafe = 0x14, "HWERROR_UNSAFE", "hardware error, buffers unsafe";
    Unsupported = 0x15, "UNSUPPORTED", "feature not supported";
    InvalidParam = 0x16, "INVALID_PARAM", "invalid parameter";
    ResourceLimit = 0x17, "RESOURCE_LIMIT", "firmware out of a resource";
    /// Linux retries INIT once on this code.
    SecureDataInvalid = 0x18, "SECURE_DATA_INVALID", "integrity check of persistent data failed";
    /// SNP only.
    InvalidPageSize = 0x19, "INVALID_PAGE_SIZE", "invalid page size (SNP)";
    /// SNP only.
    InvalidPageState = 0x1A, "INVALID_PAGE_STATE", "invalid page state (SNP)";
    /// SNP only.
    InvalidMdataEntry = 0x1B, "INVALID_MDATA_ENTRY", "invalid metadata entry (SNP)";
    /// SNP only.
    InvalidPageOwner = 0x1C, "INVALID_PAGE_OWNER", "invalid page owner (SNP)";
    /// SNP only.
    AeadOflow = 0x1D, "AEAD_OFLOW", "AEAD sequence counter overflow (SNP)";
    RingBufferExit = 0x1F, "RING_BUFFER_EXIT", "mailbox command sent while in ring-buffer mode";
    /// SNP only.
    RmpInitRequired = 0x20, "RMP_INIT_REQUIRED", "RMP initialization required (SNP)";
    /// SNP only.
    BadSvn = 0x21, "BAD_SVN", "bad security version number (SNP)";
    BadVersion = 0x22, "BAD_VERSION", "bad version";
    ShutdownRequired = 0x23, "SHUTDOWN_REQUIRED", "platform shutdown required";
    UpdateFailed = 0x24, "UPDATE_FAILED", "update failed";
    RestoreRequired = 0x25, "RESTORE_REQUIRED", "restore required";
    RmpInitializationFailed = 0x26, "RMP_INITIALIZATION_FAILED", "RMP initialization failed";
    InvalidKey = 0x27, "INVALID_KEY", "invalid key";
}

impl Status {
    /// The numeric code.
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// `true` for [`Status::Success`].
    pub const fn is_success(self) -> bool {
        matches!(self, Status::Success)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (0x{:02X}): {}",
            self.name(),
            self.code(),
            self.text()
        )
    }
}

impl std::error::Error for Status {}

impl From<Status> for u32 {
    fn from(s: Status) -> u32 {
        s.code()
    }
}

/// Any raw status value, known or not, as reported by hardware.
///
/// `Display` is that of [`Status`] for assigned codes, `UNKNOWN (0xNN):
/// status code not assigned` otherwise, and names Linux's pseudo code
/// [`StatusCode::NO_FW_CALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(pub u32);

impl StatusCode {
    /// Linux-only pseudo code `SEV_RET_NO_FW_CALL` (−1 in an `int`, so
    /// 0xFFFFFFFF in a `u32` error field): the firmware was never called.
    pub const NO_FW_CALL: StatusCode = StatusCode(u32::MAX);

    /// The known status for this code, if any.
    pub const fn status(self) -> Option<Status> {
        Status::from_code(self.0)
    }

    /// The raw code.
    pub const fn code(self) -> u32 {
        self.0
    }

    /// `true` for code 0.
    pub const fn is_success(self) -> bool {
        self.0 == 0
    }
}

impl From<u32> for StatusCode {
    fn from(code: u32) -> Self {
        StatusCode(code)
    }
}

impl From<Status> for StatusCode {
    fn from(s: Status) -> Self {
        StatusCode(s.code())
    }
}

impl PartialEq<Status> for StatusCode {
    fn eq(&self, other: &Status) -> bool {
        self.0 == other.code()
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status() {
            Some(s) => s.fmt(f),
            None if *self == StatusCode::NO_FW_CALL => {
                f.write_str("NO_FW_CALL (-1): the firmware was never called")
            }
            None => write!(f, "UNKNOWN (0x{:02X}): status code not assigned", self.0),
        }
    }
}

impl std::error::Error for StatusCode {}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/protocol/abi.md#status-codes: every assigned code and its name.
    #[test]
    fn codes_and_names_match_reference_table() {
        let table: &[(u32, &str)] = &[
            (0x00, "SUCCESS"),
            (0x01, "INVALID_PLATFORM_STATE"),
            (0x02, "INVALID_GUEST_STATE"),
            (0x03, "INVALID_CONFIG"),
            (0x04, "INVALID_LEN"),
            (0x05, "ALREADY_OWNED"),
            (0x06, "INVALID_CERTIFICATE"),
            (0x07, "POLICY_FAILURE"),
            (0x08, "INACTIVE"),
            (0x09, "INVALID_ADDRESS"),
            (0x0A, "BAD_SIGNATURE"),
            (0x0B, "BAD_MEASUREMENT"),
            (0x0C, "ASID_OWNED"),
            (0x0D, "INVALID_ASID"),
            (0x0E, "WBINVD_REQUIRED"),
            (0x0F, "DFFLUSH_REQUIRED"),
            (0x10, "INVALID_GUEST"),
            (0x11, "INVALID_COMMAND"),
            (0x12, "ACTIVE"),
            (0x13, "HWERROR_PLATFORM"),
            (0x14, "HWERROR_UNSAFE"),
            (0x15, "UNSUPPORTED"),
            (0x16, "INVALID_PARAM"),
            (0x17, "RESOURCE_LIMIT"),
            (0x18, "SECURE_DATA_INVALID"),
            (0x19, "INVALID_PAGE_SIZE"),
            (0x1A, "INVALID_PAGE_STATE"),
            (0x1B, "INVALID_MDATA_ENTRY"),
            (0x1C, "INVALID_PAGE_OWNER"),
            (0x1D, "AEAD_OFLOW"),
            (0x1F, "RING_BUFFER_EXIT"),
            (0x20, "RMP_INIT_REQUIRED"),
            (0x21, "BAD_SVN"),
            (0x22, "BAD_VERSION"),
            (0x23, "SHUTDOWN_REQUIRED"),
            (0x24, "UPDATE_FAILED"),
            (0x25, "RESTORE_REQUIRED"),
            (0x26, "RMP_INITIALIZATION_FAILED"),
            (0x27, "INVALID_KEY"),
        ];
        assert_eq!(Status::ALL.len(), table.len());
        for (&(code, name), &s) in table.iter().zip(Status::ALL) {
            assert_eq!(s.code(), code);
            assert_eq!(s.name(), name);
            assert_eq!(Status::from_code(code), Some(s));
            assert!(!s.text().is_empty());
        }
    }

    #[test]
    fn unassigned_codes_are_none() {
        for code in [0x1E, 0x28, 0x100, u32::MAX] {
            assert_eq!(Status::from_code(code), None, "{code:#x}");
        }
    }

    #[test]
    fn display_is_name_code_text() {
        assert_eq!(
            Status::InvalidGuestState.to_string(),
            "INVALID_GUEST_STATE (0x02): command not allowed in the current guest state"
        );
        assert_eq!(
            Status::BadMeasurement.to_string(),
            "BAD_MEASUREMENT (0x0B): measurement or MAC check failed"
        );
    }

    #[test]
    fn status_code_wraps_known_and_unknown() {
        assert_eq!(StatusCode(7).status(), Some(Status::PolicyFailure));
        assert_eq!(StatusCode(7), Status::PolicyFailure);
        assert_eq!(StatusCode(7).to_string(), Status::PolicyFailure.to_string());
        assert_eq!(
            StatusCode(0x1E).to_string(),
            "UNKNOWN (0x1E): status code not assigned"
        );
        assert_eq!(StatusCode::NO_FW_CALL.status(), None);
        assert!(StatusCode::NO_FW_CALL.to_string().starts_with("NO_FW_CALL"));
        assert!(StatusCode::from(Status::Success).is_success());
        assert!(Status::Success.is_success());
        assert!(!Status::Active.is_success());
    }

    #[test]
    fn status_is_an_error() {
        let e: Box<dyn std::error::Error> = Box::new(Status::PolicyFailure);
        assert!(e.to_string().contains("POLICY_FAILURE"));
    }
}
