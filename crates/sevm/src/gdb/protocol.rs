//! The GDB remote serial protocol, as far as sevm's stub speaks it: packet
//! framing (`$data#cs`, acks, `^C`), the typed commands, and the register
//! block. No I/O here.

use crate::vcpu::VcpuState;

/// Largest packet the stub accepts and advertises (`PacketSize`, hex).
pub const PACKET_SIZE: usize = 0x4000;

/// Largest memory read answered in one `m` reply (hex doubles it).
pub const MAX_MEMORY_READ: u64 = (PACKET_SIZE as u64 - 16) / 2;

/// What the byte stream from GDB contained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// `+`.
    Ack,
    /// `-`: resend.
    Nack,
    /// `^C` (0x03) outside a packet: stop the target.
    Interrupt,
    /// A packet with a good checksum (payload unescaped).
    Packet(Vec<u8>),
    /// A packet with a bad checksum (answer `-`).
    BadChecksum,
    /// A packet longer than [`PACKET_SIZE`] (dropped; answer `-`).
    TooLong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    Idle,
    Data,
    Escape,
    Check1,
    Check2(u8),
}

/// Incremental packet parser.
#[derive(Debug, Clone)]
pub struct PacketReader {
    state: ReadState,
    data: Vec<u8>,
    sum: u8,
    overflow: bool,
}

impl Default for PacketReader {
    fn default() -> Self {
        PacketReader {
            state: ReadState::Idle,
            data: Vec::new(),
            sum: 0,
            overflow: false,
        }
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl PacketReader {
    /// Feeds bytes; returns what they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Incoming> {
        let mut out = Vec::new();
        for &b in bytes {
            match self.state {
                ReadState::Idle => match b {
                    b'+' => out.push(Incoming::Ack),
                    b'-' => out.push(Incoming::Nack),
                    0x03 => out.push(Incoming::Interrupt),
                    b'$' => {
                        self.state = ReadState::Data;
                        self.data.clear();
                        self.sum = 0;
                        self.overflow = false;
                    }
                    _ => {}
                },
                ReadState::Data => {
                    if b == b'#' {
                        self.state = ReadState::Check1;
                        continue;
                    }
                    self.sum = self.sum.wrapping_add(b);
                    if b == b'}' {
                        self.state = ReadState::Escape;
                    } else {
                        self.push(b);
                    }
                }
                ReadState::Escape => {
                    self.sum = self.sum.wrapping_add(b);
                    self.push(b ^ 0x20);
                    self.state = ReadState::Data;
                }
                ReadState::Check1 => self.state = ReadState::Check2(b),
                ReadState::Check2(hi) => {
                    self.state = ReadState::Idle;
                    let cs = hex_val(hi).zip(hex_val(b)).map(|(h, l)| h << 4 | l);
                    if self.overflow {
                        out.push(Incoming::TooLong);
                    } else if cs == Some(self.sum) {
                        out.push(Incoming::Packet(std::mem::take(&mut self.data)));
                    } else {
                        out.push(Incoming::BadChecksum);
                    }
                }
            }
        }
        out
    }

    fn push(&mut self, b: u8) {
        if self.data.len() < PACKET_SIZE {
            self.data.push(b);
        } else {
            self.overflow = true;
        }
    }
}

/// Frames `payload` as `$payload#cs`, escaping `$ # } *`.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.push(b'$');
    let mut sum = 0u8;
    for &b in payload {
        if matches!(b, b'$' | b'#' | b'}' | b'*') {
            out.push(b'}');
            out.push(b ^ 0x20);
            sum = sum.wrapping_add(b'}').wrapping_add(b ^ 0x20);
        } else {
            out.push(b);
            sum = sum.wrapping_add(b);
        }
    }
    out.extend_from_slice(format!("#{sum:02x}").as_bytes());
    out
}

/// A command from GDB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `?`: why the target stopped.
    StopReason,
    /// `g`: all registers.
    ReadRegisters,
    /// `m addr,len`.
    ReadMemory {
        /// Guest-virtual address.
        addr: u64,
        /// Length.
        len: u64,
    },
    /// `M addr,len:hex`.
    WriteMemory {
        /// Guest-virtual address.
        addr: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// `c [addr]` (a resume address is refused).
    Continue {
        /// The resume address, if given.
        addr: Option<u64>,
    },
    /// `s`: single-step (not supported by this stub).
    Step,
    /// `H op thread`.
    SetThread {
        /// `g` (registers/memory) or `c` (continue).
        op: u8,
        /// Thread id: -1 all, 0 any, n ≥ 1 a vCPU.
        thread: i64,
    },
    /// `T thread`: is the thread alive?
    ThreadAlive(i64),
    /// `qSupported[:features]`.
    Supported,
    /// `qC`: current thread.
    CurrentThread,
    /// `qfThreadInfo`.
    FirstThreadInfo,
    /// `qsThreadInfo`.
    NextThreadInfo,
    /// `qAttached`.
    Attached,
    /// `qSymbol::`.
    Symbol,
    /// `qXfer:features:read:ANNEX:offset,length`.
    ReadFeatures {
        /// The document (`target.xml`).
        annex: String,
        /// Offset.
        offset: u64,
        /// Length.
        len: u64,
    },
    /// `D[;pid]`: detach.
    Detach,
    /// `k` or `vKill`: kill the target (sevm quits the VM, as QEMU).
    Kill,
    /// `Z0,addr,kind`: insert a software breakpoint.
    InsertBreakpoint(u64),
    /// `z0,addr,kind`: remove a software breakpoint.
    RemoveBreakpoint(u64),
    /// `Z`/`z` of other kinds: hardware breakpoints and watchpoints (not
    /// supported).
    Breakpoint,
    /// Anything else: answered with an empty packet ("unsupported").
    Unsupported,
    /// A known command with malformed arguments.
    Malformed,
}

fn parse_hex_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    s.iter()
        .try_fold(0u64, |acc, &c| Some(acc << 4 | u64::from(hex_val(c)?)))
}

/// Decodes hex digit pairs.
pub fn decode_hex(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2)
        .map(|p| Some(hex_val(*p.first()?)? << 4 | hex_val(*p.get(1)?)?))
        .collect()
}

/// Encodes bytes as lower-case hex.
pub fn encode_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn parse_thread(s: &[u8]) -> Option<i64> {
    match s {
        b"-1" => Some(-1),
        _ => parse_hex_u64(s).and_then(|v| i64::try_from(v).ok()),
    }
}

fn split_addr_len(s: &[u8]) -> Option<(u64, u64)> {
    let comma = s.iter().position(|&c| c == b',')?;
    let (a, l) = s.split_at(comma);
    Some((parse_hex_u64(a)?, parse_hex_u64(l.get(1..)?)?))
}

/// Parses one packet payload.
pub fn parse(p: &[u8]) -> Command {
    let Some((&first, rest)) = p.split_first() else {
        return Command::Unsupported;
    };
    let malformed = |c: Option<Command>| c.unwrap_or(Command::Malformed);
    match first {
        b'?' => Command::StopReason,
        b'g' => Command::ReadRegisters,
        b'm' => {
            malformed(split_addr_len(rest).map(|(addr, len)| Command::ReadMemory { addr, len }))
        }
        b'M' => malformed((|| {
            let colon = rest.iter().position(|&c| c == b':')?;
            let (al, data) = rest.split_at(colon);
            let (addr, len) = split_addr_len(al)?;
            let data = decode_hex(data.get(1..)?)?;
            (data.len() as u64 == len).then_some(Command::WriteMemory { addr, data })
        })()),
        b'c' => {
            if rest.is_empty() {
                Command::Continue { addr: None }
            } else {
                malformed(parse_hex_u64(rest).map(|a| Command::Continue { addr: Some(a) }))
            }
        }
        b's' => Command::Step,
        b'H' => malformed(rest.split_first().and_then(|(&op, t)| {
            Some(Command::SetThread {
                op,
                thread: parse_thread(t)?,
            })
        })),
        b'T' => malformed(parse_thread(rest).map(Command::ThreadAlive)),
        b'D' => Command::Detach,
        b'k' => Command::Kill,
        b'Z' | b'z' => match rest.strip_prefix(b"0,") {
            Some(args) => malformed(split_addr_len(args).map(|(addr, _kind)| {
                if first == b'Z' {
                    Command::InsertBreakpoint(addr)
                } else {
                    Command::RemoveBreakpoint(addr)
                }
            })),
            None => Command::Breakpoint,
        },
        b'q' => match rest {
            b"C" => Command::CurrentThread,
            b"fThreadInfo" => Command::FirstThreadInfo,
            b"sThreadInfo" => Command::NextThreadInfo,
            b"Symbol::" => Command::Symbol,
            r if r.starts_with(b"Supported") => Command::Supported,
            r if r.starts_with(b"Xfer:features:read:") => malformed((|| {
                let r = r.get(b"Xfer:features:read:".len()..)?;
                let colon = r.iter().position(|&c| c == b':')?;
                let (annex, ol) = r.split_at(colon);
                let (offset, len) = split_addr_len(ol.get(1..)?)?;
                Some(Command::ReadFeatures {
                    annex: String::from_utf8(annex.to_vec()).ok()?,
                    offset,
                    len,
                })
            })()),
            r if r.starts_with(b"Attached") => Command::Attached,
            _ => Command::Unsupported,
        },
        b'v' if rest.starts_with(b"Kill") => Command::Kill,
        _ => Command::Unsupported,
    }
}

/// The target description sent for `qXfer:features:read:target.xml`:
/// GDB's amd64 core and SSE features (register names as GDB's
/// `64bit-core.xml`/`64bit-sse.xml`, so GDB's i386:x86-64 architecture
/// accepts them; the guest's 32-bit registers are the low halves).
pub fn target_xml() -> String {
    let mut x = String::from(
        "<?xml version=\"1.0\"?><!DOCTYPE target SYSTEM \"gdb-target.dtd\">\
         <target><architecture>i386:x86-64</architecture>\
         <feature name=\"org.gnu.gdb.i386.core\">",
    );
    let reg = |x: &mut String, name: &str, bits: u32, ty: &str| {
        x.push_str(&format!(
            "<reg name=\"{name}\" bitsize=\"{bits}\" type=\"{ty}\"/>"
        ));
    };
    for r in ["rax", "rbx", "rcx", "rdx", "rsi", "rdi"] {
        reg(&mut x, r, 64, "int64");
    }
    reg(&mut x, "rbp", 64, "data_ptr");
    reg(&mut x, "rsp", 64, "data_ptr");
    for i in 8..16 {
        reg(&mut x, &format!("r{i}"), 64, "int64");
    }
    reg(&mut x, "rip", 64, "code_ptr");
    reg(&mut x, "eflags", 32, "int32");
    for r in ["cs", "ss", "ds", "es", "fs", "gs"] {
        reg(&mut x, r, 32, "int32");
    }
    for i in 0..8 {
        reg(&mut x, &format!("st{i}"), 80, "i387_ext");
    }
    for r in [
        "fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop",
    ] {
        reg(&mut x, r, 32, "int");
    }
    x.push_str("</feature><feature name=\"org.gnu.gdb.i386.sse\">");
    for i in 0..16 {
        reg(&mut x, &format!("xmm{i}"), 128, "uint128");
    }
    reg(&mut x, "mxcsr", 32, "int");
    x.push_str("</feature></target>");
    x
}

/// The `g` block in GDB's default amd64 layout, up to the segment
/// selectors: rax rbx rcx rdx rsi rdi rbp rsp r8..r15 rip (8 bytes each),
/// eflags cs ss ds es fs gs (4 bytes each), little-endian. GDB treats the
/// registers after these (x87, SSE) as unavailable.
pub fn registers(state: &VcpuState) -> String {
    let r = &state.regs;
    let s = &state.sregs;
    let mut b = Vec::with_capacity(164);
    for v in [
        r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15, r.rip,
    ] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&(r.rflags as u32).to_le_bytes());
    for seg in [&s.cs, &s.ss, &s.ds, &s.es, &s.fs, &s.gs] {
        b.extend_from_slice(&u32::from(seg.selector).to_le_bytes());
    }
    encode_hex(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_checksums() {
        assert_eq!(encode(b"OK"), b"$OK#9a");
        assert_eq!(encode(b""), b"$#00");
        // Escaped: '#' becomes "}\x03".
        assert_eq!(encode(b"a#"), b"$a}\x03#e1");
        let mut r = PacketReader::default();
        let got = r.feed(b"+$qSupported:multiprocess+#c6\x03-$g#67$g#00");
        assert_eq!(
            got,
            vec![
                Incoming::Ack,
                Incoming::Packet(b"qSupported:multiprocess+".to_vec()),
                Incoming::Interrupt,
                Incoming::Nack,
                Incoming::Packet(b"g".to_vec()),
                Incoming::BadChecksum,
            ]
        );
        // A packet split across reads, with an escape.
        let framed = encode(b"M0,1:7d}");
        let (a, b) = framed.split_at(5);
        assert!(r.feed(a).is_empty());
        assert_eq!(r.feed(b), vec![Incoming::Packet(b"M0,1:7d}".to_vec())]);
        // Oversized packets are dropped.
        let mut big = vec![b'$'];
        big.extend(std::iter::repeat_n(b'a', PACKET_SIZE + 1));
        big.extend_from_slice(b"#00");
        assert_eq!(r.feed(&big), vec![Incoming::TooLong]);
    }

    #[test]
    fn parses_commands() {
        assert_eq!(parse(b"?"), Command::StopReason);
        assert_eq!(
            parse(b"mfffffff0,10"),
            Command::ReadMemory {
                addr: 0xffff_fff0,
                len: 16
            }
        );
        assert_eq!(
            parse(b"M1000,2:abcd"),
            Command::WriteMemory {
                addr: 0x1000,
                data: vec![0xab, 0xcd]
            }
        );
        assert_eq!(parse(b"M1000,3:abcd"), Command::Malformed);
        assert_eq!(parse(b"m1000"), Command::Malformed);
        assert_eq!(parse(b"m,1"), Command::Malformed);
        assert_eq!(parse(b"m11111111111111111,1"), Command::Malformed);
        assert_eq!(parse(b"c"), Command::Continue { addr: None });
        assert_eq!(parse(b"c100"), Command::Continue { addr: Some(0x100) });
        assert_eq!(
            parse(b"Hg1"),
            Command::SetThread {
                op: b'g',
                thread: 1
            }
        );
        assert_eq!(
            parse(b"Hc-1"),
            Command::SetThread {
                op: b'c',
                thread: -1
            }
        );
        assert_eq!(parse(b"T2"), Command::ThreadAlive(2));
        assert_eq!(parse(b"qSupported:xmlRegisters=i386"), Command::Supported);
        assert_eq!(parse(b"qAttached:1"), Command::Attached);
        assert_eq!(parse(b"qfThreadInfo"), Command::FirstThreadInfo);
        assert_eq!(parse(b"vKill;1"), Command::Kill);
        assert_eq!(
            parse(b"qXfer:features:read:target.xml:0,ffb"),
            Command::ReadFeatures {
                annex: "target.xml".into(),
                offset: 0,
                len: 0xffb
            }
        );
        assert_eq!(
            parse(b"qXfer:features:read:target.xml:0"),
            Command::Malformed
        );
        assert_eq!(parse(b"Z0,1000,1"), Command::InsertBreakpoint(0x1000));
        assert_eq!(
            parse(b"z0,ffff0010,1"),
            Command::RemoveBreakpoint(0xffff_0010)
        );
        assert_eq!(parse(b"Z0,zz,1"), Command::Malformed);
        assert_eq!(parse(b"Z1,1000,1"), Command::Breakpoint);
        assert_eq!(parse(b"z2,1000,4"), Command::Breakpoint);
        assert_eq!(parse(b"vMustReplyEmpty"), Command::Unsupported);
        assert_eq!(parse(b""), Command::Unsupported);
        assert_eq!(decode_hex(b"0aFf"), Some(vec![0x0a, 0xff]));
        assert_eq!(decode_hex(b"0"), None);
        assert_eq!(decode_hex(b"zz"), None);
        assert_eq!(encode_hex(&[0, 0xab]), "00ab");
    }

    #[test]
    fn arbitrary_input_never_panics() {
        // Deterministic xorshift: framing and command parsing of random
        // bytes (biased towards the protocol's own characters).
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = b"$#}*+-\x03mMgcsHTqDkZz?:,0123456789abcdefXfeatures";
        let mut reader = PacketReader::default();
        for _ in 0..2000 {
            let len = (next() % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 4 == 0 {
                        r as u8
                    } else {
                        alphabet[(r >> 8) as usize % alphabet.len()]
                    }
                })
                .collect();
            for item in reader.feed(&bytes) {
                if let Incoming::Packet(p) = item {
                    let _ = parse(&p);
                }
            }
            let _ = parse(&bytes);
            let _ = decode_hex(&bytes);
        }
    }

    #[test]
    fn register_block_is_the_amd64_core_layout() {
        let mut st = VcpuState {
            regs: Default::default(),
            sregs: Default::default(),
            msrs: Vec::new(),
            runnable: true,
            halted: false,
        };
        st.regs.rax = 0x1122;
        st.regs.rip = 0xfff0;
        st.regs.rflags = 0x2;
        st.sregs.cs.selector = 0xf000;
        let g = registers(&st);
        assert_eq!(g.len(), 164 * 2);
        assert!(g.starts_with("2211000000000000"));
        // rip is register 16 (offset 128), eflags 17 (136), cs 18 (140).
        assert_eq!(&g[256..272], "f0ff000000000000");
        assert_eq!(&g[272..280], "02000000");
        assert_eq!(&g[280..288], "00f00000");
    }
}
