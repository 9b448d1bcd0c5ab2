//! `ovmf::FooterTable::parse` and the lookups QEMU makes on it.
//!
//! The input is parsed as an image, and a second time with the footer GUID
//! and the two bytes before it forced into place (input ‖ LE16 length ‖
//! footer GUID ‖ 32 bytes), so that the table walk is reached on every run.
//!
//! The SEV metadata parser also runs on its own, with the offset from the
//! end taken from the input's first four bytes.
//!
//! Properties: no panic; every entry lies inside the image at the offset it
//! reports, entries do not overlap and their lengths (data + 18) add up to
//! the table length minus its own header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sev_proto::ovmf::{
    FooterTable, SevMetadata, ENTRY_HEADER_LEN, FOOTER_GUID, TABLE_LEN_FROM_END,
};

fn check(image: &[u8]) {
    let Ok(table) = FooterTable::parse(image) else {
        return;
    };
    if table.is_empty() {
        return lookups(&table);
    }
    // A non-empty table was found through the footer, so the image is at
    // least 50 bytes long. The walk starts at the table length field and goes
    // backwards: each entry ends (GUID last) where the one after it starts.
    let len_off = image.len() - TABLE_LEN_FROM_END;
    let table_len = u16::from_le_bytes([image[len_off], image[len_off + 1]]);
    let mut end = len_off;
    let mut covered = 0usize;
    for e in table.entries() {
        let start = e.offset;
        let stop = start + e.data.len();
        assert_eq!(
            &image[start..stop],
            e.data,
            "entry data is not at its offset"
        );
        assert_eq!(stop + ENTRY_HEADER_LEN, end, "entries are not contiguous");
        assert_eq!(&image[stop + 2..end], e.guid.as_bytes(), "entry GUID");
        end = start;
        covered += e.data.len() + ENTRY_HEADER_LEN;
        assert!(table.find(e.guid).is_some());
    }
    assert_eq!(covered + ENTRY_HEADER_LEN, usize::from(table_len));
    lookups(&table);
}

fn lookups(table: &FooterTable<'_>) {
    let _ = table.sev_secret_block();
    let _ = table.sev_hashes_table_area();
    let _ = table.check_hashes_area();
    if let Ok(Some(rv)) = table.sev_es_reset_vector() {
        assert_ne!(rv.addr, 0);
        let _ = (rv.cs_base(), rv.ip());
    }
    if let Ok(Some(m)) = table.sev_metadata() {
        for s in &m.sections {
            assert_eq!(s.gpa % 4096, 0);
            assert!(s.size > 0 && s.size % 4096 == 0);
            assert!(u64::from(s.gpa) + u64::from(s.size) <= 1 << 32);
            assert_eq!(s.pages().count() as u32, s.size / 4096);
        }
    }
    let _ = format!("{table:?}");
}

/// The metadata parser on its own, at an offset taken from the input.
fn metadata(data: &[u8]) {
    let Some((head, image)) = data.split_first_chunk::<4>() else {
        return;
    };
    let offset = u32::from_le_bytes(*head) % (image.len() as u32 + 2);
    if let Ok(m) = SevMetadata::parse(image, offset) {
        assert_eq!(m.offset, image.len() - offset as usize);
        assert_eq!(&image[m.offset..m.offset + 4], b"ASEV");
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    metadata(data);

    // Force a footer: the last 2 input bytes become the table length.
    let (body, len) = data.split_at(data.len().saturating_sub(2));
    let mut image = body.to_vec();
    image.extend_from_slice(len);
    image.resize(body.len() + 2, 0);
    image.extend_from_slice(FOOTER_GUID.as_bytes());
    image.extend_from_slice(&[0u8; 32]);
    check(&image);
});
