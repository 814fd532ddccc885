//! The AuthZEN request a mapping built: checked against AuthZEN 1.0 with
//! Mandate's own request types (the server's `/access/v1/evaluation(s)`
//! types), kept as the exact JSON body to send, and split into the
//! decisions it asks for under AuthZEN's default/override rule.

use mandate_server::routes::decisions::{
    EvaluationItem, EvaluationRequest, EvaluationsRequest, Semantic, merged,
};
use serde::Serialize;
use serde_json::{Map, Value};

use super::{MappingError, bad};

/// Which AuthZEN API a mapping calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Envelope {
    /// Access Evaluation (`/access/v1/evaluation`): one decision.
    Evaluation,
    /// Access Evaluations (`/access/v1/evaluations`): one per entry.
    Evaluations,
}

impl Envelope {
    /// The API's path on a PDP.
    pub fn path(self) -> &'static str {
        match self {
            Envelope::Evaluation => "/access/v1/evaluation",
            Envelope::Evaluations => "/access/v1/evaluations",
        }
    }
}

/// A built, anchored, valid AuthZEN request.
#[derive(Debug, Clone)]
pub struct AuthzRequest {
    envelope: Envelope,
    body: Map<String, Value>,
    decisions: Vec<EvaluationRequest>,
    /// `options.evaluations_semantic` (`execute_all` when not set, and for
    /// a single evaluation).
    semantic: Semantic,
}

/// The members AuthZEN allows in each object; custom attributes go under
/// `properties` (`context` is free-form).
const ENTITY_MEMBERS: &[&str] = &["type", "id", "properties"];
const ACTION_MEMBERS: &[&str] = &["name", "properties"];

fn shape(v: &Value, what: &str, members: &[&str]) -> Result<(), MappingError> {
    let Some(o) = v.as_object() else {
        return Err(bad(format!("{what} resolved to {v}, not an object")));
    };
    if let Some(k) = o.keys().find(|k| !members.contains(&k.as_str())) {
        return Err(bad(format!(
            "{what} has a member {k:?}; custom attributes go under {what}.properties"
        )));
    }
    for k in ["type", "id", "name"] {
        match o.get(k) {
            Some(Value::String(s)) if s.is_empty() => {
                return Err(bad(format!("{what}.{k} is empty")));
            }
            Some(Value::String(_)) | None => {}
            Some(other) => {
                return Err(bad(format!("{what}.{k} resolved to {other}, not a string")));
            }
        }
    }
    if let Some(p) = o.get("properties")
        && !p.is_object()
    {
        return Err(bad(format!(
            "{what}.properties resolved to {p}, not an object"
        )));
    }
    Ok(())
}

/// Checks the members of one request or entry that are present.
fn members(o: &Map<String, Value>, at: &str) -> Result<(), MappingError> {
    for (k, allowed) in [
        ("subject", ENTITY_MEMBERS),
        ("resource", ENTITY_MEMBERS),
        ("action", ACTION_MEMBERS),
    ] {
        match o.get(k) {
            None => {}
            Some(Value::Null) => {
                return Err(bad(format!("{at}{k} is required but resolved to null")));
            }
            Some(v) => shape(v, &format!("{at}{k}"), allowed)?,
        }
    }
    if let Some(c) = o.get("context")
        && !c.is_object()
    {
        return Err(bad(format!("{at}context resolved to {c}, not an object")));
    }
    Ok(())
}

fn typed<T: serde::de::DeserializeOwned>(
    body: &Map<String, Value>,
    what: &str,
) -> Result<T, MappingError> {
    serde_json::from_value(Value::Object(body.clone()))
        .map_err(|e| bad(format!("the request is not an AuthZEN {what} request: {e}")))
}

impl AuthzRequest {
    /// Checks `body` is a valid request for `envelope`.
    pub fn new(envelope: Envelope, body: Map<String, Value>) -> Result<Self, MappingError> {
        members(&body, "")?;
        let mut semantic = Semantic::ExecuteAll;
        let decisions = match envelope {
            Envelope::Evaluation => {
                for k in ["subject", "action", "resource"] {
                    if !body.contains_key(k) {
                        return Err(bad(format!(
                            "{k} is required but the mapping left it absent"
                        )));
                    }
                }
                vec![typed::<EvaluationRequest>(&body, "evaluation")?]
            }
            Envelope::Evaluations => {
                let Some(Value::Array(entries)) = body.get("evaluations") else {
                    return Err(bad("`evaluations` did not resolve to an array"));
                };
                for (i, e) in entries.iter().enumerate() {
                    let Some(e) = e.as_object() else {
                        return Err(bad(format!(
                            "evaluations[{i}] did not resolve to an object"
                        )));
                    };
                    members(e, &format!("evaluations[{i}]."))?;
                }
                let top: EvaluationsRequest = typed(&body, "evaluations")?;
                semantic = top.options.evaluations_semantic;
                top.evaluations
                    .iter()
                    .enumerate()
                    .map(|(i, item): (usize, &EvaluationItem)| {
                        merged(&top, item, i).map_err(|p| bad(p.detail))
                    })
                    .collect::<Result<_, _>>()?
            }
        };
        Ok(AuthzRequest {
            envelope,
            body,
            decisions,
            semantic,
        })
    }

    pub fn envelope(&self) -> Envelope {
        self.envelope
    }

    /// The request body exactly as it goes to an AuthZEN decision point.
    pub fn body(&self) -> &Map<String, Value> {
        &self.body
    }

    /// Each decision asked for, with the top-level defaults applied (one for
    /// `evaluation`, one per entry for `evaluations`).
    pub fn decisions(&self) -> &[EvaluationRequest] {
        &self.decisions
    }

    /// How the decisions add up (AuthZEN's `evaluations_semantic`).
    pub fn semantic(&self) -> Semantic {
        self.semantic
    }
}
