//! SNP guest messages (docs/protocol/snp.md#guest-messages): what a guest
//! sends the firmware through SNP_GUEST_REQUEST and what it gets back, each
//! one 4 KiB page holding a 0x60-byte header and a payload sealed with
//! AES-256-GCM under one of the guest's VMPCKs.
//!
//! * [`MessageHeader`]: the header, with every check the firmware makes
//!   before it needs the key ([`MessageHeader::decode`]);
//! * [`seal`] / [`open`]: the payload's encryption (IV = LE64(MSG_SEQNO) ‖
//!   0⁴, AAD = header bytes 0x30..0x60);
//! * [`ReportRequest`], [`ReportResponse`], [`KeyRequest`], [`KeyResponse`]:
//!   the payloads of MSG_REPORT and MSG_KEY.
//!
//! The certificate table of the extended request is in
//! [`super::cert_table`].

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use zeroize::Zeroizing;

use super::report::REPORT_LEN;

/// A guest message page: header and payload must fit in it.
pub const PAGE_LEN: usize = 4096;
/// Length of the message header; the payload follows it.
pub const HEADER_LEN: usize = 0x60;
/// The largest payload a page holds.
pub const MAX_PAYLOAD_LEN: usize = PAGE_LEN - HEADER_LEN;
/// ALGO of AES-256-GCM, the only one defined.
pub const ALGO_AES_256_GCM: u8 = 1;
/// The header version this module knows.
pub const HDR_VERSION: u8 = 1;
/// Length of a VMPCK.
pub const VMPCK_LEN: usize = 32;
/// Number of VMPCKs (one per VMPL).
pub const VMPCK_COUNT: u8 = 4;
/// Length of the AES-GCM tag (the first half of AUTHTAG).
pub const TAG_LEN: usize = 16;
/// The last sequence number a request may carry: its response takes the
/// next one, and the counter must not wrap (docs/protocol/snp.md#sequence-numbers).
pub const MAX_REQUEST_SEQNO: u64 = u64::MAX - 1;

/// The start of the additional authenticated data in the header.
const AAD_START: usize = 0x30;

/// A guest message type (MSG_TYPE). Any byte decodes: the firmware refuses
/// unknown types only after it has authenticated the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageType(pub u8);

impl MessageType {
    /// MSG_CPUID_REQ.
    pub const CPUID_REQ: MessageType = MessageType(1);
    /// MSG_CPUID_RSP.
    pub const CPUID_RSP: MessageType = MessageType(2);
    /// MSG_KEY_REQ: a derived key.
    pub const KEY_REQ: MessageType = MessageType(3);
    /// MSG_KEY_RSP.
    pub const KEY_RSP: MessageType = MessageType(4);
    /// MSG_REPORT_REQ: an attestation report.
    pub const REPORT_REQ: MessageType = MessageType(5);
    /// MSG_REPORT_RSP.
    pub const REPORT_RSP: MessageType = MessageType(6);
    /// MSG_EXPORT_REQ (migration agent).
    pub const EXPORT_REQ: MessageType = MessageType(7);
    /// MSG_IMPORT_REQ (migration agent).
    pub const IMPORT_REQ: MessageType = MessageType(9);
    /// MSG_ABSORB_REQ (migration agent).
    pub const ABSORB_REQ: MessageType = MessageType(11);
    /// MSG_VMRK_REQ (migration agent).
    pub const VMRK_REQ: MessageType = MessageType(13);
    /// MSG_ABSORB_NOMA_REQ.
    pub const ABSORB_NOMA_REQ: MessageType = MessageType(15);
    /// MSG_TSC_INFO_REQ (SecureTSC).
    pub const TSC_INFO_REQ: MessageType = MessageType(17);

    /// The response type of a request type (request + 1).
    pub const fn response(self) -> MessageType {
        MessageType(self.0.wrapping_add(1))
    }

    /// The type's name, `UNKNOWN` for a value no firmware defines.
    pub const fn name(self) -> &'static str {
        match self.0 {
            1 => "MSG_CPUID_REQ",
            2 => "MSG_CPUID_RSP",
            3 => "MSG_KEY_REQ",
            4 => "MSG_KEY_RSP",
            5 => "MSG_REPORT_REQ",
            6 => "MSG_REPORT_RSP",
            7 => "MSG_EXPORT_REQ",
            8 => "MSG_EXPORT_RSP",
            9 => "MSG_IMPORT_REQ",
            10 => "MSG_IMPORT_RSP",
            11 => "MSG_ABSORB_REQ",
            12 => "MSG_ABSORB_RSP",
            13 => "MSG_VMRK_REQ",
            14 => "MSG_VMRK_RSP",
            15 => "MSG_ABSORB_NOMA_REQ",
            16 => "MSG_ABSORB_NOMA_RSP",
            17 => "MSG_TSC_INFO_REQ",
            18 => "MSG_TSC_INFO_RSP",
            _ => "UNKNOWN",
        }
    }
}

impl std::fmt::Display for MessageType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

/// Why bytes are not a guest message, or a message does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestMsgError {
    /// Fewer bytes than a header, or more than a page.
    #[error(
        "guest message is {0} bytes: it must hold the 0x60-byte header and fit in a 4 KiB page"
    )]
    Length(usize),
    /// HDR_VERSION is not 1.
    #[error("guest message HDR_VERSION is {0}, expected 1")]
    HeaderVersion(u8),
    /// HDR_SIZE is not 0x60.
    #[error("guest message HDR_SIZE is {0:#x}, expected 0x60")]
    HeaderSize(u16),
    /// ALGO is not AES-256-GCM.
    #[error("guest message ALGO is {0}, expected 1 (AES-256-GCM)")]
    Algorithm(u8),
    /// MSG_SIZE is zero or not a multiple of 16.
    #[error("guest message MSG_SIZE is {0:#x}: it must be non-zero and a multiple of 16")]
    PayloadSize(u16),
    /// Header and payload do not fit in the page (or in the bytes given).
    #[error("guest message payload of {size:#x} bytes does not fit: {available:#x} bytes follow the header")]
    PayloadBounds {
        /// MSG_SIZE.
        size: u16,
        /// The bytes after the header.
        available: usize,
    },
    /// MSG_VMPCK is above 3.
    #[error("guest message MSG_VMPCK is {0}: there are VMPCKs 0 to 3")]
    Vmpck(u8),
    /// A reserved header byte is not zero.
    #[error("guest message header byte {offset:#x} is {value:#04x}: reserved, must be zero")]
    Reserved {
        /// Its offset.
        offset: usize,
        /// Its value.
        value: u8,
    },
    /// The AES-GCM tag does not match (wrong key, tampered header or
    /// payload).
    #[error("guest message does not authenticate under the VMPCK (AES-GCM tag mismatch)")]
    Authentication,
    /// The plaintext given to [`seal`] is not MSG_SIZE bytes.
    #[error("guest message plaintext is {actual} bytes but MSG_SIZE says {expected}")]
    PlaintextLength {
        /// MSG_SIZE.
        expected: usize,
        /// The plaintext's length.
        actual: usize,
    },
}

/// The reserved ranges of the header (besides the upper half of AUTHTAG).
const RESERVED: [(usize, usize); 4] = [(0x10, 0x20), (0x28, 0x30), (0x38, 0x3C), (0x3D, 0x60)];

/// A guest message header (docs/protocol/snp.md#guest-messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageHeader {
    /// The AES-GCM tag (AUTHTAG bytes 0x00..0x10; 0x10..0x20 are zero).
    pub auth_tag: [u8; TAG_LEN],
    /// MSG_SEQNO: odd for requests, even for responses.
    pub seqno: u64,
    /// ALGO (1: AES-256-GCM).
    pub algo: u8,
    /// HDR_VERSION (1).
    pub hdr_version: u8,
    /// HDR_SIZE (0x60).
    pub hdr_size: u16,
    /// MSG_TYPE.
    pub msg_type: MessageType,
    /// MSG_VERSION.
    pub msg_version: u8,
    /// MSG_SIZE: the payload's length.
    pub msg_size: u16,
    /// MSG_VMPCK: which VMPCK (0–3) seals the payload.
    pub vmpck: u8,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

impl MessageHeader {
    /// A header for a message of `msg_type`, `msg_version`, `msg_size`
    /// bytes of payload under VMPCK `vmpck` with sequence number `seqno`;
    /// the tag is zero until [`seal`].
    pub fn new(
        msg_type: MessageType,
        msg_version: u8,
        msg_size: u16,
        vmpck: u8,
        seqno: u64,
    ) -> Self {
        MessageHeader {
            auth_tag: [0; TAG_LEN],
            seqno,
            algo: ALGO_AES_256_GCM,
            hdr_version: HDR_VERSION,
            hdr_size: HEADER_LEN as u16,
            msg_type,
            msg_version,
            msg_size,
            vmpck,
        }
    }

    /// Decodes the header at the start of `msg` (a message page, or its
    /// first bytes), in the firmware's order (docs/protocol/snp.md#request-processing):
    /// length, HDR_VERSION, HDR_SIZE, ALGO, MSG_SIZE non-zero and a multiple
    /// of 16, header and payload within `msg`, MSG_VMPCK ≤ 3, then the
    /// reserved bytes (docs/protocol/choices.md#u63).
    pub fn decode(msg: &[u8]) -> Result<Self, GuestMsgError> {
        if msg.len() < HEADER_LEN || msg.len() > PAGE_LEN {
            return Err(GuestMsgError::Length(msg.len()));
        }
        let header = MessageHeader {
            auth_tag: {
                let mut t = [0u8; TAG_LEN];
                t.copy_from_slice(&msg[..TAG_LEN]);
                t
            },
            seqno: u64_at(msg, 0x20),
            algo: msg[0x30],
            hdr_version: msg[0x31],
            hdr_size: u16_at(msg, 0x32),
            msg_type: MessageType(msg[0x34]),
            msg_version: msg[0x35],
            msg_size: u16_at(msg, 0x36),
            vmpck: msg[0x3C],
        };
        if header.hdr_version != HDR_VERSION {
            return Err(GuestMsgError::HeaderVersion(header.hdr_version));
        }
        if usize::from(header.hdr_size) != HEADER_LEN {
            return Err(GuestMsgError::HeaderSize(header.hdr_size));
        }
        if header.algo != ALGO_AES_256_GCM {
            return Err(GuestMsgError::Algorithm(header.algo));
        }
        if header.msg_size == 0 || !header.msg_size.is_multiple_of(16) {
            return Err(GuestMsgError::PayloadSize(header.msg_size));
        }
        let available = msg.len() - HEADER_LEN;
        if usize::from(header.msg_size) > available {
            return Err(GuestMsgError::PayloadBounds {
                size: header.msg_size,
                available,
            });
        }
        if header.vmpck >= VMPCK_COUNT {
            return Err(GuestMsgError::Vmpck(header.vmpck));
        }
        for (start, end) in RESERVED {
            if let Some(i) = msg[start..end].iter().position(|b| *b != 0) {
                return Err(GuestMsgError::Reserved {
                    offset: start + i,
                    value: msg[start + i],
                });
            }
        }
        Ok(header)
    }

    /// The 0x60 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..TAG_LEN].copy_from_slice(&self.auth_tag);
        b[0x20..0x28].copy_from_slice(&self.seqno.to_le_bytes());
        b[0x30] = self.algo;
        b[0x31] = self.hdr_version;
        b[0x32..0x34].copy_from_slice(&self.hdr_size.to_le_bytes());
        b[0x34] = self.msg_type.0;
        b[0x35] = self.msg_version;
        b[0x36..0x38].copy_from_slice(&self.msg_size.to_le_bytes());
        b[0x3C] = self.vmpck;
        b
    }

    /// The additional authenticated data: header bytes 0x30..0x60.
    pub fn aad(&self) -> [u8; HEADER_LEN - AAD_START] {
        let mut aad = [0u8; HEADER_LEN - AAD_START];
        aad.copy_from_slice(&self.encode()[AAD_START..]);
        aad
    }

    /// The AES-GCM nonce: LE64(MSG_SEQNO) followed by four zero bytes.
    pub fn iv(&self) -> [u8; 12] {
        let mut iv = [0u8; 12];
        iv[..8].copy_from_slice(&self.seqno.to_le_bytes());
        iv
    }
}

/// Seals `plaintext` (MSG_SIZE bytes) under `vmpck` with `header`'s
/// sequence number and AAD: returns the message (header with its tag, then
/// the ciphertext), `HEADER_LEN + MSG_SIZE` bytes.
pub fn seal(
    vmpck: &[u8; VMPCK_LEN],
    header: &MessageHeader,
    plaintext: &[u8],
) -> Result<Vec<u8>, GuestMsgError> {
    if plaintext.len() != usize::from(header.msg_size) {
        return Err(GuestMsgError::PlaintextLength {
            expected: usize::from(header.msg_size),
            actual: plaintext.len(),
        });
    }
    if plaintext.len() > MAX_PAYLOAD_LEN {
        return Err(GuestMsgError::PayloadBounds {
            size: header.msg_size,
            available: MAX_PAYLOAD_LEN,
        });
    }
    let cipher = Aes256Gcm::new(vmpck.into());
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len());
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    out.extend_from_slice(plaintext);
    let tag = cipher
        .encrypt_in_place_detached(
            Nonce::from_slice(&header.iv()),
            &header.aad(),
            &mut out[HEADER_LEN..],
        )
        .map_err(|_| GuestMsgError::PayloadBounds {
            size: header.msg_size,
            available: MAX_PAYLOAD_LEN,
        })?;
    let mut sealed = *header;
    sealed.auth_tag.copy_from_slice(&tag);
    out[..HEADER_LEN].copy_from_slice(&sealed.encode());
    Ok(out)
}

/// Opens the payload of `msg`, whose header `header` was decoded from it
/// ([`MessageHeader::decode`]), under `vmpck`: the plaintext, or
/// [`GuestMsgError::Authentication`] when the tag does not match.
pub fn open(
    vmpck: &[u8; VMPCK_LEN],
    header: &MessageHeader,
    msg: &[u8],
) -> Result<Zeroizing<Vec<u8>>, GuestMsgError> {
    let size = usize::from(header.msg_size);
    let ciphertext =
        msg.get(HEADER_LEN..HEADER_LEN + size)
            .ok_or(GuestMsgError::PayloadBounds {
                size: header.msg_size,
                available: msg.len().saturating_sub(HEADER_LEN),
            })?;
    let cipher = Aes256Gcm::new(vmpck.into());
    let mut plaintext = Zeroizing::new(ciphertext.to_vec());
    cipher
        .decrypt_in_place_detached(
            Nonce::from_slice(&header.iv()),
            &header.aad(),
            &mut plaintext[..],
            Tag::from_slice(&header.auth_tag),
        )
        .map_err(|_| GuestMsgError::Authentication)?;
    Ok(plaintext)
}

/// Why a payload was refused: the status the firmware puts in the
/// response's STATUS word (docs/protocol/snp.md#attestation-report-generation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The payload is not the length of its type and version.
    #[error("{what} payload is {actual} bytes, expected {expected}")]
    Length {
        /// The payload's name.
        what: &'static str,
        /// Its expected length.
        expected: usize,
        /// Its length.
        actual: usize,
    },
    /// A reserved field is not zero.
    #[error("{what} byte {offset:#x} is {value:#04x}: reserved, must be zero")]
    Reserved {
        /// The payload's name.
        what: &'static str,
        /// The offset of the first non-zero reserved byte.
        offset: usize,
        /// Its value.
        value: u8,
    },
}

fn check_zero(what: &'static str, b: &[u8], start: usize, end: usize) -> Result<(), PayloadError> {
    match b[start..end].iter().position(|v| *v != 0) {
        Some(i) => Err(PayloadError::Reserved {
            what,
            offset: start + i,
            value: b[start + i],
        }),
        None => Ok(()),
    }
}

fn check_len(what: &'static str, b: &[u8], expected: usize) -> Result<(), PayloadError> {
    if b.len() != expected {
        return Err(PayloadError::Length {
            what,
            expected,
            actual: b.len(),
        });
    }
    Ok(())
}

/// Which key signs a report or roots a derived key (KEY_SEL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeySelect {
    /// 0: the VLEK if one is loaded, else the VCEK.
    #[default]
    Auto,
    /// 1: the VCEK only.
    Vcek,
    /// 2: the VLEK only.
    Vlek,
    /// 3: reserved (the firmware answers INVALID_KEY).
    Reserved,
}

impl KeySelect {
    fn from_bits(bits: u32) -> Self {
        match bits & 3 {
            0 => KeySelect::Auto,
            1 => KeySelect::Vcek,
            2 => KeySelect::Vlek,
            _ => KeySelect::Reserved,
        }
    }

    const fn bits(self) -> u32 {
        match self {
            KeySelect::Auto => 0,
            KeySelect::Vcek => 1,
            KeySelect::Vlek => 2,
            KeySelect::Reserved => 3,
        }
    }
}

/// Length of the MSG_REPORT_REQ payload.
pub const REPORT_REQ_LEN: usize = 0x60;
/// Length of the MSG_REPORT_RSP payload.
pub const REPORT_RSP_LEN: usize = 0x20 + REPORT_LEN;
/// Length of the MSG_KEY_REQ payload (message version 1).
pub const KEY_REQ_LEN: usize = 0x20;
/// Length of the MSG_KEY_RSP payload.
pub const KEY_RSP_LEN: usize = 0x40;
/// Length of a derived key.
pub const DERIVED_KEY_LEN: usize = 32;

/// The MSG_REPORT_REQ payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportRequest {
    /// REPORT_DATA, copied into the report.
    pub report_data: [u8; 64],
    /// The VMPL to write into the report (not below the VMPCK's).
    pub vmpl: u32,
    /// KEY_SEL: which key signs.
    pub key_sel: KeySelect,
}

impl ReportRequest {
    /// A request for a report over `report_data` at `vmpl`, signed by the
    /// default key.
    pub fn new(report_data: [u8; 64], vmpl: u32) -> Self {
        ReportRequest {
            report_data,
            vmpl,
            key_sel: KeySelect::Auto,
        }
    }

    /// Decodes the 0x60-byte payload: bits 31:2 of 0x44 and bytes
    /// 0x48..0x60 are reserved.
    pub fn decode(b: &[u8]) -> Result<Self, PayloadError> {
        const WHAT: &str = "MSG_REPORT_REQ";
        check_len(WHAT, b, REPORT_REQ_LEN)?;
        let word = u32_at(b, 0x44);
        if word & !3 != 0 {
            let bit = (word & !3).trailing_zeros() as usize;
            let offset = 0x44 + bit / 8;
            return Err(PayloadError::Reserved {
                what: WHAT,
                offset,
                value: b[offset],
            });
        }
        check_zero(WHAT, b, 0x48, REPORT_REQ_LEN)?;
        let mut report_data = [0u8; 64];
        report_data.copy_from_slice(&b[..64]);
        Ok(ReportRequest {
            report_data,
            vmpl: u32_at(b, 0x40),
            key_sel: KeySelect::from_bits(word),
        })
    }

    /// The 0x60-byte payload.
    pub fn encode(&self) -> [u8; REPORT_REQ_LEN] {
        let mut b = [0u8; REPORT_REQ_LEN];
        b[..64].copy_from_slice(&self.report_data);
        b[0x40..0x44].copy_from_slice(&self.vmpl.to_le_bytes());
        b[0x44..0x48].copy_from_slice(&self.key_sel.bits().to_le_bytes());
        b
    }
}

/// The MSG_REPORT_RSP payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportResponse {
    /// STATUS: 0, or the firmware status code of a refused request.
    pub status: u32,
    /// The report (all zero when STATUS is not 0).
    pub report: Box<[u8; REPORT_LEN]>,
}

impl ReportResponse {
    /// Decodes the 0x4C0-byte payload: REPORT_SIZE must be 0x4A0 and
    /// bytes 0x08..0x20 zero.
    pub fn decode(b: &[u8]) -> Result<Self, PayloadError> {
        const WHAT: &str = "MSG_REPORT_RSP";
        check_len(WHAT, b, REPORT_RSP_LEN)?;
        let size = u32_at(b, 4) as usize;
        if size != REPORT_LEN {
            return Err(PayloadError::Length {
                what: "MSG_REPORT_RSP's REPORT_SIZE",
                expected: REPORT_LEN,
                actual: size,
            });
        }
        check_zero(WHAT, b, 0x08, 0x20)?;
        let mut report = Box::new([0u8; REPORT_LEN]);
        report.copy_from_slice(&b[0x20..]);
        Ok(ReportResponse {
            status: u32_at(b, 0),
            report,
        })
    }

    /// The 0x4C0-byte payload.
    pub fn encode(&self) -> Box<[u8; REPORT_RSP_LEN]> {
        let mut b = Box::new([0u8; REPORT_RSP_LEN]);
        b[..4].copy_from_slice(&self.status.to_le_bytes());
        b[4..8].copy_from_slice(&(REPORT_LEN as u32).to_le_bytes());
        b[0x20..].copy_from_slice(&self.report[..]);
        b
    }
}

/// The root of a derived key (ROOT_KEY_SELECT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RootKey {
    /// 0: the VCEK (or VLEK) of the chip.
    #[default]
    Vcek,
    /// 1: the guest's VM root key.
    Vmrk,
}

/// GUEST_FIELD_SELECT bits: the guest fields mixed into a derived key.
pub mod field_select {
    /// POLICY.
    pub const POLICY: u64 = 1 << 0;
    /// IMAGE_ID.
    pub const IMAGE_ID: u64 = 1 << 1;
    /// FAMILY_ID.
    pub const FAMILY_ID: u64 = 1 << 2;
    /// MEASUREMENT.
    pub const MEASUREMENT: u64 = 1 << 3;
    /// GUEST_SVN.
    pub const GUEST_SVN: u64 = 1 << 4;
    /// TCB_VERSION.
    pub const TCB_VERSION: u64 = 1 << 5;
    /// Every bit a message version 1 request may set.
    pub const ALL_V1: u64 = 0x3F;
}

/// The MSG_KEY_REQ payload (message version 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyRequest {
    /// ROOT_KEY_SELECT.
    pub root: RootKey,
    /// KEY_SEL (for a VCEK/VLEK root).
    pub key_sel: KeySelect,
    /// GUEST_FIELD_SELECT ([`field_select`]); unknown bits are refused by
    /// the firmware, not by the decoder.
    pub guest_field_select: u64,
    /// The VMPL mixed into the key (not below the VMPCK's).
    pub vmpl: u32,
    /// GUEST_SVN (at most the ID block's).
    pub guest_svn: u32,
    /// TCB_VERSION (at most the committed TCB).
    pub tcb_version: u64,
}

impl KeyRequest {
    /// Decodes the 0x20-byte payload: bits 31:3 of 0x00 and bytes
    /// 0x04..0x08 are reserved.
    pub fn decode(b: &[u8]) -> Result<Self, PayloadError> {
        const WHAT: &str = "MSG_KEY_REQ";
        check_len(WHAT, b, KEY_REQ_LEN)?;
        let word = u32_at(b, 0);
        if word & !7 != 0 {
            let offset = (word & !7).trailing_zeros() as usize / 8;
            return Err(PayloadError::Reserved {
                what: WHAT,
                offset,
                value: b[offset],
            });
        }
        check_zero(WHAT, b, 0x04, 0x08)?;
        Ok(KeyRequest {
            root: if word & 1 != 0 {
                RootKey::Vmrk
            } else {
                RootKey::Vcek
            },
            key_sel: KeySelect::from_bits(word >> 1),
            guest_field_select: u64_at(b, 0x08),
            vmpl: u32_at(b, 0x10),
            guest_svn: u32_at(b, 0x14),
            tcb_version: u64_at(b, 0x18),
        })
    }

    /// The 0x20-byte payload.
    pub fn encode(&self) -> [u8; KEY_REQ_LEN] {
        let mut b = [0u8; KEY_REQ_LEN];
        let word = u32::from(self.root == RootKey::Vmrk) | self.key_sel.bits() << 1;
        b[0..4].copy_from_slice(&word.to_le_bytes());
        b[0x08..0x10].copy_from_slice(&self.guest_field_select.to_le_bytes());
        b[0x10..0x14].copy_from_slice(&self.vmpl.to_le_bytes());
        b[0x14..0x18].copy_from_slice(&self.guest_svn.to_le_bytes());
        b[0x18..0x20].copy_from_slice(&self.tcb_version.to_le_bytes());
        b
    }
}

/// The MSG_KEY_RSP payload.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyResponse {
    /// STATUS: 0, or the firmware status code of a refused request.
    pub status: u32,
    /// DERIVED_KEY (zero when STATUS is not 0).
    pub derived_key: Zeroizing<[u8; DERIVED_KEY_LEN]>,
}

impl std::fmt::Debug for KeyResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyResponse")
            .field("status", &self.status)
            .field("derived_key", &"<secret>")
            .finish()
    }
}

impl KeyResponse {
    /// Decodes the 0x40-byte payload: bytes 0x04..0x20 are reserved.
    pub fn decode(b: &[u8]) -> Result<Self, PayloadError> {
        const WHAT: &str = "MSG_KEY_RSP";
        check_len(WHAT, b, KEY_RSP_LEN)?;
        check_zero(WHAT, b, 0x04, 0x20)?;
        let mut derived_key = Zeroizing::new([0u8; DERIVED_KEY_LEN]);
        derived_key.copy_from_slice(&b[0x20..0x40]);
        Ok(KeyResponse {
            status: u32_at(b, 0),
            derived_key,
        })
    }

    /// The 0x40-byte payload.
    pub fn encode(&self) -> Zeroizing<[u8; KEY_RSP_LEN]> {
        let mut b = Zeroizing::new([0u8; KEY_RSP_LEN]);
        b[..4].copy_from_slice(&self.status.to_le_bytes());
        b[0x20..].copy_from_slice(&self.derived_key[..]);
        b
    }
}

#[cfg(test)]
mod tests;
