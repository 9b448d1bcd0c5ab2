//! The seccomp filter the launched program runs under.
//!
//! The filter sends the supervisor only the system calls it serves: `open`,
//! `openat` and `openat2` (to catch `/dev/sev`) and `ioctl` with one of the
//! [`ROUTED_IOCTLS`] request numbers. Everything else, and every call of
//! another ABI (x32, i386), is allowed without a round trip
//! (docs/guide/sev-emulate.md#how-it-works).

/// `SEV_ISSUE_CMD = _IOWR('S', 0, struct sev_issue_cmd)`
/// (docs/protocol/linux.md#dev-sev).
pub const SEV_ISSUE_CMD: u32 = 0xC010_5300;
/// `KVM_MEMORY_ENCRYPT_OP = _IOWR(KVMIO, 0xba, unsigned long)` on a VM fd.
pub const KVM_MEMORY_ENCRYPT_OP: u32 = 0xC008_AEBA;
/// `KVM_MEMORY_ENCRYPT_REG_REGION = _IOR(KVMIO, 0xbb, struct kvm_enc_region)`.
pub const KVM_MEMORY_ENCRYPT_REG_REGION: u32 = 0x8010_AEBB;
/// `KVM_MEMORY_ENCRYPT_UNREG_REGION = _IOR(KVMIO, 0xbc, struct kvm_enc_region)`.
pub const KVM_MEMORY_ENCRYPT_UNREG_REGION: u32 = 0x8010_AEBC;

/// The `ioctl` requests the supervisor sees (whatever the descriptor; it lets
/// the kernel answer those on descriptors it does not emulate).
pub const ROUTED_IOCTLS: [u32; 4] = [
    SEV_ISSUE_CMD,
    KVM_MEMORY_ENCRYPT_OP,
    KVM_MEMORY_ENCRYPT_REG_REGION,
    KVM_MEMORY_ENCRYPT_UNREG_REGION,
];

/// `AUDIT_ARCH_X86_64` (include/uapi/linux/audit.h).
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// The x32 ABI marks its system-call numbers with this bit.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// Classic BPF opcodes (include/uapi/linux/bpf_common.h).
/// BPF_LD | BPF_W | BPF_ABS (0x00 | 0x00 | 0x20).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;

// Offsets in `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
/// Low 32 bits of `args[1]` (little endian): the ioctl request, which the
/// kernel reads as an `unsigned int`.
const OFF_ARG1_LO: u32 = 16 + 8;

/// `SECCOMP_RET_ALLOW`.
const RET_ALLOW: u32 = 0x7FFF_0000;

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Constant operand.
    pub k: u32,
}

const fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

/// The filter program: x86-64 `open`, `openat`, `openat2` and `ioctl(_, R, _)` for R
/// in [`ROUTED_IOCTLS`] → `SECCOMP_RET_USER_NOTIF`; everything else →
/// `SECCOMP_RET_ALLOW`.
pub fn program() -> Vec<Insn> {
    let notify = libc::SECCOMP_RET_USER_NOTIF;
    let nr = |n: libc::c_long| u32::try_from(n).unwrap_or(u32::MAX);
    let routed = ROUTED_IOCTLS.len();
    // Offsets are relative to the next instruction; `allow` is at
    // 9 + routed, `notify` right after it.
    let to_allow = |from: usize| u8::try_from(9 + routed - from - 1).unwrap_or(0);
    let to_notify = |from: usize| u8::try_from(9 + routed - from).unwrap_or(0);
    let mut p = vec![
        // 0: not x86-64 → allow.
        stmt(BPF_LD_W_ABS, OFF_ARCH),
        jump(BPF_JMP_JEQ_K, AUDIT_ARCH_X86_64, 0, to_allow(1)),
        // 2: x32 numbers → allow.
        stmt(BPF_LD_W_ABS, OFF_NR),
        jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, to_allow(3), 0),
        // 4: open / openat / openat2 → notify.
        jump(BPF_JMP_JEQ_K, nr(libc::SYS_open), to_notify(4), 0),
        jump(BPF_JMP_JEQ_K, nr(libc::SYS_openat), to_notify(5), 0),
        jump(BPF_JMP_JEQ_K, nr(libc::SYS_openat2), to_notify(6), 0),
        // 7: ioctl with a routed request → notify.
        jump(BPF_JMP_JEQ_K, nr(libc::SYS_ioctl), 0, to_allow(7)),
        stmt(BPF_LD_W_ABS, OFF_ARG1_LO),
    ];
    for (i, r) in ROUTED_IOCTLS.iter().enumerate() {
        p.push(jump(BPF_JMP_JEQ_K, *r, to_notify(9 + i), 0));
    }
    // 9 + routed: allow; then notify.
    p.push(stmt(BPF_RET_K, RET_ALLOW));
    p.push(stmt(BPF_RET_K, notify));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic-BPF interpreter for the few opcodes [`program`] uses.
    fn run(prog: &[Insn], arch: u32, nr: u32, arg1: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        data[24..32].copy_from_slice(&arg1.to_le_bytes());
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            match i.code {
                BPF_LD_W_ABS => {
                    let o = i.k as usize;
                    acc = u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
                    pc += 1;
                }
                BPF_JMP_JEQ_K | BPF_JMP_JGE_K => {
                    let taken = if i.code == BPF_JMP_JEQ_K {
                        acc == i.k
                    } else {
                        acc >= i.k
                    };
                    pc += 1 + usize::from(if taken { i.jt } else { i.jf });
                }
                BPF_RET_K => return i.k,
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    /// The request numbers are the uapi headers' `_IOWR`/`_IOR` encodings,
    /// and the same as sev-host's (which issues them on hardware).
    #[test]
    fn routed_numbers_are_the_kernels() {
        let ioc = |dir: u32, ty: u32, nr: u32, size: u32| dir << 30 | size << 16 | ty << 8 | nr;
        assert_eq!(SEV_ISSUE_CMD, ioc(3, u32::from(b'S'), 0, 16));
        assert_eq!(KVM_MEMORY_ENCRYPT_OP, ioc(3, 0xAE, 0xBA, 8));
        assert_eq!(KVM_MEMORY_ENCRYPT_REG_REGION, ioc(2, 0xAE, 0xBB, 16));
        assert_eq!(KVM_MEMORY_ENCRYPT_UNREG_REGION, ioc(2, 0xAE, 0xBC, 16));
        use sev_host::ioctl as host;
        assert_eq!(
            ROUTED_IOCTLS,
            [
                host::SEV_ISSUE_CMD,
                host::KVM_MEMORY_ENCRYPT_OP,
                host::KVM_MEMORY_ENCRYPT_REG_REGION,
                host::KVM_MEMORY_ENCRYPT_UNREG_REGION
            ]
        );
    }

    #[test]
    fn notifies_only_what_the_supervisor_serves() {
        let p = program();
        let n = libc::SECCOMP_RET_USER_NOTIF;
        let x86 = AUDIT_ARCH_X86_64;
        let nr = |n: libc::c_long| n as u32;
        assert_eq!(run(&p, x86, nr(libc::SYS_openat), 0), n);
        assert_eq!(run(&p, x86, nr(libc::SYS_open), 0), n);
        assert_eq!(run(&p, x86, nr(libc::SYS_ioctl), SEV_ISSUE_CMD.into()), n);
        // The kernel reads the request as an unsigned int: high bits ignored.
        let high = (1u64 << 32) | u64::from(SEV_ISSUE_CMD);
        assert_eq!(run(&p, x86, nr(libc::SYS_ioctl), high), n);
        for r in ROUTED_IOCTLS {
            assert_eq!(run(&p, x86, nr(libc::SYS_ioctl), r.into()), n, "{r:#x}");
        }
        assert_eq!(run(&p, x86, nr(libc::SYS_ioctl), 0x5401), RET_ALLOW);
        // Another KVM request on the same fd type: the kernel's.
        assert_eq!(run(&p, x86, nr(libc::SYS_ioctl), 0xAE80), RET_ALLOW);
        // A routed number as another system call's argument: allowed.
        assert_eq!(
            run(&p, x86, nr(libc::SYS_read), SEV_ISSUE_CMD.into()),
            RET_ALLOW
        );
        assert_eq!(run(&p, x86, nr(libc::SYS_read), 0), RET_ALLOW);
        assert_eq!(run(&p, x86, nr(libc::SYS_openat2), 0), n);
        assert_eq!(run(&p, x86, nr(libc::SYS_close), 0), RET_ALLOW);
        assert_eq!(run(&p, x86, X32_SYSCALL_BIT | 257, 0), RET_ALLOW);
        assert_eq!(run(&p, 0x4000_0003, 5, 0), RET_ALLOW);
    }
}
