//! What the gateway accepts as an MCP message before the MCP server reads
//! it: one JSON-RPC 2.0 object. Anything else is answered with a JSON-RPC
//! error and never reaches an upstream.

use serde_json::Value;

/// A single JSON-RPC 2.0 request, notification or response (MCP sends no batches).
pub fn check(m: &Value) -> Result<(), &'static str> {
    let Some(o) = m.as_object() else {
        return Err("a message is one JSON object (batches are not part of MCP)");
    };
    if o.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err("\"jsonrpc\" must be \"2.0\"");
    }
    match (
        o.get("method"),
        o.contains_key("result") || o.contains_key("error"),
    ) {
        (Some(Value::String(_)), false) => Ok(()),
        (None, true) if o.contains_key("id") => Ok(()),
        (Some(_), false) => Err("\"method\" must be a string"),
        _ => Err("a message has a \"method\", or an \"id\" with a \"result\" or an \"error\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn requests_notifications_and_responses_pass_and_nothing_else() {
        for ok in [
            json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }),
            json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }),
            json!({ "jsonrpc": "2.0", "id": 1, "result": {} }),
            json!({ "jsonrpc": "2.0", "id": 1, "error": { "code": 1, "message": "x" } }),
        ] {
            assert!(check(&ok).is_ok(), "{ok}");
        }
        for bad in [
            json!([]),
            json!("tools/list"),
            json!({ "id": 1, "method": "tools/list" }),
            json!({ "jsonrpc": 2.0, "id": 1, "method": "tools/list" }),
            json!({ "jsonrpc": "2.0", "id": 1, "method": "x", "result": {} }),
            json!({ "jsonrpc": "2.0", "result": {} }),
        ] {
            assert!(check(&bad).is_err(), "{bad}");
        }
    }

    proptest! {
        /// Whatever arrives, the check answers, and it never passes a
        /// message without `"jsonrpc": "2.0"`.
        #[test]
        fn the_check_never_panics_or_passes_a_non_2_0_message(text in ".{0,64}") {
            if let Ok(v) = serde_json::from_str::<Value>(&text)
                && check(&v).is_ok()
            {
                prop_assert_eq!(v["jsonrpc"].as_str(), Some("2.0"));
            }
        }
    }
}
