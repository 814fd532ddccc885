//! Sign-in with an ID token from a trusted OIDC issuer, and sign-out.
//!
//! The sign-in form itself is protected against cross-site posting: opening
//! it starts an anonymous session whose CSRF token the form carries. A
//! successful sign-in ends that session and starts a new one for the human
//! (new id, new token). The ID token is verified by the API's own
//! [`mandate_server::access::verify_human`]: signature by a key of a trusted
//! issuer, audience, expiry, and an active registered human. It is never
//! stored, logged or echoed back.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::{F, Q};
use crate::Console;
use crate::auth::{Viewer, safe_next};
use crate::error::ConsoleError;
use crate::layout;
use crate::security;
use crate::session::SessionView;

/// Longest ID token accepted (real ones are a few KiB).
const MAX_TOKEN: usize = 16 * 1024;

#[derive(Deserialize)]
pub struct Next {
    next: Option<String>,
}

fn render(session: &SessionView, next: Option<&str>, error: Option<&str>) -> Response {
    let body = html! {
        @if let Some(e) = error {
            p.error role="alert" #sign-in-error { (e) }
        }
        p {
            "Sign in with an ID token from an identity provider this Mandate trusts. "
            "Your human record (issuer and subject) must be registered and active; "
            "your roles decide what you see."
        }
        form.stack method="post" action="/ui/sign-in" {
            input type="hidden" name="csrf" value=(session.csrf);
            @if let Some(n) = next {
                input type="hidden" name="next" value=(n);
            }
            label for="id_token" { "ID token (a JWT)" }
            textarea #id_token name="id_token" required autocomplete="off" spellcheck="false"
                aria-describedby="token-help" {}
            p.note #token-help {
                "For the demo issuer: " code { "mandate dev-issuer token --subject carol" }
                " prints one (valid 5 minutes; the session lasts longer)."
            }
            div { button type="submit" #sign-in { "Sign in" } }
        }
    };
    layout::bare_page("Sign in", body).into_response()
}

/// The anonymous session behind the form, made if the request has none.
fn anonymous(c: &Console, headers: &HeaderMap) -> (SessionView, Option<String>) {
    if let Some(id) = security::session_id(headers)
        && let Some(s) = c.sessions.get(&id)
        && s.human.is_none()
    {
        return (s, None);
    }
    let (id, s) = c.sessions.create(None);
    (s, Some(id))
}

fn with_cookie(
    c: &Console,
    headers: &HeaderMap,
    id: Option<String>,
    mut res: Response,
) -> Response {
    if let Some(id) = id {
        let max_age = c.sessions.config().absolute.as_secs();
        if let Ok(v) = security::session_cookie(headers, &id, max_age).parse() {
            res.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    res
}

pub async fn form(
    axum::extract::State(c): axum::extract::State<Console>,
    headers: HeaderMap,
    Q(q): Q<Next>,
) -> Response {
    let next = q.next.as_deref().and_then(safe_next);
    if let Some(id) = security::session_id(&headers)
        && c.sessions.get(&id).is_some_and(|s| s.human.is_some())
    {
        return Redirect::to(next.unwrap_or("/ui")).into_response();
    }
    let (session, new_id) = anonymous(&c, &headers);
    with_cookie(&c, &headers, new_id, render(&session, next, None))
}

#[derive(Deserialize)]
pub struct SignIn {
    csrf: Option<String>,
    id_token: Option<String>,
    next: Option<String>,
}

pub async fn submit(
    axum::extract::State(c): axum::extract::State<Console>,
    headers: HeaderMap,
    F(f): F<SignIn>,
) -> Response {
    let next = f.next.as_deref().and_then(safe_next);
    let current =
        security::session_id(&headers).and_then(|id| c.sessions.get(&id).map(|s| (id, s)));
    let (old_id, session) = match current {
        Some((id, s)) if f.csrf.as_deref().is_some_and(|t| s.csrf_matches(t)) => (id, s),
        _ => {
            // No form of ours: show a fresh one rather than act on it.
            let (session, new_id) = anonymous(&c, &headers);
            let mut res = render(
                &session,
                next,
                Some(
                    "this sign-in form was not opened in this browser session (CSRF token missing or wrong); paste the token again",
                ),
            );
            *res.status_mut() = StatusCode::FORBIDDEN;
            return with_cookie(&c, &headers, new_id, res);
        }
    };
    let token = f.id_token.as_deref().map(str::trim).unwrap_or_default();
    let refused = |msg: String| {
        let mut res = render(&session, next, Some(&msg));
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        res
    };
    if token.is_empty() {
        return refused("paste an ID token to sign in".into());
    }
    if token.len() > MAX_TOKEN {
        return refused(format!("an ID token is at most {MAX_TOKEN} bytes"));
    }
    let human =
        match mandate_server::access::verify_human(&c.app, token, mandate_server::now()).await {
            Ok(h) => h,
            Err(mandate_server::access::Refusal::Store(e)) => {
                return ConsoleError::from(e).into_response();
            }
            Err(e) => return refused(format!("sign-in refused: {e}")),
        };
    tracing::info!(human = %human.id, "console sign-in");
    c.sessions.remove(&old_id);
    let (id, _) = c.sessions.create(Some(human.id));
    let res = Redirect::to(next.unwrap_or("/ui")).into_response();
    with_cookie(&c, &headers, Some(id), res)
}

#[derive(Deserialize)]
pub struct SignOut {
    csrf: Option<String>,
}

pub async fn sign_out(
    axum::extract::State(c): axum::extract::State<Console>,
    headers: HeaderMap,
    v: Viewer,
    F(f): F<SignOut>,
) -> Result<Response, ConsoleError> {
    v.check_csrf(f.csrf.as_deref())?;
    if let Some(id) = security::session_id(&headers) {
        c.sessions.remove(&id);
    }
    let mut res = Redirect::to("/ui/sign-in").into_response();
    if let Ok(v) = security::cleared_cookie(&headers).parse() {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(res)
}
