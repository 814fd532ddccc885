//! Export-file lines and log entries read by the offline verifier.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_core::audit::export::ExportLine;
use mandate_core::audit::merkle::leaf_hash;
use mandate_core::audit::verify::{LogVerifier, StoredEntry};

fuzz_target!(|s: &str| {
    let _ = serde_json::from_str::<ExportLine>(s);
    let mut v = LogVerifier::new("fuzz/log", &[], &[], None).unwrap();
    let _ = v.push(StoredEntry { index: 0, leaf_hash: leaf_hash(s.as_bytes()), entry: s.to_owned() });
});
