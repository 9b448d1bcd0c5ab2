//! The host's view of guest memory: [`MemoryView`], the pass-through
//! [`PlainView`], and [`SevView`] over the SEV platform's host view.

use std::error::Error as StdError;
use std::sync::Arc;

use sev_firmware::{HostView, ViewError};

use crate::{Gpa, GuestRam, OutOfRange};

/// Why a [`MemoryView`] access failed.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The range is not backed by guest memory.
    #[error(transparent)]
    OutOfRange(#[from] OutOfRange),
    /// The view's backend (e.g. the SEV memory-encryption model) refused.
    #[error("guest memory access at {gpa:#x} refused by the memory view")]
    Backend {
        /// First byte of the access.
        gpa: u64,
        /// What the backend reported.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
}

/// The host's view of guest memory. All VMM accesses to guest memory after
/// launch (devices, debug, snapshot, migration) go through this trait; for an
/// SEV guest the implementation returns ciphertext for private pages.
pub trait MemoryView: Send + Sync {
    /// Reads `buf.len()` bytes at `gpa` as the host sees them.
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), AccessError>;
    /// Writes `data` at `gpa` as the host would.
    fn write(&self, gpa: Gpa, data: &[u8]) -> Result<(), AccessError>;
}

/// The pass-through host view of a guest without memory encryption.
#[derive(Debug, Clone)]
pub struct PlainView {
    ram: Arc<GuestRam>,
}

impl PlainView {
    /// A view that reads and writes `ram` unchanged.
    pub fn new(ram: Arc<GuestRam>) -> Self {
        PlainView { ram }
    }
}

impl MemoryView for PlainView {
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), AccessError> {
        Ok(self.ram.read_plain(gpa, buf)?)
    }

    fn write(&self, gpa: Gpa, data: &[u8]) -> Result<(), AccessError> {
        Ok(self.ram.write_plain(gpa, data)?)
    }
}

/// The SEV platform's host view of a guest (ciphertext for its private
/// pages) as a [`MemoryView`].
#[derive(Debug, Clone)]
pub struct SevView(Arc<dyn HostView>);

impl SevView {
    /// Adapts `view`.
    pub fn new(view: Arc<dyn HostView>) -> Self {
        SevView(view)
    }
}

fn access_error(e: ViewError) -> AccessError {
    match e {
        ViewError::OutOfRange { gpa, len } => AccessError::OutOfRange(OutOfRange { gpa, len }),
        ViewError::Refused { gpa, source } => AccessError::Backend { gpa, source },
    }
}

impl MemoryView for SevView {
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), AccessError> {
        self.0.read(gpa.raw(), buf).map_err(access_error)
    }

    fn write(&self, gpa: Gpa, data: &[u8]) -> Result<(), AccessError> {
        self.0.write(gpa.raw(), data).map_err(access_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_view_keeps_out_of_range_errors_apart() {
        let e = access_error(ViewError::OutOfRange { gpa: 5, len: 6 });
        assert!(matches!(
            e,
            AccessError::OutOfRange(OutOfRange { gpa: 5, len: 6 })
        ));
    }
}
