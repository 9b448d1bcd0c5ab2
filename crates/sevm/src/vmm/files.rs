//! Reading the files the command line names, with errors that name the
//! option and the file.

use std::path::{Path, PathBuf};

use sev_proto::abi::SEV_CERT_LEN;
use sev_proto::cert::sev::{Certificate, Error as CertError};
use sev_proto::session::SessionBuffer;

/// An input file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Reading failed (missing, unreadable).
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// Which option's file.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid base64.
    #[error("{what} {}: not valid base64: {problem}", path.display())]
    Base64 {
        /// Which option's file.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The decoder's complaint.
        problem: String,
    },
    /// The file (or its decoded content) has the wrong size.
    #[error("{what} {}: {problem}", path.display())]
    Size {
        /// Which option's file.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// Reads a whole file of at most `max` bytes. At most `max + 1` bytes are
/// ever read, so `/dev/zero` or a huge file is refused without being
/// loaded.
pub(crate) fn read(what: &'static str, path: &Path, max: u64) -> Result<Vec<u8>, FileError> {
    use std::io::Read;
    let io = |source| FileError::Io {
        what,
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    f.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > max {
        return Err(FileError::Size {
            what,
            path: path.to_path_buf(),
            problem: format!("is larger than {max} bytes, the most sevm accepts here"),
        });
    }
    Ok(bytes)
}

/// The most base64 text a `dh-cert-file`/`session-file` may hold: four
/// times its decoded size, for line breaks and padding to spare.
fn base64_file_limit(decoded: usize) -> u64 {
    (decoded as u64).saturating_mul(4).max(4096)
}

/// Reads a base64 file (QEMU's `dh-cert-file`, `session-file`) that
/// encodes about `len` bytes (the text may hold at most four times that).
fn read_base64(what: &'static str, path: &Path, len: usize) -> Result<Vec<u8>, FileError> {
    let text = read(what, path, base64_file_limit(len))?;
    // The one base64 rule of sevm (that of its QMP arguments).
    sevm_qmp::base64::decode(&text).map_err(|e| FileError::Base64 {
        what,
        path: path.to_path_buf(),
        problem: e.to_string(),
    })
}

fn size_mismatch(
    what: &'static str,
    path: &Path,
    actual: usize,
    meaning: &str,
    len: usize,
) -> FileError {
    FileError::Size {
        what,
        path: path.to_path_buf(),
        problem: format!("decodes to {actual} bytes, but {meaning} is {len} bytes"),
    }
}

/// Reads QEMU's `dh-cert-file`: the owner's GODH certificate, base64. Its
/// length and layout are checked here, once.
pub(crate) fn read_godh(path: &Path) -> Result<Certificate, FileError> {
    const WHAT: &str = "dh-cert-file";
    let bytes = read_base64(WHAT, path, SEV_CERT_LEN)?;
    Certificate::decode(&bytes).map_err(|e| match e {
        CertError::Length(actual) => {
            size_mismatch(WHAT, path, actual, "an SEV certificate", SEV_CERT_LEN)
        }
        other => FileError::Size {
            what: WHAT,
            path: path.to_path_buf(),
            problem: format!("is not an SEV certificate: {other}"),
        },
    })
}

/// Reads QEMU's `session-file`: the owner's launch session buffer, base64.
/// Its length is checked here, once.
pub(crate) fn read_session(path: &Path) -> Result<SessionBuffer, FileError> {
    const WHAT: &str = "session-file";
    let bytes = read_base64(WHAT, path, SessionBuffer::SIZE)?;
    SessionBuffer::decode(&bytes).map_err(|_| {
        size_mismatch(
            WHAT,
            path,
            bytes.len(),
            "a launch session buffer",
            SessionBuffer::SIZE,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_files_are_checked_for_syntax_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.b64");
        let good = sevm_qmp::base64::encode(&[7u8; 128]);
        // Line breaks as `base64` wraps them are fine.
        let wrapped = format!("{}\n{}\n", &good[..76], &good[76..]);
        std::fs::write(&p, wrapped).unwrap();
        assert_eq!(
            read_session(&p).unwrap(),
            SessionBuffer::from_bytes(&[7u8; 128])
        );
        let e = read_godh(&p).unwrap_err();
        assert!(e.to_string().contains("decodes to 128 bytes"), "{e}");
        // The right length but not a certificate.
        let zeros = sevm_qmp::base64::encode(&[0u8; SEV_CERT_LEN]);
        std::fs::write(&p, zeros).unwrap();
        let e = read_godh(&p).unwrap_err();
        assert!(e.to_string().contains("is not an SEV certificate"), "{e}");
        std::fs::write(&p, "not*base64").unwrap();
        let e = read_session(&p).unwrap_err();
        assert!(matches!(e, FileError::Base64 { .. }), "{e}");
        let e = read_godh(&dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().starts_with("dh-cert-file "), "{e}");
    }

    #[test]
    fn reads_stop_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, [1u8; 100]).unwrap();
        assert_eq!(read("x", &p, 100).unwrap().len(), 100);
        let e = read("-bios", &p, 99).unwrap_err();
        assert!(e.to_string().contains("larger than 99 bytes"), "{e}");
        // An endless input is refused after limit + 1 bytes.
        let e = read("dh-cert-file", Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert!(matches!(e, FileError::Size { .. }), "{e}");
    }
}
