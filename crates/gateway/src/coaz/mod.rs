//! The OpenID AuthZEN COAZ profile for MCP (draft 1, `authzen-coaz-mcp-binding-1_0`
//! on the COAZ framework): how one MCP request becomes an AuthZEN Access
//! Evaluation (or Evaluations) request, as pure functions of the request's
//! `params`, the validated token's claims and, for a tool whose server
//! declared one, its `x-authzen-mapping`.
//!
//! The pieces, each in its own module: [`template`] parses a mapping (the
//! `evaluation` / `evaluations` envelope, literals, `$` CEL expressions and
//! the `$$` escape) and resolves it; [`expr`] wraps the CEL evaluator (the
//! `cel` crate, with `.?` optional selection); [`defaults`] holds the
//! profile's default mapping for every MCP method and its pass-through set;
//! [`anchor`] pins `subject.id` and `context.agent` to the token's claims;
//! [`request`] checks the result is a valid AuthZEN request and splits it
//! into the decisions it asks for.
//!
//! A mapping is written by the MCP server, the party being authorized, and
//! arguments by the caller: nothing either of them says can change who the
//! subject is or which agent acts. Anything wrong is a [`MappingError`],
//! reported as JSON-RPC `-32602`, and no decision point is asked.

pub mod anchor;
pub mod defaults;
pub mod expr;
pub mod request;
pub mod template;

use serde_json::Value;

pub use anchor::Anchors;
pub use request::{AuthzRequest, Envelope};
pub use template::Mapping;

/// JSON-RPC code of a mapping error (the profile's "Invalid params").
pub const MAPPING_ERROR: i32 = -32602;
/// JSON-RPC code of an authorization denial.
pub const DENIED: i32 = -32001;
/// JSON-RPC code of a decision point that could not be reached or answered
/// nonsense ("Internal error").
pub const PDP_ERROR: i32 = -32603;

/// The member of a tool's `inputSchema` that carries its declared mapping.
pub const MAPPING_KEY: &str = "x-authzen-mapping";

/// Why no AuthZEN request could be built; the decision point is not asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("COAZ mapping error: {0}")]
pub struct MappingError(pub String);

impl MappingError {
    /// The failure alone, without the "COAZ mapping error" prefix.
    pub fn reason(&self) -> &str {
        &self.0
    }
}

pub(crate) fn bad(why: impl Into<String>) -> MappingError {
    MappingError(why.into())
}

/// What the profile says to do with one MCP request.
#[derive(Debug, Clone)]
pub enum Plan {
    /// `ping` and notifications: allowed without asking anyone.
    PassThrough,
    /// Ask the decision point this, and proceed only if every decision permits.
    Ask(AuthzRequest),
    /// A method with no mapping: refused as an authorization denial, so that
    /// methods added by later MCP versions fail closed.
    Deny(String),
}

/// The inputs of one request: the MCP `params` and the validated token's claims.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub params: &'a Value,
    pub token: &'a Value,
    /// This MCP server's own resource identifier, used to pick the member of
    /// an `aud` array that names it (and in place of a missing `aud`).
    pub server: Option<&'a str>,
}

/// The profile's PEP steps 1 to 5 for one request: pass-through, or the
/// declared mapping (for `tools/call` of a tool that has one) else the
/// method's default, resolved against `inputs` and anchored to the token.
pub fn plan(
    method: &str,
    inputs: Inputs<'_>,
    declared: Option<&Mapping>,
    anchors: &Anchors,
) -> Result<Plan, MappingError> {
    if defaults::passes_through(method) {
        return Ok(Plan::PassThrough);
    }
    let mapping = match declared {
        Some(m) if method == "tools/call" => m,
        _ => match defaults::mapping(method) {
            Some(m) => m,
            None => {
                return Ok(Plan::Deny(format!(
                    "method {method:?} has no COAZ mapping; unknown methods are denied"
                )));
            }
        },
    };
    build(mapping, inputs, anchors).map(Plan::Ask)
}

/// Resolves `mapping` against `inputs`, anchors the identities and checks the
/// result is a valid AuthZEN request.
pub fn build(
    mapping: &Mapping,
    inputs: Inputs<'_>,
    anchors: &Anchors,
) -> Result<AuthzRequest, MappingError> {
    let mut body = mapping.resolve(inputs)?;
    anchor::anchor(&mut body, mapping.envelope(), inputs.token, anchors)?;
    AuthzRequest::new(mapping.envelope(), body)
}

#[cfg(test)]
mod tests;
