//! The AES-GCM self-test program ([`crate::DemoMode::AesSelfTest`]) and the
//! hex dumper it shares with the report request.

use iced_x86::code_asm::*;

use super::aes_gcm::{self, AesGcm};
use super::{say, Data, Lib, EXIT_OK};
use crate::AesGcmVector;

/// Where the self test puts the ciphertext, the opened plaintext and its
/// copy of the tag (guest RAM above 1 MiB).
const CT_BUF: u32 = 0x0010_0000;
const PT_BUF: u32 = 0x0010_2000;
const TAG_COPY: u32 = 0x0010_4000;

/// Emits `put_hex_bytes`: `esi` = bytes, `ecx` = count; prints them as
/// lowercase hex, 32 bytes per `puts` (one string exit under SEV-ES/SNP),
/// no newline. Preserves all registers.
pub(super) fn emit_put_hex_bytes(
    a: &mut CodeAssembler,
    lib: &Lib,
    d: &mut Data,
) -> Result<CodeLabel, IcedError> {
    let digits = d.add(b"0123456789abcdef");
    let mut entry = a.create_label();
    let mut chunk = a.create_label();
    let mut full = a.create_label();
    let mut byte = a.create_label();
    let mut done = a.create_label();
    a.set_label(&mut entry)?;
    a.pushad()?;
    a.sub(esp, 68)?;
    a.set_label(&mut chunk)?;
    a.test(ecx, ecx)?;
    a.jz(done)?;
    a.mov(edi, esp)?;
    a.mov(edx, 32)?;
    a.cmp(ecx, edx)?;
    a.jae(full)?;
    a.mov(edx, ecx)?;
    a.set_label(&mut full)?;
    a.sub(ecx, edx)?;
    a.set_label(&mut byte)?;
    a.movzx(eax, byte_ptr(esi))?;
    a.inc(esi)?;
    a.mov(ebx, eax)?;
    a.shr(ebx, 4)?;
    a.mov(bl, byte_ptr(ebx + digits as i32))?;
    a.mov(byte_ptr(edi), bl)?;
    a.and(eax, 0xF)?;
    a.mov(al, byte_ptr(eax + digits as i32))?;
    a.mov(byte_ptr(edi + 1), al)?;
    a.add(edi, 2)?;
    a.dec(edx)?;
    a.jnz(byte)?;
    a.mov(byte_ptr(edi), 0)?;
    a.push(esi)?;
    a.lea(esi, ptr(esp + 4))?;
    a.call(lib.puts)?;
    a.pop(esi)?;
    a.jmp(chunk)?;
    a.set_label(&mut done)?;
    a.add(esp, 68)?;
    a.popad()?;
    a.ret()?;
    Ok(entry)
}

/// Prints `ok <plaintext hex>` or `refused` for the open verdict in eax,
/// then a newline.
fn verdict(
    a: &mut CodeAssembler,
    lib: &Lib,
    hex: CodeLabel,
    s: &Strings,
    len: u32,
    show_plaintext: bool,
) -> Result<(), IcedError> {
    let mut refused = a.create_label();
    let mut next = a.create_label();
    a.test(eax, eax)?;
    a.jnz(refused)?;
    say(a, lib, s.ok)?;
    if show_plaintext {
        a.mov(esi, PT_BUF)?;
        a.mov(ecx, len)?;
        a.call(hex)?;
    }
    a.jmp(next)?;
    a.set_label(&mut refused)?;
    say(a, lib, s.refused)?;
    a.set_label(&mut next)?;
    say(a, lib, s.nl)
}

struct Strings {
    ok: u32,
    refused: u32,
    nl: u32,
}

/// The self test: for each vector, seal (ciphertext and tag printed), open
/// the result (plaintext printed), open with one tag bit flipped and with
/// one ciphertext bit flipped (both must be refused); then exit
/// [`EXIT_OK`]. The output format is documented at
/// [`crate::DemoMode::AesSelfTest`].
pub(super) fn emit(
    a: &mut CodeAssembler,
    lib: &Lib,
    d: &mut Data,
    gcm: &AesGcm,
    hex: CodeLabel,
    vectors: &[AesGcmVector],
) -> Result<(), IcedError> {
    let s = Strings {
        ok: d.cstr("ok "),
        refused: d.cstr("refused"),
        nl: d.cstr("\n"),
    };
    let s_tag = d.cstr(" tag ");
    for (i, v) in vectors.iter().enumerate() {
        let key = d.add(&v.key);
        let iv = d.add(&v.iv);
        let aad = d.add(&v.aad);
        let pt = d.add(&v.plaintext);
        let len = v.plaintext.len() as u32;
        let aad_len = v.aad.len() as u32;
        let s_seal = d.cstr(&format!("aes-gcm {i} seal: "));
        let s_open = d.cstr(&format!("aes-gcm {i} open: "));
        let s_bad_tag = d.cstr(&format!("aes-gcm {i} open with a tampered tag: "));
        let s_bad_ct = d.cstr(&format!("aes-gcm {i} open with a tampered ciphertext: "));

        say(a, lib, s_seal)?;
        a.mov(esi, key)?;
        a.call(gcm.key)?;
        for k in 0..3u32 {
            a.mov(eax, dword_ptr(iv + 4 * k))?;
            a.mov(dword_ptr(aes_gcm::IV + 4 * k), eax)?;
        }
        a.mov(esi, pt)?;
        a.mov(edi, CT_BUF)?;
        a.mov(ecx, len)?;
        a.mov(ebx, aad)?;
        a.mov(edx, aad_len)?;
        a.call(gcm.seal)?;
        a.mov(esi, CT_BUF)?;
        a.call(hex)?;
        say(a, lib, s_tag)?;
        a.mov(esi, aes_gcm::TAG)?;
        a.mov(ecx, 16)?;
        a.call(hex)?;
        say(a, lib, s.nl)?;
        for k in 0..4u32 {
            a.mov(eax, dword_ptr(aes_gcm::TAG + 4 * k))?;
            a.mov(dword_ptr(TAG_COPY + 4 * k), eax)?;
        }
        let open = |a: &mut CodeAssembler| -> Result<(), IcedError> {
            a.mov(esi, CT_BUF)?;
            a.mov(edi, PT_BUF)?;
            a.mov(ecx, len)?;
            a.mov(ebx, aad)?;
            a.mov(edx, aad_len)?;
            a.mov(eax, TAG_COPY)?;
            a.call(gcm.open)
        };
        say(a, lib, s_open)?;
        open(a)?;
        verdict(a, lib, hex, &s, len, true)?;
        say(a, lib, s_bad_tag)?;
        a.xor(byte_ptr(TAG_COPY), 1)?;
        open(a)?;
        verdict(a, lib, hex, &s, len, false)?;
        a.xor(byte_ptr(TAG_COPY), 1)?;
        if len > 0 {
            say(a, lib, s_bad_ct)?;
            a.xor(byte_ptr(CT_BUF + len - 1), 0x80)?;
            open(a)?;
            verdict(a, lib, hex, &s, len, false)?;
        }
        a.call(gcm.wipe)?;
    }
    let s_done = d.cstr("aes-gcm self-test: done\n");
    say(a, lib, s_done)?;
    a.mov(al, u32::from(EXIT_OK))?;
    a.call(lib.exit)?;
    Ok(())
}
