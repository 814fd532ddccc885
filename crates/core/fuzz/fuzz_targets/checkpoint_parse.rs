//! Fuzzes the signed-checkpoint parser, which reads untrusted notes from
//! logs, witnesses and exported files: it must never panic, and anything it
//! accepts must parse back to the same value from its own `note`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_core::audit::checkpoint::SignedCheckpoint;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = SignedCheckpoint::parse(text) {
        assert_eq!(parsed.note, text);
        let reparsed = SignedCheckpoint::parse(&parsed.note).expect("accepted note must re-parse");
        assert_eq!(reparsed, parsed);
    }
});
