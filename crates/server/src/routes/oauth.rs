//! The authorization server: token exchange (RFC 8693) that creates tasks,
//! introspection (RFC 7662), revocation (RFC 7009), the JWKS and the
//! RFC 8414 metadata.
//!
//! OAuth endpoints answer errors in the OAuth shape (`error`,
//! `error_description`), as clients of these RFCs expect; a store outage is
//! still a 503 problem+json.

use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mandate_core::admin::AdminToken;
use mandate_core::audit::Actor;
use mandate_core::credential::{
    self, DETAIL_TYPE, GRANT_TOKEN_EXCHANGE, GrantedDetail, RequestedDetail, TOKEN_TYPE_ACCESS,
    TOKEN_TYPE_ID, TOKEN_TYPE_JWT, TaskClaims,
};
use mandate_core::delegation::{self, DelegationError};
use mandate_core::ids::{HumanId, TaskId};
use mandate_core::time::Timestamp;
use mandate_store::{Change, NewTask, StoreError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::access::{self, Presented, Refusal};
use crate::problem::Problem;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(token))
        .routes(routes!(introspect))
        .routes(routes!(revoke))
        .routes(routes!(jwks))
        .routes(routes!(metadata))
}

pub const TOKEN_PATH: &str = "/oauth2/token";

/// An RFC 6749 §5.2 error.
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthError {
    #[serde(skip)]
    status: StatusCode,
    error: &'static str,
    error_description: String,
}

impl OAuthError {
    pub fn new(error: &'static str, description: impl Into<String>) -> Self {
        let status = if error == "invalid_client" {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        OAuthError {
            status,
            error,
            error_description: description.into(),
        }
    }

    fn invalid_request(description: impl Into<String>) -> Self {
        Self::new("invalid_request", description)
    }
}

fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// An OAuth error, or a problem when the failure is the server's.
pub enum Failure {
    OAuth(OAuthError),
    Problem(Problem),
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::OAuth(e) => no_store((e.status, axum::Json(&e)).into_response()),
            Failure::Problem(p) => p.into_response(),
        }
    }
}

impl From<OAuthError> for Failure {
    fn from(e: OAuthError) -> Self {
        Failure::OAuth(e)
    }
}

impl From<DelegationError> for Failure {
    fn from(e: DelegationError) -> Self {
        Failure::OAuth(OAuthError::new(e.oauth_code(), e.to_string()))
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match e {
            // Replays, a parent ended meanwhile, an agent suspended meanwhile.
            StoreError::Rule(r) => Failure::OAuth(OAuthError::invalid_request(r.to_string())),
            StoreError::NotFound(what) => {
                Failure::OAuth(OAuthError::invalid_request(format!("{what} not found")))
            }
            other => Failure::Problem(other.into()),
        }
    }
}

impl From<Refusal> for Failure {
    fn from(e: Refusal) -> Self {
        match e {
            Refusal::Store(s) => s.into(),
            other => Failure::OAuth(OAuthError::invalid_request(other.to_string())),
        }
    }
}

/// `axum::Form`, but a bad body is an OAuth `invalid_request`.
pub struct OAuthForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OAuthForm<T> {
    type Rejection = Failure;

    async fn from_request(req: Request, state: &S) -> Result<Self, Failure> {
        axum::Form::<T>::from_request(req, state)
            .await
            .map(|f| OAuthForm(f.0))
            .map_err(|e: FormRejection| {
                OAuthError::invalid_request(format!(
                    "send an application/x-www-form-urlencoded body: {}",
                    e.body_text()
                ))
                .into()
            })
    }
}

/// RFC 8693 token exchange request, with RFC 9396 `authorization_details`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenForm {
    /// `urn:ietf:params:oauth:grant-type:token-exchange`
    grant_type: String,
    /// The human's ID token (type id_token or jwt), or the parent task's token (type access_token).
    subject_token: Option<String>,
    subject_token_type: Option<String>,
    /// The acting agent's RFC 7523 assertion.
    actor_token: Option<String>,
    actor_token_type: Option<String>,
    /// JSON array of `mandate_task` entries: purpose, actions, resources, limits.
    authorization_details: Option<String>,
    /// Requested lifetime in seconds; capped by the parent's expiry and the server maximum.
    requested_ttl: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub issued_token_type: String,
    /// `DPoP` when the token is bound to a key, else `Bearer`.
    pub token_type: String,
    pub expires_in: i64,
    pub task_id: TaskId,
    pub authorization_details: Vec<GrantedDetail>,
}

fn required<'a>(v: &'a Option<String>, name: &str) -> Result<&'a str, OAuthError> {
    v.as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| OAuthError::invalid_request(format!("{name} is required")))
}

/// Who stands behind a new task: a human directly, or a live parent task.
enum Origin {
    Human(HumanId),
    Parent(Box<access::Verified>),
}

/// Exchange a human's ID token (or a parent task token) and an agent's
/// assertion for a task-scoped token; creates the task.
#[utoipa::path(post, path = "/oauth2/token", tag = "oauth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = TokenResponse), (status = 400, body = OAuthError), (status = 503, body = Problem)))]
async fn token(
    State(s): State<AppState>,
    headers: HeaderMap,
    OAuthForm(f): OAuthForm<TokenForm>,
) -> Result<Response, Failure> {
    let now = crate::now();
    if f.grant_type != GRANT_TOKEN_EXCHANGE {
        return Err(OAuthError::new(
            "unsupported_grant_type",
            format!("only {GRANT_TOKEN_EXCHANGE} is supported"),
        )
        .into());
    }
    let subject = required(&f.subject_token, "subject_token")?;
    let actor = required(&f.actor_token, "actor_token")?;
    if f.actor_token_type
        .as_deref()
        .is_some_and(|t| t != TOKEN_TYPE_JWT)
    {
        return Err(OAuthError::invalid_request(format!(
            "actor_token_type must be {TOKEN_TYPE_JWT}"
        ))
        .into());
    }
    let details: Vec<RequestedDetail> =
        serde_json::from_str(required(&f.authorization_details, "authorization_details")?)
            .map_err(|e| OAuthError::invalid_request(format!("authorization_details: {e}")))?;
    let ttl_ms = match f.requested_ttl {
        Some(t) if t <= 0 => {
            return Err(OAuthError::invalid_request(
                "requested_ttl must be a positive number of seconds",
            )
            .into());
        }
        Some(t) => Some(t.saturating_mul(1000)),
        None => None,
    };
    let request = credential::task_request(&details, ttl_ms)?;
    let presented = Presented::new(&headers, "POST", TOKEN_PATH);

    let (agent, assertion) = access::verify_agent(&s, actor, now)
        .await
        .map_err(|e| with_context("actor_token", e))?;
    let origin = match f.subject_token_type.as_deref() {
        Some(TOKEN_TYPE_ID) | Some(TOKEN_TYPE_JWT) => Origin::Human(
            access::verify_human(&s, subject, now)
                .await
                .map_err(|e| with_context("subject_token", e))?
                .id,
        ),
        Some(TOKEN_TYPE_ACCESS) => Origin::Parent(Box::new(
            access::verify_task_token(&s, subject, now)
                .await
                .map_err(|e| with_context("subject_token", e))?,
        )),
        _ => {
            return Err(OAuthError::invalid_request(format!(
                "subject_token_type must be {TOKEN_TYPE_ID} or {TOKEN_TYPE_JWT} (a human's ID token) \
                 or {TOKEN_TYPE_ACCESS} (a parent task token)"
            ))
            .into());
        }
    };
    // A bound parent may only be delegated by its key holder: the proof must
    // carry the parent's `ath` and key, and the child is bound to that key.
    let proof = match &origin {
        Origin::Parent(p) if p.claims.cnf.is_some() => {
            let proof = access::dpop_proof(&s, &presented, Some(subject), now)
                .await?
                .ok_or(Refusal::DpopMissing)
                .map_err(|e| with_context("subject_token", e))?;
            if p.claims.cnf.as_ref().map(|c| &c.jkt) != Some(&proof.jkt) {
                return Err(with_context("subject_token", Refusal::DpopMismatch));
            }
            Some(proof)
        }
        _ => access::dpop_proof(&s, &presented, None, now).await?,
    };

    let (granted, initiator, previous, parent) = match &origin {
        Origin::Human(h) => (
            delegation::grant_root(&request, &agent, now, s.bounds)?,
            *h,
            None,
            None,
        ),
        Origin::Parent(p) => (
            delegation::grant_child(&p.task, &request, &agent, now, s.bounds)?,
            p.task.initiator,
            Some(&p.claims.act),
            Some(&p.task),
        ),
    };
    let issued = crate::issuance::issue(
        &s,
        &agent,
        &request.purpose,
        granted,
        initiator,
        previous,
        parent,
        proof.map(|p| p.jkt),
        now,
    );
    let change = Change {
        actor: Actor::Agent {
            id: agent.id,
            spiffe_id: agent.spiffe_id.to_string(),
        },
        at: now,
        request_id: crate::extract::request_id(&headers),
    };
    let new = NewTask {
        single_use: vec![(
            format!("assertion:{}:{}", agent.spiffe_id, assertion.jti),
            Timestamp::from_millis(assertion.exp.saturating_mul(1000)),
        )],
        ..issued.record
    };
    s.store.create_task(&change, &new).await?;
    Ok(no_store(axum::Json(issued.response).into_response()))
}

fn with_context(which: &str, e: Refusal) -> Failure {
    match e {
        Refusal::Store(s) => s.into(),
        other => OAuthError::invalid_request(format!("{which}: {other}")).into(),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenParam {
    token: String,
    #[allow(dead_code)]
    token_type_hint: Option<String>,
}

/// RFC 7662 answer. Inactive tokens carry nothing but `active: false`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub claims: Option<TaskClaims>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// Why the token is inactive (Mandate extension; absent when active).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Whether a token is live right now: signature, expiry, revocation and the
/// task's state. Requires an admin credential (RFC 7662 §2.1 wants the
/// caller authenticated, so tokens cannot be probed anonymously).
#[utoipa::path(post, path = "/oauth2/introspect", tag = "oauth",
    request_body(content = TokenParam, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = Introspection), (status = 401, body = Problem)), security(("admin" = [])))]
async fn introspect(
    State(s): State<AppState>,
    _: crate::extract::Admin,
    OAuthForm(f): OAuthForm<TokenParam>,
) -> Result<Response, Failure> {
    let answer = match access::verify_task_token(&s, &f.token, crate::now()).await {
        Ok(v) => Introspection {
            active: true,
            token_type: Some(
                if v.claims.cnf.is_some() {
                    "DPoP"
                } else {
                    "Bearer"
                }
                .into(),
            ),
            claims: Some(v.claims),
            reason: None,
        },
        Err(Refusal::Store(e)) => return Err(e.into()),
        Err(e) => Introspection {
            active: false,
            claims: None,
            token_type: None,
            reason: Some(e.to_string()),
        },
    };
    Ok(no_store(axum::Json(answer).into_response()))
}

/// Revoke one task token (RFC 7009). Holding the token is the authority to
/// revoke it; as the RFC asks, an unknown or invalid token also gets 200.
#[utoipa::path(post, path = "/oauth2/revoke", tag = "oauth",
    request_body(content = TokenParam, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200), (status = 503, body = Problem)))]
async fn revoke(
    State(s): State<AppState>,
    headers: HeaderMap,
    OAuthForm(f): OAuthForm<TokenParam>,
) -> Result<Response, Failure> {
    let now = crate::now();
    if AdminToken::parse(&f.token).is_ok() {
        return Err(OAuthError::new(
            "unsupported_token_type",
            "admin credentials are not revoked here",
        )
        .into());
    }
    let claims = match access::verify_signature(&s, &f.token, now).await {
        Ok(c) => c,
        Err(Refusal::Store(e)) => return Err(e.into()),
        Err(_) => return Ok(no_store(StatusCode::OK.into_response())),
    };
    let Some(cred) = s.store.credential(&claims.jti).await? else {
        return Ok(no_store(StatusCode::OK.into_response()));
    };
    let change = Change {
        actor: Actor::Agent {
            id: cred.agent,
            spiffe_id: claims.client_id.clone(),
        },
        at: now,
        request_id: crate::extract::request_id(&headers),
    };
    s.store.revoke_credential(&change, &claims.jti).await?;
    Ok(no_store(StatusCode::OK.into_response()))
}

/// The public keys that verify Mandate's task tokens (RFC 7517).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "oauth", responses((status = 200, body = Object)))]
async fn jwks(State(s): State<AppState>) -> Result<axum::Json<serde_json::Value>, Problem> {
    // Pick up a rotation made on another node.
    s.keys.reload(s.store.as_ref()).await?;
    Ok(axum::Json(s.keys.jwks(crate::now())))
}

/// Authorization server metadata (RFC 8414). Endpoint URLs follow the
/// address the client used, so they work behind a proxy or on loopback.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "oauth", responses((status = 200, body = Object)))]
async fn metadata(State(s): State<AppState>, headers: HeaderMap) -> axum::Json<serde_json::Value> {
    let base = Presented::new(&headers, "GET", "").url;
    axum::Json(serde_json::json!({
        "issuer": s.install.issuer,
        "token_endpoint": format!("{base}{TOKEN_PATH}"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "introspection_endpoint": format!("{base}/oauth2/introspect"),
        "revocation_endpoint": format!("{base}/oauth2/revoke"),
        "grant_types_supported": [GRANT_TOKEN_EXCHANGE],
        "token_endpoint_auth_methods_supported": ["none"],
        "dpop_signing_alg_values_supported": ["EdDSA", "ES256"],
        "authorization_details_types_supported": [DETAIL_TYPE],
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA"],
        "subject_token_types_supported": [TOKEN_TYPE_ID, TOKEN_TYPE_JWT, TOKEN_TYPE_ACCESS],
    }))
}
