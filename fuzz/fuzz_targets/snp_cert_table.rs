//! `snp::cert_table::decode`: the certificate table of the extended guest
//! request, as a guest or a VMM reads one.
//!
//! Input: the buffer.
//!
//! Properties: no panic; every entry that decodes lies inside the buffer
//! after the table; the entries re-encode to a table that decodes to the
//! same entries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sev_proto::snp::cert_table;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = cert_table::decode(data) {
        let start = (entries.len() + 1) * cert_table::ENTRY_LEN;
        assert!(start <= data.len(), "the table is inside the buffer");
        assert!(entries.len() <= cert_table::MAX_ENTRIES);
        assert!(
            entries.iter().all(|e| e.data.len() <= data.len() - start),
            "every certificate is inside the buffer, after the table"
        );
        let encoded = cert_table::encode(&entries).expect("decoded entries encode");
        assert_eq!(cert_table::decode(&encoded).expect("re-decodes"), entries);
    }
});
