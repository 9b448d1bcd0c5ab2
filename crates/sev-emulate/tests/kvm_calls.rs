//! KVM's SEV ioctls through the real launcher (docs/guide/sev-emulate.md#kvm):
//! served on a KVM VM descriptor, answered by the kernel on any other; bad
//! calls get KVM's answers, never a hang. The test re-runs itself under
//! the launcher, where its child half issues the calls with `libc` as QEMU
//! would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::raw::{self, ioctl};
use common::*;

const KVM_CREATE_VM: u64 = 0xAE01;
const KVM_CREATE_VCPU: u64 = 0xAE41;
const OP: u64 = 0xC008_AEBA;
const REG: u64 = 0x8010_AEBB;
const UNREG: u64 = 0x8010_AEBC;
const MARK: u32 = 0xAAAA_AAAA;
/// What the parent saw natively: `ioctl(vm, KVM_MEMORY_ENCRYPT_OP, 0)`'s
/// errno, and the same on `/dev/kvm` itself.
const NATIVE_ENV: &str = "SEV_EMULATE_TEST_NATIVE";

/// `struct kvm_sev_cmd`.
#[repr(C)]
struct SevCmd {
    id: u32,
    pad0: u32,
    data: u64,
    error: u32,
    sev_fd: u32,
}

/// `KVM_MEMORY_ENCRYPT_OP` `id` with `data`: (errno or 0, `error`).
fn op(vm: i32, id: u32, data: u64, sev_fd: u32) -> (i32, u32) {
    let mut c = SevCmd {
        id,
        pad0: 0,
        data,
        error: MARK,
        sev_fd,
    };
    let (_, errno) = ioctl(vm, OP, std::ptr::addr_of_mut!(c) as u64);
    (errno, c.error)
}

fn region(vm: i32, request: u64, addr: u64, size: u64) -> i32 {
    let r = [addr, size];
    ioctl(vm, request, r.as_ptr() as u64).1
}

/// The errnos of `KVM_MEMORY_ENCRYPT_OP` with a null argument on a new VM
/// and on `/dev/kvm`.
fn probe() -> (i32, i32) {
    let kvm = raw::open("/dev/kvm", libc::O_RDWR | libc::O_CLOEXEC).unwrap();
    let (vm, _) = ioctl(kvm, KVM_CREATE_VM, 0);
    assert!(vm >= 0, "KVM_CREATE_VM failed");
    let on_vm = ioctl(vm, OP, 0).1;
    let on_kvm = ioctl(kvm, OP, 0).1;
    raw::close(vm);
    raw::close(kvm);
    (on_vm, on_kvm)
}

#[test]
fn kvm_sev_ioctls_are_served_on_a_vm_and_answered_by_the_kernel_elsewhere() {
    let name = "kvm_sev_ioctls_are_served_on_a_vm_and_answered_by_the_kernel_elsewhere";
    if !in_child() {
        if !sevm_testutil::kvm(name) {
            return;
        }
        // This host's KVM has no SEV: natively the VM answers ENOTTY.
        let (on_vm, on_kvm) = probe();
        assert_eq!(on_vm, libc::ENOTTY);
        let tmp = tempfile::tempdir().unwrap();
        let plat = platform_copy(tmp.path());
        std::env::set_var(NATIVE_ENV, on_kvm.to_string());
        let out = ok(rerun_under_launcher(&plat, name), name);
        assert!(out.contains("1 passed"), "{out}");
        return;
    }
    // Under the launcher: the VM's probe is served (0), /dev/kvm's is the
    // kernel's, as is a file's.
    let native_kvm: i32 = std::env::var(NATIVE_ENV).unwrap().parse().unwrap();
    assert_eq!(probe(), (0, native_kvm));
    let null = raw::open("/dev/null", libc::O_RDWR | libc::O_CLOEXEC).unwrap();
    assert_eq!(ioctl(null, OP, 0).1, libc::ENOTTY);

    let kvm = raw::open("/dev/kvm", libc::O_RDWR | libc::O_CLOEXEC).unwrap();
    let (vm, _) = ioctl(kvm, KVM_CREATE_VM, 0);
    let sev = raw::open("/dev/sev", libc::O_RDWR | libc::O_CLOEXEC).unwrap() as u32;
    // Before INIT.
    assert_eq!(op(vm, 2, 0x1000, sev), (libc::ENOTTY, MARK));
    let buf = vec![0u8; 0x10000];
    let addr = buf.as_ptr() as u64;
    assert_eq!(region(vm, REG, addr, 0x10000), libc::ENOTTY);
    // Unknown ids, INIT2, SEV-ES.
    for id in [22, 19, 99] {
        assert_eq!(op(vm, id, 0, sev), (libc::EINVAL, MARK), "id {id}");
    }
    assert_eq!(op(vm, 1, 0, sev).0, libc::ENOTTY);
    // A bad structure address.
    assert_eq!(ioctl(vm, OP, 8).1, libc::EFAULT);
    // INIT, then not again.
    assert_eq!(op(vm, 0, 0, sev).0, 0);
    assert_eq!(op(vm, 0, 0, sev).0, libc::EINVAL);
    // Regions: registered, unregistered only exactly; unmapped memory
    // cannot be pinned.
    assert_eq!(region(vm, REG, addr, 0x10000), 0);
    assert_eq!(region(vm, UNREG, addr, 0x1000), libc::EINVAL);
    assert_eq!(region(vm, UNREG, addr, 0x10000), 0);
    assert_eq!(region(vm, REG, 0x1000, 0x1000), libc::ENOMEM);
    assert_eq!(region(vm, REG, addr, 0), libc::EINVAL);
    // LAUNCH_START through a descriptor that is not /dev/sev.
    let params = [0u8; 40];
    assert_eq!(
        op(vm, 2, params.as_ptr() as u64, null as u32).0,
        libc::EBADF
    );
    // LAUNCH_START with the firmware's own keys (no session), then the
    // measurement's length query: the firmware's INVALID_LEN.
    let mut start = [0u32; 10];
    start[1] = 1; // policy NODBG
    assert_eq!(op(vm, 2, start.as_mut_ptr() as u64, sev), (0, 0));
    assert_ne!(start[0], 0, "no handle written back");
    let mut measure = [0u64; 2];
    assert_eq!(op(vm, 6, measure.as_mut_ptr() as u64, sev), (libc::EIO, 4));
    assert_eq!(measure[1] & 0xffff_ffff, 48);
    // GUEST_STATUS: the handle, the policy, LUPDATE.
    let mut status = [0u32; 3];
    assert_eq!(op(vm, 16, status.as_mut_ptr() as u64, sev), (0, 0));
    assert_eq!(status, [start[0], 1, 1]);

    // A VM with a vCPU already: INIT is refused.
    let (vm2, _) = ioctl(kvm, KVM_CREATE_VM, 0);
    let (vcpu, _) = ioctl(vm2, KVM_CREATE_VCPU, 0);
    assert!(vcpu >= 0);
    assert_eq!(op(vm2, 0, 0, sev).0, libc::EINVAL);
    drop(buf);
}
