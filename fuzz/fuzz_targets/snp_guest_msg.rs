//! `snp::guest_msg`: the SNP guest-message header and the MSG_REPORT /
//! MSG_KEY payloads, as the firmware reads a request page from a guest.
//!
//! Input: a selector byte, then the message bytes (at most a 4 KiB page).
//!
//! Properties: no panic; a header that decodes encodes back to its 0x60
//! bytes; opening under a fixed VMPCK never panics, and a message sealed
//! under that key with the decoded header opens to the same plaintext; the
//! payload decoders (chosen by the selector) never panic and every payload
//! that decodes encodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sev_proto::snp::guest_msg::{
    self, KeyRequest, KeyResponse, MessageHeader, ReportRequest, ReportResponse, HEADER_LEN,
    PAGE_LEN,
};
use sevm_fuzz::Cursor;

const VMPCK: [u8; 32] = [0x5C; 32];

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let selector = c.u8();
    let msg = c.rest();
    let msg = &msg[..msg.len().min(PAGE_LEN)];
    match selector % 5 {
        0 => {
            if let Ok(header) = MessageHeader::decode(msg) {
                let mut expected = [0u8; HEADER_LEN];
                expected.copy_from_slice(&msg[..HEADER_LEN]);
                assert_eq!(header.encode(), expected, "encode(decode(header))");
                let _ = guest_msg::open(&VMPCK, &header, msg);
                let size = usize::from(header.msg_size);
                let plain = &msg[HEADER_LEN..HEADER_LEN + size];
                let sealed = guest_msg::seal(&VMPCK, &header, plain).expect("fits");
                let reread = MessageHeader::decode(&sealed).expect("sealed header decodes");
                let opened = guest_msg::open(&VMPCK, &reread, &sealed).expect("opens");
                assert_eq!(&opened[..], plain);
            }
        }
        1 => {
            if let Ok(r) = ReportRequest::decode(msg) {
                assert_eq!(&r.encode()[..], msg);
            }
        }
        2 => {
            if let Ok(r) = ReportResponse::decode(msg) {
                assert_eq!(&r.encode()[..], msg);
            }
        }
        3 => {
            if let Ok(r) = KeyRequest::decode(msg) {
                assert_eq!(&r.encode()[..], msg);
            }
        }
        _ => {
            if let Ok(r) = KeyResponse::decode(msg) {
                assert_eq!(&r.encode()[..], msg);
            }
        }
    }
});
