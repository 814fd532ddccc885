//! Mandate's web console, served by `mandate serve` at `/ui`.
//!
//! For the people around agents: identity teams (inventory, posture),
//! owners (their agents and what their tasks did), approvers (the queue of
//! requests waiting for a human) and auditors (Return on AI with its
//! evidence, the signed audit log). Pages are rendered on the server with
//! `maud`; charts and the delegation graph are SVG drawn here; the console
//! sends no script and fetches nothing at run time.
//!
//! A human signs in with an ID token from a trusted OIDC issuer, verified by
//! the very code the API uses ([`mandate_server::access::verify_human`]). The
//! session is server-side state behind an HttpOnly, SameSite=Strict cookie
//! ([`session`]); every form carries the session's CSRF token; every
//! response carries a strict Content-Security-Policy ([`security`]). Roles
//! decide what each human sees and may do ([`auth::Roles`]).
//!
//! Every figure comes from the server's own functions (posture assessment,
//! inventory, ROAI report, evidence packs, audit proofs and traces,
//! approvals): the console is one more surface over them, never a second
//! implementation.
//!
//! This crate depends on `mandate-server`; the server does not depend on
//! it. The binary merges [`router`] into the server's router
//! ([`mandate_server::serve_app`]).

#![forbid(unsafe_code)]

mod assessment;
mod assets;
pub mod auth;
mod error;
mod graph;
mod layout;
mod pages;
pub mod security;
pub mod session;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use mandate_server::AppState;

pub use assessment::PostureRefresh;
pub use session::{SessionConfig, Sessions};

/// Form bodies above this are refused: the largest form is an ID token.
const MAX_FORM_BYTES: usize = 32 * 1024;

/// What console handlers share.
#[derive(Clone)]
pub struct Console {
    pub(crate) app: AppState,
    pub(crate) sessions: Arc<Sessions>,
    /// The last full verification of the log, run from the audit page.
    pub(crate) verified: Arc<Mutex<Option<pages::audit::VerifyStatus>>>,
    /// The posture assessment kept between views.
    pub(crate) posture: Arc<assessment::Assessments>,
}

/// How the console is set up.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub sessions: SessionConfig,
    pub posture: PostureRefresh,
}

/// The console's routes, with default session settings.
pub fn router(app: AppState) -> Router {
    router_with(app, Settings::default())
}

/// The console's routes under `/ui`, ready to merge into the server's router.
pub fn router_with(app: AppState, settings: Settings) -> Router {
    let console = Console {
        app,
        sessions: Arc::new(Sessions::new(settings.sessions)),
        verified: Arc::default(),
        posture: Arc::new(assessment::Assessments::new(settings.posture)),
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        console.posture.warm_up(&console.app);
    }
    Router::new()
        .route("/ui", get(pages::home))
        .route("/ui/", get(pages::home))
        .route(
            "/ui/sign-in",
            get(pages::sign_in::form).post(pages::sign_in::submit),
        )
        .route("/ui/sign-out", post(pages::sign_in::sign_out))
        .route("/ui/inventory", get(pages::inventory::list))
        .route("/ui/agents/{agent}", get(pages::inventory::agent))
        .route("/ui/tasks", get(pages::tasks::list))
        .route("/ui/tasks/{task}", get(pages::tasks::lineage))
        .route("/ui/approvals", get(pages::approvals::queue))
        .route("/ui/approvals/{id}", post(pages::approvals::answer))
        .route("/ui/roai", get(pages::roai::page))
        .route("/ui/roai/report.csv", get(pages::roai::csv))
        .route("/ui/roai/evidence.zip", get(pages::roai::evidence))
        .route("/ui/posture", get(pages::posture::page))
        .route("/ui/audit", get(pages::audit::page))
        .route("/ui/audit/verify", post(pages::audit::verify))
        .route(assets::CSS_PATH, get(assets::css))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::from_fn(security::headers))
        .with_state(console)
}
