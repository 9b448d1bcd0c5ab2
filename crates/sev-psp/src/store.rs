//! The persistent platform state directory (docs/architecture.md#the-emulated-platform).
//!
//! One directory is one emulated host. It is created `0700`, and an existing
//! one is used only if it is private: a directory owned by another user, or
//! one that its group or other users may write to, is refused
//! ([`StoreError::Insecure`]), since whoever can write to it can replace the
//! state files that hold the platform's private keys. Every state file
//! is written atomically (a `0600` temp file in the same directory, written,
//! fsynced, renamed over the target, then the directory fsynced), so a reader
//! sees the old or the new file, never a torn one. Read-modify-write of
//! persistent state is serialised between threads and processes by an
//! exclusive lock on the directory's `.lock` file ([`StateDir::lock`],
//! [`StateDir::locked`]), taken with a bound ([`LOCK_TIMEOUT`]): a holder
//! that never lets go makes the waiter fail with [`StoreError::LockTimeout`]
//! instead of hanging.
//!
//! The platform-wide volatile state (what a PSP keeps in its RAM) lives in
//! the directory's runtime area `run/` ([`run`]), read and written under the
//! same lock.
//!
//! State files are [`sealed`] containers; a damaged one is reported as
//! [`StoreError::Damaged`] (the firmware answers SECURE_DATA_INVALID) and is
//! never replaced silently. Their payloads use the [`record`] codec.

pub mod record;
pub mod run;
pub mod sealed;

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

pub use record::{PersistentIdentity, RecordError, RsaKeyBytes};
pub use sealed::SealError;

/// Largest state file read (sealed payload limit plus the container).
pub const MAX_FILE_LEN: usize = sealed::MAX_PAYLOAD_LEN + sealed::OVERHEAD;
/// Longest state file name.
pub const MAX_NAME_LEN: usize = 64;

/// Longest wait for the directory's lock ([`StateDir::lock`]) before
/// [`StoreError::LockTimeout`].
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

const LOCK_FILE: &str = ".lock";
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// Errors of the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory does not exist and creating it was not asked for.
    #[error("platform state directory {path} does not exist")]
    Missing {
        /// The directory.
        path: PathBuf,
    },
    /// The path exists but is not a directory.
    #[error("{path} is not a directory")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// A state file name is empty, too long, or has characters other than
    /// ASCII letters, digits, `.`, `_`, `-` (or starts with something other
    /// than a letter or digit).
    #[error("invalid state file name {name:?}")]
    InvalidName {
        /// The refused name.
        name: String,
    },
    /// A file-system operation failed.
    #[error("cannot {op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// To which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A state file (or the data to write) exceeds the size limit.
    #[error("state file {path} is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// An existing directory is not private to this user: owned by someone
    /// else, or writable by its group or by others.
    #[error(
        "platform state directory {} is not private: {problem}; it holds the platform's \
         private keys, so it is not used: {fix}",
        path.display()
    )]
    Insecure {
        /// The directory.
        path: PathBuf,
        /// What is wrong (owner or mode).
        problem: String,
        /// How to fix it.
        fix: String,
    },
    /// The directory's lock stayed held by another thread or process for
    /// longer than the bound.
    #[error("the lock of platform state directory {} stayed held for {waited:?} (another \
             process is stuck holding it?)", path.display())]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long this process waited.
        waited: Duration,
    },
    /// A sealed state file is damaged (or of an unsupported format version).
    #[error("platform state file {path} is damaged")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// How.
        #[source]
        source: SealError,
    },
}

impl StoreError {
    fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io { op, path, source }
    }

    /// Whether this error means a state file is damaged (the firmware's
    /// SECURE_DATA_INVALID).
    pub fn is_damaged(&self) -> bool {
        matches!(self, Self::Damaged { .. })
    }
}

/// A platform state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

/// Holds the directory's exclusive lock until dropped.
#[derive(Debug)]
pub struct StateLock {
    file: Arc<File>,
}

/// The directory's lock file kept open, to take the lock repeatedly without
/// opening it each time ([`StateDir::lock_file`]). Clones share one open
/// file: they do not exclude each other (the lock is the open file's), so
/// one is used by one thread at a time (e.g. behind a mutex).
#[derive(Debug, Clone)]
pub struct LockFile {
    file: Arc<File>,
    path: PathBuf,
}

impl LockFile {
    /// Takes the lock, waiting for other holders at most [`LOCK_TIMEOUT`].
    pub fn lock(&self) -> Result<StateLock, StoreError> {
        self.lock_within(LOCK_TIMEOUT)
    }

    /// [`LockFile::lock`] with another bound.
    pub fn lock_within(&self, timeout: Duration) -> Result<StateLock, StoreError> {
        let start = Instant::now();
        let mut pause = Duration::from_micros(200);
        loop {
            match self.file.try_lock() {
                Ok(()) => {
                    return Ok(StateLock {
                        file: Arc::clone(&self.file),
                    })
                }
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(StoreError::io("lock", &self.path)(e))
                }
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(StoreError::LockTimeout {
                    path: self.path.clone(),
                    waited,
                });
            }
            std::thread::sleep(pause.min(timeout - waited));
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // Closing the descriptor releases the lock too; unlocking first just
        // makes the release explicit. Nothing useful can be done on failure.
        let _ = self.file.unlock();
    }
}

/// File contents that may hold private keys: zeroed on drop.
type SecretBytes = Zeroizing<Vec<u8>>;

/// Distinguishes temp files of concurrent writers in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn check_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidName {
            name: name.chars().take(MAX_NAME_LEN).collect(),
        })
    }
}

/// The effective user id of this process.
fn effective_uid() -> u32 {
    // SAFETY: geteuid takes no arguments, touches no memory of ours and
    // cannot fail (POSIX).
    unsafe { libc::geteuid() }
}

/// Refuses an existing state directory that is not private to user `uid`:
/// owned by another user, or writable by its group or by others (whoever can
/// write to it can replace the state files). Read and execute bits are left
/// alone: the state files themselves are 0600.
fn check_private(path: &Path, meta: &fs::Metadata, uid: u32) -> Result<(), StoreError> {
    use std::os::unix::fs::MetadataExt;
    let insecure = |problem: String, fix: String| StoreError::Insecure {
        path: path.to_path_buf(),
        problem,
        fix,
    };
    if meta.uid() != uid {
        return Err(insecure(
            format!(
                "it is owned by uid {}, not by this user (uid {uid})",
                meta.uid()
            ),
            format!(
                "use a directory of your own, or make it yours with `chown {uid} {}` and \
                 `chmod 700 {}`",
                path.display(),
                path.display()
            ),
        ));
    }
    let mode = meta.mode() & 0o7777;
    let who = if mode & 0o002 != 0 {
        "other users"
    } else if mode & 0o020 != 0 {
        "its group"
    } else {
        return Ok(());
    };
    Err(insecure(
        format!("mode {mode:o} makes it writable by {who}"),
        format!("make it private with `chmod 700 {}`", path.display()),
    ))
}

impl StateDir {
    /// Opens the directory at `path`; with `create`, creates it (and missing
    /// parents) with mode 0700 if it does not exist. An existing directory
    /// must be owned by this process's effective user and not be writable by
    /// its group or others ([`StoreError::Insecure`]).
    pub fn open(path: impl AsRef<Path>, create: bool) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => check_private(&path, &meta, effective_uid())?,
            Ok(_) => return Err(StoreError::NotADirectory { path }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !create {
                    return Err(StoreError::Missing { path });
                }
                DirBuilder::new()
                    .recursive(true)
                    .mode(DIR_MODE)
                    .create(&path)
                    .map_err(StoreError::io("create directory", &path))?;
                // The mode passed to mkdir is filtered by the umask; make it
                // exactly 0700.
                fs::set_permissions(&path, Permissions::from_mode(DIR_MODE))
                    .map_err(StoreError::io("set permissions of", &path))?;
            }
            Err(e) => return Err(StoreError::io("inspect", &path)(e)),
        }
        Ok(Self { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the directory's exclusive lock, waiting for other holders
    /// (threads or processes) at most [`LOCK_TIMEOUT`]. Each call opens the
    /// lock file anew, so two threads of one process exclude each other too.
    pub fn lock(&self) -> Result<StateLock, StoreError> {
        self.lock_within(LOCK_TIMEOUT)
    }

    /// [`StateDir::lock`] with another bound.
    pub fn lock_within(&self, timeout: Duration) -> Result<StateLock, StoreError> {
        self.lock_file()?.lock_within(timeout)
    }

    /// Opens the directory's lock file (creating it 0600) for repeated
    /// [`LockFile::lock`]s.
    pub fn lock_file(&self) -> Result<LockFile, StoreError> {
        let path = self.path.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(StoreError::io("open lock file", &path))?;
        Ok(LockFile {
            file: Arc::new(file),
            path,
        })
    }

    /// Runs `f` while holding the directory's lock: the way to do a
    /// read-modify-write of persistent state.
    pub fn locked<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Self) -> Result<T, E>,
    ) -> Result<T, E> {
        let _guard = self.lock()?;
        f(self)
    }

    fn file_path(&self, name: &str) -> Result<PathBuf, StoreError> {
        check_name(name)?;
        Ok(self.path.join(name))
    }

    fn read_zeroizing(&self, name: &str) -> Result<Option<(PathBuf, SecretBytes)>, StoreError> {
        let path = self.file_path(name)?;
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("open", &path)(e)),
        };
        let max = MAX_FILE_LEN as u64;
        let mut bytes = Zeroizing::new(Vec::new());
        // Read one byte past the limit to notice an oversized file without
        // trusting its metadata.
        file.take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(StoreError::io("read", &path))?;
        if bytes.len() as u64 > max {
            let len = fs::metadata(&path).map_or(max + 1, |m| m.len());
            return Err(StoreError::TooLarge { path, len, max });
        }
        Ok(Some((path, bytes)))
    }

    /// Reads state file `name`; `None` if it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .read_zeroizing(name)?
            .map(|(_, mut bytes)| std::mem::take(&mut *bytes)))
    }

    /// Replaces state file `name` with `bytes` atomically: a 0600 temp file
    /// in the directory is written and fsynced, renamed over `name`, and the
    /// directory is fsynced.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let target = self.file_path(name)?;
        if bytes.len() > MAX_FILE_LEN {
            return Err(StoreError::TooLarge {
                path: target,
                len: bytes.len() as u64,
                max: MAX_FILE_LEN as u64,
            });
        }
        let (temp_path, mut temp) = self.create_temp(name)?;
        let result = (|| {
            // create_new's mode is filtered by the umask; make it exactly 0600.
            temp.set_permissions(Permissions::from_mode(FILE_MODE))
                .map_err(StoreError::io("set permissions of", &temp_path))?;
            temp.write_all(bytes)
                .map_err(StoreError::io("write", &temp_path))?;
            temp.sync_all()
                .map_err(StoreError::io("fsync", &temp_path))?;
            fs::rename(&temp_path, &target).map_err(StoreError::io("rename into place", &target))
        })();
        if result.is_err() {
            // Best effort: the temp file is useless now.
            let _ = fs::remove_file(&temp_path);
        }
        result?;
        self.sync_dir()
    }

    fn create_temp(&self, name: &str) -> Result<(PathBuf, File), StoreError> {
        const ATTEMPTS: usize = 64;
        let pid = std::process::id();
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = self.path.join(format!(".{name}.tmp-{pid}-{n}"));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&path)
            {
                Ok(file) => return Ok((path, file)),
                // A stale temp file left by a crashed process with our pid:
                // try the next name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some((path, e)),
                Err(e) => return Err(StoreError::io("create temp file", &path)(e)),
            }
        }
        let (path, e) = last.unwrap_or_else(|| {
            (
                self.path.clone(),
                io::Error::from(io::ErrorKind::AlreadyExists),
            )
        });
        Err(StoreError::io("create temp file", &path)(e))
    }

    fn sync_dir(&self) -> Result<(), StoreError> {
        File::open(&self.path)
            .and_then(|dir| dir.sync_all())
            .map_err(StoreError::io("fsync directory", &self.path))
    }

    /// Removes state file `name` (and fsyncs the directory); `false` if it
    /// did not exist.
    pub fn remove(&self, name: &str) -> Result<bool, StoreError> {
        let path = self.file_path(name)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(StoreError::io("remove", &path)(e)),
        }
        self.sync_dir()?;
        Ok(true)
    }

    /// Reads sealed state file `name` and returns its payload (zeroed on
    /// drop); `None` if it does not exist, [`StoreError::Damaged`] if it is
    /// damaged.
    pub fn read_sealed(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let Some((path, bytes)) = self.read_zeroizing(name)? else {
            return Ok(None);
        };
        match sealed::open_sealed(&bytes) {
            Ok(payload) => Ok(Some(Zeroizing::new(payload.to_vec()))),
            Err(source) => Err(StoreError::Damaged { path, source }),
        }
    }

    /// Seals `payload` and writes it atomically as state file `name`.
    pub fn write_sealed(&self, name: &str, payload: &[u8]) -> Result<(), StoreError> {
        let sealed = sealed::seal(payload).map_err(|_| StoreError::TooLarge {
            path: self.path.join(name),
            len: payload.len() as u64,
            max: sealed::MAX_PAYLOAD_LEN as u64,
        })?;
        self.write_atomic(name, &sealed)
    }
}

#[cfg(test)]
mod tests;
