//! Request extractors whose rejections are problem details, plus the admin
//! authentication extractor.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use mandate_core::admin::AdminToken;
use mandate_core::audit::Actor;
use mandate_store::Change;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::problem::Problem;

/// `axum::Json`, but a bad body is a problem+json with the parser's detail.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(e) => Err(json_problem(e)),
        }
    }
}

fn json_problem(e: JsonRejection) -> Problem {
    let status = e.status();
    let slug = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body-too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        _ => "invalid-body",
    };
    let detail = match &e {
        JsonRejection::MissingJsonContentType(_) => {
            "send the body as JSON with Content-Type: application/json".into()
        }
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => {
            format!(
                "the request body is larger than the {} byte limit",
                crate::MAX_BODY_BYTES
            )
        }
        // axum prefixes serde's precise message with boilerplate; keep the precise part.
        _ => {
            let text = e.body_text();
            text.split_once(": ")
                .filter(|(head, _)| head.starts_with("Failed to"))
                .map(|(_, t)| t.to_owned())
                .unwrap_or(text)
        }
    };
    Problem::new(status, slug, detail)
}

/// `axum::extract::Query` with problem+json rejections.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e: QueryRejection| Problem::bad_request(e.body_text()))
    }
}

/// A request made with a valid admin credential.
pub struct Admin {
    pub actor: Actor,
    pub request_id: Option<String>,
}

impl Admin {
    /// The audit context for a change made now by this admin.
    pub fn change(&self) -> Change {
        Change {
            actor: self.actor.clone(),
            at: crate::now(),
            request_id: self.request_id.clone(),
        }
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            Problem::unauthorized(
                "missing admin credential: send Authorization: Bearer <admin token>",
            )
        })?;
        let value = header.to_str().unwrap_or_default();
        let token = value
            .strip_prefix("Bearer ")
            .and_then(|t| AdminToken::parse(t.trim()).ok())
            .ok_or_else(|| {
                Problem::unauthorized(
                    "the Authorization header does not carry a Mandate admin token",
                )
            })?;
        let stored = state.store.admin_credential(token.id()).await?;
        // Unknown id and wrong secret get the same answer.
        match stored {
            Some(hash) if token.matches(&hash) => Ok(Admin {
                actor: Actor::Admin {
                    credential: token.id(),
                },
                request_id: request_id(&parts.headers),
            }),
            _ => Err(Problem::unauthorized("the admin credential is not valid")),
        }
    }
}

/// The request id (see [`crate::observe`]), bounded for the audit record.
pub fn request_id(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(&crate::observe::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(128).collect())
}
