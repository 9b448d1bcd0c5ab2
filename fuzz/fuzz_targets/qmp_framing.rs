//! `sevm_qmp::framing::JsonFramer` (splitting the QMP byte stream), feeding every
//! frame to `sevm_qmp::command::parse_request_in` as the server does.
//!
//! Properties: no panic; the frames do not depend on how the stream is cut
//! into reads (all at once, byte by byte, or in chunks sized by the input);
//! no message exceeds `MAX_MESSAGE_SIZE`, none is empty or starts with
//! whitespace; parsing any frame at any protocol stage never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sevm_qmp::framing::{Frame, JsonFramer, MAX_MESSAGE_SIZE};
use sevm_qmp::{parse_request_in, Stage};

fn frames_in_chunks<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> Vec<Frame> {
    let mut framer = JsonFramer::new();
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend(framer.push(chunk));
    }
    out.extend(framer.finish());
    out
}

fuzz_target!(|data: &[u8]| {
    let whole = frames_in_chunks(std::iter::once(data));
    let bytewise = frames_in_chunks(data.chunks(1));
    assert_eq!(
        whole, bytewise,
        "frames depend on read boundaries (bytewise)"
    );

    // Chunk sizes 1..=16 taken from the input itself.
    let mut chunks = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let size = usize::from(data[i % data.len()] % 16) + 1;
        let (head, tail) = rest.split_at(size.min(rest.len()));
        chunks.push(head);
        rest = tail;
        i += 1;
    }
    let chunked = frames_in_chunks(chunks.into_iter());
    assert_eq!(whole, chunked, "frames depend on read boundaries (chunked)");

    for frame in &whole {
        let Frame::Message(msg) = frame else {
            continue;
        };
        assert!(msg.len() <= MAX_MESSAGE_SIZE, "oversized message");
        assert!(!msg.is_empty(), "empty message");
        assert!(
            !msg[0].is_ascii_whitespace(),
            "message starts with whitespace"
        );
        for stage in [
            Stage::Negotiation,
            Stage::Command { oob: false },
            Stage::Command { oob: true },
        ] {
            let _ = parse_request_in(msg, stage);
        }
    }
});
