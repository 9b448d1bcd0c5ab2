//! The GHCB page (docs/protocol/snp.md#ghcb-page): field offsets, the
//! valid bitmap, and the IOIO exit's information word. Plain functions over
//! a 4 KiB buffer, no I/O.

/// Size of the GHCB page.
pub const GHCB_LEN: usize = 4096;

/// RAX.
pub const RAX: usize = 0x1F8;
/// RCX.
pub const RCX: usize = 0x308;
/// RDX.
pub const RDX: usize = 0x310;
/// RBX.
pub const RBX: usize = 0x318;
/// SW_EXITCODE.
pub const SW_EXIT_CODE: usize = 0x390;
/// SW_EXITINFO1.
pub const SW_EXIT_INFO_1: usize = 0x398;
/// SW_EXITINFO2.
pub const SW_EXIT_INFO_2: usize = 0x3A0;
/// SW_SCRATCH.
pub const SW_SCRATCH: usize = 0x3A8;
/// The valid bitmap (16 bytes): bit n marks the qword at offset 8·n.
pub const VALID_BITMAP: usize = 0x3F0;
/// The shared buffer (the scratch area of string I/O): 0x800..0xFF0.
pub const SHARED_BUFFER: usize = 0x800;
/// End of the shared buffer.
pub const SHARED_BUFFER_END: usize = 0xFF0;
/// The protocol version (u16).
pub const PROTOCOL_VERSION: usize = 0xFFA;
/// The GHCB usage (u32; 0 is the standard layout).
pub const USAGE: usize = 0xFFC;

/// Exit code: CPUID.
pub const EXIT_CPUID: u64 = 0x72;
/// Exit code: port I/O.
pub const EXIT_IOIO: u64 = 0x7B;
/// Exit code: termination request.
pub const EXIT_TERMINATE: u64 = 0x8000_FFFE;

/// SW_EXITINFO1 answer: an error, described by SW_EXITINFO2.
pub const EXIT_INFO_ERROR: u64 = 2;
/// SW_EXITINFO2 error: invalid GHCB usage.
pub const ERR_INVALID_USAGE: u64 = 2;
/// SW_EXITINFO2 error: a required field is not marked valid.
pub const ERR_MISSING_INPUT: u64 = 4;
/// SW_EXITINFO2 error: an input is invalid.
pub const ERR_INVALID_INPUT: u64 = 5;
/// SW_EXITINFO2 error: an exit code the host does not handle.
pub const ERR_INVALID_EVENT: u64 = 6;

/// A GHCB page, as the host copied it out of guest memory.
#[derive(Clone)]
pub struct Ghcb(pub Box<[u8; GHCB_LEN]>);

impl std::fmt::Debug for Ghcb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ghcb")
            .field(
                "sw_exit_code",
                &format_args!("{:#x}", self.qword(SW_EXIT_CODE)),
            )
            .field("usage", &self.usage())
            .finish_non_exhaustive()
    }
}

impl Default for Ghcb {
    fn default() -> Self {
        Ghcb(Box::new([0; GHCB_LEN]))
    }
}

impl Ghcb {
    /// The qword at `offset` (a multiple of 8 below the bitmap).
    pub fn qword(&self, offset: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[offset..offset + 8]);
        u64::from_le_bytes(b)
    }

    /// Whether the qword at `offset` is marked valid.
    pub fn is_valid(&self, offset: usize) -> bool {
        let bit = offset / 8;
        self.0[VALID_BITMAP + bit / 8] & (1 << (bit % 8)) != 0
    }

    /// The qword at `offset` if it is marked valid.
    pub fn valid(&self, offset: usize) -> Option<u64> {
        self.is_valid(offset).then(|| self.qword(offset))
    }

    /// Writes the qword at `offset` and marks it valid.
    pub fn set(&mut self, offset: usize, value: u64) {
        self.0[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
        let bit = offset / 8;
        self.0[VALID_BITMAP + bit / 8] |= 1 << (bit % 8);
    }

    /// Clears the valid bitmap (the host does so once it has read the
    /// request, so the response marks only what the host wrote).
    pub fn clear_valid(&mut self) {
        self.0[VALID_BITMAP..VALID_BITMAP + 16].fill(0);
    }

    /// The GHCB usage field.
    pub fn usage(&self) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.0[USAGE..USAGE + 4]);
        u32::from_le_bytes(b)
    }

    /// Sets the usage field (guest side, for tests and the demo guest).
    pub fn set_usage(&mut self, usage: u32) {
        self.0[USAGE..USAGE + 4].copy_from_slice(&usage.to_le_bytes());
    }

    /// Answers an error: SW_EXITINFO1 = 2, SW_EXITINFO2 = `reason`.
    pub fn set_error(&mut self, reason: u64) {
        self.set(SW_EXIT_INFO_1, EXIT_INFO_ERROR);
        self.set(SW_EXIT_INFO_2, reason);
    }
}

/// An IOIO exit's information word (SW_EXITINFO1, the SVM IOIO layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ioio {
    /// The port.
    pub port: u16,
    /// `in` (true) or `out`.
    pub is_in: bool,
    /// Access size in bytes: 1, 2 or 4.
    pub size: usize,
}

/// Bit 2 of the IOIO information word: a string instruction (`ins`/`outs`).
pub const IOIO_STRING: u64 = 1 << 2;
/// Bit 3: a `rep` prefix.
pub const IOIO_REP: u64 = 1 << 3;

/// Why an IOIO information word is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoioError {
    /// String (`ins`/`outs`) or `rep` forms, which need the scratch area
    /// ([`decode_string_out`]).
    StringForm,
    /// No size bit, or more than one.
    BadSize,
}

/// Decodes SW_EXITINFO1 of an IOIO exit: bit 0 IN, bit 2 string, bit 3 rep,
/// bits 4–6 size 8/16/32, bits 31:16 the port.
pub fn decode_ioio(info: u64) -> Result<Ioio, IoioError> {
    if info & (1 << 2 | 1 << 3) != 0 {
        return Err(IoioError::StringForm);
    }
    let size = match (info >> 4) & 7 {
        1 => 1,
        2 => 2,
        4 => 4,
        _ => return Err(IoioError::BadSize),
    };
    Ok(Ioio {
        port: (info >> 16) as u16,
        is_in: info & 1 != 0,
        size,
    })
}

/// A string `outs` through the GHCB (SW_EXITINFO1 with the string bit,
/// SW_EXITINFO2 the element count, SW_SCRATCH the data): where its bytes
/// are in the GHCB page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StringOut {
    /// The port and element size.
    pub io: Ioio,
    /// Offset of the data in the GHCB page (inside the shared buffer).
    pub offset: usize,
    /// Number of elements.
    pub count: usize,
}

/// Why a string IOIO exit is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringIoError {
    /// `ins` (string input) is not served.
    StringIn,
    /// No size bit, or more than one.
    BadSize,
    /// The scratch area is not inside the GHCB's shared buffer, or the
    /// data runs past its end.
    ScratchOutside,
}

/// Decodes a string `outs` exit (KVM takes the element count from
/// SW_EXITINFO2 and the data from SW_SCRATCH): the data must lie within
/// the shared buffer of the GHCB page at `ghcb_gpa` (the only scratch area
/// served: docs/sev-es.md#the-ghcb-path).
pub fn decode_string_out(
    info1: u64,
    count: u64,
    scratch: u64,
    ghcb_gpa: u64,
) -> Result<StringOut, StringIoError> {
    if info1 & 1 != 0 {
        return Err(StringIoError::StringIn);
    }
    let io = decode_ioio(info1 & !(IOIO_STRING | IOIO_REP)).map_err(|_| StringIoError::BadSize)?;
    let start = ghcb_gpa.checked_add(SHARED_BUFFER as u64);
    let end = ghcb_gpa.checked_add(SHARED_BUFFER_END as u64);
    let (Some(start), Some(end)) = (start, end) else {
        return Err(StringIoError::ScratchOutside);
    };
    let bytes = count.checked_mul(io.size as u64);
    let data_end = bytes.and_then(|b| scratch.checked_add(b));
    match data_end {
        Some(data_end) if scratch >= start && data_end <= end => Ok(StringOut {
            io,
            offset: (scratch - ghcb_gpa) as usize,
            count: count as usize,
        }),
        _ => Err(StringIoError::ScratchOutside),
    }
}

/// Encodes an IOIO information word (guest side).
pub fn encode_ioio(port: u16, is_in: bool, size: usize) -> u64 {
    let sz = match size {
        1 => 1,
        2 => 2,
        _ => 4,
    };
    (u64::from(port) << 16) | (sz << 4) | u64::from(is_in)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_bits_follow_the_offsets() {
        let mut g = Ghcb::default();
        assert_eq!(g.valid(RAX), None);
        g.set(RAX, 0x41);
        g.set(SW_EXIT_CODE, EXIT_IOIO);
        assert_eq!(g.valid(RAX), Some(0x41));
        assert_eq!(g.valid(SW_EXIT_CODE), Some(EXIT_IOIO));
        // RAX is qword 0x3F: bit 7 of byte 7; SW_EXITCODE qword 0x72: bit 2 of byte 14.
        assert_eq!(g.0[VALID_BITMAP + 7], 0x80);
        assert_eq!(g.0[VALID_BITMAP + 14], 0x04);
        assert!(!g.is_valid(RBX));
        g.clear_valid();
        assert_eq!(g.valid(RAX), None);
        assert_eq!(g.qword(RAX), 0x41);
        g.set_usage(1);
        assert_eq!(g.usage(), 1);
        g.set_error(ERR_INVALID_EVENT);
        assert_eq!(g.valid(SW_EXIT_INFO_1), Some(2));
        assert_eq!(g.valid(SW_EXIT_INFO_2), Some(6));
    }

    #[test]
    fn ioio_words_round_trip_and_bad_ones_are_refused() {
        for (port, is_in, size) in [(0x3F8, false, 1), (0x3FD, true, 1), (0x501, false, 4)] {
            let w = encode_ioio(port, is_in, size);
            assert_eq!(decode_ioio(w), Ok(Ioio { port, is_in, size }));
        }
        assert_eq!(encode_ioio(0x3F8, false, 1), 0x03F8_0010);
        assert_eq!(decode_ioio(0x03F8_0014), Err(IoioError::StringForm));
        assert_eq!(decode_ioio(0x03F8_0018), Err(IoioError::StringForm));
        assert_eq!(decode_ioio(0x03F8_0000), Err(IoioError::BadSize));
        assert_eq!(decode_ioio(0x03F8_0030), Err(IoioError::BadSize));
        assert_eq!(decode_ioio(0x03F8_0070), Err(IoioError::BadSize));
    }

    #[test]
    fn string_outs_must_stay_inside_the_shared_buffer() {
        let ghcb = 0x6_1000;
        let outs = 0x03F8_0010 | IOIO_STRING | IOIO_REP;
        let ok = decode_string_out(outs, 16, ghcb + 0x800, ghcb).unwrap();
        assert_eq!(
            (ok.io.port, ok.io.size, ok.offset, ok.count),
            (0x3F8, 1, 0x800, 16)
        );
        // The last byte of the buffer is 0xFEF.
        assert!(decode_string_out(outs, 0x7F0, ghcb + 0x800, ghcb).is_ok());
        for (count, scratch) in [
            (0x7F1, ghcb + 0x800),
            (1, ghcb + 0x7FF),
            (1, ghcb + 0xFF0),
            (u64::MAX, ghcb + 0x800),
            (1, u64::MAX),
        ] {
            assert_eq!(
                decode_string_out(outs, count, scratch, ghcb),
                Err(StringIoError::ScratchOutside),
                "{count:#x} at {scratch:#x}"
            );
        }
        // 16-bit elements: 0x3F8 of them fill 0x7F0 bytes.
        let outsw = 0x03F8_0020 | IOIO_STRING;
        assert!(decode_string_out(outsw, 0x3F8, ghcb + 0x800, ghcb).is_ok());
        assert!(decode_string_out(outsw, 0x3F9, ghcb + 0x800, ghcb).is_err());
        assert_eq!(
            decode_string_out(outs | 1, 1, ghcb + 0x800, ghcb),
            Err(StringIoError::StringIn)
        );
        assert_eq!(
            decode_string_out(0x03F8_0000 | IOIO_STRING, 1, ghcb + 0x800, ghcb),
            Err(StringIoError::BadSize)
        );
        assert_eq!(
            decode_string_out(outs, 1, ghcb + 0x800, u64::MAX - 0x100),
            Err(StringIoError::ScratchOutside)
        );
    }
}
