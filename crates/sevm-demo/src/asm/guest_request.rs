//! The SNP guest's attestation report request
//! (docs/guide/demo-guest.md#the-report-request).
//!
//! When the image carries report data ([`crate::set_report_data`]) and the
//! guest runs as an SNP guest, it makes its message pages shared, builds a
//! MSG_REPORT_REQ with that report data (VMPL 0, VCEK or VLEK as the
//! firmware picks), seals it under VMPCK0 with sequence number 1, sends it
//! with an extended guest request (NAE exit 0x8000_0012 through the GHCB),
//! checks the response header (type, sequence number 2, size), opens it
//! and prints the report in hex. A BUSY answer is retried a bounded number
//! of times; any other failure after the request was sent erases VMPCK0
//! from the secrets page, as Linux does, so its sequence numbers can never
//! be reused.

use iced_x86::code_asm::*;

use super::aes_gcm::{self, AesGcm};
use super::{emit_ghcb_doorbell, emit_ghcb_inputs, emit_page_shared, ghcb, say, Input};
use super::{Data, Lib, SNP_SECRETS_GPA};
use super::{STATUS_SNP, VARS_BASE};
use crate::{REPORT_BLOCK_GPA, REPORT_DATA_MAGIC, REPORT_KIND_OFFSET, REPORT_KIND_PLAIN};

/// The shared request page.
pub const REQUEST_PAGE: u32 = 0x0006_2000;
/// The shared response page.
pub const RESPONSE_PAGE: u32 = 0x0006_3000;
/// The shared certificate buffer of the extended request.
pub const CERT_BUFFER: u32 = 0x0006_4000;
/// Its size in pages.
pub const CERT_PAGES: u32 = 4;
/// The private page where the request payload is built.
const REQUEST_TEXT: u32 = 0x0006_8000;
/// The private page where the response is opened.
const RESPONSE_TEXT: u32 = 0x0006_9000;

/// The extended guest request's exit code.
const EXIT_EXT_GUEST_REQUEST: u32 = 0x8000_0012;
/// The plain guest request's exit code.
const EXIT_GUEST_REQUEST: u32 = 0x8000_0011;
/// GHCB offset of RBX and its valid bit (qword 0x63: byte 12, bit 3).
const GHCB_RBX: u32 = 0x318;
/// RBX (qword 0x63) in the valid bitmap's last dword.
const VALID_RBX: u32 = 1 << 3;
/// How often a BUSY answer is retried.
const BUSY_RETRIES: u32 = 20;
/// Spin iterations between retries.
const BUSY_SPIN: u32 = 20_000;

/// Guest message header fields (docs/protocol/snp.md#guest-messages).
const HDR_SEQNO: u32 = 0x20;
const HDR_ALGO: u32 = 0x30;
const HDR_TYPE: u32 = 0x34;
const HDR_VMPCK: u32 = 0x3C;
const HDR_LEN: u32 = 0x60;
const MSG_REPORT_REQ: u32 = 5;
const MSG_REPORT_RSP: u32 = 6;
const REPORT_REQ_LEN: u32 = 0x60;
const REPORT_RSP_LEN: u32 = 0x4C0;
/// The report's size inside MSG_REPORT_RSP, and where it starts.
const REPORT_LEN: u32 = 0x4A0;
const REPORT_OFFSET: u32 = 0x20;
/// Bytes of report per printed line (64 hex digits).
const LINE_BYTES: u32 = 32;

/// Emits the report request; it runs only in SNP mode with report data in
/// the image. `hex` is the hex dumper.
pub(super) fn emit(
    a: &mut CodeAssembler,
    lib: &Lib,
    d: &mut Data,
    gcm: &AesGcm,
    hex: CodeLabel,
) -> Result<(), IcedError> {
    let magic = u32::from_le_bytes(REPORT_DATA_MAGIC);
    let s_start = d.cstr("snp report: requesting a report with the image's report data\n");
    let s_line = d.cstr("snp report: ");
    let s_nl = d.cstr("\n");
    let s_end = d.cstr("snp report: end\n");
    let s_certs = d.cstr("snp report: certificate table entries: ");
    let s_cert = d.cstr("snp cert: ");
    let s_cert_data = d.cstr("snp cert data: ");
    let s_cert_outside = d.cstr("snp cert: outside the buffer\n");
    let s_certs_end = d.cstr("snp cert: end\n");
    let s_space = d.cstr(" ");
    let s_plain = d.cstr("snp report: plain guest request, no certificate table\n");
    let s_err = d.cstr("snp report error: ");
    let s_psc = d.cstr("the host refused to make the message pages shared\n");
    let s_refused = d.cstr("the host refused the exit, sw_exitinfo2 0x");
    let s_busy = d.cstr("the host stayed busy\n");
    let s_vmm = d.cstr("vmm error 0x");
    let s_fw = d.cstr(", firmware error 0x");
    let s_header = d.cstr("unexpected response header\n");
    let s_auth = d.cstr("the response failed authentication\n");
    let s_status = d.cstr("firmware status 0x");
    let s_size = d.cstr("unexpected report size 0x");
    let s_erased = d.cstr("snp report: vmpck0 erased, no further requests\n");

    let mut done = a.create_label();
    let mut psc_failed = a.create_label();
    let mut failed_after_send = a.create_label();
    a.test(dword_ptr(VARS_BASE), STATUS_SNP)?;
    a.jz(done)?;
    a.cmp(dword_ptr(REPORT_BLOCK_GPA), magic)?;
    a.jne(done)?;
    say(a, lib, s_start)?;

    // Make the request, response and certificate pages shared (MSR
    // protocol page-state change, operation 2).
    for page in [REQUEST_PAGE, RESPONSE_PAGE]
        .into_iter()
        .chain((0..CERT_PAGES).map(|i| CERT_BUFFER + 0x1000 * i))
    {
        emit_page_shared(a, lib, page, psc_failed)?;
    }

    // MSG_REPORT_REQ: report data, VMPL 0, KEY_SEL 0, reserved zero.
    a.mov(edi, REQUEST_TEXT)?;
    a.xor(eax, eax)?;
    a.mov(ecx, REPORT_REQ_LEN / 4)?;
    a.rep().stosd()?;
    a.mov(esi, REPORT_BLOCK_GPA + 16)?;
    a.mov(edi, REQUEST_TEXT)?;
    a.mov(ecx, 16)?;
    a.rep().movsd()?;
    // The header: sequence number 1, AES-256-GCM, header version 1 and
    // size 0x60, MSG_REPORT_REQ version 1 of 0x60 bytes, VMPCK0.
    a.mov(edi, REQUEST_PAGE)?;
    a.xor(eax, eax)?;
    a.mov(ecx, HDR_LEN / 4)?;
    a.rep().stosd()?;
    a.mov(dword_ptr(REQUEST_PAGE + HDR_SEQNO), 1)?;
    a.mov(dword_ptr(REQUEST_PAGE + HDR_ALGO), 0x0060_0101)?;
    a.mov(
        dword_ptr(REQUEST_PAGE + HDR_TYPE),
        MSG_REPORT_REQ | (1 << 8) | (REPORT_REQ_LEN << 16),
    )?;
    a.mov(byte_ptr(REQUEST_PAGE + HDR_VMPCK), 0)?;
    // Seal under VMPCK0; IV = LE64(sequence number) ‖ 0.
    a.mov(esi, SNP_SECRETS_GPA + 0x20)?;
    a.call(gcm.key)?;
    a.mov(dword_ptr(aes_gcm::IV), 1)?;
    a.mov(dword_ptr(aes_gcm::IV + 4), 0)?;
    a.mov(dword_ptr(aes_gcm::IV + 8), 0)?;
    a.mov(esi, REQUEST_TEXT)?;
    a.mov(edi, REQUEST_PAGE + HDR_LEN)?;
    a.mov(ecx, REPORT_REQ_LEN)?;
    a.mov(ebx, REQUEST_PAGE + HDR_ALGO)?;
    a.mov(edx, HDR_LEN - HDR_ALGO)?;
    a.call(gcm.seal)?;
    for k in 0..4u32 {
        a.mov(eax, dword_ptr(aes_gcm::TAG + 4 * k))?;
        a.mov(dword_ptr(REQUEST_PAGE + 4 * k), eax)?;
    }

    // The extended guest request; BUSY is retried after a pause.
    let mut send = a.create_label();
    let mut answered = a.create_label();
    let mut refused = a.create_label();
    let mut busy_out = a.create_label();
    a.mov(ebp, BUSY_RETRIES)?;
    a.set_label(&mut send)?;
    // The GHCB was prepared for IOIO exits (emit_ghcb_prepare): this exit
    // writes its own code and inputs (upper dwords included, as the host
    // may have left a VMM error in SW_EXITINFO2's) and marks exactly them
    // valid; afterwards the page is put back for IOIO exits.
    emit_ghcb_inputs(
        a,
        &[
            (ghcb::SW_EXIT_CODE, Input::Imm(EXIT_EXT_GUEST_REQUEST)),
            (ghcb::SW_EXIT_INFO_1, Input::Imm(REQUEST_PAGE)),
            (ghcb::SW_EXIT_INFO_2, Input::Imm(RESPONSE_PAGE)),
            (ghcb::RAX, Input::Imm(CERT_BUFFER)),
            (GHCB_RBX, Input::Imm(CERT_PAGES)),
        ],
        true,
        ghcb::VALID_RAX,
        ghcb::VALID_EXIT | VALID_RBX,
    )?;
    // A plain request (the image's request kind byte): exit 0x8000_0011,
    // RAX and RBX not valid.
    let mut inputs_done = a.create_label();
    a.cmp(
        byte_ptr(REPORT_BLOCK_GPA + REPORT_KIND_OFFSET),
        i32::from(REPORT_KIND_PLAIN),
    )?;
    a.jne(inputs_done)?;
    a.mov(dword_ptr(edi + ghcb::SW_EXIT_CODE), EXIT_GUEST_REQUEST)?;
    a.mov(dword_ptr(edi + ghcb::VALID_DWORD_RAX), 0)?;
    a.mov(dword_ptr(edi + ghcb::VALID_DWORD_EXIT), ghcb::VALID_EXIT)?;
    a.set_label(&mut inputs_done)?;
    emit_ghcb_doorbell(a)?;
    // edx = SW_EXITINFO1 (non-zero: the host refused the exit), ebx =
    // SW_EXITINFO2's firmware error, eax = its VMM error.
    a.mov(edx, dword_ptr(edi + ghcb::SW_EXIT_INFO_1))?;
    a.mov(ebx, dword_ptr(edi + ghcb::SW_EXIT_INFO_2))?;
    a.mov(eax, dword_ptr(edi + (ghcb::SW_EXIT_INFO_2 + 4)))?;
    a.mov(dword_ptr(edi + ghcb::SW_EXIT_CODE), ghcb::EXIT_IOIO)?;
    for off in [
        ghcb::SW_EXIT_INFO_1 + 4,
        ghcb::SW_EXIT_INFO_2 + 4,
        ghcb::RAX + 4,
        GHCB_RBX,
    ] {
        a.mov(dword_ptr(edi + off), 0)?;
    }
    a.test(edx, edx)?;
    a.jnz(refused)?;
    a.cmp(eax, 2)?;
    a.jne(answered)?;
    a.dec(ebp)?;
    a.jz(busy_out)?;
    a.mov(ecx, BUSY_SPIN)?;
    let mut spin = a.create_label();
    a.set_label(&mut spin)?;
    a.dec(ecx)?;
    a.jnz(spin)?;
    a.jmp(send)?;

    a.set_label(&mut answered)?;
    let mut vmm_or_fw = a.create_label();
    a.mov(ecx, eax)?;
    a.or(ecx, ebx)?;
    a.jnz(vmm_or_fw)?;

    // The response header: MSG_REPORT_RSP version 1 of 0x4C0 bytes,
    // sequence number 2, the same algorithm, header and key.
    let mut bad_header = a.create_label();
    for (off, v) in [
        (HDR_SEQNO, 2),
        (HDR_SEQNO + 4, 0),
        (HDR_ALGO, 0x0060_0101),
        (HDR_TYPE, MSG_REPORT_RSP | (1 << 8) | (REPORT_RSP_LEN << 16)),
    ] {
        a.cmp(dword_ptr(RESPONSE_PAGE + off), v)?;
        a.jne(bad_header)?;
    }
    a.cmp(byte_ptr(RESPONSE_PAGE + HDR_VMPCK), 0)?;
    a.jne(bad_header)?;
    // Open: IV = LE64(2) ‖ 0, the tag in the first 16 header bytes.
    let mut auth_failed = a.create_label();
    a.mov(dword_ptr(aes_gcm::IV), 2)?;
    a.mov(esi, RESPONSE_PAGE + HDR_LEN)?;
    a.mov(edi, RESPONSE_TEXT)?;
    a.mov(ecx, REPORT_RSP_LEN)?;
    a.mov(ebx, RESPONSE_PAGE + HDR_ALGO)?;
    a.mov(edx, HDR_LEN - HDR_ALGO)?;
    a.mov(eax, RESPONSE_PAGE)?;
    a.call(gcm.open)?;
    a.test(eax, eax)?;
    a.jnz(auth_failed)?;
    a.call(gcm.wipe)?;
    let mut bad_status = a.create_label();
    let mut bad_size = a.create_label();
    a.mov(eax, dword_ptr(RESPONSE_TEXT))?;
    a.test(eax, eax)?;
    a.jnz(bad_status)?;
    a.mov(eax, dword_ptr(RESPONSE_TEXT + 4))?;
    a.cmp(eax, REPORT_LEN)?;
    a.jne(bad_size)?;

    // The certificate table (extended requests only): count the entries
    // before the all-zero one.
    let mut certs_done = a.create_label();
    let mut report_lines = a.create_label();
    let mut extended = a.create_label();
    a.cmp(
        byte_ptr(REPORT_BLOCK_GPA + REPORT_KIND_OFFSET),
        i32::from(REPORT_KIND_PLAIN),
    )?;
    a.jne(extended)?;
    say(a, lib, s_plain)?;
    a.jmp(report_lines)?;
    a.set_label(&mut extended)?;
    say(a, lib, s_certs)?;
    a.mov(esi, CERT_BUFFER)?;
    a.xor(eax, eax)?;
    let mut entry = a.create_label();
    let mut counted = a.create_label();
    a.set_label(&mut entry)?;
    a.cmp(eax, CERT_PAGES * 4096 / 24)?;
    a.jae(counted)?;
    a.xor(edx, edx)?;
    for k in 0..6u32 {
        a.or(edx, dword_ptr(esi + 4 * k))?;
    }
    a.jz(counted)?;
    a.inc(eax)?;
    a.add(esi, 24)?;
    a.jmp(entry)?;
    a.set_label(&mut counted)?;
    a.call(lib.put_dec)?;
    say(a, lib, s_nl)?;

    // Each entry: `snp cert: GUID OFFSET LENGTH`, then its bytes, 32 per
    // `snp cert data:` line, when they lie inside the buffer.
    let mut cert_entry = a.create_label();
    let mut cert_line = a.create_label();
    let mut cert_full = a.create_label();
    let mut cert_next = a.create_label();
    let mut cert_outside = a.create_label();
    a.mov(ecx, eax)?;
    a.mov(ebx, CERT_BUFFER)?;
    a.set_label(&mut cert_entry)?;
    a.test(ecx, ecx)?;
    a.jz(certs_done)?;
    a.push(ecx)?;
    say(a, lib, s_cert)?;
    a.mov(esi, ebx)?;
    a.mov(ecx, 16)?;
    a.call(hex)?;
    say(a, lib, s_space)?;
    a.mov(eax, dword_ptr(ebx + 16))?;
    a.call(lib.put_hex32)?;
    say(a, lib, s_space)?;
    a.mov(eax, dword_ptr(ebx + 20))?;
    a.call(lib.put_hex32)?;
    say(a, lib, s_nl)?;
    // offset ≤ buffer and length ≤ buffer - offset.
    a.mov(eax, dword_ptr(ebx + 16))?;
    a.cmp(eax, CERT_PAGES * 4096)?;
    a.ja(cert_outside)?;
    a.mov(edx, CERT_PAGES * 4096)?;
    a.sub(edx, eax)?;
    a.cmp(dword_ptr(ebx + 20), edx)?;
    a.ja(cert_outside)?;
    a.lea(edi, ptr(eax + CERT_BUFFER))?;
    a.mov(edx, dword_ptr(ebx + 20))?;
    a.set_label(&mut cert_line)?;
    a.test(edx, edx)?;
    a.jz(cert_next)?;
    a.mov(ecx, LINE_BYTES)?;
    a.cmp(edx, ecx)?;
    a.jae(cert_full)?;
    a.mov(ecx, edx)?;
    a.set_label(&mut cert_full)?;
    a.sub(edx, ecx)?;
    say(a, lib, s_cert_data)?;
    a.mov(esi, edi)?;
    a.call(hex)?;
    say(a, lib, s_nl)?;
    a.add(edi, ecx)?;
    a.jmp(cert_line)?;
    a.set_label(&mut cert_outside)?;
    say(a, lib, s_cert_outside)?;
    a.set_label(&mut cert_next)?;
    a.add(ebx, 24)?;
    a.pop(ecx)?;
    a.dec(ecx)?;
    a.jmp(cert_entry)?;
    a.set_label(&mut certs_done)?;
    say(a, lib, s_certs_end)?;
    a.set_label(&mut report_lines)?;

    // The report, 32 bytes (64 hex digits) per line.
    a.mov(ebx, RESPONSE_TEXT + REPORT_OFFSET)?;
    let mut line = a.create_label();
    a.set_label(&mut line)?;
    say(a, lib, s_line)?;
    a.mov(esi, ebx)?;
    a.mov(ecx, LINE_BYTES)?;
    a.call(hex)?;
    say(a, lib, s_nl)?;
    a.add(ebx, LINE_BYTES)?;
    a.cmp(ebx, RESPONSE_TEXT + REPORT_OFFSET + REPORT_LEN)?;
    a.jb(line)?;
    say(a, lib, s_end)?;
    a.jmp(done)?;

    // Failures. Before sending: nothing consumed.
    a.set_label(&mut psc_failed)?;
    say(a, lib, s_err)?;
    say(a, lib, s_psc)?;
    a.jmp(done)?;
    // After sending: report, then erase VMPCK0.
    a.set_label(&mut refused)?;
    say(a, lib, s_err)?;
    say(a, lib, s_refused)?;
    a.mov(eax, ebx)?;
    a.call(lib.put_hex32)?;
    say(a, lib, s_nl)?;
    a.jmp(failed_after_send)?;
    a.set_label(&mut busy_out)?;
    say(a, lib, s_err)?;
    say(a, lib, s_busy)?;
    a.jmp(failed_after_send)?;
    a.set_label(&mut vmm_or_fw)?;
    say(a, lib, s_err)?;
    say(a, lib, s_vmm)?;
    a.call(lib.put_hex32)?;
    say(a, lib, s_fw)?;
    a.mov(eax, ebx)?;
    a.call(lib.put_hex32)?;
    say(a, lib, s_nl)?;
    a.jmp(failed_after_send)?;
    a.set_label(&mut bad_header)?;
    say(a, lib, s_err)?;
    say(a, lib, s_header)?;
    a.jmp(failed_after_send)?;
    a.set_label(&mut auth_failed)?;
    say(a, lib, s_err)?;
    say(a, lib, s_auth)?;
    a.jmp(failed_after_send)?;
    a.set_label(&mut bad_status)?;
    say(a, lib, s_err)?;
    say(a, lib, s_status)?;
    a.call(lib.put_hex32)?;
    say(a, lib, s_nl)?;
    a.jmp(failed_after_send)?;
    a.set_label(&mut bad_size)?;
    say(a, lib, s_err)?;
    say(a, lib, s_size)?;
    a.call(lib.put_hex32)?;
    say(a, lib, s_nl)?;

    a.set_label(&mut failed_after_send)?;
    a.mov(edi, SNP_SECRETS_GPA + 0x20)?;
    a.xor(eax, eax)?;
    a.mov(ecx, 8)?;
    a.rep().stosd()?;
    say(a, lib, s_erased)?;

    a.set_label(&mut done)?;
    a.call(gcm.wipe)?;
    Ok(())
}
