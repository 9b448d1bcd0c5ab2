use super::*;
use crate::hash::sha256;

fn kat_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = i as u8;
    }
    k
}

fn kat_header() -> MessageHeader {
    MessageHeader::new(MessageType::REPORT_REQ, 1, 0x60, 0, 1)
}

#[test]
fn header_layout_aad_and_iv() {
    let h = kat_header();
    let aad = h.aad();
    assert_eq!(hex::encode(&aad[..8]), "0101600005016000");
    assert!(aad[8..].iter().all(|b| *b == 0));
    assert_eq!(hex::encode(h.iv()), "010000000000000000000000");
    let bytes = h.encode();
    assert_eq!(
        MessageHeader::decode(&bytes[..]).err(),
        Some(GuestMsgError::PayloadBounds {
            size: 0x60,
            available: 0
        })
    );
    let mut page = [0u8; PAGE_LEN];
    page[..HEADER_LEN].copy_from_slice(&bytes);
    assert_eq!(MessageHeader::decode(&page), Ok(h));
}

/// The known answer of docs/protocol/snp.md#guest-messages: the
/// key 00..1F, sequence number 1, a zero MSG_REPORT_REQ.
#[test]
fn seal_known_answer() {
    let msg = seal(&kat_key(), &kat_header(), &[0u8; 0x60]).unwrap();
    assert_eq!(msg.len(), HEADER_LEN + 0x60);
    assert_eq!(hex::encode(&msg[..16]), "f82ad6a7637d3333e57fd9adeb832a0f");
    assert_eq!(
        hex::encode(&msg[HEADER_LEN..HEADER_LEN + 32]),
        "e22c823fa4afec074a0405c33cc188cbcc61cf2e7ca86b124e1f5dfe1d268770"
    );
    assert_eq!(
        hex::encode(sha256(&msg[HEADER_LEN..])),
        "20737f110db003bcd9478cec8abc39ddba8c8e9d06c02b14e5dbfd3a7212fb2d"
    );
}

/// The same sealing by an independent AES-256-GCM (ring's), over random
/// keys, sequence numbers and payloads.
#[test]
fn seal_matches_ring() {
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    use ring::aead::{Aad, LessSafeKey, Nonce as RingNonce, UnboundKey, AES_256_GCM};
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(12);
    for len in [16usize, 0x60, 0x4C0, MAX_PAYLOAD_LEN - 16] {
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        let mut payload = vec![0u8; len];
        rng.fill_bytes(&mut payload);
        let header = MessageHeader::new(
            MessageType(rng.next_u32() as u8),
            1,
            len as u16,
            2,
            rng.next_u64(),
        );
        let msg = seal(&key, &header, &payload).unwrap();

        let ring_key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).unwrap());
        let mut buf = payload.clone();
        let tag = ring_key
            .seal_in_place_separate_tag(
                RingNonce::assume_unique_for_key(header.iv()),
                Aad::from(header.aad()),
                &mut buf,
            )
            .unwrap();
        assert_eq!(&msg[..16], tag.as_ref());
        assert!(msg[16..0x20].iter().all(|b| *b == 0));
        assert_eq!(&msg[HEADER_LEN..], &buf[..]);

        let decoded = MessageHeader::decode(&msg).unwrap();
        assert_eq!(&open(&key, &decoded, &msg).unwrap()[..], &payload[..]);
    }
}

#[test]
fn open_refuses_any_flipped_bit() {
    let key = kat_key();
    let payload: Vec<u8> = (0..0x60u8).collect();
    let msg = seal(&key, &kat_header(), &payload).unwrap();
    for i in 0..msg.len() {
        for bit in [0u8, 3, 7] {
            let mut bad = msg.clone();
            bad[i] ^= 1 << bit;
            let outcome = MessageHeader::decode(&bad).and_then(|h| open(&key, &h, &bad).map(drop));
            assert!(outcome.is_err(), "byte {i:#x} bit {bit} went unnoticed");
        }
    }
    let mut other = key;
    other[31] ^= 1;
    let h = MessageHeader::decode(&msg).unwrap();
    assert_eq!(
        open(&other, &h, &msg).err(),
        Some(GuestMsgError::Authentication)
    );
}

#[test]
fn header_checks_in_order() {
    let good = {
        let mut p = vec![0u8; PAGE_LEN];
        p[..HEADER_LEN].copy_from_slice(&kat_header().encode());
        p
    };
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut p = good.clone();
        f(&mut p);
        MessageHeader::decode(&p).err()
    };
    assert_eq!(
        with(&|p| p[0x31] = 2),
        Some(GuestMsgError::HeaderVersion(2))
    );
    assert_eq!(
        with(&|p| p[0x32] = 0x50),
        Some(GuestMsgError::HeaderSize(0x50))
    );
    assert_eq!(with(&|p| p[0x30] = 0), Some(GuestMsgError::Algorithm(0)));
    assert_eq!(with(&|p| p[0x36] = 0), Some(GuestMsgError::PayloadSize(0)));
    assert_eq!(
        with(&|p| p[0x36] = 0x61),
        Some(GuestMsgError::PayloadSize(0x61))
    );
    assert_eq!(
        with(&|p| p[0x36..0x38].copy_from_slice(&0xFB0u16.to_le_bytes())),
        Some(GuestMsgError::PayloadBounds {
            size: 0xFB0,
            available: 0xFA0
        })
    );
    assert_eq!(with(&|p| p[0x3C] = 4), Some(GuestMsgError::Vmpck(4)));
    for off in [0x10, 0x1F, 0x28, 0x2F, 0x38, 0x3B, 0x3D, 0x5F] {
        assert_eq!(
            with(&|p| p[off] = 0x80),
            Some(GuestMsgError::Reserved {
                offset: off,
                value: 0x80
            }),
            "{off:#x}"
        );
    }
    // Several faults: the first check in the firmware's order wins.
    assert_eq!(
        with(&|p| {
            p[0x31] = 9;
            p[0x3C] = 9;
        }),
        Some(GuestMsgError::HeaderVersion(9))
    );
    assert_eq!(
        MessageHeader::decode(&good[..0x5F]).err(),
        Some(GuestMsgError::Length(0x5F))
    );
    assert_eq!(
        MessageHeader::decode(&[0u8; PAGE_LEN + 1]).err(),
        Some(GuestMsgError::Length(PAGE_LEN + 1))
    );
}

#[test]
fn seal_refuses_a_plaintext_of_the_wrong_length() {
    assert_eq!(
        seal(&kat_key(), &kat_header(), &[0u8; 0x50]).err(),
        Some(GuestMsgError::PlaintextLength {
            expected: 0x60,
            actual: 0x50
        })
    );
}

#[test]
fn report_request_round_trip_and_reserved() {
    let mut r = ReportRequest::new([0xAB; 64], 2);
    r.key_sel = KeySelect::Vcek;
    let b = r.encode();
    assert_eq!(ReportRequest::decode(&b), Ok(r));
    assert_eq!(u32::from_le_bytes(b[0x44..0x48].try_into().unwrap()), 1);
    let mut bad = b;
    bad[0x44] |= 0x04;
    assert!(matches!(
        ReportRequest::decode(&bad),
        Err(PayloadError::Reserved { offset: 0x44, .. })
    ));
    let mut bad = b;
    bad[0x5F] = 1;
    assert!(matches!(
        ReportRequest::decode(&bad),
        Err(PayloadError::Reserved { offset: 0x5F, .. })
    ));
    assert!(matches!(
        ReportRequest::decode(&b[..0x50]),
        Err(PayloadError::Length { .. })
    ));
    let mut three = b;
    three[0x44] = 3;
    assert_eq!(
        ReportRequest::decode(&three).map(|r| r.key_sel),
        Ok(KeySelect::Reserved)
    );
}

#[test]
fn report_response_round_trip() {
    let mut report = Box::new([0u8; REPORT_LEN]);
    report[0] = 3;
    report[REPORT_LEN - 1] = 9;
    let r = ReportResponse { status: 0, report };
    let b = r.encode();
    assert_eq!(&b[4..8], &0x4A0u32.to_le_bytes());
    assert_eq!(ReportResponse::decode(&b[..]), Ok(r));
    let mut bad = b.clone();
    bad[0x10] = 1;
    assert!(matches!(
        ReportResponse::decode(&bad[..]),
        Err(PayloadError::Reserved { offset: 0x10, .. })
    ));
    let mut bad = b;
    bad[4] = 0;
    assert!(matches!(
        ReportResponse::decode(&bad[..]),
        Err(PayloadError::Length { .. })
    ));
}

#[test]
fn key_request_and_response_round_trip() {
    let k = KeyRequest {
        root: RootKey::Vmrk,
        key_sel: KeySelect::Vlek,
        guest_field_select: field_select::ALL_V1,
        vmpl: 1,
        guest_svn: 7,
        tcb_version: 0x1122_3344_5566_7788,
    };
    let b = k.encode();
    assert_eq!(b[0], 0b101);
    assert_eq!(KeyRequest::decode(&b), Ok(k));
    let mut bad = b;
    bad[0] |= 8;
    assert!(matches!(
        KeyRequest::decode(&bad),
        Err(PayloadError::Reserved { offset: 0, .. })
    ));
    let mut bad = b;
    bad[5] = 1;
    assert!(matches!(
        KeyRequest::decode(&bad),
        Err(PayloadError::Reserved { offset: 5, .. })
    ));
    let r = KeyResponse {
        status: 0x16,
        derived_key: Zeroizing::new([5; 32]),
    };
    let rb = r.encode();
    assert_eq!(KeyResponse::decode(&rb[..]), Ok(r));
    let mut bad = *rb;
    bad[0x1F] = 1;
    assert!(KeyResponse::decode(&bad).is_err());
}

#[test]
fn message_type_names() {
    assert_eq!(MessageType::REPORT_REQ.response(), MessageType::REPORT_RSP);
    assert_eq!(MessageType::KEY_REQ.to_string(), "MSG_KEY_REQ (3)");
    assert_eq!(MessageType(200).name(), "UNKNOWN");
}
