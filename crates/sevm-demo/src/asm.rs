//! The demo guest's machine code, generated with the iced-x86 code
//! assembler. No x87/SSE instructions, no paging.
//!
//! Boot block (the last 64 KiB of the image, GPA 0xFFFF0000..=0xFFFFFFFF):
//!
//! | GPA | content |
//! |---|---|
//! | 0xFFFF0000 | 32-bit code ([`CODE32_BASE`]) |
//! | 0xFFFFC000 | read-only data: strings, GUIDs ([`DATA_BASE`]) |
//! | 0xFFFFF000 | GDT: null, flat 4 GiB code (0x08), flat 4 GiB data (0x10) |
//! | 0xFFFFF018 | GDT pseudo-descriptor (limit, 32-bit base) |
//! | 0xFFFFF020 | 16-bit entry: `cli; cld; o32 lgdt cs:[..]; CR0.PE=1; jmp dword 0x08:0xFFFF0000` |
//! | 0xFFFFFF.. | OVMF-style footer GUID table, ending at EOF−32 (see `super`) |
//! | 0xFFFFFFF0 | reset vector: `jmp near 0xF020` (CS base 0xFFFF0000) |

use iced_x86::code_asm::*;
use iced_x86::{Code, Instruction, MemoryOperand, Register};

use crate::ports::{COM1_BASE, CONTROL_PORT, DEBUG_EXIT_PORT};
use crate::{AesGcmVector, DemoError, MemtestOptions};

mod aes_gcm;
mod aes_self_test;
mod guest_request;

/// GPA of the 32-bit code.
pub const CODE32_BASE: u32 = 0xFFFF_0000;
/// GPA of the read-only data.
pub const DATA_BASE: u32 = 0xFFFF_C000;
/// GPA of the GDT.
pub const GDT_BASE: u32 = 0xFFFF_F000;
/// GPA of the GDT pseudo-descriptor.
pub const GDT_DESCRIPTOR: u32 = 0xFFFF_F018;
/// GPA of the 16-bit entry code.
pub const ENTRY16: u32 = 0xFFFF_F020;
/// GPA of the reset vector.
pub const RESET_VECTOR: u32 = 0xFFFF_FFF0;
/// Real-mode CS base at reset.
const CS_BASE: u32 = 0xFFFF_0000;

/// Flat 32-bit code and data selectors.
pub const CODE_SELECTOR: u16 = 0x08;
/// Flat data selector.
pub const DATA_SELECTOR: u16 = 0x10;
/// GDT entries: null; code: base 0, limit 4 GiB, 32-bit, execute/read,
/// accessed; data: base 0, limit 4 GiB, read/write, accessed. (Accessed is
/// preset so the CPU never writes the descriptors.)
pub const GDT: [u64; 3] = [0, 0x00CF_9B00_0000_FFFF, 0x00CF_9300_0000_FFFF];

/// Initial stack pointer (grows down into RAM below 512 KiB).
pub const STACK_TOP: u32 = 0x0008_0000;

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: memtest found a mismatch.
pub const EXIT_MEMTEST_MISMATCH: u8 = 1;
/// Exit status: the secret table is malformed.
pub const EXIT_BAD_SECRET_TABLE: u8 = 2;

/// Multiplier that spreads the memtest generation over all bits.
pub const MEMTEST_HASH: u32 = 0x9E37_79B9;
/// The memtest polls the control port once every this many pages.
pub const MEMTEST_POLL_PAGES: u32 = 16;

/// The greeting line.
pub const GREETING: &str = "sevm demo guest: hello from the encrypted guest";

/// The guest's variables page in RAM: the SEV status (dword at +0, 0
/// without SEV) and the C-bit position the host reported (+4).
pub const VARS_BASE: u32 = 0x0006_0000;
/// The GHCB page of an SEV-ES or SNP guest.
pub const GHCB_GPA: u32 = 0x0006_1000;
/// The SNP secrets page (SEV metadata section SNP_SECRETS).
pub const SNP_SECRETS_GPA: u32 = 0x0080_D000;
/// The SNP CPUID page (SEV metadata section CPUID).
pub const SNP_CPUID_GPA: u32 = 0x0080_E000;

/// The GHCB MSR.
const GHCB_MSR: u32 = 0xC001_0130;
/// The SEV status MSR.
const SEV_STATUS_MSR: u32 = 0xC001_0131;
/// SEV status bits: SEV-ES, SEV-SNP.
const STATUS_ES: u32 = 1 << 1;
const STATUS_SNP: u32 = 1 << 2;
/// The GHCB protocol version the guest speaks.
const GHCB_VERSION: u32 = 2;

/// GHCB page offsets (docs/protocol/snp.md#ghcb-page).
mod ghcb {
    pub const RAX: u32 = 0x1F8;
    pub const SW_EXIT_CODE: u32 = 0x390;
    pub const SW_EXIT_INFO_1: u32 = 0x398;
    pub const SW_EXIT_INFO_2: u32 = 0x3A0;
    pub const SW_SCRATCH: u32 = 0x3A8;
    pub const VALID_BITMAP: u32 = 0x3F0;
    /// The shared buffer, where string output is placed.
    pub const SHARED_BUFFER: u32 = 0x800;
    pub const PROTOCOL_VERSION: u32 = 0xFFA;
    /// The valid bitmap's second dword (qwords 0x20–0x3F): bit 31 is RAX
    /// (qword 0x3F).
    pub const VALID_DWORD_RAX: u32 = VALID_BITMAP + 4;
    /// RAX's bit in [`VALID_DWORD_RAX`].
    pub const VALID_RAX: u32 = 1 << 31;
    /// The valid bitmap's last dword (qwords 0x60–0x7F): bits 18–20 are
    /// SW_EXITCODE, SW_EXITINFO1 and SW_EXITINFO2 (qwords 0x72–0x74).
    pub const VALID_DWORD_EXIT: u32 = VALID_BITMAP + 12;
    /// SW_EXITCODE, SW_EXITINFO1, SW_EXITINFO2 in [`VALID_DWORD_EXIT`].
    pub const VALID_EXIT: u32 = 0x1C << 16;
    /// The same with bit 21: SW_SCRATCH (qword 0x75).
    pub const VALID_EXIT_SCRATCH: u32 = 0x3C << 16;
    /// SW_EXITINFO1 bits of `rep outsb` with 32-bit addresses: string,
    /// rep, 8-bit, A32.
    pub const OUTSB_REP_A32: u32 = (1 << 2) | (1 << 3) | (1 << 4) | (1 << 8);
    /// Bytes per string exit: a 16550's transmit FIFO, empty when the line
    /// status says THRE.
    pub const CHUNK: u32 = 16;
    /// The IOIO exit code.
    pub const EXIT_IOIO: u32 = 0x7B;
}

/// The assembled pieces, each with the GPA it must be placed at.
#[derive(Debug)]
pub struct Blobs {
    /// `(gpa, bytes)` pieces; they do not overlap.
    pub pieces: Vec<(u32, Vec<u8>)>,
}

fn asm_err(e: IcedError) -> DemoError {
    DemoError::Assemble(e.to_string())
}

/// Read-only data laid out at [`DATA_BASE`]; hands out GPAs.
struct Data {
    bytes: Vec<u8>,
}

impl Data {
    fn add(&mut self, b: &[u8]) -> u32 {
        let at = DATA_BASE + self.bytes.len() as u32;
        self.bytes.extend_from_slice(b);
        at
    }
    fn cstr(&mut self, s: &str) -> u32 {
        let at = self.add(s.as_bytes());
        self.bytes.push(0);
        at
    }
}

/// What the 32-bit program does.
#[derive(Debug, Clone)]
pub enum Program {
    /// Greeting + secret table.
    Normal {
        /// Secret area GPA.
        secret_base: u32,
        /// Secret area size.
        secret_size: u32,
    },
    /// Memory test.
    Memtest(MemtestOptions),
    /// AES-256-GCM over these vectors ([`crate::DemoMode::AesSelfTest`]).
    AesSelfTest(Vec<AesGcmVector>),
}

/// Helper routines shared by both programs.
struct Lib {
    in8: CodeLabel,
    out8: CodeLabel,
    msr_call: CodeLabel,
    terminate: CodeLabel,
    putc: CodeLabel,
    puts: CodeLabel,
    put_hex8: CodeLabel,
    put_hex32: CodeLabel,
    put_dec: CodeLabel,
    exit: CodeLabel,
}

/// `puts(string at gpa)`.
fn say(a: &mut CodeAssembler, lib: &Lib, gpa: u32) -> Result<(), IcedError> {
    a.mov(esi, gpa)?;
    a.call(lib.puts)
}

/// Whether the guest talks through the GHCB: jumps to `to` if the SEV
/// status has SEV-ES.
fn if_es(a: &mut CodeAssembler, to: CodeLabel) -> Result<(), IcedError> {
    a.test(dword_ptr(VARS_BASE), STATUS_ES)?;
    a.jnz(to)
}

/// Prepares the GHCB page once, before its first page exit: the page
/// zeroed (usage 0, every upper dword 0), the protocol version,
/// SW_EXITCODE IOIO (the only page exit this guest makes) and SW_SCRATCH
/// the shared buffer (where string output is placed). The host writes
/// back only SW_EXITINFO1/2 and RAX, as whole qwords whose upper halves are
/// 0 here, and clears the valid bitmap, so each exit then writes only its
/// own inputs' low dwords and marks them valid ([`emit_ghcb_inputs`]).
/// Clobbers eax, ecx, edi.
fn emit_ghcb_prepare(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.mov(edi, GHCB_GPA)?;
    a.xor(eax, eax)?;
    a.mov(ecx, 1024)?;
    a.rep().stosd()?;
    a.mov(edi, GHCB_GPA)?;
    a.mov(word_ptr(edi + ghcb::PROTOCOL_VERSION), GHCB_VERSION)?;
    a.mov(dword_ptr(edi + ghcb::SW_EXIT_CODE), ghcb::EXIT_IOIO)?;
    a.mov(
        dword_ptr(edi + ghcb::SW_SCRATCH),
        GHCB_GPA + ghcb::SHARED_BUFFER,
    )
}

/// A value an exit writes into a GHCB field: a register or an immediate.
#[derive(Debug, Clone, Copy)]
enum Input {
    Reg(AsmRegister32),
    Imm(u32),
}

/// The inputs of one page exit: edi = the GHCB, each `(offset, value)`
/// written to its field's low dword (with `clear_upper`, its upper dword
/// zeroed too: for fields the page's preparation did not set, or the host
/// may have written), and the valid bitmap's two dwords that can hold bits
/// (RAX; the exit fields) set to exactly `valid_rax` and `valid_exit`.
fn emit_ghcb_inputs(
    a: &mut CodeAssembler,
    fields: &[(u32, Input)],
    clear_upper: bool,
    valid_rax: u32,
    valid_exit: u32,
) -> Result<(), IcedError> {
    a.mov(edi, GHCB_GPA)?;
    for &(off, v) in fields {
        match v {
            Input::Reg(r) => a.mov(dword_ptr(edi + off), r)?,
            Input::Imm(i) => a.mov(dword_ptr(edi + off), i)?,
        }
        if clear_upper {
            a.mov(dword_ptr(edi + (off + 4)), 0)?;
        }
    }
    a.mov(dword_ptr(edi + ghcb::VALID_DWORD_RAX), valid_rax)?;
    a.mov(dword_ptr(edi + ghcb::VALID_DWORD_EXIT), valid_exit)
}

/// Rings the doorbell for the GHCB at edi: the GHCB MSR write (on hardware
/// VMGEXIT would follow, docs/protocol/choices.md#u46). Clobbers eax, ecx,
/// edx.
fn emit_ghcb_doorbell(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.mov(eax, edi)?;
    a.xor(edx, edx)?;
    a.mov(ecx, GHCB_MSR)?;
    a.wrmsr()
}

/// Rings the doorbell ([`emit_ghcb_doorbell`]) and jumps to `failed` when
/// the host answered an error. Clobbers eax, ecx, edx.
fn emit_ghcb_ring(a: &mut CodeAssembler, failed: CodeLabel) -> Result<(), IcedError> {
    emit_ghcb_doorbell(a)?;
    a.cmp(dword_ptr(edi + ghcb::SW_EXIT_INFO_1), 0)?;
    a.jne(failed)
}

/// Makes the page at `gpa` shared by an MSR-protocol page-state change
/// (0x014 | gfn << 12 | op 2 << 52; the answer 0x015 with error 0), else
/// jumps to `failed`. Clobbers eax, edx.
fn emit_page_shared(
    a: &mut CodeAssembler,
    lib: &Lib,
    gpa: u32,
    failed: CodeLabel,
) -> Result<(), IcedError> {
    a.mov(eax, gpa | 0x014)?;
    a.mov(edx, 2 << 20)?;
    a.call(lib.msr_call)?;
    a.cmp(eax, 0x015)?;
    a.jne(failed)?;
    a.test(edx, edx)?;
    a.jnz(failed)
}

fn emit_lib(a: &mut CodeAssembler, lib: &mut Lib) -> Result<(), IcedError> {
    let mut ghcb_ioio = a.create_label();

    // in8: al = byte read from port dx (through the GHCB under SEV-ES).
    // Preserves all but al.
    let mut in_ghcb = a.create_label();
    a.set_label(&mut lib.in8)?;
    if_es(a, in_ghcb)?;
    a.in_(al, dx)?;
    a.ret()?;
    a.set_label(&mut in_ghcb)?;
    a.push(ecx)?;
    a.push(ebx)?;
    a.mov(ebx, eax)?;
    a.movzx(ecx, dx)?;
    a.shl(ecx, 16)?;
    a.or(ecx, 0x11)?; // IN, 8-bit
    a.call(ghcb_ioio)?;
    a.mov(bl, al)?;
    a.mov(eax, ebx)?;
    a.pop(ebx)?;
    a.pop(ecx)?;
    a.ret()?;

    // out8: al written to port dx (through the GHCB under SEV-ES).
    // Preserves all.
    let mut out_ghcb = a.create_label();
    a.set_label(&mut lib.out8)?;
    if_es(a, out_ghcb)?;
    a.out(dx, al)?;
    a.ret()?;
    a.set_label(&mut out_ghcb)?;
    a.push(eax)?;
    a.push(ecx)?;
    a.movzx(eax, al)?;
    a.movzx(ecx, dx)?;
    a.shl(ecx, 16)?;
    a.or(ecx, 0x10)?; // OUT, 8-bit
    a.call(ghcb_ioio)?;
    a.pop(ecx)?;
    a.pop(eax)?;
    a.ret()?;

    // ghcb_ioio: ecx = SW_EXITINFO1 (SVM IOIO layout), eax = RAX for an
    // OUT. Fills the GHCB page, rings the doorbell (the GHCB MSR write;
    // on hardware VMGEXIT would follow, docs/protocol/choices.md#u46) and
    // returns the RAX the host answered in eax. A refused exit terminates.
    // Preserves all but eax.
    let mut io_failed = a.create_label();
    a.set_label(&mut ghcb_ioio)?;
    a.push(edi)?;
    a.push(edx)?;
    a.push(ecx)?;
    emit_ghcb_inputs(
        a,
        &[
            (ghcb::SW_EXIT_INFO_1, Input::Reg(ecx)),
            (ghcb::SW_EXIT_INFO_2, Input::Imm(0)),
        ],
        false,
        ghcb::VALID_RAX,
        ghcb::VALID_EXIT,
    )?;
    a.mov(dword_ptr(edi + ghcb::RAX), eax)?;
    let mut is_out = a.create_label();
    a.test(cl, 1)?;
    a.jz(is_out)?;
    a.mov(dword_ptr(edi + ghcb::VALID_DWORD_RAX), 0)?;
    a.set_label(&mut is_out)?;
    emit_ghcb_ring(a, io_failed)?;
    a.mov(eax, dword_ptr(edi + ghcb::RAX))?;
    a.pop(ecx)?;
    a.pop(edx)?;
    a.pop(edi)?;
    a.ret()?;
    a.set_label(&mut io_failed)?;
    a.mov(ebx, 0)?; // reason set 0, code 0: general
    a.jmp(lib.terminate)?;

    // msr_call: edx:eax = GHCB MSR protocol request; returns the response
    // in edx:eax (the write is the doorbell, the read the answer).
    // Preserves ecx.
    a.set_label(&mut lib.msr_call)?;
    a.push(ecx)?;
    a.mov(ecx, GHCB_MSR)?;
    a.wrmsr()?;
    a.rdmsr()?;
    a.pop(ecx)?;
    a.ret()?;

    // terminate: bl = reason set, bh = reason code. Never returns.
    a.set_label(&mut lib.terminate)?;
    a.movzx(eax, bh)?;
    a.shl(eax, 16)?;
    a.movzx(ecx, bl)?;
    a.and(ecx, 0xF)?;
    a.shl(ecx, 12)?;
    a.or(eax, ecx)?;
    a.or(eax, 0x100)?;
    a.xor(edx, edx)?;
    a.mov(ecx, GHCB_MSR)?;
    a.wrmsr()?;
    let mut dead = a.create_label();
    a.set_label(&mut dead)?;
    a.cli()?;
    a.hlt()?;
    a.jmp(dead)?;

    // putc: al = byte. Waits for THRE, then writes THR. Preserves all.
    a.set_label(&mut lib.putc)?;
    a.push(edx)?;
    a.push(eax)?;
    a.mov(dx, u32::from(COM1_BASE + 5))?;
    let mut wait = a.create_label();
    a.set_label(&mut wait)?;
    a.call(lib.in8)?;
    a.test(al, 0x20)?;
    a.jz(wait)?;
    a.pop(eax)?;
    a.mov(dx, u32::from(COM1_BASE))?;
    a.call(lib.out8)?;
    a.pop(edx)?;
    a.ret()?;

    // puts: esi = NUL-terminated string. Preserves all.
    let mut puts_ghcb = a.create_label();
    a.set_label(&mut lib.puts)?;
    a.pushad()?;
    if_es(a, puts_ghcb)?;
    let mut next = a.create_label();
    let mut done = a.create_label();
    a.set_label(&mut next)?;
    a.lodsb()?;
    a.test(al, al)?;
    a.jz(done)?;
    a.call(lib.putc)?;
    a.jmp(next)?;
    a.set_label(&mut done)?;
    a.popad()?;
    a.ret()?;

    // puts under SEV-ES/SNP: the string's length (`repne scasb`), then,
    // each time the line status says THRE (the FIFO is empty), up to CHUNK
    // bytes copied into the GHCB's shared buffer (`rep movsb`) and sent
    // with one string exit (`rep outsb`, as a #VC handler sends it),
    // instead of one exit per byte. ebx = bytes left.
    let mut chunk = a.create_label();
    let mut full = a.create_label();
    let mut send = a.create_label();
    a.set_label(&mut puts_ghcb)?;
    a.mov(edi, esi)?;
    a.xor(eax, eax)?;
    a.mov(ecx, u32::MAX)?;
    a.repne().scasb()?;
    a.not(ecx)?;
    a.lea(ebx, ptr(ecx - 1))?;
    a.set_label(&mut chunk)?;
    a.test(ebx, ebx)?;
    a.jz(done)?;
    a.mov(dx, u32::from(COM1_BASE + 5))?;
    let mut thre = a.create_label();
    a.set_label(&mut thre)?;
    a.call(lib.in8)?;
    a.test(al, 0x20)?;
    a.jz(thre)?;
    a.mov(ecx, ghcb::CHUNK)?;
    a.cmp(ebx, ecx)?;
    a.jae(full)?;
    a.mov(ecx, ebx)?;
    a.set_label(&mut full)?;
    a.sub(ebx, ecx)?;
    a.mov(edi, GHCB_GPA + ghcb::SHARED_BUFFER)?;
    a.mov(edx, ecx)?;
    a.rep().movsb()?;
    a.mov(ecx, edx)?;
    a.call(send)?;
    a.jmp(chunk)?;

    // send: ecx = bytes in the shared buffer -> one string exit to COM1
    // (SW_SCRATCH, set once, points at the buffer). A refused exit
    // terminates (through ghcb_ioio's failure path). Clobbers eax, ecx,
    // edx, edi.
    a.set_label(&mut send)?;
    emit_ghcb_inputs(
        a,
        &[
            (
                ghcb::SW_EXIT_INFO_1,
                Input::Imm((u32::from(COM1_BASE) << 16) | ghcb::OUTSB_REP_A32),
            ),
            (ghcb::SW_EXIT_INFO_2, Input::Reg(ecx)),
        ],
        false,
        0,
        ghcb::VALID_EXIT_SCRATCH,
    )?;
    emit_ghcb_ring(a, io_failed)?;
    a.ret()?;

    // Numbers are formatted into a buffer on the stack and printed with
    // puts, so that under SEV-ES/SNP they leave in one string exit.
    //
    // hex_digits: the top `ecx` nibbles of eax as lowercase hex digits,
    // then NUL, at edi. Clobbers eax, ecx, edx, edi.
    let mut hex_digits = a.create_label();
    let mut digit = a.create_label();
    a.set_label(&mut hex_digits)?;
    a.rol(eax, 4)?;
    a.mov(edx, eax)?;
    a.and(edx, 0xF)?;
    a.add(dl, b'0' as i32)?;
    a.cmp(dl, b'9' as i32)?;
    a.jbe(digit)?;
    a.add(dl, (b'a' - b'9' - 1) as i32)?;
    a.set_label(&mut digit)?;
    a.mov(byte_ptr(edi), dl)?;
    a.inc(edi)?;
    a.dec(ecx)?;
    a.jnz(hex_digits)?;
    a.mov(byte_ptr(edi), 0)?;
    a.ret()?;

    // put_hex8: al printed as two lowercase hex digits. Preserves all.
    a.set_label(&mut lib.put_hex8)?;
    a.pushad()?;
    a.sub(esp, 12)?;
    a.shl(eax, 24)?;
    a.mov(ecx, 2)?;
    a.mov(edi, esp)?;
    a.call(hex_digits)?;
    a.mov(esi, esp)?;
    a.call(lib.puts)?;
    a.add(esp, 12)?;
    a.popad()?;
    a.ret()?;

    // put_hex32: eax printed as eight hex digits. Preserves all.
    a.set_label(&mut lib.put_hex32)?;
    a.pushad()?;
    a.sub(esp, 12)?;
    a.mov(ecx, 8)?;
    a.mov(edi, esp)?;
    a.call(hex_digits)?;
    a.mov(esi, esp)?;
    a.call(lib.puts)?;
    a.add(esp, 12)?;
    a.popad()?;
    a.ret()?;

    // put_dec: eax printed in decimal (at most ten digits). Preserves all.
    a.set_label(&mut lib.put_dec)?;
    a.pushad()?;
    a.sub(esp, 12)?;
    a.lea(edi, ptr(esp + 11))?;
    a.mov(byte_ptr(edi), 0)?;
    a.mov(ecx, 10)?;
    let mut divide = a.create_label();
    a.set_label(&mut divide)?;
    a.xor(edx, edx)?;
    a.div(ecx)?;
    a.add(dl, b'0' as i32)?;
    a.dec(edi)?;
    a.mov(byte_ptr(edi), dl)?;
    a.test(eax, eax)?;
    a.jnz(divide)?;
    a.mov(esi, edi)?;
    a.call(lib.puts)?;
    a.add(esp, 12)?;
    a.popad()?;
    a.ret()?;

    // exit: al = status -> debug-exit port; never returns.
    a.set_label(&mut lib.exit)?;
    a.mov(dx, u32::from(DEBUG_EXIT_PORT))?;
    a.call(lib.out8)?;
    let mut stuck = a.create_label();
    a.set_label(&mut stuck)?;
    a.cli()?;
    a.hlt()?;
    a.jmp(stuck)?;
    Ok(())
}

/// Secret-table reader. Register use in the main flow: ebx = area base,
/// edi = end of table, esi = cursor, ebp = entry count.
fn emit_normal(
    a: &mut CodeAssembler,
    lib: &Lib,
    d: &mut Data,
    secret_base: u32,
    secret_size: u32,
) -> Result<(), IcedError> {
    let header_guid = d.add(crate::SECRET_TABLE_HEADER_GUID.as_bytes());
    // GUID text order: bytes 3,2,1,0 - 5,4 - 7,6 - 8,9 - 10..15; 0xFF ends.
    let guid_fmt = d.add(&[
        3, 2, 1, 0, b'-', 5, 4, b'-', 7, 6, b'-', 8, 9, b'-', 10, 11, 12, 13, 14, 15, 0xFF,
    ]);
    let s_area = d.cstr("secret area: 0x");
    let s_size = d.cstr(", size 0x");
    let s_nl = d.cstr("\n");
    let s_none = d.cstr("no secret injected\n");
    let s_found = d.cstr("secret table: ");
    let s_bytes = d.cstr(" bytes\n");
    let s_secret = d.cstr("secret ");
    let s_colon_text = d.cstr(": ");
    let s_hex = d.cstr("hex ");
    let s_empty = d.cstr("(empty)");
    let s_entries = d.cstr("secret table: ");
    let s_entries2 = d.cstr(" entries\n");
    let s_err = d.cstr("secret table error: ");
    let s_bad_total = d.cstr("total length 0x");
    let s_bad_total2 = d.cstr(" outside 20..=area size 0x");
    let s_trunc = d.cstr("truncated entry header at offset 0x");
    let s_bad_len = d.cstr("entry at offset 0x");
    let s_bad_len2 = d.cstr(" has invalid length 0x");

    let mut put_guid = a.create_label();
    let mut put_data = a.create_label();
    let mut no_secret = a.create_label();
    let mut bad_total = a.create_label();
    let mut entry_loop = a.create_label();
    let mut table_done = a.create_label();
    let mut bad_header = a.create_label();
    let mut bad_len = a.create_label();
    let mut fail = a.create_label();

    say(a, lib, s_area)?;
    a.mov(eax, secret_base)?;
    a.call(lib.put_hex32)?;
    say(a, lib, s_size)?;
    a.mov(eax, secret_size)?;
    a.call(lib.put_hex32)?;
    say(a, lib, s_nl)?;

    a.mov(ebx, secret_base)?;
    if secret_size < 20 {
        a.jmp(no_secret)?;
    }
    a.mov(esi, ebx)?;
    a.mov(edi, header_guid)?;
    a.mov(ecx, 16)?;
    a.repe().cmpsb()?;
    a.jne(no_secret)?;

    a.mov(eax, dword_ptr(ebx + 16))?;
    a.cmp(eax, 20)?;
    a.jb(bad_total)?;
    a.cmp(eax, secret_size)?;
    a.ja(bad_total)?;
    say(a, lib, s_found)?;
    a.call(lib.put_dec)?;
    say(a, lib, s_bytes)?;
    a.lea(edi, ptr(ebx + eax))?;
    a.lea(esi, ptr(ebx + 20))?;
    a.xor(ebp, ebp)?;

    a.set_label(&mut entry_loop)?;
    a.cmp(esi, edi)?;
    a.je(table_done)?;
    a.mov(ecx, edi)?;
    a.sub(ecx, esi)?;
    a.cmp(ecx, 20)?;
    a.jb(bad_header)?;
    a.mov(edx, dword_ptr(esi + 16))?;
    a.cmp(edx, 20)?;
    a.jb(bad_len)?;
    a.cmp(edx, ecx)?;
    a.ja(bad_len)?;
    a.inc(ebp)?;
    a.push(esi)?;
    say(a, lib, s_secret)?;
    a.pop(esi)?;
    a.call(put_guid)?;
    a.push(esi)?;
    say(a, lib, s_colon_text)?;
    a.pop(esi)?;
    a.call(put_data)?;
    a.push(esi)?;
    say(a, lib, s_nl)?;
    a.pop(esi)?;
    a.add(esi, edx)?;
    a.jmp(entry_loop)?;

    a.set_label(&mut table_done)?;
    say(a, lib, s_entries)?;
    a.mov(eax, ebp)?;
    a.call(lib.put_dec)?;
    say(a, lib, s_entries2)?;
    a.mov(al, EXIT_OK as u32)?;
    a.call(lib.exit)?;

    a.set_label(&mut no_secret)?;
    say(a, lib, s_none)?;
    a.mov(al, EXIT_OK as u32)?;
    a.call(lib.exit)?;

    // bad_total: eax = total length.
    a.set_label(&mut bad_total)?;
    say(a, lib, s_err)?;
    say(a, lib, s_bad_total)?;
    a.call(lib.put_hex32)?;
    say(a, lib, s_bad_total2)?;
    a.mov(eax, secret_size)?;
    a.call(lib.put_hex32)?;
    a.jmp(fail)?;

    // bad_header: esi = cursor. (`say` clobbers esi; puts preserves eax.)
    a.set_label(&mut bad_header)?;
    a.mov(eax, esi)?;
    a.sub(eax, ebx)?;
    say(a, lib, s_err)?;
    say(a, lib, s_trunc)?;
    a.call(lib.put_hex32)?;
    a.jmp(fail)?;

    // bad_len: esi = cursor, edx = entry length.
    a.set_label(&mut bad_len)?;
    a.mov(eax, esi)?;
    a.sub(eax, ebx)?;
    say(a, lib, s_err)?;
    say(a, lib, s_bad_len)?;
    a.call(lib.put_hex32)?;
    say(a, lib, s_bad_len2)?;
    a.mov(eax, edx)?;
    a.call(lib.put_hex32)?;

    a.set_label(&mut fail)?;
    say(a, lib, s_nl)?;
    a.mov(al, EXIT_BAD_SECRET_TABLE as u32)?;
    a.call(lib.exit)?;

    // put_guid: esi = 16 GUID bytes. Preserves all.
    a.set_label(&mut put_guid)?;
    a.pushad()?;
    a.mov(edi, guid_fmt)?;
    let mut g_next = a.create_label();
    let mut g_dash = a.create_label();
    let mut g_done = a.create_label();
    a.set_label(&mut g_next)?;
    a.movzx(eax, byte_ptr(edi))?;
    a.inc(edi)?;
    a.cmp(al, 0xFF)?;
    a.je(g_done)?;
    a.cmp(al, b'-' as i32)?;
    a.je(g_dash)?;
    a.mov(al, byte_ptr(esi + eax))?;
    a.call(lib.put_hex8)?;
    a.jmp(g_next)?;
    a.set_label(&mut g_dash)?;
    a.call(lib.putc)?;
    a.jmp(g_next)?;
    a.set_label(&mut g_done)?;
    a.popad()?;
    a.ret()?;

    // put_data: esi = entry, edx = entry length (>= 20). Prints the data
    // (entry + 20, edx - 20 bytes) as text if every byte is printable ASCII,
    // else as "hex " + hex digits; "(empty)" if there is none. Preserves all.
    a.set_label(&mut put_data)?;
    a.pushad()?;
    a.lea(esi, ptr(esi + 20))?;
    a.lea(ecx, ptr(edx - 20))?;
    let mut empty = a.create_label();
    let mut scan = a.create_label();
    let mut binary = a.create_label();
    let mut text_loop = a.create_label();
    let mut hex_loop = a.create_label();
    let mut out = a.create_label();
    a.test(ecx, ecx)?;
    a.jz(empty)?;
    a.xor(ebx, ebx)?;
    a.set_label(&mut scan)?;
    a.mov(al, byte_ptr(esi + ebx))?;
    a.cmp(al, 0x20)?;
    a.jb(binary)?;
    a.cmp(al, 0x7E)?;
    a.ja(binary)?;
    a.inc(ebx)?;
    a.cmp(ebx, ecx)?;
    a.jb(scan)?;

    a.set_label(&mut text_loop)?;
    a.lodsb()?;
    a.call(lib.putc)?;
    a.dec(ecx)?;
    a.jnz(text_loop)?;
    a.jmp(out)?;

    a.set_label(&mut binary)?;
    a.push(esi)?;
    a.mov(esi, s_hex)?;
    a.call(lib.puts)?;
    a.pop(esi)?;
    a.set_label(&mut hex_loop)?;
    a.lodsb()?;
    a.call(lib.put_hex8)?;
    a.dec(ecx)?;
    a.jnz(hex_loop)?;
    a.jmp(out)?;

    a.set_label(&mut empty)?;
    a.mov(esi, s_empty)?;
    a.call(lib.puts)?;

    a.set_label(&mut out)?;
    a.popad()?;
    a.ret()?;
    Ok(())
}

/// Memory test. Register use: ebx = next page p, ebp = generation g (pages
/// below p hold generation g, the others g − 1).
///
/// Every dword of the page at GPA `a` in generation `g` is
/// `a ^ (g * MEMTEST_HASH)` (wrapping), so a page from another generation or
/// another address never matches. Pages are filled with `rep stosd` and
/// checked with `repe scasd`: this KVM emulates non-paged protected mode
/// instruction by instruction, and string instructions are emulated in
/// batches (a per-dword loop was ~20 times slower).
fn emit_memtest(
    a: &mut CodeAssembler,
    lib: &Lib,
    d: &mut Data,
    m: &MemtestOptions,
) -> Result<(), IcedError> {
    let base = m.base;
    let pages = m.pages;
    let s_start = d.cstr("memtest: base 0x");
    let s_pages = d.cstr(", pages ");
    let s_nl = d.cstr("\n");
    let s_filled = d.cstr("memtest: filled\n");
    let s_pass = d.cstr("memtest: pass ");
    let s_checking = d.cstr("memtest: checking\n");
    let s_ok = d.cstr("memtest: ok ");
    let s_ok2 = d.cstr(" pages\n");
    let s_bad = d.cstr("memtest: mismatch at 0x");
    let s_bad2 = d.cstr(": expected 0x");
    let s_bad3 = d.cstr(", found 0x");

    say(a, lib, s_start)?;
    a.mov(eax, base)?;
    a.call(lib.put_hex32)?;
    say(a, lib, s_pages)?;
    a.mov(eax, pages)?;
    a.call(lib.put_dec)?;
    say(a, lib, s_nl)?;

    let mut fill_loop = a.create_label();
    let mut no_wrap = a.create_label();
    let mut no_progress = a.create_label();
    let mut verify = a.create_label();
    let mut not_filled = a.create_label();

    a.mov(ebp, 1)?;
    a.xor(ebx, ebx)?;

    a.set_label(&mut fill_loop)?;
    // Fill page ebx with generation ebp.
    a.mov(eax, ebp)?;
    a.imul_3(eax, eax, MEMTEST_HASH as i32)?;
    a.mov(edi, ebx)?;
    a.shl(edi, 12)?;
    a.add(edi, base)?;
    a.xor(eax, edi)?;
    a.mov(ecx, 1024)?;
    a.rep().stosd()?;
    a.inc(ebx)?;
    a.cmp(ebx, pages)?;
    a.jb(no_wrap)?;

    // End of pass ebp.
    a.xor(ebx, ebx)?;
    a.cmp(ebp, 1)?;
    a.jne(not_filled)?;
    say(a, lib, s_filled)?;
    a.set_label(&mut not_filled)?;
    a.mov(eax, ebp)?;
    if m.progress_every != 0 {
        a.xor(edx, edx)?;
        a.mov(ecx, m.progress_every)?;
        a.div(ecx)?;
        a.test(edx, edx)?;
        a.jnz(no_progress)?;
        say(a, lib, s_pass)?;
        a.mov(eax, ebp)?;
        a.call(lib.put_dec)?;
        say(a, lib, s_nl)?;
        a.set_label(&mut no_progress)?;
    }
    a.inc(ebp)?;
    if m.max_passes != 0 {
        // After pass ebp−1 == max_passes every page holds generation ebp−1.
        a.cmp(ebp, m.max_passes)?;
        a.ja(verify)?;
    }

    a.set_label(&mut no_wrap)?;
    // Poll the control port every MEMTEST_POLL_PAGES pages, after pass 1.
    a.cmp(ebp, 2)?;
    a.jb(fill_loop)?;
    a.test(ebx, MEMTEST_POLL_PAGES - 1)?;
    a.jnz(fill_loop)?;
    a.mov(dx, u32::from(CONTROL_PORT))?;
    a.call(lib.in8)?;
    a.test(al, 1)?;
    a.jz(fill_loop)?;

    // Verify: pages q < ebx hold generation ebp, the others ebp − 1.
    a.set_label(&mut verify)?;
    say(a, lib, s_checking)?;
    let mut page_loop = a.create_label();
    let mut current = a.create_label();
    let mut mismatch = a.create_label();
    let mut all_ok = a.create_label();
    a.xor(esi, esi)?;
    a.set_label(&mut page_loop)?;
    a.cmp(esi, pages)?;
    a.jae(all_ok)?;
    a.mov(eax, ebp)?;
    a.cmp(esi, ebx)?;
    a.jb(current)?;
    a.dec(eax)?;
    a.set_label(&mut current)?;
    a.imul_3(eax, eax, MEMTEST_HASH as i32)?;
    a.mov(edi, esi)?;
    a.shl(edi, 12)?;
    a.add(edi, base)?;
    a.xor(eax, edi)?;
    a.mov(ecx, 1024)?;
    a.repe().scasd()?;
    a.jne(mismatch)?;
    a.inc(esi)?;
    a.jmp(page_loop)?;

    a.set_label(&mut all_ok)?;
    say(a, lib, s_ok)?;
    a.mov(eax, pages)?;
    a.call(lib.put_dec)?;
    say(a, lib, s_ok2)?;
    a.mov(al, EXIT_OK as u32)?;
    a.call(lib.exit)?;

    // mismatch: edi = one dword past the mismatch, eax = expected.
    a.set_label(&mut mismatch)?;
    a.sub(edi, 4)?;
    a.mov(edx, eax)?;
    say(a, lib, s_bad)?;
    a.mov(eax, edi)?;
    a.call(lib.put_hex32)?;
    say(a, lib, s_bad2)?;
    a.mov(eax, edx)?;
    a.call(lib.put_hex32)?;
    say(a, lib, s_bad3)?;
    a.mov(eax, dword_ptr(edi))?;
    a.call(lib.put_hex32)?;
    say(a, lib, s_nl)?;
    a.mov(al, EXIT_MEMTEST_MISMATCH as u32)?;
    a.call(lib.exit)?;
    Ok(())
}

/// Mode detection, as OVMF does it (docs/guide/demo-guest.md#modes): CPUID
/// 0x80000000 must reach leaf 0x8000001F, whose EAX bit 1 says SEV; then
/// the SEV status MSR says which mode, stored at [`VARS_BASE`] (0 without
/// SEV). No output.
fn emit_detect(a: &mut CodeAssembler) -> Result<(), IcedError> {
    let mut done = a.create_label();
    a.mov(dword_ptr(VARS_BASE), 0)?;
    a.mov(eax, 0x8000_0000u32)?;
    a.cpuid()?;
    a.cmp(eax, 0x8000_001Fu32)?;
    a.jb(done)?;
    a.mov(eax, 0x8000_001Fu32)?;
    a.cpuid()?;
    a.test(al, 2)?;
    a.jz(done)?;
    a.mov(ecx, SEV_STATUS_MSR)?;
    a.rdmsr()?;
    a.mov(dword_ptr(VARS_BASE), eax)?;
    a.set_label(&mut done)?;
    Ok(())
}

/// `bl` = reason set, `bh` = reason code; terminate.
fn terminate(a: &mut CodeAssembler, lib: &Lib, set: u8, code: u8) -> Result<(), IcedError> {
    a.mov(ebx, u32::from(set) | (u32::from(code) << 8))?;
    a.jmp(lib.terminate)
}

/// Under SEV-ES or SNP, makes the GHCB usable before anything is printed:
/// the SEV information request (protocol versions, C-bit); for SNP also
/// the hypervisor features (SNP bit), the GHCB page made shared by a
/// page-state change and registered; then the page is prepared for its
/// exits ([`emit_ghcb_prepare`]). Any bad answer terminates with the
/// reason the GHCB specification or Linux uses for it.
fn emit_ghcb_setup(a: &mut CodeAssembler, lib: &Lib) -> Result<(), IcedError> {
    let mut done = a.create_label();
    let mut ready = a.create_label();
    let mut bad_version = a.create_label();
    let mut no_snp = a.create_label();
    let mut psc_failed = a.create_label();
    let mut reg_failed = a.create_label();
    a.test(dword_ptr(VARS_BASE), STATUS_ES)?;
    a.jz(done)?;
    // SEV information: 0x001 | c-bit << 24 | min << 32 | max << 48.
    a.xor(edx, edx)?;
    a.mov(eax, 0x002)?;
    a.call(lib.msr_call)?;
    a.mov(ebx, eax)?;
    a.and(ebx, 0xFFF)?;
    a.cmp(ebx, 0x001)?;
    a.jne(bad_version)?;
    a.movzx(ebx, dx)?;
    a.cmp(ebx, GHCB_VERSION)?;
    a.ja(bad_version)?;
    a.mov(ebx, edx)?;
    a.shr(ebx, 16)?;
    a.cmp(ebx, GHCB_VERSION)?;
    a.jb(bad_version)?;
    a.shr(eax, 24)?;
    a.mov(dword_ptr(VARS_BASE + 4), eax)?;
    a.mov(dword_ptr(VARS_BASE + 8), edx)?;
    a.test(dword_ptr(VARS_BASE), STATUS_SNP)?;
    a.jz(ready)?;
    // Hypervisor features: 0x081 | bitmap << 12, bit 0 SNP.
    a.xor(edx, edx)?;
    a.mov(eax, 0x080)?;
    a.call(lib.msr_call)?;
    a.mov(ebx, eax)?;
    a.and(ebx, 0xFFF)?;
    a.cmp(ebx, 0x081)?;
    a.jne(no_snp)?;
    a.test(eax, 1 << 12)?;
    a.jz(no_snp)?;
    // The GHCB page made shared.
    emit_page_shared(a, lib, GHCB_GPA, psc_failed)?;
    // Register the GHCB: 0x012 | gfn << 12; the response echoes the GFN.
    a.mov(eax, GHCB_GPA | 0x012)?;
    a.xor(edx, edx)?;
    a.call(lib.msr_call)?;
    a.cmp(eax, GHCB_GPA | 0x013)?;
    a.jne(reg_failed)?;
    a.test(edx, edx)?;
    a.jnz(reg_failed)?;
    a.set_label(&mut ready)?;
    emit_ghcb_prepare(a)?;
    a.jmp(done)?;
    a.set_label(&mut bad_version)?;
    terminate(a, lib, 0, 1)?;
    a.set_label(&mut no_snp)?;
    terminate(a, lib, 0, 2)?;
    a.set_label(&mut psc_failed)?;
    terminate(a, lib, 1, 1)?;
    a.set_label(&mut reg_failed)?;
    terminate(a, lib, 1, 0)?;
    a.set_label(&mut done)?;
    Ok(())
}

/// Under SEV-ES or SNP, after the greeting: the mode, the GHCB, a CPUID
/// value obtained through the MSR protocol; for SNP the secrets page
/// (version, VMPCK0–3 present or zero, never their values) and the CPUID
/// page's entry count.
fn emit_mode_report(a: &mut CodeAssembler, lib: &Lib, d: &mut Data) -> Result<(), IcedError> {
    let s_es = d.cstr("mode: sev-es\n");
    let s_snp = d.cstr("mode: sev-snp\n");
    let s_ghcb = d.cstr("ghcb: protocol ");
    let s_dash = d.cstr("-");
    let s_cbit = d.cstr(", c-bit ");
    let s_page = d.cstr(", all i/o through the ghcb at 0x");
    let s_snp_ghcb = d.cstr("ghcb: page made shared by page-state change and registered\n");
    let s_cpuid = d.cstr("cpuid 0x8000001f via ghcb msr protocol: eax 0x");
    let s_ebx = d.cstr(", ebx 0x");
    let s_nl = d.cstr("\n");
    let s_secrets = d.cstr("snp secrets page at 0x");
    let s_version = d.cstr(": version ");
    let s_vmpck = d.cstr(", vmpck");
    let s_present = d.cstr(" present");
    let s_zero = d.cstr(" zero");
    let s_cpuid_page = d.cstr("snp cpuid page at 0x");
    let s_entries = d.cstr(": ");
    let s_entries2 = d.cstr(" entries\n");

    let mut done = a.create_label();
    let mut es_line = a.create_label();
    let mut common = a.create_label();
    a.test(dword_ptr(VARS_BASE), STATUS_ES)?;
    a.jz(done)?;
    a.test(dword_ptr(VARS_BASE), STATUS_SNP)?;
    a.jz(es_line)?;
    say(a, lib, s_snp)?;
    a.jmp(common)?;
    a.set_label(&mut es_line)?;
    say(a, lib, s_es)?;
    a.set_label(&mut common)?;
    // ghcb: protocol <min>-<max>, c-bit <n>, all i/o through the ghcb at 0x...
    say(a, lib, s_ghcb)?;
    a.movzx(eax, word_ptr(VARS_BASE + 8))?;
    a.call(lib.put_dec)?;
    say(a, lib, s_dash)?;
    a.movzx(eax, word_ptr(VARS_BASE + 10))?;
    a.call(lib.put_dec)?;
    say(a, lib, s_cbit)?;
    a.movzx(eax, byte_ptr(VARS_BASE + 4))?;
    a.call(lib.put_dec)?;
    say(a, lib, s_page)?;
    a.mov(eax, GHCB_GPA)?;
    a.call(lib.put_hex32)?;
    say(a, lib, s_nl)?;
    let mut not_snp = a.create_label();
    a.test(dword_ptr(VARS_BASE), STATUS_SNP)?;
    a.jz(not_snp)?;
    say(a, lib, s_snp_ghcb)?;
    a.set_label(&mut not_snp)?;
    // CPUID through the MSR protocol: 0x004 | reg << 30 | leaf << 32;
    // the answer's value is in edx.
    say(a, lib, s_cpuid)?;
    a.mov(eax, 0x004)?;
    a.mov(edx, 0x8000_001Fu32)?;
    a.call(lib.msr_call)?;
    a.mov(eax, edx)?;
    a.call(lib.put_hex32)?;
    say(a, lib, s_ebx)?;
    a.mov(eax, 0x004 | (1 << 30))?;
    a.mov(edx, 0x8000_001Fu32)?;
    a.call(lib.msr_call)?;
    a.mov(eax, edx)?;
    a.call(lib.put_hex32)?;
    say(a, lib, s_nl)?;
    a.test(dword_ptr(VARS_BASE), STATUS_SNP)?;
    a.jz(done)?;
    // The secrets page: version, then each VMPCK present or zero.
    say(a, lib, s_secrets)?;
    a.mov(eax, SNP_SECRETS_GPA)?;
    a.call(lib.put_hex32)?;
    say(a, lib, s_version)?;
    a.mov(eax, dword_ptr(SNP_SECRETS_GPA))?;
    a.call(lib.put_dec)?;
    for key in 0..4u32 {
        let mut zero = a.create_label();
        let mut next = a.create_label();
        say(a, lib, s_vmpck)?;
        a.mov(eax, key)?;
        a.call(lib.put_dec)?;
        // OR of the key's eight dwords: zero only for an all-zero key.
        let at = SNP_SECRETS_GPA + 0x20 + 0x20 * key;
        a.xor(eax, eax)?;
        for w in 0..8 {
            a.or(eax, dword_ptr(at + 4 * w))?;
        }
        a.jz(zero)?;
        say(a, lib, s_present)?;
        a.jmp(next)?;
        a.set_label(&mut zero)?;
        say(a, lib, s_zero)?;
        a.set_label(&mut next)?;
    }
    say(a, lib, s_nl)?;
    say(a, lib, s_cpuid_page)?;
    a.mov(eax, SNP_CPUID_GPA)?;
    a.call(lib.put_hex32)?;
    say(a, lib, s_entries)?;
    a.mov(eax, dword_ptr(SNP_CPUID_GPA))?;
    a.call(lib.put_dec)?;
    say(a, lib, s_entries2)?;
    a.set_label(&mut done)?;
    Ok(())
}

fn assemble32(program: &Program) -> Result<(Vec<u8>, Vec<u8>), IcedError> {
    let mut a = CodeAssembler::new(32)?;
    let mut d = Data {
        bytes: b"sevm-demo-guest v1\0".to_vec(),
    };
    let mut lib = Lib {
        in8: a.create_label(),
        out8: a.create_label(),
        msr_call: a.create_label(),
        terminate: a.create_label(),
        putc: a.create_label(),
        puts: a.create_label(),
        put_hex8: a.create_label(),
        put_hex32: a.create_label(),
        put_dec: a.create_label(),
        exit: a.create_label(),
    };
    let greeting = d.cstr(&format!("{GREETING}\n"));

    // Entry from the 16-bit code: flat segments, a stack, then the program.
    a.mov(ax, DATA_SELECTOR as u32)?;
    a.mov(ds, ax)?;
    a.mov(es, ax)?;
    a.mov(ss, ax)?;
    a.mov(fs, ax)?;
    a.mov(gs, ax)?;
    a.mov(esp, STACK_TOP)?;
    a.cld()?;
    emit_detect(&mut a)?;
    emit_ghcb_setup(&mut a, &lib)?;
    say(&mut a, &lib, greeting)?;
    emit_mode_report(&mut a, &lib, &mut d)?;
    // AES-GCM and the hex dumper sit in the code stream: jump over them.
    let mut after_routines = a.create_label();
    a.jmp(after_routines)?;
    let gcm = aes_gcm::emit(&mut a, &mut d)?;
    let hex = aes_self_test::emit_put_hex_bytes(&mut a, &lib, &mut d)?;
    a.set_label(&mut after_routines)?;
    guest_request::emit(&mut a, &lib, &mut d, &gcm, hex)?;
    match program {
        Program::Normal {
            secret_base,
            secret_size,
        } => emit_normal(&mut a, &lib, &mut d, *secret_base, *secret_size)?,
        Program::Memtest(m) => emit_memtest(&mut a, &lib, &mut d, m)?,
        Program::AesSelfTest(v) => aes_self_test::emit(&mut a, &lib, &mut d, &gcm, hex, v)?,
    }
    emit_lib(&mut a, &mut lib)?;
    let code = a.assemble(u64::from(CODE32_BASE))?;
    Ok((code, d.bytes))
}

fn assemble16() -> Result<(Vec<u8>, Vec<u8>), IcedError> {
    // Offsets below are relative to the real-mode CS base 0xFFFF0000.
    let mut a = CodeAssembler::new(16)?;
    a.cli()?;
    a.cld()?;
    // o32 lgdt cs:[GDT_DESCRIPTOR]: the 32-bit form loads all 32 base bits.
    let desc = MemoryOperand::with_base_displ_size_bcst_seg(
        Register::None,
        i64::from(GDT_DESCRIPTOR - CS_BASE),
        2,
        false,
        Register::CS,
    );
    a.add_instruction(Instruction::with1(Code::Lgdt_m1632, desc)?)?;
    a.mov(eax, cr0)?;
    a.or(al, 1)?;
    a.mov(cr0, eax)?;
    // jmp dword 0x08:CODE32_BASE (o32 far jump: 32-bit offset).
    a.add_instruction(Instruction::with_far_branch(
        Code::Jmp_ptr1632,
        CODE_SELECTOR,
        CODE32_BASE,
    )?)?;
    let entry = a.assemble(u64::from(ENTRY16 - CS_BASE))?;

    let mut r = CodeAssembler::new(16)?;
    r.jmp(u64::from(ENTRY16 - CS_BASE))?;
    let reset = r.assemble(u64::from(RESET_VECTOR - CS_BASE))?;
    Ok((entry, reset))
}

/// Assembles the whole boot block for `program`.
pub fn assemble(program: &Program) -> Result<Blobs, DemoError> {
    let (code, data) = assemble32(program).map_err(asm_err)?;
    if CODE32_BASE as usize + code.len() > DATA_BASE as usize {
        return Err(DemoError::CodeTooLarge {
            what: "32-bit code",
            len: code.len(),
        });
    }
    if DATA_BASE as usize + data.len() > GDT_BASE as usize {
        return Err(DemoError::CodeTooLarge {
            what: "data",
            len: data.len(),
        });
    }
    let (entry, reset) = assemble16().map_err(asm_err)?;
    let mut gdt = Vec::with_capacity(24);
    for e in GDT {
        gdt.extend_from_slice(&e.to_le_bytes());
    }
    let mut desc = Vec::with_capacity(6);
    desc.extend_from_slice(&((GDT.len() * 8 - 1) as u16).to_le_bytes());
    desc.extend_from_slice(&GDT_BASE.to_le_bytes());
    Ok(Blobs {
        pieces: vec![
            (CODE32_BASE, code),
            (DATA_BASE, data),
            (GDT_BASE, gdt),
            (GDT_DESCRIPTOR, desc),
            (ENTRY16, entry),
            (RESET_VECTOR, reset),
        ],
    })
}
