//! The profile's default mapping for every MCP method, and its pass-through
//! set, written as the profile writes them and parsed like any declared
//! mapping. Every default shares one subject (`$token.sub`, read as the
//! deployment's subject-identity claim by [`super::anchor`]) and the agent in
//! `context.agent`; the action is the method's name and the resource what
//! the method targets: the server itself (`$token.aud`), a tool, a resource
//! URI, a prompt or a task.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::{Value, json};

use super::template::Mapping;

/// Methods the PEP lets through without a decision: `ping` and every
/// notification.
pub fn passes_through(method: &str) -> bool {
    method == "ping" || method.starts_with("notifications/")
}

/// Every method the profile maps.
pub const METHODS: &[&str] = &[
    "initialize",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/result",
    "tasks/cancel",
    "tasks/list",
];

/// The default mapping of `method` as JSON, in the profile's own terms.
pub fn text(method: &str) -> Option<Value> {
    let server = json!({ "type": "mcp_server", "id": "$token.aud" });
    let mut context = json!({ "agent": "$token.?client_id" });
    let resource = match method {
        "initialize" => {
            context["protocol_version"] = json!("$params.protocolVersion");
            server
        }
        "logging/setLevel" => {
            context["level"] = json!("$params.level");
            server
        }
        "tools/list" | "resources/list" | "prompts/list" | "tasks/list" => server,
        "tools/call" => json!({ "type": "tool", "id": "$params.name" }),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            json!({ "type": "resource", "id": "$params.uri" })
        }
        "prompts/get" => json!({ "type": "prompt", "id": "$params.name" }),
        // The profile writes `$params.ref.name` inside this expression; only
        // the leading `$` marks an expression, the rest is CEL.
        "completion/complete" => json!({
            "type": "$params.ref.type == 'ref/prompt' ? 'prompt' : 'resource'",
            "id": "$params.ref.type == 'ref/prompt' ? params.ref.name : params.ref.uri",
        }),
        "tasks/get" | "tasks/result" | "tasks/cancel" => {
            json!({ "type": "task", "id": "$params.taskId" })
        }
        _ => return None,
    };
    Some(json!({ "evaluation": {
        "subject": { "type": "identity", "id": "$token.sub" },
        "context": context,
        "action": { "name": method },
        "resource": resource,
    }}))
}

static DEFAULTS: LazyLock<BTreeMap<&'static str, Mapping>> = LazyLock::new(|| {
    METHODS
        .iter()
        .map(|m| {
            let text = text(m).expect("every listed method has a default");
            let parsed = Mapping::parse(&text)
                .expect("the profile's default mappings parse")
                .with_server_identity();
            (*m, parsed)
        })
        .collect()
});

/// The default mapping of `method`, or `None` for a method the profile does
/// not map (which is then denied).
pub fn mapping(method: &str) -> Option<&'static Mapping> {
    DEFAULTS.get(method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_has_a_default_and_nothing_else_does() {
        for m in METHODS {
            assert!(mapping(m).is_some(), "{m}");
            assert!(!passes_through(m), "{m}");
        }
        // Not in the profile's table (nor its pass-through set): denied.
        for m in [
            "resources/templates/list",
            "sampling/createMessage",
            "elicitation/create",
            "roots/list",
            "tools/delete",
            "",
        ] {
            assert!(mapping(m).is_none(), "{m}");
        }
        assert!(passes_through("ping"));
        assert!(passes_through("notifications/initialized"));
    }
}
