//! `options::parse_args` (the QEMU-style command line), then
//! `VmConfig::validate` and the derived views.
//!
//! The input is split into arguments at NUL bytes (the one byte an argument
//! cannot contain), as raw OS strings, so non-UTF-8 arguments are covered.
//!
//! Properties: no panic; parsing is deterministic; a parsed configuration
//! validates or is refused without panicking, and once valid yields its
//! firmware, serial port and SEV guest; the SEV guest found is the one
//! `-machine memory-encryption=` names.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use libfuzzer_sys::fuzz_target;
use sevm::options::{parse_args, Invocation};

fuzz_target!(|data: &[u8]| {
    let args: Vec<OsString> = if data.is_empty() {
        Vec::new()
    } else {
        data.split(|&b| b == 0)
            .map(|a| OsString::from_vec(a.to_vec()))
            .collect()
    };
    let first = parse_args(args.clone());
    assert_eq!(first, parse_args(args), "parse_args is not deterministic");
    let Ok(Invocation::Run(cfg)) = first else {
        return;
    };
    let _ = format!("{cfg:?}");
    if cfg.validate().is_ok() {
        let _ = cfg.firmware();
        let _ = cfg.effective_serial();
        if let Some(g) = cfg.sev_guest() {
            assert_eq!(
                cfg.machine.memory_encryption.as_deref(),
                Some(g.id.as_str())
            );
        } else {
            assert!(cfg.machine.memory_encryption.is_none());
        }
    }
});
