//! `mandate serve`.

use std::time::Duration;

use mandate_core::delegation::Bounds;
use mandate_server::otel::{OtlpConfig, OtlpExporter};
use mandate_server::{AppState, ServeOptions, app_state, load_master_key, serve_app};
use tokio::net::TcpListener;

use super::open_store;
use crate::{CliError, DEFAULT_LISTEN, StoreArgs};

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Address to listen on.
    #[arg(long, env = "MANDATE_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: String,
    /// Seconds between automatic audit checkpoints (when the log has grown).
    #[arg(long, default_value_t = 10)]
    checkpoint_interval: u64,
    /// Longest lifetime of any task token, in seconds.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    max_token_ttl: u64,
    /// Longest delegation chain below a human (hops).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=16))]
    max_delegation_depth: u32,
    /// Export audit events as OpenTelemetry traces to this OTLP/HTTP receiver
    /// (its base URL, e.g. http://127.0.0.1:4318; `/v1/traces` is appended).
    #[arg(long, env = "MANDATE_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// First audit leaf index to export (default: the log's end at start).
    #[arg(long, requires = "otlp_endpoint")]
    otlp_from: Option<u64>,
}

pub async fn run(a: ServeArgs) -> Result<(), CliError> {
    let store = open_store(&a.store).await?;
    let (master, _) = load_master_key(&a.store.data_dir, false)?;
    let bounds = Bounds {
        max_ttl_ms: a.max_token_ttl as i64 * 1000,
        max_depth: a.max_delegation_depth,
    };
    let state = app_state(store, &master, bounds).await?;
    // An empty MANDATE_OTLP_ENDPOINT means none, as an unset one does.
    let otlp = match a.otlp_endpoint.as_deref().map(str::trim) {
        Some(endpoint) if !endpoint.is_empty() => {
            let mut config = OtlpConfig::new(endpoint);
            config.from = a.otlp_from;
            let trust_domain = state.install.trust_domain.to_string();
            let exporter = OtlpExporter::new(state.store.clone(), &trust_domain, config)
                .map_err(|e| CliError::Usage(e.to_string()))?;
            Some(exporter)
        }
        _ => None,
    };
    let listener = TcpListener::bind(&a.listen).await.map_err(|e| {
        CliError::Usage(format!(
            "cannot listen on {}: {e} (choose another with --listen)",
            a.listen
        ))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    eprintln!(
        "mandate serving on http://{addr} (trust domain {})",
        state.install.trust_domain
    );
    if let Some(o) = &otlp {
        eprintln!(
            "exporting audit events as OpenTelemetry traces to {}",
            o.url()
        );
    }
    let options = ServeOptions {
        checkpoint_every: Duration::from_secs(a.checkpoint_interval.max(1)),
        otlp,
    };
    eprintln!("web console on http://{addr}/ui (sign in with an ID token from a trusted issuer)");
    serve_app(
        listener,
        state.clone(),
        with_console(&state),
        options,
        shutdown_signal(),
    )
    .await
    .map_err(|e| CliError::Failed(format!("server error: {e}")))
}

/// The API and the web console (`/ui`) in one router.
pub(crate) fn with_console(state: &AppState) -> axum::Router {
    mandate_server::router(state.clone()).merge(mandate_console::router(state.clone()))
}

/// SIGINT or SIGTERM: stop accepting, drain, checkpoint, exit 0.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    eprintln!("shutting down: draining in-flight requests");
}
