//! Bad calls on the emulated `/dev/sev` get the kernel driver's answers,
//! never a hang: each test re-runs itself under the launcher, where its
//! child half issues the calls with `libc` as a C program would and asserts
//! the answers; the parent half asserts that the child passed (and what it
//! reported against the platform).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::raw::{self, issue, MARK};
use common::*;

const PLATFORM_STATUS: u32 = 1;
const PEK_GEN: u32 = 2;
const PEK_CSR: u32 = 3;
const PDH_GEN: u32 = 4;
const PDH_CERT_EXPORT: u32 = 5;
const GET_ID2: u32 = 8;
const INVALID_LEN: u32 = 4;

/// The parent half: runs `name` under the launcher on a fresh platform
/// copy, requires it to pass and returns its stdout.
fn parent(name: &str) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let tmp = tempfile::tempdir().unwrap();
    let plat = platform_copy(tmp.path());
    let o = rerun_under_launcher(&plat, name);
    let out = ok(o, name);
    // The child's test really ran (libtest's summary line).
    assert!(out.contains("1 passed"), "{out}");
    (tmp, plat, out)
}

fn rdwr() -> i32 {
    raw::open("/dev/sev", libc::O_RDWR | libc::O_CLOEXEC).expect("open /dev/sev")
}

/// A 12-byte `{u64 address, u32 length}` (PEK_CSR, GET_ID2).
#[repr(C, packed)]
#[derive(Debug, Default, Clone, Copy)]
struct AddrLen {
    address: u64,
    length: u32,
}

fn addr_of<T>(t: &mut T) -> u64 {
    std::ptr::from_mut(t) as u64
}

#[test]
fn unknown_commands_and_requests() {
    const NAME: &str = "unknown_commands_and_requests";
    if in_child() {
        let fd = rdwr();
        // Unknown sub-command: EINVAL, the structure not copied back.
        assert_eq!(issue(fd, 99, 0), (libc::EINVAL, MARK));
        assert_eq!(issue(fd, u32::MAX, 0), (libc::EINVAL, MARK));
        // Another routed request on /dev/sev: the driver's EINVAL.
        assert_eq!(raw::ioctl(fd, 0xC008_AEBA, 0), (-1, libc::EINVAL));
        // SEV_ISSUE_CMD on a descriptor that is not /dev/sev: the kernel's.
        let null = raw::open("/dev/null", libc::O_RDWR).unwrap();
        let mut st = [0u8; 12];
        let (errno, _) = issue(null, PLATFORM_STATUS, addr_of(&mut st));
        assert_eq!(errno, libc::ENOTTY);
        assert_eq!(raw::ioctl(-1, raw::SEV_ISSUE_CMD, 0), (-1, libc::EBADF));
        // A closed descriptor: EBADF from the kernel.
        raw::close(fd);
        assert_eq!(issue(fd, PLATFORM_STATUS, addr_of(&mut st)).0, libc::EBADF);
        return;
    }
    parent(NAME);
}

#[test]
fn bad_pointers_are_efault() {
    const NAME: &str = "bad_pointers_are_efault";
    if in_child() {
        let fd = rdwr();
        // The command structure itself.
        assert_eq!(raw::ioctl(fd, raw::SEV_ISSUE_CMD, 8), (-1, libc::EFAULT));
        assert_eq!(
            raw::ioctl(fd, raw::SEV_ISSUE_CMD, u64::MAX - 4),
            (-1, libc::EFAULT)
        );
        // Its data pointer: unmapped, and read-only memory.
        assert_eq!(issue(fd, PLATFORM_STATUS, 16).0, libc::EFAULT);
        static READ_ONLY: [u8; 64] = [0; 64];
        assert_eq!(
            issue(fd, PLATFORM_STATUS, READ_ONLY.as_ptr() as u64).0,
            libc::EFAULT
        );
        // A blob address: the CSR buffer unmapped.
        let mut q = AddrLen {
            address: 0x1000,
            length: 0x824,
        };
        assert_eq!(issue(fd, PEK_CSR, addr_of(&mut q)).0, libc::EFAULT);
        // The path of open() unreadable: the kernel's EFAULT.
        // SAFETY: open with a bad path pointer fails with EFAULT and
        // touches nothing in this process.
        let r = unsafe { libc::open(16 as *const libc::c_char, libc::O_RDONLY) };
        assert_eq!(r, -1);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EFAULT)
        );
        // And the device still answers.
        let mut st = [0u8; 12];
        assert_eq!(issue(fd, PLATFORM_STATUS, addr_of(&mut st)), (0, 0));
        assert_eq!((st[0], st[1]), (1, 55));
        return;
    }
    parent(NAME);
}

#[test]
fn short_and_huge_lengths() {
    const NAME: &str = "short_and_huge_lengths";
    if in_child() {
        let fd = rdwr();
        // Length queries: EIO, INVALID_LEN, the needed length written back.
        let mut q = AddrLen::default();
        assert_eq!(
            issue(fd, PEK_CSR, addr_of(&mut q)),
            (libc::EIO, INVALID_LEN)
        );
        assert_eq!({ q.length }, 0x824);
        let mut q = AddrLen::default();
        assert_eq!(
            issue(fd, GET_ID2, addr_of(&mut q)),
            (libc::EIO, INVALID_LEN)
        );
        assert_eq!({ q.length }, 64);
        let mut e = [0u8; 24];
        assert_eq!(
            issue(fd, PDH_CERT_EXPORT, addr_of(&mut e)),
            (libc::EIO, INVALID_LEN)
        );
        assert_eq!(u32::from_le_bytes(e[8..12].try_into().unwrap()), 0x824);
        assert_eq!(u32::from_le_bytes(e[20..24].try_into().unwrap()), 3 * 0x824);
        // Short buffers: the same.
        let mut id = [0u8; 16];
        let mut q = AddrLen {
            address: id.as_mut_ptr() as u64,
            length: 16,
        };
        assert_eq!(
            issue(fd, GET_ID2, addr_of(&mut q)),
            (libc::EIO, INVALID_LEN)
        );
        assert_eq!({ q.length }, 64);
        // Huge: above the driver's blob limit (EFAULT), or what it can
        // allocate (ENOMEM), before any copy.
        let mut q = AddrLen {
            address: id.as_mut_ptr() as u64,
            length: 0x4001,
        };
        assert_eq!(issue(fd, PEK_CSR, addr_of(&mut q)).0, libc::EFAULT);
        let mut q = AddrLen {
            address: id.as_mut_ptr() as u64,
            length: u32::MAX,
        };
        assert_eq!(issue(fd, GET_ID2, addr_of(&mut q)).0, libc::ENOMEM);
        // Long enough: the id, 64 bytes, printed for the parent.
        let mut id = [0u8; 100];
        let mut q = AddrLen {
            address: id.as_mut_ptr() as u64,
            length: 100,
        };
        assert_eq!(issue(fd, GET_ID2, addr_of(&mut q)), (0, 0));
        assert_eq!({ q.length }, 64);
        assert_eq!(id[64..], [0u8; 36]);
        println!("CHIP={}", hex(&id[..64]));
        return;
    }
    let (_t, plat, out) = parent(NAME);
    // libtest prints the child's output after "test NAME ... ".
    let chip = out
        .split("CHIP=")
        .nth(1)
        .and_then(|t| t.get(..128))
        .expect("the child printed the chip id");
    let v: serde_json::Value = serde_json::from_str(&ok(
        platform_tool(&[&emu(&plat), "--json", "id"]),
        "sev-platform id",
    ))
    .unwrap();
    assert_eq!(v["id"].as_str().unwrap(), chip);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn open_modes_and_descriptors() {
    const NAME: &str = "open_modes_and_descriptors";
    if in_child() {
        // Read-only: status yes, state changes EPERM with error untouched.
        let ro = raw::open("/dev/sev", libc::O_RDONLY).unwrap();
        let mut st = [0u8; 12];
        assert_eq!(issue(ro, PLATFORM_STATUS, addr_of(&mut st)), (0, 0));
        for c in [PEK_GEN, PDH_GEN, 0] {
            assert_eq!(issue(ro, c, 0), (libc::EPERM, MARK), "{c}");
        }
        // A duplicate of the read-only descriptor is read-only too; one of
        // a read-write one is read-write, whatever its number.
        let ro2 = raw::dup(ro);
        assert_eq!(issue(ro2, PDH_GEN, 0).0, libc::EPERM);
        let rw = raw::open("/dev/sev", libc::O_WRONLY).unwrap();
        let rw2 = raw::dup(rw);
        raw::close(rw);
        assert_eq!(issue(rw2, PDH_GEN, 0), (0, 0));
        // openat relative to /dev, and a path with dots.
        let dev = raw::open("/dev", libc::O_RDONLY | libc::O_DIRECTORY).unwrap();
        let at = raw::openat(dev, "sev", libc::O_RDWR).unwrap();
        assert_eq!(issue(at, PLATFORM_STATUS, addr_of(&mut st)), (0, 0));
        let dots = raw::open("/dev/./../dev//sev", libc::O_RDWR).unwrap();
        assert_eq!(issue(dots, PLATFORM_STATUS, addr_of(&mut st)), (0, 0));
        // Flags the kernel refuses on an existing device node.
        assert_eq!(
            raw::open("/dev/sev", libc::O_RDWR | libc::O_CREAT | libc::O_EXCL),
            Err(libc::EEXIST)
        );
        assert_eq!(
            raw::open("/dev/sev", libc::O_RDONLY | libc::O_DIRECTORY),
            Err(libc::ENOTDIR)
        );
        // openat2: its open_how flags; a size the kernel refuses is its EINVAL.
        let two = raw::openat2("/dev/sev", libc::O_RDONLY as u64, 24).unwrap();
        assert_eq!(issue(two, PLATFORM_STATUS, addr_of(&mut st)), (0, 0));
        assert_eq!(issue(two, PDH_GEN, 0).0, libc::EPERM);
        let two = raw::openat2("/dev/sev", libc::O_RDWR as u64, 24).unwrap();
        assert_eq!(issue(two, PDH_GEN, 0), (0, 0));
        assert_eq!(raw::openat2("/dev/sev", 0, 8), Err(libc::EINVAL));
        // Other paths are the kernel's.
        assert_eq!(
            raw::open("/dev/sev-nothing", libc::O_RDONLY),
            Err(libc::ENOENT)
        );
        // std's File (openat with O_CLOEXEC) gets the emulated device too.
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/sev")
            .unwrap();
        use std::os::fd::AsRawFd;
        assert_eq!(
            issue(f.as_raw_fd(), PLATFORM_STATUS, addr_of(&mut st)),
            (0, 0)
        );
        // INIT after PDH_GEN (the driver INITed the platform, U75).
        assert_eq!(st[2], 1);
        return;
    }
    parent(NAME);
}

#[test]
fn threads_issue_at_once() {
    const NAME: &str = "threads_issue_at_once";
    if in_child() {
        let ids: Vec<Vec<u8>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..16)
                .map(|i| {
                    s.spawn(move || {
                        let fd = rdwr();
                        let mut last = Vec::new();
                        for _ in 0..25 {
                            let mut st = [0u8; 12];
                            assert_eq!(issue(fd, PLATFORM_STATUS, addr_of(&mut st)), (0, 0));
                            let mut id = [0u8; 64];
                            let mut q = AddrLen {
                                address: id.as_mut_ptr() as u64,
                                length: 64,
                            };
                            assert_eq!(issue(fd, GET_ID2, addr_of(&mut q)), (0, 0));
                            if i % 4 == 0 {
                                assert_eq!(issue(fd, PDH_GEN, 0), (0, 0));
                            }
                            last = id.to_vec();
                        }
                        raw::close(fd);
                        last
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(ids
            .iter()
            .all(|i| i == &ids[0] && i.iter().any(|&b| b != 0)));
        return;
    }
    parent(NAME);
}

#[test]
fn a_program_killed_mid_ioctl_does_not_hang_the_launcher() {
    const NAME: &str = "a_program_killed_mid_ioctl_does_not_hang_the_launcher";
    if in_child() {
        for _ in 0..8 {
            std::thread::spawn(|| {
                let fd = rdwr();
                loop {
                    let _ = issue(fd, PDH_GEN, 0);
                    let mut e = [0u8; 24];
                    let _ = issue(fd, PDH_CERT_EXPORT, addr_of(&mut e));
                }
            });
        }
        std::thread::sleep(Duration::from_millis(300));
        raw::kill_self();
    }
    let tmp = tempfile::tempdir().unwrap();
    let plat = platform_copy(tmp.path());
    for _ in 0..3 {
        let start = Instant::now();
        let o = rerun_under_launcher(&plat, NAME);
        assert_eq!(
            o.status.code(),
            Some(128 + libc::SIGKILL),
            "{}",
            text(&o.stderr)
        );
        assert!(start.elapsed() < Duration::from_secs(60));
    }
    // The platform is intact and served again.
    let h = ok(
        emulate(&plat, &tool("sev-platform"), &["--json", "status"]),
        "status after the kill",
    );
    assert!(
        h.contains("\"api_minor\":55") || h.contains("\"api_minor\": 55"),
        "{h}"
    );
    assert!(Path::new(&plat).exists());
}
