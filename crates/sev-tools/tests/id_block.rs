//! `sev-owner id-block`: against sev-snp-measure's `snp-create-id-block`
//! (same deterministic bytes, each verifies the other's signatures), and its
//! refusals on the command line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use common::*;
use sevm_testutil::fixture_path;

const KEYS: &str = "snp/sev-snp-measure/keyfile";
/// The launch digest of sev-snp-measure's own ID-block test
/// (docs/protocol/test-vectors.md#snp-id-block), and another one.
const LDS: [&str; 2] = [
    "B28FLQi9p6cAqipgjFyqawDrrSl7bWioWkWx5mmlWLZ+G5HShKMB/mPE+gdQRn7t",
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v",
];

fn b64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .unwrap()
}

fn keys(test: &str) -> Option<(PathBuf, PathBuf)> {
    Some((
        fixture_path(test, &format!("{KEYS}/id_key_test.pem"))?,
        fixture_path(test, &format!("{KEYS}/author_key_test.pem"))?,
    ))
}

/// What `snp-create-id-block` prints: `id-block=B64,id-auth=B64`, then
/// `id_key_hash: B64` and `author_key: B64`.
struct PeerOutput {
    id_block: Vec<u8>,
    id_auth: Vec<u8>,
    id_key_digest: Vec<u8>,
    author_key_digest: Vec<u8>,
}

fn peer_create(tool: &str, ld: &str, id: &Path, author: &Path) -> PeerOutput {
    let o = ok(
        tool,
        &[
            "--measurement",
            ld,
            "--idkey",
            p(id),
            "--authorkey",
            p(author),
        ],
    );
    let out = stdout(&o);
    let mut lines = out.lines();
    let props = lines.next().unwrap();
    let (block, auth) = props.split_once(",id-auth=").unwrap();
    let field = |line: Option<&str>, name: &str| {
        b64(line.unwrap().strip_prefix(name).unwrap_or_else(|| {
            panic!("snp-create-id-block output changed:\n{out}");
        }))
    };
    PeerOutput {
        id_block: b64(block.strip_prefix("id-block=").unwrap()),
        id_auth: b64(auth),
        id_key_digest: field(lines.next(), "id_key_hash: "),
        author_key_digest: field(lines.next(), "author_key: "),
    }
}

/// The Python interpreter that runs a script on PATH (from its `#!` line),
/// so that the peer's own cryptography library can check our signatures.
fn interpreter_of(program: &str) -> Option<PathBuf> {
    let script = std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())?;
    let text = std::fs::read(&script).ok()?;
    let first = String::from_utf8_lossy(&text).lines().next()?.to_string();
    Some(PathBuf::from(first.strip_prefix("#!")?.trim()))
}

/// Verifies both signatures of an ID authentication structure with the
/// Python `cryptography` package sev-snp-measure signs with.
const PY_VERIFY: &str = r#"
import base64, sys
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives import hashes
block = base64.b64decode(open(sys.argv[1]).read())
auth = base64.b64decode(open(sys.argv[2]).read())
def le(b): return int.from_bytes(b, "little")
def key(off):
    assert le(auth[off:off+4]) == 2
    nums = ec.EllipticCurvePublicNumbers(le(auth[off+4:off+76]), le(auth[off+76:off+148]), ec.SECP384R1())
    return nums.public_key()
def sig(off): return utils.encode_dss_signature(le(auth[off:off+72]), le(auth[off+72:off+144]))
key(0x240).verify(sig(0x40), block, ec.ECDSA(hashes.SHA384()))
key(0x880).verify(sig(0x680), auth[0x240:0x644], ec.ECDSA(hashes.SHA384()))
print("verified")
"#;

#[test]
fn snp_create_id_block_and_sev_owner_agree() {
    let test = "snp_create_id_block_and_sev_owner_agree";
    let Some(tool) = peer(test, "snp-create-id-block") else {
        return;
    };
    let tool = tool.to_str().unwrap();
    let Some((id, author)) = keys(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    for (i, ld) in LDS.iter().enumerate() {
        let peer = peer_create(tool, ld, &id, &author);
        let (block_file, auth_file) = (
            tmp.path().join(format!("ours{i}-block.b64")),
            tmp.path().join(format!("ours{i}-auth.b64")),
        );
        let o = ok(
            OWNER,
            &[
                "id-block",
                "--measurement",
                ld,
                "--id-key",
                p(&id),
                "--author-key",
                p(&author),
                "--id-block",
                p(&block_file),
                "--id-auth",
                p(&auth_file),
                "--json",
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        let ours_block = b64(&std::fs::read_to_string(&block_file).unwrap());
        let ours_auth = b64(&std::fs::read_to_string(&auth_file).unwrap());
        assert_eq!(b64(v["id_block"].as_str().unwrap()), ours_block);
        assert_eq!(b64(v["id_auth"].as_str().unwrap()), ours_auth);

        // Deterministic parts: the block, the digests, and every byte of the
        // ID auth but the two signatures.
        assert_eq!(ours_block, peer.id_block);
        assert_eq!(
            hex::decode(v["id_key_digest"].as_str().unwrap()).unwrap(),
            peer.id_key_digest
        );
        assert_eq!(
            hex::decode(v["author_key_digest"].as_str().unwrap()).unwrap(),
            peer.author_key_digest
        );
        assert_eq!(ours_auth.len(), peer.id_auth.len());
        for range in [0..0x40, 0x240..0x680, 0x880..0x1000] {
            assert_eq!(
                ours_auth[range.clone()],
                peer.id_auth[range.clone()],
                "{range:?}"
            );
        }
        // The signatures (ECDSA nonces: the peer's are random, ours RFC 6979).
        for range in [0x40..0x240, 0x680..0x880] {
            assert_ne!(
                ours_auth[range.clone()],
                peer.id_auth[range.clone()],
                "{range:?}"
            );
        }

        // sev-owner verifies the peer's signatures, as the firmware would.
        let peer_block = write(tmp.path(), &format!("peer{i}-block.b64"), &block_of(&peer));
        let peer_auth = write(
            tmp.path(),
            &format!("peer{i}-auth.b64"),
            base64::engine::general_purpose::STANDARD
                .encode(&peer.id_auth)
                .as_bytes(),
        );
        let o = ok(
            OWNER,
            &[
                "id-block",
                "--verify",
                "--measurement",
                ld,
                "--id-block",
                p(&peer_block),
                "--id-auth",
                p(&peer_auth),
                "--author-key-enabled",
                "--id-key",
                p(&id),
                "--author-key",
                p(&author),
            ],
        );
        assert!(stdout(&o).contains("ID block verified"), "{}", stdout(&o));

        // The peer's cryptography library verifies ours.
        match interpreter_of("snp-create-id-block") {
            Some(python) => {
                let o = Command::new(&python)
                    .args(["-c", PY_VERIFY, p(&block_file), p(&auth_file)])
                    .output()
                    .unwrap();
                assert!(
                    o.status.success() && stdout(&o).contains("verified"),
                    "{} could not verify sev-owner's signatures: {}",
                    python.display(),
                    stderr(&o)
                );
            }
            None => sevm_testutil::skip(test, "the Python of snp-create-id-block not found"),
        }
    }
}

fn block_of(peer: &PeerOutput) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .encode(&peer.id_block)
        .into_bytes()
}

#[test]
fn verify_refuses_with_the_firmwares_status() {
    let test = "verify_refuses_with_the_firmwares_status";
    let Some((id, author)) = keys(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (block, auth) = (tmp.path().join("b.b64"), tmp.path().join("a.b64"));
    ok(
        OWNER,
        &[
            "id-block",
            "--measurement",
            LDS[0],
            "--id-key",
            p(&id),
            "--svn",
            "5",
            "--family-id",
            &"f0".repeat(16),
            "--id-block",
            p(&block),
            "--id-auth",
            p(&auth),
        ],
    );
    let verify = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "id-block",
            "--verify",
            "--id-block",
            p(&block),
            "--id-auth",
            p(&auth),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let run_verify = |extra: &[&str], want: &str| {
        let args = verify(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fails(OWNER, &args, want);
    };
    let good = verify(&["--measurement", LDS[0], "--svn", "5", "--id-key", p(&id)]);
    let good: Vec<&str> = good.iter().map(String::as_str).collect();
    let o = ok(OWNER, &good);
    assert!(
        stdout(&o).contains("guest_svn:         5"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains(&"f0".repeat(16)), "{}", stdout(&o));

    run_verify(&["--measurement", LDS[1]], "BAD_MEASUREMENT");
    run_verify(
        &["--measurement", LDS[0], "--policy", "0x70000"],
        "POLICY_FAILURE",
    );
    // Signed without an author key, so AUTH_KEY_EN finds algorithm 0.
    run_verify(
        &["--measurement", LDS[0], "--author-key-enabled"],
        "INVALID_PARAM",
    );
    run_verify(
        &["--measurement", LDS[0], "--id-key", p(&author)],
        "another ID key",
    );
    run_verify(&["--measurement", LDS[0], "--svn", "4"], "GUEST_SVN is 5");

    // A flipped bit in the ID block's signature.
    let mut bytes = b64(&std::fs::read_to_string(&auth).unwrap());
    bytes[0x41] ^= 1;
    std::fs::write(
        &auth,
        base64::engine::general_purpose::STANDARD.encode(&bytes),
    )
    .unwrap();
    run_verify(&["--measurement", LDS[0]], "BAD_SIGNATURE");
}

#[test]
fn bad_arguments_are_refused() {
    let test = "bad_arguments_are_refused";
    let Some((id, _)) = keys(test) else {
        return;
    };
    fails(OWNER, &["id-block", "--measurement", LDS[0]], "--id-key");
    fails(
        OWNER,
        &["id-block", "--measurement", "abcd", "--id-key", p(&id)],
        "expected 48",
    );
    fails(
        OWNER,
        &[
            "id-block",
            "--measurement",
            LDS[0],
            "--id-key",
            p(&id),
            "--policy",
            "0x1",
        ],
        "bit 17",
    );
    let tmp = tempfile::tempdir().unwrap();
    let not_a_key = write(tmp.path(), "k.pem", b"hello");
    fails(
        OWNER,
        &[
            "id-block",
            "--measurement",
            LDS[0],
            "--id-key",
            p(&not_a_key),
        ],
        "no PEM block",
    );
    // An output directory that does not exist: nothing is written.
    let missing = tmp.path().join("no/such/dir/b.b64");
    fails(
        OWNER,
        &[
            "id-block",
            "--measurement",
            LDS[0],
            "--id-key",
            p(&id),
            "--id-block",
            p(&missing),
            "--id-auth",
            p(&tmp.path().join("a.b64")),
        ],
        "cannot write",
    );
    assert!(!tmp.path().join("a.b64").exists());
    for e in std::fs::read_dir(tmp.path()).unwrap() {
        let name = e.unwrap().file_name();
        assert!(
            !name.to_string_lossy().contains(".tmp"),
            "{name:?} left behind"
        );
    }
}
