//! Unmodified `sevctl` (virtee) run under the launcher against the emulated
//! platform: `show`, `generate`, `provision`, `rotate`, `reset`, and
//! `verify --sev` of a chain exported through `/dev/sev`, each checked
//! against the platform as `sev-platform --emulated` sees it. `sevctl
//! export` replaces the firmware's CEK with one downloaded from AMD's key
//! server by chip id, which cannot know an emulated chip: under
//! `sev-emulate --emulated-kds` the platform's emulated key server answers
//! that download (docs/guide/sev-emulate.md#kds), and `verify` accepts what
//! `export` wrote against the emulated ASK and ARK; `export --full` still
//! fails, as it only takes AMD's built-in ASKs (docs/guide/sev-emulate.md#sevctl).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const CERT: usize = 0x824;

/// sevctl (None once test `test` said it is skipped) and a copy of the
/// emulated platform.
fn sevctl(test: &str) -> Option<(PathBuf, Scratch)> {
    Some((
        peer(test, "sevctl", "--version")?,
        Scratch::with_platform_copy(),
    ))
}

/// `sevctl ARGS` under the launcher: (success, stdout, stderr).
fn run(plat: &Path, sevctl: &Path, args: &[&str]) -> (bool, String, String) {
    let o = emulate(plat, sevctl, args);
    (o.status.success(), text(&o.stdout), text(&o.stderr))
}

fn run_ok(plat: &Path, sevctl: &Path, args: &[&str]) -> String {
    let (ok, out, err) = run(plat, sevctl, args);
    assert!(ok, "sevctl {args:?} failed:\nstdout: {out}\nstderr: {err}");
    out
}

fn status(plat: &Path) -> Value {
    let s = ok(platform_tool(&[&emu(plat), "--json", "status"]), "status");
    serde_json::from_str::<Value>(&s).unwrap()["status"].clone()
}

fn chain(plat: &Path, dir: &Path) -> Vec<u8> {
    let f = dir.join("chain");
    ok(platform_tool(&[&emu(plat), "export", p(&f)]), "export");
    std::fs::read(f).unwrap()
}

#[test]
fn sevctl_show_reads_the_emulated_platform() {
    const TEST: &str = "sevctl_show_reads_the_emulated_platform";
    let Some((sevctl, t)) = sevctl(TEST) else {
        return;
    };
    let plat = t.platform.as_path();

    let s = status(plat);
    let version = run_ok(plat, &sevctl, &["show", "version"]);
    assert_eq!(
        version.trim(),
        format!("{}.{}.{}", s["api_major"], s["api_minor"], s["build"])
    );
    assert_eq!(version.trim(), "1.55.21");

    let id = run_ok(plat, &sevctl, &["show", "identifier"]);
    let v: Value =
        serde_json::from_str(&ok(platform_tool(&[&emu(plat), "--json", "id"]), "id")).unwrap();
    assert_eq!(id.trim(), v["id"].as_str().unwrap().to_uppercase());

    assert_eq!(run_ok(plat, &sevctl, &["show", "guests"]).trim(), "0");
    // UNINIT and self-owned: no flag.
    assert_eq!(run_ok(plat, &sevctl, &["show", "flags"]).trim(), "");
    // INITed with SEV-ES (the driver's INIT for PDH_GEN, via sevctl
    // rotate): "es".
    run_ok(plat, &sevctl, &["rotate"]);
    assert_eq!(status(plat)["es"], true);
    assert_eq!(run_ok(plat, &sevctl, &["show", "flags"]).trim(), "es");
}

#[test]
fn sevctl_generate_provision_rotate_reset() {
    const TEST: &str = "sevctl_generate_provision_rotate_reset";
    let Some((sevctl, t)) = sevctl(TEST) else {
        return;
    };
    let (d, plat) = (t.dir.as_path(), t.platform.as_path());
    let before = chain(plat, d);

    let (cert, key) = (d.join("oca.cert"), d.join("oca.key"));
    run_ok(plat, &sevctl, &["generate", p(&cert), p(&key)]);
    assert_eq!(std::fs::metadata(&cert).unwrap().len(), CERT as u64);

    // provision: PEK_CSR, signed by sevctl with the OCA key, PEK_CERT_IMPORT.
    run_ok(plat, &sevctl, &["provision", p(&cert), p(&key)]);
    assert_eq!(status(plat)["externally_owned"], true);
    let owned = chain(plat, d);
    assert_eq!(
        &owned[2 * CERT..3 * CERT],
        &std::fs::read(&cert).unwrap()[..]
    );
    assert_ne!(&owned[CERT..2 * CERT], &before[CERT..2 * CERT], "new PEK");
    let flags = run_ok(plat, &sevctl, &["show", "flags"]);
    assert!(flags.lines().any(|l| l == "owned"), "{flags}");
    // Again: the firmware's ALREADY_OWNED comes back as an error.
    let (ok2, _, err) = run(plat, &sevctl, &["provision", p(&cert), p(&key)]);
    assert!(!ok2, "provisioning an owned platform");
    assert!(err.contains("import"), "{err}");

    run_ok(plat, &sevctl, &["rotate"]);
    let rotated = chain(plat, d);
    assert_ne!(&rotated[..CERT], &owned[..CERT], "new PDH");
    assert_eq!(&rotated[CERT..], &owned[CERT..], "PEK, OCA, CEK kept");

    run_ok(plat, &sevctl, &["reset"]);
    let reset = chain(plat, d);
    assert_eq!(status(plat)["externally_owned"], false);
    // FACTORY_RESET leaves the platform UNINIT.
    assert_eq!(status(plat)["state"], "UNINIT");
    assert_ne!(&reset[..3 * CERT], &rotated[..3 * CERT]);
    assert_eq!(&reset[3 * CERT..], &rotated[3 * CERT..], "CEK kept");
}

#[test]
fn sevctl_verify_of_a_chain_exported_through_dev_sev() {
    const TEST: &str = "sevctl_verify_of_a_chain_exported_through_dev_sev";
    let Some((sevctl, t)) = sevctl(TEST) else {
        return;
    };
    let (d, plat) = (t.dir.as_path(), t.platform.as_path());
    // sevctl's chain format (PDH, PEK, OCA, CEK), exported through
    // /dev/sev by sev-platform's hardware backend; the emulated ASK ‖ ARK.
    let (file, ca) = (d.join("chain"), d.join("ca"));
    ok(
        emulate(plat, &tool("sev-platform"), &["export", p(&file)]),
        "export through /dev/sev",
    );
    ok(
        platform_tool(&[&emu(plat), "export", "--ca", p(&ca)]),
        "export --ca",
    );
    let out = run_ok(
        plat,
        &sevctl,
        &["verify", "--sev", p(&file), "--ca", p(&ca)],
    );
    // Six certificates, each signature and self-signature valid.
    let certs = cert_lines(&out);
    assert_eq!(certs.len(), 6, "{out}");
    assert!(certs.iter().all(|l| valid(l)), "{out}");
    // Without --ca sevctl checks against AMD's built-in roots, which did not
    // sign the emulated CEK.
    let (ok2, _, err) = run(plat, &sevctl, &["verify", "--sev", p(&file)]);
    assert!(!ok2);
    assert!(
        err.contains("builtin") || err.contains("verification failed"),
        "{err}"
    );
    // A tampered PEK is reported.
    let mut bad = std::fs::read(&file).unwrap();
    bad[CERT + 0x100] ^= 1;
    let badf = d.join("bad");
    std::fs::write(&badf, bad).unwrap();
    let (ok3, _, _) = run(
        plat,
        &sevctl,
        &["verify", "--sev", p(&badf), "--ca", p(&ca)],
    );
    assert!(!ok3, "a tampered chain verifies");
}

#[test]
fn sevctl_export_reaches_the_key_server_after_dev_sev() {
    const TEST: &str = "sevctl_export_reaches_the_key_server_after_dev_sev";
    let Some((sevctl, t)) = sevctl(TEST) else {
        return;
    };
    let plat = t.platform.as_path();
    let f = t.dir.join("chain");
    // The download goes to a closed local port (a proxy nobody serves),
    // so that the test neither depends on nor contacts the network.
    let started = std::time::Instant::now();
    let o = output_within(
        launcher(plat)
            .arg("--")
            .arg(&sevctl)
            .args(["export", p(&f)])
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("https_proxy", "http://127.0.0.1:9")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy"),
        DEADLINE,
    );
    let (ok1, err) = (o.status.success(), text(&o.stderr));
    assert!(err.contains("transport error"), "{err}");
    // Without --emulated-kds there is no route to a key server, and the
    // failure comes at once (well within output_within's bound).
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    // PDH_CERT_EXPORT and GET_ID2 were served (no "unable to export SEV
    // certificates" / "error fetching identifier"); the download of the
    // CEK by chip id from AMD's server cannot succeed for an emulated chip.
    assert!(!ok1, "sevctl export succeeded: {err}");
    assert!(!err.contains("unable to export SEV certificates"), "{err}");
    assert!(!err.contains("error fetching identifier"), "{err}");
    assert!(!f.exists(), "no chain written");
}

/// `sevctl ARGS` under `sev-emulate --emulated-kds`, with the caller's
/// proxy settings pointing elsewhere (a closed port, and AMD's host
/// excluded from proxying): the launcher's replace them.
fn run_kds(plat: &Path, sevctl: &Path, args: &[&str]) -> (bool, String, String) {
    let o = output_within(
        launcher(plat)
            .arg("--emulated-kds")
            .arg("--")
            .arg(sevctl)
            .args(args)
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("https_proxy", "http://127.0.0.1:9")
            .env("NO_PROXY", "kdsintf.amd.com")
            .env("no_proxy", "kdsintf.amd.com"),
        DEADLINE,
    );
    (o.status.success(), text(&o.stdout), text(&o.stderr))
}

/// The certificate lines of `sevctl verify`'s output (not the legend's).
fn cert_lines(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| {
            ["PDH", "PEK", "OCA", "CEK", "ASK", "ARK"]
                .iter()
                .any(|c| l.contains(&format!("{c} ")))
                && !l.contains('=')
        })
        .collect()
}

/// Whether a certificate line marks its signatures valid (the invalid marks
/// carry combining strokes; the legend line shows them).
fn valid(line: &str) -> bool {
    !line.contains('\u{338}') && !line.contains('\u{337}')
}

/// `sevctl verify --sev CHAIN --ca CA`: whether it passed, and the six
/// certificate lines all marked valid.
fn verifies(plat: &Path, sevctl: &Path, chain: &Path, ca: &Path) -> (bool, String) {
    let (ok, out, err) = run(plat, sevctl, &["verify", "--sev", p(chain), "--ca", p(ca)]);
    let certs = cert_lines(&out).into_iter().filter(|l| valid(l)).count();
    (ok && certs == 6, format!("{out}{err}"))
}

#[test]
fn sevctl_export_gets_the_cek_from_the_emulated_kds() {
    const TEST: &str = "sevctl_export_gets_the_cek_from_the_emulated_kds";
    let Some((sevctl, t)) = sevctl(TEST) else {
        return;
    };
    let (d, plat) = (t.dir.as_path(), t.platform.as_path());
    let file = d.join("chain.cert");
    let (ok1, out, err) = run_kds(plat, &sevctl, &["export", p(&file)]);
    assert!(ok1, "sevctl export under --emulated-kds:\n{out}{err}");
    let exported = std::fs::read(&file).unwrap();
    assert_eq!(exported.len(), 4 * CERT);
    // PDH, PEK, OCA through /dev/sev and the CEK from the key server: the
    // platform's, as sev-platform exports it.
    let ours = chain(plat, d);
    assert_eq!(&exported[3 * CERT..], &ours[3 * CERT..4 * CERT], "the CEK");
    assert_eq!(&exported[..3 * CERT], &ours[..3 * CERT], "PDH, PEK, OCA");

    let ca = d.join("ca");
    ok(
        platform_tool(&[&emu(plat), "export", "--ca", p(&ca)]),
        "export --ca",
    );
    let (good, text) = verifies(plat, &sevctl, &file, &ca);
    assert!(good, "{text}");

    // --full appends AMD's built-in ASK and ARK of the CEK's generation:
    // no AMD ASK signed an emulated CEK, so sevctl finds none.
    let full = d.join("full.cert");
    let (ok2, out, err) = run_kds(plat, &sevctl, &["export", "--full", p(&full)]);
    assert!(!ok2, "export --full of an emulated CEK succeeded: {out}");
    assert!(
        err.contains("failed to deduce platform generation"),
        "{err}"
    );
    assert!(
        err.contains("could not find a matching builtin certificate"),
        "{err}"
    );
    assert!(!full.exists(), "no chain written");
}

/// A platform whose firmware holds its CEK unsigned (as real firmware
/// does): the chain read through /dev/sev does not verify; the one sevctl
/// exports under --emulated-kds carries the CEK the key server signed.
#[test]
fn sevctl_export_replaces_an_unsigned_cek_with_the_emulated_kds_one() {
    const TEST: &str = "sevctl_export_replaces_an_unsigned_cek_with_the_emulated_kds_one";
    let Some(sevctl) = peer(TEST, "sevctl", "--version") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let plat = d.join("platform");
    ok(
        platform_tool(&[&emu(&plat), "init", "--ark-bits", "2048", "--unsigned-cek"]),
        "init --unsigned-cek",
    );
    let (ca, dev) = (d.join("ca"), d.join("dev.cert"));
    ok(
        platform_tool(&[&emu(&plat), "export", "--ca", p(&ca)]),
        "export --ca",
    );
    ok(
        emulate(&plat, &tool("sev-platform"), &["export", p(&dev)]),
        "export through /dev/sev",
    );
    let (good, text) = verifies(&plat, &sevctl, &dev, &ca);
    assert!(!good, "an unsigned CEK verified: {text}");

    let file = d.join("chain.cert");
    let (ok1, out, err) = run_kds(&plat, &sevctl, &["export", p(&file)]);
    assert!(ok1, "{out}{err}");
    let exported = std::fs::read(&file).unwrap();
    let signed = sev_psp::Platform::open(&plat, sev_psp::rng::os_rng())
        .unwrap()
        .signed_cek()
        .to_vec();
    assert_eq!(&exported[3 * CERT..], &signed[..], "the key server's CEK");
    assert_ne!(
        &exported[3 * CERT..],
        &std::fs::read(&dev).unwrap()[3 * CERT..]
    );
    let (good, text) = verifies(&plat, &sevctl, &file, &ca);
    assert!(good, "{text}");
}
