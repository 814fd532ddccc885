//! What an agent sends the gateway: an MCP message body and a proxied path.
//! The message check and the mappings never panic; a mapped resource never
//! leaves its template's pattern, never carries a wildcard, and a mapped
//! path never has an empty, `.` or `..` segment. Mirrored by the proptests
//! in src/mapping.rs and src/message.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_gateway::mapping::{ResourceTemplate, path_resource};
use mandate_gateway::message;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if message::check(&v).is_ok() {
            assert_eq!(v["jsonrpc"], "2.0");
        }
        if let Some(args) = v.get("params").and_then(|p| p.get("arguments")).and_then(|a| a.as_object()) {
            let t = ResourceTemplate::parse("erp:suppliers/{id}/lines/{line}").unwrap();
            if let Ok(r) = t.render(args) {
                assert!(t.pattern().matches(&r) && !r.contains('*'));
            }
        }
    }
    if let Ok(path) = std::str::from_utf8(data)
        && let Ok(r) = path_resource(path)
    {
        assert!(r.is_empty() || r.split('/').all(|s| !s.is_empty() && s != "." && s != ".."));
        assert!(!r.contains('%') && !r.contains('*'));
    }
});
