//! OpenTelemetry traces of the audit log, sent over OTLP/HTTP.
//!
//! The request path is untouched: a background loop tails the audit log
//! (already durable, the source of truth) the way the checkpoint loop does,
//! turns each entry of a task tree into a span and posts them in batches.
//! A receiver that is down only delays spans: a batch is retried with
//! backoff until it is accepted, and the loop reads no further meanwhile.
//!
//! Mapping, chosen so that no span needs state beyond "task -> root":
//! - trace id = the root task's id (a UUID is 16 bytes, an OTLP trace id),
//!   so a whole delegation tree is one trace, on every node and after a
//!   restart alike;
//! - each task is a span (`task.created` / `task.delegated`) with a span id
//!   derived from its id and the parent task's span as parent;
//! - every decision, approval asked or answered, credential revocation,
//!   outcome and task ending is a span of its own under its task's span,
//!   with a span id derived from its leaf index. Spans rather than span
//!   events: OTLP spans are immutable once sent, and a task span kept open
//!   until the task ends would mean holding state and sending late. Every
//!   span is an instant (start = end = the entry's `at`);
//! - break-glass grants belong to no task: a grant is a trace of its own
//!   (trace id = the grant's id) with its review as a child, and a decision
//!   allowed under a grant links to the grant's span.
//!
//! Nothing new is persisted: the position is kept in memory. A restarted
//! exporter starts at the log's end (or at `--otlp-from`), so entries
//! appended while no exporter ran are only exported when asked for; ids are
//! deterministic, so exporting a range twice sends the same spans again.
//! Events never hold a secret or a token (tokens are named by their jti),
//! and spans carry only what the events hold.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mandate_core::audit::trace::{
    TraceEvent, TraceItem, read_breakglass_grant, read_breakglass_review, read_creation, read_end,
    read_item,
};
use mandate_core::audit::verify::StoredEntry;
use mandate_core::audit::{Actor, EventKind, LogEntry};
use mandate_core::ids::TaskId;
use mandate_core::scope::Scope;
use mandate_core::time::Timestamp;
use mandate_store::{Store, StoreError};
use opentelemetry::trace::{
    Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_otlp::{Protocol, RetryPolicy, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use uuid::Uuid;

/// Entries read per round trip, so also the most spans in one request.
const BATCH: u32 = 512;
/// Tasks whose root and chain are remembered; an event of an older task
/// reads them back from the store.
const TASK_CACHE: usize = 16_384;
/// A delegation chain is at most 16 hops; this only guards the walk up.
const MAX_WALK: usize = 32;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// One POST may take this long before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and from which entry to export.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// Base URL of an OTLP/HTTP receiver (`http://127.0.0.1:4318`);
    /// `/v1/traces` is appended unless it is already there.
    pub endpoint: String,
    /// First leaf index to export; `None` is the log's end at start.
    pub from: Option<u64>,
    /// How often to look for new entries once caught up.
    pub poll: Duration,
    /// Longest wait between attempts while the receiver fails.
    pub max_backoff: Duration,
}

impl OtlpConfig {
    pub fn new(endpoint: impl Into<String>) -> Self {
        OtlpConfig {
            endpoint: endpoint.into(),
            from: None,
            poll: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("OTLP endpoint {0:?}: {1}")]
    Endpoint(String, String),
}

/// The traces URL for a receiver's base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT`
/// is read. Only plain HTTP: the build carries no TLS (like the CLI's
/// client), so the receiver is a collector beside Mandate.
pub fn traces_url(endpoint: &str) -> Result<String, OtlpError> {
    let bad = |why: &str| OtlpError::Endpoint(endpoint.to_owned(), why.to_owned());
    let base = endpoint.trim().trim_end_matches('/');
    let Some(host) = base.strip_prefix("http://") else {
        return Err(bad(
            "use an http:// URL of an OTLP/HTTP receiver such as http://127.0.0.1:4318 \
             (https is not built in: run a collector beside Mandate)",
        ));
    };
    if host.is_empty() || host.starts_with('/') {
        return Err(bad("the URL names no host"));
    }
    Ok(if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    })
}

/// The exporter, ready to run.
pub struct OtlpExporter {
    url: String,
    config: OtlpConfig,
    exporter: opentelemetry_otlp::SpanExporter,
    tail: Tail,
    /// A converted batch the receiver has not accepted yet, kept so a
    /// retry sends exactly the same spans.
    pending: Option<Batch>,
}

struct Batch {
    spans: Vec<SpanData>,
    /// The leaf index after the batch's last entry.
    after: u64,
    /// As many entries as one read returns: more may be waiting.
    full: bool,
}

impl OtlpExporter {
    pub fn new(
        store: Arc<dyn Store>,
        trust_domain: &str,
        config: OtlpConfig,
    ) -> Result<Self, OtlpError> {
        let url = traces_url(&config.endpoint)?;
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url.clone())
            .with_protocol(Protocol::HttpBinary)
            .with_timeout(REQUEST_TIMEOUT)
            // One retry policy, ours: it never gives a batch up.
            .with_retry_policy(RetryPolicy::disabled())
            .build()
            .map_err(|e| OtlpError::Endpoint(config.endpoint.clone(), e.to_string()))?;
        exporter.set_resource(
            &Resource::builder_empty()
                .with_service_name("mandate")
                .with_attributes([
                    KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                    KeyValue::new("mandate.trust_domain", trust_domain.to_owned()),
                ])
                .build(),
        );
        Ok(OtlpExporter {
            url,
            config,
            exporter,
            tail: Tail::new(store),
            pending: None,
        })
    }

    /// Where spans go.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs the loop on the current runtime until the handle stops it.
    pub fn spawn(self) -> OtlpHandle {
        let (stop, stopped) = watch::channel(false);
        OtlpHandle {
            stop,
            task: tokio::spawn(self.run(stopped)),
        }
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut next = self.config.from;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let stopping = *stop.borrow_and_update();
            let wait = match self.step(&mut next).await {
                Ok(true) => {
                    backoff = FIRST_BACKOFF;
                    continue;
                }
                Ok(false) => {
                    backoff = FIRST_BACKOFF;
                    self.config.poll
                }
                Err(e) => {
                    metrics::counter!("mandate_otlp_export_failures_total").increment(1);
                    tracing::warn!(error = %e, next_leaf = ?next, retry_in = ?backoff, url = %self.url, "OTLP export failed");
                    let wait = backoff;
                    backoff = (backoff * 2).min(self.config.max_backoff.max(FIRST_BACKOFF));
                    wait
                }
            };
            if stopping {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                // A dropped handle stops the exporter too.
                changed = stop.changed() => if changed.is_err() {
                    return;
                },
            }
        }
    }

    /// Exports one batch. `Ok(true)`: the batch was full, read on at once.
    async fn step(&mut self, next: &mut Option<u64>) -> Result<bool, Failure> {
        let from = match *next {
            Some(n) => n,
            None => *next.insert(self.tail.store.audit_len().await?),
        };
        let batch = match self.pending.take() {
            Some(b) => b,
            None => {
                let rows = self.tail.store.audit_entries(from, BATCH).await?;
                let Some(last) = rows.last() else {
                    return Ok(false);
                };
                Batch {
                    after: last.index + 1,
                    full: rows.len() >= BATCH as usize,
                    spans: self.tail.spans(&rows).await?,
                }
            }
        };
        if !batch.spans.is_empty() {
            let sent = self.exporter.export(batch.spans.clone()).await;
            if let Err(e) = sent {
                self.pending = Some(batch);
                return Err(Failure::Export(e.to_string()));
            }
            metrics::counter!("mandate_otlp_spans_exported_total")
                .increment(batch.spans.len() as u64);
        }
        *next = Some(batch.after);
        Ok(batch.full)
    }
}

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Export(String),
}

/// A running exporter; dropping the handle stops it.
pub struct OtlpHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl OtlpHandle {
    /// Sends what the log holds now, waiting at most `within`, then stops.
    pub async fn shutdown(self, within: Duration) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(within, &mut task).await.is_err() {
            tracing::warn!("OTLP export stopped before the log's end was sent");
            task.abort();
        }
    }

    /// Stops at once.
    pub fn abort(self) {
        self.task.abort();
    }
}

// ---- entries to spans -------------------------------------------------------------

/// What events of a task need from its creation.
#[derive(Debug, Clone)]
struct TaskInfo {
    root: TaskId,
    /// The initiating human, then each agent hop down to the task's holder.
    chain: Vec<String>,
}

struct Tail {
    store: Arc<dyn Store>,
    scope: InstrumentationScope,
    tasks: Recent<TaskInfo>,
    /// Tasks an ancestor's ending said it ends too, with that ancestor.
    cascading: Recent<TaskId>,
}

impl Tail {
    fn new(store: Arc<dyn Store>) -> Self {
        Tail {
            store,
            scope: InstrumentationScope::builder("mandate")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            tasks: Recent::new(TASK_CACHE),
            cascading: Recent::new(TASK_CACHE),
        }
    }

    async fn spans(&mut self, rows: &[StoredEntry]) -> Result<Vec<SpanData>, StoreError> {
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            match serde_json::from_str::<LogEntry>(&r.entry) {
                Ok(e) => out.extend(self.span(&e).await?),
                Err(e) => {
                    tracing::warn!(leaf = r.index, error = %e, "audit entry not exported: unreadable")
                }
            }
        }
        Ok(out)
    }

    /// The span for one entry; none for entries outside task trees
    /// (registry changes, policy pushes ...) and for unreadable ones.
    async fn span(&mut self, e: &LogEntry) -> Result<Option<SpanData>, StoreError> {
        let ev = &e.event;
        let unreadable = |err: &dyn std::fmt::Display| {
            tracing::warn!(leaf = e.index, error = %err, "audit entry not exported");
            Ok::<_, StoreError>(None)
        };
        let mut attrs = vec![
            kv("mandate.event", ev.kind.as_str()),
            KeyValue::new("mandate.audit.leaf_index", e.index as i64),
            kv("mandate.actor", actor(&ev.actor)),
        ];
        attrs.extend(
            ev.request_id
                .as_deref()
                .map(|r| kv("mandate.request_id", r)),
        );
        let mut links = Vec::new();
        let (trace, id, parent) = match ev.kind {
            EventKind::TaskCreated | EventKind::TaskDelegated => {
                let (node, root) = match read_creation(e) {
                    Ok(c) => c,
                    Err(err) => return unreadable(&err),
                };
                let chain = if ev.chain.is_empty() {
                    vec![node.initiator.to_string(), node.agent_spiffe.clone()]
                } else {
                    ev.chain.clone()
                };
                let info = TaskInfo { root, chain };
                self.tasks.insert(node.id, info.clone());
                task_attrs(&mut attrs, node.id, &info, &ev.chain);
                attrs.extend([
                    kv("mandate.agent.id", node.agent.to_string()),
                    KeyValue::new("mandate.task.depth", i64::from(node.depth)),
                    kv("mandate.task.purpose", node.purpose),
                    strings("mandate.scope", scope(&node.scope)),
                    kv("mandate.task.expires_at", node.expires_at.rfc3339()),
                    KeyValue::new("mandate.credential.dpop_bound", node.dpop_bound),
                ]);
                attrs.extend(
                    node.parent
                        .map(|p| kv("mandate.task.parent_id", p.to_string())),
                );
                attrs.extend(node.delegator.map(|d| kv("mandate.delegator", d)));
                attrs.extend(node.jti.map(|j| kv("mandate.credential.jti", j)));
                attrs.extend(limit("mandate.task.max_calls", node.limits.max_calls));
                attrs.extend(limit("mandate.task.budget", node.limits.budget));
                (
                    *root.as_uuid(),
                    task_span(node.id),
                    node.parent.map(task_span),
                )
            }
            EventKind::BreakGlassGranted => {
                let g = match read_breakglass_grant(e) {
                    Ok(g) => g,
                    Err(err) => return unreadable(&err),
                };
                attrs.extend([
                    kv("mandate.breakglass.id", g.id.to_string()),
                    kv("mandate.agent.id", g.agent.to_string()),
                    strings("mandate.scope", scope(&g.scope)),
                    kv("mandate.breakglass.reason", g.reason),
                    kv("mandate.breakglass.expires_at", g.expires_at.rfc3339()),
                ]);
                (*g.id.as_uuid(), grant_span(g.id.as_uuid()), None)
            }
            EventKind::BreakGlassReviewed => {
                let (grant, r) = match read_breakglass_review(e) {
                    Ok(r) => r,
                    Err(err) => return unreadable(&err),
                };
                attrs.extend([
                    kv("mandate.breakglass.id", grant.to_string()),
                    kv("mandate.breakglass.reviewer", r.by.to_string()),
                    kv("mandate.breakglass.review_note", r.note),
                ]);
                let trace = *grant.as_uuid();
                (trace, leaf_span(e.index), Some(grant_span(&trace)))
            }
            EventKind::TaskCompleted | EventKind::TaskFailed | EventKind::TaskRevoked => {
                let Some(task) = ev.task else {
                    return unreadable(&"it names no task");
                };
                let (end, cascades_to) = match read_end(e) {
                    Ok(x) => x,
                    Err(err) => return unreadable(&err),
                };
                for child in &cascades_to {
                    self.cascading.insert(*child, task);
                }
                let info = self.task(task).await?;
                task_attrs(&mut attrs, task, &info, &ev.chain);
                attrs.extend([
                    kv("mandate.task.status", end.status.as_str()),
                    kv("mandate.task.end_reason", end.reason),
                ]);
                attrs.extend(
                    self.cascading
                        .remove(&task)
                        .map(|a| kv("mandate.task.cascade_from", a.to_string())),
                );
                attrs.extend(nonempty(
                    "mandate.task.cascades_to",
                    cascades_to.iter().map(ToString::to_string).collect(),
                ));
                attrs.extend(nonempty(
                    "mandate.credentials_revoked",
                    end.credentials_revoked,
                ));
                (
                    *info.root.as_uuid(),
                    leaf_span(e.index),
                    Some(task_span(task)),
                )
            }
            _ => {
                let Some(task) = ev.task else {
                    return Ok(None);
                };
                let item = match read_item(e) {
                    Ok(Some(item)) => item,
                    Ok(None) => return Ok(None),
                    Err(err) => return unreadable(&err),
                };
                let info = self.task(task).await?;
                task_attrs(&mut attrs, task, &info, &ev.chain);
                links.extend(item_attrs(&mut attrs, item));
                (
                    *info.root.as_uuid(),
                    leaf_span(e.index),
                    Some(task_span(task)),
                )
            }
        };
        let at = system_time(ev.at);
        // Non-exhaustive in the SDK, with public fields.
        let mut span_links = SpanLinks::default();
        span_links.links = links;
        Ok(Some(SpanData {
            span_context: context(&trace, id),
            parent_span_id: parent.unwrap_or(SpanId::INVALID),
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: ev.kind.as_str().into(),
            start_time: at,
            end_time: at,
            attributes: attrs,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: span_links,
            // A deny is the authorization point working, not an error:
            // verdicts are attributes.
            status: Status::Unset,
            instrumentation_scope: self.scope.clone(),
        }))
    }

    /// A task's root and chain: remembered from its creation, or read back
    /// from the store for a task created before the exporter started (or
    /// forgotten since), walking up to the nearest task it knows.
    async fn task(&mut self, id: TaskId) -> Result<TaskInfo, StoreError> {
        if let Some(i) = self.tasks.get(&id) {
            return Ok(i.clone());
        }
        let mut path = Vec::new();
        let mut above = None;
        let mut cur = id;
        while path.len() < MAX_WALK {
            let Some(t) = self.store.task(cur).await? else {
                break;
            };
            let parent = t.parent;
            path.push(t);
            match parent {
                Some(p) if self.tasks.get(&p).is_some() => {
                    above = self.tasks.get(&p).cloned();
                    break;
                }
                Some(p) => cur = p,
                None => break,
            }
        }
        let mut parent_chain = above.map(|a: TaskInfo| a.chain);
        let mut info = None;
        for t in path.into_iter().rev() {
            let mut chain = match (t.parent, parent_chain.take()) {
                (Some(_), Some(chain)) => chain,
                _ => vec![t.initiator.to_string()],
            };
            chain.push(t.assignee_spiffe.to_string());
            let i = TaskInfo {
                root: t.root,
                chain,
            };
            self.tasks.insert(t.id, i.clone());
            parent_chain = Some(i.chain.clone());
            info = Some(i);
        }
        Ok(info.unwrap_or_else(|| {
            tracing::warn!(task = %id, "task not in the store: exported as its own trace");
            TaskInfo {
                root: id,
                chain: Vec::new(),
            }
        }))
    }
}

/// Who a task span or an event under it concerns. An event's own chain
/// (outcomes record theirs) wins over the one remembered from the task.
fn task_attrs(attrs: &mut Vec<KeyValue>, task: TaskId, info: &TaskInfo, own: &[String]) {
    let chain = if own.is_empty() { &info.chain } else { own };
    attrs.push(kv("mandate.task.id", task.to_string()));
    attrs.push(kv("mandate.task.root_id", info.root.to_string()));
    attrs.extend(chain.first().map(|h| kv("mandate.initiator", h.clone())));
    attrs.extend(
        chain
            .last()
            .filter(|_| chain.len() > 1)
            .map(|a| kv("mandate.agent.spiffe_id", a.clone())),
    );
    attrs.push(strings("mandate.chain", chain.to_vec()));
}

/// The facts of an item under a task; a decision allowed under break-glass
/// also links to the grant's span.
fn item_attrs(attrs: &mut Vec<KeyValue>, item: TraceItem) -> Option<Link> {
    match item.event {
        TraceEvent::Decision(d) => {
            attrs.extend([
                kv("mandate.decision", d.verdict.as_str()),
                kv("mandate.decision.id", d.id.to_string()),
                kv("mandate.action", d.action),
                kv("mandate.resource", d.resource),
                strings(
                    "mandate.reasons",
                    d.reasons.iter().map(|r| r.code.clone()).collect(),
                ),
                strings(
                    "mandate.reason_messages",
                    d.reasons.iter().map(|r| r.message.clone()).collect(),
                ),
            ]);
            attrs.extend(nonempty(
                "mandate.policy_ids",
                d.reasons.into_iter().filter_map(|r| r.policy_id).collect(),
            ));
            attrs.extend(d.policy_hash.map(|h| kv("mandate.policy_hash", h)));
            attrs.extend(d.approval.map(|a| kv("mandate.approval.id", a.to_string())));
            let grant = d.breakglass?;
            attrs.push(kv("mandate.breakglass.id", grant.to_string()));
            let id = grant.as_uuid();
            return Some(Link::with_context(context(id, grant_span(id))));
        }
        TraceEvent::ApprovalRequested(a) => attrs.extend([
            kv("mandate.approval.id", a.approval.to_string()),
            kv("mandate.action", a.action),
            kv("mandate.resource", a.resource),
            strings("mandate.approval.policies", a.policies),
            kv("mandate.approval.expires_at", a.expires_at.rfc3339()),
        ]),
        TraceEvent::ApprovalGranted(a) | TraceEvent::ApprovalDenied(a) => {
            attrs.extend([
                kv("mandate.approval.id", a.approval.to_string()),
                kv("mandate.approval.by", a.by.to_string()),
            ]);
            attrs.extend(a.note.map(|n| kv("mandate.approval.note", n)));
        }
        TraceEvent::CredentialRevoked { jti, .. } => attrs.push(kv("mandate.credential.jti", jti)),
        TraceEvent::ToolCall(c) => {
            attrs.extend([
                kv("mandate.decision.id", c.decision.to_string()),
                kv("mandate.gateway.upstream", c.upstream),
                kv("mandate.gateway.target", c.target),
                kv("mandate.gateway.status", call_status(&c.status)),
                KeyValue::new(
                    "mandate.gateway.duration_us",
                    i64::try_from(c.duration_us).unwrap_or(i64::MAX),
                ),
            ]);
        }
        TraceEvent::Outcome(o) => {
            attrs.extend([
                kv("mandate.outcome.id", o.id.to_string()),
                kv("mandate.outcome.workflow", o.workflow.as_str().to_owned()),
                kv("mandate.outcome.type", o.outcome_type.as_str().to_owned()),
                kv(
                    "mandate.outcome.idempotency_key",
                    o.idempotency_key.as_str().to_owned(),
                ),
                kv("mandate.outcome.classification", o.classification.as_str()),
                kv("mandate.outcome.explanation", o.explanation),
                kv("mandate.outcome.currency", o.currency.as_str().to_owned()),
                kv("mandate.outcome.value", o.valuation.value.to_string()),
                kv("mandate.outcome.cost", o.valuation.cost.to_string()),
                KeyValue::new(
                    "mandate.outcome.minutes_saved",
                    i64::try_from(o.valuation.minutes_saved).unwrap_or(i64::MAX),
                ),
                KeyValue::new(
                    "mandate.outcome.model_tokens",
                    i64::try_from(o.valuation.model_tokens).unwrap_or(i64::MAX),
                ),
            ]);
            attrs.extend(
                o.external_ref
                    .map(|r| kv("mandate.outcome.external_ref", r)),
            );
            attrs.extend(
                o.duplicate_of
                    .map(|d| kv("mandate.outcome.duplicate_of", d.to_string())),
            );
        }
    }
    None
}

/// `refused`, `answered 200`, `answered 200 (tool error)`, `unreachable: ...`.
pub fn call_status(s: &mandate_core::tool_call::CallStatus) -> String {
    use mandate_core::tool_call::CallStatus;
    match s {
        CallStatus::Refused => "refused".into(),
        CallStatus::Answered { status, tool_error } => {
            let flag = if *tool_error { " (tool error)" } else { "" };
            format!("answered {status}{flag}")
        }
        CallStatus::Unreachable { error } => format!("unreachable: {error}"),
    }
}

fn kv(key: &'static str, value: impl Into<String>) -> KeyValue {
    KeyValue::new(key, value.into())
}

fn strings(key: &'static str, values: Vec<String>) -> KeyValue {
    let values = values.into_iter().map(StringValue::from).collect();
    KeyValue::new(key, Value::Array(Array::String(values)))
}

fn nonempty(key: &'static str, values: Vec<String>) -> Option<KeyValue> {
    (!values.is_empty()).then(|| strings(key, values))
}

fn limit(key: &'static str, value: Option<u64>) -> Option<KeyValue> {
    value.map(|v| KeyValue::new(key, i64::try_from(v).unwrap_or(i64::MAX)))
}

fn scope(s: &Scope) -> Vec<String> {
    s.grants().map(ToString::to_string).collect()
}

fn actor(a: &Actor) -> String {
    match a {
        Actor::System => "system".to_owned(),
        Actor::Admin { credential } => format!("admin:{credential}"),
        Actor::Human { id } => format!("human:{id}"),
        Actor::Agent { spiffe_id, .. } => spiffe_id.clone(),
    }
}

fn system_time(t: Timestamp) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(t.as_millis().max(0) as u64)
}

fn context(trace: &Uuid, span: SpanId) -> SpanContext {
    SpanContext::new(
        TraceId::from_bytes(*trace.as_bytes()),
        span,
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    )
}

/// A task's span id: the first 8 bytes of SHA-256 over a label and the
/// task id, so any node (or a later run) derives the same id.
pub fn task_span(task: TaskId) -> SpanId {
    span_id(b"mandate.task", task.as_uuid().as_bytes())
}

/// The span id of the entry at a leaf index.
pub fn leaf_span(index: u64) -> SpanId {
    span_id(b"mandate.leaf", &index.to_be_bytes())
}

fn grant_span(grant: &Uuid) -> SpanId {
    span_id(b"mandate.breakglass", grant.as_bytes())
}

fn span_id(label: &[u8], bytes: &[u8]) -> SpanId {
    let digest = Sha256::new()
        .chain_update(label)
        .chain_update([0])
        .chain_update(bytes)
        .finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    // All zeros is the invalid span id; a digest that starts so is left
    // to chance, but stays valid.
    if id == [0; 8] {
        id[7] = 1;
    }
    SpanId::from_bytes(id)
}

/// A map that forgets its oldest keys beyond `cap`: memory stays bounded
/// whatever the log holds, and a forgotten task is read back when needed.
struct Recent<V> {
    map: HashMap<TaskId, V>,
    order: VecDeque<TaskId>,
    cap: usize,
}

impl<V> Recent<V> {
    fn new(cap: usize) -> Self {
        Recent {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    fn get(&self, k: &TaskId) -> Option<&V> {
        self.map.get(k)
    }

    fn insert(&mut self, k: TaskId, v: V) {
        if self.map.insert(k, v).is_none() {
            self.order.push_back(k);
            while self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }

    fn remove(&mut self, k: &TaskId) -> Option<V> {
        self.map.remove(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_url_follows_the_otlp_endpoint_rules() {
        let url = |s| traces_url(s).unwrap();
        assert_eq!(
            url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(url("http://otel:4318/"), "http://otel:4318/v1/traces");
        assert_eq!(url("http://otel/base/"), "http://otel/base/v1/traces");
        assert_eq!(url("http://otel/v1/traces"), "http://otel/v1/traces");
        for bad in ["https://otel:4318", "otel:4318", "http://", ""] {
            assert!(traces_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn span_ids_are_stable_distinct_and_valid() {
        let t = TaskId::from_uuid(Uuid::from_u128(7));
        assert_eq!(task_span(t), task_span(t));
        assert_ne!(task_span(t), leaf_span(7));
        assert_ne!(leaf_span(1), leaf_span(2));
        assert_ne!(task_span(t), SpanId::INVALID);
    }

    #[test]
    fn recent_forgets_the_oldest_beyond_its_cap() {
        let mut r = Recent::new(2);
        let id = |n| TaskId::from_uuid(Uuid::from_u128(n));
        for n in 1..=3 {
            r.insert(id(n), n);
        }
        assert!(r.get(&id(1)).is_none());
        assert_eq!(r.get(&id(3)), Some(&3));
        assert_eq!(r.map.len(), 2);
    }
}
