//! The HMP commands sevm answers through QMP `human-monitor-command`:
//! `x /fmt addr` (guest-virtual) and `xp /fmt addr` (guest-physical), with
//! QEMU's output format (monitor/hmp-cmds-target.c `memory_dump`), plus
//! `help`. Both show what the hypervisor sees: ciphertext for private SEV
//! memory. Lines end in `\r\n`, as QEMU's monitor writes them.
//!
//! Differences from QEMU, by choice: the address is a number or a sum/
//! difference of numbers (no `$reg` expressions), the format `i`
//! (disassembly) is not supported, the format is not remembered between
//! commands, and a dump is limited to [`MAX_DUMP`] bytes.

use super::{DebugError, GuestDebug, View};
use crate::vcpu::VcpuState;

/// Largest `x`/`xp` dump.
pub const MAX_DUMP: u64 = 64 << 10;

/// The `/fmt` of `x`/`xp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpFormat {
    /// Number of units.
    pub count: u64,
    /// `x`, `d`, `u`, `o` or `c`.
    pub format: char,
    /// Unit size: 1, 2, 4 or 8.
    pub size: u64,
}

impl Default for DumpFormat {
    /// QEMU's initial format: one hex word.
    fn default() -> Self {
        DumpFormat {
            count: 1,
            format: 'x',
            size: 4,
        }
    }
}

/// A parsed HMP command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HmpCommand {
    /// `x` / `xp`.
    Dump {
        /// `xp` (physical) or `x` (virtual).
        physical: bool,
        /// The format.
        format: DumpFormat,
        /// The start address.
        addr: u64,
    },
    /// `help` / `?`.
    Help,
    /// An empty line.
    Nothing,
}

/// A command line the monitor cannot run; `Display` is QEMU's text
/// (without the line end).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HmpError {
    /// Not a command sevm's monitor has.
    #[error("unknown command: '{0}'")]
    UnknownCommand(String),
    /// `x`/`xp` without an address.
    #[error("Parameter 'addr' is missing")]
    MissingAddress,
    /// A bad character in `/fmt`.
    #[error("invalid char in format: '{0}'")]
    FormatChar(char),
    /// `/i` (disassembly).
    #[error("format 'i' (disassembly) is not supported by sevm")]
    Disassembly,
    /// A count that does not fit.
    #[error("invalid count '{0}'")]
    Count(String),
    /// A number that does not parse.
    #[error("invalid number '{0}'")]
    Number(String),
    /// An empty term in `a+b`.
    #[error("invalid expression")]
    Expression,
}

/// The help text (only the commands sevm has).
pub const HELP: &str = "x /fmt addr -- virtual memory dump starting at 'addr'\r\n\
     xp /fmt addr -- physical memory dump starting at 'addr'\r\n\
     help|? [cmd] -- show the help\r\n";

/// Parses one command line.
pub fn parse(line: &str) -> Result<HmpCommand, HmpError> {
    let line = line.trim();
    let (name, rest) = match line.find(|c: char| c.is_whitespace() || c == '/') {
        Some(i) => (&line[..i], line[i..].trim_start()),
        None => (line, ""),
    };
    match name {
        "" => Ok(HmpCommand::Nothing),
        "help" | "?" => Ok(HmpCommand::Help),
        "x" | "xp" => {
            let (format, rest) = if let Some(f) = rest.strip_prefix('/') {
                let end = f.find(char::is_whitespace).unwrap_or(f.len());
                (parse_format(&f[..end])?, f[end..].trim_start())
            } else {
                (DumpFormat::default(), rest)
            };
            if rest.is_empty() {
                return Err(HmpError::MissingAddress);
            }
            let addr = parse_expr(rest)?;
            Ok(HmpCommand::Dump {
                physical: name == "xp",
                format,
                addr,
            })
        }
        other => Err(HmpError::UnknownCommand(other.into())),
    }
}

fn parse_format(f: &str) -> Result<DumpFormat, HmpError> {
    let mut out = DumpFormat::default();
    let digits = f.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 {
        out.count = f[..digits]
            .parse()
            .map_err(|_| HmpError::Count(f[..digits].into()))?;
    }
    let mut size = None;
    for c in f[digits..].chars() {
        match c {
            'x' | 'd' | 'u' | 'o' | 'c' => out.format = c,
            'b' => size = Some(1),
            'h' => size = Some(2),
            'w' => size = Some(4),
            'g' => size = Some(8),
            'i' => return Err(HmpError::Disassembly),
            other => return Err(HmpError::FormatChar(other)),
        }
    }
    out.size = match (out.format, size) {
        ('c', _) => 1,
        (_, Some(s)) => s,
        (_, None) => 4,
    };
    Ok(out)
}

fn parse_number(s: &str) -> Result<u64, HmpError> {
    let s = s.trim();
    let r = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else {
        s.parse::<u64>()
    };
    r.map_err(|_| HmpError::Number(s.into()))
}

/// A number, or numbers joined by `+`/`-` (wrapping, as QEMU's expressions).
fn parse_expr(s: &str) -> Result<u64, HmpError> {
    let mut total = 0u64;
    let mut sign_minus = false;
    let mut term = String::new();
    let apply = |term: &mut String, minus: bool, total: &mut u64| -> Result<(), HmpError> {
        if term.trim().is_empty() {
            return Err(HmpError::Expression);
        }
        let v = parse_number(term)?;
        *total = if minus {
            total.wrapping_sub(v)
        } else {
            total.wrapping_add(v)
        };
        term.clear();
        Ok(())
    };
    for c in s.chars() {
        match c {
            '+' | '-' => {
                apply(&mut term, sign_minus, &mut total)?;
                sign_minus = c == '-';
            }
            c => term.push(c),
        }
    }
    apply(&mut term, sign_minus, &mut total)?;
    Ok(total)
}

fn printc(out: &mut String, v: u8) {
    out.push('\'');
    match v {
        b'\'' => out.push_str("\\'"),
        b'\\' => out.push_str("\\\\"),
        b'\n' => out.push_str("\\n"),
        b'\r' => out.push_str("\\r"),
        0x20..=0x7e => out.push(char::from(v)),
        _ => out.push_str(&format!("\\x{v:02x}")),
    }
    out.push('\'');
}

/// Formats `bytes` read at `addr` as QEMU's `memory_dump` does.
pub fn format_dump(addr: u64, format: &DumpFormat, bytes: &[u8]) -> String {
    let size = format.size as usize;
    let line_size = if size == 1 { 8 } else { 16 };
    let bits = format.size * 8;
    let width = match format.format {
        'o' => bits.div_ceil(3) as usize,
        'u' | 'd' => (bits * 10).div_ceil(33) as usize,
        _ => (bits / 4) as usize,
    };
    let mut out = String::new();
    for (i, line) in bytes.chunks(line_size).enumerate() {
        out.push_str(&format!(
            "{:016x}:",
            addr.wrapping_add((i * line_size) as u64)
        ));
        for unit in line.chunks(size) {
            let mut b = [0u8; 8];
            if let Some(dst) = b.get_mut(..unit.len()) {
                dst.copy_from_slice(unit);
            }
            let v = u64::from_le_bytes(b);
            out.push(' ');
            match format.format {
                'o' if v == 0 => out.push_str(&format!("{:>width$}", "0")),
                'o' => out.push_str(&format!("{:>width$}", format!("0{v:o}"))),
                'u' | 'd' => out.push_str(&format!("{v:>width$}")),
                'c' => printc(&mut out, b[0]),
                _ => out.push_str(&format!("0x{v:0width$x}")),
            }
        }
        out.push_str("\r\n");
    }
    out
}

/// Runs `line` against the guest; `vcpu` gives the current vCPU's state for
/// virtual addresses. The result is the monitor's output (errors
/// included, as QEMU prints them).
pub fn execute(
    line: &str,
    dbg: &GuestDebug,
    vcpu: impl FnOnce() -> Result<VcpuState, DebugError>,
) -> String {
    let cmd = match parse(line) {
        Ok(c) => c,
        Err(e) => return format!("{e}\r\n"),
    };
    match cmd {
        HmpCommand::Nothing => String::new(),
        HmpCommand::Help => HELP.into(),
        HmpCommand::Dump {
            physical,
            format,
            addr,
        } => {
            let len = format.count.saturating_mul(format.size);
            if len > MAX_DUMP {
                return format!("dump of {len} bytes is too large (at most {MAX_DUMP})\r\n");
            }
            let state = if physical {
                None
            } else {
                match vcpu() {
                    Ok(s) => Some(s),
                    Err(e) => return format!("{}\r\n", error_text(&e)),
                }
            };
            let mut buf = vec![0u8; len as usize];
            match dbg.read_in(View::Host, state.as_ref(), addr, &mut buf) {
                Ok(()) => format_dump(addr, &format, &buf),
                Err(e) => format!("Cannot access memory: {}\r\n", error_text(&e)),
            }
        }
    }
}

/// An error with its sources, on one line.
pub fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_x_and_xp_like_qemu() {
        assert_eq!(
            parse("xp /4xw 0x1000").unwrap(),
            HmpCommand::Dump {
                physical: true,
                format: DumpFormat {
                    count: 4,
                    format: 'x',
                    size: 4
                },
                addr: 0x1000
            }
        );
        assert_eq!(
            parse("x/16cb 4096+16").unwrap(),
            HmpCommand::Dump {
                physical: false,
                format: DumpFormat {
                    count: 16,
                    format: 'c',
                    size: 1
                },
                addr: 4112
            }
        );
        assert_eq!(
            parse("xp 0xfffffff0").unwrap(),
            HmpCommand::Dump {
                physical: true,
                format: DumpFormat::default(),
                addr: 0xffff_fff0
            }
        );
        assert_eq!(
            parse("xp /2g 0x20-0x10").unwrap(),
            HmpCommand::Dump {
                physical: true,
                format: DumpFormat {
                    count: 2,
                    format: 'x',
                    size: 8
                },
                addr: 0x10
            }
        );
        assert_eq!(parse("  ").unwrap(), HmpCommand::Nothing);
        assert_eq!(parse("help").unwrap(), HmpCommand::Help);
        assert_eq!(
            parse("info foo").unwrap_err().to_string(),
            "unknown command: 'info'"
        );
        assert_eq!(parse("xp /4xw").unwrap_err(), HmpError::MissingAddress);
        assert_eq!(parse("xp /4z 0").unwrap_err(), HmpError::FormatChar('z'));
        assert_eq!(parse("xp /4i 0").unwrap_err(), HmpError::Disassembly);
        assert_eq!(
            parse("xp 0xzz").unwrap_err(),
            HmpError::Number("0xzz".into())
        );
        assert_eq!(parse("xp 1+").unwrap_err(), HmpError::Expression);
        assert_eq!(
            parse("xp /99999999999999999999x 0").unwrap_err(),
            HmpError::Count("99999999999999999999".into())
        );
    }

    #[test]
    fn arbitrary_command_lines_never_panic() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let alphabet = "x xp/ 0123456789abcdefghiouwgbcz+-$\u{e9}\t";
        let chars: Vec<char> = alphabet.chars().collect();
        for _ in 0..3000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 24) as usize;
            let line: String = (0..len)
                .map(|i| chars[((x >> (i % 48)) as usize + i) % chars.len()])
                .collect();
            let _ = parse(&line);
        }
        let _ = parse("xp /99999999999999999999999x 0");
        let _ = parse("x /\u{e9} 0");
    }

    #[test]
    fn formats_like_qemu_memory_dump() {
        let bytes: Vec<u8> = (0u8..20).collect();
        let f = DumpFormat {
            count: 5,
            format: 'x',
            size: 4,
        };
        assert_eq!(
            format_dump(0x1000, &f, &bytes),
            "0000000000001000: 0x03020100 0x07060504 0x0b0a0908 0x0f0e0d0c\r\n\
             0000000000001010: 0x13121110\r\n"
        );
        let f = DumpFormat {
            count: 3,
            format: 'x',
            size: 1,
        };
        assert_eq!(
            format_dump(0, &f, &[0xab, 1, 2]),
            "0000000000000000: 0xab 0x01 0x02\r\n"
        );
        let f = DumpFormat {
            count: 2,
            format: 'u',
            size: 2,
        };
        // QEMU: DIV_ROUND_UP(16 * 10, 33) = 5 digits, unsigned loads.
        assert_eq!(
            format_dump(0, &f, &[0xff, 0xff, 7, 0]),
            "0000000000000000: 65535     7\r\n"
        );
        let f = DumpFormat {
            count: 2,
            format: 'o',
            size: 1,
        };
        assert_eq!(format_dump(0, &f, &[8, 0]), "0000000000000000: 010   0\r\n");
        let f = DumpFormat {
            count: 4,
            format: 'c',
            size: 1,
        };
        assert_eq!(
            format_dump(0x10, &f, b"A\n'\x01"),
            "0000000000000010: 'A' '\\n' '\\'' '\\x01'\r\n"
        );
        let f = DumpFormat {
            count: 1,
            format: 'x',
            size: 8,
        };
        assert_eq!(
            format_dump(0, &f, &0x1122_3344_5566_7788u64.to_le_bytes()),
            "0000000000000000: 0x1122334455667788\r\n"
        );
    }
}
