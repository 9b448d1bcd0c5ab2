//! What real AMD hosts hand the owner, through the real binaries: AMD's
//! genuine roots given explicitly (labels), an owner-made OCA whose reserved
//! bytes are not zero (a real Genoa host's chain), and a CEK that carries no
//! ASK signature (replaced by the signed CEK from a file, the cache or a key
//! distribution server).
//!
//! The real certificates are read from `../shared/sev-testdata` at test time
//! (skipped, or failed under `SEVM_REQUIRE_ALL=1`, when missing).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use sev_proto::cert::ecc;
use sev_proto::cert::Algorithm;

const CERT: usize = 0x824;

fn testdata(test: &str) -> Option<PathBuf> {
    let dir = sevm_testutil::testdata_dir();
    if dir.is_none() {
        sevm_testutil::skip(test, "no shared/sev-testdata found (set SEVM_TESTDATA)");
    }
    dir
}

/// ASK ‖ ARK of `generation` from the fixtures, written to `dir`.
fn amd_ca(test: &str, generation: &str, dir: &Path) -> Option<PathBuf> {
    let ask = sevm_testutil::fixture(test, &format!("amd-roots/{generation}-ask.cert"))?;
    let ark = sevm_testutil::fixture(test, &format!("amd-roots/{generation}-ark.cert"))?;
    let mut ca = ask;
    ca.extend(ark);
    Some(write(dir, &format!("{generation}-ca.cert"), &ca))
}

/// Issue 9, item 13: AMD's genuine Rome ASK ‖ ARK given with --trust-ark is
/// recognised by its built-in fingerprint and labelled as AMD's genuine
/// Rome root, never "emulated"; a root that is neither AMD's nor known to be
/// an emulated platform's is labelled as an explicitly trusted root of
/// unknown origin.
#[test]
fn genuine_amd_root_given_explicitly_is_labelled_amd() {
    let test = "genuine_amd_root_given_explicitly_is_labelled_amd";
    let Some(data) = testdata(test) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let Some(ca) = amd_ca(test, "rome", tmp.path()) else {
        return;
    };
    let chain_dir = data.join("certs/rome");
    let o = ok(
        OWNER,
        &[
            "verify",
            "--chain-dir",
            p(&chain_dir),
            "--trust-ark",
            p(&ca),
        ],
    );
    let out = stdout(&o);
    assert!(out.contains("AMD's genuine Rome root"), "{out}");
    assert!(!out.contains("emulated"), "{out}");
    assert!(
        out.contains("chain verified: PDH ← PEK ← OCA, CEK ← ASK ← ARK = AMD's genuine Rome root"),
        "{out}"
    );

    // An emulated platform's root given by file alone: not AMD's, origin
    // unknown to the tool.
    let plat = platform_copy(&platform_a(), tmp.path());
    let (full, _, ark) = export(&plat, tmp.path());
    let out = stdout(&ok(
        OWNER,
        &["verify", "--chain", p(&full), "--trust-ark", p(&ark)],
    ));
    assert!(
        out.contains("explicitly trusted root of unknown origin"),
        "{out}"
    );
    assert!(out.contains("not an AMD root"), "{out}");
    assert!(!out.contains("AMD's genuine"), "{out}");
}

/// Issue 9, item 12: the real Genoa host's chain (libvirt's recorded
/// query-sev-capabilities reply) holds an owner-made OCA with non-zero bytes
/// in the reserved part of its key area. `sev-owner verify` parses it and
/// checks every signature over the bytes as received: the OCA, PEK and PDH
/// checks pass. Only the CEK check fails, because a real host exports its
/// CEK without the ASK's signature and the fixture has no signed CEK for
/// this chip.
#[test]
fn real_genoa_chain_with_reserved_bytes_in_its_oca() {
    let test = "real_genoa_chain_with_reserved_bytes_in_its_oca";
    let Some(data) = testdata(test) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let Some(ca) = amd_ca(test, "genoa", tmp.path()) else {
        return;
    };
    let caps = data.join("realhost/query-sev-capabilities.reply.json");
    let o = run(
        OWNER,
        &[
            "verify",
            "--capabilities",
            p(&caps),
            "--generation",
            "genoa",
            "--ca",
            p(&ca),
        ],
    );
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(!err.contains("reserved byte"), "{err}");
    assert!(
        out.contains("335 non-zero reserved bytes (kept; the signatures cover them)"),
        "{out}"
    );
    for check in [
        "ok    positions",
        "ok    ARK is the pinned root",
        "ok    ASK issued and signed by the ARK",
        "ok    OCA self-signed",
        "ok    PEK signed by the OCA",
        "ok    PEK signed by the CEK",
        "ok    PDH signed by the PEK",
        "ok    ARK self-signature",
        "FAIL  CEK signed by the ASK",
    ] {
        assert!(out.contains(check), "{check:?} missing:\n{out}\n{err}");
    }
    assert!(!o.status.success());
}

/// An OCA made by an owner tool that leaves garbage in the reserved part of
/// the key area (as the real Genoa host's OCA has), self-signed over those
/// bytes: `oca.cert` is rewritten in place.
fn dirty_oca(oca: &Path, key: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(oca).unwrap();
    for (i, b) in bytes[0xA4..0x3B6].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31) | 1;
    }
    let key = p384::ecdsa::SigningKey::from_slice(&std::fs::read(key).unwrap()).unwrap();
    let sig = ecc::sign(&key, Algorithm::EcdsaSha256, &bytes[..0x414]).unwrap();
    bytes[0x41C..0x41C + ecc::SIGNATURE_LEN].copy_from_slice(&ecc::encode_signature(&sig));
    std::fs::write(oca, &bytes).unwrap();
    bytes
}

/// Issue 9, item 12: an emulated platform takes ownership with such an OCA
/// (`sev-platform sign-csr` and `pek-cert-import`, as the firmware accepted
/// the real one), exports it unchanged, and the chain verifies.
#[test]
fn emulated_platform_imports_an_oca_with_reserved_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let plat = platform_copy(&platform_a(), d);
    let em = emu(&plat);
    let (csr, cert, key, signed) = (
        d.join("csr"),
        d.join("oca.cert"),
        d.join("oca.key"),
        d.join("pek.signed"),
    );
    ok(PLATFORM, &[&em, "pek-csr", p(&csr)]);
    ok(PLATFORM, &["oca-gen", "--cert", p(&cert), "--key", p(&key)]);
    let oca = dirty_oca(&cert, &key);
    ok(
        PLATFORM,
        &[
            "sign-csr",
            p(&csr),
            "--oca-cert",
            p(&cert),
            "--oca-key",
            p(&key),
            "-o",
            p(&signed),
        ],
    );
    ok(
        PLATFORM,
        &[
            &em,
            "pek-cert-import",
            "--pek",
            p(&signed),
            "--oca",
            p(&cert),
        ],
    );
    let (full, _, ark) = export(&plat, d);
    let chain = std::fs::read(&full).unwrap();
    assert_eq!(
        &chain[2 * CERT..3 * CERT],
        &oca[..],
        "OCA exported unchanged"
    );
    // The platform's own certificates stay zero in their reserved bytes.
    for i in [0, 1, 3] {
        assert!(
            chain[i * CERT + 0xA4..i * CERT + 0x414]
                .iter()
                .all(|b| *b == 0),
            "certificate {i}"
        );
    }
    let out = stdout(&ok(
        OWNER,
        &["verify", "--chain", p(&full), "--trust-ark", p(&ark)],
    ));
    assert!(out.contains("ok    OCA self-signed"), "{out}");
}
