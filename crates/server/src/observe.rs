//! What every request passes through on its way in and out: its request id
//! (`x-request-id`, kept when the client sent one, else a new UUID v7; recorded
//! in the audit entries the request causes and echoed on the response) and
//! Prometheus metrics: one process-wide recorder, a request counter and a
//! latency histogram labelled by route template (never by raw path, which
//! would leak ids into labels and explode cardinality), and the count of
//! decisions by verdict.
//!
//! One tower layer does both: it runs on every request, and axum's
//! `from_fn` plus tower-http's two request-id layers had cost three boxed
//! services and futures, and a metrics registry lookup with freshly
//! allocated labels, per request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::Response;
use mandate_core::decision::Verdict;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower::{Layer, Service};

/// The header that carries a request's id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// How often histograms' samples are folded into their summaries.
const UPKEEP: Duration = Duration::from_secs(5);

/// Name of the thread that does it (see [`handle`]).
const UPKEEP_THREAD: &str = "metrics-upkeep";

/// The route label of a request no route matched.
const UNMATCHED: &str = "unmatched";

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

/// Counts one decision with `verdict` (`mandate_decisions_total`), through
/// handles registered once.
pub fn decision_made(verdict: Verdict) {
    static COUNTERS: OnceLock<[Counter; 3]> = OnceLock::new();
    let [allow, deny, needs_approval] = COUNTERS.get_or_init(|| {
        // Registered before the recorder is installed, they would count nothing.
        handle();
        [Verdict::Allow, Verdict::Deny, Verdict::NeedsApproval]
            .map(|v| metrics::counter!("mandate_decisions_total", "decision" => v.as_str()))
    });
    match verdict {
        Verdict::Allow => allow,
        Verdict::Deny => deny,
        Verdict::NeedsApproval => needs_approval,
    }
    .increment(1);
}

/// The method as a label: the standard methods by name, any other as
/// `other`, so a client cannot add series by making up methods.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// A route's counter for one method and status, and its histogram.
struct Series {
    method: &'static str,
    status: u16,
    requests: Counter,
    duration: Histogram,
}

thread_local! {
    /// The handles already registered, by route template: registering
    /// builds a key from owned labels and looks it up in the recorder,
    /// which a request that only adds one to a counter need not pay for.
    /// Per thread, so reading it takes no lock; the routes, methods and
    /// statuses are few, so neither are the entries.
    static SERIES: RefCell<HashMap<Box<str>, Vec<Series>>> = RefCell::default();
}

/// Counts one request to `route` and records how long it took.
fn observe(route: &str, method: &'static str, status: u16, took: Duration) {
    SERIES.with_borrow_mut(|series| {
        if !series.contains_key(route) {
            series.insert(route.into(), Vec::new());
        }
        let of_route = series.get_mut(route).expect("inserted above");
        let index = match of_route
            .iter()
            .position(|s| s.method == method && s.status == status)
        {
            Some(i) => i,
            None => {
                let route = route.to_owned();
                of_route.push(Series {
                    method,
                    status,
                    requests: metrics::counter!("mandate_http_requests_total",
                        "method" => method, "route" => route.clone(), "status" => status.to_string()),
                    duration: metrics::histogram!("mandate_http_request_duration_seconds",
                        "method" => method, "route" => route),
                });
                of_route.len() - 1
            }
        };
        let s = &of_route[index];
        s.requests.increment(1);
        s.duration.record(took.as_secs_f64());
    });
}

/// The layer: wraps each route (after routing, so the route template is known).
#[derive(Clone, Copy, Default)]
pub struct Observe;

impl<S> Layer<S> for Observe {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Observed<S> {
        handle();
        Observed { inner }
    }
}

#[derive(Clone)]
pub struct Observed<S> {
    inner: S,
}

impl<S> Service<Request> for Observed<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Observing<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let id = match req.headers().get(&REQUEST_ID) {
            Some(sent) => sent.clone(),
            None => {
                let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
                let text = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut text);
                let id = HeaderValue::from_str(text).expect("a UUID is a valid header value");
                req.headers_mut().insert(REQUEST_ID, id.clone());
                id
            }
        };
        // A clone shares the template's text: nothing is allocated for it.
        let route = req.extensions().get::<MatchedPath>().cloned();
        Observing {
            method: method_label(req.method()),
            route,
            id: Some(id),
            start: Instant::now(),
            inner: self.inner.call(req),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request on its way: its answer gets the request id and is measured.
    pub struct Observing<F> {
        #[pin]
        inner: F,
        method: &'static str,
        route: Option<MatchedPath>,
        id: Option<HeaderValue>,
        start: Instant,
    }
}

impl<F> Future for Observing<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut res) = std::task::ready!(this.inner.poll(cx));
        if let Some(id) = this.id.take() {
            res.headers_mut().entry(REQUEST_ID).or_insert(id);
        }
        observe(
            this.route.as_ref().map_or(UNMATCHED, MatchedPath::as_str),
            this.method,
            res.status().as_u16(),
            this.start.elapsed(),
        );
        Poll::Ready(Ok(res))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        let made_up = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&made_up), "other");
    }
}
