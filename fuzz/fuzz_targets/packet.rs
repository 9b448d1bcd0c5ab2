//! `secret::PacketHeader::decode`, `secret::open_launch_secret` and
//! `secret::open_transport` with fixed keys.
//!
//! Input: selector (1) ‖ header (52) ‖ GUEST_LENGTH (4) ‖ TRANS.
//!
//! Properties: no panic; a header that decodes re-encodes to its bytes;
//! opening hostile packets never panics; a packet sealed with the fixed keys
//! opens to the plaintext, and any single-byte change to its header, TRANS
//! or GUEST_LENGTH is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sev_proto::secret::{
    build_launch_secret, open_launch_secret, open_transport, seal_transport, PacketHeader,
    TransportKind,
};
use sevm_fuzz::{flip, transport_keys, Cursor};

const MEASUREMENT: [u8; 32] = [0x4d; 32];
const BINDING: &[u8] = b"fuzz binding";

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let selector = c.u8();
    let header_bytes: [u8; PacketHeader::SIZE] = c.array();
    let guest_len = c.u32();
    let trans = c.rest();

    let header = PacketHeader::decode(&header_bytes).expect("52 bytes always decode");
    assert_eq!(header.to_bytes(), header_bytes, "header round trip");
    assert!(PacketHeader::decode(&header_bytes[1..]).is_err());

    let keys = transport_keys();
    let measurement = (selector & 1 != 0).then_some(&MEASUREMENT);
    let kind = if selector & 2 != 0 {
        TransportKind::Vmsa
    } else {
        TransportKind::Data
    };
    let _ = open_launch_secret(&keys, &header, guest_len, trans, measurement);
    let _ = open_transport(kind, &keys, &header, guest_len, trans, BINDING);

    // Genuine packets built from the input: they open, and tampering fails.
    let flip_at = usize::from(guest_len as u16);
    let mask = (guest_len >> 16) as u8;
    let iv = header.iv;
    let plain = trans;

    let (h, sealed) = seal_transport(kind, &keys, &iv, plain, BINDING);
    let len = u32::try_from(sealed.len()).expect("fuzz inputs are small");
    let opened = open_transport(kind, &keys, &h, len, &sealed, BINDING).expect("sealed opens");
    assert_eq!(&opened[..], plain, "transport round trip");
    assert!(open_transport(kind, &keys, &h, len ^ 1, &sealed, BINDING).is_err());
    let mut hb = h.to_bytes();
    flip(&mut hb, flip_at, mask);
    let bad = PacketHeader::from_bytes(&hb);
    assert!(open_transport(kind, &keys, &bad, len, &sealed, BINDING).is_err());
    let mut tb = sealed.clone();
    flip(&mut tb, flip_at, mask);
    if !tb.is_empty() {
        assert!(open_transport(kind, &keys, &h, len, &tb, BINDING).is_err());
    }

    // LAUNCH_SECRET needs a non-empty multiple of 16 bytes.
    let padded = &plain[..plain.len() - plain.len() % 16];
    if !padded.is_empty() {
        let (h, sealed) = build_launch_secret(&keys, &iv, padded, measurement);
        let len = u32::try_from(sealed.len()).expect("fuzz inputs are small");
        let opened =
            open_launch_secret(&keys, &h, len, &sealed, measurement).expect("built secret opens");
        assert_eq!(&opened[..], padded, "launch secret round trip");
        let other = if measurement.is_some() {
            None
        } else {
            Some(&MEASUREMENT)
        };
        assert!(open_launch_secret(&keys, &h, len, &sealed, other).is_err());
        let mut tb = sealed.clone();
        flip(&mut tb, flip_at, mask);
        assert!(open_launch_secret(&keys, &h, len, &tb, measurement).is_err());
    }
});
