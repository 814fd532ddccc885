//! One module per page. Handlers read through the server's functions and
//! the store, check what the viewer may see, and render with `maud`.

pub mod approvals;
pub mod audit;
pub mod inventory;
pub mod posture;
pub mod roai;
pub mod sign_in;
pub mod tasks;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::Redirect;
use mandate_core::time::Timestamp;
use serde::de::DeserializeOwned;

use crate::auth::Viewer;
use crate::error::ConsoleError;

/// `/ui`: the first page the viewer has something on.
pub async fn home(v: Viewer) -> Redirect {
    let to = if v.roles.reads_all() || v.roles.owner {
        "/ui/inventory"
    } else if v.roles.approver {
        "/ui/approvals"
    } else {
        "/ui/roai"
    };
    Redirect::to(to)
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `k=v&...` of the given (non-blank) values, percent-encoded: the query
/// a filtered page passes on to its next page or export.
pub fn query_string(pairs: &[(&str, &Option<String>)]) -> String {
    pairs
        .iter()
        .filter_map(|(k, v)| given(v).map(|v| format!("{k}={}", urlencode(v))))
        .collect::<Vec<_>>()
        .join("&")
}

/// A time as people read it: `2026-12-01 07:22 UTC`.
pub fn when(t: Timestamp) -> String {
    let s = t.rfc3339();
    match (s.get(..10), s.get(11..16)) {
        (Some(d), Some(hm)) => format!("{d} {hm} UTC"),
        _ => s,
    }
}

/// Whole days from `t` to `now`.
pub fn days_since(t: Timestamp, now: Timestamp) -> i64 {
    (now.as_millis() - t.as_millis()).max(0) / 86_400_000
}

/// Query parameters; a malformed query is a 400 page saying what is wrong.
pub struct Q<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Q<T> {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, s: &S) -> Result<Self, ConsoleError> {
        axum::extract::Query::<T>::from_request_parts(parts, s)
            .await
            .map(|q| Q(q.0))
            .map_err(|e| ConsoleError::BadRequest(e.body_text()))
    }
}

/// A posted form, from a page of this console (same origin when the
/// browser says); a malformed body is a 400 page.
pub struct F<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for F<T> {
    type Rejection = ConsoleError;

    async fn from_request(req: Request, s: &S) -> Result<Self, ConsoleError> {
        if !crate::security::same_origin(req.headers()) {
            return Err(ConsoleError::Forbidden(
                "this form was posted from another site; use the console's own pages".into(),
            ));
        }
        axum::extract::Form::<T>::from_request(req, s)
            .await
            .map(|f| F(f.0))
            .map_err(|e| ConsoleError::BadRequest(e.body_text()))
    }
}

/// An empty query value means "not given", as a blank filter field does.
pub fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}
