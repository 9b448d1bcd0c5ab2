//! `store::record` (the tag-length-value codec of state payloads) and
//! `PersistentIdentity::decode`.
//!
//! The input is decoded as is; it also fills the fields of an identity whose
//! encoding is decoded, and then decoded again with one byte changed (so the
//! typed decoder is reached past its first records on every run).
//!
//! Properties: no panic; the record reader stops at the first bad record;
//! records that all read back are re-written by `RecordWriter` to exactly
//! the input; an identity that decodes encodes to a payload that decodes to
//! the same identity (records may come in any order, so the bytes need not
//! match); an encoded identity decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sev_psp::store::record::{RecordReader, RecordWriter};
use sev_psp::store::{PersistentIdentity, RsaKeyBytes};
use sevm_fuzz::{flip, Cursor};
use zeroize::Zeroizing;

fn check_records(data: &[u8]) {
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
    assert!(
        reader.next().is_none(),
        "reader goes on after an error or the end"
    );
    if complete {
        assert_eq!(
            &writer.finish()[..],
            data,
            "records do not re-write to the input"
        );
    }
}

fn check_identity(data: &[u8]) {
    let Ok(identity) = PersistentIdentity::decode(data) else {
        return;
    };
    let encoded = identity.encode().expect("a decoded identity encodes");
    let again = PersistentIdentity::decode(&encoded).expect("an encoded identity decodes");
    assert!(again == identity, "identity round trip");
    let _ = format!("{identity:?}");
}

/// A variable-length field of 1..=`max` bytes from the input.
fn var(c: &mut Cursor<'_>, max: usize) -> Vec<u8> {
    let len = usize::from(c.u8()) % max.min(255) + 1;
    let mut out = vec![0u8; len];
    for b in &mut out {
        *b = c.u8();
    }
    out
}

fn rsa(c: &mut Cursor<'_>) -> RsaKeyBytes {
    RsaKeyBytes {
        n: var(c, 512),
        e: var(c, 512),
        d: Zeroizing::new(var(c, 512)),
        p: Zeroizing::new(var(c, 512)),
        q: Zeroizing::new(var(c, 512)),
    }
}

fn identity_from(c: &mut Cursor<'_>) -> PersistentIdentity {
    let [api_major, api_minor, build, owned] = c.array();
    PersistentIdentity {
        api_major,
        api_minor,
        build,
        chip_id: c.array(),
        cek_private: Zeroizing::new(c.array()),
        pek_private: Zeroizing::new(c.array()),
        oca_private: (owned & 2 != 0).then(|| Zeroizing::new(c.array())),
        pdh_private: Zeroizing::new(c.array()),
        ark: rsa(c),
        ask: rsa(c),
        ark_cert: var(c, 4096),
        ask_cert: var(c, 4096),
        cek_cert: var(c, 4096),
        oca_cert: var(c, 4096),
        pek_cert: var(c, 4096),
        pdh_cert: var(c, 4096),
        externally_owned: owned & 1 != 0,
    }
}

fuzz_target!(|data: &[u8]| {
    check_records(data);
    check_identity(data);

    let mut c = Cursor::new(data);
    let flip_at = usize::from(c.u16());
    let mask = c.u8();
    let identity = identity_from(&mut c);
    let mut encoded = identity.encode().expect("fields are within their limits");
    check_records(&encoded);
    let decoded = PersistentIdentity::decode(&encoded).expect("an encoded identity decodes");
    assert!(decoded == identity, "encode/decode round trip");
    flip(&mut encoded, flip_at, mask);
    check_records(&encoded);
    check_identity(&encoded);
});
