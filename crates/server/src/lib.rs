//! Mandate's HTTP server.
//!
//! Owns the HTTP surface: the admin API over humans and agents, the
//! authorization server (token exchange, introspection, revocation, JWKS),
//! tasks and their delegation trees, runtime decisions (Mandate's own and
//! OpenID AuthZEN) under Cedar policy versions, approvals and break-glass,
//! the audit log endpoints (checkpoints
//! and proofs) and its OpenTelemetry export, health, readiness, Prometheus
//! metrics and the generated OpenAPI document. State lives behind the
//! [`mandate_store::Store`] trait; rules live in `mandate-core`.

#![forbid(unsafe_code)]

pub mod access;
pub mod decision;
mod extract;
pub mod install;
pub mod issuance;
pub mod keyring;
pub mod ledger;
mod observe;
pub mod otel;
pub mod problem;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use mandate_core::delegation::Bounds;
use mandate_core::time::Timestamp;
use mandate_store::{Installation, Store, StoreError};
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use install::{InitOptions, MasterKeySource, initialize, load_master_key};
pub use ledger::Ledger;

/// Request bodies above this are refused with 413 before they are parsed.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Everything a handler needs, cheap to clone: one shared [`Shared`]. Every
/// request clones the state and drops it; one reference count instead of
/// one per part keeps that off the profile.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub install: Arc<Installation>,
    pub ledger: Arc<Ledger>,
    pub keys: Arc<keyring::Keyring>,
    /// Limits on what any task may be granted (maximum TTL and depth).
    pub bounds: Bounds,
    /// The policy set decisions are made under.
    pub policy: Arc<decision::ActivePolicy>,
    /// Task tokens whose signature already verified.
    pub verified: Arc<access::VerifiedTokens>,
}

/// The current time as the domain sees it.
pub fn now() -> Timestamp {
    Timestamp::from_offset(time::OffsetDateTime::now_utc())
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Mandate", description = "Identity control plane and runtime authorization for AI agents."),
    modifiers(&SecurityAddon),
    tags((name = "humans"), (name = "agents"), (name = "oauth"), (name = "tasks"), (name = "keys"), (name = "policies"), (name = "decisions"), (name = "approvals"), (name = "breakglass"), (name = "secrets"), (name = "audit"), (name = "operations"))
)]
struct ApiDoc;

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        api.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "admin",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        let c = api.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "task_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT (Mandate task token; DPoP proof too when bound)")
                    .build(),
            ),
        );
        c.add_security_scheme(
            "id_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT (ID token from a trusted issuer)")
                    .build(),
            ),
        );
    }
}

/// The full application router.
pub fn router(state: AppState) -> Router {
    let (api, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::humans::router())
        .merge(routes::agents::router())
        .merge(routes::oauth::router())
        .merge(routes::tasks::router())
        .merge(routes::keys::router())
        .merge(routes::policies::router())
        .merge(routes::decisions::router())
        .merge(routes::approvals::router())
        .merge(routes::breakglass::router())
        .merge(routes::outcomes::router())
        .merge(routes::evidence::router())
        .merge(routes::secrets::router())
        .merge(routes::posture::router())
        .merge(routes::reviews::router())
        .merge(routes::audit::router())
        .merge(routes::operations::router())
        .split_for_parts();
    let doc = Arc::new(doc);
    api.route(
        "/openapi.json",
        axum::routing::get(move || std::future::ready(axum::Json(doc.as_ref().clone()))),
    )
    .fallback(|| async { problem::Problem::not_found("no such endpoint; see /openapi.json") })
    .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
    .layer(observe::Observe)
    .with_state(state)
}

/// Loads what the server needs from an initialised store.
pub async fn app_state(
    store: Arc<dyn Store>,
    master: &mandate_core::sealed::MasterKey,
    bounds: Bounds,
) -> Result<AppState, StartError> {
    let install = store
        .installation()
        .await?
        .ok_or(StoreError::NotInitialized)?;
    let ledger = Ledger::load(store.as_ref(), &install, master).await?;
    let keys = keyring::Keyring::load(store.as_ref(), master.clone(), bounds.max_ttl_ms).await?;
    let policy = decision::ActivePolicy::load(store.as_ref()).await?;
    Ok(AppState(Arc::new(Shared {
        store,
        install: Arc::new(install),
        ledger: Arc::new(ledger),
        keys: Arc::new(keys),
        bounds,
        policy: Arc::new(policy),
        verified: Arc::default(),
    })))
}

/// Why a server could not start; each is one line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing key: {0}")]
    Key(String),
    #[error("master key: {0}")]
    MasterKey(String),
}

/// What runs beside the HTTP server.
pub struct ServeOptions {
    /// How often to sign a checkpoint when the log has grown.
    pub checkpoint_every: Duration,
    /// Exports audit events as OpenTelemetry traces, when configured.
    pub otlp: Option<otel::OtlpExporter>,
}

/// At shutdown, how long the OTLP exporter may take to send the log's tail.
const OTLP_DRAIN: Duration = Duration::from_secs(5);

/// Sends small responses at once: without `TCP_NODELAY`, Nagle's algorithm
/// and the peer's delayed ACK can hold a reply back by ~40 ms.
pub fn without_delay(
    listener: TcpListener,
) -> axum::serve::TapIo<TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt;
    fn set(tcp: &mut tokio::net::TcpStream) {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    }
    listener.tap_io(set as fn(&mut tokio::net::TcpStream))
}

/// Serves until `shutdown` resolves, then drains in-flight requests and signs
/// a final checkpoint so the log's tail is covered.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    checkpoint_every: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let options = ServeOptions {
        checkpoint_every,
        otlp: None,
    };
    serve_with(listener, state, options, shutdown).await
}

/// [`serve`] with everything that may run beside it. The OTLP exporter runs
/// on its own task, off the request path: a receiver that is down never
/// slows or fails a request.
pub async fn serve_with(
    listener: TcpListener,
    state: AppState,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state.clone());
    serve_app(listener, state, app, options, shutdown).await
}

/// [`serve_with`] serving `app`: the [`router`] with more routes merged in
/// (the binary adds the web console this way, so this crate needs none of it).
pub async fn serve_app(
    listener: TcpListener,
    state: AppState,
    app: Router,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let ticker = tokio::spawn(ledger::checkpoint_loop(
        state.clone(),
        options.checkpoint_every,
    ));
    let otlp = options.otlp.map(otel::OtlpExporter::spawn);
    // No handler reads the peer's address, so no request carries it
    // (`ConnectInfo` would be one more extension inserted per request).
    let result = axum::serve(without_delay(listener), app)
        .with_graceful_shutdown(shutdown)
        .await;
    ticker.abort();
    if let Some(otlp) = otlp {
        otlp.shutdown(OTLP_DRAIN).await;
    }
    if let Err(e) = state.ledger.checkpoint(state.store.as_ref()).await {
        tracing::warn!(error = %e, "final checkpoint failed");
    }
    result
}
