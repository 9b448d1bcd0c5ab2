//! File input and output shared by both tools: bounded reads that name the
//! file, "path or base64" arguments as sevctl takes them, and atomic output
//! (temporary file, fsync, rename) so that a failure never leaves a
//! half-written file behind.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The largest file the tools read whole (certificates, blobs, secrets,
/// JSON). Firmware, kernel and initrd are streamed and have no such limit.
pub const MAX_SMALL_FILE: u64 = 16 << 20;

/// Why an input could not be read or an output not written.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// A file could not be opened or read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is larger than the tools read whole.
    #[error("{} is {len} bytes, more than the {max} bytes accepted", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A value is neither an existing file nor valid base64.
    #[error("{arg}: {value:?} is not an existing file and not valid base64 ({reason})")]
    NotPathOrBase64 {
        /// The option.
        arg: String,
        /// The value (truncated).
        value: String,
        /// The base64 decoder's complaint.
        reason: String,
    },
    /// A decoded value has the wrong length.
    #[error("{arg}: {what} is {actual} bytes, expected {expected}")]
    Length {
        /// The option.
        arg: String,
        /// Where the bytes came from.
        what: String,
        /// Required length.
        expected: usize,
        /// Actual length.
        actual: usize,
    },
    /// A base64 text failed to decode.
    #[error("{what} is not valid base64")]
    Base64 {
        /// What was decoded.
        what: String,
        /// Why.
        #[source]
        source: sevm_qmp::base64::DecodeError,
    },
    /// An output file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Reads a whole file of at most [`MAX_SMALL_FILE`] bytes.
pub fn read_file(path: &Path) -> Result<Vec<u8>, IoError> {
    read_file_max(path, MAX_SMALL_FILE)
}

/// Reads a whole file of at most `max` bytes.
pub fn read_file_max(path: &Path, max: u64) -> Result<Vec<u8>, IoError> {
    let read_err = |source| IoError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    if len > max {
        return Err(IoError::TooLarge {
            path: path.to_path_buf(),
            len,
            max,
        });
    }
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // `take` guards against a file that grows while it is read.
    file.take(max.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(read_err)?;
    if out.len() as u64 > max {
        return Err(IoError::TooLarge {
            path: path.to_path_buf(),
            len: out.len() as u64,
            max,
        });
    }
    Ok(out)
}

/// Standard base64 (with padding), ignoring ASCII whitespace anywhere:
/// the one rule sevm applies to its QMP arguments and base64 files
/// (`sevm_qmp::base64`).
pub fn b64_decode(what: &str, text: &str) -> Result<Vec<u8>, IoError> {
    sevm_qmp::base64::decode(text.as_bytes()).map_err(|source| IoError::Base64 {
        what: what.to_string(),
        source,
    })
}

/// Standard base64 with padding.
pub fn b64_encode(bytes: &[u8]) -> String {
    sevm_qmp::base64::encode(bytes)
}

/// Reads a file holding base64 text (e.g. sevctl's `*_godh.b64`).
pub fn read_b64_file(path: &Path) -> Result<Vec<u8>, IoError> {
    let bytes = read_file(path)?;
    let text = String::from_utf8_lossy(&bytes);
    b64_decode(&path.display().to_string(), &text)
}

fn shown(value: &str) -> String {
    value.chars().take(80).collect()
}

/// An argument that is a path or base64 text, as sevctl accepts for `--tik`,
/// `--tek`, `--nonce`, `--launch-measure-blob`: an existing file is read
/// (its raw bytes; or, when `expected` is given and the raw length differs,
/// the base64 text it holds), anything else is decoded as base64. With
/// `expected`, the result must have exactly that length.
pub fn path_or_b64(arg: &str, value: &str, expected: Option<usize>) -> Result<Vec<u8>, IoError> {
    let path = Path::new(value);
    let (bytes, what) = if !value.is_empty() && path.exists() {
        let raw = read_file(path)?;
        let what = format!("file {}", path.display());
        match expected {
            Some(n) if raw.len() != n => {
                // A file holding base64 text (as QMP returns the blobs).
                match std::str::from_utf8(&raw)
                    .ok()
                    .and_then(|t| b64_decode(&what, t).ok())
                {
                    Some(decoded) => (decoded, format!("base64 in {what}")),
                    None => (raw, what),
                }
            }
            _ => (raw, what),
        }
    } else {
        let decoded = b64_decode(arg, value).map_err(|e| IoError::NotPathOrBase64 {
            arg: arg.to_string(),
            value: shown(value),
            reason: match e {
                IoError::Base64 { source, .. } => source.to_string(),
                other => other.to_string(),
            },
        })?;
        (decoded, "the base64 value".to_string())
    };
    if let Some(n) = expected {
        if bytes.len() != n {
            return Err(IoError::Length {
                arg: arg.to_string(),
                what,
                expected: n,
                actual: bytes.len(),
            });
        }
    }
    Ok(bytes)
}

/// Like [`path_or_b64`] for a key (16 bytes), kept in zeroize-on-drop
/// memory.
pub fn path_or_b64_key(arg: &str, value: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, IoError> {
    path_or_b64(arg, value, Some(16)).map(zeroize::Zeroizing::new)
}

/// Like [`path_or_b64`] with a fixed length, as an array.
pub fn path_or_b64_array<const N: usize>(arg: &str, value: &str) -> Result<[u8; N], IoError> {
    let bytes = path_or_b64(arg, value, Some(N))?;
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes);
    Ok(out)
}

/// A set of output files written all-or-nothing: each is first written to a
/// temporary file beside its destination (created with the final mode,
/// fsynced); [`OutputSet::commit`] renames them all into place. Dropping an
/// uncommitted set removes the temporaries.
#[derive(Debug)]
pub struct OutputSet {
    staged: Vec<(PathBuf, PathBuf)>,
    sync: bool,
}

impl Default for OutputSet {
    fn default() -> Self {
        Self::new()
    }
}

impl OutputSet {
    /// An empty set whose files are fsynced before the rename.
    pub fn new() -> Self {
        OutputSet {
            staged: Vec::new(),
            sync: true,
        }
    }

    /// An empty set for scratch files (a launch's temporary work
    /// directory): still all-or-nothing, without the fsyncs.
    pub fn scratch() -> Self {
        OutputSet {
            staged: Vec::new(),
            sync: false,
        }
    }

    /// Stages `bytes` for `path` with permission bits `mode` (e.g. 0o600).
    pub fn stage(&mut self, path: &Path, bytes: &[u8], mode: u32) -> Result<(), IoError> {
        let write_err = |source| IoError::Write {
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| write_err(std::io::Error::other("not a file name")))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".tmp{}-{}", std::process::id(), self.staged.len()));
        let tmp = dir.join(tmp_name);
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp)?;
            f.write_all(bytes)?;
            if self.sync {
                f.sync_all()?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.staged.push((tmp, path.to_path_buf()));
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(write_err(e))
            }
        }
    }

    /// Renames every staged file into place.
    pub fn commit(mut self) -> Result<Vec<PathBuf>, IoError> {
        let staged = std::mem::take(&mut self.staged);
        let mut done = Vec::with_capacity(staged.len());
        let mut iter = staged.into_iter();
        while let Some((tmp, dest)) = iter.next() {
            if let Err(source) = fs::rename(&tmp, &dest) {
                let _ = fs::remove_file(&tmp);
                for (t, _) in iter {
                    let _ = fs::remove_file(t);
                }
                return Err(IoError::Write { path: dest, source });
            }
            done.push(dest);
        }
        Ok(done)
    }
}

impl Drop for OutputSet {
    fn drop(&mut self) {
        for (tmp, _) in self.staged.drain(..) {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// Writes one file atomically with mode `mode`, fsynced before it
/// replaces `path`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), IoError> {
    let mut set = OutputSet::new();
    set.stage(path, bytes, mode)?;
    set.commit().map(|_| ())
}

/// Writes one file atomically with mode `mode`, without fsync: for an
/// output the command recomputes from its inputs in milliseconds (`measure
/// --outfile`), where an fsync would cost more than the whole command and
/// protects nothing that cannot be made again (see `docs/guide/sev-owner.md#measure`).
/// Readers see the old file or the new one, never a part; after a power
/// loss the file may be missing or empty.
pub fn write_atomic_unsynced(path: &Path, bytes: &[u8], mode: u32) -> Result<(), IoError> {
    let mut set = OutputSet::scratch();
    set.stage(path, bytes, mode)?;
    set.commit().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// One base64 rule with sevm: whitespace anywhere is skipped (wrapped
    /// files, CRLF), anything else outside the alphabet is refused.
    #[test]
    fn unsynced_writes_replace_the_file_whole_with_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("m.bin");
        fs::write(&out, b"old contents, longer").unwrap();
        write_atomic_unsynced(&out, &[5u8; 48], 0o644).unwrap();
        assert_eq!(fs::read(&out).unwrap(), [5u8; 48]);
        let mode = fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn base64_whitespace_rule_is_sevms() {
        assert_eq!(b64_decode("x", "  aGVsbG8=\n").unwrap(), b"hello");
        assert_eq!(b64_decode("x", "aGVs\r\nbG8=").unwrap(), b"hello");
        let e = b64_decode("the value", "aGVs*bG8=").unwrap_err();
        assert_eq!(e.to_string(), "the value is not valid base64");
        assert_eq!(b64_encode(b"hello"), "aGVsbG8=");
    }

    #[test]
    fn path_or_b64_reads_raw_files_base64_files_and_literals() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("tik.bin");
        fs::write(&raw, [7u8; 16]).unwrap();
        let b64 = dir.path().join("tik.b64");
        fs::write(&b64, format!("{}\n", b64_encode(&[9u8; 16]))).unwrap();
        assert_eq!(
            path_or_b64("--tik", raw.to_str().unwrap(), Some(16)).unwrap(),
            [7u8; 16]
        );
        assert_eq!(
            path_or_b64("--tik", b64.to_str().unwrap(), Some(16)).unwrap(),
            [9u8; 16]
        );
        assert_eq!(
            path_or_b64("--tik", &b64_encode(&[1u8; 16]), Some(16)).unwrap(),
            [1u8; 16]
        );
        // No expected length: a file is taken as it is.
        assert_eq!(
            path_or_b64("--x", b64.to_str().unwrap(), None)
                .unwrap()
                .len(),
            25
        );
    }

    #[test]
    fn path_or_b64_names_the_argument_on_errors() {
        let e = path_or_b64("--tik", "not base64!", Some(16)).unwrap_err();
        assert!(e.to_string().starts_with("--tik: \"not base64!\""), "{e}");
        let e = path_or_b64("--tik", &b64_encode(&[1u8; 15]), Some(16)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--tik: the base64 value is 15 bytes, expected 16"
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("short");
        fs::write(&f, [0u8; 3]).unwrap();
        let e = path_or_b64("--tek", f.to_str().unwrap(), Some(16)).unwrap_err();
        assert!(e.to_string().contains("is 3 bytes, expected 16"), "{e}");
    }

    #[test]
    fn output_set_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.bin");
        let missing = dir.path().join("no-such-dir").join("b.bin");
        let mut set = OutputSet::new();
        set.stage(&a, b"aaa", 0o600).unwrap();
        assert!(set.stage(&missing, b"bbb", 0o600).is_err());
        drop(set);
        assert!(!a.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "temp left");

        let mut set = OutputSet::new();
        set.stage(&a, b"aaa", 0o600).unwrap();
        assert!(!a.exists(), "visible before commit");
        set.commit().unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"aaa");
        let mode = fs::metadata(&a).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        write_atomic(&a, b"new", 0o644).unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"new");
    }

    #[test]
    fn read_file_max_refuses_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("big");
        fs::write(&f, [0u8; 10]).unwrap();
        let e = read_file_max(&f, 9).unwrap_err();
        assert!(matches!(
            e,
            IoError::TooLarge {
                len: 10,
                max: 9,
                ..
            }
        ));
        let e = read_file(&dir.path().join("absent")).unwrap_err();
        assert!(e.to_string().contains("absent"));
    }
}
