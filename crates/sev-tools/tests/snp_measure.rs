//! `sev-owner measure --mode seves|snp|snp:ovmf-hash`: the published
//! digests (docs/protocol/test-vectors.md#launch-digests,
//! docs/protocol/test-vectors.md#snp-launch-digests) through the binary, and
//! equality with sev-snp-measure over every vCPU type it knows.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::*;
use sevm_testutil::fixture_path;

const AMDSEV: &str = "ovmf/ovmf_AmdSev_suffix.bin";
const OVMFX64: &str = "ovmf/ovmf_OvmfX64_suffix.bin";

/// `sev-owner measure ARGS --output-format hex`.
fn owner_hex(args: &[&str]) -> String {
    let mut a = vec!["measure"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--output-format", "hex"]);
    stdout(&ok(OWNER, &a)).trim().to_string()
}

#[test]
fn published_digests_through_the_cli() {
    let test = "published_digests_through_the_cli";
    let (Some(amdsev), Some(x64)) = (fixture_path(test, AMDSEV), fixture_path(test, OVMFX64))
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let empty = write(tmp.path(), "empty", b"");
    let (fw, x64, e) = (p(&amdsev), p(&x64), p(&empty));
    let ki = ["--kernel", e, "--initrd", e];
    let cat = |parts: &[&[&str]]| -> Vec<String> {
        parts
            .iter()
            .flat_map(|p| p.iter().map(|s| s.to_string()))
            .collect()
    };
    let v4 = ["--vcpu-type", "EPYC-v4"];
    let append = ["--append", "console=ttyS0 loglevel=7"];
    let rows: Vec<(&str, Vec<String>, &str)> = vec![
        ("seves 1", cat(&[&["--mode", "seves", "--firmware", fw, "--vcpus", "1"], &v4, &ki]),
         "13810ae661ea11e2bb205621f582fee268f0367c8f97bc297b7fadef3e12002c"),
        ("seves 4", cat(&[&["--mode", "seves", "--firmware", fw, "--vcpus", "4"], &v4, &ki]),
         "0dccbcaba8e90b261bd0d2e1863a2f9da714768b7b2a19363cd6ae35aa90de91"),
        ("1", cat(&[&["--mode", "snp:ovmf-hash", "--ovmf", fw]]),
         "086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74"),
        ("2", cat(&[&["--mode", "snp", "--ovmf", fw, "--vcpus", "1", "--guest-features", "0x21"], &v4, &ki, &append]),
         "803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977"),
        ("3", cat(&[&["--mode", "snp", "--ovmf", fw, "--vcpus", "1"], &v4, &ki, &append]),
         "6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa"),
        ("4", cat(&[&["--mode", "snp", "--ovmf", fw, "--vcpus", "1", "--guest-features", "0x21"], &v4, &ki]),
         "329c8ce0972ae52343b64d34a434a86f245dfd74f5ed7aae15d22efc78fb9683632b9b50e4e1d7fa41179ef98a7ef198"),
        ("5", cat(&[&["--mode", "snp", "--ovmf", fw, "--vcpus", "1"], &v4, &ki]),
         "ddc5224521617a536ee7ce9dd6224d1b58a8d4fda1c741f3ac99fc4bfa04ba6e9fc98646d4a07a9079397fa3852819b5"),
        ("6", cat(&[&["--mode", "snp", "--ovmf", fw, "--vcpus", "1", "--guest-features", "0x21"], &v4]),
         "e1e1ca029dd7973ab9513295be68198472dcd4fc834bd9af9b63f6e8a1674dbf281a9278a4a2ebe0eed9f22adbcd0e2b"),
        ("7", cat(&[&["--mode", "snp", "--ovmf", fw, "--vcpus", "1"], &v4]),
         "19358ba9a7615534a9a1e2f0dfc29384dcd4dcb7062ff9c6013b26869a5fc6ecabe033c48dd6f6db5d6d76e7c5df632d"),
        ("7 resumed", cat(&[&["--mode", "snp", "--ovmf", fw, "--vcpus", "1", "--snp-ovmf-hash",
            "086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74"], &v4]),
         "19358ba9a7615534a9a1e2f0dfc29384dcd4dcb7062ff9c6013b26869a5fc6ecabe033c48dd6f6db5d6d76e7c5df632d"),
        ("8", cat(&[&["--mode", "snp", "--ovmf", fw, "--vcpus", "4", "--guest-features", "0x21"], &v4, &ki]),
         "4953b1fb416fa874980e8442b3706d345926d5f38879134e00813c5d7abcbe78eafe7b422907be0b4698e2414a631942"),
        ("9", cat(&[&["--mode", "snp", "--ovmf", fw, "--vcpus", "4"], &v4, &ki]),
         "5061fffb019493a903613d56d54b94912a1a2f9e4502385f5c194616753720a92441310ba6c4933de877c36e23046ad5"),
        ("10", cat(&[&["--mode", "snp", "--ovmf", x64, "--vcpus", "1", "--guest-features", "0x21"], &v4]),
         "28797ae0afaba4005a81e629acebfb59e6687949d6be44007cd5506823b0dd66f146aaae26ff291eed7b493d8a64c385"),
        ("11", cat(&[&["--mode", "snp", "--ovmf", x64, "--vcpus", "1"], &v4]),
         "da0296de8193586a5512078dcd719eccecbd87e2b825ad4148c44f665dc87df21e5b49e21523a9ad993afdb6a30b4005"),
        ("13", cat(&[&["--mode", "snp", "--ovmf", fw, "--vcpus", "1", "--vmm-type", "ec2", "--guest-features", "0x21"], &v4, &ki]),
         "0ce9ccc06bab55eebe8abc234f3df6514883977a68a591b71052498ab52b2f1aa415db338033946ef93aa8278c0d67fb"),
        ("14", cat(&[&["--mode", "snp", "--ovmf", fw, "--vcpus", "1", "--vmm-type", "ec2"], &v4, &ki]),
         "0883bd0eeb716e65b7b977a321c278d1e51b33b5c655fab985443bbcc65c086b9c15e8a0bd8811050dec7e24964e5056"),
        ("17", cat(&[&["--mode", "snp", "--ovmf", fw, "--vcpus", "1", "--vmm-type", "gce"], &ki]),
         "5da7106cf14cf46b1725ebab123eb9e53bd46a1e9f400cd0c08e7827b04b688ea8b4e403c8404efed4397ea5d5d0722e"),
        ("18", cat(&[&["--mode", "snp", "--ovmf", fw, "--vcpus", "4", "--vmm-type", "gce"], &ki]),
         "5c5debf100fc339f90276e761ee1f1658d08922c3b20e2a2e6c7a6c3370b2452a15a00eae11886a93d6fd1e7ab81e29d"),
    ];
    for (row, args, want) in &rows {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(owner_hex(&args), *want, "row {row}");
    }
    // Row 12, and the errors sev-snp-measure reports.
    let snp1 = |more: &[&'static str]| {
        [
            &["measure", "--mode", "snp", "--ovmf"],
            &[fw][..],
            &["--vcpus", "1"],
            more,
        ]
        .concat()
    };
    fails(
        OWNER,
        &[
            "measure",
            "--mode",
            "snp",
            "--ovmf",
            x64,
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC",
            "--kernel",
            e,
        ],
        "Kernel specified but OVMF metadata doesn't include SNP_KERNEL_HASHES section",
    );
    fails(
        OWNER,
        &snp1(&[]),
        "missing --vcpu-type or --vcpu-sig or --vcpu-family in guest mode 'snp'",
    );
    fails(
        OWNER,
        &[
            "measure",
            "--mode",
            "seves",
            "--ovmf",
            fw,
            "--vcpu-type",
            "EPYC",
        ],
        "missing --vcpus N in guest mode 'seves'",
    );
    fails(
        OWNER,
        &snp1(&["--vcpu-type", "EPYC-v9"]),
        "unknown --vcpu-type \"EPYC-v9\"",
    );
    let fms = [
        "--vcpu-family",
        "300",
        "--vcpu-model",
        "1",
        "--vcpu-stepping",
        "0",
    ];
    fails(OWNER, &snp1(&fms), "CPU family 300 is out of range");
    fails(
        OWNER,
        &snp1(&["--vcpu-type", "EPYC", "--tik", "x"]),
        "SNP has no LAUNCH_MEASURE",
    );
    fails(
        OWNER,
        &["measure", "--ovmf", fw, "--vcpus", "1"],
        "--vcpus and --vcpu-* apply to --mode seves and snp",
    );
    fails(
        OWNER,
        &snp1(&["--vcpu-type", "EPYC", "--snp-ovmf-hash", "abcd"]),
        "is not 96 hex digits",
    );
    fails(
        OWNER,
        &snp1(&["--vcpu-type", "EPYC", "--legacy-es-init"]),
        "--legacy-es-init is SEV-ES only",
    );
    // The same signature three ways, and the old VMSA-file options still work.
    let snp2 = |more: &[&'static str]| {
        owner_hex(
            &[
                &["--mode", "snp", "--ovmf"],
                &[fw][..],
                &["--vcpus", "2"],
                more,
            ]
            .concat(),
        )
    };
    let by_fms = snp2(&[
        "--vcpu-family",
        "25",
        "--vcpu-model",
        "1",
        "--vcpu-stepping",
        "1",
    ]);
    let by_sig = snp2(&["--vcpu-sig", "0xA00F11"]);
    let by_name = snp2(&["--vcpu-type", "epyc-milan-v2"]);
    assert_eq!(by_fms, by_sig);
    assert_eq!(by_fms, by_name);
    let vmsa0 = fixture_path(test, "vmsa/vmsa0.bin");
    let vmsa1 = fixture_path(test, "vmsa/vmsa1.bin");
    if let (Some(v0), Some(v1)) = (vmsa0, vmsa1) {
        // sevctl's pages are legacy-init Milan pages: the same digest as the
        // built ones only if their FPU fields matched, which they do not.
        let files = owner_hex(&[
            "--firmware",
            fw,
            "--num-cpus",
            "2",
            "--vmsa-cpu0",
            p(&v0),
            "--vmsa-cpu1",
            p(&v1),
        ]);
        let built = owner_hex(&[
            "--mode",
            "seves",
            "--firmware",
            fw,
            "--vcpus",
            "2",
            "--vcpu-type",
            "EPYC-Milan",
        ]);
        assert_eq!(files.len(), 64);
        assert_ne!(files, built);
        // With --legacy-es-init the built pages are sevctl's.
        let legacy = owner_hex(&[
            "--mode",
            "seves",
            "--firmware",
            fw,
            "--vcpus",
            "2",
            "--vcpu-type",
            "EPYC-Milan",
            "--legacy-es-init",
        ]);
        assert_eq!(files, legacy);
    }
}

/// The Python interpreter of an installed `sev-snp-measure` script (its
/// `#!` line), to run its library in one process for the whole matrix.
fn interpreter_of(tool: &Path) -> Option<PathBuf> {
    let path = if tool.components().count() > 1 {
        tool.to_path_buf()
    } else {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())?
    };
    let text = std::fs::read(&path).ok()?;
    let first = text.split(|&b| b == b'\n').next()?;
    let shebang = std::str::from_utf8(first).ok()?.strip_prefix("#!")?;
    let mut words = shebang.split_whitespace();
    let prog = words.next()?;
    // `#!/usr/bin/env python3` names the interpreter second.
    let prog = if prog.ends_with("/env") {
        words.next()?
    } else {
        prog
    };
    Some(PathBuf::from(prog))
}

/// Computes, with sev-snp-measure's own library, one digest per line:
/// `mode vmm vcpu-type vcpus kernel-case digest`, for every vCPU type it
/// knows.
const MATRIX_PY: &str = r#"
import sys
from sevsnpmeasure import guest, vcpu_types
from sevsnpmeasure.sev_mode import SevMode
from sevsnpmeasure.vmm_types import VMMType
ovmf, kernel, initrd = sys.argv[1:4]
append = "console=ttyS0 root=/dev/vda1 quiet"
cases = {"none": (None, None, None), "kia": (kernel, initrd, append), "k": (kernel, None, None)}
modes = {"seves": SevMode.SEV_ES, "snp": SevMode.SEV_SNP}
for mode_name, mode in modes.items():
    for vmm in (VMMType.QEMU, VMMType.ec2, VMMType.gce):
        types = vcpu_types.CPU_SIGS.items() if vmm == VMMType.QEMU else [("EPYC", 0)]
        for name, sig in types:
            for vcpus in (1, 2, 4, 8):
                for case, (k, i, a) in cases.items():
                    ld = guest.calc_launch_digest(mode, vcpus, sig, ovmf, k, i, a, 0x1, "", vmm)
                    print(mode_name, vmm.name, name, vcpus, case, ld.hex())
"#;

/// sev-snp-measure and sev-owner agree on the AmdSev fixture: modes seves
/// and snp × 1, 2, 4, 8 vCPUs × every vCPU type sev-snp-measure knows × no
/// kernel, kernel only, kernel + initrd + append (and the ec2 and gce VMM
/// types), sev-snp-measure's side computed in one Python process.
#[test]
fn sev_snp_measure_matrix_agrees() {
    let test = "sev_snp_measure_matrix_agrees";
    let Some(tool) = peer(test, "sev-snp-measure") else {
        return;
    };
    let Some(amdsev) = fixture_path(test, AMDSEV) else {
        return;
    };
    let Some(python) = interpreter_of(&tool) else {
        panic!("cannot find the Python interpreter of {}", tool.display());
    };
    let start = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let kernel = write(tmp.path(), "kernel", &vec![0x4d; 3 << 20]);
    let initrd = write(tmp.path(), "initrd", &vec![0x17; 1 << 20]);
    let out = Command::new(&python)
        .args(["-c", MATRIX_PY, p(&amdsev), p(&kernel), p(&initrd)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = String::from_utf8(out.stdout).unwrap();
    let mut compared = 0;
    let mut types = BTreeMap::new();
    for line in theirs.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let [mode, vmm, vcpu_type, vcpus, case, want] = f[..] else {
            panic!("unexpected line {line:?}");
        };
        let mut args = vec![
            "--mode",
            mode,
            "--ovmf",
            p(&amdsev),
            "--vcpus",
            vcpus,
            "--vmm-type",
            vmm,
        ];
        if vmm == "QEMU" {
            args.extend(["--vcpu-type", vcpu_type]);
            *types.entry(vcpu_type.to_string()).or_insert(0) += 1;
        }
        match case {
            "kia" => args.extend([
                "--kernel",
                p(&kernel),
                "--initrd",
                p(&initrd),
                "--append",
                "console=ttyS0 root=/dev/vda1 quiet",
            ]),
            "k" => args.extend(["--kernel", p(&kernel)]),
            _ => {}
        }
        assert_eq!(owner_hex(&args), want, "{line}");
        compared += 1;
    }
    // Every type sev-snp-measure knows was compared, and we know them all.
    assert!(types.len() >= 16, "{types:?}");
    assert!(types
        .keys()
        .all(|t| sev_proto::vmsa::VcpuModel::by_name(t).is_some()));
    assert_eq!(compared, 2 * (types.len() + 2) * 4 * 3);

    // The command line gives what the library gave (one row per mode).
    for (mode, line) in ["seves", "snp"].iter().map(|m| {
        (
            m,
            theirs
                .lines()
                .find(|l| l.starts_with(&format!("{m} QEMU EPYC-Milan 4 kia")))
                .unwrap(),
        )
    }) {
        let cli = Command::new(&tool)
            .args([
                "--mode",
                mode,
                "--ovmf",
                p(&amdsev),
                "--vcpus",
                "4",
                "--vcpu-type",
                "EPYC-Milan",
            ])
            .args([
                "--kernel",
                p(&kernel),
                "--initrd",
                p(&initrd),
                "--append",
                "console=ttyS0 root=/dev/vda1 quiet",
            ])
            .output()
            .unwrap();
        assert!(cli.status.success());
        assert!(
            line.ends_with(String::from_utf8_lossy(&cli.stdout).trim()),
            "{mode}"
        );
    }
    eprintln!(
        "{compared} digests compared in {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

/// Debian's OVMF: sev-snp-measure and sev-owner agree for SEV-ES and SNP;
/// the 4 MiB build has no SEV metadata, so sev-owner refuses an SNP digest
/// that no launch can produce (docs/protocol/choices.md#u23).
#[test]
fn debian_ovmf_agrees() {
    let test = "debian_ovmf_agrees";
    let Some(tool) = peer(test, "sev-snp-measure") else {
        return;
    };
    let code = Path::new("/usr/share/OVMF/OVMF_CODE.fd");
    let code_4m = Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd");
    if !code.exists() || !code_4m.exists() {
        sevm_testutil::skip(
            test,
            "Debian OVMF in /usr/share/OVMF (apt-get install ovmf)",
        );
        return;
    }
    for (mode, fw, vcpus) in [
        ("snp", code, "1"),
        ("snp", code, "8"),
        ("seves", code, "4"),
        ("seves", code_4m, "2"),
        ("snp:ovmf-hash", code_4m, ""),
    ] {
        let mut args = vec!["--mode", mode, "--ovmf", p(fw)];
        if !vcpus.is_empty() {
            args.extend(["--vcpus", vcpus, "--vcpu-type", "EPYC-Genoa"]);
        }
        let theirs = Command::new(&tool).args(&args).output().unwrap();
        assert!(theirs.status.success(), "{args:?}");
        assert_eq!(
            owner_hex(&args),
            String::from_utf8_lossy(&theirs.stdout).trim(),
            "{args:?}"
        );
    }
    fails(
        OWNER,
        &[
            "measure",
            "--mode",
            "snp",
            "--ovmf",
            p(code_4m),
            "--vcpus",
            "1",
            "--vcpu-type",
            "EPYC",
        ],
        "OVMF has no SEV metadata",
    );
}
