//! The HTTP/1.1 request head as the key server reads it: a bounded request
//! line and header block, parsed strictly (docs/guide/kds.md#limits).
//!
//! Only what a GET server needs: the method, the request target in origin
//! form (`/path?query`) and the version. Header fields are checked for
//! shape and counted, not interpreted (the server answers every request
//! with `Connection: close` and reads no body).

/// The longest request line accepted (414 URI Too Long beyond).
pub const MAX_REQUEST_LINE: usize = 2048;
/// The longest request head accepted, request line and header fields
/// (431 Request Header Fields Too Large beyond).
pub const MAX_HEAD: usize = 8192;
/// The most header fields accepted (431 beyond).
pub const MAX_HEADERS: usize = 64;

/// The methods the server knows; others are answered 405.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// HEAD: GET without the body.
    Head,
    /// Any other token (POST, PUT, ...).
    Other,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The method as sent (for the log).
    pub method_name: String,
    /// The request target: a path with an optional query, starting `/`.
    pub target: String,
    /// Number of header fields.
    pub headers: usize,
}

/// Why a request head is refused, with the status it is answered with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The request line is longer than [`MAX_REQUEST_LINE`] (414).
    #[error("the request line is longer than {MAX_REQUEST_LINE} bytes")]
    UriTooLong,
    /// The head is longer than [`MAX_HEAD`] or has more than
    /// [`MAX_HEADERS`] fields (431).
    #[error(
        "the request head is longer than {MAX_HEAD} bytes or has more than {MAX_HEADERS} fields"
    )]
    HeadTooLarge,
    /// Not an HTTP/1.x request head (400).
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// HTTP/2 or later on this HTTP/1.1 port (505).
    #[error("HTTP version not supported")]
    Version,
}

impl HeadError {
    /// The HTTP status code this error is answered with.
    pub const fn status(&self) -> u16 {
        match self {
            HeadError::UriTooLong => 414,
            HeadError::HeadTooLarge => 431,
            HeadError::Malformed(_) => 400,
            HeadError::Version => 505,
        }
    }
}

/// Where the head in `buf` ends (the index after its blank line), if it
/// is complete; lines end in CRLF or a bare LF.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = buf.get(i..)?.iter().position(|b| *b == b'\n') {
        let nl = i + off;
        match buf.get(nl + 1..) {
            Some([b'\n', ..]) => return Some(nl + 2),
            Some([b'\r', b'\n', ..]) => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// Whether a partial head already breaks a limit: a request line without
/// its end longer than [`MAX_REQUEST_LINE`], or more than [`MAX_HEAD`]
/// bytes with no blank line.
pub fn check_partial(buf: &[u8]) -> Result<(), HeadError> {
    match buf.iter().position(|b| *b == b'\n') {
        None if buf.len() > MAX_REQUEST_LINE => Err(HeadError::UriTooLong),
        Some(n) if n > MAX_REQUEST_LINE => Err(HeadError::UriTooLong),
        _ if buf.len() > MAX_HEAD => Err(HeadError::HeadTooLarge),
        _ => Ok(()),
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses a complete head (request line, header fields, blank line), as
/// delimited by [`head_end`].
pub fn parse_head(head: &[u8]) -> Result<RequestHead, HeadError> {
    if head.len() > MAX_HEAD {
        return Err(HeadError::HeadTooLarge);
    }
    let text = std::str::from_utf8(head).map_err(|_| HeadError::Malformed("not UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let line = lines.next().ok_or(HeadError::Malformed("empty"))?;
    if line.len() > MAX_REQUEST_LINE {
        return Err(HeadError::UriTooLong);
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed(
            "the request line is not METHOD TARGET VERSION",
        ));
    };
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(HeadError::Malformed("bad method"));
    }
    match version {
        "HTTP/1.1" | "HTTP/1.0" => {}
        v if v.starts_with("HTTP/") && v.len() == 8 => return Err(HeadError::Version),
        _ => return Err(HeadError::Malformed("bad HTTP version")),
    }
    if !target.starts_with('/') || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HeadError::Malformed(
            "the request target is not an absolute path",
        ));
    }
    let mut headers = 0;
    for field in lines {
        if field.is_empty() {
            break;
        }
        headers += 1;
        if headers > MAX_HEADERS {
            return Err(HeadError::HeadTooLarge);
        }
        let (name, value) = field
            .split_once(':')
            .ok_or(HeadError::Malformed("a header field without ':'"))?;
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(HeadError::Malformed("bad header field name"));
        }
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(HeadError::Malformed("control characters in a header field"));
        }
    }
    let method_kind = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => Method::Other,
    };
    Ok(RequestHead {
        method: method_kind,
        method_name: method.to_string(),
        target: target.to_string(),
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_get_with_headers_parses() {
        let raw = b"GET /vcek/v1/Milan/cert_chain HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
        assert_eq!(head_end(raw), Some(raw.len()));
        let head = parse_head(raw).unwrap();
        assert_eq!(head.method, Method::Get);
        assert_eq!(head.target, "/vcek/v1/Milan/cert_chain");
        assert_eq!(head.headers, 2);
        let bare = b"HEAD /crl HTTP/1.0\n\nbody";
        assert_eq!(head_end(bare), Some(bare.len() - 4));
        assert_eq!(parse_head(bare).unwrap().method, Method::Head);
        assert_eq!(
            parse_head(b"DELETE / HTTP/1.1\r\n\r\n").unwrap().method,
            Method::Other
        );
    }

    #[test]
    fn bad_heads_are_refused_with_their_status() {
        let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_REQUEST_LINE));
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "A: b\r\n".repeat(MAX_HEADERS + 1)
        );
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (long_line.into_bytes(), 414),
            (many.into_bytes(), 431),
            (b"GET / HTTP/2.0\r\n\r\n".to_vec(), 505),
            (b"GET / FTP/1.1\r\n\r\n".to_vec(), 400),
            (b"GET  / HTTP/1.1\r\n\r\n".to_vec(), 400),
            (b"GET http://x/ HTTP/1.1\r\n\r\n".to_vec(), 400),
            (b"G(T / HTTP/1.1\r\n\r\n".to_vec(), 400),
            (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n".to_vec(), 400),
            (b"GET / HTTP/1.1\r\nA\x01: b\r\n\r\n".to_vec(), 400),
            (b"GET /\xff HTTP/1.1\r\n\r\n".to_vec(), 400),
        ];
        for (raw, status) in cases {
            let err = parse_head(&raw).expect_err(&String::from_utf8_lossy(&raw));
            assert_eq!(err.status(), status, "{err}");
        }
    }

    #[test]
    fn partial_heads_are_cut_off_at_the_limits() {
        assert_eq!(check_partial(b"GET /abc"), Ok(()));
        assert_eq!(
            check_partial(&vec![b'a'; MAX_REQUEST_LINE + 1]),
            Err(HeadError::UriTooLong)
        );
        let mut big = b"GET / HTTP/1.1\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        assert_eq!(check_partial(&big), Err(HeadError::HeadTooLarge));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }
}
