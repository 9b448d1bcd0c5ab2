//! `sevm_qmp::command::parse_request` / `parse_request_in`: one JSON text to a
//! typed command.
//!
//! Properties: no panic at any protocol stage; an accepted request is a JSON
//! object whose `execute` member names the parsed command and whose `id` is
//! echoed; at negotiation only `qmp_capabilities` is accepted; the error
//! reply for a refused request serialises to one line of JSON that the
//! framer reads back as exactly one message carrying the same error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sevm_qmp::framing::{Frame, JsonFramer};
use sevm_qmp::response::{error, to_wire};
use sevm_qmp::{parse_request, parse_request_in, QmpCommand, Stage};

fuzz_target!(|data: &[u8]| {
    assert_eq!(
        parse_request(data),
        parse_request_in(data, Stage::Command { oob: false })
    );
    for stage in [
        Stage::Negotiation,
        Stage::Command { oob: false },
        Stage::Command { oob: true },
    ] {
        match parse_request_in(data, stage) {
            Ok(req) => {
                let Ok(Value::Object(dict)) = serde_json::from_slice::<Value>(data) else {
                    panic!("accepted a request that is not a JSON object");
                };
                let name = dict.get("execute").and_then(Value::as_str);
                assert_eq!(name, Some(req.command.name()), "command name");
                assert_eq!(req.id.as_ref(), dict.get("id"), "id not echoed");
                assert!(!req.oob, "OOB commands are not supported");
                if stage == Stage::Negotiation {
                    assert!(matches!(req.command, QmpCommand::QmpCapabilities { .. }));
                }
            }
            Err(e) => {
                let wire = to_wire(&error(&e.error, e.id.clone()));
                assert_eq!(wire.last(), Some(&b'\n'));
                assert_eq!(
                    wire.iter().filter(|&&b| b == b'\n').count(),
                    1,
                    "reply is not one line"
                );
                let mut framer = JsonFramer::new();
                let frames = framer.push(&wire);
                let [Frame::Message(msg)] = &frames[..] else {
                    panic!("reply does not frame as one message: {frames:?}");
                };
                let reply: Value = serde_json::from_slice(msg).expect("reply is JSON");
                assert_eq!(reply.get("error"), Some(&e.error.to_json()));
            }
        }
    }
});
