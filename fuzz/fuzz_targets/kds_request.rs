//! The emulated key server's request reading: `sev_tools::kds::http`'s
//! head delimiting, limit checks and parser, then `KdsRequest::parse` on the
//! target it yields.
//!
//! Properties: no panic; a head the parser accepts is within the limits and
//! its target starts with `/`; every refusal maps to a 4xx/5xx status; a
//! target that parses as a KDS request formats to a canonical form that
//! parses back to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sev_proto::snp::kds::KdsRequest;
use sev_tools::kds::http::{check_partial, head_end, parse_head, MAX_HEAD};
use sev_tools::kds::server::url_error_status;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = check_partial(data) {
        assert!((400..600).contains(&e.status()));
    }
    let end = head_end(data);
    if let Some(n) = end {
        assert!(n <= data.len());
    }
    let head = &data[..end.unwrap_or(data.len())];
    let parsed = match parse_head(head) {
        Ok(h) => h,
        Err(e) => {
            assert!((400..600).contains(&e.status()));
            return;
        }
    };
    assert!(head.len() <= MAX_HEAD);
    assert!(parsed.target.starts_with('/'));
    match KdsRequest::parse(&parsed.target) {
        Ok(req) => {
            let canonical = req.path_and_query();
            assert_eq!(KdsRequest::parse(&canonical).as_ref(), Ok(&req));
        }
        Err(e) => assert!((400..500).contains(&url_error_status(&e))),
    }
});
