//! Trust in both directions: the OIDC issuers whose ID tokens prove humans
//! (`/v1/issuers`), and Mandate's own token-signing keys (`/v1/keys`).

use axum::extract::State;
use axum::http::StatusCode;
use mandate_core::credential;
use mandate_core::time::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::extract::{Admin, Json};
use crate::keyring::new_signing_key;
use crate::problem::{ApiResult, Problem};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(trust_issuer))
        .routes(routes!(list_keys))
        .routes(routes!(rotate_keys))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TrustIssuer {
    /// The issuer's `iss` exactly as its tokens carry it.
    issuer: String,
    /// Its public JWK set (RFC 7517). Private or symmetric keys are refused.
    #[schema(value_type = Object)]
    jwks: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TrustedIssuer {
    pub issuer: String,
    pub kids: Vec<String>,
}

/// Trust an OIDC issuer's ID tokens as proof of a human (or replace its keys).
#[utoipa::path(post, path = "/v1/issuers", tag = "keys", request_body = TrustIssuer,
    responses((status = 201, body = TrustedIssuer), (status = 422, body = Problem)), security(("admin" = [])))]
async fn trust_issuer(
    State(s): State<AppState>,
    admin: Admin,
    Json(t): Json<TrustIssuer>,
) -> ApiResult<(StatusCode, axum::Json<TrustedIssuer>)> {
    if !(t.issuer.starts_with("https://")
        || t.issuer.starts_with("http://127.0.0.1")
        || t.issuer.starts_with("http://localhost"))
    {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-value",
            format!(
                "issuer {:?} must be an https URL (http only on loopback)",
                t.issuer
            ),
        ));
    }
    let set = credential::parse_jwks(&t.jwks).map_err(|e| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-value",
            format!("jwks: {e}"),
        )
    })?;
    s.store
        .trust_issuer(&admin.change(), &t.issuer, &t.jwks)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(TrustedIssuer {
            issuer: t.issuer,
            kids: set
                .keys
                .iter()
                .filter_map(|k| k.common.key_id.clone())
                .collect(),
        }),
    ))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SigningKeyInfo {
    pub kid: String,
    pub created_at: Timestamp,
    pub active: bool,
    pub retired_at: Option<Timestamp>,
}

/// Mandate's token-signing keys (public facts only).
#[utoipa::path(get, path = "/v1/keys", tag = "keys", responses((status = 200, body = Vec<SigningKeyInfo>)), security(("admin" = [])))]
async fn list_keys(
    State(s): State<AppState>,
    _: Admin,
) -> ApiResult<axum::Json<Vec<SigningKeyInfo>>> {
    let keys = s.store.signing_keys().await?;
    Ok(axum::Json(
        keys.into_iter()
            .map(|k| SigningKeyInfo {
                kid: k.kid,
                created_at: k.created_at,
                active: k.active,
                retired_at: k.retired_at,
            })
            .collect(),
    ))
}

/// Rotate: a new key signs from now on; the old ones keep verifying (and stay
/// in the JWKS) until every token they signed has expired.
#[utoipa::path(post, path = "/v1/keys/rotate", tag = "keys", responses((status = 200, body = SigningKeyInfo)), security(("admin" = [])))]
async fn rotate_keys(
    State(s): State<AppState>,
    admin: Admin,
) -> ApiResult<axum::Json<SigningKeyInfo>> {
    let change = admin.change();
    let key = new_signing_key(s.keys.master(), change.at);
    s.store.rotate_signing_key(&change, &key).await?;
    s.keys.reload(s.store.as_ref()).await?;
    Ok(axum::Json(SigningKeyInfo {
        kid: key.kid,
        created_at: key.created_at,
        active: true,
        retired_at: None,
    }))
}
