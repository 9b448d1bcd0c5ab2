//! `migration::handover`: the end of a live migration, source and target
//! against each other through a lossy relay, with `migrate_cancel` and
//! `quit` at any point (`handover::simulate`).
//!
//! Properties: whatever the faults, the guest never runs on both sides; a
//! migration reported completed always left a running target; a target
//! runs only if the source's COMMIT reached it; a cancel before the
//! hand-over, a silent or garbage-answering target always keep the guest
//! at the source.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sevm::migration::handover::{simulate, Faults};

fuzz_target!(|data: &[u8]| {
    let [a, b, c, d, ..] = *data else { return };
    let f = Faults {
        drop_commit: a & 1 == 1,
        back: b % 4,
        garbage: c,
        cancel: d % 4,
    };
    let Ok(o) = simulate(f) else { return };
    assert!(!(o.source_runs && o.target_runs), "{f:?}: {o:?}");
    if o.completed {
        assert!(o.target_runs, "{f:?}: {o:?}");
    }
    if o.target_runs {
        assert!(!f.drop_commit, "{f:?}: {o:?}");
    }
    if f.cancel == 1 || f.back == 0 || (f.back == 3 && f.garbage != 0) {
        assert!(o.source_runs && !o.target_runs, "{f:?}: {o:?}");
    }
});
