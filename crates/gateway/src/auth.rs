//! Who is calling: every request to the gateway carries a task credential
//! (Bearer, plus a DPoP proof when the token is bound), checked by Mandate's
//! own pipeline. Without a genuine one the answer is 401 with the pointer to
//! the protected-resource metadata (RFC 9728) that names Mandate as the
//! authorization server, as the MCP authorization specification expects.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mandate_server::access::{Presented, bearer_token};
use mandate_server::decision::{self, Holder};
use mandate_server::problem::Problem;
use serde_json::json;

use crate::Gateway;

/// The authenticated caller of one request (in the request's extensions):
/// who holds the token, and the token itself, which only a decision point
/// configured with `send_task_token` ever sees (Mandate as the PDP verifies
/// it again; see `decision_point`).
#[derive(Clone)]
pub(crate) struct Caller(pub Arc<Holder>, pub Arc<str>);

pub(crate) async fn authenticate(
    State(gw): State<Arc<Gateway>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(token) = bearer_token(req.headers()) else {
        return unauthorized(&gw, None);
    };
    let presented = Presented::new(req.headers(), req.method().as_str(), req.uri().path());
    match decision::authenticate(&gw.app, token, &presented, mandate_server::now()).await {
        Err(e) => Problem::from(e).into_response(),
        Ok(Err(reason)) => unauthorized(&gw, Some(&reason.message)),
        Ok(Ok(holder)) => {
            let token = Arc::from(token);
            req.extensions_mut().insert(Caller(Arc::new(holder), token));
            next.run(req).await
        }
    }
}

/// 401 with `WWW-Authenticate` naming the metadata (RFC 9728 section 5.1).
fn unauthorized(gw: &Gateway, why: Option<&str>) -> Response {
    let metadata = format!(
        "{}/.well-known/oauth-protected-resource",
        gw.config.public_url.trim_end_matches('/')
    );
    let mut challenge = format!("Bearer resource_metadata=\"{metadata}\"");
    if let Some(why) = why {
        // RFC 6750's error_description allows no '"' or '\'.
        let why: String = why
            .chars()
            .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
            .collect();
        challenge.push_str(&format!(
            ", error=\"invalid_token\", error_description=\"{why}\""
        ));
    }
    let detail = match why {
        Some(why) => format!("the task token was refused: {why}"),
        None => "send a task token as Authorization: Bearer <token> (get one from Mandate; see the WWW-Authenticate header)".into(),
    };
    let mut res = Problem::unauthorized(detail).into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    res
}

/// OAuth 2.0 Protected Resource Metadata (RFC 9728) for the gateway.
pub(crate) async fn metadata(State(gw): State<Arc<Gateway>>) -> Response {
    let body = json!({
        "resource": gw.resource,
        "authorization_servers": [gw.config.authorization_server.trim_end_matches('/')],
        "bearer_methods_supported": ["header"],
        "dpop_signing_alg_values_supported": ["EdDSA"],
        "resource_name": "Mandate gateway",
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}
