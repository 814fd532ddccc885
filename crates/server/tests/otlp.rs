//! The OTLP exporter on both backends, against a small OTLP/HTTP receiver on
//! loopback that decodes what it is sent with the protocol's own types: a
//! task tree is one trace, each task a span under its parent's, decisions
//! spans under their task with the identity chain, and a receiver that is
//! down delays spans without touching serving.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use mandate_core::ids::TaskId;
use mandate_server::otel::{OtlpConfig, OtlpExporter, OtlpHandle, leaf_span, task_span};
use mandate_store::testing::TestStore;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use reqwest::StatusCode;
use serde_json::json;

mod common;
use common::fixture::*;

const POLICY: &str = include_str!("../../policy/examples/default.cedar");
const ORCHESTRATOR: &str = "spiffe://acme.example/agent/orchestrator";
const WORKER_ID: &str = "spiffe://acme.example/agent/worker";

// ---- the receiver ---------------------------------------------------------------------

/// Every request the receiver was sent, decoded.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

impl Received {
    fn spans(&self) -> Vec<Span> {
        let got = self.0.lock().unwrap();
        got.iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| s.spans.clone())
            .collect()
    }

    /// Waits (bounded) until `done` holds for the spans received so far.
    async fn until(&self, within: Duration, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let start = Instant::now();
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            if start.elapsed() > within {
                let names: Vec<_> = spans.iter().map(|s| s.name.clone()).collect();
                panic!("spans did not arrive within {within:?}; received {names:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(got: State<Received>, body: Bytes) -> impl axum::response::IntoResponse {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
    got.0.0.lock().unwrap().push(request);
    // An empty ExportTraceServiceResponse: everything accepted.
    (
        [("content-type", "application/x-protobuf")],
        Vec::<u8>::new(),
    )
}

async fn receiver(listener: tokio::net::TcpListener) -> Received {
    let got = Received::default();
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(got.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    got
}

async fn exporter(f: &Fixture, addr: SocketAddr) -> OtlpHandle {
    let mut config = OtlpConfig::new(format!("http://{addr}"));
    // From here on, fixed now rather than read by the exporter, so nothing
    // the test does next can race its start.
    config.from = Some(f.s.state.store.audit_len().await.unwrap());
    config.poll = Duration::from_millis(50);
    config.max_backoff = Duration::from_millis(200);
    OtlpExporter::new(f.s.state.store.clone(), "acme.example", config)
        .unwrap()
        .spawn()
}

// ---- reading spans --------------------------------------------------------------------

fn attr<'a>(s: &'a Span, key: &str) -> Option<&'a any_value::Value> {
    s.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn text(s: &Span, key: &str) -> String {
    match attr(s, key) {
        Some(any_value::Value::StringValue(v)) => v.clone(),
        other => panic!("{}: {key} is {other:?}", s.name),
    }
}

fn texts(s: &Span, key: &str) -> Vec<String> {
    match attr(s, key) {
        Some(any_value::Value::ArrayValue(a)) => a
            .values
            .iter()
            .map(|v| match &v.value {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                other => panic!("{key} holds {other:?}"),
            })
            .collect(),
        other => panic!("{}: {key} is {other:?}", s.name),
    }
}

fn decision<'a>(spans: &'a [Span], verdict: &str) -> Option<&'a Span> {
    spans.iter().find(|s| {
        s.name == "decision.made"
            && matches!(attr(s, "mandate.decision"), Some(any_value::Value::StringValue(v)) if v == verdict)
    })
}

fn task_span_of<'a>(spans: &'a [Span], task: &str) -> Option<&'a Span> {
    spans.iter().find(|s| {
        s.name.starts_with("task.") && s.name != "task.completed" && s.name != "task.revoked" && {
            matches!(attr(s, "mandate.task.id"), Some(any_value::Value::StringValue(v)) if v == task)
        }
    })
}

fn trace_id(task: &str) -> Vec<u8> {
    task.parse::<uuid::Uuid>().unwrap().as_bytes().to_vec()
}

fn span_id_of(task: &str) -> Vec<u8> {
    task_span(TaskId::from_uuid(task.parse().unwrap()))
        .to_bytes()
        .to_vec()
}

/// Every string anywhere in the attributes, to look for tokens.
fn all_strings(values: &[KeyValue]) -> Vec<String> {
    fn walk(v: &AnyValue, out: &mut Vec<String>) {
        match &v.value {
            Some(any_value::Value::StringValue(s)) => out.push(s.clone()),
            Some(any_value::Value::ArrayValue(a)) => a.values.iter().for_each(|v| walk(v, out)),
            Some(any_value::Value::KvlistValue(l)) => l
                .values
                .iter()
                .filter_map(|kv| kv.value.as_ref())
                .for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for kv in values {
        if let Some(v) = &kv.value {
            walk(v, &mut out);
        }
    }
    out
}

async fn setup(t: TestStore) -> Fixture {
    let f = Fixture::new(t).await;
    let (st, b) = f.s.post("/v1/policies", json!({ "text": POLICY })).await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    f
}

// ---- the tests ------------------------------------------------------------------------

async fn a_task_tree_is_one_trace_with_decisions_under_their_tasks(t: TestStore) {
    let f = setup(t).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = receiver(listener).await;
    let otlp = exporter(&f, addr).await;

    let root = f.procurement_root().await;
    let (root_token, root_task) = (token_of(&root), task_of(&root));
    let (st, child) = f
        .child(
            &root_token,
            &f.agent("worker", WORKER),
            narrower("procurement.read", "erp:suppliers/*"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{child}");
    let (child_token, child_task) = (token_of(&child), task_of(&child));
    assert_eq!(
        f.verdict(&child_token, "procurement.read", "erp:suppliers/1")
            .await,
        "allow"
    );
    assert_eq!(
        f.verdict(&root_token, "payments.initiate", "bank:acme/ops")
            .await,
        "deny"
    );
    let (st, b) = f.end(&root_task, "complete", &root_token, None).await;
    assert_eq!(st, StatusCode::OK, "{b}");

    let spans = got
        .until(Duration::from_secs(10), |s| {
            s.iter().any(|s| s.name == "task.revoked")
                && s.iter().any(|s| s.name == "task.completed")
        })
        .await;

    // One trace: the root task's id.
    let trace = trace_id(&root_task);
    for s in &spans {
        assert_eq!(s.trace_id, trace, "{} is in another trace", s.name);
        assert_eq!(s.start_time_unix_nano, s.end_time_unix_nano);
        assert!(s.start_time_unix_nano > 0);
    }
    let root_span = task_span_of(&spans, &root_task).expect("the root task's span");
    assert_eq!(root_span.name, "task.created");
    assert_eq!(root_span.span_id, span_id_of(&root_task));
    assert!(
        root_span.parent_span_id.is_empty(),
        "the root has no parent"
    );
    assert_eq!(text(root_span, "mandate.initiator"), f.alice);
    assert_eq!(text(root_span, "mandate.agent.spiffe_id"), ORCHESTRATOR);
    assert_eq!(
        texts(root_span, "mandate.chain"),
        [f.alice.as_str(), ORCHESTRATOR]
    );
    assert_eq!(text(root_span, "mandate.task.purpose"), "buy 20 laptops");

    // The child hangs under the root task's span.
    let child_span = task_span_of(&spans, &child_task).expect("the child task's span");
    assert_eq!(child_span.name, "task.delegated");
    assert_eq!(child_span.span_id, span_id_of(&child_task));
    assert_eq!(child_span.parent_span_id, root_span.span_id);
    assert_eq!(text(child_span, "mandate.task.parent_id"), root_task);
    assert_eq!(text(child_span, "mandate.delegator"), ORCHESTRATOR);
    let child_chain = [f.alice.as_str(), ORCHESTRATOR, WORKER_ID];
    assert_eq!(texts(child_span, "mandate.chain"), child_chain);

    // Decisions are spans under the task that asked, with the whole chain.
    let allow = decision(&spans, "allow").expect("the allowed decision");
    assert_eq!(allow.parent_span_id, child_span.span_id);
    assert_eq!(text(allow, "mandate.action"), "procurement.read");
    assert_eq!(text(allow, "mandate.resource"), "erp:suppliers/1");
    assert_eq!(text(allow, "mandate.task.id"), child_task);
    assert_eq!(text(allow, "mandate.agent.spiffe_id"), WORKER_ID);
    assert_eq!(texts(allow, "mandate.chain"), child_chain);
    assert_eq!(texts(allow, "mandate.policy_ids"), ["in-scope"]);
    assert_eq!(text(allow, "mandate.policy_hash").len(), 64);
    let leaf = match attr(allow, "mandate.audit.leaf_index") {
        Some(any_value::Value::IntValue(i)) => *i as u64,
        other => panic!("leaf index is {other:?}"),
    };
    assert_eq!(allow.span_id, leaf_span(leaf).to_bytes().to_vec());

    let deny = decision(&spans, "deny").expect("the denied decision");
    assert_eq!(deny.parent_span_id, root_span.span_id);
    assert_eq!(text(deny, "mandate.action"), "payments.initiate");
    assert_eq!(texts(deny, "mandate.reasons"), ["outside_task_scope"]);
    assert_eq!(
        texts(deny, "mandate.chain"),
        [f.alice.as_str(), ORCHESTRATOR]
    );

    // Completing the root revoked the child, as a cascade.
    let revoked = spans.iter().find(|s| s.name == "task.revoked").unwrap();
    assert_eq!(revoked.parent_span_id, child_span.span_id);
    assert_eq!(text(revoked, "mandate.task.cascade_from"), root_task);
    let completed = spans.iter().find(|s| s.name == "task.completed").unwrap();
    assert_eq!(
        texts(completed, "mandate.task.cascades_to"),
        [child_task.as_str()]
    );

    // Each span once, and no token anywhere.
    let mut ids: Vec<_> = spans.iter().map(|s| s.span_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), spans.len(), "a span was sent twice");
    for s in &spans {
        for v in all_strings(&s.attributes) {
            assert!(
                !v.contains("eyJ"),
                "{}: an attribute holds a token: {v}",
                s.name
            );
            assert!(!v.contains(&root_token) && !v.contains(&child_token));
        }
    }
    // Only task-tree entries: the policy push and registrations before are not spans.
    assert!(spans.iter().all(|s| !s.name.starts_with("policy.")));

    // The resource names the service and the trust domain.
    let requests = got.0.lock().unwrap().clone();
    for r in requests.iter().flat_map(|r| &r.resource_spans) {
        let resource = r.resource.as_ref().unwrap();
        let get = |k: &str| {
            resource
                .attributes
                .iter()
                .find(|kv| kv.key == k)
                .and_then(|kv| kv.value.as_ref()?.value.clone())
        };
        assert_eq!(
            get("service.name"),
            Some(any_value::Value::StringValue("mandate".into()))
        );
        assert_eq!(
            get("mandate.trust_domain"),
            Some(any_value::Value::StringValue("acme.example".into()))
        );
    }
    otlp.abort();
}

async fn a_receiver_that_is_down_delays_spans_and_never_breaks_serving(t: TestStore) {
    let f = setup(t).await;
    // A task created before the exporter starts: its root and chain are
    // read back from the store.
    let root = f.procurement_root().await;
    let (token, task) = (token_of(&root), task_of(&root));

    // A port nobody listens on (yet).
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let otlp = exporter(&f, addr).await;

    let start = Instant::now();
    assert_eq!(
        f.verdict(&token, "procurement.read", "erp:suppliers/1")
            .await,
        "allow"
    );
    assert_eq!(
        f.verdict(&token, "payments.initiate", "bank:acme/ops")
            .await,
        "deny"
    );
    let (st, _) = f.s.get("/v1/agents").await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "serving waited on the exporter: {:?}",
        start.elapsed()
    );
    // Let the exporter fail a few times before the receiver comes up.
    tokio::time::sleep(Duration::from_millis(700)).await;

    let got = receiver(tokio::net::TcpListener::bind(addr).await.unwrap()).await;
    let spans = got
        .until(Duration::from_secs(10), |s| {
            decision(s, "allow").is_some() && decision(s, "deny").is_some()
        })
        .await;
    assert_eq!(spans.len(), 2, "exactly the two decisions");
    for s in &spans {
        assert_eq!(s.trace_id, trace_id(&task));
        assert_eq!(s.parent_span_id, span_id_of(&task));
        assert_eq!(texts(s, "mandate.chain"), [f.alice.as_str(), ORCHESTRATOR]);
        assert_eq!(text(s, "mandate.initiator"), f.alice);
    }
    otlp.abort();
}

async fn stopping_sends_the_log_tail_first(t: TestStore) {
    let f = setup(t).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = receiver(listener).await;
    let mut config = OtlpConfig::new(format!("http://{addr}/"));
    config.from = Some(f.s.state.store.audit_len().await.unwrap());
    // It would not look again for an hour: only stopping makes it read.
    config.poll = Duration::from_secs(3600);
    let otlp = OtlpExporter::new(f.s.state.store.clone(), "acme.example", config)
        .unwrap()
        .spawn();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let root = f.procurement_root().await;
    assert!(got.spans().is_empty());
    otlp.shutdown(Duration::from_secs(5)).await;
    let spans = got.spans();
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(spans[0].trace_id, trace_id(&task_of(&root)));
}

mandate_store::backend_tests!(
    a_task_tree_is_one_trace_with_decisions_under_their_tasks,
    a_receiver_that_is_down_delays_spans_and_never_breaks_serving,
    stopping_sends_the_log_tail_first,
);
