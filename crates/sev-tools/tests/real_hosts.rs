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

/// A real host as the owner sees it, simulated with an emulated platform:
/// its chain with the CEK stripped of the ASK's signature (as AMD hardware
/// exports it), the signed CEK (as AMD's key distribution server serves
/// it), the chip id, and the root.
struct RealHost {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    /// query-sev-capabilities reply with the unsigned CEK and cpu0-id.
    caps: PathBuf,
    /// PDH ‖ PEK ‖ OCA ‖ unsigned CEK ‖ ASK ‖ ARK (no chip id in it).
    full_unsigned: PathBuf,
    /// The CEK with the ASK's signature.
    signed_cek: PathBuf,
    signed_bytes: Vec<u8>,
    /// GET_ID, lowercase hex.
    chip: String,
    /// ASK ‖ ARK of the (emulated) root.
    ark: PathBuf,
}

/// Test-only: empties both signature slots of a SEV certificate (usage
/// 0x1000, algorithm 0, zero data), as the CEK of real hardware is.
fn strip_signatures(cert: &mut [u8]) {
    for off in [0x414, 0x61C] {
        cert[off..off + 4].copy_from_slice(&0x1000u32.to_le_bytes());
        cert[off + 4..off + 8].fill(0);
        cert[off + 8..off + 8 + 512].fill(0);
    }
}

fn real_host() -> RealHost {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let plat = platform_copy(&platform_a(), &dir);
    // The root as ASK ‖ ARK: query-sev-capabilities carries no ASK.
    let (full, ark, _) = export(&plat, &dir);
    let chain = std::fs::read(&full).unwrap();
    let signed_bytes = chain[3 * CERT..4 * CERT].to_vec();
    let mut unsigned = chain.clone();
    strip_signatures(&mut unsigned[3 * CERT..4 * CERT]);
    let full_unsigned = write(&dir, "full-unsigned.cert", &unsigned);
    let signed_cek = write(&dir, "cek-signed.cert", &signed_bytes);
    let id = stdout(&ok(PLATFORM, &[&emu(&plat), "id"]))
        .trim()
        .to_string();
    let b64 = |b: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(b)
    };
    let caps = serde_json::json!({"return": {
        "pdh": b64(&unsigned[..CERT]),
        "cert-chain": b64(&unsigned[CERT..4 * CERT]),
        "cpu0-id": b64(&hex::decode(&id).unwrap()),
        "cbitpos": 47, "reduced-phys-bits": 1,
    }});
    let caps_path = write(&dir, "caps.json", caps.to_string().as_bytes());
    RealHost {
        _tmp: tmp,
        dir,
        caps: caps_path,
        full_unsigned,
        signed_cek,
        signed_bytes,
        chip: id,
        ark,
    }
}

/// `sev-owner` with a private HOME/XDG_CACHE_HOME (the default CEK cache)
/// and no proxy settings.
fn owner(h: &RealHost, args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(OWNER);
    cmd.args(args)
        .env("HOME", h.dir.join("home"))
        .env("XDG_CACHE_HOME", h.dir.join("xdg-cache"))
        .env_remove("SEV_OWNER_CEK_CACHE")
        .env_remove("SEV_OWNER_AMD_ROOTS");
    for v in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(v);
    }
    cmd.output().unwrap()
}

/// A tiny key distribution server on 127.0.0.1: answers `/cek/id/<chip>`
/// with `cek`, `/cek/id/<big>` with an oversized body, anything else 404.
/// Serves `max` connections, then stops. Returns its base URL and the
/// request counter.
fn kds(
    chip: &str,
    cek: Vec<u8>,
    max: usize,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = count.clone();
    let good = format!("/cek/id/{chip}");
    let big = format!("/cek/id/{}", "b".repeat(128));
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max) {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let (status, body) = if path == good {
                ("200 OK", cek.clone())
            } else if path == big {
                ("200 OK", vec![0u8; 1 << 20])
            } else {
                ("404 Not Found", b"no such chip".to_vec())
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    (base, count)
}

fn one_error_line(o: &std::process::Output) -> String {
    assert!(!o.status.success(), "succeeded:\n{}", stdout(o));
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].starts_with("sev-owner: error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    lines[0].to_string()
}

/// Issue 9, item 11: a real host's CEK carries no ASK signature. Offline and
/// with nothing cached, verification fails and says exactly what is
/// missing: the chip id, the URL it would fetch, the options. With the
/// signed CEK from a file (`--cek`), from the cache, or fetched from a key
/// distribution server (`--fetch-cek --kds-url`, cached 0600 afterwards),
/// the chain verifies. A CEK with another key, an unsigned one, a KDS that
/// does not know the chip or answers too much are refused by name.
#[test]
fn unsigned_cek_of_a_real_host_is_replaced_by_the_signed_one() {
    let h = real_host();
    let caps = p(&h.caps);
    let ark = p(&h.ark);
    let base = ["verify", "--capabilities", caps, "--trust-ark", ark];
    let with = |extra: &[&str]| {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        owner(&h, &v)
    };

    // Offline, nothing cached: what is missing, and how to get it.
    let line = one_error_line(&with(&[]));
    assert!(line.contains("CEK signed by the ASK"), "{line}");
    assert!(line.contains(&h.chip), "{line}");
    assert!(
        line.contains(&format!("https://kdsintf.amd.com/cek/id/{}", h.chip)),
        "{line}"
    );
    assert!(
        line.contains("--fetch-cek") && line.contains("--cek FILE"),
        "{line}"
    );
    // A chain file carries no chip id: the message asks for it.
    let line = one_error_line(&owner(
        &h,
        &["verify", "--chain", p(&h.full_unsigned), "--trust-ark", ark],
    ));
    assert!(line.contains("--chip-id"), "{line}");

    // --cek FILE.
    let o = with(&["--cek", p(&h.signed_cek)]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("replaced by the signed CEK"), "{out}");
    assert!(out.contains("cek-signed.cert (--cek)"), "{out}");
    assert!(out.contains("ok    CEK signed by the ASK"), "{out}");
    let o = owner(
        &h,
        &[
            "verify",
            "--chain",
            p(&h.full_unsigned),
            "--trust-ark",
            ark,
            "--cek",
            p(&h.signed_cek),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    // Another chip's CEK, or the unsigned CEK itself, is refused.
    let other = tempfile::tempdir().unwrap();
    let (b_full, _, _) = export(&platform_copy(&platform_b(), other.path()), other.path());
    let b_cek = write(
        &h.dir,
        "other-cek.cert",
        &std::fs::read(b_full).unwrap()[3 * CERT..4 * CERT],
    );
    let line = one_error_line(&with(&["--cek", p(&b_cek)]));
    assert!(
        line.contains("public key is not the platform's CEK key"),
        "{line}"
    );
    let mut unsigned = h.signed_bytes.clone();
    strip_signatures(&mut unsigned);
    let unsigned = write(&h.dir, "unsigned-cek.cert", &unsigned);
    let line = one_error_line(&with(&["--cek", p(&unsigned)]));
    assert!(line.contains("not signed by the chain's ASK"), "{line}");

    // Bad values are named.
    let missing = h.dir.join("no-such-cek.cert");
    let line = one_error_line(&with(&["--cek", p(&missing)]));
    assert!(line.contains(p(&missing)), "{line}");
    let o = with(&["--chip-id", "xyz"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("chip id"), "{}", stderr(&o));
    let big = write(&h.dir, "big.cert", &vec![0u8; 1 << 20]);
    let line = one_error_line(&with(&["--cek", p(&big)]));
    assert!(line.contains("more than"), "{line}");

    // From a key distribution server, then from the cache.
    let cache = h.dir.join("cek-cache");
    let (url, count) = kds(&h.chip, h.signed_bytes.clone(), 4);
    let o = with(&["--fetch-cek", "--kds-url", &url, "--cek-cache", p(&cache)]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains(&format!("{url}/cek/id/{}", h.chip)), "{out}");
    assert!(out.contains("cached in"), "{out}");
    let cached = cache.join(format!("{}.cert", h.chip));
    assert_eq!(std::fs::read(&cached).unwrap(), h.signed_bytes);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cached), 0o600);
    assert_eq!(mode(&cache), 0o700);
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
    let o = with(&["--cek-cache", p(&cache)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(p(&cached)), "{}", stdout(&o));
    assert_eq!(
        count.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "served from the cache"
    );

    // The default cache directory is $XDG_CACHE_HOME/sevm/cek.
    let o = with(&["--fetch-cek", "--kds-url", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(h
        .dir
        .join(format!("xdg-cache/sevm/cek/{}.cert", h.chip))
        .is_file());

    // Unknown chip (404) and an oversized answer.
    let unknown = "c".repeat(128);
    let line = one_error_line(&with(&[
        "--fetch-cek",
        "--kds-url",
        &url,
        "--cek-cache",
        p(&h.dir.join("empty-cache")),
        "--chip-id",
        &unknown,
    ]));
    assert!(line.contains(&format!("{url}/cek/id/{unknown}")), "{line}");
    assert!(line.contains("HTTP 404"), "{line}");
    let line = one_error_line(&with(&[
        "--fetch-cek",
        "--kds-url",
        &url,
        "--cek-cache",
        p(&h.dir.join("empty-cache")),
        "--chip-id",
        &"b".repeat(128),
    ]));
    assert!(line.contains("larger than"), "{line}");
}

/// Issue 9, items 11 and 12 on the real Genoa host's chain: with no signed
/// CEK for its chip (the fixture has none), the error names the chip id
/// from the reply's cpu0-id and the URL of AMD's key server.
#[test]
fn real_genoa_chain_names_the_missing_cek() {
    let test = "real_genoa_chain_names_the_missing_cek";
    let Some(data) = testdata(test) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let Some(ca) = amd_ca(test, "genoa", tmp.path()) else {
        return;
    };
    let caps = data.join("realhost/query-sev-capabilities.reply.json");
    let o = std::process::Command::new(OWNER)
        .args([
            "verify",
            "--capabilities",
            p(&caps),
            "--generation",
            "genoa",
            "--ca",
            p(&ca),
            "--cek-cache",
            p(&tmp.path().join("cache")),
        ])
        .env("HOME", tmp.path())
        .env_remove("SEV_OWNER_AMD_ROOTS")
        .output()
        .unwrap();
    let line = one_error_line(&o);
    let chip = "06503099caf846ec9add8bc419ed84071b968cc01f218a25b2534d33dd91b082\
                b12e45830d1aa2bea481383faa4110984bd8e8058487303d60fab9a363e32657";
    assert!(
        line.contains(&format!("https://kdsintf.amd.com/cek/id/{chip}")),
        "{line}"
    );
}
