//! The SEV kernel-hashes table parser: `ovmf::KernelHashes::parse_table`
//! and `KernelHashes::locate`.
//!
//! The input is parsed as is, searched with `locate`, and parsed once more
//! behind a forced header GUID (so the entry walk is reached every run).
//!
//! Properties: no panic; a table that parses holds digests that survive a
//! `to_table` / `parse_table` round trip; `locate` reports the offset of the
//! first header GUID and agrees with `parse_table` at that offset.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sev_proto::ovmf::{KernelHashes, PADDED_HASH_TABLE_LEN, SEV_HASH_TABLE_HEADER_GUID};

fn check(bytes: &[u8]) {
    if let Ok(h) = KernelHashes::parse_table(bytes) {
        let table = h.to_table();
        assert_eq!(table.len(), PADDED_HASH_TABLE_LEN);
        assert_eq!(
            KernelHashes::parse_table(&table),
            Ok(h),
            "to_table round trip"
        );
        let _ = format!("{h:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);

    match KernelHashes::locate(data) {
        Ok(Some((pos, h))) => {
            assert_eq!(&data[pos..pos + 16], SEV_HASH_TABLE_HEADER_GUID.as_bytes());
            assert_eq!(KernelHashes::parse_table(&data[pos..]), Ok(h));
        }
        Ok(None) => assert!(!data
            .windows(16)
            .any(|w| w == SEV_HASH_TABLE_HEADER_GUID.as_bytes())),
        Err(_) => {}
    }

    let mut forced = SEV_HASH_TABLE_HEADER_GUID.to_bytes().to_vec();
    forced.extend_from_slice(data);
    check(&forced);
});
