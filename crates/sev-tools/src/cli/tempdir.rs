//! A private temporary directory for one command's work files.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// A private (0700) temporary directory under `$XDG_RUNTIME_DIR` (or the
/// system temporary directory), removed on drop.
pub fn temp_dir() -> Result<tempfile::TempDir> {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    tempfile::Builder::new()
        .prefix("sev-owner-")
        .tempdir_in(&base)
        .with_context(|| format!("cannot create a temporary directory in {}", base.display()))
}
