//! Prometheus metrics: one process-wide recorder, a request counter and a
//! latency histogram labelled by route template (never by raw path, which
//! would leak ids into labels and explode cardinality).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// How often histograms' samples are folded into their summaries.
const UPKEEP: Duration = Duration::from_secs(5);

/// Name of the thread that does it (see [`handle`]).
const UPKEEP_THREAD: &str = "metrics-upkeep";

pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (e.g. by an embedding
        // program); then we still render ours, just without global macros.
        let _ = metrics::set_global_recorder(recorder);
        // A recorder built this way keeps every histogram sample until
        // someone scrapes /metrics: unscraped, a busy server's memory would
        // grow with every request. A thread of its own (not a task: this may
        // run outside a runtime) folds them in for the process's life.
        let upkeep = handle.clone();
        let started = std::thread::Builder::new()
            .name(UPKEEP_THREAD.into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP);
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = started {
            tracing::error!(error = %e, "cannot start the metrics upkeep thread; scrape /metrics to keep histograms bounded");
        }
        handle
    })
}

pub async fn record(req: Request, next: Next) -> Response {
    handle();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let start = Instant::now();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!("mandate_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("mandate_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    res
}
