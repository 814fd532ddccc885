//! Why a console request was refused, as a page a person can act on.
//!
//! The console answers browsers, so its errors are HTML pages with the same
//! precise detail the API puts in its problem documents (the API itself
//! keeps answering RFC 9457 problem+json).

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use mandate_server::problem::Problem;
use mandate_store::StoreError;

use crate::layout;

#[derive(Debug)]
pub enum ConsoleError {
    /// Not signed in: go to the sign-in page, then back to `next`.
    SignIn {
        next: Option<String>,
    },
    BadRequest(String),
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    /// The store is away (503) or something failed (500); the detail is
    /// safe to show.
    Unavailable(String),
    Internal,
}

impl From<Problem> for ConsoleError {
    fn from(p: Problem) -> Self {
        match p.status() {
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
                ConsoleError::BadRequest(p.detail)
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ConsoleError::Forbidden(p.detail),
            StatusCode::NOT_FOUND => ConsoleError::NotFound(p.detail),
            StatusCode::CONFLICT | StatusCode::PAYLOAD_TOO_LARGE => {
                ConsoleError::Conflict(p.detail)
            }
            StatusCode::SERVICE_UNAVAILABLE => ConsoleError::Unavailable(p.detail),
            _ => ConsoleError::Internal,
        }
    }
}

impl From<StoreError> for ConsoleError {
    fn from(e: StoreError) -> Self {
        Problem::from(e).into()
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, title, detail) = match self {
            ConsoleError::SignIn { next } => {
                let to = match next {
                    Some(n) => format!("/ui/sign-in?next={}", crate::pages::urlencode(&n)),
                    None => "/ui/sign-in".to_owned(),
                };
                return (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
            }
            ConsoleError::BadRequest(d) => (StatusCode::BAD_REQUEST, "Bad request", d),
            ConsoleError::Forbidden(d) => (StatusCode::FORBIDDEN, "Not allowed", d),
            ConsoleError::NotFound(d) => (StatusCode::NOT_FOUND, "Not found", d),
            ConsoleError::Conflict(d) => (StatusCode::CONFLICT, "Conflict", d),
            ConsoleError::Unavailable(d) => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable", d),
            ConsoleError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error",
                "an internal error occurred; see the server log".to_owned(),
            ),
        };
        (status, layout::message_page(title, &detail)).into_response()
    }
}
