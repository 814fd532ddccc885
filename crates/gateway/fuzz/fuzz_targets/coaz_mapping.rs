//! A declared COAZ mapping (`x-authzen-mapping`, written by an MCP server)
//! is parsed and resolved without panicking, whatever it is. The same input
//! space is covered in the normal suite by `coaz::tests::the_parser_and_resolver_take_any_json`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_gateway::coaz::{self, Anchors, Inputs, Mapping};
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let params = json!({ "name": "t", "arguments": { "x": 1, "agent": "agent-B" } });
    let token = json!({ "sub": "alice", "client_id": "agent-A", "aud": "https://gw.example/mcp" });
    let inputs = Inputs { params: &params, token: &token, server: Some("https://gw.example/mcp") };
    if let Ok(m) = Mapping::parse(&v)
        && let Ok(req) = coaz::build(&m, inputs, &Anchors::default())
    {
        assert!(!req.decisions().is_empty());
        for d in req.decisions() {
            assert_eq!(d.subject.id, "alice");
            assert_eq!(d.context.get("agent"), Some(&json!("agent-A")));
        }
    }
});
