//! Helpers shared by the fuzz targets: fixed keys and a cursor that splits
//! the fuzzer's bytes into fields.

use p384::ecdsa::SigningKey;
use sev_proto::session::{Tek, Tik, TransportKeys};
use sev_proto::snp::report::AttestationReport;
use sev_proto::snp::{GuestPolicy, IdBlock};

/// Reads fields off the front of the fuzzer's input; a field the input is
/// too short for reads as zeros (so every input is usable).
#[derive(Debug)]
pub struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    /// A cursor over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Cursor { rest: data }
    }

    /// The next `N` bytes (zero-padded if the input ran out).
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.rest.len());
        let (head, tail) = self.rest.split_at(n);
        out[..n].copy_from_slice(head);
        self.rest = tail;
        out
    }

    /// The next byte.
    pub fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    /// The next little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    /// The next little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    /// The next `n` bytes (fewer if the input ran out).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.rest.split_at(n.min(self.rest.len()));
        self.rest = tail;
        head
    }

    /// Whether the input is used up.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Everything not read yet.
    pub fn rest(self) -> &'a [u8] {
        self.rest
    }
}

/// Fixed transport keys (the fuzzer cannot guess keys; targets that open
/// packets use these, and seal with them to reach the code past the MAC).
pub fn transport_keys() -> TransportKeys {
    TransportKeys {
        tek: Tek::from_bytes(*b"fuzz-fixed-TEK!!"),
        tik: Tik::from_bytes(*b"fuzz-fixed-TIK!!"),
    }
}

/// A fixed P-384 signing key (scalar 0x0101...01, well below the order).
pub fn signing_key() -> SigningKey {
    match SigningKey::from_slice(&[1u8; 48]) {
        Ok(k) => k,
        Err(e) => panic!("fixed P-384 scalar rejected: {e}"),
    }
}

/// A second fixed P-384 signing key (scalar 0x0202...02): the author key
/// of the `id_block` target's genuine structures.
pub fn author_signing_key() -> SigningKey {
    match SigningKey::from_slice(&[2u8; 48]) {
        Ok(k) => k,
        Err(e) => panic!("fixed P-384 scalar rejected: {e}"),
    }
}

/// The fixed ID block the `id_block` target and its seeds sign: a launch
/// digest of 0x5a bytes, family and image ids, guest SVN 3, QEMU's policy.
pub fn id_block() -> IdBlock {
    let mut block = IdBlock::new([0x5a; 48], GuestPolicy::QEMU_DEFAULT);
    block.family_id = [0xf1; 16];
    block.image_id = [0x1a; 16];
    block.guest_svn = 3;
    block
}

/// Flips the bits `mask` (forced non-zero) of the byte at `index % len`;
/// does nothing to an empty buffer.
pub fn flip(buf: &mut [u8], index: usize, mask: u8) {
    let len = buf.len();
    if let Some(b) = index.checked_rem(len).and_then(|i| buf.get_mut(i)) {
        *b ^= mask.max(1);
    }
}

/// The fixed SNP attestation report (version 5, every field set) that the
/// `snp_report` target and its seed sign with [`signing_key`].
pub fn snp_report() -> AttestationReport {
    AttestationReport::sample(5)
}
