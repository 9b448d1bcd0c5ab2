//! The KDS cache directory (docs/guide/sev-owner.md#kds-cache): one file
//! per object, named from the request, so that an object fetched once is
//! never asked for again (AMD's KDS throttles).

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{ErrorKind, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sev_proto::snp::chain::VekKind;
use sev_proto::snp::kds::{hwid_hex, KdsRequest};

use crate::io::IoError;

/// The file name of `request`'s object in a cache directory:
///
/// | Object | File |
/// |---|---|
/// | legacy CEK | `<chip id>.cert` (as `sevctl` and the CEK directories name it) |
/// | VCEK | `vcek-<Product>-<hwID>-[fmc<n>-]bl<n>-tee<n>-snp<n>-ucode<n>.der` |
/// | cert_chain | `vcek-<Product>-cert_chain.pem` (`vlek-` for the ASVK's) |
/// | CRL | `vcek-<Product>.crl` (`vlek-` for the VLEK service's) |
pub fn file_name(request: &KdsRequest) -> String {
    let service = |kind: &VekKind| match kind {
        VekKind::Vcek => "vcek",
        VekKind::Vlek => "vlek",
    };
    match request {
        KdsRequest::Cek { chip_id } => format!("{}.cert", hex::encode(chip_id)),
        KdsRequest::Vcek {
            product,
            chip_id,
            tcb,
        } => {
            let fmc = if product.has_fmc() {
                format!("fmc{}-", tcb.fmc)
            } else {
                String::new()
            };
            format!(
                "vcek-{product}-{}-{fmc}bl{}-tee{}-snp{}-ucode{}.der",
                hwid_hex(*product, chip_id),
                tcb.bootloader,
                tcb.tee,
                tcb.snp,
                tcb.microcode
            )
        }
        KdsRequest::CertChain { product, kind } => {
            format!("{}-{product}-cert_chain.pem", service(kind))
        }
        KdsRequest::Crl { product, kind } => format!("{}-{product}.crl", service(kind)),
    }
}

/// The subdirectory of a cache directory that holds the objects of the
/// service at `base`: its host (and port), every character but ASCII
/// letters, digits, `.` and `-` replaced by `_` (`kdsintf.amd.com`,
/// `127.0.0.1_8080`). Objects of different services never mix: an
/// emulated platform's `cert_chain` is not AMD's.
pub fn service_dir(base: &str) -> String {
    let lower = base.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .unwrap_or(&lower);
    let name: String = rest
        .trim_end_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    match name.trim_matches('.') {
        "" => "_".to_string(),
        n => n.to_string(),
    }
}

/// A cache directory of KDS objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache in `dir` (created on the first [`Cache::store`]).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `request`'s object is (or would be) cached.
    pub fn path(&self, request: &KdsRequest) -> PathBuf {
        self.dir.join(file_name(request))
    }

    /// The cached object of `request`, if there is one: at most `max`
    /// bytes, read without following a symbolic link.
    pub fn read(&self, request: &KdsRequest, max: u64) -> Result<Option<Vec<u8>>, IoError> {
        let path = self.path(request);
        let read_err = |source| IoError::Read {
            path: path.clone(),
            source,
        };
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read_err(e)),
        };
        read_capped(file, &path, max).map(Some)
    }

    /// Writes `bytes` as `request`'s object: the directory is created 0700
    /// when missing; the file is written to a temporary created exclusively
    /// with mode 0600 (never following a link), synced, and renamed into
    /// place, so that a reader sees the old object or the new one, whole.
    pub fn store(&self, request: &KdsRequest, bytes: &[u8]) -> Result<PathBuf, IoError> {
        let path = self.path(request);
        store_file(&self.dir, &path, bytes)?;
        Ok(path)
    }
}

fn read_capped(file: File, path: &Path, max: u64) -> Result<Vec<u8>, IoError> {
    let read_err = |source| IoError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(read_err(std::io::Error::new(
            ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    let mut out = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(read_err)?;
    if out.len() as u64 > max {
        return Err(IoError::TooLarge {
            path: path.to_path_buf(),
            len: meta.len().max(out.len() as u64),
            max,
        });
    }
    Ok(out)
}

/// Writes `bytes` to `path` in `dir` as [`Cache::store`] describes.
fn store_file(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let write_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| IoError::Write { path: p, source }
    };
    if !dir.is_dir() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(write_err(dir))?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.set_permissions(Permissions::from_mode(0o600))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(write_err(path))
}
