//! One call through the gateway, whichever way it came: decided by the
//! pipeline before anything is forwarded, then recorded with what became of
//! it. Both the MCP side and the HTTP proxy go through here.

use std::time::Instant;

use mandate_core::tool_call::{CallStatus, Channel, ToolCall};
use mandate_server::decision::{self, Ask, Outcome};
use mandate_store::StoreError;

use crate::Gateway;
use crate::auth::Caller;

/// A call being handled: who, what, and since when.
pub(crate) struct Call<'a> {
    pub caller: &'a Caller,
    pub channel: Channel,
    pub upstream: String,
    pub target: String,
    pub started: Instant,
}

impl Call<'_> {
    /// Decides `ask` under the caller's task; the decision is in the audit
    /// log before this returns.
    pub async fn decide(&self, gw: &Gateway, ask: &Ask) -> Result<Outcome, StoreError> {
        decision::decide(&gw.app, &self.caller.0, ask, None, mandate_server::now()).await
    }

    /// Records what became of the call. A call whose record cannot be
    /// written fails: the agent does not get a result the log does not show.
    pub async fn finish(
        &self,
        gw: &Gateway,
        decided: &Outcome,
        status: CallStatus,
        arguments: Option<serde_json::Value>,
        result: Option<serde_json::Value>,
    ) -> Result<(), StoreError> {
        let task = &self.caller.0.task;
        let call = ToolCall {
            decision: decided.decision_id,
            task: task.id,
            agent: task.assignee,
            channel: self.channel,
            upstream: self.upstream.clone(),
            target: self.target.clone(),
            status,
            duration_us: u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            arguments,
            result,
        };
        let change = decision::acting(task, mandate_server::now(), None);
        gw.app.store.record_tool_call(&change, &call).await?;
        Ok(())
    }
}

/// The reasons of a refusal as one line for the agent.
pub(crate) fn refusal_message(out: &Outcome) -> String {
    let reasons: Vec<String> = out
        .reasons
        .iter()
        .map(|r| format!("{}: {}", r.code, r.message))
        .collect();
    format!(
        "{} by Mandate (decision {}): {}",
        match out.decision {
            mandate_core::decision::Verdict::NeedsApproval => "approval required",
            _ => "denied",
        },
        out.decision_id,
        reasons.join("; ")
    )
}
