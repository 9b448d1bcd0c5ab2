//! Splitting a QMP byte stream into JSON texts.
//!
//! QMP has no framing: clients write JSON objects back to back, with or
//! without newlines (`qemu.qmp` sends none). QEMU's json-streamer counts
//! braces and brackets outside strings and hands a complete top-level value
//! to the parser. This does the same, with bounds:
//!
//! * a value larger than [`MAX_MESSAGE_SIZE`] is answered with one error and
//!   the rest of it is skipped (its structure is still tracked, so the next
//!   request is found correctly);
//! * nesting deeper than [`MAX_NESTING`] likewise (QEMU's limit);
//! * a byte that cannot start a JSON value at top level is reported as
//!   QEMU does ("JSON parse error, stray '@'") and skipped.
//!
//! Inside a value, bytes are collected as they come; the JSON parser then
//! reports what is wrong with the whole value.

use crate::error::QmpError;

/// The largest JSON text accepted (64 KiB). QEMU's own limit is 64 MiB;
/// sevm's largest legitimate request (a launch secret) is a few KiB.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// Deepest `{`/`[` nesting accepted (QEMU's `MAX_NESTING`).
pub const MAX_NESTING: usize = 1024;

/// One unit of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete top-level JSON text (not yet parsed).
    Message(Vec<u8>),
    /// Input that cannot be a request; reply with this error.
    Error(QmpError),
}

/// Streaming splitter; feed it bytes with [`JsonFramer::push`].
#[derive(Debug, Default)]
pub struct JsonFramer {
    buf: Vec<u8>,
    /// A value is in progress (collected, or skipped if `discard`).
    active: bool,
    /// The value in progress is a top-level number/keyword.
    scalar: bool,
    in_string: bool,
    escape: bool,
    depth: usize,
    /// Too large or too deep: track the structure but keep nothing.
    discard: bool,
}

fn is_scalar_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn describe_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        char::from(b).to_string()
    } else {
        format!("\\x{b:02x}")
    }
}

impl JsonFramer {
    /// A splitter with nothing buffered.
    pub fn new() -> Self {
        JsonFramer::default()
    }

    /// Feeds `input`, returning the frames it completes (in order).
    pub fn push(&mut self, input: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        for &b in input {
            self.byte(b, &mut out);
        }
        out
    }

    /// End of input: returns a pending top-level scalar (`42` with no
    /// delimiter after it). An unfinished object is dropped, as QEMU drops
    /// a partial request when the client disconnects.
    pub fn finish(&mut self) -> Option<Frame> {
        let frame = (self.active && self.scalar && !self.discard)
            .then(|| Frame::Message(std::mem::take(&mut self.buf)));
        self.reset();
        frame
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.active = false;
        self.scalar = false;
        self.in_string = false;
        self.escape = false;
        self.depth = 0;
        self.discard = false;
    }

    fn complete(&mut self, out: &mut Vec<Frame>) {
        if !self.discard {
            out.push(Frame::Message(std::mem::take(&mut self.buf)));
        }
        self.reset();
    }

    /// Appends `b` to the value in progress, switching to discard mode
    /// (with one error) when the value grows too large.
    fn keep(&mut self, b: u8, out: &mut Vec<Frame>) {
        if self.discard {
            return;
        }
        if self.buf.len() >= MAX_MESSAGE_SIZE {
            out.push(Frame::Error(QmpError::generic(format!(
                "JSON parse error, message exceeds the limit of {MAX_MESSAGE_SIZE} bytes"
            ))));
            self.buf = Vec::new();
            self.discard = true;
            return;
        }
        self.buf.push(b);
    }

    fn byte(&mut self, b: u8, out: &mut Vec<Frame>) {
        if !self.active {
            self.start(b, out);
            return;
        }
        if self.scalar {
            if is_scalar_byte(b) {
                self.keep(b, out);
            } else {
                self.complete(out);
                self.start(b, out);
            }
            return;
        }
        self.keep(b, out);
        if self.in_string {
            if self.escape {
                self.escape = false;
            } else if b == b'\\' {
                self.escape = true;
            } else if b == b'"' {
                self.in_string = false;
                if self.depth == 0 {
                    self.complete(out);
                }
            }
            return;
        }
        match b {
            b'"' => self.in_string = true,
            b'{' | b'[' => {
                self.depth += 1;
                if self.depth > MAX_NESTING && !self.discard {
                    out.push(Frame::Error(QmpError::generic(
                        "JSON nesting depth limit exceeded",
                    )));
                    self.buf = Vec::new();
                    self.discard = true;
                }
            }
            b'}' | b']' => {
                self.depth = self.depth.saturating_sub(1);
                if self.depth == 0 {
                    self.complete(out);
                }
            }
            _ => {}
        }
    }

    /// A byte outside any value.
    fn start(&mut self, b: u8, out: &mut Vec<Frame>) {
        if is_whitespace(b) {
            return;
        }
        match b {
            b'{' | b'[' => {
                self.active = true;
                self.depth = 1;
                self.buf.push(b);
            }
            b'"' => {
                self.active = true;
                self.in_string = true;
                self.buf.push(b);
            }
            b'}' | b']' | b',' | b':' => out.push(Frame::Error(QmpError::generic(
                "JSON parse error, expecting value",
            ))),
            b if is_scalar_byte(b) => {
                self.active = true;
                self.scalar = true;
                self.buf.push(b);
            }
            b => out.push(Frame::Error(QmpError::generic(format!(
                "JSON parse error, stray '{}'",
                describe_byte(b)
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(frames: &[Frame]) -> Vec<String> {
        frames
            .iter()
            .map(|f| match f {
                Frame::Message(m) => String::from_utf8_lossy(m).into_owned(),
                Frame::Error(e) => format!("ERR {}", e.desc),
            })
            .collect()
    }

    #[test]
    fn back_to_back_objects_without_newlines() {
        let mut f = JsonFramer::new();
        let frames = f.push(br#"{"execute":"a"}{"execute":"b"} [1,[2]]  "s\"}" 42 "#);
        assert_eq!(
            msgs(&frames),
            vec![
                r#"{"execute":"a"}"#,
                r#"{"execute":"b"}"#,
                "[1,[2]]",
                r#""s\"}""#,
                "42"
            ]
        );
        assert_eq!(f.finish(), None);
    }

    #[test]
    fn split_across_reads_and_braces_in_strings() {
        let input = br#"{"execute": "x", "arguments": {"s": "}{\\\"[", "n": [1, {"a": 2}]}}"#;
        for chunk in 1..input.len() {
            let mut f = JsonFramer::new();
            let mut frames = Vec::new();
            for c in input.chunks(chunk) {
                frames.extend(f.push(c));
            }
            assert_eq!(
                frames,
                vec![Frame::Message(input.to_vec())],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn scalar_at_end_of_input_is_flushed_partial_object_dropped() {
        let mut f = JsonFramer::new();
        assert!(f.push(b"true").is_empty());
        assert_eq!(f.finish(), Some(Frame::Message(b"true".to_vec())));
        assert!(f.push(br#"{"execute":"#).is_empty());
        assert_eq!(f.finish(), None);
        // The framer is reusable after finish().
        assert_eq!(msgs(&f.push(b"{}")), vec!["{}"]);
    }

    #[test]
    fn stray_bytes_and_closers_are_errors_then_recovery() {
        let mut f = JsonFramer::new();
        let frames = f.push(b"@\xff}{\"execute\":\"x\"}");
        assert_eq!(
            msgs(&frames),
            vec![
                "ERR JSON parse error, stray '@'",
                "ERR JSON parse error, stray '\\xff'",
                "ERR JSON parse error, expecting value",
                r#"{"execute":"x"}"#
            ]
        );
    }

    #[test]
    fn oversized_object_gives_one_error_and_is_skipped() {
        let mut f = JsonFramer::new();
        let mut big = br#"{"execute":"x","arguments":{"s":""#.to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_MESSAGE_SIZE * 2));
        big.extend(br#"}"}}"#); // a '}' inside the string must not end it
        big.extend(br#"{"execute":"after"}"#);
        let mut frames = Vec::new();
        for c in big.chunks(4096) {
            frames.extend(f.push(c));
        }
        assert_eq!(
            msgs(&frames),
            vec![
                format!(
                    "ERR JSON parse error, message exceeds the limit of {MAX_MESSAGE_SIZE} bytes"
                ),
                r#"{"execute":"after"}"#.to_string()
            ]
        );
    }

    #[test]
    fn exactly_max_size_is_accepted() {
        let mut f = JsonFramer::new();
        let mut m = b"\"".to_vec();
        m.extend(std::iter::repeat_n(b'a', MAX_MESSAGE_SIZE - 2));
        m.push(b'"');
        assert_eq!(f.push(&m), vec![Frame::Message(m.clone())]);
        // One more byte is too many.
        let mut m2 = b"\"".to_vec();
        m2.extend(std::iter::repeat_n(b'a', MAX_MESSAGE_SIZE - 1));
        m2.push(b'"');
        assert!(matches!(f.push(&m2).as_slice(), [Frame::Error(_)]));
    }

    #[test]
    fn oversized_scalar_is_skipped() {
        let mut f = JsonFramer::new();
        let mut m = vec![b'1'; MAX_MESSAGE_SIZE + 10];
        m.extend(b" {}");
        let frames = f.push(&m);
        assert_eq!(frames.len(), 2);
        assert!(matches!(frames[0], Frame::Error(_)));
        assert_eq!(frames[1], Frame::Message(b"{}".to_vec()));
    }

    #[test]
    fn nesting_limit() {
        let mut f = JsonFramer::new();
        let mut m = vec![b'['; MAX_NESTING + 1];
        m.extend(vec![b']'; MAX_NESTING + 1]);
        m.extend(b"[]");
        assert_eq!(
            msgs(&f.push(&m)),
            vec!["ERR JSON nesting depth limit exceeded", "[]"]
        );
        let mut ok = vec![b'['; MAX_NESTING];
        ok.extend(vec![b']'; MAX_NESTING]);
        assert_eq!(f.push(&ok), vec![Frame::Message(ok.clone())]);
    }
}
