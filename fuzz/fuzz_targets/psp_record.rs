//! `store::record` (the tag-length-value codec of state payloads) and
//! `PersistentIdentity::decode`.
//!
//! Properties: no panic; the record reader stops at the first bad record;
//! records that all read back are re-written by `RecordWriter` to exactly
//! the input; an identity that decodes encodes to a payload that decodes to
//! the same identity (records may come in any order, so the bytes need not
//! match).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sev_psp::store::record::{RecordReader, RecordWriter};
use sev_psp::store::PersistentIdentity;

fuzz_target!(|data: &[u8]| {
    let mut writer = RecordWriter::new();
    let mut complete = true;
    let mut reader = RecordReader::new(data);
    for record in reader.by_ref() {
        match record {
            Ok((tag, value)) => writer.put(tag, value).expect("a read value fits"),
            Err(_) => {
                complete = false;
                break;
            }
        }
    }
    assert!(reader.next().is_none(), "reader goes on after an error or the end");
    if complete {
        assert_eq!(&writer.finish()[..], data, "records do not re-write to the input");
    }

    let Ok(identity) = PersistentIdentity::decode(data) else {
        return;
    };
    let encoded = identity.encode().expect("a decoded identity encodes");
    let again = PersistentIdentity::decode(&encoded).expect("an encoded identity decodes");
    assert!(again == identity, "identity round trip");
    let _ = format!("{identity:?}");
});
