//! Test-only helpers shared by every sevm crate.
//!
//! A test that needs something this machine may lack (the `../shared/sev-testdata` fixtures, a peer
//! tool such as `sevctl`, `/dev/kvm`) asks here. When it is missing the test prints
//! `SKIPPED: <test>: <what>` and returns early — unless `SEVM_REQUIRE_ALL=1` is set (CI sets it), in
//! which case the test fails, so CI proves that every such test really ran. `/dev/sev` is the one
//! exception: no CI machine has SEV hardware, so [`sev_device`] never fails.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether CI asked for every skippable test to run (`SEVM_REQUIRE_ALL=1`).
pub fn require_all() -> bool {
    std::env::var("SEVM_REQUIRE_ALL").as_deref() == Ok("1")
}

/// Reports a missing prerequisite: prints `SKIPPED` or, under `SEVM_REQUIRE_ALL=1`, panics.
pub fn skip(test: &str, what: &str) {
    if require_all() {
        panic!("{test}: {what} (SEVM_REQUIRE_ALL=1 makes this a failure)");
    }
    eprintln!("SKIPPED: {test}: {what}");
}

/// The `sev-testdata` directory: `$SEVM_TESTDATA` if set, else `shared/sev-testdata` in the nearest
/// ancestor of this workspace that has one (the repository is checked out beside `shared/`).
pub fn testdata_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SEVM_TESTDATA") {
        return Some(PathBuf::from(dir));
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/sev-testdata"))
        .find(|p| p.is_dir())
}

/// Reads fixture `rel` (relative to `sev-testdata/`), or reports it missing and returns `None`.
pub fn fixture(test: &str, rel: &str) -> Option<Vec<u8>> {
    let Some(dir) = testdata_dir() else {
        skip(
            test,
            &format!("fixture {rel}: no shared/sev-testdata found (set SEVM_TESTDATA)"),
        );
        return None;
    };
    let path = dir.join(rel);
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            skip(
                test,
                &format!("fixture {} not readable: {e}", path.display()),
            );
            None
        }
    }
}

/// The path of fixture `rel` if it exists, or reports it missing.
pub fn fixture_path(test: &str, rel: &str) -> Option<PathBuf> {
    let path = testdata_dir().map(|d| d.join(rel));
    match path {
        Some(p) if p.exists() => Some(p),
        _ => {
            skip(
                test,
                &format!("fixture {rel} not found (set SEVM_TESTDATA)"),
            );
            None
        }
    }
}

/// A peer program on `PATH` that answers `probe_arg` successfully (e.g. `--version`), or reports it
/// missing with an install hint.
pub fn peer_tool(
    test: &str,
    program: &str,
    probe_arg: &str,
    install_hint: &str,
) -> Option<PathBuf> {
    match Command::new(program).arg(probe_arg).output() {
        Ok(o) if o.status.success() => Some(PathBuf::from(program)),
        Ok(o) => {
            skip(
                test,
                &format!(
                    "{program} {probe_arg} failed ({}); {install_hint}",
                    o.status
                ),
            );
            None
        }
        Err(e) => {
            skip(
                test,
                &format!("{program} not runnable ({e}); {install_hint}"),
            );
            None
        }
    }
}

/// Whether `/dev/kvm` can be opened read-write; reports it missing otherwise.
pub fn kvm(test: &str) -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => true,
        Err(e) => {
            skip(test, &format!("/dev/kvm not available ({e})"));
            false
        }
    }
}

/// Whether `/dev/sev` exists. Its absence is never a failure, even under `SEVM_REQUIRE_ALL=1`.
pub fn sev_device(test: &str) -> bool {
    if Path::new("/dev/sev").exists() {
        true
    } else {
        eprintln!("SKIPPED: {test}: /dev/sev not available");
        false
    }
}

/// Copies the files of platform directory `template` into `to`, made with mode 0700 (a platform
/// directory must be private, whatever the umask): a private copy of the same platform. Panics,
/// naming what failed.
pub fn copy_platform(template: &Path, to: &Path) {
    let fail = |what: &str, e: std::io::Error| -> ! {
        panic!(
            "copying platform {} to {}: {what}: {e}",
            template.display(),
            to.display()
        )
    };
    std::fs::create_dir_all(to).unwrap_or_else(|e| fail("creating it", e));
    let private = std::os::unix::fs::PermissionsExt::from_mode(0o700);
    std::fs::set_permissions(to, private).unwrap_or_else(|e| fail("making it private", e));
    let entries = std::fs::read_dir(template).unwrap_or_else(|e| fail("reading the template", e));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| fail("reading the template", e));
        let file = entry.file_type().is_ok_and(|t| t.is_file());
        if file {
            std::fs::copy(entry.path(), to.join(entry.file_name()))
                .unwrap_or_else(|e| fail("copying a file", e));
        }
    }
}
