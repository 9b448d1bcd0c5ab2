use super::*;
use p384::pkcs8::EncodePrivateKey as _;
use sev_proto::snp::id_block::key_digest;
use sevm_testutil::fixture_path;
use std::fs;

/// sev-snp-measure's tests/test_id_block.py
/// (docs/protocol/test-vectors.md#snp-id-block).
const SNP_MEASURE_LD: &str = "076f052d08bda7a700aa2a608c5caa6b00ebad297b6d68a85a45b1e669a558b67e1b91d284a301fe63c4fa0750467eed";
const SNP_MEASURE_ID_KEY_DIGEST: &str = "870b7e35c53f8a72d0d322f75ab2af8262792aaf6579622ce4131c3f21f289e77cb0560a5e3b90b3932e674ec709cb14";
const SNP_MEASURE_AUTHOR_KEY_DIGEST: &str = "63111c34bbfc0a4938f9a009bd074980d8172323e61599c9fd336da8673248e1dca98d0be8f76376a106b8afd4c0a057";
/// virtee/sev's tests/id-block.rs.
const VIRTEE_LD: &str = "a14d638341e5674628fe1e02fbedebe5e5ab4faf1dd72d8966068e615bb99efd13d214b35c231715b38e263dc6059745";
const VIRTEE_ID_KEY_DIGEST: &str = "59fb2c686dfa4fef49f38339aa775c90051c28d57383ddc3baf3b5eb4b1496df3b0dbbdcbae5fe27677a644820773fe2";
const VIRTEE_AUTHOR_KEY_DIGEST: &str = "eed81169fb0cb5e0ec34794f128fd4e0c4a46f67c65a1adfa81fcb24bcc088c272369b7ffc3eb2b6af6a4284a1b36c5f";

/// A P-256 key (SNP wants P-384).
const P256_PEM: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIHwEqTvoZSOdLrs2oJDgk741vj0NtkFlbGn/yTL+iRQEoAoGCCqGSM49
AwEHoUQDQgAE9SGUnT5pO5PQb2DTuJkMJg3NEbPav/bTccKXlaxU/RVfyLwF2JeP
ss530FN5N6MgNbtVdwHNO6TxA0oNrVyZlg==
-----END EC PRIVATE KEY-----
";

fn ld(text: &str) -> [u8; SHA384_LEN] {
    let mut out = [0u8; SHA384_LEN];
    out.copy_from_slice(&hex::decode(text).unwrap());
    out
}

/// The published ID blocks and key digests of both peers, from their PEM
/// keys (SEC1 for sev-snp-measure, PKCS#8 for virtee/sev).
#[test]
fn the_peers_known_answers() {
    let test = "the_peers_known_answers";
    let cases = [
        (
            "snp/sev-snp-measure/keyfile/id_key_test.pem",
            "snp/sev-snp-measure/keyfile/author_key_test.pem",
            SNP_MEASURE_LD,
            SNP_MEASURE_ID_KEY_DIGEST,
            SNP_MEASURE_AUTHOR_KEY_DIGEST,
        ),
        (
            "snp/virtee-sev/measurement/test_id_key.pem",
            "snp/virtee-sev/measurement/test_auth_key.pem",
            VIRTEE_LD,
            VIRTEE_ID_KEY_DIGEST,
            VIRTEE_AUTHOR_KEY_DIGEST,
        ),
    ];
    for (id, author, launch_digest, id_digest, author_digest) in cases {
        let (Some(id), Some(author)) = (fixture_path(test, id), fixture_path(test, author)) else {
            return;
        };
        let block = IdBlock::new(ld(launch_digest), GuestPolicy::QEMU_DEFAULT);
        let created = create(&CreateInputs {
            block,
            id_key: id.clone(),
            author_key: Some(author),
        })
        .unwrap();
        let mut want_block = ld(launch_digest).to_vec();
        want_block.extend_from_slice(&[0; 32]);
        want_block.extend_from_slice(&hex::decode("01000000000000000000030000000000").unwrap());
        assert_eq!(created.id_block.to_vec(), want_block);
        assert_eq!(hex::encode(created.id_key_digest), id_digest);
        assert_eq!(
            created.author_key_digest.map(hex::encode).as_deref(),
            Some(author_digest)
        );
        assert!(created
            .qemu_properties()
            .ends_with(",author-key-enabled=on"));

        // Without the author key: the same ID key digest, no author digest.
        let created = create(&CreateInputs {
            block,
            id_key: id,
            author_key: None,
        })
        .unwrap();
        assert_eq!(hex::encode(created.id_key_digest), id_digest);
        assert_eq!(created.author_key_digest, None);
        assert!(!created.qemu_properties().contains("author-key-enabled"));
    }
}

/// virtee/sev's ID auth structure holds the public halves of its PEM keys.
#[test]
fn the_virtee_keys_are_the_ones_in_its_id_auth() {
    let test = "the_virtee_keys_are_the_ones_in_its_id_auth";
    let (Some(id), Some(author), Some(auth)) = (
        fixture_path(test, "snp/virtee-sev/measurement/test_id_key.pem"),
        fixture_path(test, "snp/virtee-sev/measurement/test_auth_key.pem"),
        sevm_testutil::fixture(test, "snp/virtee-sev/measurement/test_auth_block.bin"),
    ) else {
        return;
    };
    let auth = IdAuth::decode(&auth, true).unwrap();
    let id = load_signing_key(&id).unwrap();
    let author = load_signing_key(&author).unwrap();
    assert_eq!(auth.id_key, p384::PublicKey::from(id.verifying_key()));
    assert_eq!(
        auth.author.map(|a| a.author_key),
        Some(p384::PublicKey::from(author.verifying_key()))
    );
}

#[test]
fn keys_load_from_sec1_and_pkcs8_pem() {
    let dir = tempfile::tempdir().unwrap();
    let secret = SecretKey::from_slice(&[7u8; 48]).unwrap();
    let want = SigningKey::from(secret.clone());
    let sec1 = secret.to_sec1_pem(Default::default()).unwrap();
    let pkcs8 = secret.to_pkcs8_pem(Default::default()).unwrap();
    let with_params = format!(
        "-----BEGIN EC PARAMETERS-----\nBgUrgQQAIg==\n-----END EC PARAMETERS-----\n{}",
        sec1.as_str()
    );
    for (name, text) in [
        ("sec1.pem", sec1.as_str()),
        ("pkcs8.pem", pkcs8.as_str()),
        ("params.pem", with_params.as_str()),
    ] {
        let path = dir.path().join(name);
        fs::write(&path, text).unwrap();
        let key = load_signing_key(&path).unwrap();
        assert_eq!(key, want, "{name}");
        assert_eq!(
            key_digest(&p384::PublicKey::from(key.verifying_key())),
            key_digest(&secret.public_key())
        );
    }
}

#[test]
fn bad_key_files_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &str); 5] = [
        (
            "p256.pem",
            P256_PEM.as_bytes(),
            "not a SEC1 P-384 private key",
        ),
        ("empty.pem", b"", "no PEM block"),
        (
            "enc.pem",
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "encrypted private keys are not supported",
        ),
        (
            "junk.pem",
            b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
            "not base64",
        ),
        ("binary.pem", &[0xff, 0xfe, 0], "not a PEM text file"),
    ];
    for (name, bytes, want) in cases {
        let path = dir.path().join(name);
        fs::write(&path, bytes).unwrap();
        let e = load_signing_key(&path).unwrap_err().to_string();
        assert!(e.contains(name) && e.contains(want), "{name}: {e}");
    }
    let e = load_signing_key(&dir.path().join("absent.pem")).unwrap_err();
    assert!(e.to_string().contains("absent.pem"), "{e}");
}

#[test]
fn written_files_verify_and_reject_another_measurement() {
    let dir = tempfile::tempdir().unwrap();
    let id_key = dir.path().join("id.pem");
    let author_key = dir.path().join("author.pem");
    for (path, byte) in [(&id_key, 3u8), (&author_key, 4)] {
        let pem = SecretKey::from_slice(&[byte; 48])
            .unwrap()
            .to_sec1_pem(Default::default())
            .unwrap();
        fs::write(path, pem.as_bytes()).unwrap();
    }
    let mut block = IdBlock::new([9; SHA384_LEN], GuestPolicy::QEMU_DEFAULT);
    block.guest_svn = 3;
    block.family_id = [1; 16];
    let created = create(&CreateInputs {
        block,
        id_key,
        author_key: Some(author_key),
    })
    .unwrap();
    let (b, a) = (dir.path().join("b.b64"), dir.path().join("a.b64"));
    write(&created, &b, &a).unwrap();
    let identity = verify_files(&b, &a, true, [9; SHA384_LEN], GuestPolicy::QEMU_DEFAULT).unwrap();
    assert_eq!(identity.guest_svn, 3);
    assert_eq!(identity.family_id, [1; 16]);
    assert_eq!(identity.id_key_digest, created.id_key_digest);
    assert_eq!(identity.author_key_digest, created.author_key_digest);
    let e = verify_files(&b, &a, true, [8; SHA384_LEN], GuestPolicy::QEMU_DEFAULT).unwrap_err();
    assert!(matches!(
        e,
        IdBlockToolError::IdBlock(IdBlockError::LaunchDigestMismatch { .. })
    ));
    // Raw files are read too.
    let raw = dir.path().join("a.bin");
    fs::write(&raw, created.id_auth).unwrap();
    verify_files(&b, &raw, false, [9; SHA384_LEN], GuestPolicy::QEMU_DEFAULT).unwrap();
    // A file of the wrong size.
    let e = verify_files(&a, &a, false, [9; SHA384_LEN], GuestPolicy::QEMU_DEFAULT).unwrap_err();
    assert!(
        e.to_string().contains("holds 4096 bytes, expected 96"),
        "{e}"
    );
}
