//! Posture findings (`GET /v1/posture`): what an identity team should act
//! on, computed from the inventory, tasks, break-glass grants and gateway
//! secrets, as of now or of a given time, under adjustable thresholds.

use std::collections::BTreeMap;

use axum::extract::State;
use mandate_core::posture::{self, Facts, Finding, Thresholds};
use mandate_core::time::Timestamp;
use mandate_store::{AgentFilter, Page, PageRequest, ReviewFilter, StoreError, TaskFilter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::extract::{Admin, Query};
use crate::problem::{ApiResult, Problem};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_posture))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PostureQuery {
    /// Assess as of this time (RFC 3339); default now.
    at: Option<String>,
    dormant_days: Option<u32>,
    key_max_age_days: Option<u32>,
    secret_max_age_days: Option<u32>,
    usage_window_days: Option<u32>,
    max_depth: Option<u32>,
    max_width: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Posture {
    pub at: Timestamp,
    pub thresholds: Thresholds,
    /// Findings per kind.
    pub summary: BTreeMap<String, usize>,
    pub findings: Vec<Finding>,
}

/// Posture findings, most severe first, each with evidence, remediation,
/// OWASP NHI Top 10 (2025) id and NIST CSF 2.0 subcategory.
#[utoipa::path(get, path = "/v1/posture", tag = "agents", params(PostureQuery),
    responses((status = 200, body = Posture), (status = 400, body = Problem)), security(("admin" = [])))]
async fn get_posture(
    State(s): State<AppState>,
    _: Admin,
    Query(q): Query<PostureQuery>,
) -> ApiResult<axum::Json<Posture>> {
    let at = match &q.at {
        Some(t) => Timestamp::parse_rfc3339(t)
            .map_err(|_| Problem::bad_request(format!("at {t:?} is not an RFC 3339 time")))?,
        None => crate::now(),
    };
    let d = Thresholds::default();
    let thresholds = Thresholds {
        dormant_days: q.dormant_days.unwrap_or(d.dormant_days),
        key_max_age_days: q.key_max_age_days.unwrap_or(d.key_max_age_days),
        secret_max_age_days: q.secret_max_age_days.unwrap_or(d.secret_max_age_days),
        usage_window_days: q.usage_window_days.unwrap_or(d.usage_window_days),
        max_depth: q.max_depth.unwrap_or(d.max_depth),
        max_width: q.max_width.unwrap_or(d.max_width),
    };
    Ok(axum::Json(assess(&s, at, thresholds).await?))
}

/// Posture as of `at` under `thresholds`, over every agent, task, unreviewed
/// break-glass grant and gateway secret: the one assessment the API and the
/// web console show.
pub async fn assess(
    s: &AppState,
    at: Timestamp,
    thresholds: Thresholds,
) -> Result<Posture, StoreError> {
    let store = s.store.as_ref();
    let (agents, tasks) = (&AgentFilter::default(), &TaskFilter::default());
    let inventory = all_pages(|p| async move { store.inventory(agents, &p, at).await }).await?;
    let tasks = all_pages(|p| async move { store.list_tasks(tasks, &p).await }).await?;
    let breakglass = store.list_breakglass(true).await?;
    let secrets = store.list_secrets().await?;
    let reviews = store
        .list_reviews(&ReviewFilter {
            owner: None,
            incomplete: true,
        })
        .await?;
    let facts = Facts {
        inventory: &inventory,
        tasks: &tasks,
        breakglass: &breakglass,
        secrets: &secrets,
        reviews: &reviews,
    };
    let findings = posture::assess(&facts, &thresholds, at);
    let mut summary = BTreeMap::new();
    for f in &findings {
        *summary.entry(f.kind.as_str().to_owned()).or_insert(0) += 1;
    }
    Ok(Posture {
        at,
        thresholds,
        summary,
        findings,
    })
}

/// Every item of a paged listing, a page of the largest size at a time.
pub(crate) async fn all_pages<T, F, Fut>(mut fetch: F) -> Result<Vec<T>, StoreError>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>, StoreError>>,
{
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = fetch(PageRequest {
            after,
            limit: mandate_store::MAX_PAGE,
        })
        .await?;
        out.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(out),
        }
    }
}
