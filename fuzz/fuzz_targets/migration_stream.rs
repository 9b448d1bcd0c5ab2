//! `migration::stream::Reader` (snapshot files and live migration streams).
//!
//! Properties: no panic and no unbounded allocation whatever the bytes; a
//! stream read through its end record (digest and count verified) re-encodes
//! with the `Writer` to exactly the bytes that were read, and reading it
//! again with recycled page buffers yields the same records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sevm::migration::stream::{Reader, Record, Writer};

fuzz_target!(|data: &[u8]| {
    let Ok((mut reader, header)) = Reader::new(data) else {
        return;
    };
    let mut records = Vec::new();
    loop {
        match reader.next_record() {
            Ok(r) => {
                let end = matches!(r, Record::End { .. });
                records.push(r);
                if end {
                    break;
                }
            }
            Err(_) => return,
        }
    }
    let read = reader.bytes() as usize;
    let mut w = Writer::new(Vec::new(), &header).expect("writing to a Vec");
    w.records(&records).expect("writing to a Vec");
    assert_eq!(w.into_inner(), data[..read], "re-encoding differs");
    let (mut again, _) = Reader::new(data).expect("read once");
    for r in &records {
        let got = again.next_record().expect("read once");
        assert_eq!(&got, r);
        again.recycle(got);
    }
});
