//! Error reporting shared by the tools.

use std::fmt::Write as _;

/// An error and its sources on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let _ = write!(s, ": {src}");
        cur = src.source();
    }
    s
}
