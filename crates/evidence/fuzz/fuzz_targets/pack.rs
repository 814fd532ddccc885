//! An evidence pack as an auditor receives it (from anyone): verification
//! never panics, always reports every check, and never passes input that
//! does not carry the pack's signatures. Mirrored by the proptests in
//! tests/props.rs; seed the corpus with a real pack for deeper coverage.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_evidence::verify::{CHECKS, verify};

fuzz_target!(|data: &[u8]| {
    let v = verify(data, None);
    assert_eq!(v.checks.len(), CHECKS.len());
    if v.passed() {
        // Only a well-formed, self-signed pack can pass unpinned; its
        // summary must then be complete.
        let s = v.summary.expect("a passing pack has a summary");
        assert!(!s.pinned);
        assert!(s.log_key.is_some());
    }
});
