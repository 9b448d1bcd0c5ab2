//! QEMU's option-value syntax: `key=value,key=value` lists with `,,` as an
//! escaped comma, an optional implied first key (`-machine q35,...` means
//! `type=q35`), bare `flag` items (QemuOpts' shorthand for `flag=on`), and
//! the number, boolean and size spellings QEMU's parsers accept.
//!
//! Everything here is pure string handling; the errors are plain problem
//! descriptions that the caller wraps with the option and property names.

/// One `key[=value]` item of an option argument, in command-line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prop {
    /// Property name (for the implied first item: the implied key).
    pub key: String,
    /// The value, or `None` for a bare `flag` item.
    pub value: Option<String>,
}

/// Splits `arg` on unescaped commas, turning `,,` into a literal comma.
fn split_items(arg: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut chars = arg.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                cur.push(',');
            } else {
                items.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    items.push(cur);
    items
}

/// Parses a QemuOpts/keyval style list.
///
/// When `implied_key` is given and the first item has no `=`, that item is
/// the value of the implied key (`q35` → `type=q35`). Empty items (`a=1,`,
/// or an empty argument) are errors, as in QEMU's keyval parser.
pub(crate) fn parse_props(arg: &str, implied_key: Option<&str>) -> Result<Vec<Prop>, String> {
    let mut props = Vec::new();
    for (i, item) in split_items(arg).into_iter().enumerate() {
        if item.is_empty() {
            return Err("empty item in the property list".to_string());
        }
        match item.split_once('=') {
            Some((key, value)) => {
                if key.is_empty() {
                    return Err(format!("missing property name before '={value}'"));
                }
                props.push(Prop {
                    key: key.to_string(),
                    value: Some(value.to_string()),
                });
            }
            None => match (i, implied_key) {
                (0, Some(implied)) => props.push(Prop {
                    key: implied.to_string(),
                    value: Some(item),
                }),
                _ => props.push(Prop {
                    key: item,
                    value: None,
                }),
            },
        }
    }
    Ok(props)
}

/// Parses an unsigned integer the way QEMU's option parsers do (`strtoull`
/// with base 0): `0x`/`0X` prefix → hexadecimal, a leading `0` followed by
/// digits → octal, otherwise decimal. No sign, no whitespace, no suffix.
pub(crate) fn parse_u64(s: &str) -> Result<u64, String> {
    let invalid = || format!("invalid number \"{s}\"");
    let (digits, radix) = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (hex, 16)
    } else if let Some(octal) = s.strip_prefix('0').filter(|rest| !rest.is_empty()) {
        (octal, 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(invalid());
    }
    u64::from_str_radix(digits, radix).map_err(|_| format!("number \"{s}\" is out of range"))
}

/// [`parse_u64`] restricted to 32 bits (QEMU's `uint32` properties).
pub(crate) fn parse_u32(s: &str) -> Result<u32, String> {
    let v = parse_u64(s)?;
    u32::try_from(v).map_err(|_| format!("number \"{s}\" is out of range for a 32-bit value"))
}

/// QEMU's boolean spellings (`qapi_bool_parse`): on/yes/true/y and
/// off/no/false/n.
pub(crate) fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "on" | "yes" | "true" | "y" => Ok(true),
        "off" | "no" | "false" | "n" => Ok(false),
        _ => Err(format!(
            "invalid boolean \"{s}\" (use on/off, yes/no or true/false)"
        )),
    }
}

/// A boolean property value where a bare flag (`server`) means `on`.
pub(crate) fn flag_or_bool(value: Option<&str>) -> Result<bool, String> {
    match value {
        None => Ok(true),
        Some(v) => parse_bool(v),
    }
}

/// Parses a size the way QEMU's `qemu_strtosz_MiB` does for `-m`: a decimal
/// number with an optional fraction and an optional suffix B, K, M, G, T, P
/// or E (case-insensitive, powers of 1024); no suffix means `default_unit`.
/// The result must be a whole number of bytes.
pub(crate) fn parse_size(s: &str, default_unit: u64) -> Result<u64, String> {
    let invalid = || format!("invalid size \"{s}\"");
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let unit: u64 = match suffix {
        "" => default_unit,
        "b" | "B" => 1,
        "k" | "K" => 1 << 10,
        "m" | "M" => 1 << 20,
        "g" | "G" => 1 << 30,
        "t" | "T" => 1 << 40,
        "p" | "P" => 1 << 50,
        "e" | "E" => 1 << 60,
        _ => return Err(invalid()),
    };
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if int_part.is_empty()
        || !int_part.chars().all(|c| c.is_ascii_digit())
        || !frac_part.chars().all(|c| c.is_ascii_digit())
        || (number.contains('.') && frac_part.is_empty())
    {
        return Err(invalid());
    }
    let too_large = || format!("size \"{s}\" is too large");
    let int: u128 = int_part.parse().map_err(|_| too_large())?;
    // At most 18 fractional digits keeps 10^digits inside u128 arithmetic.
    if frac_part.len() > 18 {
        return Err(invalid());
    }
    let frac: u128 = if frac_part.is_empty() {
        0
    } else {
        frac_part.parse().map_err(|_| invalid())?
    };
    let scale = 10u128.pow(u32::try_from(frac_part.len()).map_err(|_| invalid())?);
    let unit = u128::from(unit);
    let total_scaled = int
        .checked_mul(scale)
        .and_then(|v| v.checked_add(frac))
        .and_then(|v| v.checked_mul(unit))
        .ok_or_else(too_large)?;
    if total_scaled % scale != 0 {
        return Err(format!("size \"{s}\" is not a whole number of bytes"));
    }
    u64::try_from(total_scaled / scale).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(key: &str, value: Option<&str>) -> Prop {
        Prop {
            key: key.to_string(),
            value: value.map(str::to_string),
        }
    }

    #[test]
    fn props_with_implied_key_flags_and_escapes() {
        let props = parse_props("q35,accel=kvm,server,file=a,,b", Some("type")).unwrap();
        assert_eq!(
            props,
            vec![
                p("type", Some("q35")),
                p("accel", Some("kvm")),
                p("server", None),
                p("file", Some("a,b")),
            ]
        );
        // Without an implied key the first bare item is a flag.
        assert_eq!(
            parse_props("nowait", None).unwrap(),
            vec![p("nowait", None)]
        );
        // A value may contain '='.
        assert_eq!(
            parse_props("append=a=b", None).unwrap(),
            vec![p("append", Some("a=b"))]
        );
    }

    #[test]
    fn props_reject_empty_items() {
        assert!(parse_props("", None).is_err());
        assert!(parse_props("a=1,", None).is_err());
        assert!(parse_props("a=1,,,", None).is_err());
        assert!(parse_props("=x", None).is_err());
    }

    #[test]
    fn numbers_like_strtoull_base0() {
        assert_eq!(parse_u64("0").unwrap(), 0);
        assert_eq!(parse_u64("47").unwrap(), 47);
        assert_eq!(parse_u64("0x1").unwrap(), 1);
        assert_eq!(parse_u64("0XfF").unwrap(), 255);
        assert_eq!(parse_u64("010").unwrap(), 8);
        assert_eq!(parse_u64("18446744073709551615").unwrap(), u64::MAX);
        for bad in ["", "0x", "0xzz", "-1", "+1", " 1", "1 ", "09", "1k", "abc"] {
            assert!(parse_u64(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_u64("18446744073709551616")
            .unwrap_err()
            .contains("out of range"));
        assert_eq!(parse_u32("0xffffffff").unwrap(), u32::MAX);
        assert!(parse_u32("0x100000000")
            .unwrap_err()
            .contains("out of range"));
        assert_eq!(parse_u64("0xzz").unwrap_err(), "invalid number \"0xzz\"");
    }

    #[test]
    fn booleans() {
        for t in ["on", "yes", "true", "y"] {
            assert!(parse_bool(t).unwrap());
        }
        for f in ["off", "no", "false", "n"] {
            assert!(!parse_bool(f).unwrap());
        }
        for bad in ["ON", "1", "0", "", "enable"] {
            assert!(parse_bool(bad).is_err(), "{bad:?} accepted");
        }
        assert!(flag_or_bool(None).unwrap());
        assert!(!flag_or_bool(Some("off")).unwrap());
    }

    #[test]
    fn sizes_like_qemu_strtosz_mib() {
        const M: u64 = 1 << 20;
        assert_eq!(parse_size("512", M).unwrap(), 512 * M);
        assert_eq!(parse_size("512M", M).unwrap(), 512 * M);
        assert_eq!(parse_size("512m", M).unwrap(), 512 * M);
        assert_eq!(parse_size("2G", M).unwrap(), 2 << 30);
        assert_eq!(parse_size("2g", M).unwrap(), 2 << 30);
        assert_eq!(parse_size("4096k", M).unwrap(), 4 << 20);
        assert_eq!(parse_size("4096K", M).unwrap(), 4 << 20);
        assert_eq!(parse_size("1.5G", M).unwrap(), 3 << 29);
        assert_eq!(parse_size("1T", M).unwrap(), 1 << 40);
        assert_eq!(parse_size("65536B", M).unwrap(), 65536);
        for bad in ["", "G", "1.G", ".5G", "1..5G", "12X", "1 G", "-1", "0x10"] {
            assert!(parse_size(bad, M).is_err(), "{bad:?} accepted");
        }
        assert!(parse_size("1.5B", M).unwrap_err().contains("whole number"));
        assert!(parse_size("16E", M).unwrap_err().contains("too large"));
        assert!(parse_size("99999999999999999999999999999999999999999", M).is_err());
    }
}
