//! `snp::id_block`: the SNP ID block and ID authentication structure as
//! SNP_LAUNCH_FINISH reads them from the host.
//!
//! Input: a flags byte (bit 0: AUTH_KEY_EN; bit 1: also run the tamper
//! check), the 0x60-byte ID block, the 0x1000-byte ID auth (zero-padded
//! when the input is short), then a 16-bit index and a bit mask.
//!
//! Properties: no panic; the block and ID auth are checked against the
//! block's own launch digest and policy, so hostile bytes reach the key and
//! signature checks; whatever is refused maps to one of the four statuses
//! of LAUNCH_FINISH; a structure that decodes re-encodes to exactly the
//! input (every byte is a field or checked); a verified one decodes and
//! reports the digest of the bytes it holds; and a genuine pair signed with
//! fixed keys stops verifying when any bit of it changes.
//!
//! ECDSA P-384 is slow under the sanitizer, so the genuine pair is signed
//! once and only inputs with bit 1 spend verifications on a tampered copy.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sev_proto::abi::Status;
use sev_proto::hash::sha384;
use sev_proto::snp::id_block::{verify, Expected, IdAuth, IdBlock, ID_AUTH_LEN, ID_BLOCK_LEN};
use sev_proto::snp::GuestPolicy;
use sevm_fuzz::{author_signing_key, flip, signing_key, Cursor};

struct Genuine {
    bytes: Vec<u8>,
    expected: Expected,
}

fn genuine() -> &'static Genuine {
    static GENUINE: OnceLock<Genuine> = OnceLock::new();
    GENUINE.get_or_init(|| {
        let block = sevm_fuzz::id_block();
        let auth = block
            .sign(&signing_key(), Some(&author_signing_key()))
            .expect("signing works");
        let bytes = [&block.encode()[..], &auth.encode()[..]].concat();
        let expected = Expected {
            launch_digest: block.launch_digest,
            policy: block.policy,
        };
        let (b, a) = bytes.split_at(ID_BLOCK_LEN);
        verify(b, a, true, &expected).expect("a signed pair verifies");
        Genuine { bytes, expected }
    })
}

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let flags = c.u8();
    let author_key_en = flags & 1 != 0;
    let block: [u8; ID_BLOCK_LEN] = c.array();
    let auth: [u8; ID_AUTH_LEN] = c.array();

    let mut launch_digest = [0u8; 48];
    launch_digest.copy_from_slice(&block[..48]);
    let mut policy = [0u8; 8];
    policy.copy_from_slice(&block[0x58..]);
    let expected = Expected {
        launch_digest,
        policy: GuestPolicy::new(u64::from_le_bytes(policy)).unwrap_or(GuestPolicy::QEMU_DEFAULT),
    };
    match verify(&block, &auth, author_key_en, &expected) {
        Ok(identity) => {
            assert!(IdBlock::decode(&block).is_ok());
            assert!(IdAuth::decode(&auth, author_key_en).is_ok());
            assert_eq!(identity.id_key_digest, sha384(&auth[0x240..0x644]));
            assert_eq!(identity.author_key_digest.is_some(), author_key_en);
        }
        Err(e) => {
            assert!(
                matches!(
                    e.status(),
                    Status::BadMeasurement
                        | Status::PolicyFailure
                        | Status::InvalidParam
                        | Status::BadSignature
                ),
                "{e}: {}",
                e.status()
            );
            assert!(!e.to_string().is_empty());
        }
    }
    if let Ok(b) = IdBlock::decode(&block) {
        assert_eq!(b.encode(), block, "encode(decode(block)) != block");
    }
    if let Ok(a) = IdAuth::decode(&auth, true) {
        assert_eq!(a.encode(), auth, "encode(decode(auth)) != auth");
        let _ = a.verify_signatures(&block);
    }

    if flags & 2 != 0 {
        let genuine = genuine();
        let at = usize::from(c.u16());
        let mask = c.u8();
        let mut bytes = genuine.bytes.clone();
        flip(&mut bytes, at, mask);
        let (b, a) = bytes.split_at(ID_BLOCK_LEN);
        assert!(
            verify(b, a, true, &genuine.expected).is_err(),
            "a tampered ID block or ID auth verifies (byte {})",
            at % bytes.len()
        );
    }
});
