//! Calls an agent made through the gateway, as the audit log records them.
//!
//! The decision that admitted or refused a call is its own audit entry; this
//! record follows it with what became of the call: forwarded or not, the
//! upstream's answer and how long it took. Arguments and results are kept
//! only when the gateway's configuration asks for them, and never a secret
//! the gateway injected.

use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, DecisionId, TaskId};

/// How the agent reached the tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// An MCP `tools/call`.
    Mcp,
    /// A request through the HTTP tool proxy.
    Http,
}

/// What became of the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CallStatus {
    /// Not forwarded: the decision was deny or needs_approval.
    Refused,
    /// Forwarded, and the upstream answered (an HTTP status; for MCP, 200,
    /// with `tool_error` when the tool reported an error result).
    Answered {
        status: u16,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        tool_error: bool,
    },
    /// Forwarded, and the upstream could not be reached or did not answer.
    Unreachable { error: String },
}

/// One call through the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    pub decision: DecisionId,
    pub task: TaskId,
    pub agent: AgentId,
    pub channel: Channel,
    /// The configured upstream's name.
    pub upstream: String,
    /// The tool's name, or `METHOD /path` for the HTTP proxy.
    pub target: String,
    pub status: CallStatus,
    /// From the decision's start to the upstream's answer, in microseconds.
    pub duration_us: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub arguments: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub result: Option<serde_json::Value>,
}
