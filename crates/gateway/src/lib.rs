//! Mandate's enforcement point where agents act.
//!
//! Owns the gateway process: an MCP server (streamable HTTP, through `rmcp`)
//! in front of upstream MCP servers, and an HTTP tool proxy in front of REST
//! APIs. Every request carries a task credential; every `tools/call` and
//! every proxied request becomes a decision of Mandate's pipeline (the same
//! code `POST /v1/decisions` runs, in process, on the same store), is
//! forwarded only when allowed, and lands in the audit log with what became
//! of it. Downstream secrets live in Mandate's secret store and are added by
//! the gateway, so agents never hold them. The configuration lives in
//! [`config`], argument and path mapping in [`mapping`].
//!
//! MCP servers marked `coaz = true` are authorized by the OpenID AuthZEN
//! COAZ profile for MCP ([`coaz`]): each tool's declared `x-authzen-mapping`
//! (read from the `tools/list` answers the gateway proxies) or the profile's
//! default mapping builds an AuthZEN request, anchored to the task token's
//! human and agent, and Mandate's pipeline or an external AuthZEN decision
//! point decides it.

#![forbid(unsafe_code)]

mod auth;
mod calls;
pub mod coaz;
pub mod config;
mod decision_point;
pub mod mapping;
mod mcp;
pub mod message;
mod proxy;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use mandate_server::AppState;
use tokio::net::TcpListener;

pub use config::{ConfigError, GatewayConfig};
pub use mcp::{APPROVAL_REQUIRED, DENIED, UNAVAILABLE, UPSTREAM_UNAVAILABLE};

/// The MCP endpoint's path.
pub const MCP_PATH: &str = "/mcp";

/// A configured gateway over Mandate's state.
pub struct Gateway {
    app: AppState,
    config: GatewayConfig,
    /// The gateway's own resource identifier (`<public_url>/mcp`): the
    /// RFC 9728 resource, and the MCP server's identity in COAZ requests.
    resource: String,
    /// Which claims anchor COAZ requests.
    anchors: coaz::Anchors,
    /// Who decides `coaz = true` servers' calls.
    decision_point: decision_point::DecisionPoint,
    /// For every upstream, MCP and HTTP alike.
    http: reqwest::Client,
    mcp: mcp::Upstreams,
}

impl Gateway {
    pub fn new(app: AppState, config: GatewayConfig) -> Result<Arc<Self>, ConfigError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.upstream_timeout_ms))
            // The agent addressed the gateway; an upstream's redirect must
            // not carry the injected secret somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConfigError(format!("HTTP client: {e}")))?;
        let mcp = mcp::Upstreams::new(&config, &http);
        let decision_point = decision_point::DecisionPoint::new(&config)?;
        let anchors = coaz::Anchors {
            subject_claim: config.coaz.subject_claim.clone(),
            agent_claim: config.coaz.agent_claim.clone(),
        };
        let resource = format!("{}{MCP_PATH}", config.public_url.trim_end_matches('/'));
        Ok(Arc::new(Gateway {
            app,
            config,
            resource,
            anchors,
            decision_point,
            http,
            mcp,
        }))
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// A secret from Mandate's store, opened with the master key; `None`
    /// when it is not set or does not open (logged, never its value).
    pub(crate) async fn secret(
        &self,
        name: &mandate_core::secret::SecretName,
    ) -> Result<Option<mandate_core::secret::SecretValue>, mandate_store::StoreError> {
        let Some((sealed, _)) = self.app.store.secret(name).await? else {
            return Ok(None);
        };
        Ok(sealed
            .open(self.app.keys.master())
            .inspect_err(|e| {
                tracing::error!(secret = %name, error = %e, "gateway: a secret does not open");
            })
            .ok())
    }
}

/// The gateway's routes: `/mcp`, the proxied prefixes and the RFC 9728
/// metadata.
pub fn router(gw: Arc<Gateway>) -> Router {
    let mcp = tower::ServiceBuilder::new()
        .layer(axum::middleware::from_fn_with_state(gw.clone(), mcp::guard))
        .service(mcp::service(gw.clone()));
    let guarded = Router::new()
        .nest_service(MCP_PATH, mcp)
        .fallback(proxy::forward)
        .layer(axum::middleware::from_fn_with_state(
            gw.clone(),
            auth::authenticate,
        ))
        .with_state(gw.clone());
    Router::new()
        .route(
            "/.well-known/oauth-protected-resource",
            axum::routing::get(auth::metadata),
        )
        .route(
            "/.well-known/oauth-protected-resource/{*resource}",
            axum::routing::get(auth::metadata),
        )
        .with_state(gw)
        .merge(guarded)
}

/// Serves the gateway until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    gw: Arc<Gateway>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        mandate_server::without_delay(listener),
        router(gw).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
