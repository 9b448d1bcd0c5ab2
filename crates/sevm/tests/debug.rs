//! Debugging SEV guests through the real binary: the hypervisor's view
//! (HMP `x`/`xp`, `pmemsave`, `memsave`) shows ciphertext; the decrypted
//! pair (`sev-dbg-decrypt`/`sev-dbg-encrypt`) and the GDB stub go through
//! DBG_DECRYPT/DBG_ENCRYPT and are refused with POLICY_FAILURE for NODBG.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{json, Value};

const FOUR_GIB: u64 = 1 << 32;
/// The demo image is 2 MiB, mapped to end at 4 GiB.
const FW_SIZE: u64 = 2 << 20;
const FW_BASE: u64 = FOUR_GIB - FW_SIZE;

fn image_at(image: &[u8], gpa: u64, len: usize) -> Vec<u8> {
    let off = (gpa - FW_BASE) as usize;
    image[off..off + len].to_vec()
}

fn decrypt(q: &mut Qmp, gpa: u64, size: u64) -> Vec<u8> {
    let r = q.ok("sev-dbg-decrypt", json!({"gpa": gpa, "size": size}));
    unb64(r["data"].as_str().unwrap())
}

/// QEMU's `xp /Nxb` output for `bytes` at `gpa`.
fn hex_dump(gpa: u64, bytes: &[u8]) -> String {
    let mut s = String::new();
    for (i, line) in bytes.chunks(8).enumerate() {
        s.push_str(&format!("{:016x}:", gpa + 8 * i as u64));
        for b in line {
            s.push_str(&format!(" 0x{b:02x}"));
        }
        s.push_str("\r\n");
    }
    s
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

both_backends!(
    debug_reads_and_writes => debug_reads_and_writes_are_decrypted_when_the_policy_allows,
    debug_reads_and_writes_are_decrypted_when_the_policy_allows_hardware_under_launcher
);

fn debug_reads_and_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let platform = fresh_platform(d, "platform");
    let fw = demo_image(d);
    let image = std::fs::read(&fw).unwrap();
    let sock = d.join("qmp.sock");
    // Policy 0: NODBG clear.
    let obj = sev_object(&platform, 0x0, None, "");
    let mut vm = Sevm::spawn(sev_args(&fw, 16, &obj, Some(&sock)));
    let mut q = vm.qmp(&sock);
    q.ok("qmp_capabilities", Value::Null);

    // Decrypted reads of the (private, measured) firmware: plaintext, any
    // alignment, across page boundaries.
    let reset = FOUR_GIB - 16;
    assert_eq!(decrypt(&mut q, reset, 16), image_at(&image, reset, 16));
    let odd = FOUR_GIB - 0x1003;
    assert_eq!(decrypt(&mut q, odd, 37), image_at(&image, odd, 37));
    let cross = FOUR_GIB - 0x2008;
    assert_eq!(
        decrypt(&mut q, cross, 0x1010),
        image_at(&image, cross, 0x1010)
    );
    assert!(decrypt(&mut q, reset, 0).is_empty());

    // The whole firmware to a file (any size up to the end of guest memory).
    let plain_file = d.join("fw.plain");
    q.ok(
        "sev-dbg-decrypt",
        json!({"gpa": FW_BASE, "size": FW_SIZE, "filename": plain_file}),
    );
    assert_eq!(std::fs::read(&plain_file).unwrap(), image);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&plain_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // What the hypervisor sees: ciphertext, in QEMU's x/xp format.
    let xp = q.ok(
        "human-monitor-command",
        json!({"command-line": format!("xp /16xb {reset:#x}")}),
    );
    let xp = xp.as_str().unwrap();
    assert!(xp.starts_with("00000000fffffff0: 0x"), "{xp}");
    assert_eq!(xp.lines().count(), 2, "{xp}");
    assert_host_view(xp, &hex_dump(reset, &image_at(&image, reset, 16)));
    // x (virtual): paging is off before the guest runs, so the same bytes.
    let x = q.ok(
        "human-monitor-command",
        json!({"command-line": format!("x /16xb {reset:#x}")}),
    );
    assert_eq!(x.as_str().unwrap(), xp);
    let help = q.ok("human-monitor-command", json!({"command-line": "help"}));
    assert!(help.as_str().unwrap().contains("xp /fmt addr"));
    let unknown = q.ok("human-monitor-command", json!({"command-line": "info foo"}));
    assert_eq!(unknown, "unknown command: 'info'\r\n");
    let outside = q.ok(
        "human-monitor-command",
        json!({"command-line": "xp /4xw 0x40000000"}),
    );
    assert!(
        outside
            .as_str()
            .unwrap()
            .starts_with("Cannot access memory"),
        "{outside}"
    );

    // pmemsave / memsave: the same ciphertext, no plaintext in the file.
    let pfile = d.join("fw.pmem");
    q.ok(
        "pmemsave",
        json!({"val": FW_BASE, "size": FW_SIZE, "filename": pfile}),
    );
    let cipher = std::fs::read(&pfile).unwrap();
    assert_eq!(cipher.len() as u64, FW_SIZE);
    assert_host_view(&cipher, &image);
    let greeting = sevm_demo::GREETING.as_bytes();
    assert!(contains(&image, &greeting[..16]));
    assert_eq!(
        contains(&cipher, &greeting[..16]),
        !host_view_is_ciphertext()
    );
    let mfile = d.join("fw.mem");
    q.ok(
        "memsave",
        json!({"val": FW_BASE, "size": FW_SIZE, "filename": mfile, "cpu-index": 0}),
    );
    assert_eq!(std::fs::read(&mfile).unwrap(), cipher);
    let e = q.err(
        "pmemsave",
        json!({"val": 15 << 20, "size": 2 << 20, "filename": d.join("x")}),
    );
    assert!(e.contains("not inside guest memory"), "{e}");
    let e = q.err(
        "memsave",
        json!({"val": 0, "size": 16, "filename": d.join("x"), "cpu-index": 3}),
    );
    assert_eq!(e, "Parameter 'cpu-index' expects a CPU number");
    let e = q.err(
        "pmemsave",
        json!({"val": 0, "size": 16, "filename": d.join("no/such/dir")}),
    );
    assert!(e.starts_with("Could not open '"), "{e}");

    // Decrypted writes, unaligned (read-modify-write), into RAM.
    // (RAM the guest never wrote is not private yet: its DBG_DECRYPT is
    // garbage, as on hardware, and the read-modify-write keeps that garbage.)
    let at = 0x10_0003u64;
    let before = decrypt(&mut q, at - 3, 16);
    q.ok("sev-dbg-encrypt", json!({"gpa": at, "data": b64(b"HELLO")}));
    let back = decrypt(&mut q, at - 3, 16);
    assert_eq!(&back[3..8], b"HELLO");
    assert_eq!(&back[..3], &before[..3]);
    assert_eq!(&back[8..], &before[8..]);
    // Now private: stable under further reads and small writes.
    q.ok("sev-dbg-encrypt", json!({"gpa": at + 5, "data": b64(b"!")}));
    let again = decrypt(&mut q, at - 3, 16);
    assert_eq!(&again[3..9], b"HELLO!");
    assert_eq!(&again[9..], &back[9..]);
    let xp = q.ok(
        "human-monitor-command",
        json!({"command-line": format!("xp /16xb {:#x}", at - 3)}),
    );
    assert_host_view(xp.as_str().unwrap(), &hex_dump(at - 3, &again));
    // A write spanning a page boundary.
    let span: Vec<u8> = (0..64u8).collect();
    q.ok(
        "sev-dbg-encrypt",
        json!({"gpa": 0x10_1000 - 20, "data": b64(&span)}),
    );
    assert_eq!(decrypt(&mut q, 0x10_1000 - 20, 64), span);

    // A file's contents, across several pages, then read back to a file.
    let blob: Vec<u8> = (0..3 * 4096 + 5).map(|i| (i * 7 % 251) as u8).collect();
    let src = d.join("blob.bin");
    std::fs::write(&src, &blob).unwrap();
    q.ok(
        "sev-dbg-encrypt",
        json!({"gpa": 0x30_0007, "filename": src}),
    );
    let dst = d.join("blob.back");
    q.ok(
        "sev-dbg-decrypt",
        json!({"gpa": 0x30_0007, "size": blob.len(), "filename": dst}),
    );
    let back = std::fs::read(&dst).unwrap();
    let diff: Vec<usize> = (0..blob.len().min(back.len()))
        .filter(|i| back[*i] != blob[*i])
        .collect();
    assert!(
        back.len() == blob.len() && diff.is_empty(),
        "{} bytes back of {}; differing at {diff:?}",
        back.len(),
        blob.len()
    );
    let e = q.err(
        "sev-dbg-encrypt",
        json!({"gpa": 0, "data": "AA==", "filename": src}),
    );
    assert!(e.contains("exactly one of"), "{e}");
    let e = q.err(
        "sev-dbg-encrypt",
        json!({"gpa": (16 << 20) - 4096, "filename": src}),
    );
    assert!(e.contains("not inside guest memory"), "{e}");

    // Bounded by guest RAM (16 MiB) and the firmware window.
    let e = q.err(
        "sev-dbg-decrypt",
        json!({"gpa": (16 << 20) - 8, "size": 16}),
    );
    assert!(e.contains("not inside guest memory"), "{e}");
    let e = q.err(
        "sev-dbg-encrypt",
        json!({"gpa": FOUR_GIB - 2, "data": b64(b"abcd")}),
    );
    assert!(e.contains("not inside guest memory"), "{e}");
    let e = q.err("sev-dbg-decrypt", json!({"gpa": 0, "size": 17 << 20}));
    assert!(e.contains("too large"), "{e}");
    let e = q.err("sev-dbg-encrypt", json!({"gpa": 0, "data": "!!"}));
    assert!(e.contains("not valid base64"), "{e}");

    // The guest still runs correctly after all this.
    q.ok("cont", Value::Null);
    let st = vm.wait();
    let out = vm.stdout_text();
    assert_exit(st, 0, &vm.stderr_text());
    assert!(out.contains(sevm_demo::GREETING), "{out}");
}

both_backends!(
    nodbg_guest => nodbg_guest_refuses_decrypted_access_but_shows_ciphertext,
    nodbg_guest_refuses_decrypted_access_but_shows_ciphertext_hardware_under_launcher
);

fn nodbg_guest() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let platform = fresh_platform(d, "platform");
    let fw = demo_image(d);
    let image = std::fs::read(&fw).unwrap();
    let sock = d.join("qmp.sock");
    let obj = sev_object(&platform, 0x1, None, "");
    let mut vm = Sevm::spawn(sev_args(&fw, 16, &obj, Some(&sock)));
    let mut q = vm.qmp(&sock);
    q.ok("qmp_capabilities", Value::Null);
    for (cmd, args) in [
        ("sev-dbg-decrypt", json!({"gpa": FOUR_GIB - 16, "size": 16})),
        (
            "sev-dbg-decrypt",
            json!({"gpa": FW_BASE, "size": 64, "filename": d.join("p")}),
        ),
        (
            "sev-dbg-encrypt",
            json!({"gpa": 0x10_0000, "data": b64(b"x")}),
        ),
    ] {
        let e = q.err(cmd, args);
        assert!(
            e.contains("failed: POLICY_FAILURE (0x07): request not allowed by the guest policy"),
            "{cmd}: {e}"
        );
        assert!(e.contains("DBG_"), "{cmd}: {e}");
    }
    // The hypervisor's view still works: ciphertext.
    let pfile = d.join("fw.pmem");
    q.ok(
        "pmemsave",
        json!({"val": FW_BASE, "size": FW_SIZE, "filename": pfile}),
    );
    let cipher = std::fs::read(&pfile).unwrap();
    assert_host_view(&cipher, &image);
    let xp = q.ok(
        "human-monitor-command",
        json!({"command-line": "xp /2xg 0xfffffff0"}),
    );
    assert!(xp.as_str().unwrap().starts_with("00000000fffffff0: 0x"));
    q.ok("quit", Value::Null);
    let st = vm.wait();
    assert_exit(st, 0, &vm.stderr_text());
}

#[test]
fn decrypted_access_needs_an_sev_guest() {
    if !sevm_testutil::kvm("decrypted_access_needs_an_sev_guest") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let fw = demo_image(d);
    let image = std::fs::read(&fw).unwrap();
    let sock = d.join("qmp.sock");
    let mut vm = Sevm::spawn([
        "-bios".to_string(),
        fw.display().to_string(),
        "-m".into(),
        "16".into(),
        "-S".into(),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", sock.display()),
    ]);
    let mut q = vm.qmp(&sock);
    q.ok("qmp_capabilities", Value::Null);
    let e = q.err("sev-dbg-decrypt", json!({"gpa": 0, "size": 16}));
    assert!(e.contains("SEV is not enabled"), "{e}");
    // Without SEV the hypervisor sees plaintext.
    let xp = q.ok(
        "human-monitor-command",
        json!({"command-line": "xp /16xb 0xfffffff0"}),
    );
    assert_eq!(
        xp.as_str().unwrap(),
        hex_dump(FOUR_GIB - 16, &image_at(&image, FOUR_GIB - 16, 16))
    );
    q.ok("quit", Value::Null);
    vm.wait();
}

// ----- gdb -------------------------------------------------------------------

fn gdb_available(test: &str) -> bool {
    sevm_testutil::peer_tool(
        test,
        "gdb",
        "--version",
        "install gdb (apt-get install gdb)",
    )
    .is_some()
}

/// Waits for the stub's log line and returns its port.
fn gdb_port(vm: &Sevm) -> u16 {
    assert!(
        vm.wait_for_stderr("gdb stub listening on"),
        "{}",
        vm.stderr_text()
    );
    let lines = vm.stderr.lock().unwrap();
    let line = lines
        .iter()
        .find(|l| l.contains("gdb stub listening on"))
        .unwrap();
    line.rsplit(':').next().unwrap().trim().parse().unwrap()
}

fn run_gdb(port: u16, commands: &[&str]) -> String {
    let mut cmd = Command::new("gdb");
    cmd.args(["-batch", "-nx", "-ex", "set pagination off", "-ex"])
        .arg(format!("target remote 127.0.0.1:{port}"));
    for c in commands {
        cmd.arg("-ex").arg(c);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("--- gdb ---\n{text}");
    text
}

fn gdb_vm(d: &Path, policy: u32) -> (Sevm, std::path::PathBuf, Vec<u8>) {
    let platform = fresh_platform(d, "platform");
    let fw = demo_image(d);
    let image = std::fs::read(&fw).unwrap();
    let sock = d.join("qmp.sock");
    let obj = sev_object(&platform, policy, None, "");
    let mut args = sev_args(&fw, 16, &obj, Some(&sock));
    args.extend([
        "-gdb".into(),
        "tcp:127.0.0.1:0".into(),
        "-smp".into(),
        "2".into(),
    ]);
    (Sevm::spawn(args), sock, image)
}

both_backends!(
    gdb_attaches => gdb_attaches_reads_plaintext_writes_and_continues,
    gdb_attaches_reads_plaintext_writes_and_continues_hardware_under_launcher
);

fn gdb_attaches() {
    let test = "gdb_attaches_reads_plaintext_writes_and_continues";
    if !gdb_available(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (mut vm, sock, image) = gdb_vm(tmp.path(), 0x0);
    let mut q = vm.qmp(&sock);
    q.ok("qmp_capabilities", Value::Null);
    let port = gdb_port(&vm);
    let out = run_gdb(
        port,
        &[
            "info registers rip",
            "x/16xb 0xfffffff0",
            "set {unsigned int}0x100000 = 0xdeadbeef",
            "x/1xw 0x100000",
            "info threads",
            "thread 2",
            "info registers rip",
            "thread 1",
            "continue",
        ],
    );
    // Reset state: rip 0xfff0 (cs base 0xffff0000).
    assert!(out.contains("rip            0xfff0"), "{out}");
    // The firmware's last 16 bytes, in plaintext.
    let tail = image_at(&image, FOUR_GIB - 16, 16);
    let first8: Vec<String> = tail[..8].iter().map(|b| format!("0x{b:02x}")).collect();
    assert!(out.contains(&first8.join("\t")), "{out}");
    assert!(out.contains("0x100000:\t0xdeadbeef"), "{out}");
    // Two vCPUs, two threads; the AP also sits at its reset state.
    assert!(out.contains("Thread 2"), "{out}");
    assert!(out.contains("Switching to thread 2"), "{out}");
    // The guest ran to its end and gdb saw it exit.
    assert!(out.contains("exited normally"), "{out}");
    let st = vm.wait();
    let stdout = vm.stdout_text();
    assert_exit(st, 0, &vm.stderr_text());
    assert!(stdout.contains(sevm_demo::GREETING), "{stdout}");
}

both_backends!(
    gdb_nodbg => gdb_sees_an_error_for_nodbg_memory,
    gdb_sees_an_error_for_nodbg_memory_hardware_under_launcher
);

fn gdb_nodbg() {
    let test = "gdb_sees_an_error_for_nodbg_memory";
    if !gdb_available(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (mut vm, sock, _) = gdb_vm(tmp.path(), 0x1);
    let mut q = vm.qmp(&sock);
    q.ok("qmp_capabilities", Value::Null);
    let port = gdb_port(&vm);
    let out = run_gdb(
        port,
        &[
            "info registers rip",
            "x/4xb 0xfffffff0",
            "set {unsigned int}0x100000 = 1",
        ],
    );
    assert!(out.contains("rip            0xfff0"), "{out}");
    assert!(
        out.contains("Cannot access memory at address 0xfffffff0"),
        "{out}"
    );
    assert!(
        out.contains("Cannot access memory at address 0x100000"),
        "{out}"
    );
    assert!(vm.stderr_text().contains("POLICY_FAILURE"));
    // gdb detached; the VM is still there and still waiting in prelaunch.
    assert_eq!(q.ok("query-status", Value::Null)["status"], "prelaunch");
    q.ok("quit", Value::Null);
    let st = vm.wait();
    assert_exit(st, 0, &vm.stderr_text());
}

// ----- a running guest ----------------------------------------------------------

/// The multiplicative inverse of the memtest generation constant mod 2^32.
fn inverse(a: u32) -> u32 {
    // Newton's iteration for odd `a`.
    let mut x = a;
    for _ in 0..5 {
        x = x.wrapping_mul(2u32.wrapping_sub(a.wrapping_mul(x)));
    }
    x
}

both_backends!(
    running_guest_debugged => a_running_guest_is_debugged_in_place,
    a_running_guest_is_debugged_in_place_hardware_under_launcher
);

fn running_guest_debugged() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let platform = fresh_platform(d, "platform");
    let base = 0x20_0000u32;
    let pages = 32u32;
    let fw = memtest_image_at(d, base, pages, 0);
    let sock = d.join("qmp.sock");
    let obj = sev_object(&platform, 0x0, None, "");
    let mut args = sev_args(&fw, 16, &obj, Some(&sock));
    args.extend(["-gdb".into(), "tcp:127.0.0.1:0".into()]);
    let mut vm = Sevm::spawn(args);
    let rx = serial(&mut vm);
    let mut q = vm.qmp(&sock);
    q.ok("qmp_capabilities", Value::Null);
    q.ok("cont", Value::Null);
    loop {
        let line = rx.recv_timeout(WAIT).expect("memtest did not fill in time");
        if line.contains("memtest: filled") {
            break;
        }
    }
    // While it runs: x (virtual: the vCPU is paused for a moment to read
    // its control registers) and xp agree, and the guest keeps running.
    let cmd = format!("{base:#x}");
    let x = q.ok(
        "human-monitor-command",
        json!({"command-line": format!("x /2xg {cmd}")}),
    );
    assert!(
        x.as_str().unwrap().starts_with("0000000000200000: 0x"),
        "{x}"
    );
    assert_eq!(q.ok("query-status", Value::Null)["status"], "running");

    q.ok("stop", Value::Null);
    let ciphertext = q.ok(
        "human-monitor-command",
        json!({"command-line": format!("xp /4xw {cmd}")}),
    );
    let virt = q.ok(
        "human-monitor-command",
        json!({"command-line": format!("x /4xw {cmd}")}),
    );
    assert_eq!(ciphertext, virt);
    let inv = inverse(0x9E37_79B9);
    for page in [0u32, 7, pages - 1] {
        let a = base + page * 4096;
        let plain = decrypt(&mut q, u64::from(a), 4096);
        let words: Vec<u32> = plain
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        // One generation per page: every dword is a ^ (g * 0x9E3779B9).
        assert!(words.iter().all(|w| *w == words[0]), "page {a:#x} torn");
        let g = (words[0] ^ a).wrapping_mul(inv);
        assert!((1..1_000_000).contains(&g), "page {a:#x}: generation {g}");
        // The hypervisor's view of the same page is ciphertext.
        if page == 0 {
            let mut expect = String::from("0000000000200000:");
            for w in &words[..4] {
                expect.push_str(&format!(" 0x{w:08x}"));
            }
            assert_host_view(ciphertext.as_str().unwrap().trim_end(), &expect);
        }
    }
    // memsave of the range while paused: no plaintext dword pattern.
    let mfile = d.join("range.mem");
    q.ok(
        "memsave",
        json!({"val": base, "size": pages * 4096, "filename": mfile}),
    );
    let dump = std::fs::read(&mfile).unwrap();
    let first = u32::from_le_bytes(dump[..4].try_into().unwrap());
    let varies = dump
        .chunks(4)
        .take(1024)
        .any(|c| u32::from_le_bytes(c.try_into().unwrap()) != first);
    assert_eq!(varies, host_view_is_ciphertext());
    q.ok("cont", Value::Null);
    assert_eq!(q.ok("query-status", Value::Null)["status"], "running");

    // gdb attaching to the running guest stops it, reads plaintext (one
    // generation per page), and detaching lets it run on.
    if gdb_available("a_running_guest_is_debugged_in_place") {
        let port = gdb_port(&vm);
        q.events.clear();
        let out = run_gdb(port, &[&format!("x/4xw {cmd}"), "info registers eflags"]);
        let line = out
            .lines()
            .find(|l| l.starts_with("0x200000:"))
            .unwrap_or_else(|| panic!("{out}"));
        let words: Vec<u32> = line
            .split_whitespace()
            .skip(1)
            .map(|w| u32::from_str_radix(w.trim_start_matches("0x"), 16).unwrap())
            .collect();
        assert_eq!(words.len(), 4, "{out}");
        assert!(words.iter().all(|w| *w == words[0]), "{out}");
        let g = (words[0] ^ base).wrapping_mul(inv);
        assert!((1..1_000_000).contains(&g), "{out}");
        q.event("STOP");
        q.event("RESUME");
        assert_eq!(q.ok("query-status", Value::Null)["status"], "running");
    }
    q.ok("quit", Value::Null);
    let st = vm.wait();
    assert_exit(st, 0, &vm.stderr_text());
}

// ----- SEV hardware (run only where /dev/sev exists) ---------------------------

#[test]
fn hardware_debug_follows_the_policy() {
    const TEST: &str = "hardware_debug_follows_the_policy";
    if !sevm_testutil::sev_device(TEST) || !sevm_testutil::kvm(TEST) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let fw = demo_image(d);
    let image = std::fs::read(&fw).unwrap();
    for policy in [0x0u32, 0x1] {
        let sock = d.join(format!("qmp{policy}.sock"));
        let mut vm = Sevm::spawn([
            "-bios".to_string(),
            fw.display().to_string(),
            "-m".into(),
            "16".into(),
            "-S".into(),
            "-machine".into(),
            "q35,memory-encryption=sev0".into(),
            "-object".into(),
            format!("sev-guest,id=sev0,policy={policy:#x}"),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", sock.display()),
        ]);
        let mut q = vm.qmp(&sock);
        q.ok("qmp_capabilities", Value::Null);
        let reset = FOUR_GIB - 16;
        let xp = q.ok(
            "human-monitor-command",
            json!({"command-line": format!("xp /16xb {reset:#x}")}),
        );
        assert_ne!(
            xp.as_str().unwrap(),
            hex_dump(reset, &image_at(&image, reset, 16))
        );
        if policy == 0 {
            let odd = FOUR_GIB - 0x1003;
            assert_eq!(decrypt(&mut q, odd, 37), image_at(&image, odd, 37));
            q.ok(
                "sev-dbg-encrypt",
                json!({"gpa": 0x10_0003, "data": b64(b"HELLO")}),
            );
            assert_eq!(&decrypt(&mut q, 0x10_0003, 5), b"HELLO");
        } else {
            let e = q.err("sev-dbg-decrypt", json!({"gpa": reset, "size": 16}));
            assert!(e.contains("POLICY_FAILURE"), "{e}");
        }
        q.ok("quit", Value::Null);
        vm.wait();
    }
}

#[test]
fn a_busy_gdb_port_is_a_clear_error() {
    if !sevm_testutil::kvm("a_busy_gdb_port_is_a_clear_error") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let fw = demo_image(tmp.path());
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let mut vm = Sevm::spawn([
        "-bios".to_string(),
        fw.display().to_string(),
        "-m".into(),
        "16".into(),
        "-S".into(),
        "-gdb".into(),
        format!("tcp:127.0.0.1:{port}"),
    ]);
    let st = vm.wait();
    let err = vm.stderr_text();
    assert_exit(st, 1, &err);
    assert!(
        err.contains(&format!(
            "sevm: -gdb: cannot listen on tcp:127.0.0.1:{port}: "
        )),
        "{err}"
    );
}

both_backends!(
    gdb_single_steps => gdb_single_steps_and_stops_at_a_breakpoint,
    gdb_single_steps_and_stops_at_a_breakpoint_hardware_under_launcher
);

fn gdb_single_steps() {
    let test = "gdb_single_steps_and_stops_at_a_breakpoint";
    if !gdb_available(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (mut vm, sock, image) = gdb_vm(tmp.path(), 0x0);
    let mut q = vm.qmp(&sock);
    q.ok("qmp_capabilities", Value::Null);
    let port = gdb_port(&vm);
    // The demo guest: reset vector `jmp near 0xF020` (real mode, CS base
    // 0xFFFF0000), then the 16-bit entry switches to 32-bit code at
    // 0xFFFF0000 (flat CS, so rip is the linear address there).
    let code32 = image_at(&image, 0xFFFF_0000, 1)[0];
    let out = run_gdb(
        port,
        &[
            "stepi",
            "info registers rip",
            "break *0xffff0000",
            "continue",
            "info registers rip",
            "x/1xb 0xffff0000",
            "delete",
            "continue",
        ],
    );
    assert!(out.contains("rip            0xf020"), "{out}");
    assert!(out.contains("Breakpoint 1, 0x00000000ffff0000"), "{out}");
    assert!(out.contains("rip            0xffff0000"), "{out}");
    // Breakpoints do not touch guest memory (the stub single-steps).
    assert!(
        out.contains(&format!("0xffff0000:\t0x{code32:02x}")),
        "{out}"
    );
    assert!(out.contains("exited normally"), "{out}");
    let st = vm.wait();
    let stdout = vm.stdout_text();
    assert_exit(st, 0, &vm.stderr_text());
    assert!(stdout.contains(sevm_demo::GREETING), "{stdout}");
}

/// One packet's payload from a raw GDB connection (acks skipped).
fn read_packet(s: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    // Skip acks up to '$'.
    loop {
        s.read_exact(&mut b).unwrap();
        if b[0] == b'$' {
            break;
        }
    }
    loop {
        s.read_exact(&mut b).unwrap();
        if b[0] == b'#' {
            break;
        }
        out.push(b[0]);
    }
    let mut cs = [0u8; 2];
    s.read_exact(&mut cs).unwrap();
    String::from_utf8(out).unwrap()
}

fn send_packet(s: &mut std::net::TcpStream, payload: &str) {
    use std::io::Write;
    let sum = payload.bytes().fold(0u8, |a, b| a.wrapping_add(b));
    s.write_all(format!("${payload}#{sum:02x}").as_bytes())
        .unwrap();
}

both_backends!(
    gdb_interrupt => gdb_interrupt_stops_a_running_guest,
    gdb_interrupt_stops_a_running_guest_hardware_under_launcher
);

fn gdb_interrupt() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let platform = fresh_platform(d, "platform");
    let fw = memtest_image_at(d, 0x20_0000, 16, 0);
    let sock = d.join("qmp.sock");
    let obj = sev_object(&platform, 0x0, None, "");
    let mut args = sev_args(&fw, 16, &obj, Some(&sock));
    args.extend(["-gdb".into(), "tcp:127.0.0.1:0".into()]);
    let mut vm = Sevm::spawn(args);
    let rx = serial(&mut vm);
    let mut q = vm.qmp(&sock);
    q.ok("qmp_capabilities", Value::Null);
    let port = gdb_port(&vm);
    let mut g = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    g.set_read_timeout(Some(WAIT)).unwrap();
    send_packet(&mut g, "?");
    assert_eq!(read_packet(&mut g), "T05thread:01;");
    // Continue (LAUNCH_FINISH, run), then ^C while the guest runs.
    send_packet(&mut g, "c");
    q.event("RESUME");
    assert_eq!(q.ok("query-status", Value::Null)["status"], "running");
    // Interrupt once the guest is in its 32-bit memtest loop.
    loop {
        let line = rx.recv_timeout(WAIT).expect("memtest did not fill in time");
        if line.contains("memtest: filled") {
            break;
        }
    }
    g.write_all(&[0x03]).unwrap();
    assert_eq!(read_packet(&mut g), "T02thread:01;");
    q.event("STOP");
    assert_eq!(q.ok("query-status", Value::Null)["status"], "paused");
    // Registers of the stopped vCPU: 32-bit flat code (cs = 0x08).
    send_packet(&mut g, "g");
    let regs = read_packet(&mut g);
    assert_eq!(regs.len(), 164 * 2);
    assert_eq!(&regs[280..288], "08000000");
    // Malformed and unknown packets.
    send_packet(&mut g, "m1000");
    assert_eq!(read_packet(&mut g), "E01");
    send_packet(&mut g, "vMustReplyEmpty");
    assert_eq!(read_packet(&mut g), "");
    let mut bad = b"$g#00".to_vec();
    bad.extend_from_slice(b"$qC#b4");
    g.write_all(&bad).unwrap();
    assert_eq!(read_packet(&mut g), "QC1");
    // Detach: the VM was in prelaunch (not running) when the stub
    // attached, so it stays paused.
    send_packet(&mut g, "D");
    assert_eq!(read_packet(&mut g), "OK");
    drop(g);
    assert_eq!(q.ok("query-status", Value::Null)["status"], "paused");
    // A second client sets a breakpoint that is never hit, continues, and
    // vanishes: the stub takes its breakpoint out and the guest runs on.
    let mut g = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    g.set_read_timeout(Some(WAIT)).unwrap();
    send_packet(&mut g, "Z0,1234,1");
    assert_eq!(read_packet(&mut g), "OK");
    q.events.clear();
    send_packet(&mut g, "c");
    q.event("RESUME");
    drop(g);
    q.event("STOP");
    q.event("RESUME");
    assert_eq!(q.ok("query-status", Value::Null)["status"], "running");
    q.ok("quit", Value::Null);
    let st = vm.wait();
    assert_exit(st, 0, &vm.stderr_text());
}
