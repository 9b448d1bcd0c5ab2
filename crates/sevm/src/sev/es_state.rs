//! A running SEV-ES vCPU's registers as its VMSA, for migration: what the
//! processor saves into the VMSA page when the vCPU exits (the source) and
//! loads from it on VMRUN (the target). The emulated platform runs its
//! vCPUs as normal KVM vCPUs, so sevm writes the KVM registers into the page
//! the firmware sends, and sets the target's vCPUs from the page it received
//! (docs/sev-es.md#migration).
//!
//! The page holds the general-purpose registers, RIP, RFLAGS, the segment
//! and descriptor-table registers, CR0, CR2, CR3, CR4 and EFER at their save
//! area offsets (docs/protocol/vmsa.md#initial-vmsa); the rest of [`VcpuState`] (MSRs, halt and start-up state)
//! travels in the vCPU record as the hypervisor's own state.

use kvm_bindings::{kvm_dtable, kvm_regs, kvm_segment, kvm_sregs};
use sev_proto::vmsa::{offset, Segment};

use super::es::segment;
use super::VmsaPage;
use crate::vcpu::VcpuState;

/// CR2's offset in the save area.
const CR2: usize = 0x240;
/// RBP's offset in the save area.
const RBP: usize = 0x328;
/// RSI's offset in the save area.
const RSI: usize = 0x330;
/// RDI's offset in the save area.
const RDI: usize = 0x338;
/// R8's offset in the save area (R9…R15 follow, 8 bytes apart).
const R8: usize = 0x340;
/// EFER.SVME: the hypervisor's bit in every save area, not the guest's.
const EFER_SVME: u64 = 1 << 12;

/// The registers of `state` as a VMSA page (zero elsewhere).
// UNCERTAIN (docs/protocol/choices.md#u41): which registers the page holds
// where hardware saves the whole save area.
pub fn to_vmsa(state: &VcpuState) -> Box<VmsaPage> {
    let mut page = Box::new([0u8; 4096]);
    let (r, s) = (&state.regs, &state.sregs);
    let segments = [
        (offset::ES, &s.es),
        (offset::CS, &s.cs),
        (offset::SS, &s.ss),
        (offset::DS, &s.ds),
        (offset::FS, &s.fs),
        (offset::GS, &s.gs),
        (offset::LDTR, &s.ldt),
        (offset::TR, &s.tr),
    ];
    for (at, seg) in segments {
        put_segment(&mut page, at, seg);
    }
    put_dtable(&mut page, offset::GDTR, &s.gdt);
    put_dtable(&mut page, offset::IDTR, &s.idt);
    for (at, v) in quads(r, s) {
        put(&mut page, at, v);
    }
    page
}

/// `state` with its registers replaced by the page's (the inverse of
/// [`to_vmsa`]; EFER.SVME, the hypervisor's bit, is left out).
pub fn apply_vmsa(state: &mut VcpuState, page: &VmsaPage) {
    let s = &mut state.sregs;
    for (at, seg) in [
        (offset::ES, &mut s.es),
        (offset::CS, &mut s.cs),
        (offset::SS, &mut s.ss),
        (offset::DS, &mut s.ds),
        (offset::FS, &mut s.fs),
        (offset::GS, &mut s.gs),
        (offset::LDTR, &mut s.ldt),
        (offset::TR, &mut s.tr),
    ] {
        *seg = get_segment(page, at);
    }
    s.gdt = get_dtable(page, offset::GDTR);
    s.idt = get_dtable(page, offset::IDTR);
    let r = &mut state.regs;
    let fields: [(usize, &mut u64); 23] = [
        (offset::RAX, &mut r.rax),
        (offset::RCX, &mut r.rcx),
        (offset::RDX, &mut r.rdx),
        (offset::RBX, &mut r.rbx),
        (offset::RSP, &mut r.rsp),
        (RBP, &mut r.rbp),
        (RSI, &mut r.rsi),
        (RDI, &mut r.rdi),
        (R8, &mut r.r8),
        (R8 + 8, &mut r.r9),
        (R8 + 16, &mut r.r10),
        (R8 + 24, &mut r.r11),
        (R8 + 32, &mut r.r12),
        (R8 + 40, &mut r.r13),
        (R8 + 48, &mut r.r14),
        (R8 + 56, &mut r.r15),
        (offset::RIP, &mut r.rip),
        (offset::RFLAGS, &mut r.rflags),
        (offset::CR0, &mut s.cr0),
        (CR2, &mut s.cr2),
        (offset::CR3, &mut s.cr3),
        (offset::CR4, &mut s.cr4),
        (offset::EFER, &mut s.efer),
    ];
    for (at, v) in fields {
        *v = get(page, at);
    }
    s.efer &= !EFER_SVME;
}

/// Clears in `state` what [`to_vmsa`] carries (the registers), keeping the
/// hypervisor's own parts (the APIC base, CR8, pending interrupts, MSRs,
/// halt and start-up state) for the vCPU record.
pub fn strip(state: &mut VcpuState) {
    state.regs = kvm_regs::default();
    let s = &mut state.sregs;
    for seg in [
        &mut s.es, &mut s.cs, &mut s.ss, &mut s.ds, &mut s.fs, &mut s.gs, &mut s.ldt, &mut s.tr,
    ] {
        *seg = kvm_segment::default();
    }
    s.gdt = kvm_dtable::default();
    s.idt = kvm_dtable::default();
    (s.cr0, s.cr2, s.cr3, s.cr4, s.efer) = (0, 0, 0, 0, 0);
}

/// The 8-byte fields [`to_vmsa`] writes.
fn quads(r: &kvm_regs, s: &kvm_sregs) -> [(usize, u64); 23] {
    [
        (offset::RAX, r.rax),
        (offset::RCX, r.rcx),
        (offset::RDX, r.rdx),
        (offset::RBX, r.rbx),
        (offset::RSP, r.rsp),
        (RBP, r.rbp),
        (RSI, r.rsi),
        (RDI, r.rdi),
        (R8, r.r8),
        (R8 + 8, r.r9),
        (R8 + 16, r.r10),
        (R8 + 24, r.r11),
        (R8 + 32, r.r12),
        (R8 + 40, r.r13),
        (R8 + 48, r.r14),
        (R8 + 56, r.r15),
        (offset::RIP, r.rip),
        (offset::RFLAGS, r.rflags),
        (offset::CR0, s.cr0),
        (CR2, s.cr2),
        (offset::CR3, s.cr3),
        (offset::CR4, s.cr4),
        (offset::EFER, s.efer),
    ]
}

fn put(page: &mut VmsaPage, at: usize, v: u64) {
    if let Some(dst) = page.get_mut(at..at + 8) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
}

fn get(page: &VmsaPage, at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(src) = page.get(at..at + 8) {
        b.copy_from_slice(src);
    }
    u64::from_le_bytes(b)
}

/// A segment record: selector, packed attributes (type, S, DPL, P in bits
/// 0–7; AVL, L, D/B, G in bits 8–11), limit, base.
fn put_segment(page: &mut VmsaPage, at: usize, seg: &kvm_segment) {
    let attrib = u16::from(seg.type_ & 0xF)
        | u16::from(seg.s & 1) << 4
        | u16::from(seg.dpl & 3) << 5
        | u16::from(seg.present & 1) << 7
        | u16::from(seg.avl & 1) << 8
        | u16::from(seg.l & 1) << 9
        | u16::from(seg.db & 1) << 10
        | u16::from(seg.g & 1) << 11;
    let mut rec = [0u8; 16];
    rec[0..2].copy_from_slice(&seg.selector.to_le_bytes());
    rec[2..4].copy_from_slice(&attrib.to_le_bytes());
    rec[4..8].copy_from_slice(&seg.limit.to_le_bytes());
    rec[8..16].copy_from_slice(&seg.base.to_le_bytes());
    if let Some(dst) = page.get_mut(at..at + 16) {
        dst.copy_from_slice(&rec);
    }
}

fn get_segment(page: &VmsaPage, at: usize) -> kvm_segment {
    let b = |i: usize| page.get(at + i).copied().unwrap_or(0);
    segment(&Segment {
        selector: u16::from_le_bytes([b(0), b(1)]),
        attrib: u16::from_le_bytes([b(2), b(3)]),
        limit: u32::from_le_bytes([b(4), b(5), b(6), b(7)]),
        base: get(page, at + 8),
    })
}

fn put_dtable(page: &mut VmsaPage, at: usize, d: &kvm_dtable) {
    put_segment(
        page,
        at,
        &kvm_segment {
            base: d.base,
            limit: u32::from(d.limit),
            ..kvm_segment::default()
        },
    );
}

fn get_dtable(page: &VmsaPage, at: usize) -> kvm_dtable {
    let seg = get_segment(page, at);
    kvm_dtable {
        base: seg.base,
        limit: seg.limit as u16,
        padding: [0; 3],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_round_trip_through_the_page() {
        let blank = || VcpuState {
            regs: kvm_regs::default(),
            sregs: kvm_sregs::default(),
            msrs: Vec::new(),
            runnable: true,
            halted: false,
        };
        let mut st = blank();
        st.regs.rax = 1;
        st.regs.r15 = 15;
        st.regs.rip = 0xFFF0;
        st.regs.rflags = 0x202;
        st.sregs.cs = kvm_segment {
            base: 0xFFFF_0000,
            limit: 0xFFFF,
            selector: 0xF000,
            type_: 0xB,
            s: 1,
            present: 1,
            ..kvm_segment::default()
        };
        st.sregs.gdt.base = 0x1000;
        st.sregs.gdt.limit = 0x27;
        st.sregs.cr0 = 0x6000_0011;
        st.sregs.cr2 = 0xdead;
        st.sregs.efer = 0x500;
        st.msrs = vec![(0x10, 7)];
        st.halted = true;
        let page = to_vmsa(&st);
        assert_eq!(get(&page, offset::RIP), 0xFFF0);
        let mut back = VcpuState {
            msrs: st.msrs.clone(),
            halted: true,
            ..blank()
        };
        apply_vmsa(&mut back, &page);
        assert_eq!(back.regs.rax, 1);
        assert_eq!(back.regs.r15, 15);
        assert_eq!(back.sregs.cs.base, 0xFFFF_0000);
        assert_eq!(back.sregs.cs.type_, 0xB);
        assert_eq!(back.sregs.gdt.limit, 0x27);
        assert_eq!(back.sregs.cr2, 0xdead);
        assert_eq!(back.msrs, vec![(0x10, 7)]);
        assert!(back.halted);
        // A not-present segment comes back unusable, as KVM reports it;
        // from then on the round trip is exact.
        assert_eq!(back.sregs.ds.unusable, 1);
        let mut stripped = back.clone();
        strip(&mut stripped);
        assert_eq!(stripped.regs.rip, 0);
        assert_eq!(stripped.sregs.cs.base, 0);
        assert_eq!(stripped.msrs, back.msrs);
        apply_vmsa(&mut stripped, &to_vmsa(&back));
        assert_eq!(stripped.to_bytes(), back.to_bytes());
        let mut again = back.clone();
        apply_vmsa(&mut again, &to_vmsa(&back));
        assert_eq!(again.to_bytes(), back.to_bytes());
    }
}
