//! A gateway configuration file: parsing never panics, and an accepted one
//! maps every tool it names. Mirrored by the config unit tests.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_gateway::GatewayConfig;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(c) = GatewayConfig::parse(text)
    {
        for m in &c.mcp {
            for t in &m.tools {
                assert!(c.mcp_tool(&t.name).is_some());
            }
        }
    }
});
