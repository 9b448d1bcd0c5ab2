use super::*;
use crate::cert::testutil::{ec_key, fixtures};

/// virtee/sev's tests/id-block.rs (docs/protocol/test-vectors.md#snp-id-block):
/// the launch digest, the ID block for it (policy 0x30000), and the
/// digests of the ID and author keys of its complete ID authentication
/// structure.
const VIRTEE_LD: &str = "a14d638341e5674628fe1e02fbedebe5e5ab4faf1dd72d8966068e615bb99efd13d214b35c231715b38e263dc6059745";
const VIRTEE_ID_BLOCK: &str = "a14d638341e5674628fe1e02fbedebe5e5ab4faf1dd72d8966068e615bb99efd13d214b35c231715b38e263dc6059745000000000000000000000000000000000000000000000000000000000000000001000000000000000000030000000000";
const VIRTEE_ID_KEY_DIGEST: &str = "59fb2c686dfa4fef49f38339aa775c90051c28d57383ddc3baf3b5eb4b1496df3b0dbbdcbae5fe27677a644820773fe2";
const VIRTEE_AUTHOR_KEY_DIGEST: &str = "eed81169fb0cb5e0ec34794f128fd4e0c4a46f67c65a1adfa81fcb24bcc088c272369b7ffc3eb2b6af6a4284a1b36c5f";

const VIRTEE_AUTH_BLOCK: &str = "snp/virtee-sev/measurement/test_auth_block.bin";
const VIRTEE_ID_SIG: &str = "snp/virtee-sev/measurement/test_id_sig.bin";
const VIRTEE_AUTH_SIG: &str = "snp/virtee-sev/measurement/test_auth_sig.bin";

fn ld(hex_text: &str) -> [u8; SHA384_LEN] {
    let mut out = [0u8; SHA384_LEN];
    out.copy_from_slice(&hex::decode(hex_text).unwrap());
    out
}

fn qemu_policy() -> GuestPolicy {
    GuestPolicy::QEMU_DEFAULT
}

fn virtee_expected() -> Expected {
    Expected {
        launch_digest: ld(VIRTEE_LD),
        policy: qemu_policy(),
    }
}

fn virtee_block() -> [u8; ID_BLOCK_LEN] {
    IdBlock::new(ld(VIRTEE_LD), qemu_policy()).encode()
}

/// A block and ID auth signed with two test keys (author key included).
fn signed(author: bool) -> (IdBlock, [u8; ID_BLOCK_LEN], [u8; ID_AUTH_LEN]) {
    let mut block = IdBlock::new([0x5a; SHA384_LEN], qemu_policy());
    block.family_id = [0xf1; 16];
    block.image_id = [0x1a; 16];
    block.guest_svn = 7;
    let id = ec_key(101);
    let author_key = ec_key(102);
    let auth = block
        .sign(&id, author.then_some(&author_key))
        .unwrap()
        .encode();
    (block, block.encode(), auth)
}

fn expected_for(block: &IdBlock) -> Expected {
    Expected {
        launch_digest: block.launch_digest,
        policy: block.policy,
    }
}

#[test]
fn the_virtee_id_block_encodes_and_decodes() {
    let block = IdBlock::new(ld(VIRTEE_LD), qemu_policy());
    assert_eq!(hex::encode(block.encode()), VIRTEE_ID_BLOCK);
    assert_eq!(IdBlock::decode(&block.encode()), Ok(block));
}

/// virtee/sev's complete ID auth structure verifies against its ID block,
/// gives the published key digests, and re-encodes byte for byte.
#[test]
fn the_virtee_id_auth_verifies_with_the_published_digests() {
    let name = "the_virtee_id_auth_verifies_with_the_published_digests";
    let Some([auth, id_sig, auth_sig]) =
        fixtures(name, [VIRTEE_AUTH_BLOCK, VIRTEE_ID_SIG, VIRTEE_AUTH_SIG])
    else {
        return;
    };
    let identity = verify(&virtee_block(), &auth, true, &virtee_expected()).unwrap();
    assert_eq!(hex::encode(identity.id_key_digest), VIRTEE_ID_KEY_DIGEST);
    assert_eq!(
        identity.author_key_digest.map(hex::encode).as_deref(),
        Some(VIRTEE_AUTHOR_KEY_DIGEST)
    );
    assert_eq!(identity.family_id, [0; 16]);
    assert_eq!(identity.image_id, [0; 16]);
    assert_eq!(identity.guest_svn, 0);

    let decoded = IdAuth::decode(&auth, true).unwrap();
    assert_eq!(decoded.encode().as_slice(), auth.as_slice());
    assert_eq!(hex::encode(decoded.id_key_digest()), VIRTEE_ID_KEY_DIGEST);
    assert_eq!(
        decoded.author_key_digest().map(hex::encode).as_deref(),
        Some(VIRTEE_AUTHOR_KEY_DIGEST)
    );
    // The separate signature files are the structure's two signatures.
    assert_eq!(
        decode_signature(SignatureRole::IdBlock, &id_sig),
        Ok(decoded.id_block_signature)
    );
    let author = decoded.author.unwrap();
    assert_eq!(
        decode_signature(SignatureRole::IdKey, &auth_sig),
        Ok(author.id_key_signature)
    );

    // Without AUTH_KEY_EN the author part is not read: no author digest.
    let identity = verify(&virtee_block(), &auth, false, &virtee_expected()).unwrap();
    assert_eq!(identity.author_key_digest, None);
    assert_eq!(hex::encode(identity.id_key_digest), VIRTEE_ID_KEY_DIGEST);
}

/// Flipping any bit of the fixture's ID block or ID auth is refused with
/// the status the firmware gives (docs/protocol/snp.md#what-launch_finish-checks).
#[test]
fn every_bit_flip_of_the_virtee_structures_is_refused() {
    let name = "every_bit_flip_of_the_virtee_structures_is_refused";
    let Some([auth]) = fixtures(name, [VIRTEE_AUTH_BLOCK]) else {
        return;
    };
    let block = virtee_block();
    let expected = virtee_expected();
    for i in 0..ID_BLOCK_LEN {
        let mut b = block;
        b[i] ^= 0x01;
        let e = verify(&b, &auth, true, &expected).unwrap_err();
        let want = match i {
            0x00..0x30 => Status::BadMeasurement,
            0x50..0x54 => Status::InvalidParam,
            0x58..0x60 => Status::PolicyFailure,
            _ => Status::BadSignature,
        };
        assert_eq!(e.status(), want, "block byte 0x{i:x}: {e}");
    }
    // One bit per byte of the ID auth (every byte is checked, by a
    // signature, a key check or as reserved).
    for i in 0..ID_AUTH_LEN {
        let mut a = auth.clone();
        a[i] ^= 0x80;
        let e = verify(&block, &a, true, &expected).unwrap_err();
        let want = if i < 0x8 || AUTH_RESERVED.iter().any(|r| r.contains(&i)) {
            Status::InvalidParam
        } else {
            Status::BadSignature
        };
        assert_eq!(e.status(), want, "auth byte 0x{i:x}: {e}");
    }
}

#[test]
fn sign_then_verify_with_and_without_the_author_key() {
    for author in [true, false] {
        let (block, block_bytes, auth) = signed(author);
        let identity = verify(&block_bytes, &auth, author, &expected_for(&block)).unwrap();
        assert_eq!(identity.family_id, [0xf1; 16]);
        assert_eq!(identity.image_id, [0x1a; 16]);
        assert_eq!(identity.guest_svn, 7);
        assert_eq!(
            identity.id_key_digest,
            key_digest(&PublicKey::from(ec_key(101).verifying_key()))
        );
        assert_eq!(
            identity.author_key_digest,
            author.then(|| key_digest(&PublicKey::from(ec_key(102).verifying_key())))
        );
        let decoded = IdAuth::decode(&auth, author).unwrap();
        assert_eq!(decoded.encode(), auth);
    }
    // Signing is deterministic.
    assert_eq!(signed(true).2, signed(true).2);
}

#[test]
fn author_key_en_without_an_author_key_is_refused() {
    let (block, block_bytes, auth) = signed(false);
    let e = verify(&block_bytes, &auth, true, &expected_for(&block)).unwrap_err();
    assert_eq!(
        e,
        IdBlockError::Algorithm {
            key: KeyRole::Author,
            code: 0
        }
    );
    assert_eq!(e.status(), Status::InvalidParam);
}

#[test]
fn the_checks_come_in_the_firmwares_order() {
    let (block, block_bytes, auth) = signed(true);
    let expected = expected_for(&block);
    // A wrong launch digest wins over everything else.
    let mut b = block_bytes;
    b[0] ^= 1;
    b[0x58] ^= 1;
    let mut a = auth;
    a[0] = 2;
    let e = verify(&b, &a, true, &expected).unwrap_err();
    assert!(
        matches!(e, IdBlockError::LaunchDigestMismatch { .. }),
        "{e}"
    );
    // Then the policy.
    b[0] ^= 1;
    assert!(matches!(
        verify(&b, &a, true, &expected),
        Err(IdBlockError::PolicyMismatch {
            id_block: 0x30001,
            guest: 0x30000
        })
    ));
    // Then the algorithms, before any signature.
    b[0x58] ^= 1;
    b[0x54] ^= 1;
    assert_eq!(
        verify(&b, &a, true, &expected),
        Err(IdBlockError::Algorithm {
            key: KeyRole::Id,
            code: 2
        })
    );
    a[0] = 1;
    assert_eq!(
        verify(&b, &a, true, &expected),
        Err(IdBlockError::BadSignature(SignatureRole::IdBlock))
    );
}

#[test]
fn keys_off_the_curve_or_not_p384_are_bad_signatures() {
    let (block, block_bytes, auth) = signed(true);
    let expected = expected_for(&block);
    for (key_off, role) in [
        (AUTH_ID_KEY, KeyRole::Id),
        (AUTH_AUTHOR_KEY, KeyRole::Author),
    ] {
        // QY + 1: off the curve.
        let mut a = auth;
        a[key_off + 4 + COORD_LEN] ^= 1;
        let e = verify(&block_bytes, &a, true, &expected).unwrap_err();
        assert_eq!(
            e,
            IdBlockError::Key {
                key: role,
                source: ecc::Error::NotOnCurve
            }
        );
        assert_eq!(e.status(), Status::BadSignature);
        // Curve 1 (P-256) and an unknown curve.
        for (curve, source) in [
            (1u32, ecc::Error::UnsupportedCurve(ecc::Curve::P256)),
            (7, ecc::Error::UnknownCurve(7)),
        ] {
            let mut a = auth;
            a[key_off..key_off + 4].copy_from_slice(&curve.to_le_bytes());
            assert_eq!(
                verify(&block_bytes, &a, true, &expected),
                Err(IdBlockError::Key { key: role, source })
            );
        }
        // The identity (all zero coordinates).
        let mut a = auth;
        a[key_off + 4..key_off + 4 + 2 * COORD_LEN].fill(0);
        assert_eq!(
            verify(&block_bytes, &a, true, &expected),
            Err(IdBlockError::Key {
                key: role,
                source: ecc::Error::Identity
            })
        );
        // A reserved byte of the key structure.
        let mut a = auth;
        a[key_off + 0x200] = 1;
        assert_eq!(
            verify(&block_bytes, &a, true, &expected),
            Err(IdBlockError::KeyReserved {
                key: role,
                offset: 0x200
            })
        );
    }
    // Without AUTH_KEY_EN a broken author key is not looked at.
    let (block, block_bytes, mut auth) = signed(true);
    auth[AUTH_AUTHOR_KEY + 4] ^= 1;
    auth[AUTH_AUTHOR_KEY_ALGO] = 9;
    assert!(verify(&block_bytes, &auth, false, &expected_for(&block)).is_ok());
}

#[test]
fn signatures_by_other_keys_or_over_other_bytes_do_not_verify() {
    let (block, block_bytes, auth) = signed(true);
    let expected = expected_for(&block);
    // An ID auth made for another block.
    let mut other = block;
    other.guest_svn = 8;
    let other_auth = other.sign(&ec_key(101), Some(&ec_key(102))).unwrap();
    assert_eq!(
        verify(&block_bytes, &other_auth.encode(), true, &expected),
        Err(IdBlockError::BadSignature(SignatureRole::IdBlock))
    );
    // The author signature of another ID key.
    let mut mixed = IdAuth::decode(&auth, true).unwrap();
    let foreign = block.sign(&ec_key(103), Some(&ec_key(102))).unwrap();
    mixed.id_key = foreign.id_key;
    mixed.id_block_signature = foreign.id_block_signature;
    mixed.author = foreign.author;
    assert_eq!(mixed.verify_signatures(&block_bytes), Ok(()));
    mixed.author = IdAuth::decode(&auth, true).unwrap().author;
    assert_eq!(
        mixed.verify_signatures(&block_bytes),
        Err(IdBlockError::BadSignature(SignatureRole::IdKey))
    );
}

#[test]
fn signature_structures_are_checked() {
    let (block, block_bytes, auth) = signed(true);
    let expected = expected_for(&block);
    for (off, role) in [
        (AUTH_ID_BLOCK_SIG, SignatureRole::IdBlock),
        (AUTH_ID_KEY_SIG, SignatureRole::IdKey),
    ] {
        let mut a = auth;
        a[off + 0x100] = 1;
        assert_eq!(
            verify(&block_bytes, &a, true, &expected),
            Err(IdBlockError::SignatureReserved {
                signature: role,
                offset: 0x100
            })
        );
        let mut a = auth;
        a[off..off + COORD_LEN].fill(0);
        assert_eq!(
            verify(&block_bytes, &a, true, &expected),
            Err(IdBlockError::SignatureFormat {
                signature: role,
                source: ecc::Error::ScalarOutOfRange
            })
        );
        let mut a = auth;
        a[off + 60] = 1;
        let e = verify(&block_bytes, &a, true, &expected).unwrap_err();
        assert!(
            matches!(e, IdBlockError::SignatureFormat { signature, source: ecc::Error::NonZeroPadding { .. } } if signature == role),
            "{e}"
        );
        assert_eq!(e.status(), Status::BadSignature);
    }
}

#[test]
fn id_block_decoding_checks_version_policy_and_length() {
    let block = virtee_block();
    let mut b = block;
    b[0x50] = 2;
    assert_eq!(IdBlock::decode(&b), Err(IdBlockError::Version(2)));
    let mut b = block;
    b[0x58..0x60].copy_from_slice(&0x10000u64.to_le_bytes());
    let e = IdBlock::decode(&b).unwrap_err();
    assert!(matches!(e, IdBlockError::Policy(_)), "{e}");
    assert_eq!(e.status(), Status::PolicyFailure);
    assert_eq!(
        IdBlock::decode(&block[1..]),
        Err(IdBlockError::Length {
            what: "ID block",
            expected: ID_BLOCK_LEN,
            actual: ID_BLOCK_LEN - 1
        })
    );
    let (_, block_bytes, auth) = signed(true);
    for (b, a) in [
        (&block_bytes[..5], &auth[..]),
        (&block_bytes[..], &auth[..4095]),
    ] {
        let e = verify(b, a, true, &virtee_expected()).unwrap_err();
        assert!(matches!(e, IdBlockError::Length { .. }), "{e}");
    }
    assert!(matches!(
        IdAuth::decode(&[], false),
        Err(IdBlockError::Length { .. })
    ));
    assert!(matches!(
        decode_public_key(KeyRole::Id, &[0; 4]),
        Err(IdBlockError::Length { .. })
    ));
    assert!(matches!(
        decode_signature(SignatureRole::IdBlock, &[0; 4]),
        Err(IdBlockError::Length { .. })
    ));
}

#[test]
fn errors_name_what_is_wrong() {
    let e = IdBlockError::PolicyMismatch {
        id_block: 0x30000,
        guest: 0x70000,
    };
    assert_eq!(
        e.to_string(),
        "the ID block names policy 0x30000, the guest's is 0x70000"
    );
    let e = IdBlockError::BadSignature(SignatureRole::IdKey);
    assert_eq!(
        e.to_string(),
        "the ID key's signature by the author key (ID_KEY_SIG) does not verify"
    );
    let e = IdBlockError::LaunchDigestMismatch {
        id_block: [0xab; 48],
        guest: [0; 48],
    };
    assert!(e.to_string().contains(&"ab".repeat(48)), "{e}");
    assert_eq!(
        IdBlockError::Reserved { offset: 0x644 }.to_string(),
        "the ID authentication structure has a non-zero reserved byte at offset 0x644"
    );
}
