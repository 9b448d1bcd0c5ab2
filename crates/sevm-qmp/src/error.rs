//! QMP's error object: `{"class": ..., "desc": ...}` (qemu qapi/error.json).

use serde::Serialize;

/// QEMU's `QapiErrorClass`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ErrorClass {
    /// Everything that is not one of the others.
    GenericError,
    /// The command does not exist (or capabilities are not negotiated yet).
    CommandNotFound,
    /// A device exists but is not active.
    DeviceNotActive,
    /// A device does not exist.
    DeviceNotFound,
    /// KVM lacks a capability the command needs.
    KVMMissingCap,
}

impl ErrorClass {
    /// The class name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::GenericError => "GenericError",
            ErrorClass::CommandNotFound => "CommandNotFound",
            ErrorClass::DeviceNotActive => "DeviceNotActive",
            ErrorClass::DeviceNotFound => "DeviceNotFound",
            ErrorClass::KVMMissingCap => "KVMMissingCap",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error reply: what a command handler returns on failure and what the
/// parser returns for a bad request. Its `Display` is the description, as
/// QEMU's `error_get_pretty`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{desc}")]
pub struct QmpError {
    /// The error class.
    pub class: ErrorClass,
    /// The human-readable description.
    pub desc: String,
}

impl QmpError {
    /// An error of the given class.
    pub fn new(class: ErrorClass, desc: impl Into<String>) -> Self {
        QmpError {
            class,
            desc: desc.into(),
        }
    }

    /// A `GenericError` (QEMU's `error_setg`).
    pub fn generic(desc: impl Into<String>) -> Self {
        QmpError::new(ErrorClass::GenericError, desc)
    }

    /// A `CommandNotFound` error.
    pub fn command_not_found(desc: impl Into<String>) -> Self {
        QmpError::new(ErrorClass::CommandNotFound, desc)
    }

    /// The error object `{"class": ..., "desc": ...}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "class": self.class.as_str(), "desc": self.desc })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_object_shape() {
        let e = QmpError::command_not_found("The command x has not been found");
        assert_eq!(
            e.to_json(),
            serde_json::json!({"class": "CommandNotFound", "desc": "The command x has not been found"})
        );
        assert_eq!(e.to_string(), "The command x has not been found");
        assert_eq!(
            serde_json::to_value(QmpError::generic("d")).unwrap(),
            serde_json::json!({"class": "GenericError", "desc": "d"})
        );
        for c in [
            ErrorClass::GenericError,
            ErrorClass::CommandNotFound,
            ErrorClass::DeviceNotActive,
            ErrorClass::DeviceNotFound,
            ErrorClass::KVMMissingCap,
        ] {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }
}
