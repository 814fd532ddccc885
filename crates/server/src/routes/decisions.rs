//! Decision endpoints: Mandate's own `POST /v1/decisions` with full reasons,
//! and the OpenID AuthZEN Authorization API 1.0 (`/access/v1/evaluation`,
//! `/access/v1/evaluations`, `/.well-known/authzen-configuration`) so any
//! AuthZEN enforcement point can ask Mandate.
//!
//! The caller presents the task token it acts under: in the Authorization
//! header for `/v1/decisions`. AuthZEN requests come in two shapes:
//!
//! - **agent as subject**: `subject` is the agent (its SPIFFE id) with its
//!   task token in `subject.properties.token`;
//! - **COAZ** (the OpenID AuthZEN COAZ profile for MCP, as a third-party MCP
//!   gateway sends it): `subject` is the human on whose behalf the agent acts
//!   (the token's `sub`, the task's initiator), `context.agent` the acting
//!   agent, and the PEP passes the agent's task token in the
//!   `Mandate-Task-Token` header. The profile itself carries no token to the
//!   PDP; a header keeps the request body exactly what the mapping built, and
//!   out of reach of the mapping's author. The identities in the body are
//!   checked against the verified token (anchoring): Mandate never decides
//!   for an identity the token was not issued to. MCP method names as
//!   actions become Mandate actions (`tools/call` -> `mcp.tools.call`), and
//!   MCP's session methods are decided by [`decision::session`].
//!
//! A DPoP-bound token needs a DPoP proof for the decision request itself (the
//! `DPoP` header), so a stolen token is no more use to a PEP than to anyone.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::HeaderMap;
use mandate_core::credential::TaskClaims;
use mandate_core::decision::Verdict;
use mandate_core::ids::DecisionId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::AppState;
use crate::access::Presented;
use crate::decision::{self, Ask, ContextIn, Decided, Holder, Outcome, ReasonOut, ResourceIn};
use crate::extract::{Json, request_id};
use crate::problem::{ApiResult, Problem};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(decide))
        .routes(routes!(evaluation))
        .routes(routes!(evaluations))
        .routes(routes!(configuration))
}

/// A decision request under the task token in the Authorization header.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// The Mandate action, e.g. `payments.initiate`.
    pub action: String,
    pub resource: ResourceIn,
    #[serde(default)]
    pub context: ContextIn,
}

/// The answer for a token that is not genuine: denied, not attributable, not recorded.
fn unattributed(ask: &Ask, reason: ReasonOut) -> Outcome {
    crate::observe::decision_made(Verdict::Deny);
    Outcome {
        decision_id: DecisionId::from_uuid(Uuid::now_v7()),
        decision: Verdict::Deny,
        reasons: vec![reason],
        policy_hash: None,
        task_id: None,
        action: ask.action.clone(),
        resource: ask.resource.id.clone(),
        approval_id: None,
        breakglass_id: None,
    }
}

async fn run(
    s: &AppState,
    holder: &Result<Holder, ReasonOut>,
    ask: &Ask,
    headers: &HeaderMap,
) -> ApiResult<Decided> {
    match holder {
        Err(reason) => Ok(Decided::unrecorded(unattributed(ask, reason.clone()))),
        Ok(h) => Ok(decision::decide_recorded(s, h, ask, request_id(headers), crate::now()).await?),
    }
}

/// Decide one action under a task token, with the full reasons.
///
/// 200 with `allow`, `deny` or `needs_approval`; a malformed request is 4xx;
/// 503 (with `Retry-After`) when the database cannot be reached, since no
/// decision was made.
#[utoipa::path(post, path = "/v1/decisions", tag = "decisions", request_body = DecisionRequest,
    responses((status = 200, body = Outcome), (status = 400, body = Problem), (status = 401, body = Problem), (status = 503, body = Problem)),
    security(("task_token" = [])))]
async fn decide(
    State(s): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<DecisionRequest>,
) -> ApiResult<Decided> {
    let token = crate::access::bearer_token(&headers).ok_or_else(|| {
        Problem::unauthorized("send the task token as Authorization: Bearer <token>")
    })?;
    let ask = Ask {
        action: req.action,
        resource: req.resource,
        context: req.context,
    };
    let presented = Presented::new(&headers, "POST", "/v1/decisions");
    let holder = decision::authenticate(&s, token, &presented, crate::now()).await?;
    run(&s, &holder, &ask, &headers).await
}

// ---- AuthZEN ----------------------------------------------------------------

/// AuthZEN subject: the agent, with its task token in `properties.token`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct Subject {
    #[serde(rename = "type")]
    pub kind: String,
    /// The agent's SPIFFE id; must match the token's agent.
    pub id: String,
    #[serde(default)]
    pub properties: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct Action {
    pub name: String,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub properties: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct Resource {
    #[serde(rename = "type")]
    pub kind: String,
    /// The resource string as in task scopes.
    pub id: String,
    /// `sensitivity` (string) and `labels` (array of strings) are read.
    #[serde(default)]
    pub properties: serde_json::Map<String, serde_json::Value>,
}

/// An AuthZEN access evaluation request (section 6).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct EvaluationRequest {
    pub subject: Subject,
    pub action: Action,
    pub resource: Resource,
    /// `tool`, `environment`, `data_sensitivity`, `risk_score`, `amount` are read.
    #[serde(default)]
    pub context: serde_json::Map<String, serde_json::Value>,
}

/// An AuthZEN decision: a boolean, with Mandate's reasons in `context`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct EvaluationResponse {
    pub decision: bool,
    pub context: EvaluationContext,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct EvaluationContext {
    /// The decision id, as in the audit log.
    pub id: DecisionId,
    /// Reasons for administrators (all of them, with policy ids).
    pub reason_admin: serde_json::Value,
    /// A reason safe to show the agent's user.
    pub reason_user: serde_json::Value,
    /// Mandate's full answer (`allow`, `deny`, `needs_approval`, approval id ...).
    pub mandate: Outcome,
}

fn to_authzen(o: Outcome) -> EvaluationResponse {
    let codes: Vec<&str> = o.reasons.iter().map(|r| r.code.as_str()).collect();
    let user = match o.decision {
        Verdict::Allow => "allowed".to_owned(),
        Verdict::NeedsApproval => "waiting for a human approval".to_owned(),
        Verdict::Deny => format!("denied: {}", codes.join(", ")),
    };
    EvaluationResponse {
        decision: o.decision == Verdict::Allow,
        context: EvaluationContext {
            id: o.decision_id,
            reason_admin: serde_json::json!({ "en": serde_json::to_value(&o.reasons).unwrap_or_default() }),
            reason_user: serde_json::json!({ "en": user }),
            mandate: o,
        },
    }
}

fn field<'a>(
    m: &'a serde_json::Map<String, serde_json::Value>,
    k: &str,
) -> Option<&'a serde_json::Value> {
    m.get(k).filter(|v| !v.is_null())
}

fn string_field(
    m: &serde_json::Map<String, serde_json::Value>,
    k: &str,
    what: &str,
) -> ApiResult<Option<String>> {
    match field(m, k) {
        None => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Problem::bad_request(format!("{what}.{k} must be a string"))),
    }
}

/// The header in which a COAZ enforcement point passes the agent's task token.
pub const TASK_TOKEN_HEADER: &str = "mandate-task-token";

/// Maps an agent-as-subject AuthZEN request onto Mandate's: the token, and the ask.
fn ask_of(r: &EvaluationRequest) -> ApiResult<(String, Option<String>, Ask)> {
    let token =
        string_field(&r.subject.properties, "token", "subject.properties")?.ok_or_else(|| {
            Problem::bad_request(
                "no task token: send the agent's task token in the Mandate-Task-Token header \
                 (COAZ: subject is the human, context.agent the agent) or as \
                 subject.properties.token (subject is the agent)",
            )
        })?;
    let dpop = string_field(&r.subject.properties, "dpop", "subject.properties")?;
    Ok((token, dpop, ask_of_evaluation(r)?))
}

/// Why a COAZ request's identities are not the token's, if they are not:
/// `subject.id` must be the token's `sub` (the human who initiated the
/// task) and `context.agent`, when present, its `client_id` (the acting
/// agent). `subject.type` and every other attribute are the PEP's to say.
pub fn coaz_mismatch(r: &EvaluationRequest, claims: &TaskClaims) -> Option<ReasonOut> {
    if r.subject.id != claims.sub {
        return Some(ReasonOut::step(
            "subject_mismatch",
            format!(
                "subject.id {:?} is not the human the task token was issued for (its initiator); \
                 Mandate decides only for the token's own identities",
                r.subject.id
            ),
        ));
    }
    match r.context.get("agent") {
        None => None,
        Some(serde_json::Value::String(a)) if *a == claims.client_id => None,
        Some(other) => Some(ReasonOut::step(
            "agent_mismatch",
            format!("context.agent {other} is not the agent the task token was issued to"),
        )),
    }
}

/// What Mandate decides for an AuthZEN evaluation: `action.name`, `resource.id`
/// with `resource.properties.sensitivity`/`labels`, and `context.tool`,
/// `environment`, `data_sensitivity`, `risk_score` and `amount`. The
/// gateway's COAZ enforcement maps its requests the same way.
pub fn ask_of_evaluation(r: &EvaluationRequest) -> ApiResult<Ask> {
    let p = &r.resource.properties;
    let labels = match field(p, "labels") {
        None => Vec::new(),
        Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
            Problem::bad_request("resource.properties.labels must be an array of strings")
        })?,
    };
    let c = &r.context;
    let risk_score = match field(c, "risk_score") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| *n <= 100)
                .ok_or_else(|| Problem::bad_request("context.risk_score must be 0 to 100"))?
                as u8,
        ),
    };
    let amount = match field(c, "amount") {
        None => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| {
            Problem::bad_request("context.amount must be an integer (minor units)")
        })?),
    };
    let ask = Ask {
        action: r.action.name.clone(),
        resource: ResourceIn {
            id: r.resource.id.clone(),
            sensitivity: string_field(p, "sensitivity", "resource.properties")?
                .unwrap_or_else(|| "internal".into()),
            labels,
        },
        context: ContextIn {
            tool: string_field(c, "tool", "context")?,
            environment: string_field(c, "environment", "context")?,
            data_sensitivity: string_field(c, "data_sensitivity", "context")?,
            risk_score,
            amount,
        },
    };
    Ok(ask)
}

/// Authenticates each distinct token of a request once (a DPoP proof is
/// single-use, and a batch shares it), and checks the request's identities
/// are the token's.
struct Holders<'a> {
    s: &'a AppState,
    headers: &'a HeaderMap,
    path: &'static str,
    /// The task token of a COAZ request (the `Mandate-Task-Token` header).
    coaz: Option<String>,
    seen: HashMap<String, Result<Holder, ReasonOut>>,
}

impl<'a> Holders<'a> {
    fn new(s: &'a AppState, headers: &'a HeaderMap, path: &'static str) -> ApiResult<Self> {
        let coaz = match headers.get(TASK_TOKEN_HEADER) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        Problem::bad_request(
                            "the Mandate-Task-Token header must carry a task token",
                        )
                    })?
                    .to_owned(),
            ),
        };
        Ok(Holders {
            s,
            headers,
            path,
            coaz,
            seen: HashMap::new(),
        })
    }

    async fn holder(
        &mut self,
        token: &str,
        dpop: Option<String>,
    ) -> ApiResult<&Result<Holder, ReasonOut>> {
        if !self.seen.contains_key(token) {
            let mut presented = Presented::new(self.headers, "POST", self.path);
            if dpop.is_some() {
                presented.proof = dpop;
            }
            let h = decision::authenticate(self.s, token, &presented, crate::now()).await?;
            self.seen.insert(token.to_owned(), h);
        }
        Ok(&self.seen[token])
    }

    async fn decide(&mut self, r: &EvaluationRequest) -> ApiResult<Outcome> {
        if let Some(token) = self.coaz.clone() {
            return self.decide_coaz(r, &token).await;
        }
        let (token, dpop, ask) = ask_of(r)?;
        let (s, headers) = (self.s, self.headers);
        let holder = self.holder(&token, dpop).await?;
        if let Ok(h) = holder
            && h.claims.client_id != r.subject.id
        {
            let reason = ReasonOut::step(
                "subject_mismatch",
                format!(
                    "subject.id {:?} is not the agent the token was issued to",
                    r.subject.id
                ),
            );
            return Ok(unattributed(&ask, reason));
        }
        Ok(run(s, holder, &ask, headers).await?.outcome)
    }

    /// A COAZ request: the human as subject, the agent in `context.agent`,
    /// the token in the header.
    async fn decide_coaz(&mut self, r: &EvaluationRequest, token: &str) -> ApiResult<Outcome> {
        if r.subject.properties.contains_key("token") {
            return Err(Problem::bad_request(
                "a request with a Mandate-Task-Token header is a COAZ request: its subject is the \
                 human, and subject.properties.token is not read; send one token, in one place",
            ));
        }
        let mut ask = ask_of_evaluation(r)?;
        ask.action = decision::mcp_action(&ask.action);
        let (s, headers) = (self.s, self.headers);
        let holder = match self.holder(token, None).await? {
            Err(reason) => return Ok(unattributed(&ask, reason.clone())),
            Ok(h) => h,
        };
        if let Some(reason) = coaz_mismatch(r, &holder.claims) {
            return Ok(unattributed(&ask, reason));
        }
        if decision::is_session_action(&ask.action) {
            return Ok(
                decision::session(s, holder, &ask, request_id(headers), crate::now()).await?,
            );
        }
        Ok(decision::decide(s, holder, &ask, request_id(headers), crate::now()).await?)
    }
}

/// AuthZEN access evaluation (Authorization API 1.0, section 6).
#[utoipa::path(post, path = "/access/v1/evaluation", tag = "decisions", request_body = EvaluationRequest,
    responses((status = 200, body = EvaluationResponse), (status = 400, body = Problem)))]
async fn evaluation(
    State(s): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<EvaluationRequest>,
) -> ApiResult<axum::Json<EvaluationResponse>> {
    let mut holders = Holders::new(&s, &headers, "/access/v1/evaluation")?;
    Ok(axum::Json(to_authzen(holders.decide(&req).await?)))
}

/// One item of a batch: any field left out is taken from the request's top level.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
pub struct EvaluationItem {
    pub subject: Option<Subject>,
    pub action: Option<Action>,
    pub resource: Option<Resource>,
    pub context: Option<serde_json::Map<String, serde_json::Value>>,
}

/// How a batch's evaluations are run and what they add up to (AuthZEN 1.0
/// section 7.1.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Semantic {
    /// Every evaluation runs; all must permit.
    #[default]
    ExecuteAll,
    /// `&&`: stop at the first deny; all must permit.
    DenyOnFirstDeny,
    /// `||`: stop at the first permit; one permit is enough.
    PermitOnFirstPermit,
}

impl Semantic {
    /// Does the batch stop after an evaluation that came out `permitted`?
    pub fn stops(self, permitted: bool) -> bool {
        match self {
            Semantic::ExecuteAll => false,
            Semantic::DenyOnFirstDeny => !permitted,
            Semantic::PermitOnFirstPermit => permitted,
        }
    }

    /// Do `decisions` (of a batch of `asked`) permit what the batch asked?
    /// The operator the semantic names: `||` for `permit_on_first_permit`,
    /// `&&` over every evaluation asked otherwise (a decision not made is
    /// not a permit).
    pub fn permits(self, asked: usize, decisions: &[bool]) -> bool {
        match self {
            Semantic::PermitOnFirstPermit => decisions.iter().any(|d| *d),
            _ => decisions.len() == asked && decisions.iter().all(|d| *d),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
pub struct EvaluationsOptions {
    #[serde(default)]
    pub evaluations_semantic: Semantic,
}

/// AuthZEN access evaluations (Authorization API 1.0, section 7).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct EvaluationsRequest {
    pub subject: Option<Subject>,
    pub action: Option<Action>,
    pub resource: Option<Resource>,
    pub context: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub evaluations: Vec<EvaluationItem>,
    #[serde(default)]
    pub options: EvaluationsOptions,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct EvaluationsResponse {
    pub evaluations: Vec<EvaluationResponse>,
}

/// At most this many evaluations per batch.
pub const MAX_BATCH: usize = 100;

/// One decision of a batch, with the top-level defaults applied (AuthZEN 1.0
/// section 7: an item's field replaces the default, it is not merged into it).
pub fn merged(
    top: &EvaluationsRequest,
    item: &EvaluationItem,
    i: usize,
) -> ApiResult<EvaluationRequest> {
    let missing = |what: &str| {
        Problem::bad_request(format!(
            "evaluations[{i}] has no {what} and the request sets no default {what}"
        ))
    };
    Ok(EvaluationRequest {
        subject: item
            .subject
            .clone()
            .or_else(|| top.subject.clone())
            .ok_or_else(|| missing("subject"))?,
        action: item
            .action
            .clone()
            .or_else(|| top.action.clone())
            .ok_or_else(|| missing("action"))?,
        resource: item
            .resource
            .clone()
            .or_else(|| top.resource.clone())
            .ok_or_else(|| missing("resource"))?,
        context: item
            .context
            .clone()
            .or_else(|| top.context.clone())
            .unwrap_or_default(),
    })
}

/// AuthZEN batch evaluation, with `execute_all`, `deny_on_first_deny` and
/// `permit_on_first_permit` semantics. With no `evaluations` it is one evaluation.
#[utoipa::path(post, path = "/access/v1/evaluations", tag = "decisions", request_body = EvaluationsRequest,
    responses((status = 200, body = EvaluationsResponse), (status = 400, body = Problem)))]
async fn evaluations(
    State(s): State<AppState>,
    headers: HeaderMap,
    Json(req): Json<EvaluationsRequest>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    if req.evaluations.len() > MAX_BATCH {
        return Err(Problem::bad_request(format!(
            "at most {MAX_BATCH} evaluations per request"
        )));
    }
    let mut holders = Holders::new(&s, &headers, "/access/v1/evaluations")?;
    if req.evaluations.is_empty() {
        // Section 7: without `evaluations` the request is a single evaluation.
        let one = merged(&req, &EvaluationItem::default(), 0)?;
        let r = to_authzen(holders.decide(&one).await?);
        return Ok(axum::Json(serde_json::to_value(r).unwrap_or_default()));
    }
    // Validate the whole batch before deciding anything.
    let items = req
        .evaluations
        .iter()
        .enumerate()
        .map(|(i, it)| merged(&req, it, i))
        .collect::<ApiResult<Vec<_>>>()?;
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        let r = to_authzen(holders.decide(item).await?);
        let stop = req.options.evaluations_semantic.stops(r.decision);
        out.push(r);
        if stop {
            break;
        }
    }
    Ok(axum::Json(
        serde_json::to_value(EvaluationsResponse { evaluations: out }).unwrap_or_default(),
    ))
}

/// AuthZEN PDP metadata (Authorization API 1.0, section 9), for this host.
#[utoipa::path(get, path = "/.well-known/authzen-configuration", tag = "decisions",
    responses((status = 200, body = serde_json::Value)))]
async fn configuration(headers: HeaderMap) -> axum::Json<serde_json::Value> {
    let base = Presented::new(&headers, "GET", "").url;
    axum::Json(serde_json::json!({
        "policy_decision_point": base,
        "access_evaluation_endpoint": format!("{base}/access/v1/evaluation"),
        "access_evaluations_endpoint": format!("{base}/access/v1/evaluations"),
    }))
}
