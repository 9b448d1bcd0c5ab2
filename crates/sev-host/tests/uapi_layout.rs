//! The ABI structures against the C compiler and this machine's kernel
//! headers: a small C program prints `sizeof` and `offsetof` of every
//! structure the installed headers declare, and the numbers must equal the
//! Rust layout. Structures the headers lack (Debian's headers predate SNP,
//! guest_memfd and INIT2) are skipped with a message; the unit tests in
//! `sev_host::abi` check every layout against the numbers of the current
//! uapi headers regardless (docs/protocol/linux.md#kvm-snp).
//!
//! `SEVM_UAPI_INCLUDE=DIR` points the test at another header tree instead of
//! `/usr/include`, e.g. the `usr/include` that a kernel tree's
//! `make headers_install` produces, to check against newer headers.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use core::mem::{offset_of, size_of};
use sev_host::abi::*;

/// One structure: its C name, the header that declares it, its Rust size,
/// and (C field name, Rust offset) pairs. Bit fields have no offset in C and
/// are left out (the size still covers them).
struct Spec {
    c_name: &'static str,
    header: &'static str,
    size: usize,
    fields: Vec<(&'static str, usize)>,
}

fn specs() -> Vec<Spec> {
    macro_rules! spec {
        ($c:literal, $h:literal, $t:ty, [$(($cf:literal, $rf:ident)),* $(,)?]) => {
            Spec {
                c_name: $c,
                header: $h,
                size: size_of::<$t>(),
                fields: vec![$(($cf, offset_of!($t, $rf))),*],
            }
        };
    }
    vec![
        spec!(
            "sev_issue_cmd",
            "linux/psp-sev.h",
            SevIssueCmd,
            [("cmd", cmd), ("data", data), ("error", error)]
        ),
        spec!(
            "sev_user_data_status",
            "linux/psp-sev.h",
            SevUserDataStatus,
            [
                ("api_major", api_major),
                ("api_minor", api_minor),
                ("state", state),
                ("flags", flags),
                ("build", build),
                ("guest_count", guest_count)
            ]
        ),
        spec!(
            "sev_user_data_pek_cert_import",
            "linux/psp-sev.h",
            SevUserDataPekCertImport,
            [
                ("pek_cert_address", pek_cert_address),
                ("pek_cert_len", pek_cert_len),
                ("oca_cert_address", oca_cert_address),
                ("oca_cert_len", oca_cert_len)
            ]
        ),
        spec!(
            "sev_user_data_get_id2",
            "linux/psp-sev.h",
            SevUserDataGetId2,
            [("address", address), ("length", length)]
        ),
        spec!(
            "sev_user_data_snp_status",
            "linux/psp-sev.h",
            SevUserDataSnpStatus,
            [
                ("api_major", api_major),
                ("api_minor", api_minor),
                ("state", state),
                ("build_id", build_id),
                ("guest_count", guest_count),
                ("current_tcb_version", current_tcb_version),
                ("reported_tcb_version", reported_tcb_version)
            ]
        ),
        spec!(
            "sev_user_data_snp_config",
            "linux/psp-sev.h",
            SevUserDataSnpConfig,
            [("reported_tcb", reported_tcb), ("rsvd1", rsvd1)]
        ),
        spec!(
            "sev_user_data_snp_vlek_load",
            "linux/psp-sev.h",
            SevUserDataSnpVlekLoad,
            [
                ("len", len),
                ("vlek_wrapped_version", vlek_wrapped_version),
                ("rsvd", rsvd),
                ("vlek_wrapped_address", vlek_wrapped_address)
            ]
        ),
        spec!(
            "kvm_sev_cmd",
            "linux/kvm.h",
            kvm_sev_cmd,
            [
                ("id", id),
                ("data", data),
                ("error", error),
                ("sev_fd", sev_fd)
            ]
        ),
        spec!(
            "kvm_sev_init",
            "linux/kvm.h",
            KvmSevInit,
            [
                ("vmsa_features", vmsa_features),
                ("flags", flags),
                ("ghcb_version", ghcb_version),
                ("pad1", pad1),
                ("pad2", pad2)
            ]
        ),
        spec!(
            "kvm_sev_launch_start",
            "linux/kvm.h",
            kvm_sev_launch_start,
            [
                ("handle", handle),
                ("policy", policy),
                ("dh_uaddr", dh_uaddr),
                ("dh_len", dh_len),
                ("session_uaddr", session_uaddr),
                ("session_len", session_len)
            ]
        ),
        spec!(
            "kvm_sev_snp_launch_start",
            "linux/kvm.h",
            KvmSevSnpLaunchStart,
            [
                ("policy", policy),
                ("gosvw", gosvw),
                ("flags", flags),
                ("pad0", pad0),
                ("pad1", pad1)
            ]
        ),
        spec!(
            "kvm_sev_snp_launch_update",
            "linux/kvm.h",
            KvmSevSnpLaunchUpdate,
            [
                ("gfn_start", gfn_start),
                ("uaddr", uaddr),
                ("len", len),
                ("type", page_type),
                ("pad0", pad0),
                ("flags", flags),
                ("pad1", pad1),
                ("pad2", pad2)
            ]
        ),
        spec!(
            "kvm_sev_snp_launch_finish",
            "linux/kvm.h",
            KvmSevSnpLaunchFinish,
            [
                ("id_block_uaddr", id_block_uaddr),
                ("id_auth_uaddr", id_auth_uaddr),
                ("id_block_en", id_block_en),
                ("auth_key_en", auth_key_en),
                ("vcek_disabled", vcek_disabled),
                ("host_data", host_data),
                ("pad0", pad0),
                ("flags", flags),
                ("pad1", pad1)
            ]
        ),
        spec!(
            "kvm_userspace_memory_region2",
            "linux/kvm.h",
            kvm_userspace_memory_region2,
            [
                ("slot", slot),
                ("flags", flags),
                ("guest_phys_addr", guest_phys_addr),
                ("memory_size", memory_size),
                ("userspace_addr", userspace_addr),
                ("guest_memfd_offset", guest_memfd_offset),
                ("guest_memfd", guest_memfd),
                ("pad1", pad1),
                ("pad2", pad2)
            ]
        ),
        spec!(
            "kvm_memory_attributes",
            "linux/kvm.h",
            kvm_memory_attributes,
            [
                ("address", address),
                ("size", size),
                ("attributes", attributes),
                ("flags", flags)
            ]
        ),
        spec!(
            "kvm_create_guest_memfd",
            "linux/kvm.h",
            kvm_create_guest_memfd,
            [("size", size), ("flags", flags), ("reserved", reserved)]
        ),
        spec!(
            "kvm_enable_cap",
            "linux/kvm.h",
            kvm_enable_cap,
            [("cap", cap), ("flags", flags), ("args", args), ("pad", pad)]
        ),
    ]
}

/// The installed header files in which `struct NAME {` is looked up for a
/// `#include <HEADER>` (linux/kvm.h pulls in asm/kvm.h).
fn header_files(header: &str) -> Vec<PathBuf> {
    let inc = include_root();
    match header {
        "linux/kvm.h" => vec![
            inc.join("linux/kvm.h"),
            inc.join("asm/kvm.h"),
            inc.join("x86_64-linux-gnu/asm/kvm.h"),
        ],
        other => vec![inc.join(other)],
    }
}

/// `SEVM_UAPI_INCLUDE`, or `/usr/include`.
fn include_root() -> PathBuf {
    std::env::var_os("SEVM_UAPI_INCLUDE")
        .map_or_else(|| PathBuf::from("/usr/include"), PathBuf::from)
}

fn declared(spec: &Spec) -> bool {
    let needle = format!("struct {} {{", spec.c_name);
    header_files(spec.header)
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .any(|text| text.contains(&needle))
}

fn cc_available() -> bool {
    Command::new("cc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn layouts_match_the_installed_headers() {
    if !cc_available() {
        eprintln!("SKIPPED: layouts_match_the_installed_headers: no C compiler (cc)");
        return;
    }
    let specs = specs();
    let (present, missing): (Vec<&Spec>, Vec<&Spec>) = specs.iter().partition(|s| declared(s));
    for s in &missing {
        eprintln!(
            "SKIPPED: struct {}: not in this machine's <{}> (older kernel headers)",
            s.c_name, s.header
        );
    }
    if present.is_empty() {
        eprintln!("SKIPPED: layouts_match_the_installed_headers: no structure in the headers");
        return;
    }

    let mut c = String::from("#include <stdio.h>\n#include <stddef.h>\n");
    let mut headers: Vec<&str> = present.iter().map(|s| s.header).collect();
    headers.dedup();
    for h in &headers {
        c.push_str(&format!("#include <{h}>\n"));
    }
    c.push_str("int main(void) {\n");
    for s in &present {
        let n = s.c_name;
        c.push_str(&format!("  printf(\"{n} %zu\\n\", sizeof(struct {n}));\n"));
        for (field, _) in &s.fields {
            c.push_str(&format!(
                "  printf(\"{n}.{field} %zu\\n\", offsetof(struct {n}, {field}));\n"
            ));
        }
    }
    c.push_str("  return 0;\n}\n");

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("uapi-layout");
    fs::create_dir_all(&dir).unwrap();
    let src = dir.join("layout.c");
    let exe = dir.join("layout");
    fs::write(&src, c).unwrap();
    let mut cc = Command::new("cc");
    if std::env::var_os("SEVM_UAPI_INCLUDE").is_some() {
        cc.arg("-I").arg(include_root());
    }
    let out = cc.arg("-o").arg(&exe).arg(&src).output().unwrap();
    assert!(
        out.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().unwrap();
    assert!(run.status.success());
    let printed: HashMap<String, usize> = String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (key, value) = line.split_once(' ').unwrap();
            (key.to_string(), value.parse().unwrap())
        })
        .collect();

    for s in &present {
        let n = s.c_name;
        assert_eq!(printed[n], s.size, "sizeof(struct {n})");
        for (field, offset) in &s.fields {
            assert_eq!(
                printed[&format!("{n}.{field}")],
                *offset,
                "offsetof(struct {n}, {field})"
            );
        }
        eprintln!(
            "struct {n}: size and {} offsets agree with the C compiler",
            s.fields.len()
        );
    }
}
