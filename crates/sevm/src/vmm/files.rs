//! Reading the files the command line names, with errors that name the
//! option and the file.

use std::path::{Path, PathBuf};

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

/// Reads a base64 file (QEMU's `dh-cert-file`, `session-file`) whose decoded
/// content must be exactly `len` bytes.
pub(crate) fn read_base64_exact(
    what: &'static str,
    path: &Path,
    len: usize,
    meaning: &str,
) -> Result<Vec<u8>, FileError> {
    let text = read(what, path, base64_file_limit(len))?;
    // The one base64 rule of sevm (that of its QMP arguments).
    let bytes = sevm_qmp::base64::decode(&text).map_err(|e| FileError::Base64 {
        what,
        path: path.to_path_buf(),
        problem: e.to_string(),
    })?;
    if bytes.len() != len {
        return Err(FileError::Size {
            what,
            path: path.to_path_buf(),
            problem: format!(
                "decodes to {} bytes, but {meaning} is {len} bytes",
                bytes.len()
            ),
        });
    }
    Ok(bytes)
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
            read_base64_exact("session-file", &p, 128, "x").unwrap(),
            vec![7u8; 128]
        );
        let e = read_base64_exact("session-file", &p, 2084, "an SEV certificate").unwrap_err();
        assert!(e.to_string().contains("decodes to 128 bytes"), "{e}");
        std::fs::write(&p, "not*base64").unwrap();
        let e = read_base64_exact("session-file", &p, 128, "x").unwrap_err();
        assert!(matches!(e, FileError::Base64 { .. }), "{e}");
        let e = read_base64_exact("dh-cert-file", &dir.path().join("missing"), 1, "x").unwrap_err();
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
