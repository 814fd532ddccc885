//! Where COAZ requests are decided: Mandate's own pipeline in process (the
//! default), or any AuthZEN 1.0 decision point by URL.
//!
//! **Mandate's pipeline.** Each decision of the request is read the way
//! Mandate's own `/access/v1/evaluation` reads one (`action.name`,
//! `resource.id` with `resource.properties.sensitivity`/`labels`, and
//! `context.data_sensitivity`/`risk_score`/`amount`), except for what the
//! gateway knows better than a mapping: the subject and agent are the
//! caller's task token (already anchored), `context.tool` is the tool
//! actually called and `context.environment` the gateway's. An action that
//! is an MCP method name becomes a Mandate action (`tools/call` ->
//! `mcp.tools.call`). Decisions are made in order and the first refusal
//! stops the call; each one is a `decision.made` entry, as usual.
//!
//! **An external PDP.** The request body goes as it is to
//! `<url>/access/v1/evaluation` (or `/evaluations`), with the configured
//! Mandate secret as a bearer token. Anything but a well-formed answer in
//! time (a timeout, a non-2xx status, a body that is not AuthZEN, a wrong
//! number of decisions) refuses the call: fail closed. Its verdict is still
//! recorded as a `decision.made` entry (reason `authzen_pdp` or
//! `pdp_unavailable`), so the call's audit trail is the same either way.

use std::time::Duration;

use mandate_core::decision::Verdict;
use mandate_core::scope::{ActionPattern, ResourcePattern};
use mandate_core::secret::SecretName;
use mandate_server::decision::{self, Ask, ContextIn, Outcome, ReasonOut, ResourceIn};
use mandate_server::routes::decisions::{EvaluationRequest, ask_of_evaluation};
use mandate_store::StoreError;
use serde::Deserialize;
use serde_json::Value;

use crate::Gateway;
use crate::auth::Caller;
use crate::coaz::{AuthzRequest, Envelope, MappingError};
use crate::config::{ConfigError, GatewayConfig};

/// The largest PDP answer read.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

pub(crate) enum DecisionPoint {
    Mandate,
    Remote(Remote),
}

pub(crate) struct Remote {
    base: String,
    secret: Option<SecretName>,
    timeout_ms: u64,
    http: reqwest::Client,
}

/// What became of one COAZ request.
pub(crate) enum Settled {
    /// Every decision permits; the last one's outcome records the call.
    Allowed(Outcome),
    /// A decision refused: its outcome, and what a remote PDP said with it.
    Refused(Outcome, Option<Value>),
    /// The PDP could not be asked or answered nonsense: refused, recorded as a deny.
    Unavailable(Outcome),
}

pub(crate) enum DecideError {
    Store(StoreError),
    /// Mandate's pipeline cannot read this request (e.g. a risk score of 200).
    Mapping(MappingError),
}

impl From<StoreError> for DecideError {
    fn from(e: StoreError) -> Self {
        DecideError::Store(e)
    }
}

/// One AuthZEN decision as a PDP answers it (section 6.2): `decision`, and
/// an optional, implementation-defined `context`.
#[derive(Deserialize)]
struct Answer {
    decision: bool,
    #[serde(default)]
    context: Option<serde_json::Map<String, Value>>,
}

#[derive(Deserialize)]
struct Answers {
    evaluations: Vec<Answer>,
}

/// An MCP method name as a Mandate action (`tools/call` -> `mcp.tools.call`,
/// `logging/setLevel` -> `mcp.logging.setlevel`); any other name as it is.
pub fn mandate_action(name: &str) -> String {
    if name.contains('/') {
        format!("mcp.{}", name.replace('/', ".").to_ascii_lowercase())
    } else {
        name.to_owned()
    }
}

/// One COAZ decision as Mandate's pipeline asks it.
pub(crate) fn mandate_ask(
    e: &EvaluationRequest,
    tool: Option<&str>,
    environment: &str,
) -> Result<Ask, MappingError> {
    let mut ask = ask_of_evaluation(e).map_err(|p| {
        MappingError(format!(
            "Mandate's pipeline cannot decide this request: {}",
            p.detail
        ))
    })?;
    ask.action = mandate_action(&ask.action);
    concrete(&ask.action, &ask.resource.id)?;
    ask.context.tool = tool.map(str::to_owned);
    ask.context.environment = Some(environment.to_owned());
    Ok(ask)
}

/// A decision is about one action on one resource: a value that reads as a
/// pattern (`cust-*`) or climbs (`a/../b`) could be granted as one thing and
/// read by the upstream as another, so it is refused, as the config-mapped
/// tools refuse such arguments.
fn concrete(action: &str, resource: &str) -> Result<(), MappingError> {
    let bad = |what: &str, v: &str, why: String| {
        Err(MappingError(format!(
            "{what} {v:?} is not one Mandate {what}: {why}"
        )))
    };
    if action.ends_with('*') {
        return bad("action", action, "it ends in a wildcard".into());
    }
    if let Err(e) = ActionPattern::parse(action) {
        return bad("action", action, e.to_string());
    }
    if resource.ends_with('*') {
        return bad("resource", resource, "it ends in a wildcard".into());
    }
    if let Err(e) = ResourcePattern::parse(resource) {
        return bad("resource", resource, e.to_string());
    }
    if resource.split('/').any(|s| s == "." || s == "..") {
        return bad("resource", resource, "it has a '.' or '..' segment".into());
    }
    Ok(())
}

/// What listing a tool probes in Mandate's pipeline: its action on its
/// resource, where the mapping fixes them. `None` when the mapping leaves
/// the action to an expression (the tool cannot be ruled out before a call).
pub(crate) fn probe(
    action: &str,
    resource: Option<&str>,
    tool: &str,
    environment: &str,
) -> Option<(Ask, ResourcePattern)> {
    let pattern = match resource {
        Some(r) => ResourcePattern::parse(r).ok()?,
        None => ResourcePattern::parse("*").ok()?,
    };
    let ask = Ask {
        action: mandate_action(action),
        resource: ResourceIn {
            id: resource.unwrap_or_default().to_owned(),
            sensitivity: "internal".into(),
            labels: Vec::new(),
        },
        context: ContextIn {
            tool: Some(tool.to_owned()),
            environment: Some(environment.to_owned()),
            ..ContextIn::default()
        },
    };
    Some((ask, pattern))
}

impl DecisionPoint {
    pub fn new(config: &GatewayConfig) -> Result<Self, ConfigError> {
        let Some(dp) = &config.decision_point else {
            return Ok(DecisionPoint::Mandate);
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(dp.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConfigError(format!("decision point HTTP client: {e}")))?;
        Ok(DecisionPoint::Remote(Remote {
            base: dp.url.trim_end_matches('/').to_owned(),
            secret: dp.secret.clone(),
            timeout_ms: dp.timeout_ms,
            http,
        }))
    }

    pub fn is_mandate(&self) -> bool {
        matches!(self, DecisionPoint::Mandate)
    }

    /// Decides `req` for a call of `tool`; every decision made is recorded.
    pub async fn decide(
        &self,
        gw: &Gateway,
        caller: &Caller,
        req: &AuthzRequest,
        tool: Option<&str>,
    ) -> Result<Settled, DecideError> {
        let env = &gw.config.environment;
        match self {
            DecisionPoint::Mandate => {
                // Read every decision before making any.
                let asks = req
                    .decisions()
                    .iter()
                    .map(|e| mandate_ask(e, tool, env))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(DecideError::Mapping)?;
                let mut last = None;
                for ask in &asks {
                    let out =
                        decision::decide(&gw.app, &caller.0, ask, None, mandate_server::now())
                            .await?;
                    if out.decision != Verdict::Allow {
                        return Ok(Settled::Refused(out, None));
                    }
                    last = Some(out);
                }
                Ok(Settled::Allowed(
                    last.expect("a request has at least one decision"),
                ))
            }
            DecisionPoint::Remote(r) => r.decide(gw, caller, req, tool).await,
        }
    }

    /// Asks a remote PDP about `req` without recording anything (listing).
    pub async fn permits(&self, gw: &Gateway, req: &AuthzRequest) -> Result<bool, String> {
        match self {
            DecisionPoint::Mandate => Ok(true),
            DecisionPoint::Remote(r) => Ok(r.ask(gw, req).await?.iter().all(|a| a.decision)),
        }
    }
}

impl Remote {
    /// The PDP's answers, one per decision of `req`, or why there are none.
    async fn ask(&self, gw: &Gateway, req: &AuthzRequest) -> Result<Vec<Answer>, String> {
        let url = format!("{}{}", self.base, req.envelope().path());
        let mut post = self.http.post(&url).json(req.body());
        if let Some(name) = &self.secret {
            let secret = gw
                .secret(name)
                .await
                .map_err(|e| format!("its credential could not be read: {e}"))?
                .ok_or_else(|| {
                    format!("its credential, the secret {name}, is not set (`mandate secret set {name}`)")
                })?;
            post = post.bearer_auth(secret.expose());
        }
        let res = post.send().await.map_err(|e| {
            if e.is_timeout() {
                format!("it did not answer within {} ms", self.timeout_ms)
            } else {
                format!("it could not be reached: {}", e.without_url())
            }
        })?;
        let (status, _, body) = crate::proxy::read_answer(res, MAX_ANSWER_BYTES).await?;
        if !status.is_success() {
            return Err(format!("it answered HTTP {status}"));
        }
        let garbage = |e: serde_json::Error| format!("its answer is not an AuthZEN decision: {e}");
        let answers = match req.envelope() {
            Envelope::Evaluation => vec![serde_json::from_slice::<Answer>(&body).map_err(garbage)?],
            Envelope::Evaluations => {
                serde_json::from_slice::<Answers>(&body)
                    .map_err(garbage)?
                    .evaluations
            }
        };
        if answers.len() != req.decisions().len() {
            return Err(format!(
                "it answered {} decisions for the {} asked",
                answers.len(),
                req.decisions().len()
            ));
        }
        Ok(answers)
    }

    async fn decide(
        &self,
        gw: &Gateway,
        caller: &Caller,
        req: &AuthzRequest,
        tool: Option<&str>,
    ) -> Result<Settled, DecideError> {
        // The log names what the PDP was asked, as it was asked.
        let asked = |e: &EvaluationRequest| Ask {
            action: e.action.name.clone(),
            resource: ResourceIn {
                id: e.resource.id.clone(),
                sensitivity: "internal".into(),
                labels: Vec::new(),
            },
            context: ContextIn {
                tool: tool.map(str::to_owned),
                environment: Some(gw.config.environment.clone()),
                ..ContextIn::default()
            },
        };
        let record = |ask: Ask, verdict: Verdict, reason: ReasonOut| async move {
            decision::record_external(
                &gw.app,
                &caller.0,
                &ask,
                verdict,
                vec![reason],
                mandate_server::now(),
            )
            .await
        };
        let first = asked(&req.decisions()[0]);
        let answers = match self.ask(gw, req).await {
            Ok(a) => a,
            Err(why) => {
                tracing::warn!(pdp = %self.base, error = %why, "gateway: AuthZEN decision point unavailable");
                let reason = ReasonOut::step(
                    "pdp_unavailable",
                    format!(
                        "the AuthZEN decision point at {} failed, so the call is refused: {why}",
                        self.base
                    ),
                );
                return Ok(Settled::Unavailable(
                    record(first, Verdict::Deny, reason).await?,
                ));
            }
        };
        let mut last = None;
        for (e, a) in req.decisions().iter().zip(answers) {
            let verdict = if a.decision {
                Verdict::Allow
            } else {
                Verdict::Deny
            };
            let reason = ReasonOut::step(
                "authzen_pdp",
                format!(
                    "{} by the AuthZEN decision point at {}",
                    if a.decision { "permitted" } else { "denied" },
                    self.base
                ),
            );
            let out = record(asked(e), verdict, reason).await?;
            if !a.decision {
                return Ok(Settled::Refused(out, a.context.map(Value::Object)));
            }
            last = Some(out);
        }
        Ok(Settled::Allowed(
            last.expect("a request has at least one decision"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn evaluation(v: Value) -> EvaluationRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn mcp_methods_become_mandate_actions() {
        assert_eq!(mandate_action("tools/call"), "mcp.tools.call");
        assert_eq!(mandate_action("logging/setLevel"), "mcp.logging.setlevel");
        assert_eq!(mandate_action("crm.read"), "crm.read");
    }

    #[test]
    fn a_coaz_decision_is_read_as_mandates_authzen_endpoint_reads_it() {
        let e = evaluation(json!({
            "subject": { "type": "identity", "id": "h-1" },
            "action": { "name": "get_customer" },
            "resource": { "type": "customer", "id": "crm:customers/c-1",
                          "properties": { "sensitivity": "confidential", "labels": ["pii"] } },
            "context": { "agent": "spiffe://a/agent/x", "amount": 500, "risk_score": 20,
                         "tool": "something_else", "environment": "dev" } }));
        let ask = mandate_ask(&e, Some("get_customer"), "prod").unwrap();
        assert_eq!(ask.action, "get_customer");
        assert_eq!(ask.resource.id, "crm:customers/c-1");
        assert_eq!(ask.resource.sensitivity, "confidential");
        assert_eq!(ask.resource.labels, ["pii"]);
        assert_eq!(
            (ask.context.amount, ask.context.risk_score),
            (Some(500), Some(20))
        );
        // What the gateway knows, a mapping cannot change.
        assert_eq!(ask.context.tool.as_deref(), Some("get_customer"));
        assert_eq!(ask.context.environment.as_deref(), Some("prod"));
    }

    #[test]
    fn patterns_climbs_and_unreadable_values_are_refused() {
        let with = |action: &str, resource: &str, context: Value| {
            mandate_ask(
                &evaluation(json!({
                    "subject": { "type": "identity", "id": "h" }, "action": { "name": action },
                    "resource": { "type": "t", "id": resource }, "context": context })),
                None,
                "prod",
            )
        };
        for (action, resource, why) in [
            ("read", "cust-*", "wildcard"),
            ("read*", "cust-1", "wildcard"),
            ("read", "a/../b", "'..'"),
            ("read", "a b", "not one Mandate resource"),
            ("Read", "a", "not one Mandate action"),
        ] {
            let Err(e) = with(action, resource, json!({})) else {
                panic!("{action} {resource} accepted");
            };
            assert!(e.0.contains(why), "{action} {resource}: {e}");
        }
        let Err(e) = with("read", "a", json!({ "risk_score": 200 })) else {
            panic!("a risk score of 200 accepted");
        };
        assert!(e.0.contains("risk_score"), "{e}");
        assert!(with("read", "erp:a/b", json!({})).is_ok());
    }
}
