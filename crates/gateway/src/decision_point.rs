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
//! `mcp.tools.call`). Decisions are made in order, as the request's
//! `evaluations_semantic` says (stopping at the first deny or the first
//! permit, or making them all), and add up by its operator (`&&`, or `||`
//! for `permit_on_first_permit`); each one made is a `decision.made` entry,
//! as usual. Requests other than tool calls go through [`DecisionPoint::gate`].
//!
//! **An external PDP.** The request body goes as it is to
//! `<url>/access/v1/evaluation` (or `/evaluations`), with the configured
//! Mandate secret as a bearer token (and, when configured, the agent's task
//! token for a PDP that verifies it, such as Mandate). Anything but a
//! well-formed answer in time (a timeout, a non-2xx status, a body that is
//! not AuthZEN, a number of decisions the semantic does not explain) refuses
//! the call: fail closed. Its verdict is still recorded as a `decision.made`
//! entry (reason `authzen_pdp` or `pdp_unavailable`), so the call's audit
//! trail is the same either way.

use std::time::Duration;

use mandate_core::decision::Verdict;
use mandate_core::scope::{ActionPattern, ResourcePattern};
use mandate_core::secret::SecretName;
use mandate_server::decision::{self, Ask, ContextIn, Outcome, ReasonOut, ResourceIn, Spends};
use mandate_server::routes::decisions::{
    EvaluationRequest, Semantic, TASK_TOKEN_HEADER, ask_of_evaluation,
};
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
    /// Pass the agent's task token to the PDP (`Mandate-Task-Token`).
    send_task_token: bool,
    timeout_ms: u64,
    http: reqwest::Client,
}

/// What became of one COAZ request.
pub(crate) enum Settled {
    /// The decisions permit the call; the permit that settled it records it.
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
    ask.action = decision::mcp_action(&ask.action);
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
        action: decision::mcp_action(action),
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
            send_task_token: dp.send_task_token,
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
                let semantic = req.semantic();
                let mut made = Vec::with_capacity(asks.len());
                for ask in &asks {
                    let out =
                        decision::decide(&gw.app, &caller.0, ask, None, mandate_server::now())
                            .await?;
                    let permitted = out.decision == Verdict::Allow;
                    made.push(out);
                    if semantic.stops(permitted) {
                        break;
                    }
                }
                Ok(settled(semantic, asks.len(), made, Vec::new()))
            }
            DecisionPoint::Remote(r) => r.decide(gw, caller, req, tool, Spends::Call).await,
        }
    }

    /// Decides a request other than a tool call (its default mapping) before
    /// the gateway answers it. With Mandate's pipeline, MCP's session methods
    /// (`initialize`, the listings, `logging/setLevel`) are allowed to an open
    /// task unless a policy forbids them, recorded but not counted as calls
    /// ([`decision::session`]); every other method (`resources/read`,
    /// `prompts/get`, `tasks/get` ...) is a full, recorded decision of
    /// `mcp.<method>` on the resource its default mapping names, which a task
    /// scope must grant. With a remote PDP the request is asked as it is and
    /// its answers are recorded, as for a tool call (session methods again
    /// not counted as calls). `Ok(None)`: allowed.
    pub async fn gate(
        &self,
        gw: &Gateway,
        caller: &Caller,
        method: &str,
        req: &AuthzRequest,
    ) -> Result<Option<Gated>, DecideError> {
        let action = decision::mcp_action(method);
        let session = decision::is_session_action(&action);
        match self {
            DecisionPoint::Remote(r) => {
                let spends = if session {
                    Spends::Nothing
                } else {
                    Spends::Call
                };
                Ok(match r.decide(gw, caller, req, None, spends).await? {
                    Settled::Allowed(_) => None,
                    Settled::Refused(_, said) => Some(Gated::Denied(said)),
                    Settled::Unavailable(out) => Some(Gated::Unavailable(
                        out.reasons
                            .first()
                            .map_or_else(String::new, |r| r.message.clone()),
                    )),
                })
            }
            DecisionPoint::Mandate => {
                let mut made = Vec::new();
                for e in req.decisions() {
                    let mut ask = if session {
                        // The server itself is the resource: no scope is
                        // asked, so its identifier need not be one.
                        ask_of_evaluation(e).map_err(|p| {
                            DecideError::Mapping(MappingError(format!(
                                "Mandate's pipeline cannot decide this request: {}",
                                p.detail
                            )))
                        })?
                    } else {
                        mandate_ask(e, None, &gw.config.environment)
                            .map_err(DecideError::Mapping)?
                    };
                    // The method decides the action, whatever a mapping says.
                    ask.action = action.clone();
                    ask.context.environment = Some(gw.config.environment.clone());
                    ask.context.tool = None;
                    let now = mandate_server::now();
                    let out = if session {
                        decision::session(&gw.app, &caller.0, &ask, None, now).await?
                    } else {
                        decision::decide(&gw.app, &caller.0, &ask, None, now).await?
                    };
                    let permitted = out.decision == Verdict::Allow;
                    made.push(out);
                    if req.semantic().stops(permitted) {
                        break;
                    }
                }
                Ok(
                    match settled(req.semantic(), req.decisions().len(), made, Vec::new()) {
                        Settled::Allowed(_) => None,
                        Settled::Refused(out, _) | Settled::Unavailable(out) => {
                            Some(Gated::Refused(out))
                        }
                    },
                )
            }
        }
    }
}

/// Why a request other than a tool call was refused.
pub(crate) enum Gated {
    /// Mandate's pipeline refused it, with this decision.
    Refused(Outcome),
    /// The remote PDP denied it (with what it said).
    Denied(Option<Value>),
    /// The remote PDP could not be asked or answered nonsense: why, as recorded.
    Unavailable(String),
}

fn answers_of(answers: &[Answer]) -> Vec<bool> {
    answers.iter().map(|a| a.decision).collect()
}

/// What the decisions made for a request of `asked` decisions come to under
/// `semantic`: whether the request is allowed, and which decision settles
/// it. Allowed: the permit that allowed it (the last one, or under
/// `permit_on_first_permit` the first permit). Refused: the refusal worth
/// reporting: under `&&` a deny before an approval gate (an approval could
/// not lift the deny), under `||` an approval gate before a deny (approving
/// it would allow the call).
fn settle(semantic: Semantic, asked: usize, made: &[Verdict]) -> (bool, usize) {
    let permitted: Vec<bool> = made.iter().map(|v| *v == Verdict::Allow).collect();
    let first = |v: Verdict| made.iter().position(|m| *m == v);
    if semantic.permits(asked, &permitted) {
        let at = match semantic {
            Semantic::PermitOnFirstPermit => first(Verdict::Allow),
            _ => None,
        };
        return (true, at.unwrap_or(made.len().saturating_sub(1)));
    }
    let at = match semantic {
        Semantic::PermitOnFirstPermit => first(Verdict::NeedsApproval).or(first(Verdict::Deny)),
        _ => first(Verdict::Deny).or(first(Verdict::NeedsApproval)),
    };
    (false, at.unwrap_or(0))
}

/// The decision that settles `made`, as a [`Settled`] (with what a remote
/// PDP said with it, for a refusal).
fn settled(
    semantic: Semantic,
    asked: usize,
    made: Vec<Outcome>,
    said: Vec<Option<Value>>,
) -> Settled {
    let verdicts: Vec<Verdict> = made.iter().map(|o| o.decision).collect();
    let (allowed, at) = settle(semantic, asked, &verdicts);
    let pdp = said.into_iter().nth(at).flatten();
    let out = made
        .into_iter()
        .nth(at)
        .expect("a request has at least one decision");
    if allowed {
        Settled::Allowed(out)
    } else {
        Settled::Refused(out, pdp)
    }
}

/// Checks a PDP's answers fit the request: one per decision asked, or fewer
/// when the semantic stopped early, at the last one and not before.
fn fits(semantic: Semantic, asked: usize, answers: &[bool]) -> Result<(), String> {
    let n = answers.len();
    let stopped_early = n < asked
        && n > 0
        && semantic.stops(answers[n - 1])
        && !answers[..n - 1].iter().any(|a| semantic.stops(*a));
    if n == asked || stopped_early {
        Ok(())
    } else {
        Err(format!(
            "it answered {n} decisions for the {asked} asked ({})",
            serde_json::to_value(semantic)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        ))
    }
}

impl Remote {
    /// The PDP's answers, one per decision of `req` (fewer where its
    /// semantic stopped early), or why there are none.
    async fn ask(
        &self,
        gw: &Gateway,
        caller: &Caller,
        req: &AuthzRequest,
    ) -> Result<Vec<Answer>, String> {
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
        if self.send_task_token {
            post = post.header(TASK_TOKEN_HEADER, &*caller.1);
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
        fits(req.semantic(), req.decisions().len(), &answers_of(&answers))?;
        Ok(answers)
    }

    async fn decide(
        &self,
        gw: &Gateway,
        caller: &Caller,
        req: &AuthzRequest,
        tool: Option<&str>,
        spends: Spends,
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
                spends,
                mandate_server::now(),
            )
            .await
        };
        let first = asked(&req.decisions()[0]);
        let answers = match self.ask(gw, caller, req).await {
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
        let mut made = Vec::with_capacity(answers.len());
        let mut said = Vec::with_capacity(answers.len());
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
            made.push(record(asked(e), verdict, reason).await?);
            said.push(a.context.map(Value::Object));
        }
        Ok(settled(req.semantic(), req.decisions().len(), made, said))
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
        for (method, action) in [
            ("tools/call", "mcp.tools.call"),
            ("logging/setLevel", "mcp.logging.setlevel"),
            ("initialize", "mcp.initialize"),
            ("crm.read", "crm.read"),
        ] {
            assert_eq!(decision::mcp_action(method), action);
        }
        for m in crate::coaz::defaults::METHODS {
            let session = decision::is_session_action(&decision::mcp_action(m));
            let server_scoped = crate::coaz::defaults::text(m).unwrap()["evaluation"]["resource"]["type"]
                == "mcp_server";
            assert_eq!(
                session, server_scoped,
                "{m}: session methods are the server-scoped ones"
            );
        }
    }

    #[test]
    fn decisions_add_up_by_the_requests_semantic() {
        use Semantic::*;
        use Verdict::{Allow as A, Deny as D, NeedsApproval as N};
        // (semantic, decisions asked, decisions made) -> (allowed, which settles it)
        let cases = [
            (ExecuteAll, 2, vec![A, A], (true, 1)),
            (ExecuteAll, 3, vec![A, D, A], (false, 1)),
            (ExecuteAll, 2, vec![N, D], (false, 1)),
            (ExecuteAll, 2, vec![A], (false, 0)),
            (DenyOnFirstDeny, 3, vec![A, N], (false, 1)),
            (DenyOnFirstDeny, 2, vec![A, A], (true, 1)),
            (PermitOnFirstPermit, 3, vec![D, A], (true, 1)),
            (PermitOnFirstPermit, 2, vec![D, D], (false, 0)),
            (PermitOnFirstPermit, 2, vec![D, N], (false, 1)),
            (PermitOnFirstPermit, 1, vec![A], (true, 0)),
        ];
        for (semantic, asked, made, want) in cases {
            assert_eq!(
                settle(semantic, asked, &made),
                want,
                "{semantic:?} {asked} {made:?}"
            );
        }
    }

    proptest::proptest! {
        /// Whatever the decisions, a request is allowed exactly when the
        /// semantic's operator says so, and the decision reported agrees
        /// with the answer: never an allow reported for a refusal or the
        /// other way round.
        #[test]
        fn settling_agrees_with_the_semantics_operator(
            semantic in proptest::sample::select(vec![
                Semantic::ExecuteAll, Semantic::DenyOnFirstDeny, Semantic::PermitOnFirstPermit]),
            made in proptest::collection::vec(
                proptest::sample::select(vec![Verdict::Allow, Verdict::Deny, Verdict::NeedsApproval]),
                1..6),
            extra in 0usize..3,
        ) {
            let asked = made.len() + extra;
            let (allowed, at) = settle(semantic, asked, &made);
            let permits = made.iter().map(|v| *v == Verdict::Allow);
            let want = match semantic {
                Semantic::PermitOnFirstPermit => permits.clone().any(|p| p),
                _ => extra == 0 && permits.clone().all(|p| p),
            };
            proptest::prop_assert_eq!(allowed, want);
            proptest::prop_assert!(at < made.len());
            if allowed {
                proptest::prop_assert_eq!(made[at], Verdict::Allow);
            } else if made.iter().any(|v| *v != Verdict::Allow) {
                proptest::prop_assert_ne!(made[at], Verdict::Allow);
            }
        }
    }

    #[test]
    fn a_pdps_answers_must_fit_the_semantic() {
        use Semantic::*;
        let cases = [
            (ExecuteAll, 2, vec![true, false], true),
            (ExecuteAll, 2, vec![false], false),
            (ExecuteAll, 2, vec![true, true, true], false),
            (DenyOnFirstDeny, 3, vec![true, false], true),
            (DenyOnFirstDeny, 3, vec![true, true], false),
            (DenyOnFirstDeny, 3, vec![false, true, false], true),
            (PermitOnFirstPermit, 3, vec![false, true], true),
            (PermitOnFirstPermit, 3, vec![true, false], false),
            (PermitOnFirstPermit, 2, vec![], false),
            (DenyOnFirstDeny, 1, vec![], false),
        ];
        for (semantic, asked, answers, ok) in cases {
            let got = fits(semantic, asked, &answers);
            assert_eq!(got.is_ok(), ok, "{semantic:?} {asked} {answers:?}: {got:?}");
            if let Err(why) = got {
                assert!(why.contains("decisions for the"), "{why}");
            }
        }
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
