//! `/v1/policies`: the policy-as-code versions decisions are made under.
//!
//! A pushed set is validated against Mandate's Cedar schema before anything
//! is stored; a refused set changes nothing (the active version keeps
//! serving) and the answer lists every problem with its line and column.
//! Versions are immutable and named by the SHA-256 of their text.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use mandate_policy::{PolicyError, PolicyInfo, PolicySet};
use mandate_store::PolicyVersion;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::extract::{Admin, Json};
use crate::problem::{ApiResult, Problem};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(push, list))
        .routes(routes!(validate))
        .routes(routes!(show))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyText {
    /// The Cedar policy set.
    pub text: String,
}

/// One policy of a version.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicySummary {
    pub id: String,
    pub effect: String,
    pub annotations: std::collections::BTreeMap<String, String>,
    pub line: u32,
}

/// A stored policy set version.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionOut {
    pub version: i64,
    pub hash: String,
    pub active: bool,
    pub pushed_at: mandate_core::time::Timestamp,
    pub pushed_by: mandate_core::audit::Actor,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<PolicySummary>>,
    /// Non-fatal findings of validation.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub warnings: Vec<String>,
}

fn summaries(set: &PolicySet) -> Vec<PolicySummary> {
    set.policies()
        .iter()
        .map(|p: &PolicyInfo| PolicySummary {
            id: p.id.clone(),
            effect: format!("{:?}", p.effect).to_lowercase(),
            annotations: p.annotations.clone(),
            line: p.location.line,
        })
        .collect()
}

fn version_out(v: PolicyVersion, with_text: bool) -> VersionOut {
    let policies = with_text
        .then(|| PolicySet::parse(&v.text).ok().map(|s| summaries(&s)))
        .flatten();
    VersionOut {
        version: v.version,
        hash: v.hash,
        active: v.active,
        pushed_at: v.pushed_at,
        pushed_by: v.pushed_by,
        text: with_text.then_some(v.text),
        policies,
        warnings: Vec::new(),
    }
}

/// A refused set: 422 with every problem (kind, policy, line, column, message).
pub fn refused(e: PolicyError) -> Problem {
    let detail = format!("the policy set is invalid: {e}");
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-policy", detail)
        .with_errors(serde_json::to_value(&e.problems).unwrap_or_default())
}

fn parse(text: &str) -> ApiResult<PolicySet> {
    PolicySet::parse(text).map_err(refused)
}

/// Validate a policy set against the schema without storing it.
#[utoipa::path(post, path = "/v1/policies/validate", tag = "policies", request_body = PolicyText,
    responses((status = 200, body = VersionOut), (status = 422, body = Problem)), security(("admin" = [])))]
async fn validate(
    _: Admin,
    Json(body): Json<PolicyText>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let set = parse(&body.text)?;
    Ok(axum::Json(serde_json::json!({
        "valid": true,
        "hash": set.hash(),
        "policies": summaries(&set),
        "warnings": set.warnings().iter().map(ToString::to_string).collect::<Vec<_>>(),
    })))
}

/// Push a policy set: validated, stored as an immutable version, made active.
/// Pushing an older version's text again rolls back to it.
#[utoipa::path(post, path = "/v1/policies", tag = "policies", request_body = PolicyText,
    responses((status = 201, body = VersionOut), (status = 422, body = Problem)), security(("admin" = [])))]
async fn push(
    State(s): State<AppState>,
    admin: Admin,
    Json(body): Json<PolicyText>,
) -> ApiResult<(StatusCode, axum::Json<VersionOut>)> {
    let set = parse(&body.text)?;
    let stored = s
        .store
        .activate_policy(&admin.change(), set.hash(), set.text())
        .await?;
    let warnings = set.warnings().iter().map(ToString::to_string).collect();
    let policies = summaries(&set);
    s.policy.replace(set);
    let mut out = version_out(stored, false);
    out.policies = Some(policies);
    out.warnings = warnings;
    Ok((StatusCode::CREATED, axum::Json(out)))
}

/// Every version, newest first.
#[utoipa::path(get, path = "/v1/policies", tag = "policies",
    responses((status = 200, body = Vec<VersionOut>)), security(("admin" = [])))]
async fn list(State(s): State<AppState>, _: Admin) -> ApiResult<axum::Json<Vec<VersionOut>>> {
    let all = s.store.policy_versions().await?;
    Ok(axum::Json(
        all.into_iter().map(|v| version_out(v, false)).collect(),
    ))
}

/// One version with its text: by hash, a unique hash prefix, or `active`.
#[utoipa::path(get, path = "/v1/policies/{version}", tag = "policies", params(("version" = String, Path)),
    responses((status = 200, body = VersionOut), (status = 404, body = Problem)), security(("admin" = [])))]
async fn show(
    State(s): State<AppState>,
    _: Admin,
    Path(key): Path<String>,
) -> ApiResult<axum::Json<VersionOut>> {
    let v = if key == "active" {
        s.store
            .active_policy()
            .await?
            .ok_or_else(|| Problem::not_found("no policy set is active yet; push one"))?
    } else {
        s.store.policy_version(&key).await?.ok_or_else(|| {
            Problem::not_found(format!(
                "no policy version {key:?} (a hash, a unique prefix of 8+ hex digits, or `active`)"
            ))
        })?
    };
    Ok(axum::Json(version_out(v, true)))
}
