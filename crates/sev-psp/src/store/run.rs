//! The runtime area `run/` of a platform directory: the files that hold the
//! platform-wide volatile state shared by every process using the platform
//! (`docs/architecture-platform-state.md`).
//!
//! * `run/platform`: one record, rewritten in place ([`InPlaceRecord`]; no
//!   fsync: the state is volatile, as a PSP's RAM).
//! * `run/guest-<handle>`: one record per live guest, created exclusively
//!   and kept **locked** (`flock`, exclusive) by the process that owns the
//!   guest for as long as the guest exists in it. The owner rewrites it in
//!   place; a record nobody holds belongs to a process that is gone.
//!
//! * `run/epoch`: an 8-byte counter every process maps shared
//!   ([`SharedCounter`]): SHUTDOWN increments it, so a guest command learns
//!   that its guest still exists without a system call.
//!
//! Every read and write happens under the state directory's lock
//! ([`super::StateDir::lock`]), so no reader sees a record half written by
//! another process. The area is created on demand (mode 0700, files 0600),
//! must be private like the directory itself, and no symbolic link is
//! followed: neither `run` nor a file inside it may be one.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use zeroize::Zeroizing;

use super::{check_name, check_private, effective_uid, sealed, StateDir, StoreError};
use super::{DIR_MODE, FILE_MODE, MAX_FILE_LEN};

/// The runtime area's directory name inside the state directory.
pub const RUN_DIR: &str = "run";

/// The runtime area of a state directory (created on demand).
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
}

/// A record file this process holds locked: the guest it describes is
/// alive as long as this value exists. Dropping it releases the lock (as
/// does the death of the process).
#[derive(Debug)]
pub struct HeldRecord {
    file: File,
    path: PathBuf,
}

/// A record rewritten in place under the directory lock (no rename: on
/// ext4 replacing a file by rename flushes it, milliseconds per command).
#[derive(Debug)]
pub struct InPlaceRecord {
    file: File,
    path: PathBuf,
}

impl InPlaceRecord {
    /// The sealed payload; `None` while the record was never written.
    ///
    /// Read at offset 0 (`pread`): the file stays open for the next read.
    pub fn read(&self) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let len = self
            .file
            .metadata()
            .map_err(StoreError::io("inspect", &self.path))?
            .len();
        if len == 0 {
            return Ok(None);
        }
        let max = MAX_FILE_LEN as u64;
        if len > max {
            return Err(StoreError::TooLarge {
                path: self.path.clone(),
                len,
                max,
            });
        }
        let mut bytes = Zeroizing::new(vec![0; len as usize]);
        self.file
            .read_exact_at(&mut bytes, 0)
            .map_err(StoreError::io("read", &self.path))?;
        match sealed::open_sealed(&bytes) {
            Ok(payload) => Ok(Some(Zeroizing::new(payload.to_vec()))),
            Err(source) => Err(StoreError::Damaged {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Replaces the payload.
    pub fn write(&self, payload: &[u8]) -> Result<(), StoreError> {
        rewrite_in_place(&self.file, &self.path, payload)
    }
}

/// Whether another process holds a record ([`RunDir::probe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Held: the process that owns it is alive.
    Held,
    /// Not held by anyone: its owner is gone.
    Abandoned,
    /// The file does not exist (any more).
    Missing,
}

/// A `u64` in a file of the runtime area, mapped shared: every process
/// that maps it sees the others' changes at once, without a system call.
#[derive(Debug)]
pub struct SharedCounter {
    ptr: NonNull<AtomicU64>,
    path: PathBuf,
    _file: File,
}

// SAFETY: the mapping is only accessed through `&AtomicU64` (Sync), and it
// stays valid until `drop`, whichever thread drops it.
unsafe impl Send for SharedCounter {}
// SAFETY: as above: shared access is atomic.
unsafe impl Sync for SharedCounter {}

impl SharedCounter {
    fn atomic(&self) -> &AtomicU64 {
        // SAFETY: `ptr` is a page-aligned (so 8-byte aligned) shared mapping
        // of the counter's 8 bytes, readable and writable, valid until
        // `drop` unmaps it; every bit pattern is a valid `AtomicU64`, and
        // every process accesses it atomically.
        unsafe { self.ptr.as_ref() }
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.atomic().load(Ordering::Acquire)
    }

    /// Increments the counter; returns the new value.
    pub fn increment(&self) -> u64 {
        self.atomic().fetch_add(1, Ordering::AcqRel).wrapping_add(1)
    }

    /// The counter's file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SharedCounter {
    fn drop(&mut self) {
        // SAFETY: `ptr` was returned by mmap for COUNTER_LEN bytes and is
        // unmapped once, here; no reference to it outlives `self`.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), COUNTER_LEN);
        }
    }
}

const COUNTER_LEN: usize = std::mem::size_of::<u64>();

fn no_follow(options: &mut OpenOptions) -> &mut OpenOptions {
    options.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
}

impl StateDir {
    /// The runtime area, created (0700) if missing. The caller holds the
    /// directory's lock. A `run` that is not a directory (a symbolic link
    /// included) or not private is refused.
    pub fn run_dir(&self) -> Result<RunDir, StoreError> {
        let path = self.path.join(RUN_DIR);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => check_private(&path, &meta, effective_uid())?,
            Ok(_) => return Err(StoreError::NotADirectory { path }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Not recursive: the state directory exists, and an existing
                // `run` (made by another process meanwhile) is an error here
                // rather than something followed.
                match DirBuilder::new().mode(DIR_MODE).create(&path) {
                    Ok(()) => fs::set_permissions(&path, Permissions::from_mode(DIR_MODE))
                        .map_err(StoreError::io("set permissions of", &path))?,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        return self.run_dir();
                    }
                    Err(e) => return Err(StoreError::io("create directory", &path)(e)),
                }
            }
            Err(e) => return Err(StoreError::io("inspect", &path)(e)),
        }
        Ok(RunDir { path })
    }
}

impl RunDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file_path(&self, name: &str) -> Result<PathBuf, StoreError> {
        check_name(name)?;
        Ok(self.path.join(name))
    }

    /// The names of the files in the area that start with `prefix`
    /// (temporary files, which start with `.`, are never listed).
    pub fn names(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.path).map_err(StoreError::io("list", &self.path))? {
            let entry = entry.map_err(StoreError::io("list", &self.path))?;
            if let Some(name) = entry.file_name().to_str() {
                if name.starts_with(prefix) && check_name(name).is_ok() {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Reads sealed record `name`; `None` if it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let path = self.file_path(name)?;
        let file = match no_follow(OpenOptions::new().read(true)).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("open", &path)(e)),
        };
        read_sealed_file(&file, path).map(Some)
    }

    /// Opens record `name` for reading and rewriting in place, creating it
    /// empty (0600) if missing. The caller holds the directory lock.
    pub fn open_in_place(&self, name: &str) -> Result<InPlaceRecord, StoreError> {
        let path = self.file_path(name)?;
        let (file, _) = open_or_create(&path)?;
        Ok(InPlaceRecord { file, path })
    }

    /// Creates record `name` exclusively (0600), locks it and writes
    /// `payload` into it. `Ok(None)` if a file of that name exists.
    pub fn create_held(
        &self,
        name: &str,
        payload: &[u8],
    ) -> Result<Option<HeldRecord>, StoreError> {
        let path = self.file_path(name)?;
        let bytes = seal(&path, payload)?;
        let file = match no_follow(OpenOptions::new().read(true).write(true).create_new(true))
            .mode(FILE_MODE)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
            Err(e) => return Err(StoreError::io("create", &path)(e)),
        };
        let record = HeldRecord { file, path };
        let result = (|| {
            // Nobody else has opened the new file: the lock is free.
            record
                .file
                .try_lock()
                .map_err(|e| StoreError::io("lock", &record.path)(io::Error::from(e)))?;
            exact_mode(&record.file, &record.path)?;
            record
                .file
                .write_all_at(&bytes, 0)
                .map_err(StoreError::io("write", &record.path))
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&record.path);
            return Err(e);
        }
        Ok(Some(record))
    }

    /// Whether record `name` is held by a live process. An abandoned record
    /// is left locked by nobody: this call takes and releases the lock.
    pub fn probe(&self, name: &str) -> Result<Holder, StoreError> {
        let path = self.file_path(name)?;
        let file = match no_follow(OpenOptions::new().read(true)).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Holder::Missing),
            Err(e) => return Err(StoreError::io("open", &path)(e)),
        };
        match file.try_lock() {
            Ok(()) => Ok(Holder::Abandoned),
            Err(fs::TryLockError::WouldBlock) => Ok(Holder::Held),
            Err(fs::TryLockError::Error(e)) => Err(StoreError::io("lock", &path)(e)),
        }
    }

    /// Maps counter `name` (an 8-byte file created 0600, zero, on first
    /// use). The caller holds the directory lock.
    pub fn counter(&self, name: &str) -> Result<SharedCounter, StoreError> {
        let path = self.file_path(name)?;
        let (file, created) = open_or_create(&path)?;
        if created {
            file.set_len(COUNTER_LEN as u64)
                .map_err(StoreError::io("create", &path))?;
        }
        let len = file
            .metadata()
            .map_err(StoreError::io("inspect", &path))?
            .len();
        if len != COUNTER_LEN as u64 {
            return Err(StoreError::Damaged {
                path,
                source: sealed::SealError::Truncated {
                    len: usize::try_from(len).unwrap_or(usize::MAX),
                    need: COUNTER_LEN,
                },
            });
        }
        // SAFETY: a new shared mapping of the file's 8 bytes (its length was
        // just checked) at an address the kernel chooses; it aliases no Rust
        // object. Only processes of this user can change the file's length
        // (the directory is private).
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                COUNTER_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(StoreError::io("map", &path)(io::Error::last_os_error()));
        }
        let ptr = NonNull::new(ptr.cast::<AtomicU64>())
            .ok_or_else(|| StoreError::io("map", &path)(io::Error::from(io::ErrorKind::Other)))?;
        Ok(SharedCounter {
            ptr,
            path,
            _file: file,
        })
    }

    /// Removes record `name`; `false` if it did not exist.
    pub fn remove(&self, name: &str) -> Result<bool, StoreError> {
        let path = self.file_path(name)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io("remove", &path)(e)),
        }
    }
}

impl HeldRecord {
    /// Rewrites the record in place with `payload` (the caller holds the
    /// state directory's lock, so no reader sees it half written).
    pub fn rewrite(&self, payload: &[u8]) -> Result<(), StoreError> {
        rewrite_in_place(&self.file, &self.path, payload)
    }

    /// Whether the record is still in the runtime area: another process's
    /// SHUTDOWN removes every guest's record (one `fstat`, no path lookup).
    pub fn is_linked(&self) -> Result<bool, StoreError> {
        self.file
            .metadata()
            .map(|m| m.nlink() > 0)
            .map_err(StoreError::io("inspect", &self.path))
    }

    /// The record's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Gives the record the name `name` in `dir`, the directory it is in,
    /// unless a file of that name exists (`Ok(false)`); the caller holds the
    /// state directory's lock. Keeps the file and its lock: how a record
    /// is reused instead of being unlinked and another created (a rename
    /// costs about half of that on ext4). Nothing is followed or replaced:
    /// the rename is `RENAME_NOREPLACE`, and the file under the new name
    /// must be the one this record holds.
    pub fn rename(&mut self, dir: &RunDir, name: &str) -> Result<bool, StoreError> {
        let to = dir.file_path(name)?;
        let c_path = |p: &Path| {
            std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
                .map_err(|_| StoreError::InvalidName { name: name.into() })
        };
        let (from_c, to_c) = (c_path(&self.path)?, c_path(&to)?);
        // SAFETY: both paths are valid NUL-terminated strings that outlive
        // the call; renameat2 reads them and touches no other memory of ours.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from_c.as_ptr(),
                libc::AT_FDCWD,
                to_c.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::AlreadyExists {
                return Ok(false);
            }
            return Err(StoreError::io("rename", &self.path)(e));
        }
        self.path = to;
        let (held, named) = (
            self.file
                .metadata()
                .map_err(StoreError::io("inspect", &self.path))?,
            fs::symlink_metadata(&self.path).map_err(StoreError::io("inspect", &self.path))?,
        );
        if (held.dev(), held.ino()) != (named.dev(), named.ino()) {
            return Err(StoreError::io("rename", &self.path)(io::Error::other(
                "another file took the record's place",
            )));
        }
        Ok(true)
    }

    /// Overwrites the record's bytes with zeros (a retired record keeps no
    /// key; the caller holds the state directory's lock).
    pub fn wipe(&self) -> Result<(), StoreError> {
        let len = self
            .file
            .metadata()
            .map_err(StoreError::io("inspect", &self.path))?
            .len();
        let zeros = vec![0u8; usize::try_from(len).unwrap_or(0).min(MAX_FILE_LEN)];
        self.file
            .write_all_at(&zeros, 0)
            .map_err(StoreError::io("write", &self.path))
    }
}

/// Overwrites `file` with `payload` sealed, from offset 0. The file is
/// truncated only when the new contents are shorter: an `ftruncate` costs a
/// journal update on ext4 even when the length does not change.
fn rewrite_in_place(file: &File, path: &Path, payload: &[u8]) -> Result<(), StoreError> {
    let bytes = seal(path, payload)?;
    let new_len = bytes.len() as u64;
    let old_len = file
        .metadata()
        .map_err(StoreError::io("inspect", path))?
        .len();
    file.write_all_at(&bytes, 0)
        .and_then(|()| {
            if old_len > new_len {
                file.set_len(new_len)
            } else {
                Ok(())
            }
        })
        .map_err(StoreError::io("write", path))
}

fn seal(path: &Path, payload: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    sealed::seal(payload).map_err(|_| StoreError::TooLarge {
        path: path.to_path_buf(),
        len: payload.len() as u64,
        max: sealed::MAX_PAYLOAD_LEN as u64,
    })
}

fn read_sealed_file(file: &File, path: PathBuf) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    let max = MAX_FILE_LEN as u64;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(StoreError::io("read", &path))?;
    if bytes.len() as u64 > max {
        return Err(StoreError::TooLarge {
            path,
            len: max + 1,
            max,
        });
    }
    match sealed::open_sealed(&bytes) {
        Ok(payload) => Ok(Zeroizing::new(payload.to_vec())),
        Err(source) => Err(StoreError::Damaged { path, source }),
    }
}

/// Makes a file this process just created exactly [`FILE_MODE`]. Created
/// with that mode, it can only lack bits the umask removed: the `fchmod`
/// (a journalled metadata change on ext4, on every LAUNCH_START's record)
/// is issued only then.
fn exact_mode(file: &File, path: &Path) -> Result<(), StoreError> {
    let mode = file
        .metadata()
        .map_err(StoreError::io("inspect", path))?
        .permissions()
        .mode()
        & 0o7777;
    if mode == FILE_MODE {
        return Ok(());
    }
    file.set_permissions(Permissions::from_mode(FILE_MODE))
        .map_err(StoreError::io("set permissions of", path))
}

/// Opens `path` for reading and writing without following a link, creating
/// it empty with mode 0600 when it does not exist; `true` when it was
/// created. The caller holds the directory lock.
fn open_or_create(path: &Path) -> Result<(File, bool), StoreError> {
    match no_follow(OpenOptions::new().read(true).write(true).create_new(true))
        .mode(FILE_MODE)
        .open(path)
    {
        Ok(f) => {
            exact_mode(&f, path)?;
            Ok((f, true))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let f = no_follow(OpenOptions::new().read(true).write(true))
                .open(path)
                .map_err(StoreError::io("open", path))?;
            Ok((f, false))
        }
        Err(e) => Err(StoreError::io("create", path)(e)),
    }
}
