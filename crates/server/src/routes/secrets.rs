//! Downstream secrets the gateway injects (`/v1/secrets`): stored sealed,
//! rotated in place, never returned.

use axum::extract::{Path, State};
use mandate_core::secret::{SealedSecret, SecretInfo, SecretName, SecretValue};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::extract::{Admin, Json};
use crate::install::random;
use crate::problem::{ApiResult, Problem};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_secret))
        .routes(routes!(list_secrets))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PutSecret {
    /// The API key or bearer token, printable ASCII. Never returned or logged.
    value: String,
}

/// Store a secret, or rotate it: the gateway uses the new value from its
/// next request, and agents are not touched.
#[utoipa::path(put, path = "/v1/secrets/{name}", tag = "secrets", request_body = PutSecret,
    params(("name" = String, Path, description = "Secret name, e.g. billing-api-key")),
    responses((status = 200, body = SecretInfo), (status = 422, body = Problem)), security(("admin" = [])))]
async fn put_secret(
    State(s): State<AppState>,
    admin: Admin,
    Path(name): Path<String>,
    Json(body): Json<PutSecret>,
) -> ApiResult<axum::Json<SecretInfo>> {
    let name = SecretName::parse(&name).map_err(Problem::from)?;
    let value = SecretValue::new(body.value).map_err(Problem::from)?;
    let sealed = SealedSecret::seal(s.keys.master(), name, &value, random());
    let info = s.store.store_secret(&admin.change(), &sealed).await?;
    Ok(axum::Json(info))
}

/// The stored secrets: names, versions and dates, never values.
#[utoipa::path(get, path = "/v1/secrets", tag = "secrets",
    responses((status = 200, body = Vec<SecretInfo>)), security(("admin" = [])))]
async fn list_secrets(
    State(s): State<AppState>,
    _admin: Admin,
) -> ApiResult<axum::Json<Vec<SecretInfo>>> {
    Ok(axum::Json(s.store.list_secrets().await?))
}
