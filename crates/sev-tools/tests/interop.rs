//! Interoperability with the real peers: sevctl (chain verification,
//! `measurement build`, `secret build`) and sev-snp-measure (launch
//! digests), run side by side with sev-owner / sev-platform.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::*;
use sev_proto::secret_table::SecretTable;
use sev_psp::memory::{GuestBacking, Region, VecBacking};
use sev_psp::rng::seeded_rng;
use sev_psp::Platform;
use sevm_testutil::{fixture, fixture_path};

const SEV_CHAIN_LEN: usize = 4 * 0x824;

/// `sevctl verify --sev CHAIN --ca CA` accepts the chain `sev-platform
/// export` writes for an emulated platform, parsing our byte layouts and
/// verifying our RSA-PSS and ECDSA signatures. sevctl cannot check that the
/// ARK is AMD's when --ca is given (it verifies to whatever ARK the CA file
/// holds), so the test also shows that both tools reject the same
/// tampering.
#[test]
fn sevctl_verify_accepts_sev_platform_export() {
    let test = "sevctl_verify_accepts_sev_platform_export";
    let Some(sevctl) = peer(test, "sevctl") else {
        return;
    };
    let sevctl = sevctl.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (full, ca, ark) = export(&platform_a(), tmp.path());
    let bytes = std::fs::read(&full).unwrap();
    let sev = write(tmp.path(), "sev.chain", &bytes[..SEV_CHAIN_LEN]);

    let o = ok(sevctl, &["verify", "--sev", p(&sev), "--ca", p(&ca)]);
    let out = stdout(&o);
    for name in ["PDH", "PEK", "OCA", "CEK", "ASK", "ARK"] {
        assert!(out.contains(name), "{out}");
    }
    // U+0338 (combining slash) marks an invalid signature; the legend line
    // shows it too.
    let marked = out
        .lines()
        .filter(|l| !l.contains("= self signed"))
        .any(|l| l.contains('\u{338}'));
    assert!(!marked, "sevctl marked an invalid signature:\n{out}");
    // The full file works too (sevctl reads the first four certificates).
    ok(sevctl, &["verify", "--sev", p(&full), "--ca", p(&ca)]);
    ok(
        OWNER,
        &["verify", "--chain", p(&full), "--trust-ark", p(&ark)],
    );

    // Flip one bit of the OCA's signature on the PEK (PEK SIG1 at 0x41C).
    let mut bad = bytes[..SEV_CHAIN_LEN].to_vec();
    bad[0x824 + 0x41C + 5] ^= 1;
    let bad = write(tmp.path(), "bad.chain", &bad);
    let o = run(sevctl, &["verify", "--sev", p(&bad), "--ca", p(&ca)]);
    assert!(!o.status.success(), "sevctl accepted a bad PEK signature");
    fails(
        OWNER,
        &[
            "verify",
            "--chain",
            p(&bad),
            "--ca",
            p(&ca),
            "--trust-ark",
            p(&ark),
        ],
        "PEK signed by the OCA",
    );
}

/// Both tools accept the real Rome chain (docs/protocol/test-vectors.md#chain-checks): sevctl with
/// its built-in Rome roots, sev-owner with the pinned Rome root.
#[test]
fn sevctl_and_sev_owner_agree_on_the_real_rome_chain() {
    let test = "sevctl_and_sev_owner_agree_on_the_real_rome_chain";
    let Some(sevctl) = peer(test, "sevctl") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some(chain) = fixture_chain(test, "rome", tmp.path()) else {
        return;
    };
    let Some(ca) = amd_ca(test, "rome", tmp.path()) else {
        return;
    };
    ok(sevctl.to_str().unwrap(), &["verify", "--sev", p(&chain)]);
    let o = ok(
        OWNER,
        &[
            "verify",
            "--chain",
            p(&chain),
            "--ca",
            p(&ca),
            "--generation",
            "rome",
        ],
    );
    let out = stdout(&o);
    assert!(out.contains("= AMD's genuine Rome root"), "{out}");
    fails(
        OWNER,
        &[
            "verify",
            "--chain",
            p(&chain),
            "--ca",
            p(&ca),
            "--generation",
            "milan",
        ],
        "ARK is the pinned root",
    );
}

fn both_measure(tmp: &Path, sevctl: &str, common: &[&str], tag: &str) {
    let a = tmp.join(format!("sevctl-{tag}.bin"));
    let b = tmp.join(format!("owner-{tag}.bin"));
    let mut args = vec!["measurement", "build"];
    args.extend_from_slice(common);
    args.extend(["--outfile", p(&a)]);
    ok(sevctl, &args);
    let mut args = vec!["measure"];
    args.extend_from_slice(common);
    args.extend(["--outfile", p(&b)]);
    ok(OWNER, &args);
    let (x, y) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(x.len(), 48);
    assert_eq!(x, y, "{tag}: sevctl and sev-owner differ");
    // And sev-owner accepts sevctl's blob as the launch-measure output.
    let mut filtered: Vec<&str> = Vec::new();
    let mut skip = false;
    for a in common {
        if skip {
            skip = false;
        } else if *a == "--nonce" || *a == "--launch-measure-blob" {
            skip = true;
        } else {
            filtered.push(a);
        }
    }
    let mut args = vec!["measure"];
    args.extend(filtered);
    args.extend(["--verify", p(&a)]);
    let o = ok(OWNER, &args);
    assert!(
        stdout(&o).contains("measurement verified"),
        "{}",
        stdout(&o)
    );
}

/// `sevctl measurement build` and `sev-owner measure` write the same 48
/// bytes: the docs/protocol/test-vectors.md#sevctl-measurement cases a–c and a 3 MiB firmware with
/// a multi-megabyte kernel and initrd.
#[test]
fn sevctl_measurement_build_and_sev_owner_measure_agree() {
    let test = "sevctl_measurement_build_and_sev_owner_measure_agree";
    let Some(sevctl) = peer(test, "sevctl") else {
        return;
    };
    let sevctl = sevctl.to_str().unwrap();
    let Some(ovmf) = fixture_path(test, "ovmf/sevctl_OVMF.amdsev_trimmed.bin") else {
        return;
    };
    let Some(suffix) = fixture(test, "ovmf/ovmf_AmdSev_suffix.bin") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let tik = write(
        tmp.path(),
        "tik.bin",
        &hex::decode("3569cf61a32a602b87185ac6e0f55913").unwrap(),
    );
    let kernel = write(tmp.path(), "vmlinuz", b"fake vmlinuz\n");
    let initrd = write(tmp.path(), "initrd", b"fake initrd\n");
    let base = [
        "--api-major",
        "1",
        "--api-minor",
        "40",
        "--build-id",
        "0x28",
        "--policy",
        "0x3",
        "--tik",
        p(&tik),
        "--nonce",
        "wxP6tRHCFrFQWxsuqZA8QA==",
    ];
    let mut a = base.to_vec();
    a.extend([
        "--launch-digest",
        "xkvRAfyaSizgonxAjZIAkR8TmolUabBKQKb6KJCDDSM=",
    ]);
    both_measure(tmp.path(), sevctl, &a, "a");
    let mut b = base.to_vec();
    b.extend(["--firmware", p(&ovmf)]);
    both_measure(tmp.path(), sevctl, &b, "b");
    let mut c = b.clone();
    c.extend([
        "--kernel",
        p(&kernel),
        "--initrd",
        p(&initrd),
        "--cmdline",
        "foo bar baz fake kernel=cmdline",
    ]);
    both_measure(tmp.path(), sevctl, &c, "c");

    let mut fw: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    fw.extend(&suffix);
    let fw = write(tmp.path(), "big.fd", &fw);
    let k: Vec<u8> = (0..5u32 << 20).map(|i| (i ^ (i >> 9)) as u8).collect();
    let k = write(tmp.path(), "big-kernel", &k);
    let i: Vec<u8> = (0..7u32 << 20)
        .map(|i| (i.wrapping_mul(31) >> 3) as u8)
        .collect();
    let i = write(tmp.path(), "big-initrd", &i);
    let mut d = base.to_vec();
    d.extend([
        "--firmware",
        p(&fw),
        "--kernel",
        p(&k),
        "--initrd",
        p(&i),
        "--cmdline",
        "console=ttyS0 root=/dev/vda",
    ]);
    both_measure(tmp.path(), sevctl, &d, "d");
}

fn snp_measure(tool: &str, args: &[&str]) -> String {
    let mut a = vec!["--mode", "sev", "--output-format", "hex"];
    a.extend_from_slice(args);
    let o = ok(tool, &a);
    stdout(&o).trim().to_lowercase()
}

fn owner_digest(args: &[&str]) -> String {
    let mut a = vec!["measure", "--json"];
    a.extend_from_slice(args);
    let o = ok(OWNER, &a);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    v["launch_digest"].as_str().unwrap().to_string()
}

/// `sev-snp-measure --mode sev` and `sev-owner measure` give the same launch
/// digest on Debian's OVMF (no kernel hashes) and on firmware with
/// kernel-hashes support (the AmdSev fixture) with kernel, initrd and
/// command line, with and without the optional parts.
#[test]
fn sev_snp_measure_and_sev_owner_agree() {
    let test = "sev_snp_measure_and_sev_owner_agree";
    let Some(tool) = peer(test, "sev-snp-measure") else {
        return;
    };
    let tool = tool.to_str().unwrap();
    let debian = Path::new("/usr/share/OVMF/OVMF_CODE.fd");
    if !debian.exists() {
        sevm_testutil::skip(
            test,
            "Debian OVMF /usr/share/OVMF/OVMF_CODE.fd (apt-get install ovmf)",
        );
        return;
    }
    assert_eq!(
        snp_measure(tool, &["--ovmf", p(debian)]),
        owner_digest(&["--firmware", p(debian)])
    );

    let Some(amdsev) = fixture_path(test, "ovmf/ovmf_AmdSev_suffix.bin") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let kernel = write(tmp.path(), "k", &vec![0x4d; 1 << 20]);
    let initrd = write(tmp.path(), "i", &vec![0x17; 300_000]);
    let empty = write(tmp.path(), "empty", b"");
    for args in [
        vec![
            "--kernel",
            p(&kernel),
            "--initrd",
            p(&initrd),
            "--append",
            "console=ttyS0 quiet",
        ],
        vec!["--kernel", p(&kernel)],
        vec![
            "--kernel",
            p(&empty),
            "--initrd",
            p(&empty),
            "--append",
            "console=ttyS0 loglevel=7",
        ],
        vec!["--kernel", p(&kernel), "--append", " spaces kept "],
    ] {
        let mut s = vec!["--ovmf", p(&amdsev)];
        s.extend(&args);
        let mut o = vec!["--firmware", p(&amdsev)];
        for a in &args {
            o.push(if *a == "--append" { "--cmdline" } else { a });
        }
        assert_eq!(snp_measure(tool, &s), owner_digest(&o), "{args:?}");
    }
    // docs/protocol/test-vectors.md#launch-digests: the published digest for the third case.
    assert_eq!(
        owner_digest(&[
            "--firmware",
            p(&amdsev),
            "--kernel",
            p(&empty),
            "--initrd",
            p(&empty),
            "--cmdline",
            "console=ttyS0 loglevel=7",
        ]),
        "82a3ee5d537c3620628270c292ae30cb40c3c878666a7890ee7ef2a08fb535ff"
    );
}

/// A launch on the emulated firmware (in-process) with a session made by
/// `sev-owner session`; LAUNCH_MEASURE's blob then feeds `sevctl secret
/// build` and `sev-owner secret`. With a fixed IV both write the same
/// bytes; with random IVs the firmware accepts both packets, and the guest
/// memory holds the table.
#[test]
fn sevctl_and_sev_owner_secrets_are_accepted_by_the_emulated_firmware() {
    let test = "sevctl_and_sev_owner_secrets_are_accepted_by_the_emulated_firmware";
    let Some(sevctl) = peer(test, "sevctl") else {
        return;
    };
    let sevctl = sevctl.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let platform = platform_copy(&platform_a(), dir);
    let (full, _, ark) = export(&platform, dir);
    ok(
        OWNER,
        &[
            "session",
            "--chain",
            p(&full),
            "--trust-ark",
            p(&ark),
            "--policy",
            "0x0",
            "--out-dir",
            p(dir),
        ],
    );
    let godh = sev_tools::io::read_b64_file(&dir.join("vm_godh.b64")).unwrap();
    let session = sev_tools::io::read_b64_file(&dir.join("vm_session.b64")).unwrap();

    let fw = Platform::open(&platform, seeded_rng(1)).unwrap();
    fw.init(false).unwrap();
    let handle = fw
        .launch_start(
            0,
            sev_proto::abi::Policy::from_bits(0),
            Some(&godh),
            Some(&session),
        )
        .unwrap();
    fw.activate(handle, 100).unwrap();
    let mem = VecBacking::new(&[Region {
        gpa: 0,
        len: 0x20_0000,
    }])
    .unwrap();
    mem.write_plain(0x1000, &[0xA5; 0x1000]).unwrap();
    fw.launch_update_data(handle, &mem, 0x1000, 0x1000).unwrap();
    let mut blob = [0u8; 48];
    fw.launch_measure(handle, &mut blob).unwrap();
    let blob = write(dir, "measure.bin", &blob);

    let secret_file = write(dir, "luks.txt", b"correct horse battery staple");
    let guid = "736869e5-84f0-4973-92ec-06879ce3da0b";
    let spec = format!("{guid}:{}", p(&secret_file));
    let (tik, tek) = (dir.join("vm_tik.bin"), dir.join("vm_tek.bin"));
    let keys = [
        "--tik",
        p(&tik),
        "--tek",
        p(&tek),
        "--launch-measure-blob",
        p(&blob),
    ];
    let out = |tag: &str| {
        (
            dir.join(format!("{tag}.hdr")),
            dir.join(format!("{tag}.pay")),
        )
    };
    let iv = "rFR07U3TLH2YnsUj2SVZ7A==";

    let (h1, p1) = out("sevctl-iv");
    let mut a = vec!["secret", "build"];
    a.extend(keys);
    a.extend(["--secret", &spec, "--iv", iv, p(&h1), p(&p1)]);
    ok(sevctl, &a);
    let (h2, p2) = out("owner-iv");
    let mut a = vec!["secret"];
    a.extend(keys);
    a.extend(["--secret", &spec, "--iv", iv, p(&h2), p(&p2)]);
    ok(OWNER, &a);
    assert_eq!(std::fs::read(&h1).unwrap(), std::fs::read(&h2).unwrap());
    assert_eq!(std::fs::read(&p1).unwrap(), std::fs::read(&p2).unwrap());

    let (h3, p3) = out("sevctl");
    let mut a = vec!["secret", "build"];
    a.extend(keys);
    a.extend(["--secret", &spec, p(&h3), p(&p3)]);
    ok(sevctl, &a);
    let (h4, p4) = out("owner");
    let mut a = vec!["secret"];
    a.extend(keys);
    a.extend(["--secret", &spec, p(&h4), p(&p4)]);
    ok(OWNER, &a);
    assert_ne!(
        std::fs::read(&h3).unwrap(),
        std::fs::read(&h4).unwrap(),
        "random IVs"
    );

    let area = 0x10_0000u64;
    for (h, pay) in [(&h3, &p3), (&h4, &p4)] {
        let hdr = std::fs::read(h).unwrap();
        let payload = std::fs::read(pay).unwrap();
        mem.write_plain(area, &vec![0u8; payload.len()]).unwrap();
        fw.launch_secret(handle, &mem, &hdr, area, payload.len() as u32, &payload)
            .unwrap_or_else(|e| panic!("{}: {e}", h.display()));
        let mut plain = vec![0u8; payload.len()];
        mem.read_plain(area, &mut plain).unwrap();
        let entries = SecretTable::parse(&plain).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].guid.to_string(), guid);
        assert_eq!(&entries[0].data[..], b"correct horse battery staple");
    }
    // A packet for another measurement is refused.
    let mut hdr = std::fs::read(&h4).unwrap();
    hdr[30] ^= 1;
    let payload = std::fs::read(&p4).unwrap();
    assert!(fw
        .launch_secret(handle, &mem, &hdr, area, payload.len() as u32, &payload)
        .is_err());
}

/// The AMD roots come from a roots directory ($SEV_OWNER_AMD_ROOTS) when the
/// chain has none, and are accepted only for their built-in fingerprints.
#[test]
fn amd_roots_from_the_roots_directory() {
    let test = "amd_roots_from_the_roots_directory";
    let Some(roots) = fixture_path(test, "amd-roots") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some(chain) = fixture_chain(test, "naples", tmp.path()) else {
        return;
    };
    let verify = |dir: &Path| {
        std::process::Command::new(OWNER)
            .args(["verify", "--chain", p(&chain), "--generation", "naples"])
            .env("SEV_OWNER_AMD_ROOTS", dir)
            .env("XDG_DATA_HOME", tmp.path().join("nothing"))
            .output()
            .unwrap()
    };
    let o = verify(&roots);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("AMD Naples roots directory"),
        "{}",
        stdout(&o)
    );
    // Rome's certificates under Naples' names: refused by fingerprint.
    let fake = tmp.path().join("fake");
    std::fs::create_dir(&fake).unwrap();
    std::fs::copy(roots.join("rome-ask.cert"), fake.join("naples-ask.cert")).unwrap();
    std::fs::copy(roots.join("rome-ark.cert"), fake.join("naples-ark.cert")).unwrap();
    let o = verify(&fake);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("is not AMD's naples ARK"),
        "{}",
        stderr(&o)
    );
}
