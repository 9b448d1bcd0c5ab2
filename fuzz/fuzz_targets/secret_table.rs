//! `secret_table::SecretTable::parse` (a decrypted launch-secret area).
//!
//! The input is parsed as is and behind a forced table GUID (so the entry
//! walk is reached on every run).
//!
//! Properties: no panic; a table that parses, rebuilt from its entries,
//! encodes to exactly the bytes the parser consumed (header total length),
//! zero-padded to 16, and parses back to the same entries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sev_proto::secret_table::{SecretTable, SECRET_TABLE_GUID};

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut forced = SECRET_TABLE_GUID.to_bytes().to_vec();
    forced.extend_from_slice(data);
    check(&forced);
});

fn check(data: &[u8]) {
    let Ok(entries) = SecretTable::parse(data) else {
        return;
    };
    let mut table = SecretTable::new();
    for e in &entries {
        table.push(e.guid, &e.data[..]);
        let _ = e.is_wiped();
    }
    assert_eq!(table.entries(), &entries[..]);
    let total = table.table_len();
    let consumed = data
        .get(..total)
        .expect("the parsed table lies inside the input");
    let encoded = table.to_padded_bytes().expect("a parsed table re-encodes");
    assert_eq!(encoded.len(), table.padded_len());
    assert_eq!(encoded.len() % 16, 0);
    assert_eq!(&encoded[..total], consumed, "re-encoded table differs");
    assert!(encoded[total..].iter().all(|&b| b == 0), "padding not zero");
    assert_eq!(SecretTable::parse(&encoded).as_ref(), Ok(&entries));
    let _ = table.check_size(data.len());
}
