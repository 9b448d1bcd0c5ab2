//! The platform-wide volatile SNP state: what the PSP keeps in its RAM for
//! SNP, one per platform like the SEV state of `crate::platform`'s shared
//! module, in the runtime area's `snp` record, read and written under the
//! directory lock.
//!
//! Every SNP guest context also has a liveness record, `run/snp-guest-<handle>`,
//! created exclusively and held locked by the process that owns the context
//! for as long as the context exists in it, like an SEV guest's record
//! (docs/architecture-platform-state.md#snp-guest-contexts). A context whose
//! record nobody holds belongs to a process that is gone: [`SnpShared::reap`]
//! destroys it and marks its ASID as needing SNP_DF_FLUSH, as KVM's teardown
//! of the dead process's VM would (SNP_DECOMMISSION).

use std::collections::{BTreeMap, BTreeSet};

use sev_proto::abi::Status;
use zeroize::Zeroizing;

use super::buffers::{HvFixedRange, SnpPlatformState};
use crate::error::{FwError, Op};
use crate::store::record::{decode_fixed, RecordWriter};
use crate::store::run::{HeldRecord, Holder, InPlaceRecord, RunDir};

/// The record's name in the runtime area.
const SNP_RECORD: &str = "snp";

/// The liveness records are `snp-guest-<handle>` (decimal).
const GUEST_PREFIX: &str = "snp-guest-";

/// The tag of the one record a liveness record holds: the handle (LE32).
const LIVENESS_HANDLE: u16 = 0x0201;

/// The name of SNP guest `handle`'s liveness record.
pub(crate) fn guest_record_name(handle: u32) -> String {
    format!("{GUEST_PREFIX}{handle}")
}

mod tag {
    pub const STATE: u16 = 0x0001;
    pub const INIT_FLAGS: u16 = 0x0002;
    pub const MAX_SNP_ASID: u16 = 0x0003;
    pub const RANGES: u16 = 0x0004;
    pub const REPORTED_TCB: u16 = 0x0005;
    pub const MASKS: u16 = 0x0006;
    pub const FLUSH: u16 = 0x0007;
    pub const GUESTS: u16 = 0x0008;
    pub const NEXT_HANDLE: u16 = 0x0009;
}

/// The SNP platform's volatile state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SnpRuntime {
    pub(crate) state: SnpPlatformState,
    /// The flags of the SNP_INIT_EX that initialised SNP (0 while UNINIT).
    pub(crate) init_flags: u32,
    pub(crate) max_snp_asid: u16,
    /// The hypervisor-fixed ranges of that SNP_INIT_EX.
    pub(crate) ranges: Vec<HvFixedRange>,
    /// SNP_CONFIG's REPORTED_TCB (product layout); 0 = the current TCB.
    pub(crate) reported_tcb: u64,
    pub(crate) mask_chip_id: bool,
    pub(crate) mask_chip_key: bool,
    /// ASIDs of decommissioned SNP guests awaiting SNP_DF_FLUSH.
    pub(crate) needs_flush: BTreeSet<u32>,
    /// The live guest contexts of every process: handle → ASID (0 =
    /// inactive).
    pub(crate) guests: BTreeMap<u32, u32>,
    /// The next guest-context handle to try (never reused within a run of
    /// the runtime area, SNP_SHUTDOWN included).
    pub(crate) next_handle: u32,
}

fn word<const N: usize>(v: &[u8]) -> Option<[u8; N]> {
    v.try_into().ok()
}

impl SnpRuntime {
    fn encode(&self) -> Result<Zeroizing<Vec<u8>>, String> {
        let mut w = RecordWriter::new();
        let ranges: Vec<u8> = self
            .ranges
            .iter()
            .flat_map(|r| {
                let mut e = [0u8; 12];
                e[..8].copy_from_slice(&r.base.to_le_bytes());
                e[8..].copy_from_slice(&r.pages.to_le_bytes());
                e
            })
            .collect();
        let flush: Vec<u8> = self
            .needs_flush
            .iter()
            .flat_map(|a| a.to_le_bytes())
            .collect();
        let masks = u8::from(self.mask_chip_id) | u8::from(self.mask_chip_key) << 1;
        let guests: Vec<u8> = self
            .guests
            .iter()
            .flat_map(|(h, a)| {
                let mut e = [0u8; 8];
                e[..4].copy_from_slice(&h.to_le_bytes());
                e[4..].copy_from_slice(&a.to_le_bytes());
                e
            })
            .collect();
        w.put(tag::STATE, &[self.state.to_u8()])
            .and_then(|()| w.put(tag::INIT_FLAGS, &self.init_flags.to_le_bytes()))
            .and_then(|()| w.put(tag::MAX_SNP_ASID, &self.max_snp_asid.to_le_bytes()))
            .and_then(|()| w.put(tag::RANGES, &ranges))
            .and_then(|()| w.put(tag::REPORTED_TCB, &self.reported_tcb.to_le_bytes()))
            .and_then(|()| w.put(tag::MASKS, &[masks]))
            .and_then(|()| w.put(tag::FLUSH, &flush))
            .and_then(|()| w.put(tag::GUESTS, &guests))
            .and_then(|()| w.put(tag::NEXT_HANDLE, &self.next_handle.to_le_bytes()))
            .map_err(|e| e.to_string())?;
        Ok(w.finish())
    }

    fn decode(payload: &[u8]) -> Result<Self, String> {
        let mut r = SnpRuntime::default();
        decode_fixed(payload, 9, |t, v| match (t, v) {
            (tag::STATE, [b]) => SnpPlatformState::from_u8(*b).map(|s| r.state = s).is_some(),
            (tag::INIT_FLAGS, v) => word(v)
                .map(|b| r.init_flags = u32::from_le_bytes(b))
                .is_some(),
            (tag::MAX_SNP_ASID, v) => word(v)
                .map(|b| r.max_snp_asid = u16::from_le_bytes(b))
                .is_some(),
            (tag::RANGES, v) if v.len().is_multiple_of(12) => {
                r.ranges = v
                    .chunks_exact(12)
                    .filter_map(|e| {
                        let base = u64::from_le_bytes(word(e.get(..8)?)?);
                        let pages = u32::from_le_bytes(word(e.get(8..)?)?);
                        Some(HvFixedRange { base, pages })
                    })
                    .collect();
                true
            }
            (tag::REPORTED_TCB, v) => word(v)
                .map(|b| r.reported_tcb = u64::from_le_bytes(b))
                .is_some(),
            (tag::MASKS, [b]) if *b & !3 == 0 => {
                r.mask_chip_id = b & 1 != 0;
                r.mask_chip_key = b & 2 != 0;
                true
            }
            (tag::FLUSH, v) if v.len().is_multiple_of(4) => {
                r.needs_flush = v
                    .chunks_exact(4)
                    .filter_map(|c| word(c).map(u32::from_le_bytes))
                    .collect();
                true
            }
            (tag::GUESTS, v) if v.len().is_multiple_of(8) => {
                r.guests = v
                    .chunks_exact(8)
                    .filter_map(|e| {
                        let h = u32::from_le_bytes(word(e.get(..4)?)?);
                        let a = u32::from_le_bytes(word(e.get(4..)?)?);
                        Some((h, a))
                    })
                    .collect();
                true
            }
            (tag::NEXT_HANDLE, v) => word(v)
                .map(|b| r.next_handle = u32::from_le_bytes(b))
                .is_some(),
            _ => false,
        })?;
        Ok(r)
    }
}

/// The SNP runtime record opened under the directory lock (the caller's
/// snapshot holds it), with its contents.
pub(crate) struct SnpShared {
    record: InPlaceRecord,
    run: RunDir,
    pub(crate) snp: SnpRuntime,
    op: Op,
}

impl SnpShared {
    /// Reads the record (the default, UNINIT state if never written). The
    /// caller holds the directory lock.
    pub(crate) fn load(run: &RunDir, op: Op) -> Result<Self, FwError> {
        let record = run
            .open_in_place(SNP_RECORD)
            .map_err(crate::error::store_err(op))?;
        let snp = match record.read().map_err(crate::error::store_err(op))? {
            Some(payload) => SnpRuntime::decode(&payload).map_err(|e| {
                FwError::new(
                    op,
                    Status::SecureDataInvalid,
                    format!("platform runtime state (snp) is damaged: {e}"),
                )
            })?,
            None => SnpRuntime::default(),
        };
        Ok(SnpShared {
            record,
            run: run.clone(),
            snp,
            op,
        })
    }

    /// Destroys the guest contexts whose owning process is gone: every
    /// context not `own` (this process's) whose liveness record nobody
    /// holds, or that has none. Their ASIDs need SNP_DF_FLUSH before reuse.
    /// Saves the record when it changed.
    pub(crate) fn reap(&mut self, own: impl Fn(u32) -> bool) -> Result<(), FwError> {
        let store = crate::error::store_err(self.op);
        let mut reaped = false;
        let handles: Vec<u32> = self.snp.guests.keys().copied().collect();
        for handle in handles.into_iter().filter(|h| !own(*h)) {
            let name = guest_record_name(handle);
            if self.run.probe(&name).map_err(&store)? == Holder::Held {
                continue;
            }
            self.run.remove(&name).map_err(&store)?;
            if let Some(asid) = self.snp.guests.remove(&handle) {
                if asid != 0 {
                    self.snp.needs_flush.insert(asid);
                }
            }
            log::debug!("reaped SNP guest context {handle} (its process is gone)");
            reaped = true;
        }
        if reaped {
            self.save()?;
        }
        Ok(())
    }

    /// Creates and holds the liveness record of new guest context
    /// `handle`; `None` when a file of that name exists.
    pub(crate) fn hold_guest(&self, handle: u32) -> Result<Option<HeldRecord>, FwError> {
        let mut w = RecordWriter::new();
        w.put(LIVENESS_HANDLE, &handle.to_le_bytes())
            .map_err(|e| FwError::new(self.op, Status::HwErrorPlatform, e.to_string()))?;
        self.run
            .create_held(&guest_record_name(handle), &w.finish())
            .map_err(crate::error::store_err(self.op))
    }

    /// Removes the liveness record of `handle` if nobody holds it: a file a
    /// process left when it died between creating it and recording the
    /// context. `true` when one was removed.
    pub(crate) fn remove_stale(&self, handle: u32) -> Result<bool, FwError> {
        let store = crate::error::store_err(self.op);
        let name = guest_record_name(handle);
        if self.run.probe(&name).map_err(&store)? != Holder::Abandoned {
            return Ok(false);
        }
        self.run.remove(&name).map_err(&store)
    }

    /// Removes the liveness record of guest context `handle` (its context
    /// is destroyed).
    pub(crate) fn release_guest(&self, handle: u32) -> Result<(), FwError> {
        self.run
            .remove(&guest_record_name(handle))
            .map(|_| ())
            .map_err(crate::error::store_err(self.op))
    }

    /// Writes the record back.
    pub(crate) fn save(&self) -> Result<(), FwError> {
        let payload = self
            .snp
            .encode()
            .map_err(|e| FwError::new(self.op, Status::HwErrorPlatform, e))?;
        self.record
            .write(&payload)
            .map_err(crate::error::store_err(self.op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_round_trips() {
        let r = SnpRuntime {
            state: SnpPlatformState::Init,
            init_flags: 5,
            max_snp_asid: 7,
            ranges: vec![HvFixedRange {
                base: 0x1000,
                pages: 3,
            }],
            reported_tcb: 0x1122,
            mask_chip_id: true,
            mask_chip_key: false,
            needs_flush: [4, 9].into_iter().collect(),
            guests: [(1, 0), (2, 7)].into_iter().collect(),
            next_handle: 3,
        };
        assert_eq!(SnpRuntime::decode(&r.encode().unwrap()).unwrap(), r);
        let d = SnpRuntime::default();
        assert_eq!(SnpRuntime::decode(&d.encode().unwrap()).unwrap(), d);
        assert!(SnpRuntime::decode(&[]).is_err());
    }
}
