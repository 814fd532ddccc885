//! Trust anchoring: the two identities of a request come from the validated
//! token, never from the mapping (written by the MCP server) or the
//! arguments (written by the caller).
//!
//! - `subject.id` is the subject-identity claim (`sub` by default; for
//!   Mandate task tokens, `sub` is the human who initiated the task). A
//!   mapping that leaves it out gets it; one that resolves it to anything
//!   else is a mapping error. This takes the strict reading of the
//!   draft: the draft's edge case of a mapping overriding `subject.id` from
//!   another source is refused too. A token without the claim cannot be
//!   anchored, and `subject` is required, so that is a mapping error.
//! - `context.agent` is the agent-identity claim (`client_id` by default;
//!   for Mandate task tokens, the acting agent's SPIFFE id), checked over the
//!   *effective* context of every decision: under AuthZEN's default/override
//!   rule an `evaluations` entry with its own `context` replaces the
//!   top-level one, so such an entry is anchored on its own. A mapping that
//!   omits the field gets it (a missing context object is created, once, at
//!   the level it belongs to); one that sets it to anything else is a mapping
//!   error; without the claim the field is removed wherever it was set, and
//!   no context object is made up just to remove it.

use serde_json::{Map, Value, json};

use super::request::Envelope;
use super::{MappingError, bad};

/// Which token claims carry the two identities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchors {
    /// The subject-identity claim (the human on whose behalf the agent acts).
    pub subject_claim: String,
    /// The agent-identity claim (the acting agent).
    pub agent_claim: String,
}

impl Default for Anchors {
    /// The profile's defaults, which are also what Mandate task tokens carry:
    /// `sub` (the initiating human) and `client_id` (the agent's SPIFFE id).
    fn default() -> Self {
        Anchors {
            subject_claim: "sub".into(),
            agent_claim: "client_id".into(),
        }
    }
}

/// A value as the profile's messages quote it.
fn quoted(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{s}'"),
        other => other.to_string(),
    }
}

/// Anchors `body` (a resolved request of `envelope`) to `token`.
pub fn anchor(
    body: &mut Map<String, Value>,
    envelope: Envelope,
    token: &Value,
    anchors: &Anchors,
) -> Result<(), MappingError> {
    anchor_subject(body, token, &anchors.subject_claim)?;
    let trusted = token.get(&anchors.agent_claim).filter(|v| !v.is_null());
    match envelope {
        Envelope::Evaluation => anchor_context(body, trusted, "context"),
        Envelope::Evaluations => {
            let entries = match body.get_mut("evaluations") {
                Some(Value::Array(a)) => a,
                _ => return Err(bad("`evaluations` did not resolve to an array")),
            };
            // Entries without their own context share the top-level one.
            let mut shares_top = false;
            for (i, entry) in entries.iter_mut().enumerate() {
                let Some(entry) = entry.as_object_mut() else {
                    return Err(bad(format!(
                        "evaluations[{i}] did not resolve to an object"
                    )));
                };
                if entry.contains_key("subject") {
                    return Err(bad(format!(
                        "evaluations[{i}] sets `subject`; only the top-level subject may be set"
                    )));
                }
                if entry.contains_key("context") {
                    anchor_context(entry, trusted, &format!("evaluations[{i}].context"))?;
                } else {
                    shares_top = true;
                }
            }
            if shares_top || body.contains_key("context") {
                anchor_context(body, trusted, "context")?;
            }
            Ok(())
        }
    }
}

fn anchor_subject(
    body: &mut Map<String, Value>,
    token: &Value,
    claim: &str,
) -> Result<(), MappingError> {
    let id = match token.get(claim) {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(_) => {
            return Err(bad(format!(
                "the subject-identity claim {claim:?} is not a string"
            )));
        }
        None => {
            return Err(bad(format!(
                "the token has no subject-identity claim {claim:?}, so subject.id cannot be anchored"
            )));
        }
    };
    let subject = body.entry("subject").or_insert_with(|| json!({}));
    let Some(subject) = subject.as_object_mut() else {
        return Err(bad(format!("subject resolved to {subject}, not an object")));
    };
    match subject.get("id") {
        None => {
            subject.insert("id".into(), Value::String(id.clone()));
        }
        Some(Value::String(s)) if s == id => {}
        Some(other) => {
            return Err(bad(format!(
                "subject.id resolved to {} but the subject-identity claim is '{id}'",
                quoted(other)
            )));
        }
    }
    subject
        .entry("type")
        .or_insert_with(|| Value::String("identity".into()));
    Ok(())
}

/// Anchors the `context` member of `owner` (a request or an entry).
fn anchor_context(
    owner: &mut Map<String, Value>,
    trusted: Option<&Value>,
    at: &str,
) -> Result<(), MappingError> {
    match (owner.get_mut("context"), trusted) {
        (Some(Value::Object(ctx)), None) => {
            ctx.remove("agent");
        }
        (Some(Value::Object(ctx)), Some(agent)) => match ctx.get("agent") {
            None => {
                ctx.insert("agent".into(), agent.clone());
            }
            Some(v) if v == agent => {}
            Some(v) => {
                // The profile's wording (and its vectors'), wherever the
                // context sits.
                return Err(bad(format!(
                    "context.agent resolved to {} but the agent-identity claim is {}",
                    quoted(v),
                    quoted(agent)
                )));
            }
        },
        (Some(other), _) => {
            return Err(bad(format!("{at} resolved to {other}, not an object")));
        }
        (None, None) => {}
        (None, Some(agent)) => {
            owner.insert("context".into(), json!({ "agent": agent }));
        }
    }
    Ok(())
}
